"""Debian's qbittorrent-nox 4.5 and p2pdist trade a work in the DEFAULT hybrid format.

qbittorrent-nox runs from a pre-written profile (legal notice accepted, no WebUI login from
localhost, DHT/LSD/PeX/UPnP off, TCP only, bound to 127.0.0.1) and is driven through its
WebUI API with urllib. It is a plain BitTorrent client: the exchanges must leave no receipt
on either side.
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
    qbittorrent,
    stop,
    wait_for,
    wait_uploaded,
)

pytestmark = pytest.mark.interop

DEADLINE = 45.0  # seconds for the exchange


def _hybrid(pub: dict[str, object], torrent: Path) -> None:
    import libtorrent as lt

    hashes = lt.torrent_info(str(torrent)).info_hashes()
    assert hashes.has_v1() and hashes.has_v2(), "publish's default is no longer hybrid"
    assert str(hashes.v1) == pub["infohash"]


def test_qbittorrent_fetches_hybrid_work_from_p2pdist_seeder(tmp_path: Path) -> None:
    need("qbittorrent-nox")
    home = tmp_path / "seeder"
    run_cli(home, "init", "--name", "Seeder")
    files = make_work(tmp_path / "src")
    torrent = tmp_path / "album.torrent"
    pub = publish(home, tmp_path / "src" / "album", torrent)
    _hybrid(pub, torrent)

    deadline = time.monotonic() + DEADLINE
    port = free_port()
    seed_out = seed_err = ""
    with qbittorrent(tmp_path / "qbittorrent") as qb:
        seeder = start_cli(home, "seed", "--local", "--listen", f"127.0.0.1:{port}", "--json")
        try:
            qb.add(torrent, qb.downloads)
            infohash = str(qb.torrent(deadline)["hash"])
            wait_for("the seeder is ready", lambda: bool(seeder.stdout and seeder.stdout
                     .readline().strip()), deadline, seeder)
            qb.add_peers(infohash, f"127.0.0.1:{port}")
            qb.wait_seeding(deadline)
            served = wait_uploaded(home, pub["work"], pub["size"], deadline, seeder)
        finally:
            seed_out, seed_err = stop(seeder)

    assert_same_files(qb.downloads, files, "qbittorrent-nox")
    reports = json_objects(seed_out)
    assert reports and reports[-1].get("stopped"), f"{seed_out}\n{seed_err}"
    [work] = reports[-1]["works"]  # type: ignore[misc]
    assert work["work"] == pub["work"]
    assert work["credit"] == 0, "qbittorrent-nox earned the seeder credit"
    assert_seeder_uncredited(served)
    assert_no_receipts(home)


def test_qbittorrent_seeds_hybrid_work_to_p2pdist_fetcher(tmp_path: Path) -> None:
    need("qbittorrent-nox")
    publisher, fan = tmp_path / "publisher", tmp_path / "fan"
    run_cli(publisher, "init", "--name", "Publisher")
    run_cli(fan, "init", "--name", "Fan")
    files = make_work(tmp_path / "src")
    torrent = tmp_path / "album.torrent"
    pub = publish(publisher, tmp_path / "src" / "album", torrent)
    _hybrid(pub, torrent)
    # qbittorrent seeds a throw-away copy; the publisher is off, so only it holds the work.
    shutil.copytree(tmp_path / "src", tmp_path / "qb-seed")
    dest = tmp_path / "fan-dl"

    deadline = time.monotonic() + DEADLINE
    with qbittorrent(tmp_path / "qbittorrent") as qb:
        qb.add(torrent, tmp_path / "qb-seed")
        qb.wait_seeding(deadline)
        fetched = run_cli(fan, "fetch", str(torrent), "--dest", str(dest), "--local",
                          "--peer", f"127.0.0.1:{qb.peer_port}", "--stall-timeout", "30",
                          "--json", timeout=max(5.0, deadline - time.monotonic()))
        # qbittorrent refreshes its transfer statistics every second or two.
        wait_for("qbittorrent-nox counts its upload", lambda: int(
            qb.torrent(deadline)["uploaded"]) >= pub["size"], deadline, qb.proc)

    assert_same_files(dest, files, "the p2pdist fetch")
    report = json.loads(fetched.stdout)
    assert report["work"] == pub["work"]
    assert_fetched_uncredited(report, pub["size"], "qbittorrent")
    assert_no_receipts(fan)
