"""RFC 6962 Merkle tree hashes, computed incrementally over a stream of leaves.

    leaf  = SHA-256(0x00 || data)          here data is an entry hash
    node  = SHA-256(0x01 || left || right)
    empty = SHA-256(b"")

A tree of n leaves splits at the largest power of two below n (RFC 6962 section 2.1).
The builder keeps the "compact range": the roots of the perfect subtrees that cover the
leaves so far, largest first. Folding them from the right gives exactly that split, so the
root of every prefix is available in O(log n) without keeping the leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["EMPTY_ROOT", "MerkleBuilder", "leaf_hash", "merkle_root", "node_hash"]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleBuilder:
    """Append leaves one at a time; ``root()`` is the tree hash of all leaves so far."""

    __slots__ = ("_heights", "_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []  # perfect subtree roots, largest (leftmost) first
        self._heights: list[int] = []
        self.size = 0

    def append(self, data: bytes) -> None:
        h = hashlib.sha256(b"\x00" + data).digest()
        height = 0
        stack, heights = self._stack, self._heights
        # Two perfect subtrees of one height merge into one of the next height.
        while heights and heights[-1] == height:
            h = hashlib.sha256(b"\x01" + stack.pop() + h).digest()
            heights.pop()
            height += 1
        stack.append(h)
        heights.append(height)
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            r = node_hash(left, r)
        return r


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """The RFC 6962 tree hash of *leaves* (each the data of one leaf)."""
    b = MerkleBuilder()
    for leaf in leaves:
        b.append(leaf)
    return b.root()
