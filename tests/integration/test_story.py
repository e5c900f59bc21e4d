"""The issue's story end to end: real `p2pdist` processes, real libtorrent, 127.0.0.1 only."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from p2pdist import _canonical
from p2pdist.identity import create_identity, load_public_identity
from p2pdist.licensing import SignedManifest, embed_license, license_of_info
from p2pdist.node import Node
from p2pdist.swarm import Profile, Swarm, TorrentState, info_section, make_magnet, make_torrent
from tests.conftest import PASSPHRASE, free_port, run_cli, start_cli
from tests.integration._story import Seeder, digests, make_album, publish

MiB = 1024 * 1024


@pytest.fixture
def album(tmp_path: Path) -> Path:
    # Sizes straddle piece boundaries so the last piece of each file is partial.
    return make_album(tmp_path / "studio" / "First Light", [3 * MiB + 17, 2 * MiB - 1, 4099])


def fetch_json(home: Path, source: str, dest: Path, *peers: int, extra: tuple[str, ...] = ()
               ) -> dict[str, Any]:
    args = ["fetch", source, "--dest", str(dest), "--local", "--json",
            "--metadata-timeout", "30", "--stall-timeout", "60", *extra]
    for p in peers:
        args += ["--peer", f"127.0.0.1:{p}"]
    result: dict[str, Any] = json.loads(run_cli(home, *args).stdout)
    return result


def test_fan_fetches_from_fan_not_artist(tmp_path: Path, album: Path) -> None:
    artist, fan1, fan2 = tmp_path / "ada", tmp_path / "fan1", tmp_path / "fan2"
    pub = publish(artist, album)
    assert pub["magnet"].startswith("magnet:?xt=urn:btih:")
    run_cli(fan1, "init", "--name", "Fan 1")
    a_port, f1_port = free_port(), free_port()

    with Seeder(artist, a_port):
        r1 = fetch_json(fan1, pub["magnet"], tmp_path / "m1", a_port)
    assert r1["license"]["summary"] == (
        "CC BY-SA 4.0 — you may share and adapt, credit Ada, share alike")
    assert digests(tmp_path / "m1" / "First Light") == digests(album)

    # The artist is offline now: fan 2 can only get the work from fan 1.
    with Seeder(fan1, f1_port) as s1:
        r2 = fetch_json(fan2, pub["magnet"], tmp_path / "m2", f1_port)
        s1.stop()
    assert digests(tmp_path / "m2" / "First Light") == digests(album)
    fan1_pk = load_public_identity(fan1).key_text
    assert r2["peers"], "fan 2 should report who served it"
    assert {p["peer"] for p in r2["peers"]} == {f"127.0.0.1:{f1_port}"}
    assert all(fan1_pk in p["client"] for p in r2["peers"]), r2["peers"]
    # ... and fan 1 proved that key through its API's /identity challenge.
    assert {p["pk"] for p in r2["peers"]} == {fan1_pk}
    # Every verified byte is credited to the peer that sent it: exactly the work's size.
    assert sum(p["bytes"] for p in r2["peers"]) == r2["size"] == pub["size"]
    works = json.loads(run_cli(fan2, "works", "--json").stdout)
    assert [(w["work"], w["complete"], w["role"]) for w in works] == [
        (pub["work"], True, "fetched")]


def _tampered_title(info: dict[str, Any], torrent: dict[str, Any]) -> None:
    env = info["p2pdist"]
    env["manifest"] = env["manifest"].replace(b"First Light", b"Final Light")


def _license_from_other_work(info: dict[str, Any], torrent: dict[str, Any]) -> None:
    other = torrent["_other"]["info"]["p2pdist"]
    info["p2pdist"] = other


def _no_license(info: dict[str, Any], torrent: dict[str, Any]) -> None:
    del info["p2pdist"]


def _signed_by_stranger(info: dict[str, Any], torrent: dict[str, Any]) -> None:
    stranger = create_identity(torrent["_tmp"] / "stranger", name="Mallory",
                               passphrase="x", opslimit=1, memlimit=8192)
    _, signed = license_of_info(_canonical.encode(info))
    forged = SignedManifest.sign(signed.manifest, [stranger])
    info.update(embed_license(info, forged))


@pytest.mark.parametrize("tamper", [_tampered_title, _license_from_other_work, _no_license,
                                    _signed_by_stranger],
                         ids=["title-changed", "license-from-other-work", "no-license",
                              "signed-by-stranger"])
def test_tampered_torrent_is_refused_and_nothing_written(
    tmp_path: Path, album: Path, tamper: Any
) -> None:
    pub = publish(tmp_path / "ada", album)
    other_album = make_album(tmp_path / "other" / "First Light", [MiB], seed=99)
    other = publish(tmp_path / "ada", other_album)
    torrent = _canonical.decode(Path(pub["torrent"]).read_bytes(), max_size=1 << 26)
    torrent["_other"] = _canonical.decode(Path(other["torrent"]).read_bytes(), max_size=1 << 26)
    torrent["_tmp"] = tmp_path
    tamper(torrent["info"], torrent)
    del torrent["_other"], torrent["_tmp"]
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(_canonical.encode(torrent))

    dest = tmp_path / "music"
    cp = run_cli(tmp_path / "fan", "fetch", str(bad), "--dest", str(dest), "--local",
                 "--json", "--metadata-timeout", "5", check=False)
    assert cp.returncode == 3, cp.stderr
    assert "Traceback" not in cp.stderr
    assert not dest.exists()
    assert json.loads(run_cli(tmp_path / "fan", "works", "--json").stdout) == []
    verify = run_cli(tmp_path / "fan", "license", "verify", str(bad), check=False)
    assert verify.returncode == 3


def _serve(torrent: bytes, save_path: Path) -> Swarm:
    s = Swarm(profile=Profile.LOCAL)
    s.add_torrent("w", torrent, save_path, seed_mode=True)
    return s


def test_broken_license_over_magnet_is_refused_before_any_byte(tmp_path: Path, album: Path
                                                               ) -> None:
    pub = publish(tmp_path / "ada", album)
    torrent = _canonical.decode(Path(pub["torrent"]).read_bytes(), max_size=1 << 26)
    _tampered_title(torrent["info"], torrent)
    bad = _canonical.encode(torrent)
    dest = tmp_path / "music"
    dest.mkdir()
    with _serve(bad, album.parent) as seeder:
        cp = run_cli(tmp_path / "fan", "fetch", make_magnet(bad), "--dest", str(dest),
                     "--local", "--peer", f"127.0.0.1:{seeder.listen_port}",
                     "--metadata-timeout", "20", check=False)
    assert cp.returncode == 3, cp.stderr
    assert list(dest.iterdir()) == []


def test_plain_torrent_needs_allow_unlicensed(tmp_path: Path, album: Path) -> None:
    plain = _canonical.encode(make_torrent(album))
    with _serve(plain, album.parent) as seeder:
        peer = f"127.0.0.1:{seeder.listen_port}"
        refused = run_cli(tmp_path / "fan", "fetch", make_magnet(plain), "--dest",
                          str(tmp_path / "no"), "--local", "--peer", peer, check=False)
        assert refused.returncode == 3
        assert "--allow-unlicensed" in refused.stderr
        assert not (tmp_path / "no").exists()
        ok = run_cli(tmp_path / "fan", "fetch", make_magnet(plain), "--dest",
                     str(tmp_path / "yes"), "--local", "--peer", peer, "--allow-unlicensed")
    assert "no p2pdist license" in ok.stderr
    assert digests(tmp_path / "yes" / "First Light") == digests(album)


def test_seeder_killed_mid_transfer_and_restarted_fetch_completes(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [24 * MiB])
    pub = publish(tmp_path / "ada", album)
    port = free_port()
    seeder = Seeder(tmp_path / "ada", port, "--upload-limit", "3000").start()
    fetch = start_cli(tmp_path / "fan", "fetch", pub["magnet"], "--dest", str(tmp_path / "m"),
                      "--local", "--peer", f"127.0.0.1:{port}", "--json",
                      "--stall-timeout", "60")
    try:
        time.sleep(3)
        seeder.kill()  # SIGKILL: no goodbye, no resume data
        time.sleep(1)
        assert fetch.poll() is None, "the fetch should wait for the seeder to come back"
        with Seeder(tmp_path / "ada", port):
            out, err = fetch.communicate(timeout=90)
    finally:
        if fetch.poll() is None:
            fetch.kill()
    assert fetch.returncode == 0, err
    result = json.loads(out)
    assert result["downloaded"] >= result["size"] // 2
    assert digests(tmp_path / "m" / "First Light") == digests(album)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_fetch_killed_midway_resumes_without_redownloading(tmp_path: Path, sig: int) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [24 * MiB])
    pub = publish(tmp_path / "ada", album)
    port = free_port()
    with Seeder(tmp_path / "ada", port):
        fetch = start_cli(tmp_path / "fan", "fetch", pub["magnet"], "--dest",
                          str(tmp_path / "m"), "--local", "--peer", f"127.0.0.1:{port}",
                          "--download-limit", "4000", "--json")
        time.sleep(4)  # about half of 24 MiB at 4000 KiB/s, after start-up
        assert fetch.poll() is None
        fetch.send_signal(sig)
        fetch.communicate(timeout=30)
        second = fetch_json(tmp_path / "fan", pub["magnet"], tmp_path / "m", port)
    size = 24 * MiB
    assert second["downloaded"] < 0.8 * size, second
    assert digests(tmp_path / "m" / "First Light") == digests(album)


def _states_after_restart(home: Path, seconds: float = 1.5) -> tuple[set[TorrentState], int]:
    node = Node(home, profile=Profile.LOCAL)
    try:
        node.seed_library()
        seen: set[TorrentState] = set()
        downloaded = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for s in node.tick():
                seen.add(s.status.state)
                downloaded += s.status.total_payload_download
            time.sleep(0.02)
        return seen, downloaded
    finally:
        node.close()


def test_seed_restart_neither_rehashes_nor_redownloads(tmp_path: Path, album: Path) -> None:
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    pub = publish(artist, album)
    port = free_port()
    with Seeder(artist, port) as s:
        fetch_json(fan, pub["magnet"], tmp_path / "m", port)
        err = s.stop()
    assert "Stopped cleanly" in err
    for home in (artist, fan):
        assert list((home / "library").glob("*.resume")), f"{home.name} saved no resume data"
        states, downloaded = _states_after_restart(home)
        assert TorrentState.CHECKING not in states, (home.name, states)
        assert states & {TorrentState.SEEDING}, states
        assert downloaded == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing", "--license", "CC-BY-4.0"], "no such file or folder"),
        (["{tmp}/empty", "--license", "CC-BY-4.0"], "is empty"),
        (["{album}", "--license", "CC-BY-4.1"], "unknown license"),
        (["{album}", "--license", "GPL-3.0-only"], "unknown license"),
    ],
    ids=["missing-path", "empty-folder", "unknown-cc-version", "not-a-cc-license"],
)
def test_publish_refuses_bad_input_and_writes_nothing(
    tmp_path: Path, album: Path, args: list[str], message: str
) -> None:
    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [a.format(tmp=tmp_path, album=album) for a in args]
    cp = run_cli(home, "publish", *argv, "--title", "T", "--out", str(tmp_path / "x.torrent"),
                 check=False)
    assert cp.returncode == 1
    assert message in cp.stderr
    assert "Traceback" not in cp.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path, album: Path) -> None:
    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    cp = run_cli(home, "publish", str(album), "--title", "T", "--license", "CC0-1.0",
                 env={"P2PDIST_PASSPHRASE": PASSPHRASE + "!"}, check=False)
    assert cp.returncode == 1
    assert "wrong passphrase" in cp.stderr
    assert "Traceback" not in cp.stderr


def test_license_show_and_verify_by_magnet_and_torrent(tmp_path: Path, album: Path) -> None:
    pub = publish(tmp_path / "ada", album, "--format", "v1")
    port = free_port()
    with Seeder(tmp_path / "ada", port):
        shown = json.loads(run_cli(tmp_path / "fan", "license", "show", pub["magnet"],
                                   "--local", "--peer", f"127.0.0.1:{port}", "--json").stdout)
    me = json.loads(run_cli(tmp_path / "ada", "whoami", "--json").stdout)
    assert shown["verified"] is True
    assert shown["terms"]["spdx"] == "CC-BY-SA-4.0"
    assert shown["signers"] == [{"pk": me["public_key"], "fingerprint": me["fingerprint"]}]
    assert shown["splits"][0]["bps"] == 10_000
    ok = run_cli(tmp_path / "fan", "license", "verify", pub["torrent"])
    assert "verified" in ok.stdout
    info = info_section(Path(pub["torrent"]).read_bytes())
    assert b"p2pdist" in info and b"meta version" not in info  # --format v1


def test_whoami_without_init_says_how(tmp_path: Path) -> None:
    cp = run_cli(tmp_path / "nobody", "whoami", check=False)
    assert cp.returncode == 1
    assert "p2pdist init" in cp.stderr
