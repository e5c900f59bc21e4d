"""Copies under another key: works that share a file's content under other rights holders.

Superdistribution without DRM cannot stop a buyer or a thief from publishing a work's bytes
again under its own key. It can see it, exactly: a license binds the torrent's piece
hashes (``licensing/_content.py``), and two works whose files have the same content have
the same hashes.

- **Hybrid and v2 torrents** bind each file's BEP 52 pieces root: the root of the Merkle
  tree of the file's 16 KiB blocks, whatever the torrent's piece length, name or other
  files. Two files with the same (root, size) have the same bytes. So a copy of one track
  of an album, renamed and put in a torrent of its own, is seen.
- **A v1-only torrent** binds only the SHA-256 of its whole ``pieces`` string and its piece
  length. Those hash the files' bytes concatenated, cut at the piece length: a v1-only
  work is seen only as an exact whole-torrent copy (the same bytes, in the same file
  order, hashed at the same piece length) of another work's v1 binding (a single-file
  hybrid's v1 binding is the same as a v1-only torrent's of that file). A copy re-hashed
  at another piece length, with one file added or left out, or a v1-only copy of a
  multi-file hybrid (whose v1 side holds pad files), is not seen.
- **A paid work** binds its ciphertexts (``.p2pe``). A copy that re-uses them (the
  thief holds the content key from its own purchase and sells the same bytes for less)
  is seen; a copy re-encrypted under another key, or published decrypted, has other
  bytes and is not: the manifest commits to no plaintext hash.

**Small common files are not copies.** Honest works share small files: a license text
(about 20 KiB), a silence or click track of a few bytes, a label's logo. Two works are
copies when the content they share (the sizes of their distinct common files, summed) is
at least ``MIN_SHARED_BYTES`` (1 MiB), or at least half of the smaller work. One MiB is
about a minute of 128 kbit/s audio, fifty license texts: no common boilerplate comes near
it, while a copy of any track does. The half rule catches a copy of a small work (a
short single, a poem) that the 1 MiB floor would miss, and stays far from a 20 KiB text
shared by two works of a few hundred KiB. A pair of works whose shared part is under both
bounds goes unnamed (a copied 500 KiB jingle in a 10 MiB album, say). Works whose split
sheets have the same set of keys are never copies of each other (an artist's single and
its album); such works only join a group through a third work that copies them.

A file under 1 MiB that more than ``COMMON_HOLDERS`` different sets of holders publish is
common: it does not link works on its own (it still counts in the bytes two works share,
once they are linked by something else). That keeps the search linear in the works
when thousands of them carry one license text, and costs nothing in practice: a pair
linked only by such a file shares under 1 MiB, so it is a copy only if one of the two
works is under 2 MiB and is copied by more than 32 others.

Evidence of who came first, strongest first: a certificate from a label the caller
trusts, embedded in the work's manifest (a label vouches for the holder); the earliest
signed sale or receipt the caller saw for the work (``first_seen``); the earliest
``created`` time (what the holders signed: a thief may write any date, so it decides
only when nothing else does).

A label settles a group with a signed **CopyDecision**::

    {type: p2pdist/copy-decision, v: 1, label, original: work id, copies: [work ids], ts}

signed by the label (domain ``p2pdist/copy-decision/v1``) in the shared envelope of
``p2pdist/_signed.py``. ``copies`` is sorted, without repeats, and never holds the
original; it may be empty, to say that the original is a work of its own (two honest
works that happen to share a large file: one such decision for each). A decision is
appended to the label's ledger as an entry of kind ``decision.copy``, so it travels in
bundles like any signed object.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from p2pdist import _canonical
from p2pdist._signed import (
    MAX_TS,
    as_bytes,
    as_dict,
    as_int,
    as_list,
    check_version,
    envelope,
    read_signed,
)
from p2pdist.errors import MalformedObject, VerificationError
from p2pdist.identity import Identity, fingerprint, key_to_text, verify_signature
from p2pdist.licensing import CCTerms, License, format_price
from p2pdist.payouts.ledger import Entry

__all__ = [
    "COMMON_HOLDERS",
    "DECISION_DOMAIN",
    "DECISION_KIND",
    "DECISION_TYPE",
    "MAX_COPIES",
    "MAX_DECISION_SIZE",
    "MIN_SHARED_BYTES",
    "BadDecision",
    "CopyDecision",
    "CopyGroup",
    "CopyWork",
    "DecisionRejected",
    "DecisionsRead",
    "IgnoredDecision",
    "Resolution",
    "SharedFile",
    "SignedCopyDecision",
    "decisions_from_entries",
    "find_copies",
    "is_copy",
    "resolve",
    "verify_decision",
]

DECISION_TYPE: Final = "p2pdist/copy-decision"
DECISION_DOMAIN: Final = b"p2pdist/copy-decision/v1"
DECISION_KIND: Final = "decision.copy"
MIN_SHARED_BYTES: Final = 1024 * 1024
COMMON_HOLDERS: Final = 32
# A decision names at most this many copies (about 9 KB); a label facing more signs
# several decisions for one original.
MAX_COPIES: Final = 256
MAX_DECISION_SIZE: Final = 16 * 1024
DECISION_REASONS: Final = ("untrusted-label",)

_FileKey = tuple[bytes, int]  # (BEP 52 pieces root, size)
_V1Key = tuple[bytes, int, int]  # (SHA-256 of the v1 pieces, piece length, total size)


def is_copy(shared: int, size_a: int, size_b: int) -> bool:
    """The rule for two works of different holders that share *shared* bytes: at least
    ``MIN_SHARED_BYTES``, or at least half of the smaller work."""
    if shared <= 0:
        return False
    return shared >= MIN_SHARED_BYTES or 2 * shared >= min(size_a, size_b)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


# -- what the audit reports ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharedFile:
    """One content that several works of a group hold: its BEP 52 pieces ``root`` and
    ``size``, and its path in each work (by work id). For a whole-torrent v1 match
    (``binding == "v1-torrent"``), ``root`` is the SHA-256 of the v1 pieces, ``size`` the
    torrent's size and each path the torrent's name."""

    root: bytes
    size: int
    paths: tuple[tuple[bytes, tuple[str, ...]], ...]
    binding: str = "v2-root"

    def to_dict(self) -> dict[str, object]:
        return {"root": self.root.hex(), "size": self.size, "binding": self.binding,
                "paths": [{"work": w.hex(), "path": "/".join(p)} for w, p in self.paths]}


@dataclass(frozen=True, slots=True)
class CopyWork:
    """One work of a group, with the evidence of when it came."""

    work: bytes
    title: str
    holders: tuple[bytes, ...]  # the split sheet's keys, sorted
    terms: str  # "CC-BY-4.0" or "5.00 EUR"
    size: int
    created: datetime  # signed by its holders, and chosen by them
    certified_by: tuple[bytes, ...]  # labels (of those trusted) certifying a holder
    first_seen: datetime | None  # earliest signed sale or receipt the caller saw

    def to_dict(self) -> dict[str, object]:
        return {
            "work": self.work.hex(), "title": self.title,
            "holders": [key_to_text(k) for k in self.holders], "terms": self.terms,
            "size": self.size, "created": _iso(self.created),
            "certified_by": [key_to_text(k) for k in self.certified_by],
            "first_seen": None if self.first_seen is None else _iso(self.first_seen),
        }


@dataclass(frozen=True, slots=True)
class CopyGroup:
    """Works linked by shared content under different holders (a connected group: A
    copies B, C copies B). ``likely_original`` is the work with the strongest evidence,
    or None when nothing separates the candidates; ``reason`` says why, in words."""

    works: tuple[CopyWork, ...]  # by work id
    shared: tuple[SharedFile, ...]  # by (root, size)
    shared_bytes: int
    likely_original: bytes | None
    reason: str

    @property
    def work_ids(self) -> frozenset[bytes]:
        return frozenset(w.work for w in self.works)

    def work(self, work: bytes) -> CopyWork:
        for w in self.works:
            if w.work == work:
                return w
        raise KeyError(work.hex())

    def to_dict(self) -> dict[str, object]:
        return {
            "works": [w.to_dict() for w in self.works],
            "shared": [s.to_dict() for s in self.shared],
            "shared_bytes": self.shared_bytes,
            "likely_original": None if self.likely_original is None
            else self.likely_original.hex(),
            "reason": self.reason,
        }


class _Sets:
    """Union-find over work ids."""

    def __init__(self) -> None:
        self.parent: dict[bytes, bytes] = {}

    def find(self, x: bytes) -> bytes:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: bytes, b: bytes) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True, slots=True)
class _Work:
    lic: License
    holders: frozenset[bytes]
    files: dict[_FileKey, tuple[tuple[str, ...], ...]]  # content -> its paths, sorted
    v1: _V1Key | None
    v1_only: bool  # no pieces roots: only the whole v1 binding compares
    size: int


def _work(lic: License) -> _Work:
    c = lic.manifest.content
    files: dict[_FileKey, list[tuple[str, ...]]] = defaultdict(list)
    for f in c.files:
        if f.size and f.root is not None:
            files[f.root, f.size].append(f.path)
    v1 = None
    if c.v1_pieces_sha256 is not None:
        v1 = (c.v1_pieces_sha256, c.piece_length, c.total_size)
    return _Work(lic, frozenset(s.pk for s in lic.manifest.splits),
                 {k: tuple(sorted(p)) for k, p in files.items()}, v1, not files,
                 c.total_size)


def _shared(a: _Work, b: _Work) -> int:
    if a.v1_only or b.v1_only:
        return a.size if a.v1 is not None and a.v1 == b.v1 else 0
    small, big = (a, b) if len(a.files) <= len(b.files) else (b, a)
    return sum(size for (root, size) in small.files if (root, size) in big.files)


def find_copies(licenses: Mapping[bytes, License], *,
                first_seen: Mapping[bytes, datetime] | None = None,
                labels: Collection[bytes] | None = None) -> list[CopyGroup]:
    """The groups of works (by 32-byte work id, each a License that verify_info verified)
    that share content under different rights holders, by the rule in this module's
    docstring; sorted by their first work id.

    *first_seen* maps a work id to the time of the earliest signed sale or receipt the
    caller saw for it. *labels* are the labels whose certificates count as evidence
    (give the auditing label's own key); None counts every embedded certificate, which
    verify_info has verified already.
    """
    seen = first_seen or {}
    works = {w: _work(lic) for w, lic in licenses.items()}
    # Which works hold each content, and how many holder sets publish it.
    by_file: dict[_FileKey, list[bytes]] = defaultdict(list)
    by_v1: dict[_V1Key, list[bytes]] = defaultdict(list)
    for wid in sorted(works):
        w = works[wid]
        for key in w.files:
            by_file[key].append(wid)
        if w.v1 is not None:
            by_v1[w.v1].append(wid)
    pairs: set[tuple[bytes, bytes]] = set()
    keyed = [(size, ids) for (_, size), ids in by_file.items()] + \
        [(size, ids) for (_, _, size), ids in by_v1.items()]
    for size, ids in keyed:
        if len(ids) < 2:
            continue
        holder_sets = {works[i].holders for i in ids}
        if len(holder_sets) < 2:
            continue
        if len(holder_sets) > COMMON_HOLDERS and size < MIN_SHARED_BYTES:
            continue  # a common small file: it links nothing on its own
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                if works[a].holders != works[b].holders:
                    pairs.add((a, b))
    sets = _Sets()
    for a, b in sorted(pairs):
        wa, wb = works[a], works[b]
        if is_copy(_shared(wa, wb), wa.size, wb.size):
            sets.union(a, b)
    members: dict[bytes, list[bytes]] = defaultdict(list)
    for wid in sorted(works):
        members[sets.find(wid)].append(wid)
    groups = [_group(ids, works, seen, labels) for ids in members.values() if len(ids) > 1]
    return sorted(groups, key=lambda g: g.works[0].work)


def _group(ids: list[bytes], works: Mapping[bytes, _Work], seen: Mapping[bytes, datetime],
           labels: Collection[bytes] | None) -> CopyGroup:
    shared: list[SharedFile] = []
    holders_of: dict[_FileKey, list[bytes]] = defaultdict(list)
    for wid in ids:
        for key in works[wid].files:
            holders_of[key].append(wid)
    for (root, size), have in sorted(holders_of.items()):
        if len({works[w].holders for w in have}) > 1:
            shared.append(SharedFile(root, size, tuple(
                (w, p) for w in have for p in works[w].files[root, size])))
    v1s: dict[_V1Key, list[bytes]] = defaultdict(list)
    for wid in ids:
        v1 = works[wid].v1
        if v1 is not None:
            v1s[v1].append(wid)
    for (digest, _, size), have in sorted(v1s.items()):
        # Two hybrids that match as a whole match file by file above already.
        if len({works[w].holders for w in have}) > 1 and any(works[w].v1_only
                                                              for w in have):
            shared.append(SharedFile(digest, size, tuple(
                (w, (works[w].lic.manifest.content.files[0].path[0],)) for w in have),
                binding="v1-torrent"))
    members = tuple(_copy_work(wid, works[wid].lic, seen.get(wid), labels) for wid in ids)
    original, reason = _likely_original(members)
    return CopyGroup(members, tuple(shared), sum(s.size for s in shared), original, reason)


def _copy_work(wid: bytes, lic: License, first: datetime | None,
               labels: Collection[bytes] | None) -> CopyWork:
    m = lic.manifest
    certified = sorted({c.certificate.label for c in m.certificates
                        if labels is None or c.certificate.label in labels})
    terms = m.terms.spdx if isinstance(m.terms, CCTerms) \
        else format_price(m.terms.price, m.terms.currency)
    if first is not None and first.utcoffset() is None:
        raise ValueError("first_seen times are aware datetimes")
    return CopyWork(wid, m.title, tuple(sorted(s.pk for s in m.splits)), terms,
                    m.content.total_size, m.created, tuple(certified),
                    None if first is None else first.astimezone(UTC))


def _name(w: CopyWork) -> str:
    return f"{w.work.hex()[:16]} ({w.title!r})"


def _likely_original(works: Sequence[CopyWork]) -> tuple[bytes | None, str]:
    said: list[str] = []
    candidates = list(works)
    # (1) a certificate from a trusted label
    certified = [w for w in candidates if w.certified_by]
    if len(certified) == 1:
        w = certified[0]
        labels = ", ".join(fingerprint(k) for k in w.certified_by)
        return w.work, (f"{_name(w)} is the only one whose holder a trusted label "
                        f"certifies ({labels})")
    if certified:
        candidates = certified
        said.append(f"{len(certified)} carry a trusted label's certificate")
    # Nothing else decides: a receipt's or a sale's time is signed by the downloader or
    # the seller, who may be the thief's own keys, and `created` is what the holders
    # wrote. They are shown as what they are, claims, and the label decides.
    seen = sorted((w.first_seen, w.work) for w in candidates if w.first_seen is not None)
    if seen:
        said.append("first signed sale or receipt (times their signers chose): " + ", ".join(
            f"{_name(w)} {_iso(w.first_seen)}" for w in candidates if w.first_seen))
    said.append("created (as their holders wrote): " + ", ".join(
        f"{_name(w)} {_iso(w.created)}" for w in candidates))
    return None, "no trusted label's certificate separates them, and nothing a copier " \
        "cannot forge does: the label decides; " + "; ".join(said)


# -- the label's decision ------------------------------------------------------------------


class DecisionRejected(VerificationError):
    """A well-signed copy decision that fails a policy check; ``reason`` says which."""

    def __init__(self, message: str, *, reason: str, remedy: str | None = None) -> None:
        if reason not in DECISION_REASONS:
            raise ValueError(f"unknown decision rejection reason {reason!r}")
        super().__init__(message, remedy=remedy)
        self.reason = reason


def _key(v: Any, what: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise ValueError(f"a copy decision's {what} is 32 bytes")
    return v


@dataclass(frozen=True, slots=True)
class CopyDecision:
    """*label* says that *original* came first and that each of *copies* copies it."""

    label: bytes
    original: bytes
    copies: tuple[bytes, ...]  # sorted on construction: one set, one encoding
    ts: datetime

    def __post_init__(self) -> None:
        _key(self.label, "label key")
        _key(self.original, "original work id")
        copies = tuple(self.copies)
        for c in copies:
            _key(c, "copy work id")
        if len(copies) > MAX_COPIES:
            raise ValueError(f"a copy decision names at most {MAX_COPIES} copies")
        if len(set(copies)) != len(copies):
            raise ValueError("a copy decision names a copy twice")
        if self.original in copies:
            raise ValueError("a work is not a copy of itself")
        ts = self.ts
        if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond \
                or not 0 <= ts.timestamp() <= MAX_TS:
            raise ValueError("a copy decision's ts is an aware datetime in whole seconds")
        object.__setattr__(self, "copies", tuple(sorted(copies)))
        object.__setattr__(self, "ts", ts.astimezone(UTC))

    def to_dict(self) -> dict[str, object]:
        return {"copies": list(self.copies), "label": self.label,
                "original": self.original, "ts": int(self.ts.timestamp()),
                "type": DECISION_TYPE, "v": 1}

    def signed_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())

    def to_json(self) -> dict[str, object]:
        return {"label": key_to_text(self.label), "original": self.original.hex(),
                "copies": [c.hex() for c in self.copies], "ts": _iso(self.ts)}

    @classmethod
    def from_dict(cls, raw: Any) -> CopyDecision:
        d = as_dict(raw, "copy decision",
                    frozenset({"type", "v", "label", "original", "copies", "ts"}))
        check_version(d, DECISION_TYPE, "copy decision")
        copies = [as_bytes(c, "copy's work id", 32)
                  for c in as_list(d["copies"], "copies", MAX_COPIES)]
        if copies != sorted(set(copies)):
            raise MalformedObject("the copy decision's copies are repeated or not in byte "
                                  "order")
        try:
            return cls(label=as_bytes(d["label"], "decision's label key", 32),
                       original=as_bytes(d["original"], "original's work id", 32),
                       copies=tuple(copies),
                       ts=datetime.fromtimestamp(as_int(d["ts"], "decision's time", 0,
                                                        MAX_TS), UTC))
        except ValueError as e:
            raise MalformedObject(f"the copy decision is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class SignedCopyDecision:
    """The decision bytes exactly as the label signed them, parsed, and the signature."""

    body: bytes
    decision: CopyDecision
    sig: bytes

    @classmethod
    def sign(cls, decision: CopyDecision, label: Identity) -> SignedCopyDecision:
        if label.public_key != decision.label:
            raise ValueError("only the label it names signs a copy decision")
        body = decision.signed_bytes()
        return cls(body, decision, label.sign(domain=DECISION_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(DECISION_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedCopyDecision:
        """Parse an envelope (size first); MalformedObject for anything else. The
        signature is checked by verify_decision, not here."""
        body, d, sig = read_signed(data, DECISION_TYPE, max_size=MAX_DECISION_SIZE,
                                   what="copy decision")
        return cls(body, CopyDecision.from_dict(d), sig)


def _check_signature(signed: SignedCopyDecision) -> None:
    verify_signature(pk=signed.decision.label, domain=DECISION_DOMAIN, message=signed.body,
                     signature=signed.sig)


def verify_decision(signed: SignedCopyDecision, *, trusted_labels: Collection[bytes]) -> None:
    """Verify a copy decision.

    Checks, in order:
      (1) the label it names signed the decision bytes               (InvalidSignature);
      (2) that label is one of *trusted_labels*     (DecisionRejected "untrusted-label").
    """
    d = signed.decision
    # (1) opaque on failure
    _check_signature(signed)
    # (2)
    if d.label not in trusted_labels:
        raise DecisionRejected(f"the copy decision is signed by {fingerprint(d.label)}, "
                               "who is not a label you trust", reason="untrusted-label",
                               remedy="only the label that pays these works decides")


@dataclass(frozen=True, slots=True)
class BadDecision:
    """A ``decision.copy`` ledger entry that does not parse or verify."""

    node: bytes
    seq: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"node": key_to_text(self.node), "seq": self.seq, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class DecisionsRead:
    decisions: tuple[SignedCopyDecision, ...]
    bad: tuple[BadDecision, ...]


def decisions_from_entries(entries: Iterable[Entry]) -> DecisionsRead:
    """The copy decisions among ledger *entries* (those of kind ``decision.copy``) whose
    label's signature holds, each once; the others are skipped and reported. Whose word
    counts is resolve()'s question: it keeps only the auditing label's."""
    good: dict[bytes, SignedCopyDecision] = {}
    bad: list[BadDecision] = []
    for e in entries:
        if e.kind != DECISION_KIND:
            continue
        try:
            signed = SignedCopyDecision.from_bytes(e.payload)
            _check_signature(signed)
        except VerificationError as err:
            bad.append(BadDecision(e.node, e.seq, err.message))
            continue
        good.setdefault(signed.body, signed)
    return DecisionsRead(tuple(good.values()), tuple(bad))


# -- what the money does -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IgnoredDecision:
    decision: CopyDecision
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {**self.decision.to_json(), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Resolution:
    """``disputed``: the works whose money (sales, donations, the grant) is held, not
    paid. ``original_of``: each decided copy and the original its holders' money goes
    to (chains followed to the last original). ``ignored``: decisions that did not
    count, and why."""

    disputed: frozenset[bytes]
    original_of: dict[bytes, bytes]
    ignored: tuple[IgnoredDecision, ...] = ()


def resolve(groups: Iterable[CopyGroup], decisions: Iterable[SignedCopyDecision], *,
            label: bytes) -> Resolution:
    """What the label's decisions do to the money of *groups* (from find_copies).

    Only decisions that *label* signed count (each signature is checked here). A
    decision counts when its original and every copy it names are in one group; one
    naming a work outside the original's group (or an original in no group) is ignored
    as a whole, and listed in ``ignored``: a label's word on works not seen copying
    each other moves no money. Decisions apply in the order of their ``ts`` (then of
    their bytes), so a later one overrides an earlier one for each work it names: the
    original's own money flows (it is no longer anyone's copy), each copy's holder money
    goes to the original.

    Every work of a group that no counted decision names (as its original or as a copy)
    is disputed: its money is held. That includes the original's holders' other works
    in the group (an album holding the copied single): the label names each, as a copy
    or, in a decision with no copies, as a work of its own. A copy that appears after a
    decision joins the group undecided, so its money is held until the label speaks.
    """
    group_list = list(groups)
    group_of: dict[bytes, int] = {}
    for i, g in enumerate(group_list):
        for w in g.works:
            group_of[w.work] = i
    ignored: list[IgnoredDecision] = []
    valid: list[SignedCopyDecision] = []
    for s in decisions:
        d = s.decision
        if d.label != label:
            ignored.append(IgnoredDecision(d, "signed by another label"))
            continue
        try:
            _check_signature(s)
        except VerificationError:
            ignored.append(IgnoredDecision(d, "its signature does not verify"))
            continue
        gi = group_of.get(d.original)
        if gi is None:
            ignored.append(IgnoredDecision(d, "its original is in no group of copies"))
            continue
        outside = [c for c in d.copies if group_of.get(c) != gi]
        if outside:
            ignored.append(IgnoredDecision(d, f"it names {len(outside)} work(s) outside "
                                           "the original's group"))
            continue
        valid.append(s)
    valid.sort(key=lambda s: (s.decision.ts, s.body))
    original_of: dict[bytes, bytes] = {}
    covered: set[bytes] = set()
    for s in valid:
        d = s.decision
        original_of.pop(d.original, None)
        for c in d.copies:
            original_of[c] = d.original
        covered |= {d.original, *d.copies}
    # Follow chains (A copies B, a later decision: B copies C) to the last original. The
    # map is a forest (each decision makes its original a root), so this ends.
    final: dict[bytes, bytes] = {}
    for c, first in original_of.items():
        o, steps = first, 0
        while o in original_of and steps <= len(original_of):
            o, steps = original_of[o], steps + 1
        final[c] = o
    disputed = frozenset(w for w in group_of if w not in covered)
    return Resolution(disputed, final, tuple(ignored))
