"""Debian's transmission-daemon 3.00 and p2pdist trade `--format v1` works both ways.

transmission 3.00 refuses hybrid torrents ("invalid or corrupt torrent file"), hence v1.
It has no RPC to add a peer, so the p2pdist nodes make the connections: the seeder with
`seed --peer`, the fetcher with `fetch --peer`. transmission binds 127.0.0.1 with DHT, LPD,
PeX, uTP and port mapping off (see _clients.Transmission). It is a plain BitTorrent client:
the exchanges must leave no receipt on either side.

Both directions run at once on one daemon: transmission 3.00 decides whom to unchoke and
what it is interested in only on its 10-second rechoke pulse, so each exchange waits for
that pulse, and one wait serves both.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli, start_cli
from tests.integration._clients import (
    assert_fetched_uncredited,
    assert_no_receipts,
    assert_same_files,
    assert_seeder_uncredited,
    json_objects,
    make_work,
    need,
    publish,
    stop,
    transmission,
    wait_for,
    wait_uploaded,
)

pytestmark = pytest.mark.interop

DEADLINE = 45.0  # seconds for both exchanges


def test_transmission_trades_v1_works_both_ways_and_earns_no_receipts(tmp_path: Path) -> None:
    need("transmission-daemon")
    seeder, publisher, fan = tmp_path / "seeder", tmp_path / "publisher", tmp_path / "fan"
    for home in (seeder, publisher, fan):
        run_cli(home, "init", "--name", home.name)
    # Work A: p2pdist seeds it, transmission fetches it.
    files_a = make_work(tmp_path / "src-a")
    torrent_a = tmp_path / "a.torrent"
    pub_a = publish(seeder, tmp_path / "src-a" / "album", torrent_a, "--format", "v1")
    # Work B: only transmission holds it (a throw-away copy; its publisher is off).
    files_b = make_work(tmp_path / "src-b")
    torrent_b = tmp_path / "b.torrent"
    pub_b = publish(publisher, tmp_path / "src-b" / "album", torrent_b, "--format", "v1")
    shutil.copytree(tmp_path / "src-b", tmp_path / "tr-seed")
    dest = tmp_path / "fan-dl"

    deadline = time.monotonic() + DEADLINE
    seed_out = seed_err = fetch_out = fetch_err = ""
    with transmission(tmp_path / "transmission") as tr:
        tid_a = tr.add(torrent_a, tr.downloads)
        tid_b = tr.add(torrent_b, tmp_path / "tr-seed")
        wait_for("transmission checks work B", lambda: tr.torrent(tid_b)["status"] == 6,
                 deadline, tr.proc)
        peer = f"127.0.0.1:{tr.peer_port}"
        seeding = start_cli(seeder, "seed", "--local", "--listen", f"127.0.0.1:{free_port()}",
                            "--peer", peer, "--json")
        fetching = start_cli(fan, "fetch", str(torrent_b), "--dest", str(dest), "--local",
                             "--peer", peer, "--stall-timeout", "30", "--json")
        try:
            tr.wait_seeding(tid_a, deadline)
            served = wait_uploaded(seeder, pub_a["work"], pub_a["size"], deadline, seeding)
            fetch_out, fetch_err = fetching.communicate(
                timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if fetching.poll() is None:
                fetching.kill()
            seed_out, seed_err = stop(seeding)
        uploaded_b = int(tr.torrent(tid_b)["uploadedEver"])
    assert fetching.returncode == 0, f"fetch exited {fetching.returncode}:\n{fetch_err}"

    # transmission fetched A from the p2pdist seeder: same bytes, and no credit for it.
    assert_same_files(tr.downloads, files_a, "transmission")
    reports = json_objects(seed_out)
    assert reports and reports[-1].get("stopped"), f"{seed_out}\n{seed_err}"
    [work] = reports[-1]["works"]  # type: ignore[misc]
    assert work["work"] == pub_a["work"]
    assert work["credit"] == 0, "transmission earned the seeder credit"
    assert_seeder_uncredited(served)
    assert_no_receipts(seeder)

    # The p2pdist fan fetched B from transmission: same bytes, all uncredited.
    assert_same_files(dest, files_b, "the p2pdist fetch")
    assert uploaded_b >= pub_b["size"]
    report = json.loads(fetch_out)
    assert report["work"] == pub_b["work"]
    assert_fetched_uncredited(report, pub_b["size"], "transmission")
    assert_no_receipts(fan)


