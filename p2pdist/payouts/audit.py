"""Audit: verify many nodes' bundles at once and report what does not add up.

A label collects every node's ``receipts export`` and runs ``audit()`` over them. Each
bundle is verified whole (chain, checkpoint, every transfer receipt's and every payment
receipt's signature, each checked once); a bundle that fails is itself a finding and
nothing in it counts. What the bundles that hold say is then cross-checked, and each
problem becomes a Finding with its evidence. Bundles of one node may repeat (periodic
exports): entries already read are skipped, and of two histories that disagree (a fork)
the first one read is the one counted.

    kind               what it means                                  evidence
    bad-bundle         a bundle does not verify                       bundle, error, reason,
                                                                      node, seq, message
    fork               one node signed two histories: two bundles     node, seq, hashes,
                       disagree on an entry both cover (same size,    checkpoints
                       different heads, or one not a prefix)
    duplicate-receipt  one node recorded the same signed receipt      receipt, at [2]
                       twice
    receipt-rollback   two receipts of one (work, uploader,           within, receipts [2]
                       downloader) go backwards: same seq and
                       different content, or a higher seq with fewer
                       bytes (in one node's chain or across nodes)
    duplicate-payment  a seller recorded one payment receipt twice    payment, at [2]
    replayed-payment   two different payment receipts carry the       nonce, payments [2+]
                       same nonce (one purchase request, paid twice)
    double-spend       two payment receipts of one work with the      work, payment_ref,
                       same payment_ref (a voucher redeemed twice)    payments [2+]
    over-size          the latest receipts of one (work, downloader)  work, downloader, size,
                       across uploaders credit more than the work's   credited, receipts; or
                       size, or a sale's served_by does              payment, at
    self-dealing       a receipt whose uploader is its downloader     receipt, at
    suspected-sybil    >= sybil_min keys that only ever downloaded    uploader, count, keys,
                       from one uploader, never paid, never uploaded  works, bytes
    non-seller         a payment receipt signed by a key the work's   payment, at, sellers
                       terms do not name as a seller (or for a free
                       work)
    wrong-price        a payment receipt whose amount or currency is  payment, at, price
                       not the terms' price
    unknown-work       receipts or payments for a work the audit was  work, receipts,
                       not given                                      payments, first
    unbacked-receipt   the latest receipt of a (work, uploader,       receipt, at, served,
                       downloader) acknowledges more than the         uploader (no-bundle,
                       uploader's own ledger says it sent that key    records-nothing,
                       (upload.served, plus what its rate sends in    served-less)
                       SERVED_LOST_SECONDS if that record has one:
                       the node may have died sending) plus
                       RECEIPT_SLACK, or its
                       uploader's ledger says it sent that key
                       nothing, or no bundle of the uploader is given

``at`` is where an entry sits: ``{bundle, node, seq, kind}`` (the bundle's index in the
input, the node key text, the entry's seq in that node's chain, the ledger kind).
``receipt`` is ``{work, uploader, downloader, seq, bytes, ts}``, ``payment`` is the
payment receipt's fields. Keys are in their one text form, hashes and ids in hex.

A receipt counts only when its uploader's own ledger backs it: the bundle of that
uploader, as given, holds ``upload.served`` records for that downloader and work
covering the receipt's bytes within RECEIPT_SLACK (the node's own slack). Any other
receipt is unbacked and counts for nothing further: no credit, no verified downloader,
no over-size or Sybil finding, no share of a pool (``transfers()`` leaves it out). So a
receipt signed by a throwaway key naming a made-up uploader (no bundle) or an honest
fan that only downloaded (its bundle serves nobody), kept by a collector, counts for
nothing and cannot make that fan look like a Sybil ring's hub. It cannot catch an
uploader that writes false served records in its own ledger (its chain is its word:
the bound is what each uploader's own chain claims). An uploader whose bundle is
missing, or predates served records, earns nothing. A node killed while sending is
given, past its last record, what that record's rate sends in SERVED_LOST_SECONDS
(capped by the work's size), as the node itself does.

Besides the findings the report carries the verified evidence the payout layer needs:
the payment receipts that hold (verified, deduplicated, by a named seller at the price,
first of any replay or double spend) and the latest verified transfer receipt per
(work, uploader, downloader) of the works given, plus counts.

Cost and memory. Bundles are read one at a time (pass a lazy iterable to keep only one
in memory) with the ledger's exact-layout reader; receipts are read with an exact-layout
reader too (re-encoded and compared, so sound; anything else goes to the strict parser),
and each signature is checked once with libsodium. What is kept across bundles is the
latest receipt per (work, uploader, downloader), one entry hash per entry of each node's
longest chain (32 bytes, to tell a re-export from a fork), and the payment receipts.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import nacl.bindings
import nacl.exceptions

from p2pdist.errors import InvalidSignature, LedgerCorrupt, MalformedObject, VerificationError
from p2pdist.identity import key_to_text, verify_signature
from p2pdist.licensing import CCTerms, License, PaidTerms, Terms
from p2pdist.payouts.copies import DECISION_KIND
from p2pdist.payouts.ledger import Entry, verify_bundle
from p2pdist.payouts.payments import (
    PAYMENT_DOMAIN,
    PURCHASE_DOMAIN,
    PaymentReceipt,
    SignedPayment,
    check_issued,
)
from p2pdist.payouts.receipts import (
    DOMAIN as RECEIPT_DOMAIN,
)
from p2pdist.payouts.receipts import (
    MAX_COUNT,
    MAX_TS,
    RECEIPT_SLACK,
    SignedReceipt,
    TransferReceipt,
    parse_served_rate,
    served_backing,
)
from p2pdist.payouts.statement import Sale

__all__ = [
    "FINDING_KINDS",
    "MAX_FINDINGS_PER_KIND",
    "SYBIL_MIN",
    "AuditReport",
    "Finding",
    "WorkInfo",
    "audit",
    "works_from_licenses",
]

# The ledger kinds that carry what the audit reads (_credit.py and paid.py write them).
RECEIPT_KINDS: Final = frozenset({"receipt.issued", "receipt.received", "receipt.collected"})
PAYMENT_ISSUED: Final = "payment.issued"
PAYMENT_KINDS: Final = frozenset({PAYMENT_ISSUED, "payment.received", "payment.collected"})
SERVED_KIND: Final = "upload.served"

FINDING_KINDS: Final = (
    "bad-bundle", "fork", "duplicate-receipt", "receipt-rollback", "duplicate-payment",
    "double-booking", "double-spend", "over-size", "self-dealing", "suspected-sybil",
    "non-seller", "wrong-price", "unknown-work", "unbacked-receipt", "unissued-sale",
    "forged-sale", "withheld-sale", "copied-work", "misdated-sale", "below-price",
    "stale-bundle",
)
SYBIL_MIN: Final = 5
# How far a seller's time on a sale may be from the time its buyer signed the request (a
# seller refuses requests more than a day off its clock: paid.REQUEST_MAX_AGE).
REQUEST_SKEW: Final = timedelta(hours=24)
# A hostile bundle can make a finding of every entry; past this many of one kind the
# rest are only counted (AuditReport.omitted), so memory stays bounded.
MAX_FINDINGS_PER_KIND: Final = 1000
# Evidence lists (receipts of an over-size credit, keys of a ring) stop here.
MAX_EVIDENCE_ITEMS: Final = 10_000

_RECEIPT_MSG = RECEIPT_DOMAIN + b"\0"
_ENV_TAIL = b"4:type22:p2pdist/signed-receipt1:vi1ee"
_R_MID = b"e4:type24:p2pdist/transfer-receipt8:uploader32:"


# -- inputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkInfo:
    """What the audit needs of one work: its size (bytes the torrent carries) and terms."""

    size: int
    terms: Terms
    collector: bytes | None = None  # the license's collector, if it names one

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) \
                or not 0 <= self.size <= MAX_COUNT:
            raise ValueError("a work's size is an integer in 0..2**63-1")
        if not isinstance(self.terms, CCTerms | PaidTerms):
            raise TypeError("a work's terms are CCTerms or PaidTerms")

    @property
    def sellers(self) -> tuple[bytes, ...]:
        """Who may sign its payment receipts: nobody for a free work."""
        return self.terms.sellers if isinstance(self.terms, PaidTerms) else ()

    @property
    def price(self) -> int | None:
        return self.terms.price if isinstance(self.terms, PaidTerms) else None

    @property
    def currency(self) -> str | None:
        return self.terms.currency if isinstance(self.terms, PaidTerms) else None

    @classmethod
    def from_license(cls, lic: License) -> WorkInfo:
        """From a license that verify_info verified: the signed size and terms."""
        c = lic.manifest.collector
        return cls(lic.manifest.content.total_size, lic.manifest.terms,
                   c.pk if c is not None else None)


def works_from_licenses(licenses: Iterable[License]) -> dict[bytes, WorkInfo]:
    """The ``works`` argument of audit() from verified licenses, keyed by work id."""
    return {bytes.fromhex(lic.work): WorkInfo.from_license(lic) for lic in licenses}


# -- outputs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that does not add up: ``kind`` (see FINDING_KINDS), a sentence, and the
    evidence (JSON-ready: str, int, None, lists and dicts of them)."""

    kind: str
    message: str
    evidence: dict[str, object] = field(hash=False)

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "message": self.message, "evidence": self.evidence}


# The latest receipt of one (work, uploader, downloader), compact: seq, bytes, ts, sig,
# then where it was read (node, entry seq, bundle index, ledger kind). The receipt bytes
# are not kept: they are the canonical encoding of the fields, rebuilt when needed.
_Latest = tuple[int, int, int, bytes, bytes, int, int, str]


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What audit() found and the verified evidence behind a payout.

    ``payments``: the payment receipts that hold, once each, in the order first read.
    ``transfers()``: the latest verified transfer receipt per (work, uploader,
    downloader) for the works given (built on demand: there may be millions).
    ``omitted``: findings past MAX_FINDINGS_PER_KIND, counted per kind.
    ``suspected_sybils``: every key of every suspected-sybil ring, including those the
    findings' evidence (capped) does not list; a pool shares nothing with them.
    ``unbacked``: work + uploader + downloader of each unbacked receipt (left out of
    ``transfers()``).
    """

    findings: tuple[Finding, ...]
    payments: tuple[SignedPayment, ...]
    bundles: int
    bad_bundles: int
    nodes: int
    entries: int
    receipts: int
    payment_entries: int
    omitted: dict[str, int] = field(hash=False)
    _latest: dict[bytes, _Latest] = field(repr=False, hash=False, compare=False)
    suspected_sybils: frozenset[bytes] = frozenset()
    unbacked: frozenset[bytes] = frozenset()
    sales: tuple[Sale, ...] = ()
    decisions: tuple[Entry, ...] = ()
    exported: dict[bytes, datetime] = field(default_factory=dict, hash=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.omitted

    @property
    def transfer_count(self) -> int:
        """How many (work, uploader, downloader) have a latest receipt."""
        return len(self._latest)

    def transfers(self, work: bytes | None = None) -> Iterator[SignedReceipt]:
        """The latest verified receipt per (work, uploader, downloader), by that key."""
        for key in sorted(self._latest):
            if (work is None or key[:32] == work) and key not in self.unbacked:
                yield _signed_receipt(key, self._latest[key])

    def latest(self, work: bytes, uploader: bytes, downloader: bytes) -> SignedReceipt | None:
        key = work + uploader + downloader
        v = self._latest.get(key)
        return None if v is None else _signed_receipt(key, v)

    def counts(self) -> dict[str, int]:
        return {"bundles": self.bundles, "bad_bundles": self.bad_bundles, "nodes": self.nodes,
                "entries": self.entries, "receipts": self.receipts,
                "payment_entries": self.payment_entries, "transfers": self.transfer_count,
                "payments": len(self.payments)}

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "counts": self.counts(),
                "findings": [f.to_dict() for f in self.findings],
                "omitted": dict(self.omitted)}


# -- receipt bytes ---------------------------------------------------------------------


def _receipt_bytes(work: bytes, up: bytes, down: bytes, seq: int, n: int, ts: int) -> bytes:
    # Exactly TransferReceipt.signed_bytes() (keys sorted); a test pins it.
    return (b"d5:bytesi%de10:downloader32:%s3:seqi%de2:tsi%d" % (n, down, seq, ts)
            + _R_MID + up + b"1:vi1e4:work32:" + work + b"e")


def _parse_receipt_fast(p: bytes) -> tuple[bytes, bytes, bytes, int, int, int] | None:
    """(receipt bytes, sig, key = work+uploader+downloader, seq, bytes, ts) of a signed
    receipt envelope laid out exactly as SignedReceipt.to_bytes writes it, else None.

    Sound by construction: what is read is re-encoded and compared with the bytes it
    came from. Unlike the strict parser it lets uploader == downloader through, so that
    a signed self-dealing receipt is reported rather than mistaken for garbage.
    """
    try:
        if p[:10] != b"d7:receipt":
            return None
        c = p.index(b":", 10, 14)
        n = int(p[10:c])
        rb = p[c + 1 : c + 1 + n]
        sig = p[c + 9 + n : c + 73 + n]
        e1 = rb.index(b"e", 9, 30)
        nbytes = int(rb[9:e1])
        down = rb[e1 + 17 : e1 + 49]
        e2 = rb.index(b"e", e1 + 55, e1 + 76)
        seq = int(rb[e1 + 55 : e2])
        e3 = rb.index(b"e", e2 + 6, e2 + 27)
        ts = int(rb[e2 + 6 : e3])
        up = rb[e3 + 47 : e3 + 79]
        work = rb[e3 + 94 : e3 + 126]
    except ValueError:
        return None
    if not (len(sig) == 64 and len(down) == 32 and len(up) == 32 and len(work) == 32
            and 1 <= seq <= MAX_COUNT and 0 <= nbytes <= MAX_COUNT and 0 <= ts <= MAX_TS):
        return None
    if rb != _receipt_bytes(work, up, down, seq, nbytes, ts):
        return None
    if p != b"d7:receipt%d:%s3:sig64:%s%s" % (n, rb, sig, _ENV_TAIL):
        return None
    return rb, sig, work + up + down, seq, nbytes, ts


def _read_receipt(p: bytes) -> tuple[bytes, bytes, bytes, int, int, int] | None:
    """_parse_receipt_fast's tuple for any signed receipt envelope (the strict parser for
    other layouts), None for one that does not parse."""
    fast = _parse_receipt_fast(p)
    if fast is not None:
        return fast
    try:
        s = SignedReceipt.from_bytes(p)
    except MalformedObject:
        return None
    r = s.receipt
    return (s.receipt_bytes, s.sig, r.work + r.uploader + r.downloader, r.seq, r.bytes,
            int(r.ts.timestamp()))


def _parse_receipt(e: Entry) -> tuple[bytes, bytes, bytes, int, int, int]:
    got = _read_receipt(e.payload)
    if got is None:
        raise _bad(e, "receipt-malformed", "holds a transfer receipt that does not parse")
    return got


def _signed_receipt(key: bytes, v: _Latest) -> SignedReceipt:
    seq, n, ts, sig = v[0], v[1], v[2], v[3]
    r = TransferReceipt(key[:32], key[32:64], key[64:], seq, n, datetime.fromtimestamp(ts, UTC))
    # Not SignedReceipt(...): that re-parses bytes this module already read and checked.
    s = object.__new__(SignedReceipt)
    object.__setattr__(s, "receipt_bytes", _receipt_bytes(key[:32], key[32:64], key[64:],
                                                          seq, n, ts))
    object.__setattr__(s, "receipt", r)
    object.__setattr__(s, "sig", sig)
    return s


def _bad(e: Entry, reason: str, what: str) -> LedgerCorrupt:
    return LedgerCorrupt(f"entry {e.seq} of node {key_to_text(e.node)} {what}",
                         node=e.node, seq=e.seq, reason=reason)


# -- evidence --------------------------------------------------------------------------


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _receipt_json(key: bytes, seq: int, n: int, ts: int) -> dict[str, object]:
    return {"work": key[:32].hex(), "uploader": key_to_text(key[32:64]),
            "downloader": key_to_text(key[64:]), "seq": seq, "bytes": n, "ts": _iso(ts)}


def _at(bundle: int, node: bytes, seq: int, kind: str) -> dict[str, object]:
    return {"bundle": bundle, "node": key_to_text(node), "seq": seq, "kind": kind}


def _latest_json(key: bytes, v: _Latest) -> dict[str, object]:
    return {"at": _at(v[6], v[4], v[5], v[7]), "receipt": _receipt_json(key, *v[:3])}


def _payment_json(p: PaymentReceipt) -> dict[str, object]:
    i = p.issuance.issuance
    return {"work": p.work.hex(), "buyer": key_to_text(p.buyer),
            "seller": key_to_text(p.seller), "amount": p.amount, "currency": p.currency,
            "method": p.method, "payment_ref": p.payment_ref, "nonce": p.nonce.hex(),
            "ts": _iso(int(p.ts.timestamp())), "request": p.request_id.hex(),
            "issuance": {"id": p.issuance.id.hex(), "collector": key_to_text(i.collector),
                         "face": i.face, "currency": i.currency, "count": i.count},
            "code": p.code.hex()}


@dataclass(slots=True)
class _Payment:
    signed: SignedPayment
    at: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {"at": self.at, "payment": _payment_json(self.signed.payment)}


# -- the audit -------------------------------------------------------------------------


@dataclass(slots=True)
class _Unknown:
    """Receipts and payment receipts read for one work the audit was not given."""

    receipts: int
    payments: int
    first: dict[str, object]


@dataclass(slots=True)
class _Chain:
    """The longest history read so far of one node: its entry hashes, concatenated."""

    hashes: bytes
    bundle: int
    head: bytes
    exported: datetime | None = None  # its checkpoint's time

    @property
    def size(self) -> int:
        return len(self.hashes) // 32


@dataclass(slots=True)
class _Bundle:
    """What one bundle adds, kept apart until the whole bundle has verified."""

    index: int
    node: bytes | None = None
    known: _Chain | None = None
    known_size: int = 0
    fork: tuple[int, bytes, bytes] | None = None
    latest: dict[bytes, _Latest] = field(default_factory=dict)
    payments: dict[bytes, _Payment] = field(default_factory=dict)
    issued: dict[bytes, dict[str, object]] = field(default_factory=dict)
    by_seller: set[bytes] = field(default_factory=set)
    held_by_buyer: set[bytes] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)
    unknown: dict[bytes, _Unknown] = field(default_factory=dict)
    served: dict[bytes, tuple[int, dict[str, object], int]] = field(default_factory=dict)
    decisions: list[Entry] = field(default_factory=list)
    entries: int = 0
    receipts: int = 0
    payment_entries: int = 0


class _Audit:
    def __init__(self, works: Mapping[bytes, WorkInfo], sybil_min: int) -> None:
        self.works = works
        self.sybil_min = sybil_min
        self.latest: dict[bytes, _Latest] = {}
        self.chains: dict[bytes, _Chain] = {}
        self.payments: dict[bytes, _Payment] = {}  # SHA-256 of the body -> first read
        self.by_seller: set[bytes] = set()  # payments read in their own seller's chain
        self.decisions: list[Entry] = []  # decision.copy entries, checked by copies.py
        self.parsed: dict[bytes, SignedPayment] = {}  # SHA-256 of an envelope -> parsed
        # work + uploader + downloader -> the latest receipt its uploader kept, when a
        # later one (from another node's bundle or a purchase request) superseded it.
        self.own: dict[bytes, _Latest] = {}
        self.issuances: set[bytes] = set()  # issuance records whose signature holds
        # Bodies of payment receipts held by their buyer's node or a collector.
        self.held_by_buyer: set[bytes] = set()
        self.rejected: set[bytes] = set()  # payments that broke the terms (reported once)
        self.unknown: dict[bytes, _Unknown] = {}
        self.findings: list[Finding] = []
        self.omitted: dict[str, int] = {}
        self.per_kind: dict[str, int] = defaultdict(int)
        self.bundles = self.bad_bundles = 0
        self.entries = self.receipts = self.payment_entries = 0
        self.b = _Bundle(-1)
        self.sybils: set[bytes] = set()
        # work + node + downloader -> the most the node's ledger says it sent, where, and
        # what that record backs (served_backing: more if the node may have died sending).
        self.served: dict[bytes, tuple[int, dict[str, object], int]] = {}
        self.recording: set[bytes] = set()  # nodes whose ledgers record what they serve

    # -- findings

    def _find(self, out: list[Finding], kind: str, message: str, /,
              **evidence: object) -> None:
        # per_kind counts at staging: a bundle that later fails keeps its count, which
        # only makes the cap a little stricter.
        self.per_kind[kind] += 1
        if self.per_kind[kind] > MAX_FINDINGS_PER_KIND:
            self.omitted[kind] = self.omitted.get(kind, 0) + 1
            return
        out.append(Finding(kind, message, dict(evidence)))

    # -- one bundle

    def add(self, index: int, data: bytes | VerificationError) -> None:
        self.bundles += 1
        self.b = b = _Bundle(index)
        try:
            if isinstance(data, VerificationError):
                raise data  # a bundle the caller could not even read (e.g. too large)
            bundle = verify_bundle(data, on_payload=self._entry)
        except VerificationError as e:
            self.bad_bundles += 1
            self._bad_bundle(index, e)
            return
        node = bundle.node
        known = b.known
        if b.fork is not None and known is not None:
            seq, old, new = b.fork
            cp = bundle.checkpoint.checkpoint
            self._find(self.findings, "fork",
                       f"node {key_to_text(node)} signed two histories: bundles "
                       f"{known.bundle} and {index} hold different entries at seq {seq}",
                       node=key_to_text(node), seq=seq, hashes=[old.hex(), new.hex()],
                       checkpoints=[
                           {"bundle": known.bundle, "size": known.size,
                            "head": known.head.hex()},
                           {"bundle": index, "size": cp.size, "head": cp.head.hex()}])
            return
        # The bundle holds: merge what it adds.
        if node not in self.chains or len(bundle.entries) > b.known_size:
            self.chains[node] = _Chain(b"".join([e.hash for e in bundle.entries]), index,
                                       bundle.checkpoint.checkpoint.head,
                                       bundle.checkpoint.checkpoint.ts)
        self.entries += b.entries
        self.receipts += b.receipts
        self.payment_entries += b.payment_entries
        self.findings.extend(b.findings)
        latest = self.latest
        for key, v in b.latest.items():
            g = latest.get(key)
            if g is None or v[0] > g[0]:
                if g is not None:
                    self._keep_own(key, g)
                latest[key] = v
            else:
                self._keep_own(key, v)
        for work, bu in b.unknown.items():
            u = self.unknown.setdefault(work, _Unknown(0, 0, bu.first))
            u.receipts += bu.receipts
        for key, sv in b.served.items():
            if key not in self.served or sv[0] > self.served[key][0]:
                self.served[key] = sv
        if b.served:
            self.recording.add(node)
        self.by_seller |= b.by_seller
        self.held_by_buyer |= b.held_by_buyer
        self.decisions.extend(b.decisions)
        for digest, pay in b.payments.items():
            if digest not in self.payments and digest not in self.rejected:
                self._terms(digest, pay)

    def _keep_own(self, key: bytes, v: _Latest) -> None:
        """A receipt that is not the latest of its key, but that its uploader kept in its
        own chain: the uploader's word on it stands if a later one (which the downloader
        may have signed for more than it got, and sent elsewhere) is not backed."""
        if v[4] == key[32:64]:
            o = self.own.get(key)
            if o is None or v[0] > o[0]:
                self.own[key] = v

    def _bad_bundle(self, index: int, e: VerificationError) -> None:
        if isinstance(e, LedgerCorrupt):
            error, node, seq, reason = "ledger-corrupt", key_to_text(e.node), e.seq, e.reason
        elif isinstance(e, InvalidSignature):
            error, node, seq, reason = "invalid-signature", None, None, "checkpoint-signature"
        elif isinstance(e, MalformedObject):
            error, node, seq, reason = "malformed", None, None, "malformed"
        else:
            error, node, seq, reason = "verification", None, None, type(e).__name__
        self._find(self.findings, "bad-bundle",
                   f"bundle {index} does not verify and was not counted: {e.message}",
                   bundle=index, error=error, reason=reason, node=node, seq=seq,
                   message=e.message)

    def _entry(self, e: Entry) -> None:
        """verify_bundle's on_payload: called once per entry after the chain and the
        checkpoint verified. Raises LedgerCorrupt for a payload that does not verify."""
        b = self.b
        if b.node is None:
            b.node = e.node
            b.known = self.chains.get(e.node)
            b.known_size = b.known.size if b.known is not None else 0
        seq = e.seq
        if seq <= b.known_size:
            # Read (and checked) in an earlier bundle of this node, unless it differs.
            if b.fork is None and b.known is not None:
                old = b.known.hashes[32 * seq - 32 : 32 * seq]
                if old != e.hash:
                    b.fork = (seq, old, e.hash)
            return
        if b.fork is not None:
            return
        b.entries += 1
        kind = e.kind
        if kind in RECEIPT_KINDS:
            self._receipt(b, e)
        elif kind in PAYMENT_KINDS:
            self._payment(b, e)
        elif kind == DECISION_KIND:
            b.decisions.append(e)
        elif kind == SERVED_KIND:
            try:
                work, down, n, rate = parse_served_rate(e.payload)
            except MalformedObject:
                raise _bad(e, "served-malformed", "holds a served record that does not "
                           "parse") from None
            key = work + e.node + down
            if key not in b.served or n >= b.served[key][0]:  # the latest of the highest
                info = self.works.get(work)
                b.served[key] = (n, _at(b.index, e.node, e.seq, e.kind),
                                 served_backing(n, rate, info.size if info else None))

    def _receipt(self, b: _Bundle, e: Entry) -> None:
        b.receipts += 1
        rb, sig, key, seq, n, ts = _parse_receipt(e)
        prev = b.latest.get(key)
        if prev is not None and prev[0] == seq and prev[3] == sig and prev[1] == n \
                and prev[2] == ts:
            # (Verified when first read.)
            self._find(b.findings, "duplicate-receipt",
                       f"node {key_to_text(e.node)} recorded the same receipt twice "
                       f"(entries {prev[5]} and {e.seq})",
                       receipt=_receipt_json(key, seq, n, ts),
                       at=[_at(b.index, e.node, prev[5], prev[7]),
                           _at(b.index, e.node, e.seq, e.kind)])
            return
        g = self.latest.get(key)
        if g is None or g[0] != seq or g[3] != sig or g[1] != n or g[2] != ts:
            # Not the very receipt already verified: check its signature, once.
            try:
                nacl.bindings.crypto_sign_open(sig + _RECEIPT_MSG + rb, key[64:])
            except (nacl.exceptions.CryptoError, ValueError):
                raise _bad(e, "receipt-signature",
                           "holds a transfer receipt its downloader did not sign") from None
        v: _Latest = (seq, n, ts, sig, e.node, e.seq, b.index, e.kind)
        work = key[:32]
        if work not in self.works:
            u = b.unknown.get(work)
            if u is None:
                b.unknown[work] = _Unknown(1, 0, _at(b.index, e.node, e.seq, e.kind))
            else:
                u.receipts += 1
            return
        if key[32:64] == key[64:]:
            self._find(b.findings, "self-dealing",
                       f"a receipt names {key_to_text(key[64:])} as both uploader and "
                       "downloader", receipt=_receipt_json(key, seq, n, ts),
                       at=_at(b.index, e.node, e.seq, e.kind))
            return
        # (in this node's chain) each receipt of a key grows seq, never shrinks bytes
        if prev is not None and (seq <= prev[0] or n < prev[1]):
            self._rollback(b, key, prev, v, "one node")
        if g is not None and (prev is None or prev[3] != g[3]) and g[3] != sig and (
                seq == g[0] or (seq > g[0] and n < g[1]) or (seq < g[0] and n > g[1])):
            self._rollback(b, key, g, v, "across nodes")
        if prev is None or seq > prev[0]:
            b.latest[key] = v

    def _rollback(self, b: _Bundle, key: bytes, a: _Latest, c: _Latest, within: str) -> None:
        first, second = sorted((a, c), key=lambda v: (v[0], v[1]))
        how = (f"two different receipts with seq {first[0]}" if first[0] == second[0] else
               f"seq {second[0]} acknowledges {second[1]} bytes, seq {first[0]} "
               f"{first[1]}")
        self._find(b.findings, "receipt-rollback",
                   f"receipts of {key_to_text(key[64:])} to {key_to_text(key[32:64])} go "
                   f"backwards ({within}): {how}",
                   within=within,
                   receipts=[_latest_json(key, first), _latest_json(key, second)])

    def _payment(self, b: _Bundle, e: Entry) -> None:
        b.payment_entries += 1
        # One sale is held by its seller, its buyer and its collector: parse it once.
        env = hashlib.sha256(e.payload).digest()
        sp = self.parsed.get(env)
        if sp is None:
            try:
                sp = SignedPayment.from_bytes(e.payload)
            except MalformedObject:
                raise _bad(e, "payment-malformed",
                           "holds a payment receipt that does not parse") from None
            self.parsed[env] = sp
        digest = hashlib.sha256(sp.body).digest()
        at = _at(b.index, e.node, e.seq, e.kind)
        seen = self.payments.get(digest) or b.payments.get(digest)
        if seen is None or seen.signed.sig != sp.sig:
            try:
                verify_signature(pk=sp.payment.seller, domain=PAYMENT_DOMAIN, message=sp.body,
                                 signature=sp.sig)
            except InvalidSignature:
                raise _bad(e, "payment-signature",
                           "holds a payment receipt its seller did not sign") from None
        if e.kind == PAYMENT_ISSUED:
            # A buyer may record one payment receipt twice (it asked again and got the
            # same answer); a seller signs and records each sale once.
            first = b.issued.get(digest)
            if first is not None:
                self._find(b.findings, "duplicate-payment",
                           f"seller node {key_to_text(e.node)} recorded the same payment "
                           f"receipt twice (entries {first['seq']} and {e.seq})",
                           payment=_payment_json(sp.payment), at=[first, at])
            else:
                b.issued[digest] = at
            if e.node == sp.payment.seller:
                b.by_seller.add(digest)
        p = sp.payment
        info = self.works.get(p.work)
        if e.node != p.seller and (
                (e.kind == "payment.received" and e.node == p.buyer)
                or (e.kind == "payment.collected" and info is not None
                    and e.node == info.collector)):
            # Held by its buyer's own node, or by the license's collector (never on the
            # seller's word, even when the seller is also the collector).
            b.held_by_buyer.add(sp.body)
        if seen is None:
            b.payments[digest] = _Payment(sp, at)

    def _terms(self, digest: bytes, pay: _Payment) -> None:
        """Check a newly read payment receipt against its work's terms."""
        p = pay.signed.payment
        info = self.works.get(p.work)
        if info is None:
            self.unknown.setdefault(p.work, _Unknown(0, 0, pay.at)).payments += 1
            self.rejected.add(digest)
            return
        if p.seller not in info.sellers:
            self._find(self.findings, "non-seller",
                       f"a payment receipt for work {p.work.hex()[:16]}… is signed by "
                       f"{key_to_text(p.seller)}, who may not sell it",
                       payment=_payment_json(p), at=pay.at,
                       sellers=[key_to_text(k) for k in info.sellers])
            self.rejected.add(digest)
            return
        try:
            verify_signature(pk=p.buyer, domain=PURCHASE_DOMAIN, message=p.request.body,
                             signature=p.request.sig)
        except InvalidSignature:
            self._find(self.findings, "forged-sale",
                       f"a payment receipt signed by {key_to_text(p.seller)} holds a "
                       f"purchase request its buyer {key_to_text(p.buyer)} did not sign",
                       seller=key_to_text(p.seller), payment=_payment_json(p), at=pay.at)
            self.rejected.add(digest)
            return
        why: str | None
        signed_by = hashlib.sha256(p.issuance.body + p.issuance.sig).digest()
        try:
            if signed_by not in self.issuances:  # one batch, many sales: checked once
                p.issuance.verify()
                self.issuances.add(signed_by)
            why = check_issued(p)
        except InvalidSignature:
            why = "its issuance record is not signed by the collector it names"
        if why is not None and "face value" not in why:
            self._find(self.findings, "unissued-sale",
                       f"a sale of work {p.work.hex()[:16]}… by {key_to_text(p.seller)} "
                       f"books nothing: {why}",
                       seller=key_to_text(p.seller), payment=_payment_json(p), at=pay.at)
            self.rejected.add(digest)
            return
        if why is None and info.price is not None and p.amount > info.price:
            why = (f"its code's face value {p.amount} is over the work's price "
                   f"{info.price} (minor units)")
        if why is not None or p.currency != info.currency:
            self._find(self.findings, "wrong-price",
                       f"a sale of work {p.work.hex()[:16]}… by {key_to_text(p.seller)} "
                       f"books nothing: "
                       + (why or f"it is in {p.currency}, the work sells in {info.currency}"),
                       seller=key_to_text(p.seller), payment=_payment_json(p), at=pay.at,
                       price={"amount": info.price, "currency": info.currency})
            self.rejected.add(digest)
            return
        self.payments[digest] = pay

    # -- across everything

    def report(self) -> AuditReport:
        out = self.findings
        self._request_receipts()
        unbacked = self._unbacked(out)
        self._over_size(out, unbacked)
        self._sybils(out, unbacked)
        payments, later = self._sales(out)
        sales = self._carried(payments, later, unbacked)
        for work, u in self.unknown.items():
            self._find(out, "unknown-work",
                       f"{u.receipts} receipts and {u.payments} payment receipts are for "
                       f"work {work.hex()}, which the audit was not given",
                       work=work.hex(), receipts=u.receipts, payments=u.payments,
                       first=u.first)
        return AuditReport(
            findings=tuple(out), payments=tuple(p.signed for p in payments), sales=sales,
            decisions=tuple(self.decisions),
            exported={node: c.exported for node, c in self.chains.items()
                      if c.exported is not None},
            bundles=self.bundles, bad_bundles=self.bad_bundles, nodes=len(self.chains),
            entries=self.entries, receipts=self.receipts,
            payment_entries=self.payment_entries, omitted=dict(self.omitted),
            _latest=self.latest, suspected_sybils=frozenset(self.sybils),
            unbacked=frozenset(unbacked))

    def _unbacked(self, out: list[Finding]) -> set[bytes]:
        """The latest receipts their uploader's own ledger does not back (see module)."""
        found: set[bytes] = set()
        fallback: dict[bytes, _Latest] = {}
        for key, v in self.latest.items():
            sent, at, backed = self.served.get(key, (0, None, 0))
            o = self.own.get(key)
            if sent and v[1] <= backed + RECEIPT_SLACK:
                if o is not None and o[1] > v[1] and o[1] <= backed + RECEIPT_SLACK:
                    fallback[key] = o  # a later receipt for fewer bytes lowers nothing
                continue
            if o is not None and sent and o[1] <= backed + RECEIPT_SLACK:
                # The downloader signed more than it got (and sent it elsewhere): the
                # uploader's own backed receipt counts, and the other is named.
                fallback[key] = o
                self._find(out, "unbacked-receipt",
                           f"{key_to_text(key[64:])} signed a receipt for {v[1]} bytes of "
                           f"work {key[:16].hex()}… from {key_to_text(key[32:64])}, whose "
                           f"own ledger says it sent {sent}: its own receipt for {o[1]} "
                           "counts", **_latest_json(key, v),
                           served={"bytes": sent, "at": at}, uploader="superseded")
                continue
            if self.per_kind["unbacked-receipt"] >= MAX_FINDINGS_PER_KIND:
                found.add(key)  # past the cap: counted, and no evidence is built
                self._find(out, "unbacked-receipt", "")
                continue
            up = key[32:64]
            # Why the uploader's side does not back it: no bundle of it was given, its
            # bundle records nothing it served (a version before records), or it records
            # less (or nothing) sent to this downloader.
            uploader = ("no-bundle" if up not in self.chains else
                        "records-nothing" if up not in self.recording else "served-less")
            said = {"no-bundle": "whose bundle the audit was not given",
                    "records-nothing": "whose bundle records nothing it served",
                    "served-less": f"whose own ledger says it sent that key {sent}"}
            found.add(key)
            self._find(out, "unbacked-receipt",
                       f"{key_to_text(key[64:])} acknowledges {v[1]} bytes of work "
                       f"{key[:16].hex()}… from {key_to_text(up)}, {said[uploader]}",
                       **_latest_json(key, v), served={"bytes": sent, "at": at},
                       uploader=uploader)
        self.latest.update(fallback)
        return found

    def _over_size(self, out: list[Finding], unbacked: set[bytes]) -> None:
        credited: dict[bytes, int] = defaultdict(int)  # work + downloader -> bytes
        for key, v in self.latest.items():
            if key not in unbacked:
                credited[key[:32] + key[64:]] += v[1]
        over = {wd: n for wd, n in credited.items() if n > self.works[wd[:32]].size}
        if not over:
            return
        rows: dict[bytes, list[dict[str, object]]] = defaultdict(list)
        for key, v in self.latest.items():
            wd = key[:32] + key[64:]
            if wd in over and key not in unbacked and len(rows[wd]) < MAX_EVIDENCE_ITEMS:
                rows[wd].append(_latest_json(key, v))
        for wd, n in over.items():
            size = self.works[wd[:32]].size
            self._find(out, "over-size",
                       f"{key_to_text(wd[32:])} is credited {n} bytes of work "
                       f"{wd[:32].hex()[:16]}…, a work of {size} bytes",
                       work=wd[:32].hex(), downloader=key_to_text(wd[32:]), size=size,
                       credited=n, receipts=rows[wd])

    def _sybils(self, out: list[Finding], unbacked: set[bytes]) -> None:
        # A downloader's one uploader, or b"" once it has two or more.
        only: dict[bytes, bytes] = {}
        uploaders: set[bytes] = set()
        for key in self.latest:
            if key in unbacked:
                continue
            up, down = key[32:64], key[64:]
            uploaders.add(up)
            if only.setdefault(down, up) != up:
                only[down] = b""
        payers = {p.signed.payment.buyer for p in self.payments.values()}
        rings: dict[bytes, list[bytes]] = defaultdict(list)
        for down, up in only.items():
            if up and down not in uploaders and down not in payers:
                rings[up].append(down)
        suspects = {up: set(keys) for up, keys in rings.items() if len(keys) >= self.sybil_min}
        # What each ring acknowledged, in one pass over the receipts (not one per ring).
        seen: dict[bytes, tuple[set[bytes], list[int]]] = {up: (set(), [0]) for up in suspects}
        for key, v in self.latest.items():
            up = key[32:64]
            if up in suspects and key[64:] in suspects[up] and key not in unbacked:
                seen[up][0].add(key[:32])
                seen[up][1][0] += v[1]
        for up, keyset in suspects.items():
            keys = rings[up]
            self.sybils |= keyset
            works, (total,) = seen[up][0], seen[up][1]
            self._find(out, "suspected-sybil",
                       f"{len(keys)} keys only ever downloaded from "
                       f"{key_to_text(up)}, never paid and never uploaded",
                       uploader=key_to_text(up), count=len(keys),
                       keys=sorted(key_to_text(k) for k in keys)[:MAX_EVIDENCE_ITEMS],
                       works=sorted(w.hex() for w in works), bytes=total)

    def _request_receipts(self) -> None:
        """The receipts a buyer carried in its purchase requests are receipts it signed:
        they join the latest per (work, uploader, downloader) like any other (and count
        only if their uploader's own ledger backs them)."""
        for pay in self.payments.values():
            p = pay.signed.payment
            for raw in p.request.request.receipts:
                got = _read_receipt(raw)
                if got is None:
                    continue
                rb, sig, key, seq, n, ts = got
                if key[:32] != p.work or key[64:] != p.buyer or key[32:64] == key[64:]:
                    continue
                g = self.latest.get(key)
                if g is not None and g[0] >= seq:
                    continue
                try:
                    nacl.bindings.crypto_sign_open(sig + _RECEIPT_MSG + rb, key[64:])
                except (nacl.exceptions.CryptoError, ValueError):
                    continue
                if g is not None:
                    self._keep_own(key, g)
                at = pay.at
                self.latest[key] = (seq, n, ts, sig, p.seller, int(str(at["seq"])),
                                    int(str(at["bundle"])), "payment.request")

    def _sales(self, out: list[Finding]) -> tuple[list[_Payment], set[int]]:
        """The sales that count, once per buyer-signed request, and what each books: its
        code's face value. A code spent by several requests is a finding; each of them
        still books the face value against the collector that signed it (a copied home
        or a cheating seller pays for it: no sale is erased), and the carriers' share of
        all but the first (by the seller's time) is held for the label to review (so a
        leaked code redeemed again earns its redeemer's accomplices nothing). Returns the
        sales and the ids of those later spends."""
        def order(p: _Payment) -> tuple[datetime, bytes]:
            return (p.signed.payment.ts, p.signed.body)

        by_request: dict[bytes, list[_Payment]] = defaultdict(list)
        for pay in self.payments.values():
            by_request[pay.signed.payment.request_id].append(pay)

        def counts_first(p: _Payment) -> tuple[bool, int, datetime, bytes]:
            # Of several answers to one request, the one its buyer (or the collector)
            # holds, then the one that books the most: a seller cannot erase a sale by
            # signing a cheaper twin of it.
            s = p.signed
            return (s.body not in self.held_by_buyer, -s.payment.amount, s.payment.ts,
                    s.body)

        kept: list[_Payment] = []
        for rid, found in by_request.items():
            group = sorted(found, key=counts_first)
            if len(group) > 1:
                sellers = sorted({key_to_text(g.signed.payment.seller) for g in group})
                self._find(out, "double-booking",
                           f"{len(group)} different payment receipts answer one purchase "
                           f"request of {key_to_text(group[0].signed.payment.buyer)}, "
                           f"signed by {', '.join(sellers)}: counted once",
                           request=rid.hex(), sellers=sellers,
                           payments=[g.to_json() for g in group])
            kept.append(group[0])
        by_code: dict[bytes, list[_Payment]] = defaultdict(list)
        for pay in kept:
            p = pay.signed.payment
            by_code[p.issuance.id + p.code].append(pay)
        later: set[int] = set()
        for found in by_code.values():
            if len(found) < 2:
                continue
            group = sorted(found, key=lambda g: (g.signed.payment.ts,
                                                 g.signed.payment.request_id))
            later.update(id(g) for g in group[1:])
            first = group[0].signed.payment
            sellers = sorted({key_to_text(g.signed.payment.seller) for g in group})
            self._find(out, "double-spend",
                       f"one code of work {first.work.hex()[:16]}… ({first.payment_ref}) "
                       f"was spent by {len(group)} purchases, sold by "
                       f"{', '.join(sellers)}: each books its face value against the "
                       "code's collector, who answers for every sale it signs; the "
                       "carriers' share of the later ones is held for the label",
                       work=first.work.hex(), payment_ref=first.payment_ref,
                       sellers=sellers, payments=[g.to_json() for g in group])
        below: dict[tuple[bytes, bytes, int], int] = defaultdict(int)
        for pay in kept:
            p = pay.signed.payment
            if hashlib.sha256(pay.signed.body).digest() not in self.by_seller:
                chain = self.chains.get(p.seller)
                exported = chain.exported if chain is not None else None
                older = exported is not None and exported < p.ts
                self._find(out, "withheld-sale",
                           f"a sale of work {p.work.hex()[:16]}… to {key_to_text(p.buyer)} "
                           f"signed by {key_to_text(p.seller)} is missing from "
                           + ("the audit: no bundle of that seller was given"
                              if chain is None else
                              "that seller's bundle, exported before the sale: ask for a "
                              "fresh one" if older else "that seller's bundle")
                           + "; it is counted",
                           seller=key_to_text(p.seller), seller_bundle=chain is not None,
                           exported=None if exported is None else _iso(
                               int(exported.timestamp())),
                           payment=_payment_json(p), at=pay.at)
            asked = p.request.request.ts
            if abs(p.ts - asked) > REQUEST_SKEW:
                self._find(out, "misdated-sale",
                           f"a sale of work {p.work.hex()[:16]}… signed by "
                           f"{key_to_text(p.seller)} is dated {_iso(int(p.ts.timestamp()))}"
                           f", its buyer asked on {_iso(int(asked.timestamp()))}: it counts "
                           "on the day its buyer asked",
                           seller=key_to_text(p.seller), payment=_payment_json(p), at=pay.at)
            price = self.works[p.work].price
            if price is not None and p.amount < price:
                below[p.seller, p.work, p.amount] += 1
        for (seller, work, face), n in sorted(below.items()):
            price = self.works[work].price
            self._find(out, "below-price",
                       f"{key_to_text(seller)} sold {n} code(s) of work {work.hex()[:16]}… "
                       f"at face value {face}, under its price {price} (minor units"
                       + ("; gift or press codes" if face == 0 else "") + "): the rights "
                       "holders are paid on what was booked",
                       seller=key_to_text(seller), work=work.hex(), face=face, price=price,
                       sales=n)
        return kept, later

    def _carried(self, kept: list[_Payment], later: set[int],
                 unbacked: set[bytes]) -> tuple[Sale, ...]:
        """Each sale with who carried the work to its buyer: every backed latest receipt
        the buyer signed for the work, in any bundle or request, capped at one copy."""
        wanted = {p.signed.payment.work + p.signed.payment.buyer for p in kept}
        rows: dict[bytes, list[tuple[bytes, int]]] = defaultdict(list)
        for key, v in self.latest.items():
            wd = key[:32] + key[64:]
            if wd in wanted and key not in unbacked and v[1] > 0:
                rows[wd].append((key[32:64], v[1]))
        sales = []
        capped: dict[bytes, tuple[tuple[tuple[bytes, int], ...], bool]] = {}
        for pay in kept:
            p = pay.signed.payment
            wd = p.work + p.buyer
            if wd not in capped:
                size = self.works[p.work].size
                got = rows.get(wd, [])
                # A buyer that signed more than one copy (an over-size finding names it):
                # its carriers' share is held for the label, not scaled among keys it
                # may have made up.
                # (within a hundredth of the work, or RECEIPT_SLACK, they are scaled)
                # Each capped at the size, not scaled: the statement counts one copy at
                # most, pro rata and exactly.
                capped[wd] = (tuple(sorted((pk, min(n, size)) for pk, n in got if size)),
                              sum(n for _, n in got) > size + max(RECEIPT_SLACK, size // 100))
            carriers, over = capped[wd]
            asked = p.request.request.ts
            sales.append(Sale(work=p.work, buyer=p.buyer, collector=p.seller,
                              amount=p.amount, currency=p.currency,
                              ts=p.ts if abs(p.ts - asked) <= REQUEST_SKEW else asked,
                              ref=p.request_id, carriers=carriers,
                              hold_carriers=over or (
                                  id(pay) in later
                                  and pay.signed.body not in self.held_by_buyer)))
        return tuple(sales)


def audit(
    bundles: Iterable[bytes | VerificationError],
    works: Mapping[bytes, WorkInfo],
    *,
    progress: Callable[[int, int | None], None] | None = None,
    sybil_min: int = SYBIL_MIN,
) -> AuditReport:
    """Verify every bundle and cross-check what they hold; see the module docstring.

    *bundles* are bundle bytes as ``receipts export`` writes them (or, for one the caller
    could not read, such as a file over MAX_BUNDLE_SIZE, the error: a bad-bundle finding,
    and the audit goes on), read once each in order (a lazy iterable keeps one in memory
    at a time); *works* maps each work id
    (32 bytes) to its WorkInfo (see WorkInfo.from_license). *progress*, if given, is
    called after each bundle with (bundles done, total or None if unsized). A rule is
    broken in the data, not in the call, so findings are returned, never raised;
    TypeError/ValueError only for misuse.
    """
    if not isinstance(sybil_min, int) or sybil_min < 2:
        raise ValueError("sybil_min is an integer of at least 2")
    for work, info in works.items():
        if not isinstance(work, bytes) or len(work) != 32 or not isinstance(info, WorkInfo):
            raise TypeError("works maps 32-byte work ids to WorkInfo")
    a = _Audit(works, sybil_min)
    total = len(bundles) if isinstance(bundles, Sized) else None
    for i, data in enumerate(bundles):
        a.add(i, data)
        if progress is not None:
            progress(i + 1, total)
    return a.report()
