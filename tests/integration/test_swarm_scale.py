"""A swarm at scale on 127.0.0.1: one artist and 16 fans as separate `p2pdist` processes,
finding each other through Debian's opentracker alone (no --peer anywhere)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from p2pdist.identity import load_public_identity
from tests.conftest import run_cli, start_cli
from tests.integration._story import digests, make_album
from tests.opentracker import OpenTracker

MiB = 1024 * 1024
FANS = 16
SIZE = 64 * MiB
STAGGER = 0.5  # seconds between one fan's start and the next
SWARM_DEADLINE = 110.0  # seconds from the first fan's start until every fan must be done
T = TypeVar("T")


def _announce(tracker: OpenTracker, infohash: str, port: int) -> bytes:
    q = urllib.parse.urlencode({
        "info_hash": bytes.fromhex(infohash), "peer_id": b"-TEST-00000000000000",
        "port": port, "uploaded": 0, "downloaded": 0, "left": 0, "event": "started",
        "compact": 1,
    })
    with urllib.request.urlopen(f"{tracker.announce}?{q}", timeout=5) as r:  # noqa: S310
        return bytes(r.read())


def test_tracker_serves_listed_works_only(tracker: OpenTracker) -> None:
    listed, unlisted = "ab" * 20, "cd" * 20
    tracker.allow(listed)
    assert b"failure reason" in _announce(tracker, unlisted, 6881)
    first = _announce(tracker, listed, 6881)
    assert b"failure reason" not in first
    # A second peer learns of the first (and not of the probe allow() made).
    peers = _announce(tracker, listed, 6882)
    assert bytes([127, 0, 0, 1]) + (6881).to_bytes(2, "big") in peers
    assert bytes([127, 0, 0, 1]) + (1).to_bytes(2, "big") not in peers


class _Proc:
    """A long-running CLI process whose JSON lines (stdout) and stderr are read as they
    come, so neither pipe can fill up and block it."""

    def __init__(self, name: str, home: Path, *args: str) -> None:
        self.name = name
        self.started = time.monotonic()
        self.proc = start_cli(home, *args)
        self.objects: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._got = threading.Event()
        self._threads = [threading.Thread(target=self._out, daemon=True),
                         threading.Thread(target=self._err, daemon=True)]
        for t in self._threads:
            t.start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.objects.append(json.loads(line))
                self._got.set()
        self._got.set()

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def first(self, deadline: float) -> dict[str, Any]:
        """Its first JSON line; fail with its stderr when none came before *deadline*."""
        self._got.wait(max(0.0, deadline - time.monotonic()))
        if not self.objects:
            raise AssertionError(f"{self.name} reported nothing in time (exit "
                                 f"{self.proc.poll()}):\n{''.join(self.stderr)[-3000:]}")
        return self.objects[0]

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def wait(self) -> int:
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self._threads:
            t.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode


def _settled(home: Path, work: str, timeout: float = 20.0) -> dict[str, Any]:
    """The node's status of *work* once its upload counter has settled.

    libtorrent adds payload to its counters on a 1 s stats tick, while a receipt counts
    a piece as soon as it passed its hash check: a status read just after the last piece
    shows a credit above the upload (67,469,312 over 67,387,392 in one CI run). Read until
    two reads 1.5 s apart show the same upload, with no transfer left in flight."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while True:
        status = json.loads(run_cli(home, "status", "--json").stdout)
        [now] = [w for w in status["works"] if w["work"] == work]
        if last is not None and now["uploaded"] == last["uploaded"] \
                and now["credit"] == last["credit"]:
            return dict(now)
        if time.monotonic() > deadline:
            return dict(now)
        last = now
        time.sleep(1.5)


def _each(fn: Callable[[Path], T], homes: Iterable[Path]) -> list[T]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(fn, homes))


@pytest.mark.slow
def test_sixteen_fans_spread_a_work_via_opentracker_and_every_byte_is_receipted(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    album = make_album(tmp_path / "studio" / "Launch", [SIZE])
    artist = tmp_path / "artist"
    torrent = tmp_path / "launch.torrent"
    run_cli(artist, "init", "--name", "artist")
    pub = json.loads(run_cli(artist, "publish", str(album), "--title", "Launch", "--license",
                             "CC-BY-4.0", "--tracker", tracker.announce, "--out", str(torrent),
                             "--json").stdout)
    work, size = pub["work"], pub["size"]
    assert size == SIZE
    tracker.allow_torrent(torrent)
    fans = [tmp_path / f"fan{i:02d}" for i in range(1, FANS + 1)]
    _each(lambda h: run_cli(h, "init", "--name", h.name), fans)
    keys = {h: load_public_identity(h).key_text for h in [artist, *fans]}

    # The artist launches the work as its initial seeder; the fans reseed once complete.
    seeder = _Proc("artist", artist, "seed", "--local", "--json", "--super-seed")
    procs = [seeder]
    try:
        seeder.first(time.monotonic() + 60)
        t0 = time.monotonic()
        deadline = t0 + SWARM_DEADLINE
        for i, fan in enumerate(fans):
            time.sleep(max(0.0, t0 + i * STAGGER - time.monotonic()))
            procs.append(_Proc(fan.name, fan, "fetch", str(torrent), "--dest",
                               str(tmp_path / f"{fan.name}-music"), "--local", "--json",
                               "--seed", "--stall-timeout", "60"))
        reports = {p.name: p.first(deadline) for p in procs[1:]}
        for name, r in reports.items():
            assert r.get("ok", True) is not False, (name, r)
            # No --peer anywhere: every peer came from the tracker.
            assert r["size"] == size, (name, r)
        # The artist's own node: payload bytes it uploaded (libtorrent's count) and the
        # bytes the fans acknowledged to it in receipts.
        launched = _settled(artist, work)
    finally:
        for p in procs[::-1]:
            p.interrupt()
        codes = {p.name: p.wait() for p in procs}
    assert set(codes.values()) == {0}, codes

    # Every fan completed with the artist's bytes.
    want = digests(album)
    for fan in fans:
        assert digests(tmp_path / f"{fan.name}-music" / "Launch") == want, fan.name

    print(f"artist: uploaded {launched['uploaded']}, credit {launched['credit']}")
    # Spread: the artist uploaded at most 3x the work; the fans carried the rest.
    assert launched["uploaded"] <= 3 * size, launched
    assert launched["credit"] <= launched["uploaded"], launched

    # Tally: per fan, the latest receipts its uploaders hold sum to exactly the work's size.
    def held(home: Path) -> list[dict[str, Any]]:
        rows = json.loads(run_cli(home, "receipts", "list", "--work", work, "--json").stdout)
        return [r for r in rows if r["direction"] == "received"]

    acknowledged: dict[str, int] = {}
    for home, rows in zip([artist, *fans], _each(held, [artist, *fans]), strict=True):
        for r in rows:
            assert r["uploader"] == keys[home]
            acknowledged[r["downloader"]] = acknowledged.get(r["downloader"], 0) + r["bytes"]
    assert acknowledged == {keys[f]: size for f in fans}

    # The label's audit of all 17 bundles finds nothing.
    (tmp_path / "bundles").mkdir()
    bundles = [tmp_path / "bundles" / f"{h.name}.p2pb" for h in [artist, *fans]]
    _each(lambda h: run_cli(h, "receipts", "export", "--out",
                            str(tmp_path / "bundles" / f"{h.name}.p2pb")), [artist, *fans])
    audit = json.loads(run_cli(tmp_path / "label", "audit", *map(str, bundles), "--works",
                               str(torrent), "--json").stdout)
    assert audit["findings"] == [], audit["findings"]
    assert audit["counts"]["bundles"] == FANS + 1, audit["counts"]


def test_super_seeding_lasts_one_session_not_into_the_resume_data(tmp_path: Path) -> None:
    import libtorrent as lt

    from p2pdist.swarm import Profile, Swarm

    album = make_album(tmp_path / "studio" / "Launch", [3 * MiB])
    torrent = tmp_path / "launch.torrent"
    run_cli(tmp_path / "artist", "init", "--name", "artist")
    run_cli(tmp_path / "artist", "publish", str(album), "--title", "Launch", "--license",
            "CC-BY-4.0", "--out", str(torrent))
    with Swarm(profile=Profile.LOCAL) as first:
        first.add_torrent("w", torrent.read_bytes(), album.parent, seed_mode=True)
        first.super_seed("w")
        assert first._handles["w"].flags() & lt.torrent_flags.super_seeding
        resume = first.save_resume(["w"])["w"]
    with Swarm(profile=Profile.LOCAL) as second:
        second.add_resume("w", resume, album.parent)
        assert not second._handles["w"].flags() & lt.torrent_flags.super_seeding
