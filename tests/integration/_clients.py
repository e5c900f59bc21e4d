"""Third-party BitTorrent clients on 127.0.0.1, and the p2pdist checks the interop tests share.

Every client binds 127.0.0.1 only, with DHT, LSD/LPD, PeX, uTP and port mapping off, and
keeps its config and data in a throw-away folder. Each one is a context manager whose exit
kills the process, so a failing test leaves nothing running.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, run_cli

ARIA2_LOCAL = (
    "--no-conf=true",
    "--interface=127.0.0.1",
    "--disable-ipv6=true",
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--follow-torrent=false",
    "--file-allocation=none",
    "--auto-file-renaming=false",
    "--allow-overwrite=true",
    "--summary-interval=0",
    "--console-log-level=warn",
)
# No tracker at all: peers come only from a p2pdist node that connects to aria2c.
ARIA2_NO_TRACKER = ("--bt-tracker=", "--bt-exclude-tracker=*")


def need(binary: str) -> str:
    """The path of *binary*, or skip the test (CI installs every client from Debian)."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it from Debian)")
    return path


def make_work(root: Path) -> dict[str, bytes]:
    """A few MiB in three files, spanning many pieces, with odd sizes across piece edges."""
    rng = os.urandom
    files = {
        "album/01-intro.bin": rng(3 * 1024 * 1024 + 12_345),
        "album/notes/liner.txt": rng(777_777),
        "album/02-outro.bin": rng(1024 * 1024 + 1),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def assert_same_files(got_root: Path, files: dict[str, bytes], who: str) -> None:
    for rel, data in files.items():
        got = got_root / rel
        assert got.is_file(), f"{who} did not write {rel}"
        assert got.read_bytes() == data, f"{rel} from {who} differs from the published file"


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:*port* (read from /proc: no connection made)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: the p2pdist node's reconnect loop covers a late listener
    return any(
        parts[1] == want and parts[3] == "0A" for parts in (ln.split() for ln in lines)
    )


def wait_for(what: str, check: Callable[[], bool], deadline: float,
              proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll *check* until it holds; fail at *deadline* (time.monotonic) or if *proc* exits."""
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the client exited {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: timed out")
        time.sleep(0.1)


def json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object in *text* (the CLI pretty-prints each report over several lines)."""
    dec, out, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        obj, i = dec.raw_decode(text, i)
        out.append(obj)
    return out


def stop(proc: subprocess.Popen[str], timeout: float = 15) -> tuple[str, str]:
    """SIGINT a p2pdist node (it saves resume data and prints its final report)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def _kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the p2pdist side ------------------------------------------------------------------------


def publish(home: Path, src: Path, torrent: Path, *extra: str) -> dict[str, Any]:
    """`p2pdist publish SRC --json` (a CC work); *extra* adds `--format v1`, `--tracker`…"""
    pub: dict[str, Any] = json.loads(run_cli(
        home, "publish", str(src), "--title", "Album", "--license", "CC-BY-4.0",
        "--out", str(torrent), *extra, "--json",
    ).stdout)
    return pub


def pk_of(home: Path) -> str:
    return str(json.loads(run_cli(home, "whoami", "--json").stdout)["public_key"])


def receipts(home: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(run_cli(home, "receipts", "list", "--json").stdout)
    return rows


def assert_no_receipts(home: Path) -> None:
    """No receipt issued or held: a third-party client neither earns nor gives credit.
    The ledger still verifies."""
    assert receipts(home) == [], "a receipt was issued to or held for a non-p2pdist peer"
    run_cli(home, "ledger", "verify", "--json")


def wait_uploaded(home: Path, work: str, size: int, deadline: float,
                  proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Ask the running `seed` (p2pdist status) until it counts *size* bytes of *work*
    uploaded (libtorrent updates its counters once a second); return that work's status."""
    found: list[dict[str, Any]] = []

    def uploaded() -> bool:
        cp = run_cli(home, "status", "--json", check=False)
        if cp.returncode != 0:
            return False  # not ready yet
        found[:] = [w for w in json.loads(cp.stdout)["works"] if w["work"] == work]
        return bool(found) and int(found[0]["uploaded"]) >= size

    wait_for("the seeder counts the work uploaded", uploaded, deadline, proc)
    return found[0]


def assert_seeder_uncredited(status: dict[str, Any]) -> None:
    """`status --json` of a work only a plain client fetched: no credit, no key proven."""
    assert status["credit"] == 0, f"a plain BitTorrent client earned credit: {status}"
    for p in status["peers"]:
        assert p["pk"] is None, f"a plain BitTorrent client proved a key: {p}"


def assert_fetched_uncredited(report: dict[str, Any], size: int, client: str) -> None:
    """`fetch --json`: every verified byte came from *client*, with no proven key and no
    receipt."""
    peers = report["peers"]
    assert peers, f"the fetch reports no peer that served bytes: {report}"
    assert sum(int(p["bytes"]) for p in peers) == size
    for p in peers:
        assert client.lower() in str(p["client"]).lower(), f"unexpected peer {p}"
        assert p["pk"] is None, f"a plain BitTorrent client proved a key: {p}"
        assert p["receipt"] is None, f"a receipt went to a plain BitTorrent client: {p}"


# -- transmission-daemon ---------------------------------------------------------------------


class Transmission:
    """transmission-daemon 3.00 in the foreground, driven through its JSON-RPC."""

    def __init__(self, workdir: Path) -> None:
        binary = need("transmission-daemon")
        cfg, self.downloads = workdir / "config", workdir / "downloads"
        cfg.mkdir(parents=True)
        self.downloads.mkdir()
        self.peer_port, self.rpc_port = free_port(), free_port()
        (cfg / "settings.json").write_text(json.dumps({
            "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
            "peer-port": self.peer_port, "peer-port-random-on-start": False,
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
            "utp-enabled": False, "port-forwarding-enabled": False,
            "rpc-enabled": True, "rpc-bind-address": "127.0.0.1", "rpc-port": self.rpc_port,
            "rpc-authentication-required": False, "rpc-whitelist-enabled": True,
            "rpc-whitelist": "127.0.0.1", "rpc-host-whitelist-enabled": False,
            "download-dir": str(self.downloads), "incomplete-dir-enabled": False,
            "watch-dir-enabled": False, "blocklist-enabled": False,
            "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False,
            "start-added-torrents": True, "message-level": 2,
        }))
        self.log = workdir / "transmission.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([binary, "-f", "-g", str(cfg)], stdout=log,
                                         stderr=subprocess.STDOUT)
        self._session = ""
        deadline = time.monotonic() + 15
        wait_for("transmission-daemon listens", lambda: listening(self.rpc_port)
                 and listening(self.peer_port), deadline, self.proc)

    def rpc(self, method: str, **arguments: Any) -> dict[str, Any]:
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(2):  # the first call learns the CSRF session id from a 409
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.rpc_port}/transmission/rpc", data=body,
                headers={"X-Transmission-Session-Id": self._session}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
                    reply: dict[str, Any] = json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code != 409:
                    raise
                self._session = e.headers["X-Transmission-Session-Id"]
                continue
            assert reply["result"] == "success", f"transmission {method}: {reply}"
            return dict(reply["arguments"])
        raise AssertionError("transmission RPC kept answering 409")

    def add(self, torrent: Path, download_dir: Path) -> int:
        added = self.rpc("torrent-add", metainfo=base64.b64encode(torrent.read_bytes()).decode(),
                         **{"download-dir": str(download_dir)})
        info = added.get("torrent-added") or added["torrent-duplicate"]
        return int(info["id"])

    def torrent(self, tid: int) -> dict[str, Any]:
        got = self.rpc("torrent-get", ids=[tid], fields=[
            "percentDone", "status", "error", "errorString", "uploadedEver",
            "haveValid", "peersConnected"])["torrents"]
        assert got, f"transmission lost torrent {tid}"
        t: dict[str, Any] = got[0]
        assert not t["error"], f"transmission: {t['errorString']}"
        return t

    def wait_seeding(self, tid: int, deadline: float) -> None:
        """Until the torrent is complete and checked (status 6: seeding)."""
        wait_for("transmission completes and seeds",
                 lambda: self.torrent(tid)["status"] == 6, deadline, self.proc)

    def close(self) -> None:
        _kill(self.proc)


@contextmanager
def transmission(workdir: Path) -> Iterator[Transmission]:
    workdir.mkdir(parents=True, exist_ok=True)
    t = Transmission(workdir)
    try:
        yield t
    finally:
        t.close()


# -- qbittorrent-nox ----------------------------------------------------------------------------

_QBT_CONF = """\
[LegalNotice]
Accepted=true

[BitTorrent]
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\BTProtocol=TCP
Session\\Port={peer_port}
Session\\InterfaceAddress=127.0.0.1
Session\\DefaultSavePath={downloads}
Session\\TempPathEnabled=false
Session\\QueueingSystemEnabled=false
Session\\MultiConnectionsPerIp=true
Session\\AddTrackersEnabled=false

[Network]
PortForwardingEnabled=false

[Preferences]
General\\Locale=en
WebUI\\Address=127.0.0.1
WebUI\\Port={webui_port}
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
WebUI\\UseUPnP=false
"""


class QBittorrent:
    """qbittorrent-nox 4.5 with a pre-written profile, driven through its WebUI API."""

    def __init__(self, workdir: Path) -> None:
        binary = need("qbittorrent-nox")
        profile, self.downloads = workdir / "profile", workdir / "downloads"
        conf = profile / "qBittorrent" / "config"
        conf.mkdir(parents=True)
        self.downloads.mkdir()
        self.peer_port, self.webui_port = free_port(), free_port()
        (conf / "qBittorrent.conf").write_text(_QBT_CONF.format(
            peer_port=self.peer_port, webui_port=self.webui_port, downloads=self.downloads))
        self.log = workdir / "qbittorrent.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([binary, f"--profile={profile}"], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        wait_for("qbittorrent-nox listens", lambda: listening(self.webui_port)
                 and listening(self.peer_port), deadline, self.proc)
        prefs = json.loads(self.api("app/preferences"))
        # The settings this test relies on took effect (a typo in the config would not).
        assert (prefs["dht"], prefs["lsd"], prefs["pex"], prefs["upnp"]) == (False,) * 4
        assert prefs["current_interface_address"] == "127.0.0.1"

    def api(self, path: str, data: bytes | dict[str, str] | None = None,
            content_type: str = "application/x-www-form-urlencoded") -> bytes:
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.webui_port}/api/v2/{path}", data=body,
            headers={"Content-Type": content_type} if body is not None else {},
            method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
            out: bytes = r.read()
            return out

    def add(self, torrent: Path, save_path: Path) -> None:
        """`torrents/add` as multipart/form-data, the way the WebUI uploads a file."""
        boundary = uuid.uuid4().hex
        parts = [
            (f'--{boundary}\r\nContent-Disposition: form-data; name="torrents"; '
             f'filename="{torrent.name}"\r\nContent-Type: application/x-bittorrent\r\n\r\n'
             ).encode() + torrent.read_bytes() + b"\r\n",
        ]
        for name, value in (("savepath", str(save_path)), ("paused", "false"),
                            ("autoTMM", "false")):
            parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                          f"\r\n\r\n{value}\r\n").encode())
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        reply = self.api("torrents/add", body, f"multipart/form-data; boundary={boundary}")
        assert reply.strip() == b"Ok.", f"qbittorrent refused the torrent: {reply!r}"

    def torrent(self, deadline: float) -> dict[str, Any]:
        """The one torrent this instance holds (it appears shortly after `add`)."""
        while True:
            got = json.loads(self.api("torrents/info"))
            if got:
                t: dict[str, Any] = got[0]
                assert t["state"] not in ("error", "missingFiles"), f"qbittorrent: {t}"
                return t
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("qbittorrent-nox did not list the added torrent")
            time.sleep(0.1)

    def add_peers(self, infohash: str, *endpoints: str) -> None:
        self.api("torrents/addPeers", {"hashes": infohash, "peers": "|".join(endpoints)})

    def wait_seeding(self, deadline: float) -> dict[str, Any]:
        """Until the torrent is complete and checked, seeding (or ready to)."""
        seeding = ("uploading", "stalledUP", "forcedUP", "queuedUP", "pausedUP")
        holder: list[dict[str, Any]] = []

        def done() -> bool:
            holder[:] = [self.torrent(deadline)]
            return holder[0]["progress"] == 1 and holder[0]["state"] in seeding

        wait_for("qbittorrent-nox completes and seeds", done, deadline, self.proc)
        return holder[0]

    def close(self) -> None:
        _kill(self.proc)


@contextmanager
def qbittorrent(workdir: Path) -> Iterator[QBittorrent]:
    workdir.mkdir(parents=True, exist_ok=True)
    q = QBittorrent(workdir)
    try:
        yield q
    finally:
        q.close()


# -- opentracker -------------------------------------------------------------------------------


def tracker_seeders(announce: str, infohash: str) -> int:
    """How many seeders the tracker at *announce* lists for *infohash* (a BEP 48 scrape)."""
    import libtorrent as lt

    raw = bytes.fromhex(infohash[:40])
    # quote, not quote_plus: opentracker takes a "+" for itself, not for a 0x20 byte.
    url = announce.replace("/announce", "/scrape") + "?" + urllib.parse.urlencode(
        {"info_hash": raw}, quote_via=urllib.parse.quote)
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
        reply = lt.bdecode(r.read()) or {}
    stats = reply.get(b"files", {}).get(raw, {})
    return int(stats.get(b"complete", 0))
