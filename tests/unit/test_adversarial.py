"""Money rules under attack: each test is an attack, built with real keys, ledgers and
bundles. The audit must name it, and the payout of what holds must give the attacker at
most what the attacker paid in (DESIGN.md, "the test of every rule")."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import timedelta

import nacl.signing
import pytest

from p2pdist.errors import VerificationError
from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing import (
    CCTerms,
    Content,
    ContentFile,
    LicenseManifest,
    PaidTerms,
    SignedManifest,
    Split,
    verify_manifest,
)
from p2pdist.payouts.audit import AuditReport, WorkInfo, audit
from p2pdist.payouts.receipts import served_record
from p2pdist.payouts.statement import Pool, Statement, StatementWork, compute_statement
from tests.unit.test_audit import ARTIST, F1, F2, F3, T0, Nodes, ident, payment, receipt

SIZE = 1_000_000
PRICE = 500
PAID = hashlib.sha256(b"adversarial paid work").digest()
CC = hashlib.sha256(b"adversarial cc work").digest()
MALLORY = ident("mallory")
LABEL = ident("label")
GRACE = ident("grace")
PAID_TERMS = PaidTerms(PRICE, "EUR", 1500, (ARTIST.public_key,))
AUDIT_WORKS = {PAID: WorkInfo(SIZE, PAID_TERMS), CC: WorkInfo(SIZE, CCTerms("CC-BY-4.0"))}
SPLITS = ((ARTIST.public_key, 6000), (GRACE.public_key, 4000))
PAY_WORKS = {
    PAID: StatementWork("Paid", PAID_TERMS, SPLITS, SIZE),
    CC: StatementWork("Free", CCTerms("CC-BY-4.0"), SPLITS, SIZE),
}


@pytest.fixture
def nodes(tmp_path: object) -> Nodes:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    return Nodes(tmp_path)


def _payout(report: AuditReport, pool: Pool | None = None) -> Statement:
    """What `p2pdist payouts` does with an audit: pay what holds, Sybils share no pool."""
    sybils = {bytes(nacl.signing.VerifyKey(_key(k)))
              for f in report.findings if f.kind == "suspected-sybil"
              for k in f.evidence["keys"]}  # type: ignore[union-attr]
    return compute_statement(label=LABEL.public_key, works=PAY_WORKS,
                             sales=list(report.sales),
                             transfers=[s.receipt for s in report.transfers()], pool=pool,
                             exclude=sybils)


def _key(text: object) -> bytes:
    from p2pdist.identity import key_from_text

    return key_from_text(str(text))


def _paid_to(st: Statement, who: Iterable[Identity]) -> int:
    keys = {i.public_key for i in who}
    return sum(ln.amount for ln in st.lines if ln.payee in keys)


def _kinds(report: AuditReport) -> set[str]:
    return {f.kind for f in report.findings}


def test_sybil_ring_of_50_fresh_keys_signing_receipts_for_one_uploader(nodes: Nodes) -> None:
    # Mallory makes 50 keys that "download" the CC work from her, to draw 50 pool slices.
    ring = [ident(f"sybil-{i}") for i in range(50)]
    fake = [("receipt.received", receipt(CC, MALLORY, s, 1, SIZE)) for s in ring]
    honest = [("receipt.received", receipt(CC, F2, F1, 1, SIZE))]
    report = audit([nodes.bundle(MALLORY, fake), nodes.bundle(F2, honest)], AUDIT_WORKS)
    assert "suspected-sybil" in _kinds(report)
    st = _payout(report, Pool(100_00, "EUR"))
    assert st.sums_exactly
    # Mallory put nothing in the pool and takes nothing out; the one real fan's slice
    # goes to its uploader and the holders.
    assert _paid_to(st, [MALLORY, *ring]) == 0
    assert _paid_to(st, [F2]) > 0


def _served(work: bytes, down: Identity, n: int) -> tuple[str, bytes]:
    """What an uploader's node records, in its own ledger, of the bytes it sent a key."""
    return ("upload.served", served_record(work, down.public_key, n))


def test_phantom_receipts_through_a_collector_make_no_sybil_ring_and_take_no_pool(
        nodes: Nodes) -> None:
    # The artist served two real fans (and recorded it). Mallory's three fresh keys
    # post "the whole work, from the artist" to the label's collector, which keeps every
    # downloader's receipts: on their own they would make the two fans and the three
    # phantoms a five-key ring of the artist and take its pool.
    fans, phantoms = [F1, F2], [ident(f"phantom-{i}") for i in range(3)]
    artist = nodes.bundle(ARTIST, [x for f in fans for x in (
        _served(CC, f, SIZE), ("receipt.received", receipt(CC, ARTIST, f, 1, SIZE)))])
    collector = nodes.bundle(LABEL, [("receipt.collected", receipt(CC, ARTIST, p, 1, SIZE))
                                     for p in [*fans, *phantoms]])
    report = audit([artist, collector], AUDIT_WORKS)
    assert _kinds(report) == {"unbacked-receipt"}
    named = {f.evidence["receipt"]["downloader"] for f in report.findings}  # type: ignore[index]
    assert named == {key_to_text(p.public_key) for p in phantoms}
    assert {s.receipt.downloader for s in report.transfers()} == {f.public_key for f in fans}
    st = _payout(report, Pool(100_00, "EUR"))
    # As without the attack: two verified downloaders, the pool to the artist's side.
    assert _paid_to(st, [ARTIST, GRACE]) == 100_00
    assert _paid_to(st, phantoms) == 0


def test_a_node_that_keeps_receipts_beyond_what_it_served_is_an_unbacked_finding(
        nodes: Nodes) -> None:
    # F3's modified node recorded sending F1 300 kB but keeps F1's receipt for the whole
    # work (and F2's, whom it never served): both are findings and earn F3 nothing.
    f3 = nodes.bundle(F3, [_served(CC, F1, 300_000),
                           ("receipt.received", receipt(CC, F3, F1, 1, SIZE)),
                           ("receipt.received", receipt(CC, F3, F2, 1, SIZE))])
    report = audit([f3], AUDIT_WORKS)
    found = {f.evidence["receipt"]["downloader"]: f.evidence["served"]  # type: ignore[index]
             for f in report.findings if f.kind == "unbacked-receipt"}
    assert set(found) == {key_to_text(F1.public_key), key_to_text(F2.public_key)}
    assert found[key_to_text(F1.public_key)]["bytes"] == 300_000  # type: ignore[index]
    assert report.transfer_count == 2 and list(report.transfers()) == []
    # Within the slack (the uploader's counts lag a tick) a receipt is backed; from a
    # node that records nothing it served (a version before served records) it is not,
    # and earns that uploader nothing.
    near = nodes.bundle(F2, [_served(CC, F1, SIZE - 100_000),
                             ("receipt.received", receipt(CC, F2, F1, 1, SIZE))])
    old = nodes.bundle(MALLORY, [("receipt.received", receipt(CC, MALLORY, F3, 1, SIZE))],
                       served=False)
    report = audit([near, old], AUDIT_WORKS)
    [f] = [f for f in report.findings if f.kind == "unbacked-receipt"]
    assert f.evidence["uploader"] == "records-nothing"
    assert f.evidence["receipt"]["uploader"] == key_to_text(MALLORY.public_key)  # type: ignore[index]
    assert [s.receipt.uploader for s in report.transfers()] == [F2.public_key]


def test_colluding_buyer_inflates_served_by(nodes: Nodes) -> None:
    # Mallory buys (5.00 EUR) and signs receipts crediting her accomplice with the whole
    # work on top of what F2 really sent; the seller caps served_by, the audit flags it.
    accomplice = ident("accomplice")
    inflated = [("receipt.issued", receipt(PAID, F2, MALLORY, 1, 600_000)),
                ("receipt.issued", receipt(PAID, accomplice, MALLORY, 1, SIZE))]
    pay = payment(MALLORY, ARTIST, work=PAID, served=[(F2, 375_000), (accomplice, 625_000)])
    # F2 records what it really sent; the accomplice's node writes that it sent the
    # whole work (its chain is its word, so its receipt is backed).
    uploaders = [nodes.bundle(F2, [_served(PAID, MALLORY, 600_000)]),
                 nodes.bundle(accomplice, [_served(PAID, MALLORY, SIZE)])]
    report = audit([nodes.bundle(MALLORY, [*inflated, ("payment.received", pay)]),
                    nodes.bundle(ARTIST, [("payment.issued", pay)]), *uploaders],
                   AUDIT_WORKS)
    assert "over-size" in _kinds(report)
    st = _payout(report)
    assert st.sums_exactly
    # At most the redistributor share of her own purchase comes back to her side.
    assert _paid_to(st, [MALLORY, accomplice]) <= PRICE
    assert _paid_to(st, [MALLORY, accomplice]) <= PRICE * 1500 // 10_000


def test_replayed_payment_receipts_are_paid_once(nodes: Nodes) -> None:
    # One purchase request (one nonce) answered twice, and F3, who carried it, keeping
    # the receipt twice in its own ledger to be paid twice.
    pay = payment(F1, ARTIST, work=PAID, served=[(F3, SIZE)])
    again = payment(F1, ARTIST, work=PAID, served=[(F3, SIZE)], t=500)  # the same nonce
    report = audit([nodes.bundle(F3, [_served(PAID, F1, SIZE), ("payment.received", pay),
                                      ("payment.received", pay)]),
                    nodes.bundle(ARTIST, [("payment.issued", pay), ("payment.issued", again)])],
                   AUDIT_WORKS)
    assert "double-spend" in _kinds(report)  # the second answer spends the code again
    st = _payout(report)
    # Two sales booked against the seller that signed them (F3's two copies of one
    # receipt count once); F3 is paid the carriers' share once: the second's is held.
    assert dict(st.totals_in) == {"EUR": 2 * PRICE}
    assert _paid_to(st, [F3]) == PRICE * 1500 // 10_000
    assert sum(ln.amount for ln in st.lines if ln.role == "held") == PRICE * 1500 // 10_000


def test_a_forked_ledger_counts_only_one_history(nodes: Nodes) -> None:
    # F3 exports one history, then rewrites it to claim more credit, and exports again.
    honest = nodes.bundle(F3, [("receipt.received", receipt(CC, F3, F1, 1, 100))])
    rewritten = nodes.bundle(F3, [("receipt.received", receipt(CC, F3, F2, 1, SIZE))])
    report = audit([honest, rewritten], AUDIT_WORKS)
    assert "fork" in _kinds(report)
    assert report.transfer_count == 1
    st = _payout(report, Pool(10_00, "EUR"))
    assert st.sums_exactly
    # F3 paid nothing in: the pool slice of the one downloader counted is all it can
    # share, as that downloader's redistributor, never the rewritten claim's.
    assert _paid_to(st, [F3]) <= 10_00 * 1000 // 10_000


def test_a_double_spent_voucher_pays_once(nodes: Nodes) -> None:
    # A colluding seller reuses one voucher for two buyers (two receipts, one ref).
    p1 = payment(F1, ARTIST, work=PAID, ref="voucher:7", nonce=b"\1" * 16,
                 served=[(F3, SIZE)])
    p2 = payment(MALLORY, ARTIST, work=PAID, ref="voucher:7", nonce=b"\2" * 16,
                 served=[(F3, SIZE)])
    report = audit([nodes.bundle(ARTIST, [("payment.issued", p1), ("payment.issued", p2)])],
                   AUDIT_WORKS)
    assert "double-spend" in _kinds(report)
    st = _payout(report)
    assert dict(st.totals_in) == {"EUR": 2 * PRICE}  # both against the seller
    assert _paid_to(st, [MALLORY]) == 0


def test_a_forged_split_sheet_does_not_verify() -> None:
    # Mallory takes a work Ada and Grace signed and gives herself Grace's share.
    content = Content(262_144, (ContentFile(("w.flac",), SIZE, hashlib.sha256(b"r").digest()),),
                      hashlib.sha256(b"v1").digest())
    ada = Identity("ada", ARTIST.signing_key)
    grace = Identity("grace", GRACE.signing_key)
    m = LicenseManifest("W", ("Ada",), T0, CCTerms("CC-BY-4.0"),
                        (Split(ada.public_key, 6000), Split(grace.public_key, 4000)), content)
    signed = SignedManifest.sign(m, [ada, grace])
    verify_manifest(signed, content=content)
    forged_m = LicenseManifest("W", ("Ada",), T0, CCTerms("CC-BY-4.0"),
                               (Split(ada.public_key, 6000), Split(MALLORY.public_key, 4000)),
                               content)
    # (a) the holders' signatures over other bytes: refused
    with pytest.raises(VerificationError):
        verify_manifest(SignedManifest(forged_m.signed_bytes(), forged_m, signed.signatures),
                        content=content)
    # (b) re-signed by Mallory alone: a holder (Ada) did not sign, refused
    with pytest.raises(VerificationError):
        verify_manifest(SignedManifest.sign(forged_m, [MALLORY]), content=content)
    # (c) Mallory re-signs with Ada's old signature kept: still not Ada's over these bytes
    resigned = SignedManifest.sign(forged_m, [MALLORY])
    mixed = SignedManifest(resigned.manifest_bytes, forged_m,
                           (signed.signatures[0], resigned.signatures[0]))
    with pytest.raises(VerificationError):
        verify_manifest(mixed, content=content)


def test_honest_sales_pay_the_carriers_and_holders_exactly(nodes: Nodes) -> None:
    pay = payment(F1, ARTIST, work=PAID, served=[(F2, 750_000), (F3, 250_000)],
                  t=int(timedelta(days=1).total_seconds()))
    report = audit([nodes.bundle(ARTIST, [("payment.issued", pay)]),
                    nodes.bundle(F2, [_served(PAID, F1, 750_000)]),
                    nodes.bundle(F3, [_served(PAID, F1, 250_000)])], AUDIT_WORKS)
    assert report.ok, report.findings
    st = _payout(report)
    # 5.00 EUR: 15% = 75 cents to the carriers 3:1 (56 + 19 by largest remainder),
    # 4.25 to the holders 60:40 (2.55 + 1.70).
    assert _paid_to(st, [F2]) == 56 and _paid_to(st, [F3]) == 19
    assert _paid_to(st, [ARTIST]) == 255 and _paid_to(st, [GRACE]) == 170
