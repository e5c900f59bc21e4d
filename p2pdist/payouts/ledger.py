"""The append-only ledger: hash-chained entries per node in SQLite, checkpoints, bundles.

Each node has one chain. An entry is ``{node, seq, kind, payload, prev}``: ``seq`` counts
1, 2, 3… per node, ``kind`` says what the opaque ``payload`` is (``receipt.received``,
``receipt.issued``, ``payment``…), ``prev`` is the hash of the node's previous entry (32
zero bytes for the first) and the entry's own hash is::

    SHA-256(b"p2pdist/ledger-entry/v1" || 0x00 || canonical bencode of the entry)

A **checkpoint** is the node's signature over its chain so far (RFC 6962 Merkle root over
the entry hashes, in seq order)::

    {"type": "p2pdist/checkpoint", "v": 1, "node", "size", "head", "root", "ts"}

signed under ``b"p2pdist/checkpoint/v1"`` and carried in an envelope
``{"type": "p2pdist/signed-checkpoint", "v": 1, "checkpoint": <bytes>, "sig": <64 bytes>}``.
Two checkpoints of one node with the same size and different heads prove a fork.

A **bundle** is what ``receipts export`` writes and anyone verifies offline::

    {"type": "p2pdist/ledger-bundle", "v": 1, "node", "entries": [entry…],
     "checkpoint": <signed checkpoint envelope>}

Storage: SQLite in WAL mode with ``synchronous=FULL``; each append batch and each import
is one ``BEGIN IMMEDIATE`` transaction, durable once the call returns. Triggers refuse
every UPDATE and DELETE, so the only way to change history is to go around SQLite, and
``verify()`` finds that.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from p2pdist import _canonical
from p2pdist._sqlite import open_durable, storage_error
from p2pdist.errors import (
    ForkDetected,
    InvalidSignature,
    LedgerCorrupt,
    MalformedObject,
    StorageError,
)
from p2pdist.identity import Identity, fingerprint, key_to_text, verify_signature
from p2pdist.payouts._merkle import MerkleBuilder

__all__ = [
    "BUNDLE_TYPE",
    "CHECKPOINT_DOMAIN",
    "CHECKPOINT_TYPE",
    "ENTRY_DOMAIN",
    "MAX_BUNDLE_ENTRIES",
    "MAX_BUNDLE_SIZE",
    "MAX_KIND_LEN",
    "MAX_PAYLOAD_SIZE",
    "ZERO_HASH",
    "Bundle",
    "Checkpoint",
    "Entry",
    "ImportReport",
    "Ledger",
    "PayloadCheck",
    "SignedCheckpoint",
    "VerifyReport",
    "entry_hash",
    "verify_bundle",
]

ENTRY_DOMAIN: Final = b"p2pdist/ledger-entry/v1"
CHECKPOINT_DOMAIN: Final = b"p2pdist/checkpoint/v1"
CHECKPOINT_TYPE: Final = "p2pdist/checkpoint"
SIGNED_CHECKPOINT_TYPE: Final = "p2pdist/signed-checkpoint"
BUNDLE_TYPE: Final = "p2pdist/ledger-bundle"
ZERO_HASH: Final = bytes(32)
MAX_PAYLOAD_SIZE: Final = 64 * 1024
MAX_KIND_LEN: Final = 64
# The largest checkpoint envelope is ~330 bytes; 1 KiB leaves room and stays tiny.
MAX_CHECKPOINT_SIZE: Final = 1024
MAX_BUNDLE_SIZE: Final = 256 * 1024 * 1024
MAX_BUNDLE_ENTRIES: Final = 1_000_000
# seq, size and ts are SQLite INTEGERs: signed 64-bit.
MAX_INT: Final = 2**63 - 1
MAX_TS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
SCHEMA_VERSION: Final = 1

_T = TypeVar("_T")
_KIND_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ENTRY_PREFIX = ENTRY_DOMAIN + b"\0"

PayloadCheck = Callable[["Entry"], None]
"""Called once per entry by verify_bundle/import_bundle/verify: raise VerificationError
to refuse it. The ledger checks hashes only; the receipt layer plugs in its signatures."""


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise ValueError(
            f"an entry kind is 1..{MAX_KIND_LEN} of a-z 0-9 . _ -, starting with a letter "
            f"or digit, not {kind!r}"
        )
    return kind


def _check_payload(payload: object) -> bytes:
    if not isinstance(payload, bytes):
        raise TypeError("an entry payload is bytes")
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise ValueError(f"an entry payload is at most {MAX_PAYLOAD_SIZE} bytes")
    return payload


def _entry_bytes(node: bytes, seq: int, kind: bytes, payload: bytes, prev: bytes) -> bytes:
    # Exactly _canonical.encode({"kind", "node", "payload", "prev", "seq"}) (keys sorted),
    # spelled out because it runs once per entry on every verify; a property test pins it.
    return b"d4:kind%d:%s4:node32:%s7:payload%d:%s4:prev32:%s3:seqi%dee" % (
        len(kind), kind, node, len(payload), payload, prev, seq)


def entry_hash(*, node: bytes, seq: int, kind: str, payload: bytes, prev: bytes) -> bytes:
    """The hash of one entry: SHA-256 over the entry domain and its canonical bencode."""
    return hashlib.sha256(
        _ENTRY_PREFIX + _entry_bytes(node, seq, kind.encode("ascii"), payload, prev)
    ).digest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One link of a node's chain. ``hash`` is derived, never an argument."""

    node: bytes
    seq: int
    kind: str
    payload: bytes
    prev: bytes
    hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.node, bytes) or len(self.node) != 32:
            raise ValueError("an entry's node is a 32-byte public key")
        if not isinstance(self.prev, bytes) or len(self.prev) != 32:
            raise ValueError("an entry's prev is a 32-byte hash")
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) \
                or not 1 <= self.seq <= MAX_INT:
            raise ValueError("an entry's seq is an integer in 1..2**63-1")
        _check_kind(self.kind)
        _check_payload(self.payload)
        object.__setattr__(self, "hash", entry_hash(
            node=self.node, seq=self.seq, kind=self.kind, payload=self.payload, prev=self.prev))

    def to_dict(self) -> dict[str, object]:
        """The bencode dict: what the hash covers, and what a bundle carries."""
        return {"kind": self.kind, "node": self.node, "payload": self.payload,
                "prev": self.prev, "seq": self.seq}

    def to_json(self) -> dict[str, object]:
        return {"node": key_to_text(self.node), "seq": self.seq, "kind": self.kind,
                "payload": self.payload.hex(), "prev": self.prev.hex(),
                "hash": self.hash.hex()}

    @classmethod
    def _trusted(cls, node: bytes, seq: int, kind: str, payload: bytes, prev: bytes,
                 hash_: bytes) -> Entry:
        # For rows this module just wrote or checked: skips re-validating and re-hashing.
        e = object.__new__(cls)
        set_ = object.__setattr__
        set_(e, "node", node)
        set_(e, "seq", seq)
        set_(e, "kind", kind)
        set_(e, "payload", payload)
        set_(e, "prev", prev)
        set_(e, "hash", hash_)
        return e


# --- small strict readers of decoded bencode ------------------------------------------


def _dict(v: Any, what: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise MalformedObject(f"the {what} is not a dict")
    if v.keys() != keys:
        extra = sorted(v.keys() - keys)
        missing = sorted(keys - v.keys())
        raise MalformedObject(f"the {what} has unexpected fields {extra} or lacks {missing}")
    return v


def _int(v: Any, what: str, low: int, high: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise MalformedObject(f"the {what} is not an integer in {low}..{high}")
    return v


def _bytes(v: Any, what: str, n: int) -> bytes:
    if not isinstance(v, bytes) or len(v) != n:
        raise MalformedObject(f"the {what} is not {n} bytes")
    return v


def _check_version(d: dict[str, Any], type_: str, what: str) -> None:
    # Version first: a later version may have other fields, and "upgrade" is the remedy.
    if not isinstance(d, dict) or d.get("type") != type_.encode():
        raise MalformedObject(f"this is not a {what} (type {d.get('type')!r})"
                              if isinstance(d, dict) else f"this is not a {what}")
    if d.get("v") != 1:
        raise MalformedObject(
            f"the {what} has version {d.get('v')!r}; this p2pdist reads version 1",
            remedy="upgrade p2pdist",
        )


_CHECKPOINT_KEYS = frozenset({"type", "v", "node", "size", "head", "root", "ts"})
_ENVELOPE_KEYS = frozenset({"type", "v", "checkpoint", "sig"})
_BUNDLE_KEYS = frozenset({"type", "v", "node", "entries", "checkpoint"})
_ENTRY_KEYS = frozenset({"node", "seq", "kind", "payload", "prev"})


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """*node*'s chain had *size* entries, the last one *head*, with Merkle root *root*."""

    node: bytes
    size: int
    head: bytes
    root: bytes
    ts: datetime

    def __post_init__(self) -> None:
        for name, v in (("node", self.node), ("head", self.head), ("root", self.root)):
            if not isinstance(v, bytes) or len(v) != 32:
                raise ValueError(f"a checkpoint's {name} is 32 bytes")
        if not isinstance(self.size, int) or isinstance(self.size, bool) \
                or not 0 <= self.size <= MAX_INT:
            raise ValueError("a checkpoint's size is an integer in 0..2**63-1")
        ts = self.ts
        if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond:
            raise ValueError("a checkpoint's ts is an aware datetime in whole seconds")
        if not 0 <= ts.timestamp() <= MAX_TS:
            raise ValueError("a checkpoint's ts is out of range")
        if ts.tzinfo is not UTC:
            object.__setattr__(self, "ts", ts.astimezone(UTC))

    def to_dict(self) -> dict[str, object]:
        return {"head": self.head, "node": self.node, "root": self.root, "size": self.size,
                "ts": int(self.ts.timestamp()), "type": CHECKPOINT_TYPE, "v": 1}

    def signed_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        d = _canonical.decode(data, max_size=MAX_CHECKPOINT_SIZE, what="checkpoint")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, raw: Any) -> Checkpoint:
        _check_version(raw, CHECKPOINT_TYPE, "checkpoint")
        d = _dict(raw, "checkpoint", _CHECKPOINT_KEYS)
        return cls(
            node=_bytes(d["node"], "checkpoint's node key", 32),
            size=_int(d["size"], "checkpoint's size", 0, MAX_INT),
            head=_bytes(d["head"], "checkpoint's head", 32),
            root=_bytes(d["root"], "checkpoint's root", 32),
            ts=datetime.fromtimestamp(_int(d["ts"], "checkpoint's time", 0, MAX_TS), UTC),
        )


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """The checkpoint bytes as signed, the checkpoint parsed from them, the signature.

    Construction only parses; ``verify()`` checks the signature by the checkpoint's node.
    """

    checkpoint_bytes: bytes
    checkpoint: Checkpoint = field(init=False)
    sig: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint_bytes, bytes) or not isinstance(self.sig, bytes):
            raise TypeError("checkpoint_bytes and sig are bytes")
        if len(self.sig) != 64:
            raise MalformedObject("the checkpoint signature is not 64 bytes")
        object.__setattr__(self, "checkpoint", Checkpoint.from_bytes(self.checkpoint_bytes))

    @classmethod
    def sign(cls, checkpoint: Checkpoint, identity: Identity) -> SignedCheckpoint:
        """Sign *checkpoint* as its node; ValueError if *identity* is another key."""
        if identity.public_key != checkpoint.node:
            raise ValueError(
                f"only the node signs its checkpoint; this is {fingerprint(identity.public_key)}"
                f", the checkpoint's node is {fingerprint(checkpoint.node)}"
            )
        data = checkpoint.signed_bytes()
        return cls(data, identity.sign(domain=CHECKPOINT_DOMAIN, message=data))

    def verify(self) -> None:
        """Raise InvalidSignature (opaque) unless the checkpoint's node signed it."""
        verify_signature(pk=self.checkpoint.node, domain=CHECKPOINT_DOMAIN,
                         message=self.checkpoint_bytes, signature=self.sig)

    def to_dict(self) -> dict[str, object]:
        return {"checkpoint": self.checkpoint_bytes, "sig": self.sig,
                "type": SIGNED_CHECKPOINT_TYPE, "v": 1}

    def to_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedCheckpoint:
        d = _canonical.decode(data, max_size=MAX_CHECKPOINT_SIZE, what="signed checkpoint")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, raw: Any) -> SignedCheckpoint:
        _check_version(raw, SIGNED_CHECKPOINT_TYPE, "signed checkpoint")
        d = _dict(raw, "signed checkpoint", _ENVELOPE_KEYS)
        cb = d["checkpoint"]
        if not isinstance(cb, bytes) or len(cb) > MAX_CHECKPOINT_SIZE:
            raise MalformedObject("the signed checkpoint holds no checkpoint bytes")
        return cls(cb, _bytes(d["sig"], "checkpoint signature", 64))


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified export of one node's chain: every entry from seq 1, and its checkpoint."""

    node: bytes
    entries: tuple[Entry, ...]
    checkpoint: SignedCheckpoint

    def to_dict(self) -> dict[str, object]:
        return {"checkpoint": self.checkpoint.to_dict(),
                "entries": [e.to_dict() for e in self.entries],
                "node": self.node, "type": BUNDLE_TYPE, "v": 1}

    def to_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())


@dataclass(frozen=True, slots=True)
class ImportReport:
    node: bytes
    added: int
    present: int
    checkpoint_stored: bool

    def to_dict(self) -> dict[str, object]:
        return {"node": key_to_text(self.node), "added": self.added, "present": self.present,
                "checkpoint_stored": self.checkpoint_stored}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a successful ``Ledger.verify()`` walked (a failed one raises instead)."""

    nodes: int
    entries: int
    checkpoints: int

    def to_dict(self) -> dict[str, object]:
        return {"ok": True, "nodes": self.nodes, "entries": self.entries,
                "checkpoints": self.checkpoints}


def _corrupt(node: bytes, seq: int, reason: str, what: str) -> LedgerCorrupt:
    return LedgerCorrupt(f"entry {seq} of node {key_to_text(node)}: {what}",
                         node=node, seq=seq, reason=reason)


def _fork(node: bytes, size: int, a: bytes, b: bytes) -> ForkDetected:
    return ForkDetected(
        f"node {key_to_text(node)} signed two different histories of {size} entries "
        f"(heads {a.hex()[:16]}… and {b.hex()[:16]}…)",
        node=node, seq=size, heads=(a, b))


def _check_against(cp: Checkpoint, size: int, head: bytes, root: bytes) -> None:
    if cp.size != size or cp.head != head or cp.root != root:
        raise _corrupt(cp.node, cp.size, "checkpoint-mismatch",
                       "the signed checkpoint does not match the entries "
                       "(size, head or Merkle root differ)")


# A bundle row: (node, seq, kind, payload, prev, the entry's exact bytes or None). The
# fields are as decoded (any type); verify_bundle checks them.
_Row = tuple[Any, Any, Any, Any, Any, bytes | None]

_ENV_HEAD = b"d10:checkpoint"
_ENV_TAIL = b"4:type25:p2pdist/signed-checkpoint1:vi1ee"
_ENTRIES_HEAD = b"7:entriesl"
_BUNDLE_TAIL = b"4:type21:p2pdist/ledger-bundle1:vi1ee"


def _bundle_bytes(node: bytes, signed: SignedCheckpoint, entries: Iterable[Entry]) -> bytes:
    # Exactly _canonical.encode(Bundle(...).to_dict()); a property test pins it.
    return b"".join([
        _ENV_HEAD, signed.to_bytes(), _ENTRIES_HEAD,
        *(_entry_bytes(e.node, e.seq, e.kind.encode("ascii"), e.payload, e.prev)
          for e in entries),
        b"e4:node32:", node, _BUNDLE_TAIL])


def _parse_bundle_fast(data: bytes) -> tuple[bytes, bytes, bytes, list[_Row]] | None:
    """Read a bundle laid out exactly as _bundle_bytes writes it, or return None.

    Sound by construction: every piece read is re-encoded and compared with the bytes it
    came from, so a result means the generic strict decoder would return the same values.
    Anything else (non-canonical, truncated, another version) returns None and goes to
    the generic decoder, whose errors say what is wrong.
    """
    try:
        if not data.startswith(_ENV_HEAD + b"d10:checkpoint"):
            return None
        pos = len(_ENV_HEAD) + 14
        colon = data.index(b":", pos, pos + 6)
        cp_bytes = data[colon + 1 : colon + 1 + int(data[pos:colon])]
        pos = colon + 1 + len(cp_bytes)
        sig = data[pos + 8 : pos + 72]
        env = b"d10:checkpoint%d:%s3:sig64:%s%s" % (len(cp_bytes), cp_bytes, sig, _ENV_TAIL)
        if data[len(_ENV_HEAD) : len(_ENV_HEAD) + len(env)] != env:
            return None
        pos = len(_ENV_HEAD) + len(env)
        if data[pos : pos + len(_ENTRIES_HEAD)] != _ENTRIES_HEAD:
            return None
        pos += len(_ENTRIES_HEAD)
        rows: list[_Row] = []
        limit = MAX_BUNDLE_ENTRIES
        index = data.index
        while data[pos : pos + 7] == b"d4:kind":
            if len(rows) >= limit:
                return None
            c = index(b":", pos + 7, pos + 11)
            k0 = c + 1
            kind = data[k0 : k0 + int(data[pos + 7 : c])]
            p = k0 + len(kind) + 9
            node = data[p : p + 32]
            c = index(b":", p + 41, p + 48)
            payload = data[c + 1 : c + 1 + int(data[p + 41 : c])]
            p = c + 1 + len(payload) + 9
            prev = data[p : p + 32]
            e = index(b"e", p + 38, p + 60)
            seq = int(data[p + 38 : e])
            body = _entry_bytes(node, seq, kind, payload, prev)
            end = pos + len(body)
            if data[pos:end] != body:
                return None
            rows.append((node, seq, kind, payload, prev, body))
            pos = end
        node = data[pos + 10 : pos + 42]
        if data[pos:] != b"e4:node32:" + node + _BUNDLE_TAIL or len(node) != 32:
            return None
    except ValueError:
        return None
    return node, cp_bytes, sig, rows


_GENERIC_MAX_TOKENS: Final = 250_000


def _parse_bundle(data: bytes) -> tuple[bytes, SignedCheckpoint, list[_Row]]:
    fast = _parse_bundle_fast(data)
    if fast is not None:
        node, cp_bytes, sig, rows = fast
        return node, SignedCheckpoint(cp_bytes, sig), rows
    # Every bundle `receipts export` writes took the fast path: this one was edited or
    # written by something else, and is read only to say what is wrong with it. A few
    # hundred thousand items are enough for that; 10 million would take seconds.
    raw = _canonical.decode(data, max_size=MAX_BUNDLE_SIZE, what="ledger bundle",
                            max_tokens=_GENERIC_MAX_TOKENS)
    _check_version(raw, BUNDLE_TYPE, "ledger bundle")
    d = _dict(raw, "ledger bundle", _BUNDLE_KEYS)
    node = _bytes(d["node"], "bundle's node key", 32)
    signed = SignedCheckpoint.from_dict(d["checkpoint"])
    raw_entries = d["entries"]
    if not isinstance(raw_entries, list):
        raise MalformedObject("the bundle's entries are not a list")
    if len(raw_entries) > MAX_BUNDLE_ENTRIES:
        raise MalformedObject(
            f"the bundle has {len(raw_entries)} entries, limit {MAX_BUNDLE_ENTRIES}",
            remedy="export and import it in parts",
        )
    rows = []
    for i, re_ in enumerate(raw_entries, 1):
        if not isinstance(re_, dict) or re_.keys() != _ENTRY_KEYS:
            raise _corrupt(node, i, "malformed", "not a ledger entry")
        rows.append((re_["node"], re_["seq"], re_["kind"], re_["payload"], re_["prev"], None))
    return node, signed, rows


def verify_bundle(data: bytes, *, on_payload: PayloadCheck | None = None) -> Bundle:
    """Verify a bundle as received, offline, and return it.

    Checks, in order:
      (1) at most MAX_BUNDLE_SIZE bytes, before anything is parsed   (MalformedObject);
      (2) canonical bencode, type and version 1, well-formed fields, at most
          MAX_BUNDLE_ENTRIES entries                                  (MalformedObject);
      (3) the checkpoint is signed by the bundle's node              (InvalidSignature, opaque);
      (4) each entry belongs to the node, has seq 1, 2, 3… and links to the previous
          entry's hash (the first to 32 zero bytes)                  (LedgerCorrupt);
      (5) the checkpoint's size, head and Merkle root match the entries (LedgerCorrupt);
      (6) *on_payload*, if given, accepts each entry's payload       (what it raises).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("verify_bundle() takes bytes")
    # (1) bounded before parsing
    if len(data) > MAX_BUNDLE_SIZE:
        raise MalformedObject(
            f"ledger bundle is too large ({len(data)} bytes, limit {MAX_BUNDLE_SIZE})",
            remedy="export and import it in parts",
        )
    # (2) canonical, known version, well-formed
    node, signed, rows = _parse_bundle(bytes(data))
    # (3) the node signed the checkpoint
    cp = signed.checkpoint
    if cp.node != node:
        raise InvalidSignature()
    signed.verify()
    # (4) the chain, checked as it is read; entries are built from checked fields only
    entries: list[Entry] = []
    merkle = MerkleBuilder()
    prev = ZERO_HASH
    sha256 = hashlib.sha256
    for i, (e_node, seq, kind_b, payload, e_prev, exact) in enumerate(rows, 1):
        if e_node != node:
            raise _corrupt(node, i, "wrong-node", "the entry belongs to another node")
        if seq != i or isinstance(seq, bool):
            raise _corrupt(node, i, "bad-seq", f"expected seq {i}, found {seq!r}")
        if e_prev != prev:
            raise _corrupt(node, i, "bad-prev", "does not link to the previous entry")
        if not isinstance(payload, bytes) or len(payload) > MAX_PAYLOAD_SIZE:
            raise _corrupt(node, i, "malformed", "the payload is not a bounded byte string")
        try:
            kind = _check_kind(kind_b.decode("ascii") if isinstance(kind_b, bytes) else None)
        except (ValueError, UnicodeDecodeError):
            raise _corrupt(node, i, "malformed", "the kind is not a valid kind") from None
        # The bytes as received where the fast reader has them (already checked canonical)
        body = exact if exact is not None else _entry_bytes(node, i, kind_b, payload, prev)
        h = sha256(_ENTRY_PREFIX + body).digest()
        entries.append(Entry._trusted(node, i, kind, payload, prev, h))
        merkle.append(h)
        prev = h
    # (5) the signed checkpoint covers exactly these entries
    _check_against(cp, len(entries), prev, merkle.root())
    # (6) the payloads, by whoever understands them
    if on_payload is not None:
        for e in entries:
            on_payload(e)
    return Bundle(node, tuple(entries), signed)


# --- the SQLite ledger -----------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    node    BLOB    NOT NULL,
    seq     INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    prev    BLOB    NOT NULL,
    hash    BLOB    NOT NULL,
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id       INTEGER PRIMARY KEY,
    node     BLOB    NOT NULL,
    size     INTEGER NOT NULL,
    head     BLOB    NOT NULL,
    envelope BLOB    NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS checkpoints_node ON checkpoints (node, size);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""


def _storage_error(path: Path, e: sqlite3.Error) -> StorageError:
    return storage_error("ledger", path, e)


class Ledger:
    """An append-only, hash-chained ledger in one SQLite file.

    ``node`` is this node's public key: ``append``, ``checkpoint`` and ``export_bundle``
    work on its chain. A ledger opened without one (a label's) can import and verify.
    Not thread-safe by itself: use one Ledger per thread or process (SQLite serialises
    writers), or open it with ``shared=True`` and serialise every call yourself.
    """

    def __init__(self, path: Path | str, *, node: bytes | None = None,
                 shared: bool = False) -> None:
        if node is not None and (not isinstance(node, bytes) or len(node) != 32):
            raise ValueError("node is a 32-byte public key")
        self.path = Path(path)
        self.node = node
        self._db = open_durable(self.path, schema=_SCHEMA, version=SCHEMA_VERSION,
                                what="ledger", check_same_thread=not shared)

    # -- plumbing

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _require_node(self) -> bytes:
        if self.node is None:
            raise ValueError("this ledger was opened without a node key; pass node=")
        return self.node

    def _head(self, node: bytes) -> tuple[int, bytes]:
        row = self._db.execute(
            "SELECT seq, hash FROM entries WHERE node = ? ORDER BY seq DESC LIMIT 1", (node,)
        ).fetchone()
        return (0, ZERO_HASH) if row is None else (int(row[0]), bytes(row[1]))

    # -- reading

    def size(self, node: bytes | None = None) -> int:
        """How many entries *node*'s chain (default: this node's) holds here."""
        n = node if node is not None else self._require_node()
        try:
            return self._head(n)[0]
        except sqlite3.Error as e:
            raise _storage_error(self.path, e) from e

    def nodes(self) -> list[bytes]:
        """Every node with at least one entry here, in byte order."""
        rows = self._db.execute("SELECT DISTINCT node FROM entries ORDER BY node").fetchall()
        return [bytes(r[0]) for r in rows]

    def entries(self, node: bytes | None = None, kind: str | None = None) -> Iterator[Entry]:
        """Stored entries, by node then seq, optionally of one node and/or one kind.

        Rows are returned as stored; ``verify()`` is what checks them.
        """
        sql = "SELECT node, seq, kind, payload, prev, hash FROM entries"
        where: list[str] = []
        args: list[object] = []
        if node is not None:
            where.append("node = ?")
            args.append(node)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY node, seq"
        for r in self._db.execute(sql, args):
            yield Entry._trusted(bytes(r[0]), int(r[1]),
                                 bytes(r[2]).decode("ascii", "replace"), bytes(r[3]),
                                 bytes(r[4]), bytes(r[5]))

    def entry(self, seq: int, node: bytes | None = None) -> Entry | None:
        """Entry *seq* of *node*'s chain (default: this node's), or None: one lookup."""
        n = node if node is not None else self._require_node()
        try:
            r = self._db.execute("SELECT node, seq, kind, payload, prev, hash FROM entries "
                                 "WHERE node = ? AND seq = ?", (n, seq)).fetchone()
        except sqlite3.Error as e:
            raise _storage_error(self.path, e) from e
        if r is None:
            return None
        return Entry._trusted(bytes(r[0]), int(r[1]), bytes(r[2]).decode("ascii", "replace"),
                              bytes(r[3]), bytes(r[4]), bytes(r[5]))

    def checkpoints(self, node: bytes | None = None) -> list[SignedCheckpoint]:
        """Stored checkpoints (parsed, not verified), by node then size."""
        sql = "SELECT envelope FROM checkpoints"
        args: tuple[bytes, ...] = ()
        if node is not None:
            sql += " WHERE node = ?"
            args = (node,)
        sql += " ORDER BY node, size, id"
        return [SignedCheckpoint.from_bytes(bytes(r[0]))
                for r in self._db.execute(sql, args)]

    # -- appending

    def append(self, kind: str, payload: bytes) -> Entry:
        """Append one entry to this node's chain; durable when this returns."""
        return self.append_many([(kind, payload)])[0]

    def append_many(self, items: Iterable[tuple[str, bytes]]) -> list[Entry]:
        """Append entries to this node's chain in one transaction; durable on return.

        ValueError/TypeError for a bad kind or payload (nothing is written);
        StorageError if SQLite fails (nothing is written either).
        """
        node = self._require_node()
        checked = [(_check_kind(k), _check_payload(p)) for k, p in items]
        if not checked:
            return []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq, prev = self._head(node)
                new: list[Entry] = []
                for kind, payload in checked:
                    seq += 1
                    h = entry_hash(node=node, seq=seq, kind=kind, payload=payload, prev=prev)
                    new.append(Entry._trusted(node, seq, kind, payload, prev, h))
                    prev = h
                self._insert(new)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite has rolled back already when COMMIT failed on a full disk;
                # a second ROLLBACK would hide that error behind "no transaction".
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise _storage_error(self.path, e) from e
        return new

    def _insert(self, entries: Sequence[Entry]) -> None:
        self._db.executemany(
            "INSERT INTO entries (node, seq, kind, payload, prev, hash) VALUES (?,?,?,?,?,?)",
            [(e.node, e.seq, e.kind, e.payload, e.prev, e.hash) for e in entries])

    def _store_checkpoint(self, signed: SignedCheckpoint) -> bool:
        cp = signed.checkpoint
        cur = self._db.execute(
            "INSERT OR IGNORE INTO checkpoints (node, size, head, envelope) VALUES (?,?,?,?)",
            (cp.node, cp.size, cp.head, signed.to_bytes()))
        return cur.rowcount == 1

    # -- checkpoints and bundles

    def _snapshot(self, identity: Identity, now: datetime) -> tuple[SignedCheckpoint,
                                                                     list[Entry]]:
        node = self._require_node()
        if identity.public_key != node:
            raise ValueError("the identity is not this ledger's node")
        entries = list(self.entries(node))
        merkle = MerkleBuilder()
        for e in entries:
            merkle.append(e.hash)
        head = entries[-1].hash if entries else ZERO_HASH
        cp = Checkpoint(node, len(entries), head, merkle.root(),
                        now.astimezone(UTC).replace(microsecond=0))
        signed = SignedCheckpoint.sign(cp, identity)
        self._store_checkpoint(signed)
        return signed, entries

    def checkpoint(self, identity: Identity, *, now: datetime) -> SignedCheckpoint:
        """Sign a checkpoint over this node's chain as it is now, store it and return it."""
        return self._locked(lambda: self._snapshot(identity, now))[0]

    def export_bundle(self, identity: Identity, *, now: datetime) -> bytes:
        """This node's whole chain and a fresh signed checkpoint over it, as bundle bytes."""
        signed, entries = self._locked(lambda: self._snapshot(identity, now))
        return _bundle_bytes(signed.checkpoint.node, signed, entries)

    def _locked(self, fn: Callable[[], _T]) -> _T:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite has rolled back already when COMMIT failed on a full disk;
                # a second ROLLBACK would hide that error behind "no transaction".
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise _storage_error(self.path, e) from e
        return out

    def add_checkpoint(self, signed: SignedCheckpoint) -> bool:
        """Store a checkpoint received on its own (e.g. as evidence); True if it is new.

        InvalidSignature unless its node signed it. A checkpoint that forks from a
        stored one is stored all the same: the pair is the proof ``verify()`` reports.
        From then on ``verify()`` also expects the entries it covers to be here.
        """
        signed.verify()
        return self._locked(lambda: self._store_checkpoint(signed))

    def import_bundle(self, data: bytes, *,
                      on_payload: PayloadCheck | None = None) -> ImportReport:
        """Verify a bundle (see verify_bundle) and merge it into this ledger.

        Entries already here (same node, seq and hash) are skipped, new ones are
        appended to the node's chain, and the checkpoint is stored. Refused with
        ForkDetected, changing nothing, if an entry or the checkpoint conflicts with
        what is stored for that node (same seq or size, different hash): a fork.
        """
        bundle = verify_bundle(data, on_payload=on_payload)
        node = bundle.node
        cp = bundle.checkpoint.checkpoint

        def merge() -> ImportReport:
            stored = dict(self._db.execute(
                "SELECT seq, hash FROM entries WHERE node = ?", (node,)).fetchall())
            new: list[Entry] = []
            present = 0
            for e in bundle.entries:
                have = stored.get(e.seq)
                if have is None:
                    new.append(e)
                elif bytes(have) == e.hash:
                    present += 1
                else:
                    raise _fork(node, e.seq, bytes(have), e.hash)
            if new and new[0].seq != len(stored) + 1:
                # Stored chain has a hole: only possible if someone went around SQLite.
                raise _corrupt(node, len(stored) + 1, "missing",
                               "this ledger's copy of the chain has a gap")
            for (head,) in self._db.execute(
                    "SELECT head FROM checkpoints WHERE node = ? AND size = ?",
                    (node, cp.size)):
                if bytes(head) != cp.head:
                    raise _fork(node, cp.size, bytes(head), cp.head)
            self._insert(new)
            stored_cp = self._store_checkpoint(bundle.checkpoint)
            return ImportReport(node, len(new), present, stored_cp)

        return self._locked(merge)

    # -- verification

    def verify(self, *, on_payload: PayloadCheck | None = None) -> VerifyReport:
        """Walk every chain and every checkpoint; raise at the first problem.

        Checks, in order, per node (nodes in byte order, entries in seq order):
          (1) each row is well-formed                    (LedgerCorrupt "malformed");
          (2) seqs run 1, 2, 3… with no gap, and each row's stored hash is the hash of its
              fields        (LedgerCorrupt "missing" at the gap, or "bad-hash" at the row);
          (3) each prev is the previous entry's hash      (LedgerCorrupt "bad-prev");
          (4) *on_payload*, if given, accepts the entry   (what it raises);
        then, per stored checkpoint of that node, by size:
          (5) it parses and its node signed it          (LedgerCorrupt "checkpoint-signature");
          (6) no two checkpoints have one size and two heads (ForkDetected);
          (7) it matches the chain prefix of its size: head and Merkle root
                                                         (LedgerCorrupt "checkpoint-mismatch");
          (8) the chain is at least as long as every checkpoint: entries that were signed
              for are still here                  (LedgerCorrupt "missing", at the first gone).
        Returns a VerifyReport when everything holds. A chain cut short after its last
        checkpoint cannot be told from one that never grew: export bundles (which sign a
        checkpoint) to pin what you hold.
        """
        try:
            # One read transaction: a consistent snapshot while other processes append.
            self._db.execute("BEGIN")
            try:
                nodes, total, checkpoints = self._verify_all(on_payload)
            finally:
                self._db.execute("COMMIT")
        except sqlite3.Error as e:
            raise _storage_error(self.path, e) from e
        return VerifyReport(len(nodes), total, checkpoints)

    def _verify_all(self, on_payload: PayloadCheck | None) -> tuple[list[bytes], int, int]:
        # (1) for the node column itself: a row the per-node walk could not reach
        bad = self._db.execute(
            "SELECT seq FROM entries WHERE typeof(node) != 'blob' OR length(node) != 32 "
            "UNION ALL SELECT size FROM checkpoints "
            "WHERE typeof(node) != 'blob' OR length(node) != 32 LIMIT 1").fetchone()
        if bad is not None:
            raise _corrupt(ZERO_HASH, bad[0] if isinstance(bad[0], int) else 0,
                           "malformed", "a stored row's node is not a 32-byte key "
                           "(reported under the all-zero key)")
        nodes = sorted(set(self.nodes()) | {
            bytes(r[0]) for r in self._db.execute("SELECT DISTINCT node FROM checkpoints")})
        total = checkpoints = 0
        for node in nodes:
            n, c = self._verify_node(node, on_payload)
            total += n
            checkpoints += c
        return nodes, total, checkpoints

    def _verify_node(self, node: bytes,
                     on_payload: PayloadCheck | None) -> tuple[int, int]:
        # Checkpoints first (parsed and signed), so the walk can compare prefixes.
        wanted: dict[int, list[tuple[SignedCheckpoint, int]]] = {}
        count = 0
        for cp_id, size, envelope in self._db.execute(
                "SELECT id, size, envelope FROM checkpoints WHERE node = ? ORDER BY size, id",
                (node,)):
            # (5) parses, and the node signed it
            try:
                signed = SignedCheckpoint.from_bytes(bytes(envelope))
                if signed.checkpoint.node != node or signed.checkpoint.size != size:
                    raise InvalidSignature()
                signed.verify()
            except (MalformedObject, InvalidSignature):
                raise _corrupt(node, int(size) if isinstance(size, int) else 0,
                               "checkpoint-signature",
                               f"stored checkpoint #{cp_id} is not validly signed by "
                               "its node") from None
            # (6) one size, one head
            for other, _ in wanted.get(signed.checkpoint.size, []):
                if other.checkpoint.head != signed.checkpoint.head:
                    raise _fork(node, signed.checkpoint.size, other.checkpoint.head,
                                signed.checkpoint.head)
            wanted.setdefault(signed.checkpoint.size, []).append((signed, cp_id))
            count += 1
        merkle = MerkleBuilder()
        prev = ZERO_HASH
        expected = 1
        sha256 = hashlib.sha256

        def check_prefix(size: int) -> None:
            # (7) every checkpoint of this size matches the chain so far
            for s, _ in wanted.pop(size, []):
                _check_against(s.checkpoint, size, prev, merkle.root())

        check_prefix(0)
        for row in self._db.execute(
                "SELECT seq, typeof(kind) || typeof(payload) || typeof(prev) || typeof(hash), "
                "kind, payload, prev, hash FROM entries WHERE node = ? ORDER BY seq", (node,)):
            seq, types, kind_b, payload, row_prev, h = row
            # (1) well-formed (TEXT reads as bytes: the types are checked by name)
            kind = kind_b.decode("ascii", "replace") if isinstance(kind_b, bytes) else ""
            if not (isinstance(seq, int) and types == b"textblobblobblob"
                    and len(row_prev) == 32 and 1 <= seq <= MAX_INT
                    and len(payload) <= MAX_PAYLOAD_SIZE and _KIND_RE.fullmatch(kind)):
                raise _corrupt(node, seq if isinstance(seq, int) else expected, "malformed",
                               "a stored column has the wrong type or size")
            # (2) no gap after a good entry: a renumbered or deleted entry is named where
            # it is missing, not where a renumbered row went
            if seq != expected and expected > 1:
                raise _corrupt(node, expected, "missing",
                               "this entry is missing (deleted or renumbered)")
            if sha256(_ENTRY_PREFIX + _entry_bytes(
                    node, seq, kind.encode("ascii"), payload, row_prev)).digest() != h:
                raise _corrupt(node, seq, "bad-hash",
                               "its stored fields do not match its hash (tampered)")
            if seq != expected:
                raise _corrupt(node, expected, "missing",
                               "this entry is missing (deleted or renumbered)")
            # (3) linked to the previous entry
            if row_prev != prev:
                raise _corrupt(node, seq, "bad-prev",
                               "does not link to the previous entry's hash")
            # (4) payload, by whoever understands it
            if on_payload is not None:
                on_payload(Entry._trusted(node, seq, kind, payload, row_prev, h))
            merkle.append(h)
            prev = h
            expected += 1
            if wanted and seq in wanted:
                check_prefix(seq)
        # (8) nothing a checkpoint signed for is gone
        if wanted:
            raise _corrupt(node, expected, "missing",
                           f"a signed checkpoint covers {max(wanted)} entries, "
                           f"only {expected - 1} are here (deleted)")
        return expected - 1, count

