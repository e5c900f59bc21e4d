"""Payout statements: who is owed what, computed from verified sales and an optional pool.

``compute_statement`` is a pure function over objects the audit layer has already
verified (signatures, sellers, prices): it reads no clock, no disk and no network, and
the same inputs in any order give the same Statement.

The rules (DESIGN.md, "Money rules"); money is integers in minor units throughout:

* **A sale** of a paid work: ``redistributor_bps`` of its amount goes to the uploaders in
  its ``served_by``, pro rata to their bytes (each capped at the work's size again,
  defensively); the rest goes to the rights holders by the split sheet. A sale that no
  p2pdist uploader served (empty ``served_by``) gives that share to the rights holders
  too.
* **A pool** (donations, a grant) for Creative Commons works is shared per downloader,
  not per byte. A *verified downloader* is a key that signed, within the period, a
  transfer receipt with at least one byte of a CC work (after capping at its size), and
  is not in ``exclude`` (e.g. the suspected Sybils of the audit). The pool is cut into
  equal slices, one per verified downloader. Each slice goes to the works that
  downloader fetched, **pro rata to its verified bytes per work**: the bytes of its
  latest receipts from each uploader, each capped at the work's size, and their sum
  capped at the work's size too. Each work's part then splits like a sale:
  ``Pool.redistributor_bps`` (by default 1000, the default share of a paid work) to the
  uploaders that served that downloader that work, pro rata to their capped bytes; the
  rest to the rights holders by the split sheet. A pool with no verified downloader is
  not distributed: it is reported and is not money in. Beware: equal slices of a grant
  reward keys, not people; a ring of fresh keys takes a slice each unless the caller
  excludes it. DESIGN.md's bound (fakes earn no more than their own donations) holds
  for a pool the same downloaders funded.
* **Rounding**: every share is kept exact (a Fraction) until the end: the payees'
  exact totals are apportioned per currency over the whole statement by largest
  remainder, ties in the order of a hash of the period and the key (no key can choose
  to sort first), then each payee's cents among its lines the same way. The pool's
  slices and the carriers' bytes over one copy are exact too, never rounded first. So a
  statement's lines sum exactly to the money in, per currency, each payee gets within
  one minor unit of its exact share, and no amount depends on the order of the inputs.
  Currencies are never mixed.

A transfer receipt is cumulative, so for each (work, uploader, downloader) only the
latest one in the period counts (highest seq, then most bytes); one signed before the
period is not in it. Spread (distinct verified downloaders per work per UTC day) comes
from those receipts (of paid and CC works, at least one byte, excluded keys left out)
and from the sales: a buyer counts on the day of its sale, a downloader on the day of
its latest receipt in the period from each uploader (earlier days of a cumulative
receipt stream are not kept by the audit, so they cannot be counted).

Inputs the rules cannot account for are caller bugs and raise ValueError: a sale or a
receipt for a work not in ``works``, a sale of a free work or not at the work's price,
two sales with one nonce. Filter them first (the audit reports them as findings).

The label signs the statement so that artists can check it::

    {type: p2pdist/payout-statement, v: 1, label, period?: {from, to}, issued?,
     totals: [{currency, amount}], works: [{work, title, license, size, sales,
     downloaders}], lines: [{payee, currency, amount, role, work, ref}],
     spread: [{work, day, downloaders}], pool?: {amount, currency, redistributor_bps,
     downloaders, excluded}}

in the shared envelope of ``p2pdist/_signed.py`` (domain ``p2pdist/statement/v1``). A
line's ``ref`` is ``sale:<nonce hex>`` for a sale or ``pool`` for the pool (pool lines
are summed per payee, role and work).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any, Final

from p2pdist import _canonical
from p2pdist._signed import (
    MAX_COUNT,
    MAX_TS,
    as_bytes,
    as_dict,
    as_int,
    as_list,
    as_text,
    check_version,
    envelope,
    read_signed,
)
from p2pdist._text import is_printable
from p2pdist.errors import MalformedObject, VerificationError
from p2pdist.identity import Identity, fingerprint, verify_signature
from p2pdist.licensing import CCTerms, License, PaidTerms, Terms
from p2pdist.licensing._terms import DEFAULT_REDISTRIBUTOR_BPS, MAX_PRICE, currency_exponent
from p2pdist.payouts.receipts import TransferReceipt

__all__ = [
    "MAX_STATEMENT_SIZE",
    "POOL_REDISTRIBUTOR_BPS",
    "ROLES",
    "STATEMENT_DOMAIN",
    "STATEMENT_TYPE",
    "Line",
    "Party",
    "PayeeTotal",
    "Period",
    "Pool",
    "PoolSummary",
    "Sale",
    "SignedStatement",
    "SpreadPoint",
    "Statement",
    "StatementRejected",
    "StatementWork",
    "WorkSummary",
    "compute_statement",
    "verify_statement",
]

STATEMENT_TYPE: Final = "p2pdist/payout-statement"
STATEMENT_DOMAIN: Final = b"p2pdist/statement/v2"
STATEMENT_VERSION: Final = 2
ROLES: Final = ("holder", "redistributor", "held")
POOL_REDISTRIBUTOR_BPS: Final = DEFAULT_REDISTRIBUTOR_BPS
TOTAL_BPS: Final = 10_000
MAX_POOL: Final = MAX_PRICE
MAX_TITLE: Final = 300
# One line is about 170 bytes encoded: a statement of the largest size holds some 380,000
# lines (sales times payees). A label with more per period signs shorter periods.
MAX_STATEMENT_SIZE: Final = 64 * 1024 * 1024
MAX_LINES: Final = 500_000
MAX_WORKS: Final = 100_000
MAX_SPREAD: Final = 1_000_000
MAX_SPLITS: Final = 64
_REF_RE = re.compile(r"^(?:pool|sales)$")
_TIE_DOMAIN = b"p2pdist/statement-tie/v1\0"
_DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
STATEMENT_REASONS: Final = ("other-label", "does-not-sum")


class StatementRejected(VerificationError):
    """A well-signed statement that fails a policy check; ``reason`` says which."""

    def __init__(self, message: str, *, reason: str, remedy: str | None = None) -> None:
        if reason not in STATEMENT_REASONS:
            raise ValueError(f"unknown statement rejection reason {reason!r}")
        super().__init__(message, remedy=remedy)
        self.reason = reason


# -- field checks ------------------------------------------------------------------------


def _key(v: Any, what: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise ValueError(f"{what} is a 32-byte key")
    return v


def _count(v: Any, what: str, low: int = 0, high: int = MAX_COUNT) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise ValueError(f"{what} is an integer in {low}..{high}")
    return v


def _currency(v: Any) -> str:
    if not isinstance(v, str) or currency_exponent(v) is None:
        raise ValueError(f"{v!r} is not an ISO 4217 money currency")
    return v


def _time(ts: Any, what: str) -> datetime:
    if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond \
            or not 0 <= ts.timestamp() <= MAX_TS:
        raise ValueError(f"{what} is an aware datetime in whole seconds")
    return ts.astimezone(UTC)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """The half-open interval [start, end) of times a statement covers."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _time(self.start, "a period's start"))
        object.__setattr__(self, "end", _time(self.end, "a period's end"))
        if not self.start < self.end:
            raise ValueError("a period ends after it starts")

    def __contains__(self, ts: object) -> bool:
        return isinstance(ts, datetime) and self.start <= ts < self.end

    def to_dict(self) -> dict[str, object]:
        return {"from": int(self.start.timestamp()), "to": int(self.end.timestamp())}

    def to_json(self) -> dict[str, str]:
        return {"from": _iso(self.start), "to": _iso(self.end)}


@dataclass(frozen=True, slots=True)
class StatementWork:
    """What a statement needs of one work, from its verified license.

    ``splits`` is (rights holder key, bps) pairs (or ``Split`` objects) summing to 10000;
    they are kept sorted by key. ``size`` is the bytes its torrent carries.
    """

    title: str
    terms: Terms
    splits: tuple[tuple[bytes, int], ...]
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not is_printable(self.title, max_len=MAX_TITLE):
            raise ValueError(f"a title is 1 to {MAX_TITLE} printable characters")
        if not isinstance(self.terms, CCTerms | PaidTerms):
            raise TypeError("a work's terms are CCTerms or PaidTerms")
        pairs: list[tuple[bytes, int]] = []
        for s in self.splits:
            # A Split of the manifest, or a (pk, bps) pair
            pk, bps = s if isinstance(s, tuple) else (getattr(s, "pk", None),
                                                       getattr(s, "bps", None))
            pairs.append((_key(pk, "a rights holder"), _count(bps, "a split's bps", 1,
                                                               TOTAL_BPS)))
        pairs.sort()
        if not 1 <= len(pairs) <= MAX_SPLITS or sum(b for _, b in pairs) != TOTAL_BPS:
            raise ValueError("the splits are 1 to 64 holders summing to 10000 bps")
        if len({pk for pk, _ in pairs}) != len(pairs):
            raise ValueError("a rights holder appears twice in the splits")
        object.__setattr__(self, "splits", tuple(pairs))
        _count(self.size, "a work's size")

    @classmethod
    def from_license(cls, lic: License) -> StatementWork:
        """From a license that verify_info verified: its signed title, terms, splits, size."""
        m = lic.manifest
        return cls(m.title, m.terms, tuple((s.pk, s.bps) for s in m.splits),
                   m.content.total_size)


@dataclass(frozen=True, slots=True)
class Pool:
    """Money to share among the verified downloaders of CC works, user-centric."""

    amount: int
    currency: str
    redistributor_bps: int = POOL_REDISTRIBUTOR_BPS

    def __post_init__(self) -> None:
        _count(self.amount, "a pool's amount", 1, MAX_POOL)
        _currency(self.currency)
        _count(self.redistributor_bps, "a pool's redistributor share", 0, TOTAL_BPS)


@dataclass(frozen=True, slots=True)
class Sale:
    """A sale the audit counted: *amount* (the face value of the code it spent; 0 when it
    books nothing) collected by *collector*, for *buyer*, with the uploaders that carried
    the work to that buyer (*carriers*: key, verified bytes). *ref* is the hash of the
    buyer-signed purchase request, what sales are deduplicated on. *hold_carriers*: the
    carriers' share is held for the label (a code spent again: the audit's double-spend)."""

    work: bytes
    buyer: bytes
    collector: bytes
    amount: int
    currency: str
    ts: datetime
    ref: bytes
    carriers: tuple[tuple[bytes, int], ...] = ()
    hold_carriers: bool = False

    def __post_init__(self) -> None:
        for name in ("work", "buyer", "collector", "ref"):
            _key(getattr(self, name), f"a sale's {name}")
        _count(self.amount, "a sale's amount", 0, MAX_POOL)
        _currency(self.currency)
        object.__setattr__(self, "ts", _time(self.ts, "a sale's time"))
        for pk, n in self.carriers:
            _key(pk, "a carrier")
            _count(n, "a carrier's bytes", 1)


# -- outputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """*amount* minor units of *currency* owed to *payee* as *role* for *work*, from the
    sale or pool *ref* names."""

    payee: bytes
    currency: str
    amount: int
    role: str
    work: bytes
    ref: str

    def __post_init__(self) -> None:
        _key(self.payee, "a payee")
        _currency(self.currency)
        # Lines sum a payee's money over the whole statement: more than one price.
        _count(self.amount, "a line's amount", 1)
        if self.role not in ROLES:
            raise ValueError(f"a role is one of {ROLES}")
        _key(self.work, "a work id")
        if not isinstance(self.ref, str) or not _REF_RE.fullmatch(self.ref):
            raise ValueError("a ref is 'sales' or 'pool'")

    @property
    def sort_key(self) -> tuple[bytes, str, str, bytes, str]:
        return (self.work, self.ref, self.role, self.payee, self.currency)

    def to_dict(self) -> dict[str, object]:
        return {"amount": self.amount, "currency": self.currency, "payee": self.payee,
                "ref": self.ref, "role": self.role, "work": self.work}


@dataclass(frozen=True, slots=True)
class WorkSummary:
    """One work of the statement: its title and license id ("paid" or SPDX), its sales
    and distinct verified downloaders in the period."""

    work: bytes
    title: str
    license: str
    size: int
    sales: int
    downloaders: int

    def __post_init__(self) -> None:
        _key(self.work, "a work id")
        if not isinstance(self.title, str) or not is_printable(self.title, max_len=MAX_TITLE):
            raise ValueError(f"a title is 1 to {MAX_TITLE} printable characters")
        if not isinstance(self.license, str) or not is_printable(self.license, max_len=64):
            raise ValueError("a license id is 1 to 64 printable characters")
        for name in ("size", "sales", "downloaders"):
            _count(getattr(self, name), f"a work's {name}")

    def to_dict(self) -> dict[str, object]:
        return {"downloaders": self.downloaders, "license": self.license,
                "sales": self.sales, "size": self.size, "title": self.title,
                "work": self.work}


@dataclass(frozen=True, slots=True)
class SpreadPoint:
    """*downloaders* distinct verified downloaders of *work* on the UTC *day*."""

    work: bytes
    day: date
    downloaders: int

    def __post_init__(self) -> None:
        _key(self.work, "a work id")
        if not isinstance(self.day, date) or isinstance(self.day, datetime):
            raise TypeError("a spread day is a date")
        _count(self.downloaders, "a day's downloaders", 1)

    def to_dict(self) -> dict[str, object]:
        return {"day": self.day.isoformat(), "downloaders": self.downloaders,
                "work": self.work}


@dataclass(frozen=True, slots=True)
class PoolSummary:
    """The pool offered, and among how many verified downloaders it was shared
    (``excluded``: downloaders left out on the caller's word, e.g. suspected Sybils)."""

    amount: int
    currency: str
    redistributor_bps: int
    downloaders: int
    excluded: int = 0

    def __post_init__(self) -> None:
        Pool(self.amount, self.currency, self.redistributor_bps)
        _count(self.downloaders, "a pool's downloaders")
        _count(self.excluded, "a pool's excluded downloaders")

    @property
    def distributed(self) -> int:
        """What the lines share: the whole pool, or nothing without a downloader."""
        return self.amount if self.downloaders else 0

    def to_dict(self) -> dict[str, object]:
        return {"amount": self.amount, "currency": self.currency,
                "downloaders": self.downloaders, "excluded": self.excluded,
                "redistributor_bps": self.redistributor_bps}


@dataclass(frozen=True, slots=True)
class PayeeTotal:
    """What one payee is owed in one currency, by role."""

    payee: bytes
    currency: str
    holder: int
    redistributor: int
    held: int = 0

    @property
    def total(self) -> int:
        return self.holder + self.redistributor + self.held


@dataclass(frozen=True, slots=True)
class Party:
    """One party of the settlement in one currency (see Statement.parties)."""

    party: bytes
    currency: str
    collected: int
    owed: int

    @property
    def net(self) -> int:
        return self.owed - self.collected


@dataclass(frozen=True, slots=True)
class Statement:
    """A payout statement of *label* for *period* (None: all time).

    ``totals_in`` is the money in per currency (the sales, and the pool when it was
    shared); ``lines`` say who gets it. Collections are kept in one canonical order, so
    equal statements are equal objects and encode to the same bytes.
    """

    label: bytes
    period: Period | None
    issued: datetime | None
    totals_in: tuple[tuple[str, int], ...]
    lines: tuple[Line, ...]
    works: tuple[WorkSummary, ...]
    spread: tuple[SpreadPoint, ...] = ()
    pool: PoolSummary | None = None
    collected: tuple[tuple[bytes, str, int], ...] = ()
    _payees: tuple[PayeeTotal, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _key(self.label, "a statement's label")
        if self.period is not None and not isinstance(self.period, Period):
            raise TypeError("a statement's period is a Period or None")
        if self.issued is not None:
            object.__setattr__(self, "issued", _time(self.issued, "a statement's issue time"))
        totals = tuple(sorted(self.totals_in))
        for cur, amount in totals:
            _currency(cur)
            _count(amount, "a total", 0)
        if len({c for c, _ in totals}) != len(totals):
            raise ValueError("a currency appears twice in the totals")
        object.__setattr__(self, "totals_in", totals)
        if len(self.lines) > MAX_LINES or len(self.works) > MAX_WORKS \
                or len(self.spread) > MAX_SPREAD:
            raise ValueError(f"a statement has at most {MAX_LINES} lines, {MAX_WORKS} works "
                             f"and {MAX_SPREAD} spread points: sign shorter periods")
        if not all(isinstance(x, Line) for x in self.lines) \
                or not all(isinstance(x, WorkSummary) for x in self.works) \
                or not all(isinstance(x, SpreadPoint) for x in self.spread):
            raise TypeError("a statement holds Line, WorkSummary and SpreadPoint objects")
        lines = tuple(sorted(self.lines, key=lambda ln: ln.sort_key))
        if len({ln.sort_key for ln in lines}) != len(lines):
            raise ValueError("a line appears twice (same work, ref, role, payee, currency)")
        works = tuple(sorted(self.works, key=lambda w: w.work))
        if len({w.work for w in works}) != len(works):
            raise ValueError("a work appears twice in a statement")
        spread = tuple(sorted(self.spread, key=lambda s: (s.work, s.day)))
        if len({(s.work, s.day) for s in spread}) != len(spread):
            raise ValueError("a (work, day) appears twice in the spread")
        if self.pool is not None and not isinstance(self.pool, PoolSummary):
            raise TypeError("a statement's pool is a PoolSummary or None")
        collected = tuple(sorted(self.collected))
        for party, cur, amount in collected:
            _key(party, "a collector")
            _currency(cur)
            _count(amount, "a collected amount", 1, MAX_POOL * MAX_LINES)
        if len({(p, c) for p, c, _ in collected}) != len(collected):
            raise ValueError("a (collector, currency) appears twice")
        object.__setattr__(self, "collected", collected)
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "works", works)
        object.__setattr__(self, "spread", spread)
        object.__setattr__(self, "_payees", _payee_totals(lines))

    # -- derived ---------------------------------------------------------------------

    @property
    def payees(self) -> tuple[PayeeTotal, ...]:
        """Per payee and currency, by key then currency."""
        return self._payees

    def totals_out(self) -> dict[str, int]:
        """What the lines pay out, per currency."""
        out: dict[str, int] = defaultdict(int)
        for ln in self.lines:
            out[ln.currency] += ln.amount
        return dict(sorted(out.items()))

    @property
    def sums_exactly(self) -> bool:
        """True when the lines sum exactly to the money in, in every currency, and the
        money in is exactly what the collectors collected (so the nets sum to zero)."""
        out = self.totals_out()
        got: dict[str, int] = defaultdict(int)
        for _, cur, amount in self.collected:
            got[cur] += amount
        return all(out.get(c, 0) == a == got.get(c, 0) for c, a in self.totals_in) \
            and out.keys() <= {c for c, _ in self.totals_in} \
            and got.keys() <= {c for c, _ in self.totals_in}

    @property
    def parties(self) -> tuple[Party, ...]:
        """The settlement: per party and currency, what it collected, what it is owed and
        the net (owed minus collected: what the label pays it, or, negative, what it pays
        the label). The nets of a statement that sums exactly add up to zero."""
        acc: dict[tuple[bytes, str], list[int]] = defaultdict(lambda: [0, 0])
        for party, cur, amount in self.collected:
            acc[party, cur][0] += amount
        for ln in self.lines:
            acc[ln.payee, ln.currency][1] += ln.amount
        return tuple(Party(p, c, col, owed) for (p, c), (col, owed) in sorted(acc.items()))

    # -- encoding --------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "label": self.label,
            "lines": [ln.to_dict() for ln in self.lines],
            "spread": [s.to_dict() for s in self.spread],
            "totals": [{"amount": a, "currency": c} for c, a in self.totals_in],
            "collected": [{"amount": a, "currency": c, "party": p}
                          for p, c, a in self.collected],
            "type": STATEMENT_TYPE, "v": STATEMENT_VERSION,
            "works": [w.to_dict() for w in self.works],
        }
        # Optional fields are absent, never empty: one value, one encoding.
        if self.period is not None:
            d["period"] = self.period.to_dict()
        if self.issued is not None:
            d["issued"] = int(self.issued.timestamp())
        if self.pool is not None:
            d["pool"] = self.pool.to_dict()
        return d

    def signed_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Any) -> Statement:
        """Parse a decoded statement; MalformedObject for anything but a valid one."""
        d = as_dict(raw, "payout statement",
                    frozenset({"type", "v", "label", "totals", "lines", "works", "spread",
                               "collected"}),
                    frozenset({"period", "issued", "pool"}))
        check_version(d, STATEMENT_TYPE, "payout statement", STATEMENT_VERSION)
        try:
            return _statement_from_dict(d)
        except (ValueError, TypeError) as e:
            raise MalformedObject(f"the payout statement is invalid: {e}") from None


def _payee_totals(lines: Iterable[Line]) -> tuple[PayeeTotal, ...]:
    acc: dict[tuple[bytes, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for ln in lines:
        acc[ln.payee, ln.currency][ROLES.index(ln.role)] += ln.amount
    return tuple(PayeeTotal(pk, cur, h, r, x) for (pk, cur), (h, r, x) in sorted(acc.items()))


def _ts(v: Any, what: str) -> datetime:
    return datetime.fromtimestamp(as_int(v, what, 0, MAX_TS), UTC)


def _statement_from_dict(d: dict[str, Any]) -> Statement:
    period = None
    if "period" in d:
        p = as_dict(d["period"], "statement period", frozenset({"from", "to"}))
        period = Period(_ts(p["from"], "period start"), _ts(p["to"], "period end"))
    pool = None
    if "pool" in d:
        p = as_dict(d["pool"], "statement pool", frozenset(
            {"amount", "currency", "redistributor_bps", "downloaders", "excluded"}))
        pool = PoolSummary(as_int(p["amount"], "pool amount", 1, MAX_POOL),
                           as_text(p["currency"], "pool currency", max_len=3),
                           as_int(p["redistributor_bps"], "pool share", 0, TOTAL_BPS),
                           as_int(p["downloaders"], "pool downloaders"),
                           as_int(p["excluded"], "pool exclusions"))
    totals = []
    for t in as_list(d["totals"], "totals", 1000):
        td = as_dict(t, "total", frozenset({"amount", "currency"}))
        totals.append((as_text(td["currency"], "currency", max_len=3),
                       as_int(td["amount"], "total")))
    lines = []
    for x in as_list(d["lines"], "lines", MAX_LINES):
        ld = as_dict(x, "line", frozenset({"payee", "currency", "amount", "role", "work",
                                           "ref"}))
        lines.append(Line(as_bytes(ld["payee"], "payee", 32),
                          as_text(ld["currency"], "currency", max_len=3),
                          as_int(ld["amount"], "line amount", 1),
                          as_text(ld["role"], "role", max_len=16),
                          as_bytes(ld["work"], "work id", 32),
                          as_text(ld["ref"], "ref", max_len=40)))
    works = []
    for x in as_list(d["works"], "works", MAX_WORKS):
        wd = as_dict(x, "work", frozenset({"work", "title", "license", "size", "sales",
                                           "downloaders"}))
        works.append(WorkSummary(as_bytes(wd["work"], "work id", 32),
                                 as_text(wd["title"], "title", max_len=MAX_TITLE),
                                 as_text(wd["license"], "license", max_len=64),
                                 as_int(wd["size"], "size"), as_int(wd["sales"], "sales"),
                                 as_int(wd["downloaders"], "downloaders")))
    spread = []
    for x in as_list(d["spread"], "spread", MAX_SPREAD):
        sd = as_dict(x, "spread point", frozenset({"work", "day", "downloaders"}))
        day = as_text(sd["day"], "day", max_len=10)
        if not _DAY_RE.fullmatch(day):
            raise ValueError("a day is YYYY-MM-DD")
        spread.append(SpreadPoint(as_bytes(sd["work"], "work id", 32), date.fromisoformat(day),
                                  as_int(sd["downloaders"], "downloaders", 1)))
    issued = _ts(d["issued"], "issue time") if "issued" in d else None
    collected = []
    for x in as_list(d["collected"], "collected", MAX_LINES):
        cd = as_dict(x, "collected", frozenset({"party", "currency", "amount"}))
        collected.append((as_bytes(cd["party"], "collector key", 32),
                          as_text(cd["currency"], "currency", max_len=3),
                          as_int(cd["amount"], "collected amount", 1)))
    st = Statement(as_bytes(d["label"], "label key", 32), period, issued, tuple(totals),
                   tuple(lines), tuple(works), tuple(spread), pool, tuple(collected))
    # One statement, one encoding: lists out of their canonical order are refused.
    if st.signed_bytes() != _canonical.encode(d):
        raise ValueError("its lists are not in canonical order")
    return st


# -- signing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """The statement bytes exactly as the label signed them, parsed, and the signature."""

    body: bytes
    statement: Statement
    sig: bytes

    @classmethod
    def sign(cls, statement: Statement, label: Identity) -> SignedStatement:
        """Sign *statement* as its label; ValueError for another identity."""
        if label.public_key != statement.label:
            raise ValueError("only the label it names signs a statement")
        body = statement.signed_bytes()
        if len(body) + 256 > MAX_STATEMENT_SIZE:
            raise ValueError("the statement is too large to sign: sign shorter periods")
        return cls(body, statement, label.sign(domain=STATEMENT_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(STATEMENT_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedStatement:
        """Parse an envelope (size first); MalformedObject for anything else. The
        signature is checked by verify_statement, not here."""
        body, d, sig = read_signed(data, STATEMENT_TYPE, max_size=MAX_STATEMENT_SIZE,
                                   what="payout statement")
        return cls(body, Statement.from_dict(d), sig)


def verify_statement(signed: SignedStatement, *, label: bytes | None = None) -> None:
    """Verify a payout statement, e.g. as an artist paid by it.

    Checks, in order:
      (1) the label it names signed the statement bytes              (InvalidSignature);
      (2) that label is *label*, if given                             ("other-label");
      (3) its lines sum exactly to its money in, per currency         ("does-not-sum").
    """
    st = signed.statement
    # (1) opaque on failure
    verify_signature(pk=st.label, domain=STATEMENT_DOMAIN, message=signed.body,
                     signature=signed.sig)
    # (2)
    if label is not None and st.label != label:
        raise StatementRejected(f"the statement is signed by {fingerprint(st.label)}, not "
                                f"by {fingerprint(label)}", reason="other-label",
                                remedy="ask your label for its own statement")
    # (3)
    if not st.sums_exactly:
        raise StatementRejected(
            f"the statement's lines pay out {st.totals_out()} but its money in is "
            f"{dict(st.totals_in)} (minor units)", reason="does-not-sum",
            remedy="ask the label to recompute the statement")


# -- the computation ---------------------------------------------------------------------

_Entry = tuple[bytes, str, bytes]  # (payee, role, work): a line of one sale or slice
_LineKey = tuple[str, bytes, str, bytes, str]  # (currency, payee, role, work, ref)


def _carried(rows: Iterable[tuple[bytes, int]], size: int
             ) -> tuple[tuple[tuple[bytes, int], ...], int]:
    """(uploader, bytes) rows each capped at *size* (zero rows dropped, and all of them for
    a work of size 0), and the bytes their shares are over: the size, or their sum when
    it is larger, so that together they count one copy at most, pro rata and exactly
    (rounding the bytes first would favour a key)."""
    out = tuple(sorted((pk, min(n, size)) for pk, n in rows if n > 0 and size > 0))
    return out, max(size, sum(n for _, n in out), 1)


def _not_copiers(work: bytes, rows: Iterable[tuple[bytes, int]],
                 works: Mapping[bytes, StatementWork],
                 original_of: Mapping[bytes, bytes]) -> list[tuple[bytes, int]]:
    """The carriers of *work*, less its own holders and sellers when the label decided it
    copies another: a copier earns nothing by seeding its copy (that share goes to the
    original's holders); other fans who carried it are paid as for any work (a key of
    the copier's that seeds it is one of them: at most the original's carriers' share)."""
    if work not in original_of:
        return list(rows)
    w = works[work]
    own = {pk for pk, _ in w.splits}
    if isinstance(w.terms, PaidTerms):
        own.update(w.terms.sellers)
    return [(pk, n) for pk, n in rows if pk not in own]


def _tie(period: Period | None, *parts: bytes) -> bytes:
    """An order no key can choose: a hash of the statement's period and the line."""
    when = b"" if period is None else b"%d-%d" % (period.start.timestamp(),
                                                  period.end.timestamp())
    return hashlib.sha256(_TIE_DOMAIN + when + b"\0" + b"\0".join(parts)).digest()


def _largest_remainder(amount: int, exact: Mapping[Any, Fraction],
                       tie: Mapping[Any, bytes]) -> dict[Any, int]:
    """Cut the integer *amount* (the exact values' sum) by largest remainder: each key
    gets the floor or the ceiling of its exact value; ties go in *tie* order."""
    out = {k: math.floor(v) for k, v in exact.items()}
    left = amount - sum(out.values())
    if not 0 <= left <= len(out):
        raise AssertionError("exact shares that do not sum to the amount")
    order = sorted(exact, key=lambda k: (-(exact[k] - out[k]), tie[k]))
    for k in order[:left]:
        out[k] += 1
    return out


def _settle(exact: Mapping[_LineKey, Fraction], totals: Mapping[str, int],
            period: Period | None) -> dict[_LineKey, int]:
    """Whole cents for every line: per currency, the payees' exact totals are apportioned
    over the whole statement by largest remainder (so each payee gets within one minor
    unit of its exact share), then each payee's cents among its lines the same way."""
    out: dict[_LineKey, int] = {}
    per_payee: dict[tuple[str, bytes], dict[_LineKey, Fraction]] = defaultdict(dict)
    for k, v in exact.items():
        per_payee[k[0], k[1]][k] = v
    for cur, total in totals.items():
        payees = {pk: sum(lines.values(), Fraction(0))
                  for (c, pk), lines in per_payee.items() if c == cur}
        cut = _largest_remainder(total, payees,
                                 {pk: _tie(period, pk, cur.encode()) for pk in payees})
        for pk, cents in cut.items():
            lines = per_payee[cur, pk]
            out.update(_largest_remainder(cents, lines, {
                k: _tie(period, pk, cur.encode(), k[2].encode(), k[3], k[4].encode())
                for k in lines}))
    return out


def _split_weights(work_id: bytes, splits: Sequence[tuple[bytes, int]], bps: int,
                   carriers: Sequence[tuple[bytes, int]], size: int,
                   held: int = 0) -> dict[_Entry, int]:
    """Integer weights over the denominator TOTAL_BPS² x size: each carrier bps/10000 x
    its bytes/size, the rest (the share of bytes no p2pdist node carried included) to the
    holders by *splits* (a decided copy's are its original's). *held*: bps of the amount
    that is held elsewhere (left out of these weights)."""
    size = max(size, 1)
    covered = sum(n for _, n in carriers)
    weights: dict[_Entry, int] = defaultdict(int)
    for pk, n in carriers:
        weights[pk, "redistributor", work_id] += bps * TOTAL_BPS * n
    rest = TOTAL_BPS * size - bps * covered - held * size
    for pk, sbps in splits:
        weights[pk, "holder", work_id] += rest * sbps
    return weights


def _latest_receipts(transfers: Iterable[TransferReceipt], works: Mapping[bytes, StatementWork],
                     period: Period | None,
                     exclude: Collection[bytes]) -> tuple[dict[tuple[bytes, bytes, bytes],
                                                                TransferReceipt], int]:
    latest: dict[tuple[bytes, bytes, bytes], TransferReceipt] = {}
    excluded: set[bytes] = set()
    for r in transfers:
        if not isinstance(r, TransferReceipt):
            raise TypeError("transfers are TransferReceipt objects (the .receipt of a "
                            "verified SignedReceipt)")
        if r.work not in works:
            raise ValueError(f"a transfer receipt is for work {r.work.hex()}, which is not "
                             "in works")
        if period is not None and r.ts not in period:
            continue
        if r.downloader in exclude:
            excluded.add(r.downloader)
            continue
        old = latest.get(r.key)
        if old is None or (r.seq, r.bytes, r.ts) > (old.seq, old.bytes, old.ts):
            latest[r.key] = r
    return latest, len(excluded)


def compute_statement(*, label: bytes, works: Mapping[bytes, StatementWork],
                      sales: Iterable[Sale] = (),
                      transfers: Iterable[TransferReceipt] = (),
                      pool: Pool | None = None, period: Period | None = None,
                      exclude: Collection[bytes] = frozenset(),
                      issued: datetime | None = None,
                      disputed: Collection[bytes] = frozenset(),
                      original_of: Mapping[bytes, bytes] | None = None) -> Statement:
    """The payout statement of *label*, a settlement (see the module docstring).

    *works*: every work the sales and receipts are for, by work id. *sales*: the sales
    the audit counted (audit.AuditReport.sales), each booking its amount against its
    collector. *transfers*: verified transfer receipts (the latest in the period counts);
    they make the spread and, for CC works, share *pool* (collected by *label*).
    *period*: only sales and receipts with ts in it count. *exclude*: downloader keys
    whose receipts count for nothing (suspected Sybils). *issued*: the time to print.
    *disputed*: works whose money is held (a line to *label*, role "held") until the
    label decides which is the original of a copy; *original_of*: a decided copy's work
    -> its original, whose split sheet then gets the copy's holder money.
    ValueError for inputs the rules cannot account for (module docstring).
    """
    _key(label, "a label")
    if period is not None and not isinstance(period, Period):
        raise TypeError("period is a Period or None")
    if pool is not None and not isinstance(pool, Pool):
        raise TypeError("pool is a Pool or None")
    for wid, w in works.items():
        _key(wid, "a work id")
        if not isinstance(w, StatementWork):
            raise TypeError("works maps work ids to StatementWork")
    exclude = frozenset(exclude)
    disputed = frozenset(disputed)
    original_of = dict(original_of or {})
    for copy, orig in original_of.items():
        if copy not in works or orig not in works:
            raise ValueError("original_of names a work that is not in works")

    # Exact shares: integer numerators per line over each work's denominator (sales),
    # Fractions for the pool; apportioned to the cent once, over the whole statement.
    nums: dict[tuple[_LineKey, int], int] = defaultdict(int)
    pool_exact: dict[_LineKey, Fraction] = defaultdict(Fraction)
    totals: dict[str, int] = defaultdict(int)
    collected: dict[tuple[bytes, str], int] = defaultdict(int)
    sales_per_work: dict[bytes, int] = defaultdict(int)
    seen: dict[bytes, set[bytes]] = defaultdict(set)  # work -> verified downloaders
    daily: dict[tuple[bytes, date], set[bytes]] = defaultdict(set)

    refs: set[bytes] = set()
    for sale in sales:
        if not isinstance(sale, Sale):
            raise TypeError("sales are Sale objects")
        if sale.ref in refs:
            raise ValueError(f"two sales answer the request {sale.ref.hex()}: keep one "
                             "(the audit reports a double booking)")
        refs.add(sale.ref)
        sold = works.get(sale.work)
        if sold is None:
            raise ValueError(f"a sale is for work {sale.work.hex()}, which is not in works")
        terms = sold.terms
        if isinstance(terms, CCTerms):  # the input's value is wrong, not its type
            raise ValueError(f"a sale is for {sold.title!r}, a free work")  # noqa: TRY004
        if sale.currency != terms.currency:
            raise ValueError(f"a sale of {sold.title!r} is not in its currency")
        if period is not None and sale.ts not in period:
            continue
        sales_per_work[sale.work] += 1
        seen[sale.work].add(sale.buyer)
        daily[sale.work, sale.ts.date()].add(sale.buyer)
        if sale.amount == 0:
            continue  # a gift or press code, or a code spent before: books nothing
        cur = sale.currency
        totals[cur] += sale.amount
        collected[sale.collector, cur] += sale.amount
        size = max(sold.size, 1)
        carriers, over = _carried(_not_copiers(sale.work, sale.carriers, works, original_of),
                                  sold.size)
        if sale.work in disputed:
            nums[(cur, label, "held", sale.work, "sales"), size] += \
                sale.amount * TOTAL_BPS * TOTAL_BPS * size
            continue
        holders = works[original_of[sale.work]].splits if sale.work in original_of \
            else sold.splits
        bps = terms.redistributor_bps
        if sale.work in original_of:
            # A decided copy is split by its original's terms, not by what its copier
            # wrote (a carriers' share of 100 % to a key of its own).
            first = works[original_of[sale.work]].terms
            bps = min(bps, first.redistributor_bps if isinstance(first, PaidTerms)
                      else POOL_REDISTRIBUTOR_BPS)
        if sale.hold_carriers:
            nums[(cur, label, "held", sale.work, "sales"), size] += \
                sale.amount * bps * TOTAL_BPS * size
            carriers, over = (), size
        weights = _split_weights(sale.work, holders, bps, carriers, over,
                                 held=bps if sale.hold_carriers else 0)
        for (pk, role, wid), wt in weights.items():
            if wt:
                nums[(cur, pk, role, wid, "sales"), over] += sale.amount * wt

    latest, excluded = _latest_receipts(transfers, works, period, exclude)
    # (work, downloader) -> {uploader: bytes capped at the work's size}
    fetched: dict[tuple[bytes, bytes], dict[bytes, int]] = defaultdict(dict)
    for (wid, up, down), r in latest.items():
        n = min(r.bytes, works[wid].size)
        if n <= 0:
            continue  # no verified byte: not a downloader
        fetched[wid, down][up] = n
        seen[wid].add(down)
        daily[wid, r.ts.date()].add(down)

    pool_summary = None
    if pool is not None:
        per_down: dict[bytes, dict[bytes, int]] = defaultdict(dict)  # down -> work -> bytes
        for (wid, down), ups in fetched.items():
            if isinstance(works[wid].terms, CCTerms):
                per_down[down][wid] = min(sum(ups.values()), works[wid].size)
        pool_summary = PoolSummary(pool.amount, pool.currency, pool.redistributor_bps,
                                   len(per_down), excluded)
        if per_down:
            cur = pool.currency
            totals[cur] += pool.amount
            collected[label, cur] += pool.amount
            # Each verified downloader's slice, exactly: rounded once, with the rest.
            share = Fraction(pool.amount, len(per_down))
            for down, per_work in per_down.items():
                weights = _slice_weights(down, per_work, works, fetched,
                                         pool.redistributor_bps, original_of)
                wsum = sum(weights.values())
                for (pk, role, wid), wt in weights.items():
                    who, as_ = (label, "held") if wid in disputed else (pk, role)
                    pool_exact[cur, who, as_, wid, "pool"] += Fraction(share * wt, wsum)

    exact: dict[_LineKey, Fraction] = defaultdict(Fraction)
    for (k, size), num in nums.items():
        exact[k] += Fraction(num, TOTAL_BPS * TOTAL_BPS * size)
    for k, v in pool_exact.items():
        exact[k] += v
    cents = _settle({k: v for k, v in exact.items() if v}, totals, period)

    return Statement(
        label=label, period=period, issued=issued,
        totals_in=tuple((c, a) for c, a in totals.items() if a),
        lines=tuple(Line(pk, cur, amount, role, wid, ref)
                    for (cur, pk, role, wid, ref), amount in cents.items() if amount > 0),
        works=tuple(WorkSummary(wid, w.title, w.terms.license_id, w.size,
                                sales_per_work.get(wid, 0), len(seen.get(wid, ())))
                    for wid, w in works.items()),
        spread=tuple(SpreadPoint(wid, day, len(keys)) for (wid, day), keys in daily.items()),
        pool=pool_summary,
        collected=tuple((p, c, a) for (p, c), a in collected.items() if a),
    )


def _slice_weights(down: bytes, per_work: Mapping[bytes, int],
                   works: Mapping[bytes, StatementWork],
                   fetched: Mapping[tuple[bytes, bytes], Mapping[bytes, int]],
                   bps: int, original_of: Mapping[bytes, bytes]) -> dict[_Entry, int]:
    """Integer weights of one downloader's slice: each work pro rata to its verified
    bytes, and within a work as a sale (_split_weights) carried by that work's uploaders."""
    parts: dict[bytes, dict[_Entry, int]] = {}
    for wid in per_work:
        w = works[wid]
        holders = works[original_of[wid]].splits if wid in original_of else w.splits
        parts[wid] = _split_weights(wid, holders, bps, *_carried(
            _not_copiers(wid, fetched[wid, down].items(), works, original_of), w.size))
    sums = {wid: sum(p.values()) for wid, p in parts.items()}
    lcm = math.lcm(*sums.values())
    weights: dict[_Entry, int] = defaultdict(int)
    for wid, p in parts.items():
        scale = per_work[wid] * (lcm // sums[wid])
        for e, wt in p.items():
            weights[e] += wt * scale
    return weights
