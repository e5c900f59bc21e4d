"""Verified-byte accounting: which peer sent which bytes that passed the hash check.

Each block is attributed to the peer that delivered it (``block_finished_alert``) and
credited only when its piece passes the hash check (``piece_finished_alert``); a failed
piece (``hash_failed_alert``) drops what it held.

libtorrent 2.1 hashes a piece as soon as its last block is queued for writing, but
reports a block's delivery only once the block is written. So delivery reports often
trail the piece's hash check, or its failure; the reports of the last pieces of a
download never come, because libtorrent drops its piece picker once it has every piece.
And a peer asked for a block of a piece that then failed may still deliver that block
into the piece's next attempt, without being asked again. Hence, per block:

- the peers that may deliver it are those asked for it, in this attempt or an earlier
  one, less those whose delivery an attempt already took;
- a failed attempt owes one report for each of its blocks whose delivery was not yet
  reported: that report, when it comes, is dropped and never counts for a later attempt;
- when its piece passes, a block goes to the peer whose delivery was reported, or to the
  only peer that may have delivered it; otherwise it waits for its report, and
  ``settle()`` (once the download is complete and no report can come) gives it to a
  candidate that sent us bytes not credited yet (libtorrent's exact payload count per
  connection, less its credit: a candidate whose bytes are all credited did not send
  it, its request was cancelled), the one that sent the most verified bytes among those
  (or among all candidates, when none has such bytes).

A piece is credited, block by block, once: at most its size less its padding. A work is
thus never credited more than its size, and a complete download is credited exactly its
size.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

__all__ = ["BLOCK", "VerifiedBytes"]

BLOCK = 16 * 1024

# Who sent a block: the session names each peer connection (never a bare IP:PORT, which a
# later connection may reuse).
P = TypeVar("P", bound=Hashable)


class VerifiedBytes(Generic[P]):
    __slots__ = ("_candidates", "_delivered", "_owed", "_passed", "_pending", "_settled",
                 "_totals")

    def __init__(self) -> None:
        self._candidates: dict[int, dict[int, list[P]]] = {}  # in the order asked
        self._delivered: dict[int, dict[int, P]] = {}  # reported in this attempt
        self._owed: dict[int, dict[int, int]] = {}  # reports failed attempts still owe
        self._passed: set[int] = set()
        self._pending: dict[int, dict[int, tuple[list[P], int]]] = {}  # (candidates, bytes)
        self._totals: dict[P, int] = {}
        self._settled = False

    @property
    def settled(self) -> bool:
        """Whether settle() ran and no piece passed since."""
        return self._settled

    def requested(self, piece: int, block: int, peer: P) -> None:
        """We asked *peer* for this block."""
        if piece in self._passed:
            return
        candidates = self._candidates.setdefault(piece, {}).setdefault(block, [])
        if peer not in candidates:
            candidates.append(peer)

    def delivered(self, piece: int, block: int, peer: P) -> None:
        """*peer* delivered this block (libtorrent reports it once the block is written)."""
        if piece in self._passed:
            waiting = self._pending.get(piece, {}).pop(block, None)
            if waiting is not None:
                self._credit(peer, waiting[1])
                if not self._pending[piece]:
                    del self._pending[piece]
            return
        owed = self._owed.get(piece, {})
        if owed.get(block):
            owed[block] -= 1  # a failed attempt's report, come late
            self._discard(piece, block, peer)
            return
        self._delivered.setdefault(piece, {}).setdefault(block, peer)

    def piece_passed(self, piece: int, data_size: int) -> None:
        """Credit the piece's blocks. *data_size* leaves out BEP 47 padding, which sits at
        the end of a piece: pad bytes are zeros that nobody sends."""
        delivered = self._delivered.pop(piece, {})
        candidates = self._candidates.pop(piece, {})
        self._owed.pop(piece, None)
        self._passed.add(piece)
        self._settled = False
        waiting: dict[int, tuple[list[P], int]] = {}
        for block in range(-(-data_size // BLOCK)):
            n = min(BLOCK, data_size - block * BLOCK)
            peers = candidates.get(block, [])
            peer = delivered.get(block) or (peers[0] if len(peers) == 1 else None)
            if peer is not None:
                self._credit(peer, n)
            else:
                waiting[block] = (peers, n)
        if waiting:
            self._pending[piece] = waiting
        else:
            self._pending.pop(piece, None)

    def piece_failed(self, piece: int) -> None:
        """Nobody earns this attempt. Its deliverers' requests are used up; the other
        requests still stand: those peers may deliver into the next attempt."""
        delivered = self._delivered.pop(piece, {})
        owed = self._owed.setdefault(piece, {})
        for block in set(self._candidates.get(piece, {})) | set(delivered):
            if block in delivered:
                self._discard(piece, block, delivered[block])
            else:
                owed[block] = owed.get(block, 0) + 1
        self._passed.discard(piece)
        self._pending.pop(piece, None)

    def settle(self, received: Mapping[P, int] | None = None) -> None:
        """The download is complete: no delivery report will come. Give each block still
        waiting to a candidate with bytes not yet credited in *received* (payload bytes
        each peer sent us, exact): of those, or of all candidates when none has any, the
        one that has sent the most verified bytes (the one asked last on a tie)."""
        spare = {p: n - self._totals.get(p, 0) for p, n in (received or {}).items()}
        for waiting in self._pending.values():
            for peers, n in waiting.values():
                if peers:
                    able = [p for p in peers if spare.get(p, 0) >= n] or peers
                    peer = max(reversed(able), key=lambda p: self._totals.get(p, 0))
                    if peer in spare:
                        spare[peer] -= n
                    self._credit(peer, n)
        self._pending.clear()
        self._settled = True

    def totals(self) -> dict[P, int]:
        return dict(self._totals)

    def _credit(self, peer: P, n: int) -> None:
        self._totals[peer] = self._totals.get(peer, 0) + n

    def _discard(self, piece: int, block: int, peer: P) -> None:
        peers = self._candidates.get(piece, {}).get(block)
        if peers is not None and peer in peers:
            peers.remove(peer)
