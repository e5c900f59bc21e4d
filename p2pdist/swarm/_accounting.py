"""Verified-byte accounting: which peer sent which bytes that passed the hash check.

Each block is attributed to the peer that delivered it (``block_finished_alert``) and
credited only when its piece passes the hash check (``piece_finished_alert``); a failed
piece (``hash_failed_alert``) drops what it held.

libtorrent 2.1 hashes a piece as soon as its last block is queued for writing, but reports
each block's delivery only once the block is written. So a delivery report often trails
the piece's hash check (and, after a failure, may trail the ``hash_failed_alert``); the
reports of the last pieces of a download never come at all, because libtorrent drops its
piece picker as soon as it holds every piece. Hence:

- a block of a passed piece that no report names yet is credited at once when one peer
  alone was asked for it (libtorrent takes a block only from a peer it asked); when
  several were (end-game), it waits for its report, and ``settle()`` (called once the
  download is complete and no report can come) gives it to the asker that has sent the
  most verified bytes;
- after a failure, a report of the failed round from a peer not yet asked again is
  stale: it is dropped, never carried over to the next round.

A piece is credited, block by block, once: at most its size less its padding. A work is
thus never credited more than its size, and a complete download is credited exactly its
size.
"""

from __future__ import annotations

__all__ = ["BLOCK", "VerifiedBytes"]

BLOCK = 16 * 1024


class VerifiedBytes:
    __slots__ = ("_asked", "_delivered", "_passed", "_pending", "_settled", "_stale",
                 "_totals")

    def __init__(self) -> None:
        self._asked: dict[int, dict[int, list[str]]] = {}  # this round, in order
        self._delivered: dict[int, dict[int, str]] = {}
        self._stale: dict[int, dict[int, set[str]]] = {}  # asked in a failed round
        self._passed: set[int] = set()
        self._pending: dict[int, dict[int, tuple[list[str], int]]] = {}  # (askers, bytes)
        self._totals: dict[str, int] = {}
        self._settled = False

    @property
    def settled(self) -> bool:
        """Whether settle() ran and no piece passed since."""
        return self._settled

    def requested(self, piece: int, block: int, peer: str) -> None:
        """We asked *peer* for this block."""
        if piece in self._passed:
            return
        self._stale.get(piece, {}).get(block, set()).discard(peer)
        askers = self._asked.setdefault(piece, {}).setdefault(block, [])
        if peer not in askers:
            askers.append(peer)

    def delivered(self, piece: int, block: int, peer: str) -> None:
        """*peer* delivered this block (the first delivery of a round wins)."""
        if piece in self._passed:
            waiting = self._pending.get(piece, {}).pop(block, None)
            if waiting is not None:
                self._credit(peer, waiting[1])
                if not self._pending[piece]:
                    del self._pending[piece]
            return
        stale = self._stale.get(piece, {}).get(block)
        if stale is not None and peer in stale:
            stale.discard(peer)  # the failed round's report, come late
            return
        self._delivered.setdefault(piece, {}).setdefault(block, peer)

    def piece_passed(self, piece: int, data_size: int) -> None:
        """Credit the piece's blocks. *data_size* leaves out BEP 47 padding, which sits at
        the end of a piece: pad bytes are zeros that nobody sends."""
        delivered = self._delivered.pop(piece, {})
        asked = self._asked.pop(piece, {})
        self._stale.pop(piece, None)
        self._passed.add(piece)
        self._settled = False
        waiting: dict[int, tuple[list[str], int]] = {}
        for block in range(-(-data_size // BLOCK)):
            n = min(BLOCK, data_size - block * BLOCK)
            askers = asked.get(block, [])
            peer = delivered.get(block) or (askers[0] if len(askers) == 1 else None)
            if peer is not None:
                self._credit(peer, n)
            else:
                waiting[block] = (askers, n)
        if waiting:
            self._pending[piece] = waiting
        else:
            self._pending.pop(piece, None)

    def piece_failed(self, piece: int) -> None:
        asked = self._asked.pop(piece, {})
        delivered = self._delivered.pop(piece, {})
        # A peer asked in this round whose delivery is not reported yet may still report it.
        self._stale[piece] = {b: set(peers) - {delivered.get(b)} for b, peers in asked.items()}
        self._passed.discard(piece)
        self._pending.pop(piece, None)

    def settle(self) -> None:
        """The download is complete: no delivery report will come. Give each block still
        waiting to the asker that has sent the most verified bytes (the latest on a tie)."""
        for waiting in self._pending.values():
            for askers, n in waiting.values():
                if askers:
                    best = max(reversed(askers), key=lambda p: self._totals.get(p, 0))
                    self._credit(best, n)
        self._pending.clear()
        self._settled = True

    def totals(self) -> dict[str, int]:
        return dict(self._totals)

    def _credit(self, peer: str, n: int) -> None:
        self._totals[peer] = self._totals.get(peer, 0) + n
