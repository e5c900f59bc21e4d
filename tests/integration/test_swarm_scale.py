"""A swarm at scale on 127.0.0.1: one artist and 16 fans as separate `p2pdist` processes,
finding each other through Debian's opentracker alone."""

from __future__ import annotations

import urllib.parse
import urllib.request

from tests.opentracker import OpenTracker


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
