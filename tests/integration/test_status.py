"""`p2pdist status` and the control API of a running `seed`: 127.0.0.1 only, a token in
the node home, one node per home, and a clear answer when no node runs."""

from __future__ import annotations

import http.client
import json
import stat
import time
from pathlib import Path
from typing import Any

from p2pdist.identity import load_public_identity
from tests.conftest import free_port, run_cli
from tests.integration._story import Seeder, make_album, publish

MiB = 1024 * 1024


def _status(home: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(run_cli(home, "status", "--json").stdout)
    return doc


def _get(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/status", headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait(home: Path, ok: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = _status(home)
        if ok(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def test_no_node_running_is_said_plainly(tmp_path: Path) -> None:
    cp = run_cli(tmp_path / "h", "status", check=False)
    assert cp.returncode == 1
    assert "no p2pdist node is running" in cp.stderr
    assert "p2pdist seed" in cp.stderr  # the remedy
    assert "Traceback" not in cp.stderr
    cp = run_cli(tmp_path / "h", "status", "--json", check=False)
    doc = json.loads(cp.stdout)
    assert (cp.returncode, doc["ok"], doc["kind"]) == (1, False, "NodeNotRunning")


def test_status_shows_works_peers_and_credit(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [3 * MiB + 17])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    pub = publish(artist, album)
    run_cli(fan, "init", "--name", "fan")
    port = free_port()
    with Seeder(artist, port) as seeder:
        st = _status(artist)
        assert st["running"] and st["network"] == "local"
        assert st["pk"] == load_public_identity(artist).key_text
        [w] = st["works"]
        assert (w["work"], w["state"], w["size"], w["credit"]) == (
            pub["work"], "seeding", pub["size"], 0)
        human = run_cli(artist, "status").stdout
        assert "node running" in human and "First Light" in human
        # A fan fetches: the artist's credit is what the fan's receipts acknowledged.
        fetch = run_cli(fan, "fetch", pub["magnet"], "--dest", str(tmp_path / "m"), "--local",
                        "--peer", f"127.0.0.1:{port}", "--json", "--stall-timeout", "60")
        assert json.loads(fetch.stdout)["size"] == pub["size"]
        st = _wait(artist, lambda s: s["credit"] == pub["size"]
                   and s["works"][0]["uploaded"] >= pub["size"])  # libtorrent counts lazily
        assert st["credit"] == st["works"][0]["credit"] == pub["size"]
        assert st["works"][0]["uploaded"] >= pub["size"]
        seeder.stop()
    cp = run_cli(artist, "status", check=False)
    assert cp.returncode == 1  # a clean stop removes the control file
    assert not (artist / "control.json").exists()


def test_a_fan_seeding_shows_its_downloader_with_the_key_it_proved(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [2 * MiB])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    pub = publish(artist, album)
    run_cli(fan, "init", "--name", "fan")
    a_port, f_port = free_port(), free_port()
    with Seeder(artist, a_port):
        run_cli(fan, "fetch", pub["magnet"], "--dest", str(tmp_path / "m"), "--local",
                "--peer", f"127.0.0.1:{a_port}", "--stall-timeout", "60")
        with Seeder(fan, f_port, "--peer", f"127.0.0.1:{a_port}"):
            # The fan's seed connects to the artist; each proves its key to the other.
            st = _wait(fan, lambda s: any(p["pk"] for w in s["works"] for p in w["peers"]))
            peers = [p for w in st["works"] for p in w["peers"]]
            assert [p["pk"] for p in peers] == [load_public_identity(artist).key_text]
            assert peers[0]["client"].startswith("p2pdist/")


def test_control_api_needs_the_token_and_listens_on_loopback_only(tmp_path: Path) -> None:
    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    with Seeder(home, free_port()):
        ctl = home / "control.json"
        assert stat.S_IMODE(ctl.stat().st_mode) == 0o600
        doc = json.loads(ctl.read_text())
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": "Bearer " + doc["token"] + "x"},
                        {"Authorization": doc["token"]}):
            code, body = _get(doc["port"], headers)
            assert (code, json.loads(body)["reason"]) == (401, "unauthorized")
        code, body = _get(doc["port"], {"Authorization": f"Bearer {doc['token']}"})
        assert code == 200 and json.loads(body)["running"] is True
        # Bound to 127.0.0.1, whatever the profile: nothing answers on another address.
        import socket

        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.2", doc["port"])) != 0


def test_dns_rebinding_and_web_pages_cannot_drive_the_control_api(tmp_path: Path) -> None:
    """A page on evil.example that rebinds its name to 127.0.0.1 (or posts from the
    browser) reaches the control port with a foreign Host or an Origin: refused, even
    with the right token. The same request without them is answered."""
    from tests.integration._rawhttp import exchange

    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    with Seeder(home, free_port()):
        doc = json.loads((home / "control.json").read_text())
        port, auth = doc["port"], f"Authorization: Bearer {doc['token']}\r\n"

        def ask(*headers: str) -> Any:
            return exchange(port, ("GET /status HTTP/1.1\r\n" + auth + "".join(headers)
                                   + "Connection: close\r\n\r\n").encode())

        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1", "127.0.0.1:1",
                     f"127.0.0.2:{port}", f"localhost.evil.example:{port}"):
            a = ask(f"Host: {host}\r\n")
            assert (a.status, a.doc["reason"]) == (403, "bad-host"), (host, a.raw)
            assert "running" not in a.doc
        a = ask()  # no Host at all (HTTP/1.1 requires one)
        assert (a.status, a.doc["reason"]) == (403, "bad-host")
        a = ask(f"Host: 127.0.0.1:{port}\r\n", "Host: evil.example\r\n")
        assert (a.status, a.doc["reason"]) == (403, "bad-host")
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port}"):
            a = ask(f"Host: 127.0.0.1:{port}\r\n", f"Origin: {origin}\r\n")
            assert (a.status, a.doc["reason"]) == (403, "origin-refused"), origin
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                     f"[::1]:{port}"):
            a = ask(f"Host: {host}\r\n")
            assert a.status == 200 and a.doc["running"] is True, (host, a.raw)
        assert _status(home)["running"] is True  # `p2pdist status` still gets in


def test_one_node_per_home_and_a_crash_leaves_no_false_status(tmp_path: Path) -> None:
    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    first = Seeder(home, free_port()).start()
    try:
        cp = run_cli(home, "seed", "--local", "--json", check=False, timeout=30)
        assert cp.returncode == 1
        assert json.loads(cp.stdout)["kind"] == "HomeInUse"
        assert "already running" in cp.stderr
        assert _status(home)["running"]  # the first node is untouched
    finally:
        first.kill()  # SIGKILL: no clean-up
    cp = run_cli(home, "status", check=False)
    assert cp.returncode == 1
    assert "stopped without cleaning up" in cp.stderr
    # The kernel dropped the lock with the process: a new node starts in that home.
    with Seeder(home, free_port()):
        assert _status(home)["running"]


def test_a_second_node_proving_this_nodes_key_is_a_warning(tmp_path: Path) -> None:
    """Issue 21, item 8: a copied home runs a second node with the same key (it could
    redeem a voucher code the first already took). When the two meet in a swarm, each
    warns in `status`, and neither counts the other as a peer to receipt."""
    import shutil

    album = make_album(tmp_path / "studio" / "Twin", [1 * MiB])
    home, twin = tmp_path / "ada", tmp_path / "ada-copy"
    publish(home, album)
    shutil.copytree(home, twin)
    a, b = free_port(), free_port()
    with Seeder(home, a), Seeder(twin, b, "--peer", f"127.0.0.1:{a}"):
        st = _wait(twin, lambda s: s.get("warnings"), timeout=60)
        assert any(f"127.0.0.1:{a}" in w for w in st["warnings"]), st
        assert all(p["pk"] is None for w in st["works"] for p in w["peers"])
        human = run_cli(twin, "status")
        assert "another node proves this node's key" in human.stderr
        st = _wait(home, lambda s: s.get("warnings"), timeout=60)
        assert st["warnings"], st
