"""Issuance records: money in is real (double entry).

When a seller issues voucher codes it signs, and writes into its own ledger
(``voucher.issuance``), one record per batch (domain ``p2pdist/issuance/v1``)::

    {type: p2pdist/voucher-issuance, v: 1, work, collector, count, face, currency, root, ts}

``collector`` is the key that collects the money for these codes, and signs the record:
whoever sells the codes at the merch table (or gives them away) answers for them. ``face``
is what each code was sold for, in minor units: 0 for gift and press codes. ``root`` is
the Merkle root of the batch's code hashes (``vouchers.code_hash``), so that a payment
receipt can prove that the code it spent belongs to the batch (``MerkleProof``) without
the record listing the codes.

The tree: leaves are the code hashes sorted, each hashed as ``H(0x00 || h)``; an inner
node is ``H(0x01 || left || right)``; a level of odd length carries its last node up
unchanged. H is SHA-256. A proof is the leaf's index and its siblings bottom-up (a level
where the node was carried up contributes no sibling), at most 17 for 100,000 codes.

The id of a record is ``SHA-256`` of its signed body.

A sale then books the face value of an issued, once-spent code against the collector:
a sale that a seller invents (no code, or a code of its own) costs that seller exactly
what the statement pays the others from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from p2pdist import _canonical
from p2pdist._signed import (
    MAX_TS,
    as_bytes,
    as_dict,
    as_int,
    as_text,
    check_version,
    envelope,
    read_signed,
)
from p2pdist.errors import MalformedObject
from p2pdist.identity import Identity, verify_signature
from p2pdist.licensing._terms import MAX_PRICE, currency_exponent

__all__ = [
    "ISSUANCE_DOMAIN",
    "ISSUANCE_KIND",
    "MAX_ISSUANCE_SIZE",
    "MAX_PROOF",
    "Issuance",
    "MerkleProof",
    "SignedIssuance",
    "merkle_levels",
    "merkle_proof",
    "merkle_root",
]

ISSUANCE_TYPE: Final = "p2pdist/voucher-issuance"
ISSUANCE_DOMAIN: Final = b"p2pdist/issuance/v1"
ISSUANCE_KIND: Final = "voucher.issuance"
MAX_ISSUANCE_SIZE: Final = 1024
MAX_CODES: Final = 100_000
MAX_PROOF: Final = 17  # ceil(log2(100_000))
_LEAF = b"\x00"
_NODE = b"\x01"


def _leaf(h: bytes) -> bytes:
    return hashlib.sha256(_LEAF + h).digest()


def merkle_levels(code_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree over *code_hashes* (sorted here), leaves first."""
    if not code_hashes:
        raise ValueError("a tree has at least one leaf")
    level = [_leaf(h) for h in sorted(code_hashes)]
    levels = [level]
    while len(level) > 1:
        nxt = [hashlib.sha256(_NODE + level[i] + level[i + 1]).digest()
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(code_hashes: Sequence[bytes]) -> bytes:
    return merkle_levels(code_hashes)[-1][0]


def merkle_proof(levels: list[list[bytes]], index: int) -> tuple[bytes, ...]:
    """The siblings of leaf *index*, bottom-up (see the module)."""
    path = []
    for level in levels[:-1]:
        sib = index ^ 1
        if sib < len(level):
            path.append(level[sib])
        index //= 2
    return tuple(path)


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """That code hash *code* is leaf *index* of a batch of *count* codes under *root*."""

    index: int
    path: tuple[bytes, ...]

    def root_of(self, code: bytes, count: int) -> bytes | None:
        """The root this proof leads to from *code*, or None if its shape does not fit a
        tree of *count* leaves."""
        if not 0 <= self.index < count:
            return None
        node, index, width, path = _leaf(code), self.index, count, list(self.path)
        while width > 1:
            sib = index ^ 1
            if sib < width:
                if not path:
                    return None
                s = path.pop(0)
                node = hashlib.sha256(_NODE + (s + node if index & 1 else node + s)).digest()
            index //= 2
            width = (width + 1) // 2
        return node if not path else None


@dataclass(frozen=True, slots=True)
class Issuance:
    work: bytes
    collector: bytes
    count: int
    face: int
    currency: str
    root: bytes
    ts: datetime

    def __post_init__(self) -> None:
        for name in ("work", "collector", "root"):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 32:
                raise ValueError(f"an issuance's {name} is 32 bytes")
        for name, low, high in (("count", 1, MAX_CODES), ("face", 0, MAX_PRICE)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
                raise ValueError(f"an issuance's {name} is an integer in {low}..{high}")
        if not isinstance(self.currency, str) or currency_exponent(self.currency) is None:
            raise ValueError(f"{self.currency!r} is not an ISO 4217 money currency")
        ts = self.ts
        if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond \
                or not 0 <= ts.timestamp() <= MAX_TS:
            raise ValueError("an issuance's time is an aware datetime in whole seconds")
        object.__setattr__(self, "ts", ts.astimezone(UTC))

    def to_dict(self) -> dict[str, object]:
        return {"collector": self.collector, "count": self.count,
                "currency": self.currency.encode(), "face": self.face, "root": self.root,
                "ts": int(self.ts.timestamp()), "type": ISSUANCE_TYPE, "v": 1,
                "work": self.work}

    @classmethod
    def from_dict(cls, raw: Any) -> Issuance:
        d = as_dict(raw, "issuance record", frozenset(
            {"type", "v", "work", "collector", "count", "face", "currency", "root", "ts"}))
        check_version(d, ISSUANCE_TYPE, "issuance record")
        try:
            return cls(work=as_bytes(d["work"], "work id", 32),
                       collector=as_bytes(d["collector"], "collector key", 32),
                       count=as_int(d["count"], "count", 1, MAX_CODES),
                       face=as_int(d["face"], "face value", 0, MAX_PRICE),
                       currency=as_text(d["currency"], "currency", max_len=3),
                       root=as_bytes(d["root"], "Merkle root", 32),
                       ts=datetime.fromtimestamp(as_int(d["ts"], "time", 0, MAX_TS), UTC))
        except ValueError as e:
            raise MalformedObject(f"the issuance record is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class SignedIssuance:
    body: bytes
    issuance: Issuance
    sig: bytes

    @property
    def id(self) -> bytes:
        return hashlib.sha256(self.body).digest()

    @classmethod
    def sign(cls, issuance: Issuance, collector: Identity) -> SignedIssuance:
        if collector.public_key != issuance.collector:
            raise ValueError("only the collector it names signs an issuance record")
        body = _canonical.encode(issuance.to_dict())
        return cls(body, issuance, collector.sign(domain=ISSUANCE_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(ISSUANCE_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedIssuance:
        """Parse (size first); MalformedObject for anything else. verify() checks the
        signature."""
        body, d, sig = read_signed(data, ISSUANCE_TYPE, max_size=MAX_ISSUANCE_SIZE,
                                   what="issuance record")
        return cls(body, Issuance.from_dict(d), sig)

    def verify(self) -> None:
        """InvalidSignature unless its collector signed these bytes."""
        verify_signature(pk=self.issuance.collector, domain=ISSUANCE_DOMAIN,
                         message=self.body, signature=self.sig)
