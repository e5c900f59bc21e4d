"""Payout statements: money is never lost, a golden statement by hand, the signed form,
and the renderers.

The engine is a pure function: the same verified sales and receipts in any order give
the same statement, and its lines sum to the minor unit to the money in, per currency.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist.errors import InvalidSignature, MalformedObject
from p2pdist.identity import Identity, fingerprint, key_from_text, key_to_text
from p2pdist.licensing import CCTerms, PaidTerms, Split
from p2pdist.payouts.payments import PaymentReceipt, Served
from p2pdist.payouts.receipts import TransferReceipt
from p2pdist.payouts.report import CSV_COLUMNS, statement_json, to_csv, to_html, to_json
from p2pdist.payouts.statement import (
    MAX_STATEMENT_SIZE,
    STATEMENT_DOMAIN,
    Line,
    Period,
    Pool,
    SignedStatement,
    Statement,
    StatementRejected,
    StatementWork,
    WorkSummary,
    compute_statement,
    verify_statement,
)

PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _identity(seed: int, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(bytes([seed]) * 32))


LABEL = _identity(1, "Label")
SELLER = LABEL.public_key
MALLORY = _identity(2, "Mallory")
# Ties in the largest remainder go to the lower key bytes: name the holders so that
# A < B, whatever the seeds give.
A, B = sorted(_identity(s, "holder").public_key for s in (3, 4))
F1, F2 = (_identity(s, "fan").public_key for s in (5, 6))
BUYERS = [_identity(s, "buyer").public_key for s in range(10, 20)]
D1, D2, D3, D4, D5 = (_identity(s, "downloader").public_key for s in range(20, 25))
KEYS = [_identity(s, "anyone").public_key for s in range(30, 42)]

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
SONG = hashlib.sha256(b"song").digest()  # paid, EUR
ALBUM = hashlib.sha256(b"album").digest()  # paid, JPY
FREE = hashlib.sha256(b"free").digest()  # CC, held by A
FREE2 = hashlib.sha256(b"free2").digest()  # CC, held by B


def _sale(work: bytes, n: int, amount: int, currency: str, served: list[tuple[bytes, int]],
          ts: datetime = T0, buyer: bytes | None = None) -> PaymentReceipt:
    return PaymentReceipt(
        work=work, buyer=buyer or BUYERS[n % len(BUYERS)], seller=SELLER, amount=amount,
        currency=currency, method="voucher", payment_ref=f"v{n}",
        nonce=n.to_bytes(16, "big"),
        served_by=tuple(Served(pk, b) for pk, b in sorted(served)), ts=ts)


def _receipt(work: bytes, up: bytes, down: bytes, n: int, *, seq: int = 1,
             ts: datetime = T0) -> TransferReceipt:
    return TransferReceipt(work, up, down, seq, n, ts)


def _paid(price: int, currency: str, bps: int) -> PaidTerms:
    return PaidTerms(price, currency, bps, (SELLER,))


# -- the golden statement ------------------------------------------------------------------

GOLDEN_WORKS = {
    SONG: StatementWork("Song", _paid(500, "EUR", 1500), ((A, 6000), (B, 4000)), 1000),
    ALBUM: StatementWork("Album", _paid(1001, "JPY", 1000), ((A, 5000), (B, 5000)), 4000),
}
GOLDEN_SALES = [
    _sale(SONG, 1, 500, "EUR", [(F1, 750), (F2, 250)]),  # served 3:1 by two fans
    _sale(SONG, 2, 500, "EUR", []),  # no p2pdist uploader
    _sale(ALBUM, 3, 1001, "JPY", [(F1, 4000)]),
]


def _golden() -> Statement:
    return compute_statement(label=LABEL.public_key, works=GOLDEN_WORKS, sales=GOLDEN_SALES)


def _amounts(s: Statement) -> dict[tuple[bytes, str, str, str], int]:
    return {(ln.payee, ln.role, ln.ref, ln.currency): ln.amount for ln in s.lines}


def test_golden_statement_by_hand() -> None:
    s = _golden()
    sale = [f"sale:{n.to_bytes(16, 'big').hex()}" for n in (1, 2, 3)]
    assert _amounts(s) == {
        # Sale 1, 5.00 EUR, 15% to the fans who served the buyer, 3:1 by bytes:
        #   fans' share 500 * 0.15 = 75:  F1 75 * 3/4 = 56.25, F2 75 * 1/4 = 18.75
        #   holders' 425, 60/40:          A 255.00,             B 170.00
        #   floors 56 + 18 + 255 + 170 = 499; the 1 cent left goes to the largest
        #   remainder, F2's .75 (F1 has .25): F2 19.
        (F1, "redistributor", sale[0], "EUR"): 56,
        (F2, "redistributor", sale[0], "EUR"): 19,
        (A, "holder", sale[0], "EUR"): 255,
        (B, "holder", sale[0], "EUR"): 170,
        # Sale 2, 5.00 EUR, nobody served it: the fans' share returns to the holders.
        #   A 500 * 0.6 = 300, B 500 * 0.4 = 200.
        (A, "holder", sale[1], "EUR"): 300,
        (B, "holder", sale[1], "EUR"): 200,
        # Sale 3, 1001 JPY (no minor unit), 10% to F1, holders 50/50:
        #   F1 100.1; A 900.9 / 2 = 450.45; B 450.45; floors 100 + 450 + 450 = 1000.
        #   The 1 yen left: A and B tie at .45 (above F1's .1); the lower key, A, wins.
        (F1, "redistributor", sale[2], "JPY"): 100,
        (A, "holder", sale[2], "JPY"): 451,
        (B, "holder", sale[2], "JPY"): 450,
    }
    totals = {(p.payee, p.currency): (p.holder, p.redistributor) for p in s.payees}
    assert totals == {
        (A, "EUR"): (255 + 300, 0), (B, "EUR"): (170 + 200, 0),
        (F1, "EUR"): (0, 56), (F2, "EUR"): (0, 19),
        (A, "JPY"): (451, 0), (B, "JPY"): (450, 0), (F1, "JPY"): (0, 100),
    }
    assert s.totals_in == (("EUR", 1000), ("JPY", 1001))
    assert s.totals_out() == {"EUR": 1000, "JPY": 1001}
    assert s.sums_exactly
    assert {w.work: (w.sales, w.downloaders) for w in s.works} == {SONG: (2, 2),
                                                                  ALBUM: (1, 1)}


def test_golden_pool_shared_per_downloader_then_per_byte() -> None:
    works = {
        FREE: StatementWork("Free song", CCTerms("CC-BY-4.0"), ((A, 10_000),), 1000),
        FREE2: StatementWork("Free poem", CCTerms("CC0-1.0"), ((B, 10_000),), 500),
    }
    period = Period(T0, T0 + 7 * DAY)
    transfers = [
        _receipt(FREE, F1, D1, 1000, ts=T0),
        _receipt(FREE, F1, D2, 100, seq=1, ts=T0 + DAY),  # superseded by seq 2
        _receipt(FREE, F1, D2, 400, seq=2, ts=T0 + DAY),
        _receipt(FREE, F2, D2, 600, ts=T0 + DAY),
        _receipt(FREE2, F2, D2, 500, ts=T0 + DAY),
        _receipt(FREE, F1, D3, 1000, ts=T0),  # excluded: a suspected Sybil
        _receipt(FREE, F1, D4, 1000, ts=T0 + 7 * DAY),  # after the period
        _receipt(FREE, F1, D5, 0, ts=T0),  # no verified byte: not a downloader
    ]
    s = compute_statement(label=LABEL.public_key, works=works, transfers=transfers,
                          pool=Pool(1000, "EUR"), period=period, exclude={D3})
    lines = {(ln.payee, ln.role, ln.work): ln.amount for ln in s.lines}
    assert lines == {
        # 10.00 EUR, two verified downloaders (D1, D2): 500 cents each.
        # D1 fetched only the free song, from F1: 10% to F1 = 50, 90% to A = 450.
        # D2 fetched 1000 bytes of the song (F1 400, F2 600) and 500 of the poem (F2):
        #   song 2/3 of 500 = 333.33: F1 10% * 4/10 = 13.33, F2 10% * 6/10 = 20.00,
        #                             A 90% = 300.00
        #   poem 1/3 of 500 = 166.67: F2 10% = 16.67, B 90% = 150.00
        #   floors 13 + 20 + 300 + 16 + 150 = 499; the cent left: F2's poem (.67).
        (F1, "redistributor", FREE): 50 + 13,
        (F2, "redistributor", FREE): 20,
        (F2, "redistributor", FREE2): 17,
        (A, "holder", FREE): 450 + 300,
        (B, "holder", FREE2): 150,
    }
    assert {ln.ref for ln in s.lines} == {"pool"}
    assert s.pool is not None
    assert (s.pool.downloaders, s.pool.excluded, s.pool.distributed) == (2, 1, 1000)
    assert s.totals_in == (("EUR", 1000),) and s.sums_exactly
    assert [(p.work, p.day, p.downloaders) for p in s.spread] == sorted([
        (FREE, date(2025, 3, 1), 1), (FREE, date(2025, 3, 2), 1),
        (FREE2, date(2025, 3, 2), 1)])
    assert {w.work: w.downloaders for w in s.works} == {FREE: 2, FREE2: 1}


def test_pool_without_downloaders_is_not_money_in() -> None:
    works = {FREE: StatementWork("Free", CCTerms("CC-BY-4.0"), ((A, 10_000),), 1000)}
    s = compute_statement(label=LABEL.public_key, works=works, pool=Pool(700, "EUR"),
                          transfers=[_receipt(FREE, F1, D1, 0)])
    assert s.lines == () and s.totals_in == () and s.sums_exactly
    assert s.pool is not None and s.pool.distributed == 0


def test_pool_ignores_receipts_of_paid_works() -> None:
    # Fans pay for paid works; only receipts of CC works share a pool.
    s = compute_statement(label=LABEL.public_key, works=GOLDEN_WORKS, pool=Pool(700, "EUR"),
                          transfers=[_receipt(SONG, F1, D1, 1000)])
    assert s.lines == () and s.pool is not None and s.pool.downloaders == 0
    assert [(p.work, p.downloaders) for p in s.spread] == [(SONG, 1)]  # still spread


def test_served_by_over_size_is_capped_again() -> None:
    # A seller's served_by should already be capped; if not, each uploader counts at
    # most the work's size: F1's 5000 bytes of a 1000-byte work weigh as F2's 1000.
    sale = _sale(SONG, 9, 500, "EUR", [(F1, 5000), (F2, 1000)])
    s = compute_statement(label=LABEL.public_key, works=GOLDEN_WORKS, sales=[sale])
    red = {ln.payee: ln.amount for ln in s.lines if ln.role == "redistributor"}
    lo, hi = sorted((F1, F2))
    assert red == {lo: 38, hi: 37}  # 75 / 2 = 37.5 each; the tie goes to the lower key


def test_redistributor_share_to_a_fan_who_is_also_a_holder_is_two_lines() -> None:
    sale = _sale(SONG, 9, 500, "EUR", [(A, 1000)])
    s = compute_statement(label=LABEL.public_key, works=GOLDEN_WORKS, sales=[sale])
    assert {(ln.payee, ln.role): ln.amount for ln in s.lines} == {
        (A, "redistributor"): 75, (A, "holder"): 255, (B, "holder"): 170}


def test_period_keeps_sales_inside_it_only() -> None:
    sales = [_sale(SONG, 1, 500, "EUR", [], ts=T0 - timedelta(seconds=1)),
             _sale(SONG, 2, 500, "EUR", [], ts=T0),
             _sale(SONG, 3, 500, "EUR", [], ts=T0 + DAY - timedelta(seconds=1)),
             _sale(SONG, 4, 500, "EUR", [], ts=T0 + DAY)]
    s = compute_statement(label=LABEL.public_key, works=GOLDEN_WORKS, sales=sales,
                          period=Period(T0, T0 + DAY))
    assert s.totals_in == (("EUR", 1000),)
    assert {ln.ref[-2:] for ln in s.lines} == {"02", "03"}


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("sale of an unknown work",
     {"sales": [_sale(hashlib.sha256(b"x").digest(), 1, 500, "EUR", [])]}, "not in works"),
    ("sale not at the price", {"sales": [_sale(SONG, 1, 499, "EUR", [])]}, "price"),
    ("sale in another currency", {"sales": [_sale(SONG, 1, 500, "USD", [])]}, "price"),
    ("sale of a free work", {"sales": [_sale(FREE, 1, 500, "EUR", [])]}, "free"),
    ("one nonce sold twice", {"sales": [_sale(SONG, 1, 500, "EUR", []),
                                        _sale(SONG, 1, 500, "EUR", [], buyer=KEYS[0])]},
     "nonce"),
    ("receipt of an unknown work",
     {"transfers": [_receipt(hashlib.sha256(b"x").digest(), F1, D1, 1)]}, "not in works"),
])
def test_inputs_the_rules_cannot_account_for_are_refused(name: str, kwargs: dict[str, Any],
                                                        match: str) -> None:
    works = {**GOLDEN_WORKS,
             FREE: StatementWork("Free", CCTerms("CC-BY-4.0"), ((A, 10_000),), 10)}
    with pytest.raises(ValueError, match=match):
        compute_statement(label=LABEL.public_key, works=works, **kwargs)


def test_statement_work_from_manifest_splits_and_bad_splits() -> None:
    w = StatementWork("T", CCTerms("CC0-1.0"), (Split(B, 1), Split(A, 9999)), 1)
    assert w.splits == ((A, 9999), (B, 1))
    for bad in (((A, 5000),), ((A, 5000), (A, 5000)), ((A, 0), (B, 10_000))):
        with pytest.raises(ValueError):
            StatementWork("T", CCTerms("CC0-1.0"), bad, 1)


# -- money is never lost -------------------------------------------------------------------

CURRENCIES = ("EUR", "JPY", "BHD")


@st.composite
def _splits(draw: st.DrawFn) -> tuple[tuple[bytes, int], ...]:
    holders = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    cuts = sorted(draw(st.lists(st.integers(1, 9_999), min_size=len(holders) - 1,
                                max_size=len(holders) - 1, unique=True)))
    bounds = [0, *cuts, 10_000]
    return tuple((h, bounds[i + 1] - bounds[i]) for i, h in enumerate(holders))


@st.composite
def _scenario(draw: st.DrawFn) -> dict[str, Any]:
    works: dict[bytes, StatementWork] = {}
    for i in range(draw(st.integers(1, 4))):
        wid = hashlib.sha256(b"work %d" % i).digest()
        size = draw(st.sampled_from([0, 1, 7, 1000, 2**40]))
        if draw(st.booleans()):
            terms: PaidTerms | CCTerms = PaidTerms(
                draw(st.one_of(st.integers(1, 10_000), st.integers(1, 10**15))),
                draw(st.sampled_from(CURRENCIES)), draw(st.integers(0, 10_000)), (SELLER,))
        else:
            terms = CCTerms("CC-BY-4.0")
        works[wid] = StatementWork(f"Work {i}", terms, draw(_splits()), size)
    paid = [w for w, x in works.items() if isinstance(x.terms, PaidTerms)]
    free = [w for w, x in works.items() if isinstance(x.terms, CCTerms)]
    sales = []
    for n in range(draw(st.integers(0, 12)) if paid else 0):
        wid = draw(st.sampled_from(paid))
        terms = works[wid].terms
        assert isinstance(terms, PaidTerms)
        buyer = draw(st.sampled_from(KEYS))
        ups = draw(st.lists(st.sampled_from([k for k in KEYS if k != buyer]), max_size=4,
                            unique=True))
        served = [(u, draw(st.integers(1, 2 * works[wid].size + 1))) for u in ups]
        sales.append(_sale(wid, n, terms.price, terms.currency, served,
                           ts=T0 + draw(st.integers(0, 9)) * DAY, buyer=buyer))
    transfers = []
    for _ in range(draw(st.integers(0, 15))):
        wid = draw(st.sampled_from(free + paid))
        up, down = draw(st.lists(st.sampled_from(KEYS), min_size=2, max_size=2, unique=True))
        transfers.append(_receipt(wid, up, down, draw(st.integers(0, 2 * works[wid].size)),
                                  seq=draw(st.integers(1, 3)),
                                  ts=T0 + draw(st.integers(0, 9)) * DAY))
    pool = draw(st.none() | st.builds(Pool, st.integers(1, 10**9), st.sampled_from(CURRENCIES),
                                      st.integers(0, 10_000)))
    period = draw(st.none() | st.builds(lambda a, n: Period(T0 + a * DAY, T0 + (a + n) * DAY),
                                        st.integers(0, 5), st.integers(1, 5)))
    exclude = draw(st.sets(st.sampled_from(KEYS), max_size=3))
    return {"works": works, "sales": sales, "transfers": transfers, "pool": pool,
            "period": period, "exclude": exclude}


@given(_scenario(), st.randoms(use_true_random=False))
@PROPERTY
def test_money_is_never_lost(sc: dict[str, Any], rnd: Any) -> None:
    s = compute_statement(label=LABEL.public_key, **sc)
    # Every statement sums exactly to the money in, per currency, and nobody is negative.
    assert s.sums_exactly
    period = sc["period"]
    sold: dict[str, int] = defaultdict(int)
    for p in sc["sales"]:
        if period is None or p.ts in period:
            sold[p.currency] += p.amount
    if s.pool is not None and s.pool.downloaders:
        sold[s.pool.currency] += s.pool.amount
    assert dict(s.totals_in) == {c: a for c, a in sold.items() if a}
    assert all(ln.amount > 0 for ln in s.lines)
    assert all(p.holder >= 0 and p.redistributor >= 0 for p in s.payees)
    # Each sale on its own sums to its amount, and a sale no uploader served pays none.
    per_ref = Counter[str]()
    for ln in s.lines:
        per_ref[ln.ref] += ln.amount
    for p in sc["sales"]:
        ref = f"sale:{p.nonce.hex()}"
        if period is None or p.ts in period:
            assert per_ref[ref] == p.amount
            if not p.served_by:
                assert all(ln.role == "holder" for ln in s.lines if ln.ref == ref)
        else:
            assert ref not in per_ref
    # The same inputs in another order: the same statement, to the byte.
    works = list(sc["works"].items())
    rnd.shuffle(works)
    sales, transfers = list(sc["sales"]), list(sc["transfers"])
    rnd.shuffle(sales)
    rnd.shuffle(transfers)
    again = compute_statement(label=LABEL.public_key, **{
        **sc, "works": dict(works), "sales": sales, "transfers": transfers,
        "exclude": list(sc["exclude"])[::-1]})
    assert again == s and again.payees == s.payees
    assert again.signed_bytes() == s.signed_bytes()
    # And it reads back from its encoding.
    assert Statement.from_dict(_canonical.decode(s.signed_bytes(),
                                                 max_size=MAX_STATEMENT_SIZE)) == s


@given(st.integers(1, 10**15), st.lists(st.integers(1, 2**62), min_size=1, max_size=64),
       st.integers(0, 10_000), _splits())
@PROPERTY
def test_one_sale_pays_each_within_one_minor_unit_of_its_exact_share(
        amount: int, served: list[int], bps: int, splits: tuple[tuple[bytes, int], ...]
) -> None:
    fans = [hashlib.sha256(b"fan %d" % i).digest() for i in range(len(served))]
    works = {SONG: StatementWork("Song", _paid(amount, "EUR", bps), splits, 2**62)}
    sale = _sale(SONG, 1, amount, "EUR", list(zip(fans, served, strict=True)),
                 buyer=BUYERS[0])
    s = compute_statement(label=LABEL.public_key, works=works, sales=[sale])
    total = sum(served)
    for ln in s.lines:
        if ln.role == "redistributor":
            exact_num, den = amount * bps * served[fans.index(ln.payee)], 10_000 * total
        else:
            exact_num, den = amount * (10_000 - bps) * dict(splits)[ln.payee], 10_000**2
        assert exact_num // den <= ln.amount <= -(-exact_num // den)
    assert s.sums_exactly


# -- the signed statement ------------------------------------------------------------------


def _pool_statement() -> Statement:
    works = {**GOLDEN_WORKS,
             FREE: StatementWork("Free song", CCTerms("CC-BY-4.0"), ((A, 10_000),), 1000)}
    return compute_statement(
        label=LABEL.public_key, works=works, sales=GOLDEN_SALES,
        transfers=[_receipt(FREE, F1, D1, 1000), _receipt(FREE, F2, D2, 10, ts=T0 + DAY),
                   _receipt(SONG, F1, BUYERS[1], 750)],
        pool=Pool(999, "EUR"), period=Period(T0, T0 + 30 * DAY), issued=T0 + 31 * DAY)


def test_signed_statement_round_trip_verifies() -> None:
    s = _pool_statement()
    signed = SignedStatement.sign(s, LABEL)
    back = SignedStatement.from_bytes(signed.to_bytes())
    assert back == signed and back.statement == s
    verify_statement(back)
    verify_statement(back, label=LABEL.public_key)


def test_tampered_statement_is_refused() -> None:
    data = SignedStatement.sign(_golden(), LABEL).to_bytes()
    # Give B one more cent than it was owed: still canonical, the signature fails.
    assert data.count(b"6:amounti170e") == 1
    forged = data.replace(b"6:amounti170e", b"6:amounti171e")
    with pytest.raises(InvalidSignature):
        verify_statement(SignedStatement.from_bytes(forged))


def test_statement_signed_by_another_key_is_refused_for_the_pinned_label() -> None:
    s = replace(_golden(), label=MALLORY.public_key)
    signed = SignedStatement.sign(s, MALLORY)
    verify_statement(signed)  # Mallory's own statement holds...
    with pytest.raises(StatementRejected) as e:  # ...but not as the label's
        verify_statement(signed, label=LABEL.public_key)
    assert e.value.reason == "other-label"
    with pytest.raises(ValueError, match="only the label"):
        SignedStatement.sign(_golden(), MALLORY)


def test_well_signed_statement_that_does_not_sum_is_refused() -> None:
    s = _golden()
    short = replace(s, lines=s.lines[1:])
    assert not short.sums_exactly
    with pytest.raises(StatementRejected) as e:
        verify_statement(SignedStatement.sign(short, LABEL))
    assert e.value.reason == "does-not-sum"


def _resign(d: dict[str, Any]) -> bytes:
    body = _canonical.encode(d)
    sig = LABEL.sign(domain=STATEMENT_DOMAIN, message=body)
    return _canonical.encode({"body": body, "sig": sig, "type": "p2pdist/payout-statement/"
                              "signed", "v": 1})


@pytest.mark.parametrize(("name", "mutate"), [
    ("lines out of canonical order", lambda d: d.update(lines=d["lines"][::-1])),
    ("version 2", lambda d: d.update(v=2)),
    ("unknown field", lambda d: d.update(extra=1)),
    ("negative amount", lambda d: d["lines"][0].update(amount=-1)),
    ("unknown role", lambda d: d["lines"][0].update(role=b"boss")),
    ("bad ref", lambda d: d["lines"][0].update(ref=b"sale:zz")),
    ("short payee key", lambda d: d["lines"][0].update(payee=b"k" * 31)),
    ("not a currency", lambda d: d["totals"][0].update(currency=b"XXX")),
    ("bad day", lambda d: d["spread"].append({"day": b"2025-3-1", "downloaders": 1,
                                              "work": SONG})),
    ("duplicate work", lambda d: d["works"].append(d["works"][0])),
])
def test_malformed_statement_is_refused(name: str, mutate: Any) -> None:
    d = _canonical.decode(_pool_statement().signed_bytes(), max_size=MAX_STATEMENT_SIZE)
    mutate(d)
    with pytest.raises(MalformedObject):
        SignedStatement.from_bytes(_resign(d))


def test_oversized_statement_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedObject, match="too large"):
        SignedStatement.from_bytes(b"d" + b"0" * MAX_STATEMENT_SIZE)


# -- renderers -----------------------------------------------------------------------------


def test_csv_has_one_row_per_line_and_sums() -> None:
    s = _pool_statement()
    rows = list(csv.DictReader(io.StringIO(to_csv(s))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(s.lines)
    sums: dict[str, int] = defaultdict(int)
    for r in rows:
        sums[r["currency"]] += int(r["amount_minor"])
    assert sums == dict(s.totals_in)
    for r in rows:
        assert r["payee_fingerprint"] == fingerprint(key_from_text(r["payee"]))
        scale = 100 if r["currency"] == "EUR" else 1
        assert Decimal(r["amount"]) * scale == int(r["amount_minor"])


def test_csv_title_cannot_run_as_a_spreadsheet_formula() -> None:
    works = {SONG: replace(GOLDEN_WORKS[SONG], title='=HYPERLINK("evil")')}
    s = compute_statement(label=LABEL.public_key, works=works, sales=GOLDEN_SALES[:1])
    assert all(r["title"] == "'=HYPERLINK(\"evil\")"
               for r in csv.DictReader(io.StringIO(to_csv(s))))


def test_json_carries_keys_as_text_and_sums() -> None:
    s = _pool_statement()
    doc = json.loads(to_json(s))
    assert doc == json.loads(json.dumps(statement_json(s)))
    assert doc["label"] == key_to_text(LABEL.public_key)
    assert doc["label_fingerprint"] == fingerprint(LABEL.public_key)
    assert doc["sums_exactly"] is True
    assert {t["currency"]: t["in"] for t in doc["totals"]} == dict(s.totals_in)
    assert sum(ln["amount"] for ln in doc["lines"] if ln["currency"] == "EUR") == \
        dict(s.totals_in)["EUR"]
    assert {p["payee"] for p in doc["payees"]} >= {key_to_text(A), key_to_text(F1)}


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.tags: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.ids += [v for k, v in attrs if k == "id" and v is not None]


_REMOTE = re.compile(r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//)"""
                     r"""|url\(\s*["']?\s*(?:https?:)?//|@import|<script|<link|<iframe""",
                     re.IGNORECASE)


def test_html_is_self_contained_with_both_charts() -> None:
    s = _pool_statement()
    findings = [{"kind": "over-size", "message": "a <b>big</b> credit",
                 "evidence": {"work": SONG.hex(), "credited": 5000}}]
    page = to_html(s, findings)
    assert not _REMOTE.search(page), _REMOTE.search(page)
    p = _Ids()
    p.feed(page)
    assert "chart-money" in p.ids and "chart-spread" in p.ids
    assert len(p.ids) == len(set(p.ids)), [i for i, n in Counter(p.ids).items() if n > 1]
    assert p.tags["svg"] == 2 and p.tags["path"] > 20
    assert 'class="payee-lines"' in page
    assert key_to_text(A) in page and fingerprint(A) in page
    assert "5.55 EUR" in page and "451 JPY" in page  # A's totals, through format_price
    assert "a &lt;b&gt;big&lt;/b&gt; credit" in page and "<b>big" not in page
    assert "over-size" in page and "credited" in page


def test_html_escapes_hostile_titles_and_survives_mathtext_and_missing_glyphs() -> None:
    titles = ["<script>alert(1)</script>", "$\\frac{1}{0$ and $$", "夜の歌 🎵"]
    works = {hashlib.sha256(t.encode()).digest(): StatementWork(
        t, CCTerms("CC-BY-4.0"), ((A, 10_000),), 100) for t in titles}
    transfers = [_receipt(w, F1, D1, 100) for w in works]
    s = compute_statement(label=LABEL.public_key, works=works, transfers=transfers,
                          pool=Pool(100, "EUR"))
    page = to_html(s)  # warnings are errors under pytest: none may escape
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "夜の歌 🎵" in page


def test_html_shows_hidden_characters_a_finding_quotes_as_escapes() -> None:
    # A finding may quote what a node's bundle holds: a right-to-left override or an
    # escape sequence in it must not reorder or hide what the payee reads.
    s = compute_statement(label=LABEL.public_key, works={})
    page = to_html(s, [{"kind": "bad\u202ekind", "message": "paid \u202e001 EUR\x1b[8m",
                        "evidence": {"note": "a\u200bb\x9b"}}])
    assert not [c for c in page if c != "\n" and unicodedata.category(c)
                in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    assert "paid \\u202e001 EUR\\x1b[8m" in page and "bad\\u202ekind" in page
    assert "a\\u200bb\\x9b" in page


def test_html_of_an_empty_statement_still_has_both_charts() -> None:
    s = compute_statement(label=LABEL.public_key, works={})
    page = to_html(s)
    assert 'id="chart-money"' in page and 'id="chart-spread"' in page
    assert "No findings" in page


def test_renderers_are_deterministic() -> None:
    s = _pool_statement()
    assert to_html(s) == to_html(s) and to_csv(s) == to_csv(s)


def test_line_and_work_summary_refuse_bad_values() -> None:
    with pytest.raises(ValueError):
        Line(A, "EUR", 0, "holder", SONG, "pool")
    with pytest.raises(ValueError):
        Line(A, "EUR", 1, "holder", SONG, "gift")
    with pytest.raises(ValueError):
        WorkSummary(SONG, "bad\u202etitle", "paid", 1, 0, 0)
    with pytest.raises(ValueError):
        Period(T0, T0)
