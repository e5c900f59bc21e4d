"""Debian's aria2c 1.36 and p2pdist trade a `--format v1` work both ways.

aria2 1.36 computes a wrong infohash for hybrid torrents (fixed in 1.37), hence v1.
Loopback only: aria2c binds 127.0.0.1 with DHT, LPD and PeX off; p2pdist runs in the local
profile. aria2c has no "add peer" option:
- fetching, it has no tracker and listens; the p2pdist seeder connects to it (`--peer`);
- seeding, it announces to Debian's opentracker, where a p2pdist fetch with no `--peer`
  finds it.
aria2c is a plain BitTorrent client: the exchanges must leave no receipt on either side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli, start_cli
from tests.integration._clients import (
    ARIA2_LOCAL,
    ARIA2_NO_TRACKER,
    assert_fetched_uncredited,
    assert_no_receipts,
    assert_same_files,
    assert_seeder_uncredited,
    json_objects,
    listening,
    make_work,
    need,
    publish,
    stop,
    tracker_seeders,
    wait_for,
    wait_uploaded,
)
from tests.opentracker import OpenTracker

pytestmark = pytest.mark.interop

DEADLINE = 60.0  # seconds for the whole exchange


def test_aria2c_fetches_v1_work_from_p2pdist_seeder(tmp_path: Path) -> None:
    aria2c = need("aria2c")
    seeder_home = tmp_path / "seeder"
    run_cli(seeder_home, "init", "--name", "Seeder")
    files = make_work(tmp_path / "src")
    torrent = tmp_path / "album.torrent"
    pub = publish(seeder_home, tmp_path / "src" / "album", torrent, "--format", "v1")
    assert len(pub["infohash"]) == 40
    assert pub["size"] == sum(len(d) for d in files.values())

    dl = tmp_path / "aria-dl"
    dl.mkdir()
    aria_port = free_port()
    deadline = time.monotonic() + DEADLINE
    aria = subprocess.Popen(
        [aria2c, *ARIA2_LOCAL, *ARIA2_NO_TRACKER, "--seed-time=0", "--bt-stop-timeout=55",
         f"--listen-port={aria_port}", f"--dir={dl}", str(torrent)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seeder: subprocess.Popen[str] | None = None
    try:
        wait_for("aria2c listens", lambda: listening(aria_port),
                 time.monotonic() + 10, aria)
        seeder = start_cli(
            seeder_home, "seed", "--local", "--listen", f"127.0.0.1:{free_port()}",
            "--peer", f"127.0.0.1:{aria_port}", "--json",
        )
        rc = aria.wait(timeout=max(1.0, deadline - time.monotonic()))
        aria_out = aria.communicate(timeout=10)[0]
        assert rc == 0, f"aria2c exited {rc}:\n{aria_out}"
        served = wait_uploaded(seeder_home, pub["work"], pub["size"], deadline, seeder)
    finally:
        if aria.poll() is None:
            aria.kill()
            aria.communicate()
        seed_out, seed_err = stop(seeder) if seeder is not None else ("", "")

    assert_same_files(dl, files, "aria2c")
    # The seeder's reports: ready (with our work), then stopped: it uploaded, for no credit.
    reports = json_objects(seed_out)
    assert reports, f"no JSON from the seeder:\n{seed_out}\n{seed_err}"
    assert pub["work"] in reports[0]["works"]  # type: ignore[operator]
    [work] = reports[-1]["works"]  # type: ignore[misc]
    assert work["credit"] == 0, "aria2c earned the seeder credit"
    assert_seeder_uncredited(served)
    assert_no_receipts(seeder_home)


def test_aria2c_seeds_v1_work_found_through_opentracker(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    aria2c = need("aria2c")
    publisher, fan = tmp_path / "publisher", tmp_path / "fan"
    run_cli(publisher, "init", "--name", "Publisher")
    run_cli(fan, "init", "--name", "Fan")
    files = make_work(tmp_path / "src")
    torrent = tmp_path / "album.torrent"
    pub = publish(publisher, tmp_path / "src" / "album", torrent, "--format", "v1",
                  "--tracker", tracker.announce)
    tracker.allow_torrent(torrent)
    # aria2c seeds a throw-away copy: the publisher is off, so only aria2c holds the work.
    shutil.copytree(tmp_path / "src", tmp_path / "aria-seed")
    dest = tmp_path / "fan-dl"

    deadline = time.monotonic() + DEADLINE
    aria = subprocess.Popen(
        [aria2c, *ARIA2_LOCAL, "--check-integrity=true", "--seed-ratio=0.0",
         f"--listen-port={free_port()}", f"--dir={tmp_path / 'aria-seed'}", str(torrent)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for("aria2c announces itself as a seeder",
                 lambda: tracker_seeders(tracker.announce, pub["infohash"]) == 1, deadline,
                 aria)
        fetched = run_cli(fan, "fetch", str(torrent), "--dest", str(dest), "--local",
                          "--stall-timeout", "30", "--json",
                          timeout=max(5.0, deadline - time.monotonic()))
    finally:
        aria.kill()
        aria_out = aria.communicate()[0]

    assert_same_files(dest, files, "the p2pdist fetch")
    report = json.loads(fetched.stdout)
    assert report["work"] == pub["work"]
    assert_fetched_uncredited(report, pub["size"], "aria2")
    assert_no_receipts(fan)
    assert "error" not in aria_out.lower(), aria_out
