"""Verified-byte accounting: which peer sent which bytes that passed the hash check.

Each block is attributed to the peer that delivered it (``block_finished_alert``) and
credited only when its piece passes the hash check (``piece_finished_alert``); a failed
piece (``hash_failed_alert``) drops what it held.

libtorrent 2.1 does not deliver every ``block_finished_alert``: on loopback about one
piece in a few hundred arrives with none for its blocks, and others trail the piece's hash
check. So the peer a block was requested from (``block_downloading_alert``) stands in
when no delivery was reported, and a piece is credited, block by block, once: at most its
size less its padding. A work is thus never credited more than its size, and a complete
download is credited exactly its size.
"""

from __future__ import annotations

__all__ = ["BLOCK", "VerifiedBytes"]

BLOCK = 16 * 1024


class VerifiedBytes:
    __slots__ = ("_delivered", "_requested", "_totals")

    def __init__(self) -> None:
        self._requested: dict[int, dict[int, str]] = {}
        self._delivered: dict[int, dict[int, str]] = {}
        self._totals: dict[str, int] = {}

    def requested(self, piece: int, block: int, peer: str) -> None:
        """We asked *peer* for this block (the latest ask wins)."""
        self._requested.setdefault(piece, {})[block] = peer

    def delivered(self, piece: int, block: int, peer: str) -> None:
        """*peer* delivered this block (the first delivery wins)."""
        self._delivered.setdefault(piece, {}).setdefault(block, peer)

    def piece_passed(self, piece: int, data_size: int) -> None:
        """Credit the piece's blocks. *data_size* leaves out BEP 47 padding, which sits at
        the end of a piece: pad bytes are zeros that nobody sends."""
        delivered = self._delivered.pop(piece, {})
        requested = self._requested.pop(piece, {})
        for block in range(-(-data_size // BLOCK)):
            peer = delivered.get(block) or requested.get(block)
            if peer is not None:
                n = min(BLOCK, data_size - block * BLOCK)
                self._totals[peer] = self._totals.get(peer, 0) + n

    def piece_failed(self, piece: int) -> None:
        self._delivered.pop(piece, None)
        self._requested.pop(piece, None)

    def totals(self) -> dict[str, int]:
        return dict(self._totals)
