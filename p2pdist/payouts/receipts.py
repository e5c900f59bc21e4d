"""TransferReceipt: a downloader's signed acknowledgement of verified bytes received.

A receipt is cumulative and monotonic per (work, uploader, downloader): each new one
carries a higher ``seq`` and at least as many bytes, so only the latest one counts. On the
wire (``POST /receipts``) and in the ledger it travels in an envelope::

    {"type": "p2pdist/signed-receipt", "v": 1,
     "receipt": <canonical bencode of the receipt>, "sig": <64 bytes>}

The signature is ed25519 by the downloader over ``b"p2pdist/receipt/v1" || 0x00 ||
receipt bytes``. As with the license manifest, the receipt stays a byte string inside the
envelope, so verification runs on exactly the bytes that were signed.

Refusals, for the node API to map to 4xx responses (see rejection_reason):

    ReceiptTooLarge   (MalformedObject)    "oversized"       size bound, before parsing
    MalformedObject                        "malformed"       not canonical, bad fields
    InvalidSignature                       "bad-signature"   opaque, as for every signature
    ReceiptRejected   (VerificationError)  "wrong-uploader", "unknown-work", "over-size",
                                           "replayed", "rollback"
"""

from __future__ import annotations

import builtins
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from p2pdist import _canonical
from p2pdist.errors import InvalidSignature, MalformedObject, VerificationError
from p2pdist.identity import Identity, fingerprint, verify_signature

__all__ = [
    "DOMAIN",
    "ENVELOPE_TYPE",
    "MAX_RECEIPT_SIZE",
    "REASONS",
    "RECEIPT_SLACK",
    "RECEIPT_TYPE",
    "SERVED_LOST_SECONDS",
    "SERVED_TYPE",
    "ReceiptRejected",
    "ReceiptTooLarge",
    "SignedReceipt",
    "TransferReceipt",
    "next_receipt",
    "parse_served",
    "parse_served_rate",
    "rejection_reason",
    "served_backing",
    "served_record",
    "verify_receipt",
]

RECEIPT_TYPE: Final = "p2pdist/transfer-receipt"
ENVELOPE_TYPE: Final = "p2pdist/signed-receipt"
DOMAIN: Final = b"p2pdist/receipt/v1"
# seq and bytes are stored as SQLite INTEGERs in the ledger: signed 64-bit.
MAX_COUNT: Final = 2**63 - 1
# 9999-12-31T23:59:59Z, the last second a datetime can hold.
MAX_TS: Final = 253_402_300_799
# Every field has a fixed size but the three integers: the smallest valid envelope is 324
# bytes, the largest (seq and bytes at 2**63 - 1, ts in year 9999) 371. 512 keeps room for
# a longer type string in a later version while staying tiny, so the node API can refuse a
# larger POST body before reading it. tests/unit/test_receipts.py pins both ends.
MAX_RECEIPT_SIZE: Final = 512

# What an uploader records in its own ledger (kind "upload.served") of the payload bytes it
# sent a proven downloader key in a work, cumulative: the evidence behind the receipts it
# keeps. Unsigned: the node's hash chain and signed checkpoint vouch for it.
SERVED_TYPE: Final = "p2pdist/served"
# What a kept receipt may acknowledge beyond the served record: the uploader's counts of
# its connections lag what the downloader verified by up to a tick.
RECEIPT_SLACK: Final = 128 * 1024
# A served record may carry the rate (bytes a second) the node was sending that key at
# (the highest of its session so far); a record without one (rate 0) says the sending to
# that key had stopped (the node wrote it at a clean close).
# A node killed while sending loses the bytes sent since its last record: after such a
# record, a key's backing is its count plus what that rate sends in SERVED_LOST_SECONDS
# (the save interval, a tick, and as much again for a rate still rising), capped by the
# work's size (served_backing).
SERVED_LOST_SECONDS: Final = 4
_SERVED_KEYS = frozenset({"type", "v", "work", "downloader", "bytes"})
_SERVED_RATE_KEYS = _SERVED_KEYS | {"rate"}

REASONS: Final = ("wrong-uploader", "unknown-work", "over-size", "replayed", "rollback")


class ReceiptRejected(VerificationError):
    """A well-signed receipt that this uploader must not store; ``reason`` says why."""

    def __init__(self, message: str, *, reason: str, remedy: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown receipt rejection reason {reason!r}")
        super().__init__(message, remedy=remedy)
        self.reason = reason


class ReceiptTooLarge(MalformedObject):
    """An envelope over MAX_RECEIPT_SIZE, refused before it is parsed."""

    reason = "oversized"


def rejection_reason(exc: VerificationError) -> str:
    """The short reason code of a refused receipt, for the node API's 4xx responses."""
    if isinstance(exc, ReceiptRejected | ReceiptTooLarge):
        return exc.reason
    if isinstance(exc, InvalidSignature):
        return "bad-signature"
    if isinstance(exc, MalformedObject):
        return "malformed"
    return "rejected"


def _dict(v: Any, what: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise MalformedObject(f"the {what} is not a dict")
    if v.keys() != keys:
        extra = sorted(v.keys() - keys)
        missing = sorted(keys - v.keys())
        raise MalformedObject(f"the {what} has unexpected fields {extra} or lacks {missing}")
    return v


def _int(v: Any, what: str, low: int, high: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise MalformedObject(f"the receipt's {what} is not an integer")
    if not low <= v <= high:
        raise MalformedObject(f"the receipt's {what} {v} is outside {low}..{high}")
    return v


def _bytes(v: Any, what: str, n: int) -> bytes:
    if not isinstance(v, bytes) or len(v) != n:
        raise MalformedObject(f"the {what} is not {n} bytes")
    return v


def _check_version(d: dict[str, Any], type_: str, what: str) -> None:
    if d["type"] != type_.encode():
        raise MalformedObject(f"this is not a {what} (type {d['type']!r})")
    if d["v"] != 1:
        raise MalformedObject(
            f"the {what} has version {d['v']!r}; this p2pdist reads version 1",
            remedy="upgrade p2pdist",
        )


_RECEIPT_KEYS = frozenset({"type", "v", "work", "uploader", "downloader", "seq", "bytes", "ts"})
_ENVELOPE_KEYS = frozenset({"type", "v", "receipt", "sig"})


@dataclass(frozen=True, slots=True)
class TransferReceipt:
    """*downloader* received *bytes* verified bytes of *work* from *uploader*, so far.

    ``work`` is the SHA-256 of the torrent's info dict; ``uploader`` and ``downloader`` are
    ed25519 public keys; ``bytes`` is cumulative, counted only for pieces that passed
    their hash check; ``seq`` numbers the receipts of one (work, uploader, downloader).
    """

    work: bytes
    uploader: bytes
    downloader: bytes
    seq: int
    bytes: int  # the field name the design uses; builtins.bytes below means the type
    ts: datetime

    def __post_init__(self) -> None:
        # The same rules as from_dict: whatever can be signed can be verified.
        for name, v in (("work", self.work), ("uploader", self.uploader),
                        ("downloader", self.downloader)):
            if not isinstance(v, bytes) or len(v) != 32:
                raise ValueError(f"a receipt's {name} is 32 bytes")
        if self.uploader == self.downloader:
            raise ValueError("a receipt's uploader and downloader are different keys")
        for name, n, low in (("seq", self.seq, 1), ("bytes", self.bytes, 0)):
            if not isinstance(n, int) or isinstance(n, bool) or not low <= n <= MAX_COUNT:
                raise ValueError(f"a receipt's {name} is an integer in {low}..2**63-1")
        ts = self.ts
        if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond:
            raise ValueError("a receipt's ts is an aware datetime in whole seconds")
        if not 0 <= ts.timestamp() <= MAX_TS:
            raise ValueError("a receipt's ts is out of range")
        if ts.tzinfo is not UTC:
            # Equal datetimes in other zones would compare equal yet differ in repr.
            object.__setattr__(self, "ts", ts.astimezone(UTC))

    @property
    def key(self) -> tuple[builtins.bytes, builtins.bytes, builtins.bytes]:
        """The (work, uploader, downloader) that this receipt's seq counts within."""
        return (self.work, self.uploader, self.downloader)

    def to_dict(self) -> dict[str, object]:
        return {
            "bytes": self.bytes,
            "downloader": self.downloader,
            "seq": self.seq,
            "ts": int(self.ts.timestamp()),
            "type": RECEIPT_TYPE,
            "uploader": self.uploader,
            "v": 1,
            "work": self.work,
        }

    def signed_bytes(self) -> builtins.bytes:
        return _canonical.encode(self.to_dict())

    @classmethod
    def from_bytes(cls, data: builtins.bytes) -> TransferReceipt:
        """Parse canonical receipt bytes; MalformedObject for anything else."""
        d = _canonical.decode(data, max_size=MAX_RECEIPT_SIZE, what="transfer receipt")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, raw: Any) -> TransferReceipt:
        d = _dict(raw, "transfer receipt", _RECEIPT_KEYS)
        _check_version(d, RECEIPT_TYPE, "transfer receipt")
        uploader = _bytes(d["uploader"], "receipt's uploader key", 32)
        downloader = _bytes(d["downloader"], "receipt's downloader key", 32)
        if uploader == downloader:
            raise MalformedObject("the receipt names the same key as uploader and downloader")
        return cls(
            work=_bytes(d["work"], "receipt's work id", 32),
            uploader=uploader,
            downloader=downloader,
            seq=_int(d["seq"], "seq", 1, MAX_COUNT),
            bytes=_int(d["bytes"], "byte count", 0, MAX_COUNT),
            ts=datetime.fromtimestamp(_int(d["ts"], "time", 0, MAX_TS), UTC),
        )


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    """The receipt bytes exactly as signed, the receipt parsed from them, the signature.

    ``receipt`` is always parsed from ``receipt_bytes`` (it is not an argument), so the
    bytes the signature covers and the receipt that policy checks read cannot disagree.
    Bytes that do not parse raise MalformedObject.
    """

    receipt_bytes: bytes
    receipt: TransferReceipt = field(init=False)
    sig: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.receipt_bytes, bytes) or not isinstance(self.sig, bytes):
            raise TypeError("receipt_bytes and sig are bytes")
        if len(self.sig) != 64:
            raise MalformedObject("the receipt signature is not 64 bytes")
        object.__setattr__(self, "receipt", TransferReceipt.from_bytes(self.receipt_bytes))

    @classmethod
    def sign(cls, receipt: TransferReceipt, identity: Identity) -> SignedReceipt:
        """Sign *receipt* as its downloader; ValueError if *identity* is someone else."""
        if identity.public_key != receipt.downloader:
            raise ValueError(
                f"only the downloader signs a receipt; this is {fingerprint(identity.public_key)}"
                f", the receipt's downloader is {fingerprint(receipt.downloader)}"
            )
        data = receipt.signed_bytes()
        # Not cls(...): that would parse back the bytes just encoded from *receipt*, a
        # round trip the property tests pin; skipping it saves a third of the cost of signing.
        signed = object.__new__(cls)
        for name, value in (("receipt_bytes", data), ("receipt", receipt),
                            ("sig", identity.sign(domain=DOMAIN, message=data))):
            object.__setattr__(signed, name, value)
        return signed

    def to_dict(self) -> dict[str, object]:
        return {"receipt": self.receipt_bytes, "sig": self.sig, "type": ENVELOPE_TYPE, "v": 1}

    def to_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedReceipt:
        """Parse an envelope as received; ReceiptTooLarge or MalformedObject if it is bad."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("from_bytes() takes bytes")
        if len(data) > MAX_RECEIPT_SIZE:
            raise ReceiptTooLarge(
                f"signed receipt is too large ({len(data)} bytes, limit {MAX_RECEIPT_SIZE})"
            )
        d = _canonical.decode(data, max_size=MAX_RECEIPT_SIZE, what="signed receipt")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, raw: Any) -> SignedReceipt:
        d = _dict(raw, "signed receipt", _ENVELOPE_KEYS)
        _check_version(d, ENVELOPE_TYPE, "signed receipt")
        rb = d["receipt"]
        if not isinstance(rb, bytes):
            raise MalformedObject("the signed receipt holds no receipt bytes")
        sig = _bytes(d["sig"], "receipt signature", 64)
        return cls(rb, sig)


def verify_receipt(
    signed: SignedReceipt,
    *,
    uploader: bytes | None = None,
    work_size: int | None = None,
    known_works: Container[bytes] | None = None,
    previous: TransferReceipt | None = None,
) -> None:
    """Verify a received receipt before an uploader stores it.

    Checks, in order (a check whose argument is None is skipped):
      (1) the receipt bytes are signed by the receipt's downloader;
      (2) it names *uploader* as the uploader                      ("wrong-uploader");
      (3) its work is in *known_works*                             ("unknown-work");
      (4) its bytes do not exceed *work_size*                      ("over-size");
      (5) against *previous*, the latest stored receipt for the same (work, uploader,
          downloader): an identical receipt is a replay ("replayed"); otherwise seq must
          grow and bytes must not shrink ("rollback").
    Returns None or raises InvalidSignature (opaque) or ReceiptRejected (with a reason).
    ValueError if *previous* is for another (work, uploader, downloader): a caller bug.
    """
    r = signed.receipt
    if previous is not None and previous.key != r.key:
        raise ValueError("previous is a receipt for another (work, uploader, downloader)")
    # (1) signature: opaque on failure
    verify_signature(pk=r.downloader, domain=DOMAIN, message=signed.receipt_bytes,
                     signature=signed.sig)
    # (2) addressed to this uploader
    if uploader is not None and r.uploader != uploader:
        raise ReceiptRejected(
            f"the receipt credits another uploader ({fingerprint(r.uploader)}), "
            f"not this node ({fingerprint(uploader)})",
            reason="wrong-uploader", remedy="send each receipt to the uploader it names",
        )
    # (3) for a work this node serves
    if known_works is not None and r.work not in known_works:
        raise ReceiptRejected(
            f"the receipt is for a work this node does not serve ({r.work.hex()})",
            reason="unknown-work",
        )
    # (4) never more than the whole work
    if work_size is not None and r.bytes > work_size:
        raise ReceiptRejected(
            f"the receipt acknowledges {r.bytes} bytes of a work of {work_size} bytes",
            reason="over-size",
        )
    # (5) cumulative and monotonic
    if previous is not None:
        if r == previous:
            raise ReceiptRejected(
                f"receipt seq {r.seq} was already received", reason="replayed",
                remedy="nothing to do: the receipt is stored already",
            )
        if r.seq <= previous.seq or r.bytes < previous.bytes:
            raise ReceiptRejected(
                f"the receipt goes backwards: seq {r.seq}, {r.bytes} bytes after "
                f"seq {previous.seq}, {previous.bytes} bytes",
                reason="rollback",
            )


def next_receipt(
    previous: TransferReceipt | None,
    *,
    work: bytes,
    uploader: bytes,
    downloader: bytes,
    total_bytes: int,
    now: datetime,
) -> TransferReceipt:
    """The next cumulative receipt after *previous* (None for the first one).

    ``seq`` is previous.seq + 1 (or 1); bytes are *total_bytes*, never fewer than
    previous.bytes, so the stream stays monotonic even if a restart lost some count;
    ``ts`` is *now* (aware) truncated to the second, in UTC.
    ValueError if *previous* is for another (work, uploader, downloader).
    """
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if total_bytes < 0:
        raise ValueError("total_bytes is a count of bytes, not negative")
    seq, floor = 1, 0
    if previous is not None:
        if previous.key != (work, uploader, downloader):
            raise ValueError("previous is a receipt for another (work, uploader, downloader)")
        seq, floor = previous.seq + 1, previous.bytes
    return TransferReceipt(
        work=work, uploader=uploader, downloader=downloader, seq=seq,
        bytes=max(total_bytes, floor),
        ts=now.astimezone(UTC).replace(microsecond=0),
    )


def served_record(work: bytes, downloader: bytes, n: int, rate: int = 0) -> bytes:
    """The ledger payload saying this node has sent *downloader* *n* bytes of *work*, and
    was sending it *rate* bytes a second (0: not sending any more)."""
    if len(work) != 32 or len(downloader) != 32 or not 0 <= n <= MAX_COUNT \
            or not 0 <= rate <= MAX_COUNT:
        raise ValueError("a served record is a 32-byte work, a 32-byte key and a count")
    d: dict[str, Any] = {"bytes": n, "downloader": downloader, "type": SERVED_TYPE,
                         "v": 1, "work": work}
    if rate:
        d["rate"] = rate
    return _canonical.encode(d)


def parse_served(payload: bytes) -> tuple[bytes, bytes, int]:
    """(work, downloader, bytes) of a served record; MalformedObject for anything else."""
    work, downloader, n, _ = parse_served_rate(payload)
    return work, downloader, n


def parse_served_rate(payload: bytes) -> tuple[bytes, bytes, int, int]:
    """(work, downloader, bytes, rate) of a served record (rate 0 if it has none)."""
    d = _canonical.decode(payload, max_size=256, what="served record")
    d = _dict(d, "served record",
              _SERVED_RATE_KEYS if isinstance(d, dict) and "rate" in d else _SERVED_KEYS)
    _check_version(d, SERVED_TYPE, "served record")
    return (_bytes(d["work"], "served record's work id", 32),
            _bytes(d["downloader"], "served record's downloader key", 32),
            _int(d["bytes"], "served bytes", 0, MAX_COUNT),
            _int(d.get("rate", 0), "served rate", 0, MAX_COUNT))


def served_backing(n: int, rate: int, size: int | None = None) -> int:
    """What a key's latest served record (*n* bytes, at *rate*) backs, RECEIPT_SLACK left
    out: *n*, plus what *rate* sends in SERVED_LOST_SECONDS if the node may have been
    killed while sending (rate > 0), capped by the work's *size* (if known)."""
    if not rate:
        return n
    backed = n + rate * SERVED_LOST_SECONDS
    return backed if size is None else max(n, min(backed, size))
