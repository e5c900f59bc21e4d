"""Verified-byte accounting: which peer sent which bytes that passed the hash check.

libtorrent posts ``block_finished_alert`` when a block's write completes, which can be
after the ``piece_finished_alert`` of its piece (hashing and writing run in parallel).
So a block of a piece that already passed is credited at once, a block of a piece not
yet checked waits for it, and a failed piece drops what waited. Per piece the credit is
capped at the piece's size, so a work is never credited more than its size.
"""

from __future__ import annotations

__all__ = ["VerifiedBytes"]


class VerifiedBytes:
    __slots__ = ("_credited", "_passed", "_pending", "_totals")

    def __init__(self) -> None:
        self._pending: dict[int, dict[str, int]] = {}
        self._passed: set[int] = set()
        self._credited: dict[int, int] = {}
        self._totals: dict[str, int] = {}

    def _credit(self, piece: int, peer: str, n: int, piece_size: int) -> None:
        room = piece_size - self._credited.get(piece, 0)
        n = min(n, room)
        if n > 0:
            self._credited[piece] = self._credited.get(piece, 0) + n
            self._totals[peer] = self._totals.get(peer, 0) + n

    def block(self, piece: int, peer: str, size: int, piece_size: int) -> None:
        """*peer* delivered *size* bytes of *piece*."""
        if piece in self._passed:
            self._credit(piece, peer, size, piece_size)
        else:
            per_peer = self._pending.setdefault(piece, {})
            per_peer[peer] = per_peer.get(peer, 0) + size

    def piece_passed(self, piece: int, piece_size: int) -> None:
        self._passed.add(piece)
        for peer, n in self._pending.pop(piece, {}).items():
            self._credit(piece, peer, n, piece_size)

    def piece_failed(self, piece: int) -> None:
        self._pending.pop(piece, None)
        self._passed.discard(piece)

    def totals(self) -> dict[str, int]:
        return dict(self._totals)
