"""The label's audit: real keys, real ledgers, real bundles, and every finding it names.

Each attack is built the way a cheating node would build it (it holds its own key and the
keys of any fakes it made), exported as a real bundle, and must come out as a finding
with its evidence; an honest swarm must come out clean.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist.errors import MalformedObject
from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing import CCTerms, PaidTerms
from p2pdist.payouts import audit as audit_mod
from p2pdist.payouts.audit import (
    FINDING_KINDS,
    AuditReport,
    Finding,
    WorkInfo,
    _parse_receipt_fast,
    _receipt_bytes,
    audit,
)
from p2pdist.payouts.ledger import Ledger
from p2pdist.payouts.payments import SignedPayment
from p2pdist.payouts.receipts import (
    DOMAIN,
    SignedReceipt,
    TransferReceipt,
    served_record,
    verify_receipt,
)
from tests._sales import Batch, request, sign_payment

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SIZE = 1_000_000
PRICE = 500


def ident(name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(hashlib.sha256(name.encode()).digest()))


ARTIST, F1, F2, F3, MALLORY = (ident(n) for n in ("artist", "f1", "f2", "f3", "mallory"))
PAID = hashlib.sha256(b"paid work").digest()
CC = hashlib.sha256(b"cc work").digest()
NOT_GIVEN = hashlib.sha256(b"a work nobody told the label about").digest()
WORKS = {
    PAID: WorkInfo(SIZE, PaidTerms(PRICE, "EUR", 1500, (ARTIST.public_key,))),
    CC: WorkInfo(SIZE, CCTerms("CC-BY-SA-4.0")),
}


def receipt(work: bytes, up: Identity, down: Identity, seq: int, n: int,
            t: int = 0) -> bytes:
    r = TransferReceipt(work, up.public_key, down.public_key, seq, n,
                        T0 + timedelta(seconds=t + seq))
    return SignedReceipt.sign(r, down).to_bytes()


_BATCHES: dict[tuple[bytes, bytes, int, str], Batch] = {}


def batch(seller: Identity, work: bytes = PAID, face: int = PRICE,
          currency: str = "EUR") -> Batch:
    """*seller*'s batch of 16 codes of *work* at *face* (one per arguments, reused)."""
    key = (seller.public_key, work, face, currency)
    if key not in _BATCHES:
        _BATCHES[key] = Batch(seller, work, face, currency, count=16, seed=b"".join(
            (key[0], key[1], str(face).encode(), currency.encode())))
    return _BATCHES[key]


def payment(buyer: Identity, seller: Identity, *, work: bytes = PAID, amount: int = PRICE,
            currency: str = "EUR", ref: str = "voucher:0001", nonce: bytes = b"\1" * 16,
            served: Sequence[tuple[Identity, int]] = (), t: int = 100,
            face: int | None = None) -> bytes:
    """A v2 sale signed by *seller*: code number *ref* of its batch at *face* (the amount
    by default), answering *buyer*'s request, which carries a receipt per *served*."""
    b = batch(seller, work, amount if face is None else face, currency)
    receipts = tuple(receipt(work, i, buyer, 1, n) for i, n in served)
    req = request(buyer, seller.public_key, work, ts=T0 + timedelta(seconds=t), nonce=nonce,
                  receipts=receipts)
    idx = int(ref.rpartition(":")[2]) % 16
    return sign_payment(seller, req, b.signed, b.codes[idx], b.proof(idx), amount=amount,
                        currency=currency).to_bytes()


Items = list[tuple[str, bytes]]


class Nodes:
    """Real SQLite ledgers in tmp_path; each bundle() is a fresh node database."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def ledger(self, who: Identity) -> Ledger:
        self.n += 1
        return Ledger(self.root / f"node-{self.n}.db", node=who.public_key)

    def bundle(self, who: Identity, items: Items, *, served: bool = True) -> bytes:
        """*who*'s node holding *items*. As a real node does, it records what it sent a
        downloader (``upload.served``) before each receipt it keeps as that uploader,
        unless *items* give their own served records or *served* is False (a node that
        records nothing: an old version, or a cheat)."""
        if served and not any(kind == "upload.served" for kind, _ in items):
            items = [x for item in items for x in (*_served_first(who, item), item)]
        with self.ledger(who) as led:
            led.append_many(items)
            return led.export_bundle(who, now=T0 + timedelta(days=1))


def _served_first(who: Identity, item: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    kind, payload = item
    if kind != "receipt.received":
        return []
    try:
        r = SignedReceipt.from_bytes(payload).receipt
    except MalformedObject:
        return []
    if r.uploader != who.public_key:
        return []
    return [("upload.served", served_record(r.work, r.downloader, r.bytes))]


def serving(nodes: Nodes, who: Identity, *sent: tuple[bytes, Identity, int]) -> bytes:
    """A bundle of uploader *who* recording only what it sent: (work, downloader, bytes)."""
    return nodes.bundle(who, [("upload.served", served_record(w, d.public_key, n))
                              for w, d, n in sent])


@pytest.fixture
def nodes(tmp_path: Path) -> Nodes:
    return Nodes(tmp_path)


def kinds(report: AuditReport) -> list[str]:
    return [f.kind for f in report.findings]


def only(report: AuditReport, kind: str) -> Finding:
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, (kind, kinds(report))
    return found[0]


def k(i: Identity) -> str:
    return key_to_text(i.public_key)


# -- an honest swarm -----------------------------------------------------------------------


def honest_swarm(nodes: Nodes) -> tuple[list[bytes], dict[str, bytes]]:
    """F1 fetches the paid work from F2 and F3 and buys it; F2 and F3 trade the CC work;
    each receipt is in its downloader's and its uploader's ledger."""
    r = {
        "f1<f2.1": receipt(PAID, F2, F1, 1, 300_000),
        "f1<f2.2": receipt(PAID, F2, F1, 2, 600_000),
        "f1<f3.1": receipt(PAID, F3, F1, 1, 400_000),
        "f2<f1.1": receipt(CC, F1, F2, 1, 500_000),
        "f2<f1.2": receipt(CC, F1, F2, 2, 800_000),
        "f2<f3.1": receipt(CC, F3, F2, 1, 200_000),
        "f3<f2.1": receipt(CC, F2, F3, 1, SIZE),
    }
    pay = payment(F1, ARTIST, served=[(F2, 600_000), (F3, 400_000)])
    with nodes.ledger(F1) as led:
        led.append_many([("receipt.issued", r["f1<f2.1"]), ("receipt.issued", r["f1<f3.1"])])
        early = led.export_bundle(F1, now=T0)
        led.append_many([("receipt.issued", r["f1<f2.2"]),
                         *_served_first(F1, ("receipt.received", r["f2<f1.1"])),
                         ("receipt.received", r["f2<f1.1"]),
                         *_served_first(F1, ("receipt.received", r["f2<f1.2"])),
                         ("receipt.received", r["f2<f1.2"]), ("payment.received", pay)])
        late = led.export_bundle(F1, now=T0 + timedelta(days=1))
    bundles = [
        early,
        nodes.bundle(F2, [("receipt.received", r["f1<f2.1"]), ("receipt.issued", r["f2<f1.1"]),
                          ("receipt.received", r["f1<f2.2"]), ("receipt.issued", r["f2<f1.2"]),
                          ("receipt.issued", r["f2<f3.1"]), ("receipt.received", r["f3<f2.1"])]),
        nodes.bundle(F3, [("receipt.received", r["f1<f3.1"]), ("receipt.received", r["f2<f3.1"]),
                          ("receipt.issued", r["f3<f2.1"])]),
        nodes.bundle(ARTIST, [("payment.issued", pay)]),
        late,  # a later export of F1: the same history, grown
        early,  # and the early one again
    ]
    return bundles, {**r, "pay": pay}


def test_honest_swarm_has_no_findings_and_counts_each_entry_once(nodes: Nodes) -> None:
    bundles, _ = honest_swarm(nodes)
    calls: list[tuple[int, int | None]] = []
    report = audit(bundles, WORKS, progress=lambda done, total: calls.append((done, total)))
    assert report.findings == () and report.ok
    # (16 receipts and payments, and 7 served records before the receipts uploaders kept)
    assert report.counts() == {"bundles": 6, "bad_bundles": 0, "nodes": 4, "entries": 23,
                               "receipts": 14, "payment_entries": 2, "transfers": 5,
                               "payments": 1}
    assert calls == [(i, 6) for i in range(1, 7)]
    assert report.to_dict()["ok"] is True


def test_evidence_for_payouts_is_the_verified_latest_receipts_and_payments(
        nodes: Nodes) -> None:
    bundles, r = honest_swarm(nodes)
    report = audit(iter(bundles), WORKS)  # a lazy iterable: progress has no total
    assert [p.to_bytes() for p in report.payments] == [r["pay"]]
    latest = {s.to_bytes() for s in report.transfers()}
    assert latest == {r[x] for x in ("f1<f2.2", "f1<f3.1", "f2<f1.2", "f2<f3.1", "f3<f2.1")}
    for s in report.transfers():
        verify_receipt(s)  # real signed receipts, re-checkable by anyone
    assert [s.receipt.bytes for s in report.transfers(PAID)] == sorted(
        [600_000, 400_000], key=lambda n: {600_000: F2, 400_000: F3}[n].public_key)
    got = report.latest(PAID, F2.public_key, F1.public_key)
    assert got is not None and got.to_bytes() == r["f1<f2.2"]
    assert report.latest(CC, F2.public_key, F1.public_key) is None


# -- forks and bad bundles -----------------------------------------------------------------


def test_two_exports_of_one_node_with_different_histories_are_a_fork(nodes: Nodes) -> None:
    honest = nodes.bundle(F1, [("receipt.issued", receipt(CC, F2, F1, 1, 100))])
    rewritten = nodes.bundle(F1, [("receipt.issued", receipt(CC, F3, F1, 1, 900))])
    report = audit([honest, rewritten, serving(nodes, F2, (CC, F1, 100)),
                    serving(nodes, F3, (CC, F1, 900))], WORKS)
    f = only(report, "fork")
    ev = f.evidence
    assert ev["node"] == k(F1) and ev["seq"] == 1
    cps = ev["checkpoints"]
    assert isinstance(cps, list) and [c["size"] for c in cps] == [1, 1]
    assert cps[0]["head"] != cps[1]["head"] and [c["bundle"] for c in cps] == [0, 1]
    assert ev["hashes"] == [cps[0]["head"], cps[1]["head"]]
    # the first history read is the one counted; the fork is not merged
    assert report.transfer_count == 1
    assert next(report.transfers()).receipt.uploader == F2.public_key


def test_a_longer_history_that_does_not_extend_the_shorter_is_a_fork(nodes: Nodes) -> None:
    a = receipt(CC, F2, F1, 1, 100)
    short = nodes.bundle(F1, [("receipt.issued", a)])
    long = nodes.bundle(F1, [("receipt.issued", receipt(CC, F3, F1, 1, 5)),
                             ("receipt.issued", a)])
    for order in ([short, long], [long, short]):
        f = only(audit(order, WORKS), "fork")
        assert f.evidence["seq"] == 1


def test_a_bundle_with_a_forged_receipt_is_a_bad_bundle_and_counts_for_nothing(
        nodes: Nodes) -> None:
    good = receipt(CC, F2, F1, 1, 100)
    real = SignedReceipt.from_bytes(receipt(CC, F3, F1, 1, 999_999))
    forged = SignedReceipt(real.receipt_bytes, bytes(64)).to_bytes()  # F1 never signed it
    bad = nodes.bundle(F3, [("receipt.received", good), ("receipt.received", forged)],
                       served=False)
    fine = nodes.bundle(F2, [("receipt.received", good)])
    report = audit([bad, fine, b"not a bundle"], WORKS)
    assert kinds(report) == ["bad-bundle", "bad-bundle"]
    first, second = report.findings
    assert first.evidence == {"bundle": 0, "error": "ledger-corrupt",
                              "reason": "receipt-signature", "node": k(F3), "seq": 2,
                              "message": first.evidence["message"]}
    assert second.evidence["bundle"] == 2 and second.evidence["error"] == "malformed"
    assert report.bad_bundles == 2 and report.nodes == 1 and report.receipts == 1


def test_a_tampered_chain_is_a_bad_bundle_with_the_ledger_details(nodes: Nodes) -> None:
    data = nodes.bundle(F1, [("receipt.issued", receipt(CC, F2, F1, 1, 100)),
                             ("receipt.issued", receipt(CC, F2, F1, 2, 200))])
    tampered = data.replace(b"i200e", b"i900e")
    ev = only(audit([tampered], WORKS), "bad-bundle").evidence
    assert ev["error"] in ("ledger-corrupt", "invalid-signature", "malformed")


# -- receipts: duplicates, rollbacks, over size, self-dealing, unknown works -----------------


def test_the_same_receipt_recorded_twice_by_one_node_is_a_duplicate(nodes: Nodes) -> None:
    r1 = receipt(CC, F2, F1, 1, 100)
    data = nodes.bundle(F2, [("receipt.received", r1), ("receipt.received", r1)])
    ev = only(audit([data], WORKS), "duplicate-receipt").evidence
    assert ev["receipt"] == {"work": CC.hex(), "uploader": k(F2), "downloader": k(F1),
                             "seq": 1, "bytes": 100, "ts": "2025-01-01T00:00:01Z"}
    # (each after the served record F2 wrote before it)
    assert ev["at"] == [{"bundle": 0, "node": k(F2), "seq": 2, "kind": "receipt.received"},
                        {"bundle": 0, "node": k(F2), "seq": 4, "kind": "receipt.received"}]


def test_a_receipt_stream_going_backwards_in_one_chain_is_a_rollback(nodes: Nodes) -> None:
    data = nodes.bundle(F2, [("receipt.received", receipt(CC, F2, F1, 2, 500)),
                             ("receipt.received", receipt(CC, F2, F1, 1, 100))])
    ev = only(audit([data], WORKS), "receipt-rollback").evidence
    assert ev["within"] == "one node"
    rs = ev["receipts"]
    assert isinstance(rs, list) and [x["receipt"]["seq"] for x in rs] == [1, 2]


def test_a_downloader_signing_two_versions_of_one_receipt_is_a_rollback(
        nodes: Nodes) -> None:
    # F1 keeps "seq 3, 300 bytes" for itself and gave F2 "seq 3, 900 bytes".
    mine = nodes.bundle(F1, [("receipt.issued", receipt(CC, F2, F1, 3, 300))])
    theirs = nodes.bundle(F2, [("receipt.received", receipt(CC, F2, F1, 3, 900))])
    ev = only(audit([mine, theirs], WORKS), "receipt-rollback").evidence
    assert ev["within"] == "across nodes"
    rs = ev["receipts"]
    assert isinstance(rs, list)
    assert sorted(x["receipt"]["bytes"] for x in rs) == [300, 900]
    assert {x["at"]["node"] for x in rs} == {k(F1), k(F2)}
    # more bytes under a lower seq than another node holds: backwards too
    hi = nodes.bundle(F1, [("receipt.issued", receipt(CC, F3, F1, 5, 100))])
    lo = nodes.bundle(F3, [("receipt.received", receipt(CC, F3, F1, 4, 800))])
    assert kinds(audit([hi, lo], WORKS)) == ["receipt-rollback"]
    assert kinds(audit([lo, hi], WORKS)) == ["receipt-rollback"]


def test_latest_receipts_crediting_more_than_the_work_are_over_size(nodes: Nodes) -> None:
    data = nodes.bundle(F1, [("receipt.issued", receipt(CC, F2, F1, 1, 700_000)),
                             ("receipt.issued", receipt(CC, F3, F1, 1, 200_000)),
                             ("receipt.issued", receipt(CC, F3, F1, 2, 600_000))])
    uploaders = [serving(nodes, F2, (CC, F1, 700_000)), serving(nodes, F3, (CC, F1, 600_000))]
    ev = only(audit([data, *uploaders], WORKS), "over-size").evidence
    assert ev["work"] == CC.hex() and ev["downloader"] == k(F1)
    assert ev["size"] == SIZE and ev["credited"] == 1_300_000
    rs = ev["receipts"]
    assert isinstance(rs, list)
    assert sorted(x["receipt"]["bytes"] for x in rs) == [600_000, 700_000]


def test_a_buyer_that_signed_more_than_a_copy_is_over_size_and_its_carriers_scaled(
        nodes: Nodes) -> None:
    """The buyer's request carries receipts for the whole work to F2 and one byte more to
    F3 (both back what they sent): one copy is credited, pro rata."""
    pay = payment(F1, ARTIST, served=[(F2, SIZE), (F3, 1)])
    report = audit([nodes.bundle(ARTIST, [("payment.issued", pay)]),
                    serving(nodes, F2, (PAID, F1, SIZE)), serving(nodes, F3, (PAID, F1, 1))],
                   WORKS)
    ev = only(report, "over-size").evidence
    assert ev["credited"] == SIZE + 1 and ev["downloader"] == k(F1)
    [sale] = report.sales
    # Each capped at the size, not scaled (the statement counts one copy, exactly); a
    # byte over is within the slack: scaled, not held.
    assert dict(sale.carriers) == {F2.public_key: SIZE, F3.public_key: 1}
    assert sale.amount == PRICE and not sale.hold_carriers


def test_a_receipt_naming_one_key_as_uploader_and_downloader_is_self_dealing(
        nodes: Nodes) -> None:
    # TransferReceipt refuses to be built like this; a cheat signs the bytes directly.
    rb = _receipt_bytes(CC, MALLORY.public_key, MALLORY.public_key, 1, SIZE,
                        int(T0.timestamp()))
    env = _canonical.encode({"receipt": rb, "sig": MALLORY.sign(domain=DOMAIN, message=rb),
                             "type": "p2pdist/signed-receipt", "v": 1})
    report = audit([nodes.bundle(MALLORY, [("receipt.issued", env)])], WORKS)
    ev = only(report, "self-dealing").evidence
    assert ev["receipt"]["uploader"] == ev["receipt"]["downloader"] == k(MALLORY)  # type: ignore[index]
    assert ev["at"] == {"bundle": 0, "node": k(MALLORY), "seq": 1, "kind": "receipt.issued"}
    assert report.transfer_count == 0


def test_receipts_and_payments_for_works_not_given_are_unknown_work(nodes: Nodes) -> None:
    data = nodes.bundle(F1, [("receipt.issued", receipt(NOT_GIVEN, F2, F1, 1, 10)),
                             ("receipt.issued", receipt(NOT_GIVEN, F2, F1, 2, 20)),
                             ("payment.received", payment(F1, ARTIST, work=NOT_GIVEN))])
    report = audit([data], WORKS)
    ev = only(report, "unknown-work").evidence
    assert ev == {"work": NOT_GIVEN.hex(), "receipts": 2, "payments": 1,
                  "first": {"bundle": 0, "node": k(F1), "seq": 1, "kind": "receipt.issued"}}
    assert report.transfer_count == 0 and report.payments == ()


# -- Sybils --------------------------------------------------------------------------------


def test_a_ring_of_fresh_keys_acknowledging_one_uploader_is_suspected_sybil(
        nodes: Nodes) -> None:
    fakes = [ident(f"fake-{i}") for i in range(50)]
    items = [("receipt.received", receipt(CC, MALLORY, f, 1, 100_000)) for f in fakes]
    report = audit([nodes.bundle(MALLORY, items)], WORKS)
    ev = only(report, "suspected-sybil").evidence
    assert ev["uploader"] == k(MALLORY) and ev["count"] == 50
    assert ev["keys"] == sorted(k(f) for f in fakes)
    assert ev["works"] == [CC.hex()] and ev["bytes"] == 50 * 100_000


def test_fans_who_pay_upload_or_use_two_uploaders_are_not_sybils(nodes: Nodes) -> None:
    fans = [ident(f"fan-{i}") for i in range(6)]
    items = [("receipt.received", receipt(PAID, MALLORY, f, 1, 1000)) for f in fans]
    # fan 0 pays, fan 1 uploads to fan 2, fan 3 also fetched from F2: 2 fresh keys remain
    paid = payment(fans[0], ARTIST)
    items += [("payment.received", paid),
              ("receipt.received", receipt(PAID, fans[1], fans[2], 1, 10)),
              ("receipt.received", receipt(PAID, F2, fans[3], 1, 10))]
    # (fan 1 and F2 back what they sent in their own bundles)
    backing = [serving(nodes, fans[1], (PAID, fans[2], 10)),
               serving(nodes, F2, (PAID, fans[3], 10))]
    backing.append(nodes.bundle(ARTIST, [("payment.issued", paid)]))
    assert kinds(audit([nodes.bundle(MALLORY, items), *backing], WORKS)) == []
    # four fresh keys are below the default threshold, and suspected at sybil_min=4
    four = [("receipt.received", receipt(CC, MALLORY, f, 1, 1)) for f in fans[:4]]
    data = nodes.bundle(MALLORY, four)
    assert kinds(audit([data], WORKS)) == []
    assert kinds(audit([data], WORKS, sybil_min=4)) == ["suspected-sybil"]


# -- payments ------------------------------------------------------------------------------


def test_an_artist_reusing_an_honest_buyers_nonce_erases_no_sale(nodes: Nodes) -> None:
    """Attack: Mallory (the seller of its own work) signs a back-dated 0.01 sale of that
    work to an accomplice, with the nonce of an honest 5.00 sale of the artist's work
    (the nonce is printed in statements). Sales are deduplicated on the buyer-signed
    request: both count, the honest sale is not dropped, nothing is a finding."""
    own = hashlib.sha256(b"mallory's own work").digest()
    works = {**WORKS, own: WorkInfo(SIZE, PaidTerms(1, "EUR", 1500, (MALLORY.public_key,)))}
    honest = payment(F1, ARTIST, nonce=b"\7" * 16, t=100)
    forged = payment(F3, MALLORY, work=own, amount=1, nonce=b"\7" * 16, t=1)
    report = audit([nodes.bundle(ARTIST, [("payment.issued", honest)]),
                    nodes.bundle(MALLORY, [("payment.issued", forged)])], works)
    assert kinds(report) == []
    assert sorted(s.amount for s in report.sales) == [1, PRICE]


def test_two_payment_receipts_answering_one_request_are_a_double_booking(
        nodes: Nodes) -> None:
    """One buyer-signed request, two payment receipts (two nodes sharing the seller's
    key, or a seller signing twice): counted once, and named."""
    b = batch(ARTIST)
    req = request(F1, ARTIST.public_key, PAID, ts=T0 + timedelta(seconds=100))
    one = sign_payment(ARTIST, req, b.signed, b.codes[3], b.proof(3)).to_bytes()
    two = sign_payment(ARTIST, req, b.signed, b.codes[4], b.proof(4),
                       ts=T0 + timedelta(seconds=200)).to_bytes()
    report = audit([nodes.bundle(ARTIST, [("payment.issued", one), ("payment.issued", two)])],
                   WORKS)
    ev = only(report, "double-booking").evidence
    assert ev["sellers"] == [k(ARTIST)] and len(ev["payments"]) == 2  # type: ignore[arg-type]
    assert [p.to_bytes() for p in report.payments] == [one]
    assert [s.amount for s in report.sales] == [PRICE]


def test_a_seller_recording_one_payment_twice_is_a_duplicate_payment(nodes: Nodes) -> None:
    pay = payment(F1, ARTIST)
    report = audit([nodes.bundle(ARTIST, [("payment.issued", pay), ("payment.issued", pay)]),
                    nodes.bundle(F1, [("payment.received", pay)])], WORKS)
    ev = only(report, "duplicate-payment").evidence
    at = ev["at"]
    assert isinstance(at, list) and [a["seq"] for a in at] == [1, 2]
    assert len(report.payments) == 1
    # a buyer that asked again and got the same receipt twice is not a finding
    buyer = nodes.bundle(F1, [("payment.received", pay), ("payment.received", pay)])
    seller = nodes.bundle(ARTIST, [("payment.issued", pay)])
    assert audit([buyer, seller], WORKS).findings == ()


def test_one_voucher_in_two_payment_receipts_is_a_double_spend(nodes: Nodes) -> None:
    a = payment(F1, ARTIST, ref="voucher:5", nonce=b"\1" * 16, t=100)
    b = payment(F2, ARTIST, ref="voucher:5", nonce=b"\2" * 16, t=50)
    report = audit([nodes.bundle(ARTIST, [("payment.issued", a), ("payment.issued", b)])],
                   WORKS)
    ev = only(report, "double-spend").evidence
    assert ev["work"] == PAID.hex() and ev["sellers"] == [k(ARTIST)]
    ps = ev["payments"]
    assert isinstance(ps, list) and [p["payment"]["buyer"] for p in ps] == [k(F2), k(F1)]
    # Both buyers' sales book the face value against the seller that signed them twice.
    assert {s.buyer: s.amount for s in report.sales} == {F2.public_key: PRICE,
                                                         F1.public_key: PRICE}
    # (the carriers' share of the later spend is held for the label)
    assert {s.buyer: s.hold_carriers for s in report.sales} == {F2.public_key: False,
                                                                F1.public_key: True}


def test_a_payment_receipt_signed_by_a_non_seller_is_reported(nodes: Nodes) -> None:
    fake = payment(F1, MALLORY)
    cc_sale = payment(F1, MALLORY, work=CC, nonce=b"\3" * 16, ref="voucher:2")
    report = audit([nodes.bundle(F1, [("payment.received", fake),
                                      ("payment.received", cc_sale)])], WORKS)
    assert kinds(report) == ["non-seller", "non-seller"]
    ev = report.findings[0].evidence
    assert ev["payment"]["seller"] == k(MALLORY)  # type: ignore[index]
    assert ev["sellers"] == [k(ARTIST)] and report.findings[1].evidence["sellers"] == []
    assert ev["at"] == {"bundle": 0, "node": k(F1), "seq": 1, "kind": "payment.received"}
    assert report.payments == ()


@pytest.mark.parametrize(("amount", "currency"), [(PRICE - 1, "EUR"), (PRICE, "USD")])
def test_a_payment_receipt_at_the_wrong_price_is_reported(nodes: Nodes, amount: int,
                                                          currency: str) -> None:
    report = audit([nodes.bundle(ARTIST, [("payment.issued", payment(
        F1, ARTIST, amount=amount, currency=currency, face=PRICE))])], WORKS)
    ev = only(report, "wrong-price").evidence
    assert ev["price"] == {"amount": PRICE, "currency": "EUR"}
    assert ev["payment"]["amount"] == amount  # type: ignore[index]
    assert report.payments == ()


def test_a_payment_receipt_with_a_forged_signature_makes_a_bad_bundle(nodes: Nodes) -> None:
    sp = SignedPayment.from_bytes(payment(F1, ARTIST))
    forged = SignedPayment(sp.body, sp.payment, bytes(64)).to_bytes()
    ev = only(audit([nodes.bundle(F1, [("payment.received", forged)])], WORKS),
              "bad-bundle").evidence
    assert ev["reason"] == "payment-signature" and ev["seq"] == 1


# -- bounds and API ------------------------------------------------------------------------


def test_findings_past_the_cap_are_counted_not_kept(nodes: Nodes,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_mod, "MAX_FINDINGS_PER_KIND", 2)
    r1 = receipt(CC, F2, F1, 1, 100)
    report = audit([nodes.bundle(F2, [("receipt.received", r1)] * 5)], WORKS)
    assert kinds(report) == ["duplicate-receipt"] * 2
    assert report.omitted == {"duplicate-receipt": 2} and not report.ok


def test_every_finding_kind_is_named_and_serialisable() -> None:
    with pytest.raises(ValueError, match="unknown finding kind"):
        Finding("nonsense", "x", {})
    assert len(set(FINDING_KINDS)) == len(FINDING_KINDS) == 21
    f = Finding("fork", "m", {"node": "x"})
    assert f.to_dict() == {"kind": "fork", "message": "m", "evidence": {"node": "x"}}


def test_misuse_is_a_type_or_value_error() -> None:
    with pytest.raises(TypeError):
        audit([], {b"short": WORKS[PAID]})
    with pytest.raises(ValueError, match="sybil_min"):
        audit([], WORKS, sybil_min=1)
    with pytest.raises(ValueError):
        WorkInfo(-1, CCTerms("CC-BY-4.0"))
    info = WORKS[PAID]
    assert (info.sellers, info.price, info.currency) == ((ARTIST.public_key,), PRICE, "EUR")
    assert (WORKS[CC].sellers, WORKS[CC].price) == ((), None)


# -- the exact-layout receipt reader -------------------------------------------------------

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
KEYS = st.binary(min_size=32, max_size=32)
COUNTS = st.integers(0, 2**63 - 1)


@PROPERTY
@given(work=KEYS, seq=st.integers(1, 2**63 - 1), n=COUNTS,
       ts=st.integers(0, 253_402_300_799))
def test_receipt_bytes_are_the_canonical_encoding(work: bytes, seq: int, n: int,
                                                  ts: int) -> None:
    r = TransferReceipt(work, F2.public_key, F1.public_key, seq, n,
                        datetime.fromtimestamp(ts, UTC))
    assert _receipt_bytes(work, F2.public_key, F1.public_key, seq, n, ts) == r.signed_bytes()
    env = SignedReceipt(r.signed_bytes(), b"\5" * 64).to_bytes()
    assert _parse_receipt_fast(env) == (r.signed_bytes(), b"\5" * 64,
                                        work + F2.public_key + F1.public_key, seq, n, ts)


def _mutations(env: bytes) -> Iterator[bytes]:
    for i in range(0, len(env), 3):
        for b in (0x30, 0x39, ord("e"), ord(":"), ord("-"), env[i] ^ 1):
            yield env[:i] + bytes([b]) + env[i + 1 :]
    for cut in range(len(env)):
        yield env[:cut]
    yield env + b"x"
    yield env.replace(b"i1e", b"i01e", 1)
    yield env.replace(b"seqi", b"seqi-", 1)


def test_the_fast_reader_agrees_with_the_strict_parser_or_declines() -> None:
    env = receipt(CC, F2, F1, 1, 12345)
    strict: Callable[[bytes], object] = SignedReceipt.from_bytes
    checked = 0
    for m in _mutations(env):
        fast = _parse_receipt_fast(m)
        if fast is None:
            continue
        s = strict(m)  # must parse, to the same fields
        assert isinstance(s, SignedReceipt)
        r = s.receipt
        assert fast == (s.receipt_bytes, s.sig, r.work + r.uploader + r.downloader, r.seq,
                        r.bytes, int(r.ts.timestamp()))
        checked += 1
    assert checked > 0
