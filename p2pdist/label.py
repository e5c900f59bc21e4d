"""What a label runs: audit nodes' bundles, and turn what holds into a signed statement.
Composes licensing and payouts (with node.py and paid.py, the modules that combine
domains).

    audit_bundles()   verify every bundle, cross-check them: an AuditReport with findings
    payout()          audit, then the payout statement of what holds, signed by the label
    decide_copies()   sign which work of a group of copies is the original, into the ledger
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from p2pdist._files import read_bounded
from p2pdist.errors import InputError, MalformedObject, NotTrusted, VerificationError
from p2pdist.identity import Identity, atomic_write, fingerprint, key_from_text, key_to_text
from p2pdist.library import Library
from p2pdist.licensing import License, PaidTerms, parse_price, verify_info
from p2pdist.payouts.audit import AuditReport, Finding, WorkInfo, audit
from p2pdist.payouts.copies import (
    DECISION_KIND,
    MAX_COPIES,
    CopyDecision,
    Resolution,
    SignedCopyDecision,
    decisions_from_entries,
    find_copies,
    resolve,
)
from p2pdist.payouts.ledger import MAX_BUNDLE_SIZE
from p2pdist.payouts.report import to_csv, to_html, to_json
from p2pdist.payouts.statement import (
    MAX_STATEMENT_SIZE,
    Period,
    Pool,
    SignedStatement,
    Statement,
    StatementWork,
    compute_statement,
    verify_statement,
)
from p2pdist.swarm import MAX_TORRENT_SIZE, info_section
from p2pdist.trust import TrustStore

__all__ = ["AuditFailed", "DecisionResult", "PayoutResult", "audit_bundles", "decide_copies",
           "load_works", "parse_work_id", "payout", "verify_statement_file"]

FORMATS = {".json": "json", ".csv": "csv", ".html": "html", ".htm": "html"}


class AuditFailed(VerificationError):
    """audit --strict found something; the findings say what."""


def load_works(home: Path, refs: Sequence[Path]) -> list[License]:
    """Verified licenses of the works to audit: .torrent files, folders of them, or (with
    none given) every work in this home's library. A torrent whose license does not
    verify is refused (exit 3): the audit must know the true terms."""
    torrents: list[tuple[str, bytes]] = []
    if not refs:
        lib = Library(home)
        torrents = [(w.title, lib.torrent(w.work)) for w in lib.all()]
    for ref in refs:
        paths = sorted(ref.rglob("*.torrent")) if ref.is_dir() else [ref]
        if ref.is_dir() and not paths:
            raise InputError(f"no .torrent file in {ref}")
        for p in paths:
            torrents.append((str(p), read_bounded(p, MAX_TORRENT_SIZE, what="a torrent")))
    out: dict[str, License] = {}
    for name, data in torrents:
        try:
            lic = verify_info(info_section(data))
        except VerificationError as e:
            raise type(e)(f"{name}: {e.message}", remedy=e.remedy) from None
        out[lic.work] = lic
    if not out:
        raise InputError("no works to audit against",
                         remedy="give --works TORRENT_OR_DIR (the works' .torrent files)")
    return list(out.values())


def _bundles(paths: Sequence[Path]) -> Iterator[bytes | VerificationError]:
    for p in paths:
        try:
            yield read_bounded(p, MAX_BUNDLE_SIZE, what="a ledger bundle")
        except InputError as e:  # too large: one bad bundle, not the end of the audit
            yield MalformedObject(f"{p.name}: {e.message}")


class _Sized:
    """A lazy iterable of bundle bytes that knows how many (for the progress bar)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[bytes | VerificationError]:
        return _bundles(self.paths)


def audit_bundles(bundles: Sequence[Path], licenses: Sequence[License], *,
                  progress: Callable[[int, int | None], None] | None = None,
                  label: bytes | None = None) -> AuditReport:
    """audit() of the bundles at *bundles* against *licenses*; with *label* (the key of
    the label that audits), copies are named too (check_copies)."""
    if not bundles:
        raise InputError("no bundle to audit", remedy="give the files `receipts export` wrote")
    for p in bundles:
        if not p.is_file():
            raise InputError(f"no such bundle: {p}")
    works = {bytes.fromhex(lic.work): WorkInfo.from_license(lic) for lic in licenses}
    report = audit(_Sized(bundles), works, progress=progress)
    if label is None:
        return report
    report, _ = check_copies(report, licenses, label=label)
    return report


def _stale_sellers(report: AuditReport, licenses: Sequence[License], period: Period,
                   now: datetime) -> AuditReport:
    """A seller's bundle exported before the period it is paid for ends hides the sales it
    signed since (unless their buyers or the collector hand them in): each is a
    stale-bundle finding, so the label asks for a fresh export before paying. (A sale
    first seen after its period was paid is dated in that period: only the label's
    earlier statements can tell it was never booked.)"""
    end = min(period.end, now)
    sellers = {pk for lic in licenses if isinstance(lic.manifest.terms, PaidTerms)
               for pk in lic.manifest.terms.sellers}
    found = []
    for node, ts in sorted(report.exported.items()):
        if node in sellers and ts < end:
            found.append(Finding(
                "stale-bundle", f"the bundle of seller {key_to_text(node)} was exported at "
                f"{ts.isoformat()}, before the end of the period ({end.isoformat()}): sales "
                "it signed since are not in it; ask for a fresh export",
                {"seller": key_to_text(node), "exported": ts.isoformat(),
                 "period_end": end.isoformat()}))
    return replace(report, findings=report.findings + tuple(found)) if found else report


def check_copies(report: AuditReport, licenses: Sequence[License], *,
                 label: bytes) -> tuple[AuditReport, Resolution]:
    """Name works that copy another's files under other holders ("copied-work", with
    the evidence of who came first), and what *label*'s signed decisions in the bundles
    do to their money: the works of an undecided group are held (``disputed``), a
    decided copy's holder money goes to its original (``original_of``)."""
    by_id = {bytes.fromhex(lic.work): lic for lic in licenses}
    groups = find_copies(by_id, labels={label})
    if not groups:
        return report, Resolution(frozenset(), {})
    first: dict[bytes, datetime] = {}
    involved = set().union(*(g.work_ids for g in groups))
    for sale in report.sales:
        if sale.work in involved and (sale.work not in first or sale.ts < first[sale.work]):
            first[sale.work] = sale.ts
    for work in involved:
        for r in report.transfers(work):
            ts = r.receipt.ts
            if work not in first or ts < first[work]:
                first[work] = ts
    groups = find_copies(by_id, first_seen=first, labels={label})
    read = decisions_from_entries(report.decisions)
    res = resolve(groups, read.decisions, label=label)
    # A work this label certifies is not held because an uncertified work copies its
    # files (one "album" of tracks from many certified works would hold them all): only
    # the uncertified ones are, until the label decides. A group of certified works
    # only is held whole (the label certified both sides).
    release: set[bytes] = set()
    for g in groups:
        certified = {w.work for w in g.works if label in w.certified_by}
        if certified and len(certified) < len(g.works):
            release |= certified
    if release & res.disputed:
        res = Resolution(res.disputed - release, res.original_of, res.ignored)
    found = []
    for g in groups:
        held = sorted(w.hex() for w in g.work_ids if w in res.disputed)
        decided = {w.hex(): res.original_of[w].hex() for w in sorted(g.work_ids)
                   if w in res.original_of}
        titles = ", ".join(f"{w.title!r}" for w in g.works)
        state = ("its money is held until the label decides which is the original "
                 "(p2pdist label decide ORIGINAL COPY...)" if held else
                 "the label decided: each copy's holder money goes to its original")
        found.append(Finding(
            "copied-work", f"{len(g.works)} works share {g.shared_bytes:,} bytes of content "
            f"under different rights holders ({titles}); {state}",
            {**g.to_dict(), "held": held, "decided": decided,
             "ignored_decisions": [d.to_dict() for d in res.ignored],
             "bad_decisions": [d.to_dict() for d in read.bad]}))
    return replace(report, findings=report.findings + tuple(found)), res


@dataclass(frozen=True, slots=True)
class PayoutResult:
    statement: Statement
    report: AuditReport
    out: Path
    signed: Path

    def to_dict(self) -> dict[str, object]:
        from p2pdist.payouts.report import statement_json

        return {"statement": statement_json(self.statement), "out": str(self.out),
                "signed": str(self.signed), "sums_exactly": self.statement.sums_exactly,
                "findings": len(self.report.findings)}


def _day(text: str, what: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a date", remedy="give it as YYYY-MM-DD") \
            from None


def payout(identity: Identity, bundles: Sequence[Path], licenses: Sequence[License], *,
           out: Path, start: str | None = None, end: str | None = None,
           pool: tuple[str, str] | None = None, force: bool = False,
           progress: Callable[[int, int | None], None] | None = None,
           now: datetime | None = None) -> PayoutResult:
    """Audit the bundles, then write the statement of what holds: rendered at *out*
    (.json, .csv or .html by its suffix) and signed by the label beside it (.p2ps)."""
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"--out {out.name}: say .json, .csv or .html")
    signed_path = out.with_suffix(".p2ps")
    for path in (out, signed_path):
        if path.exists() and not force:
            raise InputError(f"{path} already exists",
                             remedy="choose another --out, or --force")
    period = None
    if start or end:
        lo = _day(start, "--from") if start else datetime(1970, 1, 1, tzinfo=UTC)
        hi = _day(end, "--to") if end else datetime(9999, 12, 31, tzinfo=UTC)
        if hi <= lo:
            raise InputError("--to must be after --from")
        if lo.year < 1970:
            raise InputError(f"--from {start!r} is before 1970",
                             remedy="give a date from 1970-01-01 on")
        period = Period(lo, hi)
    pool_ = None
    if pool is not None:
        amount, currency = pool
        pool_ = Pool(parse_price(amount, currency), currency.strip().upper())
    report = audit_bundles(bundles, licenses, progress=progress)
    report, copies = check_copies(report, licenses, label=identity.public_key)
    if period is not None:
        report = _stale_sellers(report, licenses, period,
                                (now or datetime.now(UTC)).replace(microsecond=0))
    # Keys the audit suspects of being a Sybil ring share nothing of a pool: all of them,
    # not only those a finding's (capped) evidence lists.
    sybils = report.suspected_sybils
    works = {bytes.fromhex(lic.work): StatementWork.from_license(lic) for lic in licenses}
    try:
        st = compute_statement(
            label=identity.public_key, works=works,
            sales=[s for s in report.sales if s.work in works],
            transfers=[s.receipt for s in report.transfers()], pool=pool_, period=period,
            exclude=sybils, issued=(now or datetime.now(UTC)).replace(microsecond=0),
            disputed=copies.disputed & works.keys(),
            original_of={c: o for c, o in copies.original_of.items()
                         if c in works and o in works})
        signed = SignedStatement.sign(st, identity)
    except ValueError as e:
        raise InputError(f"cannot compute the statement: {e}") from None
    findings = [f.to_dict() for f in report.findings]
    text = {"json": to_json, "csv": to_csv}.get(fmt)
    rendered = text(st) if text is not None else to_html(st, findings)
    atomic_write(signed_path, signed.to_bytes())
    atomic_write(out, rendered.encode("utf-8"))
    return PayoutResult(st, report, out, signed_path)


def verify_statement_file(path: Path, *, label: str | None = None,
                          home: Path | None = None) -> Statement:
    """Check a signed statement (.p2ps): the label's signature, the exact sums, and who
    signed it: the label *label* names, or else a label in *home*'s trust store.

    Anyone can sign a statement that names its own key as the label and sums exactly;
    only the key says whose it is. Without --label, a signer the trust store does not
    hold is NotTrusted (exit 3)."""
    if label is None and home is None:
        raise ValueError("say which label to expect, or whose trust store to check")
    expected = None
    if label is not None:  # an empty --label "$UNSET" checks against nothing: refused
        try:
            expected = key_from_text(label)
        except MalformedObject:  # the argument is wrong, not the statement (exit 1)
            raise InputError(f"--label {label[:80]!r} is not a key",
                             remedy="give the 52-character key the label's `whoami` "
                             "prints") from None
    signed = SignedStatement.from_bytes(
        read_bounded(path, MAX_STATEMENT_SIZE, what="a signed statement"))
    verify_statement(signed, label=expected)
    st = signed.statement
    if expected is None and home is not None and not TrustStore(home).is_trusted(st.label):
        raise NotTrusted(
            f"the statement is signed by {key_to_text(st.label)} ({fingerprint(st.label)}), "
            "a key that is not a label in your trust store: anyone can sign a statement "
            "that adds up",
            remedy="add the label with `p2pdist trust add LABEL_KEY --name NAME` (the key "
            "your label gave you, not one read from the statement), or pass --label KEY")
    return st


def parse_work_id(text: str, what: str) -> bytes:
    """A work id as `audit` and `works` print it: 64 hexadecimal digits."""
    t = text.strip().lower()
    if len(t) != 64 or any(c not in "0123456789abcdef" for c in t):
        raise InputError(f"{what} {text[:80]!r} is not a work id",
                         remedy="give the 64-hex work id that `p2pdist audit --json` or "
                         "`p2pdist works` prints")
    return bytes.fromhex(t)


@dataclass(frozen=True, slots=True)
class DecisionResult:
    signed: SignedCopyDecision
    seq: int  # its entry in this node's ledger

    def to_dict(self) -> dict[str, object]:
        return {**self.signed.decision.to_json(), "kind": DECISION_KIND, "seq": self.seq}


def decide_copies(home: Path, identity: Identity, original: str, copies: Sequence[str], *,
                  now: datetime | None = None) -> DecisionResult:
    """`label decide`: sign that *original* came first and *copies* copy it, and append
    the decision to this node's ledger (kind ``decision.copy``), so the next
    `receipts export` carries it to whoever audits. With no copies, the decision says the
    original is a work of its own. Only decisions by the label that audits count."""
    from p2pdist._credit import open_ledger

    first = parse_work_id(original, "ORIGINAL")
    ids = [parse_work_id(c, "COPY") for c in copies]
    if first in ids:
        raise InputError("ORIGINAL is also named as a COPY",
                         remedy="a work is not a copy of itself: name it once")
    if len(set(ids)) != len(ids):
        raise InputError("a COPY is named twice", remedy="name each copy once")
    if len(ids) > MAX_COPIES:
        raise InputError(f"{len(ids)} copies in one decision; at most {MAX_COPIES}",
                         remedy="sign several decisions for one original")
    decision = CopyDecision(identity.public_key, first, tuple(ids),
                            (now or datetime.now(UTC)).replace(microsecond=0))
    signed = SignedCopyDecision.sign(decision, identity)
    log = open_ledger(home, identity.public_key)
    try:
        entry = log.append(DECISION_KIND, signed.to_bytes())
    finally:
        log.close()
    return DecisionResult(signed, entry.seq)
