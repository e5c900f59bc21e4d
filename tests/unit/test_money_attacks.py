"""Issue 21's attack table, row by row: money that adds up on paid works.

The world: an artist sells Night (5.00 EUR, 15 % to the carriers; Ada 60 %, Grace 40 %).
An honest fan F carried it to four honest buyers. Every attack is forged the way a
modified client would (our own classes, the attacker's own keys, real SQLite ledgers and
real bundles), audited and paid out as `p2pdist payouts` does, and each test asserts:

- the attackers' money out is at most their money in (the settlement's nets);
- no honest party is paid less than in the same world without the attack, beyond the
  bound DESIGN.md states (one minor unit of rounding; a buyer that signs more than a
  copy is a finding that names it, and its carriers are scaled pro rata);
- a finding names the culprit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing import PaidTerms
from p2pdist.payouts.audit import AuditReport, WorkInfo, audit
from p2pdist.payouts.receipts import served_record
from p2pdist.payouts.statement import (
    Period,
    Sale,
    Statement,
    StatementWork,
    compute_statement,
)
from tests._sales import Batch, request, sign_payment
from tests.unit.test_audit import T0, Nodes, ident, receipt

SIZE = 1_000_000
PRICE = 500
NIGHT = hashlib.sha256(b"Night").digest()
ADA, GRACE, F, LABEL = (ident(n) for n in ("ada", "grace", "honest fan F", "the label"))
BUYERS = [ident(f"honest buyer {i}") for i in range(4)]
MALLORY = ident("mallory")
ACCOMPLICE = ident("accomplice")
TERMS = PaidTerms(PRICE, "EUR", 1500, (ADA.public_key,))
WORKS = {NIGHT: WorkInfo(SIZE, TERMS)}
SPLITS = ((ADA.public_key, 6000), (GRACE.public_key, 4000))
PAY_WORKS = {NIGHT: StatementWork("Night", TERMS, SPLITS, SIZE)}
HONEST = [ADA, GRACE, F, *BUYERS]


def served(work: bytes, down: Identity, n: int) -> tuple[str, bytes]:
    return ("upload.served", served_record(work, down.public_key, n))


class World:
    """The honest world, with room for an attack: items per node, bundled at the end."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.batch = Batch(ADA, NIGHT, PRICE, "EUR", count=32, seed=b"night codes")
        self.gifts = Batch(ADA, NIGHT, 0, "EUR", count=8, seed=b"press codes")
        self.items: dict[bytes, list[tuple[str, bytes]]] = {}
        self.who: dict[bytes, Identity] = {}
        self.honest_sales: list[bytes] = []
        for i, b in enumerate(BUYERS):
            r = receipt(NIGHT, F, b, 1, SIZE, t=i)
            self.add(F, served(NIGHT, b, SIZE), ("receipt.received", r))
            self.add(b, ("receipt.issued", r))
            pay = self.batch.sell(b, index=i, ts=T0 + timedelta(hours=i + 1),
                                  receipts=[r]).to_bytes()
            self.honest_sales.append(pay)
            self.add(ADA, ("payment.issued", pay))
            self.add(b, ("payment.received", pay))

    def add(self, who: Identity, *items: tuple[str, bytes]) -> None:
        self.who[who.public_key] = who
        self.items.setdefault(who.public_key, []).extend(items)

    def bundles(self, skip: Iterable[Identity] = ()) -> list[bytes]:
        gone = {i.public_key for i in skip}
        return [self.nodes.bundle(self.who[pk], items, served=False)
                for pk, items in self.items.items() if pk not in gone]


def payout(report: AuditReport) -> Statement:
    st = compute_statement(label=LABEL.public_key, works=PAY_WORKS, sales=list(report.sales),
                           transfers=[s.receipt for s in report.transfers()],
                           exclude=report.suspected_sybils)
    assert st.sums_exactly
    assert sum(p.net for p in st.parties) == 0  # double entry: the nets sum to zero
    return st


def owed(st: Statement, who: Identity) -> int:
    return sum(ln.amount for ln in st.lines if ln.payee == who.public_key)


def net(st: Statement, who: Iterable[Identity]) -> int:
    keys = {i.public_key for i in who}
    return sum(p.net for p in st.parties if p.party in keys)


def losses(before: Statement, after: Statement) -> dict[str, int]:
    """What each honest party is paid less after the attack than before it."""
    return {i.name: owed(before, i) - owed(after, i) for i in HONEST
            if owed(before, i) > owed(after, i)}


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(Nodes(tmp_path))


@pytest.fixture
def baseline(world: World) -> Statement:
    report = audit(world.bundles(), WORKS)
    assert report.findings == (), report.findings
    st = payout(report)
    assert owed(st, F) == 4 * 75 and owed(st, ADA) == 4 * 255 and owed(st, GRACE) == 4 * 170
    return st


def kinds(report: AuditReport) -> list[str]:
    return sorted(f.kind for f in report.findings)


def test_gift_codes_naming_an_accomplice_as_carrier_take_nothing(
        world: World, baseline: Statement) -> None:
    """Row 1: three buyer keys redeem free press codes; each request carries a receipt
    crediting the accomplice with the whole work (whose own ledger says it served)."""
    fakes = [ident(f"mallory buyer {i}") for i in range(3)]
    for i, m in enumerate(fakes):
        r = receipt(NIGHT, ACCOMPLICE, m, 1, SIZE)
        world.add(ACCOMPLICE, served(NIGHT, m, SIZE), ("receipt.received", r))
        pay = world.gifts.sell(m, index=i, receipts=[r]).to_bytes()
        world.add(ADA, ("payment.issued", pay))
    report = audit(world.bundles(), WORKS)
    st = payout(report)
    assert owed(st, ACCOMPLICE) == 0 and net(st, [*fakes, ACCOMPLICE]) <= 0
    assert losses(baseline, st) == {}
    assert sorted(s.amount for s in report.sales) == [0, 0, 0] + [PRICE] * 4


def test_a_sale_the_seller_invents_costs_the_seller_what_it_pays_out(
        world: World, baseline: Statement) -> None:
    """Row 2: the named seller signs a 5.00 sale nobody paid for, to a key of its own,
    naming an accomplice as the carrier. (a) with a code of its own batch: the sale books
    5.00 collected by the seller, who owes back what the others are paid from it; (b)
    with a code that is in no batch it signed: it books nothing, and is named."""
    m = ident("nobody paid")
    r = receipt(NIGHT, ACCOMPLICE, m, 1, SIZE)
    world.add(ACCOMPLICE, served(NIGHT, m, SIZE), ("receipt.received", r))
    own = Batch(ADA, NIGHT, PRICE, "EUR", count=4, seed=b"invented")
    world.add(ADA, ("payment.issued", own.sell(m, receipts=[r]).to_bytes()))
    # (b) a code the seller never committed to: another batch's proof under its record
    req = request(ident("nobody either"), ADA.public_key, NIGHT, receipts=[])
    fake = sign_payment(ADA, req, world.batch.signed, hashlib.sha256(b"no code").digest(),
                        world.batch.proof(31)).to_bytes()
    world.add(ADA, ("payment.issued", fake))
    report = audit(world.bundles(), WORKS)
    assert kinds(report) == ["unissued-sale"]
    assert report.findings[0].evidence["seller"] == key_to_text(ADA.public_key)
    st = payout(report)
    ada = {p.party: p for p in st.parties}[ADA.public_key]
    assert ada.collected == 5 * PRICE  # the four real sales and the invented one
    # The coalition (the seller and its accomplice) nets no more than it collected: the
    # invented sale's 5.00 is the seller's own money, paid out to Grace and the accomplice.
    assert net(st, [ADA, ACCOMPLICE, m]) <= net(baseline, [ADA])
    assert losses(baseline, st) == {}


def test_a_buyer_crediting_an_accomplice_cannot_take_the_share_of_the_carrier_holding_its_receipts(
        world: World, baseline: Statement) -> None:
    """Row 3: a buyer who got every byte from F buys with a request whose only receipt
    credits an accomplice. F's own bundle holds that buyer's receipts for the whole work.
    (a) the accomplice's ledger backs nothing: F is paid in full; (b) the accomplice's
    own ledger claims it served the work too: the buyer signed two copies, a finding
    names it, and the carriers' share of its purchase is held for the label (not scaled
    among keys the buyer may have made up): F loses nothing, the accomplice gets 0."""
    m = ident("mallory buyer")
    real = receipt(NIGHT, F, m, 1, SIZE)
    world.add(F, served(NIGHT, m, SIZE), ("receipt.received", real))
    fake = receipt(NIGHT, ACCOMPLICE, m, 1, SIZE)
    pay = world.batch.sell(m, index=10, receipts=[fake]).to_bytes()
    world.add(ADA, ("payment.issued", pay))
    report = audit(world.bundles(), WORKS)
    st = payout(report)
    assert "unbacked-receipt" in kinds(report)
    assert owed(st, ACCOMPLICE) == 0 and owed(st, F) == 5 * 75
    assert net(st, [m, ACCOMPLICE]) <= 0 and losses(baseline, st) == {}
    # (b)
    world.add(ACCOMPLICE, served(NIGHT, m, SIZE), ("receipt.received", fake))
    report = audit(world.bundles(), WORKS)
    st = payout(report)
    over = [f for f in report.findings if f.kind == "over-size"]
    assert [f.evidence["downloader"] for f in over] == [key_to_text(m.public_key)]
    assert owed(st, F) == 4 * 75 and owed(st, ACCOMPLICE) == 0
    held = [ln for ln in st.lines if ln.role == "held"]
    assert [(ln.payee, ln.amount) for ln in held] == [(LABEL.public_key, 75)]
    assert net(st, [m, ACCOMPLICE]) <= 0


def test_a_buyer_sending_no_receipt_does_not_send_the_carriers_share_to_the_holders(
        world: World, baseline: Statement) -> None:
    """Row 4: the same buyer sends no receipt at all with its request."""
    m = ident("mallory buyer")
    real = receipt(NIGHT, F, m, 1, SIZE)
    world.add(F, served(NIGHT, m, SIZE), ("receipt.received", real))
    world.add(ADA, ("payment.issued", world.batch.sell(m, index=11).to_bytes()))
    st = payout(audit(world.bundles(), WORKS))
    assert owed(st, F) == 5 * 75 and losses(baseline, st) == {}


def test_an_artist_reusing_a_buyers_nonce_in_a_back_dated_sale_erases_nothing(
        world: World, baseline: Statement, tmp_path: Path) -> None:
    """Row 5: Mallory, seller of its own 0.01 work, signs a back-dated sale with the
    nonce of an honest 5.00 sale of Night (printed in statements before)."""
    own = hashlib.sha256(b"mallory's 0.01 work").digest()
    own_terms = PaidTerms(1, "EUR", 1500, (MALLORY.public_key,))
    works = {**WORKS, own: WorkInfo(SIZE, own_terms)}
    honest_nonce = world.batch.sell(BUYERS[0], index=20).payment.nonce  # any honest nonce
    pay = Batch(MALLORY, own, 1, "EUR", count=2).sell(
        ident("accomplice buyer"), nonce=honest_nonce, ts=T0 - timedelta(days=30))
    world.add(MALLORY, ("payment.issued", pay.to_bytes()))
    report = audit(world.bundles(), works)
    assert kinds(report) == []
    st = compute_statement(label=LABEL.public_key, works={
        **PAY_WORKS, own: StatementWork("Own", own_terms, ((MALLORY.public_key, 10_000),),
                                        SIZE)}, sales=list(report.sales))
    assert dict(st.totals_in) == {"EUR": 4 * PRICE + 1}
    assert net(st, [MALLORY]) <= 0
    assert losses(baseline, st) == {}


def test_a_seller_hiding_sales_behind_an_old_checkpoint_is_named_and_the_sales_count(
        world: World, baseline: Statement) -> None:
    """Row 6: three more sales, which the buyers' nodes sent to the license's collector
    (the label); the seller exports an old checkpoint without them; the buyers send no
    bundle. The sales count (F is paid its share), a finding names the seller, and no
    buyer who paid is called a Sybil."""
    hidden = []
    for i in range(3):
        m = ident(f"later buyer {i}")
        r = receipt(NIGHT, F, m, 1, SIZE)
        world.add(F, served(NIGHT, m, SIZE), ("receipt.received", r))
        pay = world.batch.sell(m, index=12 + i, receipts=[r]).to_bytes()
        world.add(m, ("payment.received", pay))
        world.add(LABEL, ("payment.collected", pay))
        hidden.append(m)
    report = audit(world.bundles(skip=[*BUYERS, *hidden]), WORKS, sybil_min=3)
    assert kinds(report) == ["withheld-sale"] * 3
    assert {f.evidence["seller"] for f in report.findings} == {key_to_text(ADA.public_key)}
    st = payout(report)
    assert dict(st.totals_in) == {"EUR": 7 * PRICE}
    assert owed(st, F) == 7 * 75 and losses(baseline, st) == {}


def test_rounding_favours_no_key(tmp_path: Path) -> None:
    """Row 7: 20 sales of a 0.01 work split 50/50: no holder gets more than a cent over
    its exact share, whichever key sorts first."""
    tiny = hashlib.sha256(b"tiny").digest()
    terms = PaidTerms(1, "EUR", 1500, (ADA.public_key,))
    batch = Batch(ADA, tiny, 1, "EUR", count=20)
    buyers = [ident(f"b{i}") for i in range(20)]
    carried = [receipt(tiny, F, b, 1, SIZE) for b in buyers]  # F carried every buyer
    nodes = Nodes(tmp_path)
    sales = list(audit([
        nodes.bundle(ADA, [("payment.issued", batch.sell(b, receipts=[r]).to_bytes())
                           for b, r in zip(buyers, carried, strict=True)]),
        nodes.bundle(F, [served(tiny, b, SIZE) for b in buyers], served=False)],
        {tiny: WorkInfo(SIZE, terms)}).sales)
    st = compute_statement(label=LABEL.public_key, works={tiny: StatementWork(
        "Tiny", terms, ((ADA.public_key, 5000), (GRACE.public_key, 5000)), SIZE)},
        sales=sales)
    exact = Fraction(20 * 8500, 2 * 10_000)  # 8.5 cents each, and F 3 cents
    for who in (ADA, GRACE):
        assert abs(owed(st, who) - exact) <= 1
    assert owed(st, F) == 3 and owed(st, ADA) + owed(st, GRACE) == 17


def test_one_code_redeemed_at_two_nodes_sharing_a_key_books_once(
        world: World, baseline: Statement) -> None:
    """Row 9: a copied home; one code redeemed at both nodes by two buyers. Both got the
    work (nothing can undo that), the audit names the seller, and each sale books the
    code's face value against the seller that signed it twice (no sale is erased); the
    carriers' share of the later one is held for the label to review."""
    a, b = ident("buyer at node 1"), ident("buyer at node 2")
    world.add(ADA, ("payment.issued", world.batch.sell(a, index=25).to_bytes()),
              ("payment.issued", world.batch.sell(b, index=25).to_bytes()))
    report = audit(world.bundles(), WORKS)
    assert kinds(report) == ["double-spend"]
    st = payout(report)
    assert dict(st.totals_in) == {"EUR": 6 * PRICE}
    assert {p.party: p.collected for p in st.parties}[ADA.public_key] == 6 * PRICE
    assert sum(ln.amount for ln in st.lines if ln.role == "held") == 75
    assert losses(baseline, st) == {}


# -- a property over random worlds ---------------------------------------------------------

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
ATTACKS = st.lists(st.sampled_from(["gift", "steer", "invent", "replay-code", "nonce",
                                    "no-receipt", "over-sign"]), max_size=6)


@PROPERTY
@given(honest=st.integers(1, 5), attacks=ATTACKS, price=st.integers(1, 10_000),
       bps=st.integers(0, 10_000), grace=st.integers(1, 9_999))
def test_no_coalition_of_attacker_keys_nets_more_than_it_paid_in(
        tmp_path_factory: pytest.TempPathFactory, honest: int, attacks: Sequence[str],
        price: int, bps: int, grace: int) -> None:
    """Random worlds: honest buyers carried by F, and attacks by one coalition (buyer
    keys, an accomplice carrier, and in "invent" the seller itself). The nets sum to
    zero, the coalition nets at most what it paid in, every statement sums to the cent."""
    nodes = Nodes(tmp_path_factory.mktemp("world"))
    terms = PaidTerms(price, "EUR", bps, (ADA.public_key,))
    works = {NIGHT: WorkInfo(SIZE, terms)}
    pay_works = {NIGHT: StatementWork("Night", terms, ((ADA.public_key, 10_000 - grace),
                                                       (GRACE.public_key, grace)), SIZE)}
    batch = Batch(ADA, NIGHT, price, "EUR", count=64, seed=b"codes")
    gifts = Batch(ADA, NIGHT, 0, "EUR", count=8, seed=b"gifts")
    items: dict[bytes, list[tuple[str, bytes]]] = {}
    who: dict[bytes, Identity] = {}

    def add(i: Identity, *xs: tuple[str, bytes]) -> None:
        who[i.public_key] = i
        items.setdefault(i.public_key, []).extend(xs)

    code = 0
    for n in range(honest):
        b = ident(f"h{n}")
        r = receipt(NIGHT, F, b, 1, SIZE)
        add(F, served(NIGHT, b, SIZE), ("receipt.received", r))
        add(ADA, ("payment.issued", batch.sell(b, index=code, receipts=[r]).to_bytes()))
        code += 1
    coalition = [ACCOMPLICE]
    paid_in = 0
    for n, attack in enumerate(attacks):
        m = ident(f"m{n}")
        coalition.append(m)
        fake = receipt(NIGHT, ACCOMPLICE, m, 1, SIZE)
        add(ACCOMPLICE, served(NIGHT, m, SIZE), ("receipt.received", fake))
        if attack == "gift":
            add(ADA, ("payment.issued", gifts.sell(m, index=n % 8, receipts=[fake]).to_bytes()))
        elif attack in ("steer", "no-receipt", "over-sign"):
            real = receipt(NIGHT, F, m, 1, SIZE)
            add(F, served(NIGHT, m, SIZE), ("receipt.received", real))
            rs = {"steer": [fake], "no-receipt": [], "over-sign": [fake, real]}[attack]
            add(ADA, ("payment.issued", batch.sell(m, index=code, receipts=rs).to_bytes()))
            code += 1
            paid_in += price
        elif attack == "invent":
            coalition.append(ADA)
            own = Batch(ADA, NIGHT, price, "EUR", count=2, seed=b"own %d" % n)
            add(ADA, ("payment.issued", own.sell(m, receipts=[fake]).to_bytes()))
        elif attack == "replay-code":  # h0's code, leaked, redeemed later at a copied home
            add(ADA, ("payment.issued", batch.sell(m, index=0, receipts=[fake],
                                                   ts=T0 + timedelta(hours=1)).to_bytes()))
        elif attack == "nonce":
            add(ADA, ("payment.issued", batch.sell(m, index=code, receipts=[fake],
                                                   nonce=b"\0" * 16).to_bytes()))
            code += 1
            paid_in += price
    bundles = [nodes.bundle(who[pk], xs, served=False) for pk, xs in items.items()]
    report = audit(bundles, works)
    st = compute_statement(label=LABEL.public_key, works=pay_works, sales=list(report.sales),
                           transfers=[s.receipt for s in report.transfers()])
    assert st.sums_exactly
    assert sum(p.net for p in st.parties) == 0
    keys = {i.public_key for i in coalition}
    coalition_net = sum(p.net for p in st.parties if p.party in keys)
    # (the seller in "invent" owns 10000 - grace of what it books: its own money back)
    assert coalition_net <= paid_in
    # F is paid its share of every honest sale, whatever the coalition did.
    f_owed = sum(ln.amount for ln in st.lines if ln.payee == F.public_key)
    assert f_owed >= Fraction(honest * price * bps, 10_000) - 1


def test_a_buyer_signing_an_inflated_later_receipt_cannot_void_its_carriers_share(
        world: World, baseline: Statement) -> None:
    """Griefing: a buyer that got 600,000 bytes from F signs a later receipt (seq 99)
    for the whole work, and sends it where F cannot refuse it: in its purchase request,
    and to the license's collector. Unbacked, it would have replaced F's own receipt as
    the latest and voided F's credit; F's own backed receipt counts instead."""
    m = ident("griefer")
    real = receipt(NIGHT, F, m, 1, 600_000)
    world.add(F, served(NIGHT, m, 600_000), ("receipt.received", real))
    inflated = receipt(NIGHT, F, m, 99, SIZE)
    world.add(LABEL, ("receipt.collected", inflated))
    pay = world.batch.sell(m, index=16, receipts=[inflated]).to_bytes()
    world.add(ADA, ("payment.issued", pay))
    report = audit(world.bundles(), WORKS)
    assert [f.evidence["uploader"] for f in report.findings] == ["superseded"]
    [sale] = [s for s in report.sales if s.buyer == m.public_key]
    assert sale.carriers == ((F.public_key, 600_000),)
    st = payout(report)
    assert owed(st, F) == 4 * 75 + 45  # 15 % of 5.00 x 600,000 / 1,000,000
    assert losses(baseline, st) == {}


# -- the outside review's attacks (issue 21, second round) ----------------------------------


def test_a_seller_dating_a_sale_out_of_the_period_is_named_and_the_sale_counts_when_asked(
        world: World, baseline: Statement) -> None:
    """The seller signs an honest buyer's sale with a time years off the time the buyer
    signed its request, to push it out of the statement's period."""
    m = ident("november buyer")
    asked = T0 + timedelta(days=300)
    req = request(m, ADA.public_key, NIGHT, ts=asked)
    pay = sign_payment(ADA, req, world.batch.signed, world.batch.codes[17],
                       world.batch.proof(17), ts=T0 - timedelta(days=3650)).to_bytes()
    world.add(ADA, ("payment.issued", pay))
    report = audit(world.bundles(), WORKS)
    assert kinds(report) == ["misdated-sale"]
    assert report.findings[0].evidence["seller"] == key_to_text(ADA.public_key)
    [sale] = [s for s in report.sales if s.buyer == m.public_key]
    assert sale.ts == asked
    period = Period(asked - timedelta(days=1), asked + timedelta(days=1))
    st = compute_statement(label=LABEL.public_key, works=PAY_WORKS, sales=list(report.sales),
                           period=period)
    assert dict(st.totals_in) == {"EUR": PRICE}


def test_a_seller_answering_a_request_twice_with_a_free_code_erases_nothing(
        world: World, baseline: Statement) -> None:
    """The buyer holds a 5.00 receipt; the seller also signs, over the same request, a
    receipt spending a gift code, dated a second earlier, and keeps only that one."""
    m = ident("buyer of the twin")
    r = receipt(NIGHT, F, m, 1, SIZE)
    world.add(F, served(NIGHT, m, SIZE), ("receipt.received", r))
    req = request(m, ADA.public_key, NIGHT, ts=T0 + timedelta(hours=9), receipts=[r])
    real = sign_payment(ADA, req, world.batch.signed, world.batch.codes[18],
                        world.batch.proof(18)).to_bytes()
    twin = sign_payment(ADA, req, world.gifts.signed, world.gifts.codes[0],
                        world.gifts.proof(0), ts=T0 + timedelta(hours=9, seconds=-1))
    world.add(m, ("payment.received", real))
    world.add(ADA, ("payment.issued", twin.to_bytes()))
    report = audit(world.bundles(), WORKS)
    assert kinds(report) == ["double-booking", "withheld-sale"]
    st = payout(report)
    assert dict(st.totals_in) == {"EUR": 5 * PRICE}
    assert owed(st, F) == 5 * 75 and losses(baseline, st) == {}


def test_a_face_value_over_the_price_books_nothing_and_the_statement_still_computes(
        world: World, baseline: Statement) -> None:
    """A seller sells codes of a face value far over the price to its own buyer key, to
    make the statement's sums overflow its bounds (no statement for anyone)."""
    huge = Batch(ADA, NIGHT, 10**15, "EUR", count=4, seed=b"huge")
    for i in range(3):
        world.add(ADA, ("payment.issued", huge.sell(ident(f"own buyer {i}")).to_bytes()))
    report = audit(world.bundles(), WORKS)
    assert kinds(report) == ["wrong-price"] * 3
    st = payout(report)
    assert dict(st.totals_in) == {"EUR": 4 * PRICE} and losses(baseline, st) == {}


def test_a_later_receipt_for_fewer_bytes_does_not_lower_a_carriers_credit(
        world: World, baseline: Statement) -> None:
    """The buyer signs seq 2 for 1 byte after F's seq 1 for the whole work, kept only in
    its own ledger (a rollback); F's own backed receipt still counts."""
    m = ident("rollback buyer")
    real = receipt(NIGHT, F, m, 1, SIZE)
    world.add(F, served(NIGHT, m, SIZE), ("receipt.received", real))
    world.add(m, ("receipt.issued", receipt(NIGHT, F, m, 2, 1)))
    world.add(ADA, ("payment.issued", world.batch.sell(m, index=19).to_bytes()))
    report = audit(world.bundles(), WORKS)
    assert "receipt-rollback" in kinds(report)
    st = payout(report)
    assert owed(st, F) == 5 * 75 and losses(baseline, st) == {}


def test_codes_sold_under_the_price_are_named(world: World) -> None:
    """A seller issues codes at face 0.01 and sells them: what it books is what the
    holders are paid on, and the label sees it."""
    cheap = Batch(ADA, NIGHT, 1, "EUR", count=4, seed=b"cheap")
    for i in range(3):
        world.add(ADA, ("payment.issued", cheap.sell(ident(f"cheap {i}")).to_bytes()))
    report = audit(world.bundles(), WORKS)
    [f] = report.findings
    assert f.kind == "below-price" and f.evidence["sales"] == 3 and f.evidence["face"] == 1
    assert f.evidence["seller"] == key_to_text(ADA.public_key)


# -- the outside review, second round ----------------------------------------------------------


def test_a_seller_recording_its_own_twin_as_collected_gets_no_honest_share_held(
        world: World, baseline: Statement) -> None:
    """For an honest request the seller also signs a twin answer spending another
    buyer's code, dated earlier, and records it as `payment.collected` in its own chain
    (as if a collector held it): only the buyer's own node, or the license's collector,
    holds a sale for its buyer."""
    m, n = ident("honest r1"), ident("honest r2")
    for who in (m, n):
        r = receipt(NIGHT, F, who, 1, SIZE)
        world.add(F, served(NIGHT, who, SIZE), ("receipt.received", r))
    rm = receipt(NIGHT, F, m, 1, SIZE)
    req = request(m, ADA.public_key, NIGHT, ts=T0 + timedelta(hours=30), receipts=[rm])
    real = sign_payment(ADA, req, world.batch.signed, world.batch.codes[21],
                        world.batch.proof(21)).to_bytes()
    twin = sign_payment(ADA, req, world.batch.signed, world.batch.codes[22],
                        world.batch.proof(22), ts=req.request.ts - timedelta(seconds=1))
    other = world.batch.sell(n, index=22, ts=T0 + timedelta(hours=31),
                             receipts=[receipt(NIGHT, F, n, 1, SIZE)]).to_bytes()
    world.add(m, ("payment.received", real))
    world.add(n, ("payment.received", other))
    world.add(ADA, ("payment.issued", real), ("payment.issued", other),
              ("payment.collected", twin.to_bytes()))
    report = audit(world.bundles(), WORKS)
    st = payout(report)
    assert owed(st, F) == 6 * 75 and losses(baseline, st) == {}
    assert not [ln for ln in st.lines if ln.role == "held"]


def test_a_seller_spending_an_honest_buyers_code_again_gets_no_honest_share_held(
        world: World, baseline: Statement) -> None:
    """The seller (a rights holder too) spends an honest buyer's code again for a key of
    its own, dated earlier: the honest sale, which its buyer holds, keeps its carriers'
    share; the made-up one books its face value against the seller."""
    m = ident("honest buyer of code 23")
    r = receipt(NIGHT, F, m, 1, SIZE)
    world.add(F, served(NIGHT, m, SIZE), ("receipt.received", r))
    honest = world.batch.sell(m, index=23, ts=T0 + timedelta(hours=40), receipts=[r])
    grief = world.batch.sell(ident("made up"), index=23, ts=T0 + timedelta(hours=39))
    world.add(m, ("payment.received", honest.to_bytes()))
    world.add(ADA, ("payment.issued", honest.to_bytes()), ("payment.issued", grief.to_bytes()))
    report = audit(world.bundles(), WORKS)
    assert "double-spend" in kinds(report)
    st = payout(report)
    assert owed(st, F) == 5 * 75 and losses(baseline, st) == {}


def test_a_buyer_over_size_by_one_piece_has_its_carriers_scaled_not_held(
        world: World, baseline: Statement) -> None:
    """Two devices on one key, a re-fetch: 16 KiB over the size is scaled pro rata (and
    named), not a reason to hold the whole carriers' share."""
    m = ident("two devices")
    r = receipt(NIGHT, F, m, 1, SIZE)
    extra = receipt(NIGHT, ACCOMPLICE, m, 1, 16_384)
    world.add(F, served(NIGHT, m, SIZE), ("receipt.received", r))
    world.add(ACCOMPLICE, served(NIGHT, m, 16_384), ("receipt.received", extra))
    world.add(ADA, ("payment.issued", world.batch.sell(m, index=24, receipts=[r]).to_bytes()))
    report = audit(world.bundles(), WORKS)
    assert "over-size" in kinds(report)
    st = payout(report)
    assert owed(st, F) >= 4 * 75 + 73 and owed(st, ACCOMPLICE) <= 2
    assert not [ln for ln in st.lines if ln.role == "held"]


def test_a_decided_copy_is_split_by_its_originals_terms_not_its_copiers() -> None:
    """The copier wrote a carriers' share of 100 % into its copy's license and seeds it
    from a second key: once the label decides, the copy's sales are split by the
    original's terms (15 %), the copy's own sellers carry nothing, and the original's
    holders get the rest."""
    thief, thief2 = ident("thief"), ident("thief's seeding key")
    copy = hashlib.sha256(b"Night (my version)").digest()
    copy_terms = PaidTerms(100, "EUR", 10_000, (thief.public_key,))
    works = {**PAY_WORKS,
             copy: StatementWork("Night (my version)", copy_terms, ((thief.public_key,
                                                                     10_000),), SIZE)}
    sales = [Sale(copy, ident(f"fan {i}").public_key, thief.public_key, 100, "EUR",
                  T0 + timedelta(hours=i), hashlib.sha256(b"r%d" % i).digest(),
                  carriers=((thief2.public_key, SIZE), (thief.public_key, SIZE)))
             for i in range(12)]
    st = compute_statement(label=LABEL.public_key, works=works, sales=sales,
                           original_of={copy: NIGHT})
    assert owed(st, thief) == 0
    assert owed(st, thief2) == 12 * 100 * 1500 // 10_000  # at most the original's share
    assert owed(st, ADA) + owed(st, GRACE) == 12 * 100 * 8500 // 10_000


def test_a_sellers_bundle_exported_before_the_period_ends_is_named(
        world: World, tmp_path: Path) -> None:
    """A seller hands in a bundle exported before the period it is paid for ends: the
    sales it signed since are not in it (and a sale first seen after its period was
    paid is never booked), so the label is told to ask for a fresh export."""
    from p2pdist.label import _stale_sellers
    from tests.unit.test_copies import Studio

    _, lic, _ = Studio(tmp_path / "studio").paid("Night", {"n.flac": b"x" * 5000}, ADA, 500)
    report = audit(world.bundles(), WORKS)  # every bundle exported at T0 + 1 day
    period = Period(T0, T0 + timedelta(days=30))
    found = _stale_sellers(report, [lic], period, T0 + timedelta(days=40)).findings
    assert [(f.kind, f.evidence["seller"]) for f in found] == [
        ("stale-bundle", key_to_text(ADA.public_key))]
    fresh = Period(T0, T0 + timedelta(hours=12))
    assert _stale_sellers(report, [lic], fresh, T0 + timedelta(days=40)).findings == ()
