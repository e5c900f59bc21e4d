"""A p2pdist fetch finds its peers through Debian's opentracker alone, with no `--peer`.

The seeder publishes with `--tracker` (the default hybrid format: opentracker whitelists the
v1 hash and the truncated v2 hash) and announces; the fan's fetch learns the seeder from
the tracker. Between two p2pdist nodes receipts do flow, which is what makes the interop
tests' "no receipt for a plain BitTorrent client" checks mean something.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli, start_cli
from tests.integration._clients import (
    assert_same_files,
    make_work,
    pk_of,
    publish,
    receipts,
    stop,
    tracker_seeders,
    wait_for,
)
from tests.opentracker import OpenTracker

pytestmark = pytest.mark.interop

DEADLINE = 45.0  # seconds for the exchange


def test_fan_finds_p2pdist_seeder_through_opentracker_alone(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    artist, fan = tmp_path / "artist", tmp_path / "fan"
    run_cli(artist, "init", "--name", "Artist")
    run_cli(fan, "init", "--name", "Fan")
    files = make_work(tmp_path / "src")
    torrent = tmp_path / "album.torrent"
    pub = publish(artist, tmp_path / "src" / "album", torrent, "--tracker", tracker.announce)
    tracker.allow_torrent(torrent)
    dest = tmp_path / "fan-dl"

    deadline = time.monotonic() + DEADLINE
    seeder = start_cli(artist, "seed", "--local", "--listen", f"127.0.0.1:{free_port()}",
                       "--json")
    try:
        wait_for("the seeder announces itself", lambda: tracker_seeders(
            tracker.announce, pub["infohash"]) == 1, deadline, seeder)
        fetched = run_cli(fan, "fetch", str(torrent), "--dest", str(dest), "--local",
                          "--stall-timeout", "30", "--json",
                          timeout=max(5.0, deadline - time.monotonic()))
    finally:
        stop(seeder)

    assert_same_files(dest, files, "the p2pdist fetch")
    report = json.loads(fetched.stdout)
    artist_pk, fan_pk = pk_of(artist), pk_of(fan)
    # Every byte came from the seeder the tracker named, which proved its key and got a
    # receipt for all of them ...
    assert {p["pk"] for p in report["peers"]} == {artist_pk}, report["peers"]
    assert sum(p["bytes"] for p in report["peers"]) == pub["size"]
    assert report["peers"][0]["receipt"]["bytes"] == pub["size"]
    # ... which both ledgers hold.
    for home, direction in ((fan, "issued"), (artist, "received")):
        [row] = receipts(home)
        assert (row["uploader"], row["downloader"], row["bytes"], row["direction"]) == (
            artist_pk, fan_pk, pub["size"], direction)


def test_tracker_fixture_lists_a_hash_holding_a_space_byte(tracker: OpenTracker) -> None:
    # One infohash in 13 holds a 0x20 byte; a probe that sent it as "+" (urlencode's
    # default) was refused by opentracker, and allow() timed out on those works.
    spaced = "6d7e50d03020a8bfdeec64ed9f165f3abb456be1"
    tracker.allow(spaced)
    assert tracker_seeders(tracker.announce, spaced) == 0
