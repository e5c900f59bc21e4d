"""Purchase requests, payment receipts (v2) and license grants: vectors, properties,
attacks.

Three signed formats share one envelope (p2pdist/_signed.py). Every refusal must be a
VerificationError (exit 3): InvalidSignature or MalformedObject for bytes that do not
hold, PaymentRejected or NotLicensed, with a precise reason, only once the signature does.
Never a KeyError, TypeError or ValueError leaking out of a parser.

A v2 payment receipt holds three signatures: the seller's over the receipt, the buyer's
over the purchase request it answers, and the collector's over the issuance record of
the code it spent (tests/_sales.py makes them with each signer's own key). The issuance
record and its Merkle tree have their own tests in test_issuance.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist._proof import IDENTITY_DOMAIN
from p2pdist.errors import (
    InvalidSignature,
    MalformedObject,
    NotLicensed,
    VerificationError,
)
from p2pdist.identity import Identity, key_to_text, seal_to
from p2pdist.licensing import DOMAIN as LICENSE_DOMAIN
from p2pdist.licensing import PaidTerms
from p2pdist.licensing._grant import (
    GRANT_DOMAIN,
    MAX_GRANT_SIZE,
    LicenseGrant,
    SignedGrant,
    open_grant,
    seal_key,
    verify_grant,
)
from p2pdist.payouts.issuance import (
    ISSUANCE_DOMAIN,
    MAX_PROOF,
    Issuance,
    MerkleProof,
    SignedIssuance,
)
from p2pdist.payouts.payments import (
    MAX_PAYMENT_SIZE,
    MAX_PURCHASE_SIZE,
    MAX_SEALED_PAYMENT,
    MAX_SERVED_BY,
    PAYMENT_DOMAIN,
    PURCHASE_DOMAIN,
    PaymentReceipt,
    PaymentRejected,
    PurchaseRequest,
    Served,
    SignedPayment,
    SignedPurchase,
    check_issued,
    open_payment,
    seal_payment,
    served_by_from_receipts,
    verify_payment,
    verify_purchase,
)
from p2pdist.payouts.receipts import DOMAIN as RECEIPT_DOMAIN
from p2pdist.payouts.receipts import MAX_RECEIPT_SIZE, SignedReceipt, TransferReceipt
from p2pdist.payouts.vouchers import payment_ref
from tests._sales import Batch, sign_payment

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "payments.json").read_text("utf-8")
)
ISSUANCES: dict[str, dict[str, Any]] = {c["name"]: c for c in json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "issuances.json").read_text("utf-8")
)["issuances"]}
PURCHASES: list[dict[str, Any]] = VECTORS["purchases"]
PAYMENTS: list[dict[str, Any]] = VECTORS["payments"]
GRANTS: list[dict[str, Any]] = VECTORS["grants"]

PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

MAX_COUNT = 2**63 - 1
MAX_TS = 253_402_300_799
PIECE = 262_144


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


BUYER = _identity(bytes(range(32)), "buyer")
SELLER = _identity(bytes(range(32, 64)), "seller")
BUYER2 = _identity(bytes(range(64, 96)), "second buyer")
SELLER2 = _identity(b"\x05" * 32, "second seller")
MALLORY = _identity(b"\x07" * 32, "Mallory")
UPLOADERS = [_identity(bytes([i]) * 32, f"uploader {i}") for i in range(1, 9)]
U1, U2, U3 = (u.public_key for u in UPLOADERS[:3])

WORK = bytes.fromhex(PURCHASES[0]["input"]["work"])
OTHER_WORK = hashlib.sha256(b"info dict of ada's song").digest()
SIZE = 8 * PIECE
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CONTENT_KEY = bytes.fromhex(GRANTS[0]["input"]["content_key"])
KEY_ID = hashlib.blake2b(b"p2pdist/key-id/v1\0" + CONTENT_KEY, digest_size=32).digest()
SEALED = bytes.fromhex(GRANTS[0]["input"]["sealed_key"])  # CONTENT_KEY sealed to BUYER
SEALED_TO_BUYER2 = bytes.fromhex(GRANTS[1]["input"]["sealed_key"])


def _terms(*sellers: bytes, price: int = 500, currency: str = "EUR") -> PaidTerms:
    return PaidTerms(price=price, currency=currency, redistributor_bps=1_500,
                     sellers=sellers or (SELLER.public_key, SELLER2.public_key))


TERMS = _terms()


def _transfer(uploader: bytes, seq: int, n: int, *, work: bytes = WORK,
              downloader: Identity = BUYER) -> bytes:
    """A real signed transfer receipt envelope, as the buyer's node holds it."""
    return SignedReceipt.sign(TransferReceipt(
        work=work, uploader=uploader, downloader=downloader.public_key, seq=seq, bytes=n,
        ts=T0), downloader).to_bytes()


R1 = _transfer(U1, 3, PIECE + 1)
R2 = _transfer(U2, 1, PIECE)


CODE = "7K3Q-M9XR-2HTP-VW4C-X"
_SEAL_BINDING = ("payment", "work", "buyer", "seller", "nonce")
# The base request's credential, sealed once (sealed boxes are random): _request() is
# the same object every time.
SEALED_PAYMENT = seal_payment(CODE, work=WORK, buyer=BUYER.public_key,
                              seller=SELLER.public_key, nonce=bytes(range(16)))


def _request(**kw: Any) -> PurchaseRequest:
    """The base request; a changed payment, work, buyer, seller or nonce is sealed anew
    (bound to the changed request) unless *sealed_payment* is given."""
    fields: dict[str, Any] = {
        "work": WORK, "buyer": BUYER.public_key, "seller": SELLER.public_key,
        "method": "voucher", "payment": CODE, "nonce": bytes(range(16)),
        "ts": T0, "receipts": (R1, R2),
    }
    fields.update(kw)
    sealed = kw.get("sealed_payment", SEALED_PAYMENT)
    if "sealed_payment" not in kw and any(k in kw for k in _SEAL_BINDING):
        try:
            sealed = seal_payment(fields["payment"], work=fields["work"],
                                  buyer=fields["buyer"], seller=fields["seller"],
                                  nonce=fields["nonce"])
        except (ValueError, TypeError):
            if "payment" in kw:
                raise ValueError("not a payment credential") from None
    fields.pop("payment")
    fields["sealed_payment"] = sealed
    return PurchaseRequest(**fields)


def _sv(*rows: tuple[bytes, int]) -> tuple[Served, ...]:
    """served_by as a seller signs it: in key order."""
    return tuple(Served(pk, n) for pk, n in sorted(rows))


# Each seller's batch of 8 codes of WORK at 5.00 EUR, from fixed seeds (ed25519 is
# deterministic: the same records every run).
BATCH = Batch(SELLER, WORK, face=500, currency="EUR", count=8, seed=b"seller's batch")
BATCH2 = Batch(SELLER2, WORK, face=500, currency="EUR", count=8, seed=b"second seller's")
MALLORY_BATCH = Batch(MALLORY, WORK, face=500, currency="EUR", count=8, seed=b"mallory's")
BATCHES = {b.collector.public_key: b for b in (BATCH, BATCH2, MALLORY_BATCH)}
IDENTITIES = {i.public_key: i for i in (BUYER, SELLER, BUYER2, SELLER2, MALLORY)}
_REQUEST_FIELDS = ("work", "buyer", "seller", "nonce", "method", "receipts")
REQUEST = SignedPurchase.sign(_request(), BUYER)  # the base request, signed once


def _signed_request(**kw: Any) -> SignedPurchase:
    """_request(**kw) signed by the buyer it names (REQUEST itself when kw is empty)."""
    if not kw:
        return REQUEST
    r = _request(**kw)
    return SignedPurchase.sign(r, IDENTITIES[r.buyer])


def _payment(**kw: Any) -> PaymentReceipt:
    """The base sale: BUYER's REQUEST answered by SELLER with code *index* (0) of BATCH, at
    its face value. A changed request field (work, buyer, seller, nonce, method, ts,
    receipts) makes a request of its own, signed by its buyer and answered with a code of
    its seller's batch; *batch* and *index* pick another code; any other field is set as
    given."""
    req = kw.pop("request", None) or _signed_request(
        **{k: kw.pop(k) for k in _REQUEST_FIELDS if k in kw})
    r = req.request
    batch = kw.pop("batch", None) or BATCHES[r.seller]
    index = kw.pop("index", 0)
    fields: dict[str, Any] = {
        "work": r.work, "buyer": r.buyer, "seller": r.seller, "amount": batch.face,
        "currency": batch.currency, "method": r.method,
        "payment_ref": payment_ref(batch.codes[index]), "nonce": r.nonce, "ts": T0,
        "request": req, "issuance": batch.signed, "code": batch.codes[index],
        "proof": batch.proof(index),
    }
    fields.update(kw)
    return PaymentReceipt(**fields)


def _grant(**kw: Any) -> LicenseGrant:
    fields: dict[str, Any] = {
        "work": WORK, "buyer": BUYER.public_key, "seller": SELLER.public_key,
        "key_id": KEY_ID, "sealed_key": SEALED, "ts": T0,
    }
    fields.update(kw)
    return LicenseGrant(**fields)


# -- what a node runs on received bytes ----------------------------------------------------


def _check_purchase(envelope: bytes, **policy: Any) -> SignedPurchase:
    """Everything a seller runs on a POSTed purchase request."""
    signed = SignedPurchase.from_bytes(envelope)
    verify_purchase(signed, **{"seller": SELLER.public_key, "work": WORK, "terms": TERMS,
                               **policy})
    return signed


def _check_payment(envelope: bytes, **policy: Any) -> SignedPayment:
    """Everything a buyer runs on the seller's payment receipt."""
    signed = SignedPayment.from_bytes(envelope)
    verify_payment(signed, **{"work": WORK, "terms": TERMS, "buyer": BUYER.public_key,
                              **policy})
    return signed


def _check_grant(envelope: bytes, **policy: Any) -> SignedGrant:
    """Everything a buyer runs on a grant before opening it."""
    signed = SignedGrant.from_bytes(envelope)
    verify_grant(signed, **{"work": WORK, "buyer": BUYER.public_key, "sellers": TERMS.sellers,
                            "key_id": KEY_ID, **policy})
    return signed


@dataclass(frozen=True)
class Kind:
    """One signed format, and how to forge envelopes of it."""

    type: str
    domain: bytes
    base: dict[str, Any]
    signer: Identity
    parse: Callable[[bytes], Any]
    check: Callable[..., Any]
    max_size: int


KINDS: dict[str, Kind] = {
    "purchase": Kind("p2pdist/purchase-request/signed", PURCHASE_DOMAIN, _request().to_dict(),
                     BUYER, SignedPurchase.from_bytes, _check_purchase, MAX_PURCHASE_SIZE),
    "payment": Kind("p2pdist/payment-receipt/signed", PAYMENT_DOMAIN, _payment().to_dict(),
                    SELLER, SignedPayment.from_bytes, _check_payment, MAX_PAYMENT_SIZE),
    "grant": Kind("p2pdist/license-grant/signed", GRANT_DOMAIN, _grant().to_dict(), SELLER,
                  SignedGrant.from_bytes, _check_grant, MAX_GRANT_SIZE),
}
ALL_KINDS = list(KINDS)


def _envelope(kind: str, body: Any = None, sig: Any = None, **fields: Any) -> bytes:
    """Canonical envelope bytes; *body* defaults to the base object, *sig* to its signer's
    signature over *body*. A field given as None is left out."""
    k = KINDS[kind]
    if body is None:
        body = _canonical.encode(k.base)
    if sig is None:
        sig = k.signer.sign(domain=k.domain, message=body)
    d: dict[str, Any] = {"body": body, "sig": sig, "type": k.type, "v": 1}
    d.update(fields)
    return _canonical.encode({key: v for key, v in d.items() if v is not None})


def _edited(kind: str, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    d = dict(KINDS[kind].base)
    change(d)
    return d


def _resigned(kind: str, change: Callable[[dict[str, Any]], Any]) -> bytes:
    """The changed body, properly signed by the kind's signer."""
    return _envelope(kind, _canonical.encode(_edited(kind, change)))


def _replayed(kind: str, change: Callable[[dict[str, Any]], Any]) -> bytes:
    """The changed body, carrying the signature made for the original."""
    k = KINDS[kind]
    return _envelope(kind, _canonical.encode(_edited(kind, change)),
                     k.signer.sign(domain=k.domain, message=_canonical.encode(k.base)))


def _assert_opaque_refusal(exc: BaseException) -> None:
    """Refused as bytes that do not hold: never a policy reason, never a bare error."""
    assert isinstance(exc, InvalidSignature | MalformedObject), repr(exc)
    assert exc.exit_code == 3
    assert exc.message


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_base_objects_verify(kind: str) -> None:
    KINDS[kind].check(_envelope(kind))


def test_signed_objects_hold_the_bytes_they_were_signed_over() -> None:
    for obj, signed in ((_request(), SignedPurchase.sign(_request(), BUYER)),
                        (_payment(), SignedPayment.sign(_payment(), SELLER)),
                        (_grant(), SignedGrant.sign(_grant(), SELLER))):
        assert signed.body == _canonical.encode(obj.to_dict())
    assert _check_purchase(_envelope("purchase")).request == _request()
    assert _check_payment(_envelope("payment")).payment == _payment()
    assert _check_grant(_envelope("grant")).grant == _grant()


# -- golden vectors ------------------------------------------------------------------------


def _seed_identity(seed_hex: str) -> Identity:
    return _identity(bytes.fromhex(seed_hex), "from a vector")


def _seed_pk(seed_hex: str) -> bytes:
    return _seed_identity(seed_hex).public_key


def _vector_purchase(inp: dict[str, Any]) -> tuple[PurchaseRequest, Identity]:
    buyer = _seed_identity(inp["buyer_seed"])
    receipts = tuple(
        SignedReceipt.sign(TransferReceipt(
            work=bytes.fromhex(inp["work"]), uploader=_seed_pk(r["uploader_seed"]),
            downloader=buyer.public_key, seq=r["seq"], bytes=r["bytes"],
            ts=datetime.fromtimestamp(r["ts"], UTC)), buyer).to_bytes()
        for r in inp["receipts"])
    return PurchaseRequest(
        work=bytes.fromhex(inp["work"]), buyer=buyer.public_key,
        seller=_seed_pk(inp["seller_seed"]), method=inp["method"],
        sealed_payment=bytes.fromhex(inp["sealed_payment"]),
        nonce=bytes.fromhex(inp["nonce"]), ts=datetime.fromtimestamp(inp["ts"], UTC),
        receipts=receipts), buyer


def _vector_issuance(name: str) -> SignedIssuance:
    """An issuance vector's record, rebuilt from its input (test_issuance.py pins it)."""
    inp = ISSUANCES[name]["input"]
    return SignedIssuance.sign(Issuance(
        work=bytes.fromhex(inp["work"]), collector=_seed_pk(inp["collector_seed"]),
        count=ISSUANCES[name]["expected"]["count"], face=inp["face"],
        currency=inp["currency"], root=bytes.fromhex(ISSUANCES[name]["expected"]["root_hex"]),
        ts=datetime.fromtimestamp(inp["ts"], UTC)), _seed_identity(inp["collector_seed"]))


def _vector_payment(case: dict[str, Any]) -> tuple[PaymentReceipt, Identity]:
    """A payment vector's receipt, rebuilt: its request is the purchase vector it names
    (rebuilt from that vector's input), its code and proof are the expected ones."""
    inp, expected = case["input"], case["expected"]
    seller = _seed_identity(inp["seller_seed"])
    request, buyer = _vector_purchase(next(c for c in PURCHASES
                                           if c["name"] == inp["request"])["input"])
    req = SignedPurchase.sign(request, buyer)
    code = bytes.fromhex(expected["code_hex"])
    return PaymentReceipt(
        work=request.work, buyer=request.buyer, seller=seller.public_key,
        amount=inp["amount"], currency=inp["currency"], method=request.method,
        payment_ref=payment_ref(code) if inp["payment_ref"] == "voucher:from-the-code"
        else inp["payment_ref"], nonce=request.nonce,
        ts=datetime.fromtimestamp(inp["ts"], UTC), request=req,
        issuance=_vector_issuance(inp["issuance"]), code=code,
        proof=MerkleProof(expected["proof"]["index"],
                          tuple(bytes.fromhex(h) for h in expected["proof"]["path"]))), seller


def _vector_terms(p: PaymentReceipt) -> PaidTerms:
    """Terms under which a vector's sale verifies: its seller, its currency."""
    return _terms(p.seller, price=max(p.amount, 1), currency=p.currency)


def _vector_grant(inp: dict[str, Any]) -> tuple[LicenseGrant, Identity]:
    seller = _seed_identity(inp["seller_seed"])
    return LicenseGrant(
        work=bytes.fromhex(inp["work"]), buyer=_seed_pk(inp["buyer_seed"]),
        seller=seller.public_key, key_id=bytes.fromhex(inp["key_id"]),
        sealed_key=bytes.fromhex(inp["sealed_key"]),
        ts=datetime.fromtimestamp(inp["ts"], UTC)), seller


def _assert_reproduced(signed: Any, case: dict[str, Any]) -> None:
    assert signed.body.hex() == case["body_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    assert signed.sig.hex() == case["sig_hex"]


def _by_hand(signer: bytes, domain: bytes, case: dict[str, Any]) -> None:
    """The signature checked with PyNaCl directly, not through p2pdist's verifier."""
    nacl.signing.VerifyKey(signer).verify(domain + b"\0" + bytes.fromhex(case["body_hex"]),
                                          bytes.fromhex(case["sig_hex"]))


def _served(rows: list[dict[str, Any]]) -> tuple[Served, ...]:
    return tuple(Served(bytes.fromhex(r["pk_hex"]), r["bytes"]) for r in rows)


@pytest.mark.parametrize("case", PURCHASES, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_purchase_vector(case: dict[str, Any]) -> None:
    request, buyer = _vector_purchase(case["input"])
    _assert_reproduced(SignedPurchase.sign(request, buyer), case)
    assert key_to_text(request.buyer) == case["expected"]["buyer_pk_text"]
    assert key_to_text(request.seller) == case["expected"]["seller_pk_text"]


@pytest.mark.parametrize("case", PURCHASES, ids=lambda c: c["name"])
def test_stored_purchase_vector_parses_and_verifies(case: dict[str, Any]) -> None:
    inp, expected = case["input"], case["expected"]
    request, _ = _vector_purchase(inp)
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = SignedPurchase.from_bytes(envelope)
    verify_purchase(signed, seller=request.seller, work=request.work,
                    terms=_terms(request.seller))
    assert signed.request == request
    assert len(signed.request.receipts) == expected["receipts"]
    assert signed.body.hex() == case["body_hex"]
    assert signed.to_bytes() == envelope
    _by_hand(request.buyer, b"p2pdist/purchase/v2", case)
    # Only the seller it is addressed to reads the credential, and it is this request's.
    assert open_payment(signed, _seed_identity(inp["seller_seed"])) == inp["payment"]
    with pytest.raises(PaymentRejected) as e:
        open_payment(signed, MALLORY)
    assert e.value.reason == "sealed-to-another"
    assert inp["payment"].encode() not in envelope
    served = served_by_from_receipts(signed.request.receipts, work=request.work,
                                     buyer=request.buyer, size=inp["size"])
    assert served == _served(expected["served_by"])


def test_purchase_vector_scaled_by_largest_remainder_by_hand() -> None:
    case = next(c for c in PURCHASES if c["name"].startswith("receipts-over-size"))
    # 50 + 30 + 40 bytes of a 100-byte work: 41 2/3, 25 and 33 1/3; the left byte to 41 2/3.
    got = {s["bytes"] for s in case["expected"]["served_by"]}
    assert got == {42, 25, 33}


@pytest.mark.parametrize("case", PAYMENTS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_payment_vector(case: dict[str, Any]) -> None:
    payment, seller = _vector_payment(case)
    _assert_reproduced(SignedPayment.sign(payment, seller), case)
    expected = case["expected"]
    assert key_to_text(payment.seller) == expected["seller_pk_text"]
    assert key_to_text(payment.buyer) == expected["buyer_pk_text"]
    # The embedded objects are the pinned ones, byte for byte.
    purchase = next(c for c in PURCHASES if c["name"] == case["input"]["request"])
    assert payment.request.to_bytes().hex() == purchase["envelope_hex"]
    assert payment.issuance.to_bytes().hex() == \
        ISSUANCES[case["input"]["issuance"]]["envelope_hex"]


@pytest.mark.parametrize("case", PAYMENTS, ids=lambda c: c["name"])
def test_stored_payment_vector_parses_and_verifies(case: dict[str, Any]) -> None:
    expected = case["expected"]
    payment, _ = _vector_payment(case)
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = SignedPayment.from_bytes(envelope)
    verify_payment(signed, work=payment.work, buyer=payment.buyer,
                   terms=_vector_terms(payment))
    assert check_issued(signed.payment) is None
    assert signed.payment == payment
    assert signed.payment.payment_ref == expected["payment_ref"]
    assert signed.payment.request_id.hex() == expected["request_id_hex"]
    assert signed.payment.issuance.id.hex() == expected["issuance_id_hex"]
    assert signed.payment.proof.root_of(signed.payment.code,
                                        signed.payment.issuance.issuance.count) \
        == signed.payment.issuance.issuance.root
    assert signed.to_bytes() == envelope
    _by_hand(payment.seller, b"p2pdist/payment/v2", case)
    # The three signatures, each checked with PyNaCl directly.
    nacl.signing.VerifyKey(payment.buyer).verify(
        b"p2pdist/purchase/v2\0" + signed.payment.request.body, signed.payment.request.sig)
    nacl.signing.VerifyKey(payment.issuance.issuance.collector).verify(
        b"p2pdist/issuance/v1\0" + signed.payment.issuance.body,
        signed.payment.issuance.sig)


def test_payment_vectors_pin_a_gift_and_the_longest_proof() -> None:
    by_name = {c["name"]: _vector_payment(c)[0] for c in PAYMENTS}
    assert by_name["gift-code-one-receipt"].amount == 0
    assert by_name["gift-code-one-receipt"].proof.path == ()
    assert len(by_name["largest-envelope"].proof.path) == MAX_PROOF
    assert len(by_name["voucher-eur-no-receipts"].proof.path) == 1  # index 4 of 5: carried


@pytest.mark.parametrize("case", GRANTS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_grant_vector(case: dict[str, Any]) -> None:
    grant, seller = _vector_grant(case["input"])
    _assert_reproduced(SignedGrant.sign(grant, seller), case)
    assert key_to_text(grant.buyer) == case["expected"]["buyer_pk_text"]
    assert key_to_text(grant.seller) == case["expected"]["seller_pk_text"]


@pytest.mark.parametrize("case", GRANTS, ids=lambda c: c["name"])
def test_stored_grant_vector_verifies_and_opens_to_the_content_key(
    case: dict[str, Any],
) -> None:
    inp = case["input"]
    grant, _ = _vector_grant(inp)
    buyer = _seed_identity(inp["buyer_seed"])
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = SignedGrant.from_bytes(envelope)
    verify_grant(signed, work=grant.work, buyer=buyer.public_key, sellers=(grant.seller,),
                 key_id=KEY_ID)
    assert signed.grant == grant
    assert signed.to_bytes() == envelope
    _by_hand(grant.seller, b"p2pdist/grant/v1", case)
    assert open_grant(signed, buyer) == bytes.fromhex(inp["content_key"])
    assert grant.key_id == KEY_ID


def test_vector_envelopes_sit_under_their_size_bounds() -> None:
    """The largest vectors are the largest envelopes the constructors allow (with real
    receipts), so each bound has headroom over everything that can be signed."""
    sizes = {c["name"]: len(c["envelope_hex"]) // 2 for c in PURCHASES + PAYMENTS + GRANTS}
    assert sizes["largest-valid"] == 24_803 < MAX_PURCHASE_SIZE
    assert sizes["largest-envelope"] == 26_437 < MAX_PAYMENT_SIZE
    assert sizes["grant-to-second-buyer-at-max-ts"] == 448 < MAX_GRANT_SIZE
    assert sizes["voucher-no-receipts"] == 665
    assert sizes["voucher-eur-no-receipts"] == 1_570
    assert sizes["grant-to-buyer"] == 446


def test_largest_constructible_payment_fits_the_bound() -> None:
    # The largest request the constructor allows, answered with a proof of MAX_PROOF
    # hashes and every text at its longest: the buyer must still be able to read it.
    request = _request(method="m" * 32, sealed_payment=b"s" * MAX_SEALED_PAYMENT,
                       ts=datetime.fromtimestamp(MAX_TS, UTC),
                       receipts=(b"x" * MAX_RECEIPT_SIZE,) * MAX_SERVED_BY)
    payment = _payment(request=SignedPurchase.sign(request, BUYER), amount=10**15,
                       payment_ref="~" * 128, ts=datetime.fromtimestamp(MAX_TS, UTC),
                       proof=MerkleProof(1 << 20, (b"\xff" * 32,) * MAX_PROOF))
    envelope = SignedPayment.sign(payment, SELLER).to_bytes()
    assert len(envelope) <= MAX_PAYMENT_SIZE
    assert SignedPayment.from_bytes(envelope).payment == payment


def test_largest_constructible_request_fits_the_bound() -> None:
    # Receipts are bounded as bytes (any 512 bytes, not only real receipts): the request
    # that carries 64 of them and every text at its longest must still be readable.
    request = _request(method="m" * 32, sealed_payment=b"s" * MAX_SEALED_PAYMENT,
                       ts=datetime.fromtimestamp(MAX_TS, UTC),
                       receipts=(b"x" * MAX_RECEIPT_SIZE,) * MAX_SERVED_BY)
    envelope = SignedPurchase.sign(request, BUYER).to_bytes()
    assert len(envelope) <= MAX_PURCHASE_SIZE
    assert SignedPurchase.from_bytes(envelope).request == request


_SUBSTITUTES = (0x00, 0x30, 0x3A, 0x65, 0x69, 0xFF)  # NUL, '0', ':', 'e', 'i', 0xff


def _smallest(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return min(cases, key=lambda c: len(c["envelope_hex"]))


@pytest.mark.parametrize("kind,case", [
    pytest.param("purchase", _smallest(PURCHASES), id="purchase"),
    pytest.param("payment", _smallest(PAYMENTS), id="payment"),
    pytest.param("grant", _smallest(GRANTS), id="grant"),
])
def test_any_substituted_byte_in_vector_envelope_is_refused(
    kind: str, case: dict[str, Any],
) -> None:
    inp = case["input"]
    if kind == "payment":
        p = _vector_payment(case)[0]
        seller, buyer, work = p.seller, p.buyer, p.work
    else:
        seller, buyer, work = _seed_pk(inp["seller_seed"]), _seed_pk(inp["buyer_seed"]), \
            bytes.fromhex(inp["work"])

    def check(data: bytes) -> None:
        if kind == "purchase":
            verify_purchase(SignedPurchase.from_bytes(data), seller=seller, work=work,
                            terms=_terms(seller))
        elif kind == "payment":
            verify_payment(SignedPayment.from_bytes(data), work=work, buyer=buyer,
                           terms=_terms(seller, price=max(inp["amount"], 1),
                                        currency=inp["currency"]))
        else:
            verify_grant(SignedGrant.from_bytes(data), work=work, buyer=buyer,
                         sellers=(seller,), key_id=KEY_ID)

    envelope = bytes.fromhex(case["envelope_hex"])
    check(envelope)
    leaks = []
    for i in range(len(envelope)):
        for b in {*_SUBSTITUTES, envelope[i] ^ 0x01, envelope[i] ^ 0x80} - {envelope[i]}:
            bad = envelope[:i] + bytes([b]) + envelope[i + 1:]
            try:
                check(bad)
            except (InvalidSignature, MalformedObject):
                continue
            except Exception as e:  # collect every leak, not just the first
                leaks.append(f"byte {i} -> {b:#04x}: {type(e).__name__}: {e}")
            else:
                leaks.append(f"byte {i} -> {b:#04x}: verified")
    assert not leaks, "\n".join(leaks[:10])


# -- properties ----------------------------------------------------------------------------

_ids = st.sampled_from([BUYER, SELLER, BUYER2, SELLER2, MALLORY])
_key32 = st.binary(min_size=32, max_size=32)
_times = st.integers(0, MAX_TS).map(lambda t: datetime.fromtimestamp(t, UTC))
_methods = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32)
# Every printable ASCII character, the space included: what the constructor accepts must
# parse back (outer spaces are refused by both).
_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1,
                 max_size=128)
_currencies = st.one_of(st.sampled_from(["EUR", "JPY", "BHD", "USD"]),
                        st.text("ABZ a1-", min_size=3, max_size=3))


_SELLERS = {i.public_key: i for i in (BUYER, SELLER, BUYER2, SELLER2, MALLORY)}


@st.composite
def _requests(draw: st.DrawFn) -> tuple[PurchaseRequest, Identity]:
    """A request and its buyer; its seller is one of _SELLERS (a real key to seal to),
    its credential is the seller's to open (see test_purchase_request_round_trips)."""
    buyer = draw(_ids)
    try:
        request = PurchaseRequest.seal(
            work=draw(_key32), buyer=buyer.public_key, seller=draw(_ids).public_key,
            method=draw(_methods), payment=draw(_ascii),
            nonce=draw(st.binary(min_size=16, max_size=16)), ts=draw(_times),
            receipts=tuple(draw(st.lists(st.binary(max_size=MAX_RECEIPT_SIZE), max_size=4))))
    except ValueError:
        reject()
    return request, buyer


_money_currencies = st.sampled_from(["EUR", "JPY", "BHD", "USD", "CLF"])


@st.composite
def _payments(draw: st.DrawFn) -> tuple[PaymentReceipt, Identity]:
    """A real v2 sale: a batch its seller issued, a request its buyer signed, one of the
    batch's codes spent at its face value (or, one time in four, at another amount)."""
    seller, buyer = draw(_ids), draw(_ids)
    work = draw(_key32)
    batch = Batch(seller, work, face=draw(st.one_of(st.integers(0, 2_000),
                                                    st.integers(0, 10**15))),
                  currency=draw(_money_currencies), count=draw(st.integers(1, 40)),
                  ts=draw(_times), seed=draw(st.binary(min_size=1, max_size=8)))
    try:
        req = SignedPurchase.sign(PurchaseRequest.seal(
            work=work, buyer=buyer.public_key, seller=seller.public_key,
            method=draw(_methods), payment=draw(_ascii),
            nonce=draw(st.binary(min_size=16, max_size=16)), ts=draw(_times),
            receipts=tuple(draw(st.lists(st.binary(max_size=MAX_RECEIPT_SIZE),
                                         max_size=2)))), buyer)
    except ValueError:
        reject()
    index = draw(st.integers(0, batch.count - 1))
    amount = draw(st.one_of(st.just(batch.face), st.just(batch.face), st.just(batch.face),
                            st.integers(0, 10**15)))
    try:
        payment = sign_payment(seller, req, batch.signed, batch.codes[index],
                               batch.proof(index), amount=amount,
                               ts=draw(_times)).payment
        payment = PaymentReceipt(**{**_kwargs(payment), "payment_ref": draw(_ascii)})
    except ValueError:
        reject()
    return payment, seller


@st.composite
def _grants(draw: st.DrawFn) -> tuple[LicenseGrant, Identity]:
    seller = draw(_ids)
    grant = LicenseGrant(
        work=draw(_key32), buyer=draw(_ids).public_key, seller=seller.public_key,
        key_id=draw(_key32), sealed_key=draw(st.binary(min_size=80, max_size=80)),
        ts=draw(_times))
    return grant, seller


@PROPERTY
@given(_requests())
def test_purchase_request_round_trips(rs: tuple[PurchaseRequest, Identity]) -> None:
    request, buyer = rs
    signed = SignedPurchase.sign(request, buyer)
    again = SignedPurchase.from_bytes(signed.to_bytes())
    assert again == signed
    assert again.request == request
    assert PurchaseRequest.from_dict(_canonical.decode(signed.body, max_size=10**5)) == request
    verify_purchase(again, seller=request.seller, work=request.work,
                    terms=_terms(request.seller))
    code = open_payment(again, _SELLERS[request.seller])
    assert 0 < len(code) <= 128
    other = next(i for pk, i in _SELLERS.items() if pk != request.seller)
    with pytest.raises(PaymentRejected):
        open_payment(again, other)


@PROPERTY
@given(_payments())
def test_payment_receipt_round_trips(ps: tuple[PaymentReceipt, Identity]) -> None:
    payment, seller = ps
    signed = SignedPayment.sign(payment, seller)
    envelope = signed.to_bytes()
    assert len(envelope) <= MAX_PAYMENT_SIZE
    again = SignedPayment.from_bytes(envelope)
    assert again == signed
    assert again.payment == payment
    assert PaymentReceipt.from_dict(_canonical.decode(signed.body, max_size=10**5)) == payment
    assert again.payment.request_id == hashlib.sha256(payment.request.body).digest()
    # Every such sale verifies, as far as its amount is its code's face value.
    terms = _terms(payment.seller, price=max(payment.amount, 1), currency=payment.currency)
    face = payment.issuance.issuance.face
    if payment.amount == face:
        assert check_issued(again.payment) is None
        verify_payment(again, work=payment.work, terms=terms, buyer=payment.buyer)
    else:
        with pytest.raises(PaymentRejected) as e:
            verify_payment(again, work=payment.work, terms=terms, buyer=payment.buyer)
        assert e.value.reason == "wrong-price"


@PROPERTY
@given(_grants())
def test_license_grant_round_trips(gs: tuple[LicenseGrant, Identity]) -> None:
    grant, seller = gs
    signed = SignedGrant.sign(grant, seller)
    again = SignedGrant.from_bytes(signed.to_bytes())
    assert again == signed
    assert again.grant == grant
    verify_grant(again, work=grant.work, buyer=grant.buyer, sellers=(grant.seller,),
                 key_id=grant.key_id)


def _flip(data: bytes, draw: st.DataObject) -> bytes:
    out = bytearray(data)
    i = draw.draw(st.integers(0, len(out) - 1), label="position")
    out[i] = draw.draw(st.integers(0, 255).filter(lambda b: b != out[i]), label="byte")
    return bytes(out)


@PROPERTY
@given(_requests(), st.data())
def test_any_single_byte_change_in_a_purchase_envelope_is_refused(
    rs: tuple[PurchaseRequest, Identity], data: st.DataObject,
) -> None:
    request, buyer = rs
    bad = _flip(SignedPurchase.sign(request, buyer).to_bytes(), data)
    with pytest.raises(VerificationError) as e:
        verify_purchase(SignedPurchase.from_bytes(bad), seller=request.seller,
                        work=request.work, terms=_terms(request.seller))
    _assert_opaque_refusal(e.value)


@PROPERTY
@given(_payments().filter(lambda ps: ps[0].amount == ps[0].issuance.issuance.face),
       st.data())
def test_any_single_byte_change_in_a_payment_envelope_is_refused(
    ps: tuple[PaymentReceipt, Identity], data: st.DataObject,
) -> None:
    payment, seller = ps
    terms = _terms(payment.seller, price=max(payment.amount, 1), currency=payment.currency)
    envelope = SignedPayment.sign(payment, seller).to_bytes()
    policy: dict[str, Any] = {"work": payment.work, "terms": terms, "buyer": payment.buyer}
    verify_payment(SignedPayment.from_bytes(envelope), **policy)
    with pytest.raises(VerificationError) as e:
        verify_payment(SignedPayment.from_bytes(_flip(envelope, data)), **policy)
    _assert_opaque_refusal(e.value)


@PROPERTY
@given(_grants(), st.data())
def test_any_single_byte_change_in_a_grant_envelope_is_refused(
    gs: tuple[LicenseGrant, Identity], data: st.DataObject,
) -> None:
    grant, seller = gs
    bad = _flip(SignedGrant.sign(grant, seller).to_bytes(), data)
    with pytest.raises(VerificationError) as e:
        verify_grant(SignedGrant.from_bytes(bad), work=grant.work, buyer=grant.buyer,
                     sellers=(grant.seller,), key_id=grant.key_id)
    _assert_opaque_refusal(e.value)


# served_by: receipts are signed once per (uploader, seq, bytes) and reused across examples.
_RECEIPT_CACHE: dict[tuple[int, int, int], bytes] = {}


def _cached_receipt(i: int, seq: int, n: int) -> bytes:
    key = (i, seq, n)
    if key not in _RECEIPT_CACHE:
        _RECEIPT_CACHE[key] = _transfer(UPLOADERS[i].public_key, seq, n)
    return _RECEIPT_CACHE[key]


def _largest_remainder(receipts: list[tuple[int, int, int]], size: int) -> tuple[Served, ...]:
    """The rule, restated with exact fractions: latest (first highest seq) per uploader,
    each capped at the size; over the size, floors plus one byte each to the largest
    remainders (ties to the lower key)."""
    latest: dict[bytes, tuple[int, int]] = {}
    for i, seq, n in receipts:
        pk = UPLOADERS[i].public_key
        if seq > latest.get(pk, (0, 0))[0]:
            latest[pk] = (seq, min(n, size))
    rows = {pk: n for pk, (_, n) in latest.items() if n}
    total = sum(rows.values())
    if total > size:
        exact = {pk: Fraction(n * size, total) for pk, n in rows.items()}
        rows = {pk: int(x) for pk, x in exact.items()}
        ranked = sorted(exact, key=lambda pk: (-(exact[pk] - int(exact[pk])), pk))
        for pk in ranked[:size - sum(rows.values())]:
            rows[pk] += 1
    return tuple(Served(pk, n) for pk, n in sorted(rows.items()) if n)


_counts = st.one_of(st.integers(0, 3_000), st.integers(0, MAX_COUNT))


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, len(UPLOADERS) - 1), st.integers(1, 6), _counts),
                max_size=12),
       st.one_of(st.integers(0, 3_000), st.integers(0, MAX_COUNT)))
def test_served_by_is_capped_exactly_at_the_size(
    receipts: list[tuple[int, int, int]], size: int,
) -> None:
    raw = [_cached_receipt(*r) for r in receipts]
    got = served_by_from_receipts(raw, work=WORK, buyer=BUYER.public_key, size=size)
    assert got == _largest_remainder(receipts, size)
    assert got == served_by_from_receipts(raw, work=WORK, buyer=BUYER.public_key, size=size)
    latest: dict[bytes, tuple[int, int]] = {}
    for i, seq, n in receipts:
        pk = UPLOADERS[i].public_key
        if seq > latest.get(pk, (0, 0))[0]:
            latest[pk] = (seq, n)
    total = sum(min(n, size) for _, n in latest.values())
    assert sum(s.bytes for s in got) == min(total, size)
    for s in got:
        assert 0 < s.bytes <= min(latest[s.pk][1], size)
    assert [s.pk for s in got] == sorted({s.pk for s in got})
    # The buyer cannot change the split by reordering distinct receipts.
    if len({(i, seq) for i, seq, _ in receipts}) == len(receipts):
        assert served_by_from_receipts(raw[::-1], work=WORK, buyer=BUYER.public_key,
                                       size=size) == got


# The constructor and the parser must draw the same line: a signer must never build an
# object every verifier refuses, and a verifier must not accept what cannot be built.
# Values here crowd the edges (outer spaces, 128/129 characters, 2**63, unsorted keys).
_edgy_text = st.one_of(
    st.text(st.sampled_from(" \t~aZ09-:\u00e9"), max_size=6),
    st.integers(126, 130).map(lambda n: "x" * n),
    _ascii,
)
_edgy_key = st.one_of(st.sampled_from([U1, U2, U3, BUYER.public_key]),
                      st.binary(min_size=31, max_size=33))
_edgy_ts = st.integers(-1, MAX_TS).map(lambda t: datetime.fromtimestamp(t, UTC))
_AGREE = settings(PROPERTY, max_examples=300)


def _parses(kind: str, cls: Any, kw: dict[str, Any]) -> Any:
    """The object the parser reads from *kw* put on the wire, or None if it refuses."""
    body = _canonical.encode(cls.to_dict(SimpleNamespace(**kw)))  # the wire form of *kw*
    try:
        return KINDS[kind].parse(_envelope(kind, body, bytes(64)))
    except MalformedObject:
        return None


def _builds(cls: Any, kw: dict[str, Any]) -> Any:
    try:
        return cls(**kw)
    except ValueError:
        return None


def _kwargs(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@st.composite
def _edged(draw: st.DrawFn, base: dict[str, Any], edges: dict[str, Any]) -> dict[str, Any]:
    """*base* with one or two of its fields drawn from their edge strategies."""
    names = draw(st.lists(st.sampled_from(sorted(edges)), min_size=1, max_size=2,
                          unique=True))
    return {**base, **{n: draw(edges[n]) for n in names}}


_edgy_methods = st.one_of(st.text(st.sampled_from("az09-A _"), max_size=4),
                          st.integers(31, 33).map(lambda n: "m" * n))
_edgy_currencies = st.text(st.sampled_from("AEZaz1 -"), min_size=2, max_size=4)


@_AGREE
@given(_edged(_kwargs(_request()), {
    "work": _edgy_key, "buyer": _edgy_key, "seller": _edgy_key, "method": _edgy_methods,
    "sealed_payment": st.one_of(st.integers(47, 50), st.integers(511, 513)).map(
        lambda n: b"s" * n),
    "nonce": st.binary(min_size=15, max_size=17), "ts": _edgy_ts,
    "receipts": st.one_of(
        st.lists(st.one_of(st.binary(max_size=4),
                           st.integers(511, 513).map(lambda n: b"r" * n)), max_size=3)
        .map(tuple),
        st.integers(63, 65).map(lambda n: (b"",) * n)),
}))
def test_purchase_constructor_and_parser_agree(kw: dict[str, Any]) -> None:
    built, parsed = _builds(PurchaseRequest, kw), _parses("purchase", PurchaseRequest, kw)
    assert (built is None) == (parsed is None), (kw, built, parsed)
    assert parsed is None or parsed.request == built


_edgy_index = st.one_of(st.integers(-1, 8), st.integers((1 << 20) - 1, (1 << 20) + 1))
_edgy_path = st.one_of(
    st.lists(st.sampled_from([b"\x01" * 32, b"\x02" * 31, b"\x03" * 33, b""]), max_size=3)
    .map(tuple),
    st.integers(MAX_PROOF - 1, MAX_PROOF + 1).map(lambda n: (b"\x04" * 32,) * n))


@_AGREE
@given(_edged({**_kwargs(_payment()), "index": 0, "path": BATCH.proof(0).path}, {
    "work": _edgy_key, "buyer": _edgy_key, "seller": _edgy_key,
    "amount": st.one_of(st.integers(-1, 2), st.integers(10**15 - 1, 10**15 + 1)),
    "currency": _edgy_currencies, "method": _edgy_methods, "payment_ref": _edgy_text,
    "nonce": st.binary(min_size=15, max_size=17), "ts": _edgy_ts, "code": _edgy_key,
    "index": _edgy_index, "path": _edgy_path,
}))
def test_payment_constructor_and_parser_agree(kw: dict[str, Any]) -> None:
    proof = MerkleProof(kw.pop("index"), kw.pop("path"))
    built, parsed = _builds(PaymentReceipt, {**kw, "proof": proof}), \
        _parses("payment", PaymentReceipt, {**kw, "proof": proof})
    assert (built is None) == (parsed is None), (kw, proof, built, parsed)
    assert parsed is None or parsed.payment == built


@_AGREE
@given(_edged(_kwargs(_grant()), {
    "work": _edgy_key, "buyer": _edgy_key, "seller": _edgy_key, "key_id": _edgy_key,
    "sealed_key": st.binary(min_size=79, max_size=81), "ts": _edgy_ts,
}))
def test_grant_constructor_and_parser_agree(kw: dict[str, Any]) -> None:
    built, parsed = _builds(LicenseGrant, kw), _parses("grant", LicenseGrant, kw)
    assert (built is None) == (parsed is None), (kw, built, parsed)
    assert parsed is None or parsed.grant == built


# -- named attacks: fields changed after signing ------------------------------------------


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d[key] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        del d[key]
    return change


def _flip_field(key: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        v = d[key]
        d[key] = v[:-1] + bytes([v[-1] ^ 1])
    return change


def _set_proof(index: int | None = None, path: list[bytes] | None = None
               ) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d["proof"] = {"index": d["proof"]["index"] if index is None else index,
                      "path": list(d["proof"]["path"]) if path is None else path}
    return change


def _flip_path(i: int) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        path = list(d["proof"]["path"])
        path[i] = path[i][:-1] + bytes([path[i][-1] ^ 1])
        d["proof"] = {"index": d["proof"]["index"], "path": path}
    return change


def _inner_replayed(signed: SignedPurchase | SignedIssuance,
                    change: Callable[[dict[str, Any]], None]) -> bytes:
    """*signed*'s body changed (to other valid values) under the signature made for the
    original: an embedded object forged by whoever embeds it."""
    d = _canonical.decode(signed.body, max_size=MAX_PAYMENT_SIZE)
    change(d)
    kind = ("p2pdist/purchase-request/signed" if isinstance(signed, SignedPurchase)
            else "p2pdist/voucher-issuance/signed")
    return _canonical.encode({"body": _canonical.encode(d), "sig": signed.sig,
                              "type": kind, "v": 1})


# Each field changed to another *valid* value while the signature over the original is
# kept: the parse succeeds, so only the signature check can catch it.
TAMPERED = [
    *(pytest.param("purchase", c, id=f"purchase-{name}") for name, c in (
        ("work-moved-to-another-work", _set("work", OTHER_WORK)),
        ("buyer-swapped-for-mallory", _set("buyer", MALLORY.public_key)),
        ("seller-readdressed", _set("seller", SELLER2.public_key)),
        ("method", _set("method", b"card")),
        ("sealed-payment-swapped", _set("sealed_payment", seal_payment(
            "AAAA-BBBB-CCCC-DDDD-E", work=WORK, buyer=BUYER.public_key,
            seller=SELLER.public_key, nonce=bytes(range(16))))),
        ("sealed-payment-byte", _flip_field("sealed_payment")),
        ("nonce-refreshed-for-a-replay", _flip_field("nonce")),
        ("ts-moved-one-second", _set("ts", int(T0.timestamp()) + 1)),
        ("receipt-added", _set("receipts", [R1, R2, _transfer(U3, 1, SIZE)])),
        ("receipt-dropped", _set("receipts", [R1])),
        ("receipts-reordered", _set("receipts", [R2, R1])),
        ("receipt-swapped-for-a-bigger-one", _set("receipts", [R1, _transfer(U2, 2, SIZE)])),
    )),
    # The receipt's own fields and its embedded objects, each swapped for another one
    # that parses (and is consistent with the rest) under the seller's old signature.
    *(pytest.param("payment", c, id=f"payment-{name}") for name, c in (
        ("amount-lowered-by-one", _set("amount", 499)),
        ("amount-booked-as-a-gift", _set("amount", 0)),
        ("currency", _set("currency", b"USD")),
        ("payment-ref", _set("payment_ref", b"voucher:XXXX")),
        ("ts-moved-one-second", _set("ts", int(T0.timestamp()) + 1)),
        ("request-swapped-for-another-of-the-buyers", _set(
            "request", SignedPurchase.sign(_request(ts=T0 + timedelta(seconds=1)),
                                           BUYER).to_bytes())),
        ("request-receipts-dropped", _set(
            "request", SignedPurchase.sign(_request(receipts=()), BUYER).to_bytes())),
        ("issuance-swapped-for-another-batch", _set(
            "issuance", Batch(SELLER, WORK, seed=b"another batch").signed.to_bytes())),
        ("issuance-swapped-for-a-gift-batch", _set(
            "issuance", Batch(SELLER, WORK, face=0, seed=b"seller's batch").signed
            .to_bytes())),
        ("code-swapped-for-another-of-the-batch", _set("code", BATCH.codes[1])),
        ("code-byte", _flip_field("code")),
        ("proof-index", _set_proof(index=1)),
        ("proof-path-hash-byte", _flip_path(0)),
        ("proof-path-hash-dropped", _set_proof(path=list(BATCH.proof(0).path[:-1]))),
        ("proof-path-reordered", _set_proof(path=list(BATCH.proof(0).path[::-1]))),
    )),
    *(pytest.param("grant", c, id=f"grant-{name}") for name, c in (
        ("work-moved-to-another-work", _set("work", OTHER_WORK)),
        ("buyer-swapped-for-a-thief", _set("buyer", BUYER2.public_key)),
        ("seller-swapped", _set("seller", SELLER2.public_key)),
        ("key-id", _flip_field("key_id")),
        ("sealed-key-byte", _flip_field("sealed_key")),
        ("sealed-key-resealed-to-a-thief", _set("sealed_key", SEALED_TO_BUYER2)),
        ("ts-moved-one-second", _set("ts", int(T0.timestamp()) + 1)),
    )),
]


@pytest.mark.parametrize("kind,change", TAMPERED)
def test_field_changed_after_signing_is_refused(
    kind: str, change: Callable[[dict[str, Any]], None],
) -> None:
    envelope = _replayed(kind, change)
    KINDS[kind].parse(envelope)  # still well-formed: the signature must catch it
    with pytest.raises(InvalidSignature) as e:
        KINDS[kind].check(envelope)
    _assert_opaque_refusal(e.value)


def _signed_by(kind: str, identity: Identity, domain: bytes | None = None,
               message: bytes | None = None) -> bytes:
    k = KINDS[kind]
    body = _canonical.encode(k.base)
    return _envelope(kind, body, identity.sign(domain=domain or k.domain,
                                               message=message or body))


# Signed by someone other than the key the body names, or over other bytes or domains.
WRONG_SIGNER = [
    *(pytest.param(kind, (lambda kind=kind, who=who: _signed_by(kind, who)),
                   id=f"{kind}-signed-by-{who.name.replace(' ', '-')}")
      for kind, whos in (("purchase", (MALLORY, SELLER, BUYER2)),
                         ("payment", (MALLORY, SELLER2, BUYER)),
                         ("grant", (MALLORY, SELLER2, BUYER)))
      for who in whos),
    # One key, one domain per kind: a signature never moves between kinds of objects.
    *(pytest.param(kind, (lambda kind=kind, d=d: _signed_by(kind, KINDS[kind].signer, d)),
                   id=f"{kind}-signed-in-domain-{d.decode()}")
      for kind in ALL_KINDS
      for d in (PURCHASE_DOMAIN, PAYMENT_DOMAIN, GRANT_DOMAIN, RECEIPT_DOMAIN,
                LICENSE_DOMAIN, b"p2pdist/purchase/v1", IDENTITY_DOMAIN, ISSUANCE_DOMAIN,
                b"p2pdist/payment/v1")
      if d != KINDS[kind].domain),
    *(pytest.param(kind, (lambda kind=kind: _envelope(
        kind, sig=KINDS[kind].signer.signing_key.sign(_canonical.encode(KINDS[kind].base))
        .signature)), id=f"{kind}-signature-without-domain")
      for kind in ALL_KINDS),
    *(pytest.param(kind, (lambda kind=kind: _envelope(kind, sig=bytes(64))),
                   id=f"{kind}-zero-signature") for kind in ALL_KINDS),
    *(pytest.param(kind, (lambda kind=kind: _signed_by(kind, KINDS[kind].signer,
                                                       message=_envelope(kind))),
                   id=f"{kind}-signature-over-the-envelope") for kind in ALL_KINDS),
]


@pytest.mark.parametrize("kind,make", WRONG_SIGNER)
def test_object_not_signed_by_the_key_it_names_is_refused(
    kind: str, make: Callable[[], bytes],
) -> None:
    with pytest.raises(InvalidSignature) as e:
        KINDS[kind].check(make())
    _assert_opaque_refusal(e.value)


def test_signature_failure_does_not_say_why() -> None:
    envelopes = [(p.values[0], p.values[1]()) for p in WRONG_SIGNER]
    envelopes += [(p.values[0], _replayed(p.values[0], p.values[1])) for p in TAMPERED]
    messages = set()
    for kind, envelope in envelopes:
        with pytest.raises(InvalidSignature) as e:
            KINDS[kind].check(envelope)
        messages.add((str(e.value), e.value.remedy))
    assert len(messages) == 1


def test_signature_is_checked_before_any_policy() -> None:
    # Forgeries that break every policy rule too learn nothing but "bad signature".
    forged = _signed_by("payment", MALLORY)
    with pytest.raises(InvalidSignature):
        _check_payment(forged, work=OTHER_WORK, buyer=MALLORY.public_key,
                       terms=_terms(SELLER2.public_key, price=1, currency="JPY"))
    with pytest.raises(InvalidSignature):
        _check_purchase(_signed_by("purchase", MALLORY), seller=MALLORY.public_key,
                        work=OTHER_WORK, terms=_terms(SELLER2.public_key))
    with pytest.raises(InvalidSignature):
        _check_grant(_signed_by("grant", MALLORY), work=OTHER_WORK, buyer=MALLORY.public_key,
                     sellers=(SELLER2.public_key,), key_id=bytes(32))


@pytest.mark.parametrize("sign,obj,who", [
    pytest.param(SignedPurchase.sign, _request(), SELLER, id="purchase-signed-by-seller"),
    pytest.param(SignedPurchase.sign, _request(), MALLORY, id="purchase-signed-by-mallory"),
    pytest.param(SignedPayment.sign, _payment(), BUYER, id="payment-signed-by-buyer"),
    pytest.param(SignedPayment.sign, _payment(), SELLER2, id="payment-by-another-seller"),
    pytest.param(SignedGrant.sign, _grant(), BUYER, id="grant-signed-by-buyer"),
    pytest.param(SignedGrant.sign, _grant(), MALLORY, id="grant-signed-by-mallory"),
])
def test_sign_refuses_an_identity_the_object_does_not_name(
    sign: Callable[[Any, Identity], Any], obj: Any, who: Identity,
) -> None:
    with pytest.raises(ValueError, match="only the"):
        sign(obj, who)


# -- named attacks: policy -----------------------------------------------------------------


def _rejected(reason: str, call: Callable[[], Any]) -> PaymentRejected:
    with pytest.raises(PaymentRejected) as e:
        call()
    assert e.value.reason == reason
    assert e.value.exit_code == 3
    assert e.value.message
    return e.value


def _pay(**kw: Any) -> bytes:
    """_payment(**kw) signed by the seller it names."""
    p = _payment(**kw)
    return SignedPayment.sign(p, IDENTITIES[p.seller]).to_bytes()


def _buy(**kw: Any) -> bytes:
    return SignedPurchase.sign(_request(**kw), BUYER).to_bytes()


def test_payment_receipt_from_the_other_named_seller_verifies() -> None:
    _check_payment(_pay(seller=SELLER2.public_key))


def test_a_gift_code_books_zero_and_verifies() -> None:
    gift = Batch(SELLER, WORK, face=0, seed=b"press codes")
    signed = _check_payment(_pay(batch=gift))
    assert signed.payment.amount == 0
    assert check_issued(signed.payment) is None


def test_payment_receipt_signed_by_a_non_seller_is_rejected() -> None:
    # Mallory signs a receipt naming herself, for a code of her own batch: good
    # signatures all round, but the terms never named her.
    e = _rejected("not-a-seller", lambda: _check_payment(_pay(seller=MALLORY.public_key)))
    assert "not a seller" in e.message


def test_payment_receipt_replayed_for_another_work_is_rejected() -> None:
    _rejected("wrong-work", lambda: _check_payment(_pay(), work=OTHER_WORK))
    _rejected("wrong-work", lambda: _check_payment(_pay(work=OTHER_WORK)))


def test_payment_receipt_replayed_by_another_buyer_is_rejected() -> None:
    # BUYER2 copies BUYER's receipt as its own proof of payment.
    _rejected("other-buyer", lambda: _check_payment(_pay(), buyer=BUYER2.public_key))
    _check_payment(_pay(), buyer=None)  # a third party checking it names no buyer


@pytest.mark.parametrize("amount,currency", [
    pytest.param(499, "EUR", id="one-cent-short"),
    pytest.param(501, "EUR", id="one-cent-over"),
    pytest.param(1, "EUR", id="one-cent"),
    pytest.param(0, "EUR", id="paid-code-booked-as-a-gift"),
    pytest.param(500, "USD", id="same-number-other-currency"),
    pytest.param(500, "JPY", id="same-number-currency-without-minor-units"),
    pytest.param(50_000, "EUR", id="major-units-mistaken-for-minor"),
])
def test_payment_receipt_that_is_not_the_codes_face_value_is_rejected(
    amount: int, currency: str,
) -> None:
    e = _rejected("wrong-price",
                  lambda: _check_payment(_pay(amount=amount, currency=currency)))
    assert f"{amount} {currency}" in e.message
    assert "500 EUR" in e.message  # the face value it should have booked


def test_a_gift_code_booked_as_a_sale_is_rejected() -> None:
    # The seller gave a press code away (face 0) and books it at the price.
    gift = Batch(SELLER, WORK, face=0, seed=b"press codes")
    e = _rejected("wrong-price", lambda: _check_payment(_pay(batch=gift, amount=500)))
    assert "500 EUR" in e.message and "0 EUR" in e.message


def test_a_batch_issued_in_another_currency_than_the_terms_is_rejected() -> None:
    usd = Batch(SELLER, WORK, face=500, currency="USD", seed=b"dollars")
    e = _rejected("wrong-price", lambda: _check_payment(_pay(batch=usd)))
    assert "USD" in e.message and "EUR" in e.message


OTHER_COUNT = Batch(SELLER, WORK, count=9, seed=b"seller's batch")  # BATCH's codes + 1
_LEVELS_8 = BATCH.proof(0).path

# A sale properly signed by its seller whose code is not an issued code of that seller
# for this work, in the batch the receipt names: the audit books nothing for it.
UNISSUED = [
    pytest.param({"proof": BATCH.proof(1)}, id="proof-for-another-code"),
    pytest.param({"code": BATCH2.codes[0]}, id="code-of-another-batch"),
    pytest.param({"code": hashlib.sha256(b"a code never issued").digest()},
                 id="code-never-issued"),
    pytest.param({"proof": MerkleProof(8, BATCH.proof(7).path)},
                 id="index-out-of-range"),
    pytest.param({"proof": MerkleProof(1 << 20, BATCH.proof(0).path)},
                 id="index-at-the-parsers-bound"),
    pytest.param({"proof": MerkleProof(0, (*_LEVELS_8, _LEVELS_8[0]))},
                 id="path-too-long-for-the-count"),
    pytest.param({"proof": MerkleProof(0, _LEVELS_8[:-1])}, id="path-too-short"),
    pytest.param({"proof": MerkleProof(0, ())}, id="path-empty"),
    pytest.param({"issuance": OTHER_COUNT.signed, "proof": BATCH.proof(0)},
                 id="proof-for-a-tree-of-another-count"),
    pytest.param({"batch": BATCH2}, id="issuance-by-another-collector-than-the-seller"),
    pytest.param({"batch": MALLORY_BATCH}, id="issuance-by-a-non-seller"),
    pytest.param({"batch": Batch(SELLER, OTHER_WORK, seed=b"other work")},
                 id="issuance-for-another-work"),
]


@pytest.mark.parametrize("kw", UNISSUED)
def test_a_sale_that_spends_no_issued_code_of_its_seller_is_unissued(
    kw: dict[str, Any],
) -> None:
    e = _rejected("unissued", lambda: _check_payment(_pay(**kw)))
    assert "code" in e.message
    assert check_issued(SignedPayment.from_bytes(_pay(**kw)).payment) is not None


def test_check_issued_says_why() -> None:
    assert check_issued(_payment()) is None
    for i in range(BATCH.count):  # every code of the batch, at its own index
        assert check_issued(_payment(index=i)) is None
    assert "another key" in (check_issued(_payment(batch=BATCH2)) or "")
    assert "another work" in (check_issued(
        _payment(batch=Batch(SELLER, OTHER_WORK, seed=b"x"))) or "")
    assert "Merkle proof" in (check_issued(_payment(proof=BATCH.proof(1))) or "")
    assert "face value is 500 EUR" in (check_issued(_payment(amount=1)) or "")
    # The proof is checked before the price: an unissued code at a wrong price is unissued.
    assert "Merkle proof" in (check_issued(_payment(proof=BATCH.proof(1), amount=1)) or "")


def test_payment_checks_run_in_their_numbered_order() -> None:
    # Signed by Mallory for another work and another buyer, a code of another collector,
    # at the wrong price.
    everything_wrong = _pay(seller=MALLORY.public_key, work=OTHER_WORK,
                            buyer=BUYER2.public_key, batch=BATCH, amount=1)
    with_mallory = _terms(SELLER.public_key, MALLORY.public_key)
    _rejected("not-a-seller", lambda: _check_payment(everything_wrong))
    _rejected("wrong-work", lambda: _check_payment(everything_wrong, terms=with_mallory))
    _rejected("other-buyer", lambda: _check_payment(everything_wrong, terms=with_mallory,
                                                    work=OTHER_WORK))
    _rejected("unissued", lambda: _check_payment(everything_wrong, terms=with_mallory,
                                                 work=OTHER_WORK, buyer=BUYER2.public_key))
    # Its own code, still at the wrong price and in another currency than the terms.
    only_price_wrong = _pay(seller=MALLORY.public_key, work=OTHER_WORK,
                            buyer=BUYER2.public_key,
                            batch=Batch(MALLORY, OTHER_WORK, seed=b"m"), amount=1)
    _rejected("wrong-price", lambda: _check_payment(
        only_price_wrong, terms=with_mallory, work=OTHER_WORK, buyer=BUYER2.public_key))
    _check_payment(_pay(seller=MALLORY.public_key, work=OTHER_WORK, buyer=BUYER2.public_key,
                        batch=Batch(MALLORY, OTHER_WORK, seed=b"m")),
                   terms=with_mallory, work=OTHER_WORK, buyer=BUYER2.public_key)
    yen = _pay(batch=Batch(SELLER, WORK, currency="JPY", seed=b"yen"))
    _rejected("wrong-price", lambda: _check_payment(yen))  # (6): the terms' currency
    _check_payment(yen, terms=_terms(currency="JPY"))


def _forged_inside(request: bytes | None = None, issuance: bytes | None = None) -> bytes:
    """The base receipt holding another request or issuance record, signed by SELLER."""
    d = dict(KINDS["payment"].base)
    if request is not None:
        d["request"] = request
    if issuance is not None:
        d["issuance"] = issuance
    return _envelope("payment", _canonical.encode(d))


def _issuance_signed_by(who: Identity, domain: bytes = ISSUANCE_DOMAIN) -> bytes:
    s = BATCH.signed
    return _canonical.encode({"body": s.body, "sig": who.sign(domain=domain, message=s.body),
                              "type": "p2pdist/voucher-issuance/signed", "v": 1})


def _request_signed_by(who: Identity, domain: bytes = PURCHASE_DOMAIN) -> bytes:
    return _canonical.encode({"body": REQUEST.body,
                              "sig": who.sign(domain=domain, message=REQUEST.body),
                              "type": "p2pdist/purchase-request/signed", "v": 1})


# The seller signs its receipt honestly over embedded objects that their signers never
# signed: a sale no buyer asked for, a batch no collector issued.
FORGED_INSIDE = [
    pytest.param(lambda: _forged_inside(request=_request_signed_by(MALLORY)),
                 id="request-signed-by-mallory-naming-the-buyer"),
    pytest.param(lambda: _forged_inside(request=_request_signed_by(SELLER)),
                 id="request-signed-by-the-seller-itself"),
    pytest.param(lambda: _forged_inside(request=_request_signed_by(BUYER, PAYMENT_DOMAIN)),
                 id="request-signed-by-the-buyer-in-another-domain"),
    pytest.param(lambda: _forged_inside(request=_inner_replayed(
        REQUEST, _set("ts", int(T0.timestamp()) + 1))), id="request-ts-tampered"),
    pytest.param(lambda: _forged_inside(request=_inner_replayed(
        REQUEST, _set("receipts", [R1]))), id="request-receipt-dropped"),
    pytest.param(lambda: _forged_inside(issuance=_issuance_signed_by(MALLORY)),
                 id="issuance-signed-by-mallory-naming-the-seller"),
    pytest.param(lambda: _forged_inside(issuance=_issuance_signed_by(BUYER)),
                 id="issuance-signed-by-the-buyer"),
    pytest.param(lambda: _forged_inside(issuance=_issuance_signed_by(SELLER, PAYMENT_DOMAIN)),
                 id="issuance-signed-in-the-payment-domain"),
    pytest.param(lambda: _forged_inside(issuance=_inner_replayed(
        BATCH.signed, _set("count", 9))), id="issuance-count-tampered"),
    pytest.param(lambda: _forged_inside(issuance=_inner_replayed(
        BATCH.signed, _set("root", bytes(32)))), id="issuance-root-tampered"),
]


@pytest.mark.parametrize("make", FORGED_INSIDE)
def test_an_embedded_object_its_signer_never_signed_is_refused(
    make: Callable[[], bytes],
) -> None:
    envelope = make()
    KINDS["payment"].parse(envelope)  # well-formed, and the seller's signature holds
    with pytest.raises(InvalidSignature) as e:
        KINDS["payment"].check(envelope)
    _assert_opaque_refusal(e.value)
    with pytest.raises(InvalidSignature):  # whatever the policy: signatures come first
        verify_payment(SignedPayment.from_bytes(envelope), work=OTHER_WORK,
                       terms=_terms(MALLORY.public_key))


def test_purchase_request_addressed_to_another_seller_is_rejected() -> None:
    # A request BUYER sent to SELLER2, replayed by SELLER2 (or anyone) to SELLER.
    e = _rejected("wrong-seller", lambda: _check_purchase(_buy(seller=SELLER2.public_key)))
    assert e.remedy
    _check_purchase(_buy(seller=SELLER2.public_key), seller=SELLER2.public_key)


def test_purchase_request_to_a_non_seller_is_rejected() -> None:
    _rejected("not-a-seller", lambda: _check_purchase(_buy(seller=MALLORY.public_key),
                                                      seller=MALLORY.public_key))


def test_purchase_request_for_another_work_is_rejected() -> None:
    _rejected("wrong-work", lambda: _check_purchase(_buy(work=OTHER_WORK)))
    _rejected("wrong-work", lambda: _check_purchase(_buy(), work=OTHER_WORK))


def test_purchase_checks_run_in_their_numbered_order() -> None:
    everything_wrong = _buy(seller=MALLORY.public_key, work=OTHER_WORK)
    _rejected("wrong-seller", lambda: _check_purchase(everything_wrong))
    _rejected("not-a-seller", lambda: _check_purchase(everything_wrong,
                                                      seller=MALLORY.public_key))
    _rejected("wrong-work", lambda: _check_purchase(
        everything_wrong, seller=MALLORY.public_key, terms=_terms(MALLORY.public_key)))


# The sealed credential: named bad inputs. Each is signed by its buyer, so only the
# seller's opening of the box can refuse it; the voucher book is never asked.
def _sealed(**kw: Any) -> bytes:
    fields: dict[str, Any] = {"work": WORK, "buyer": BUYER.public_key,
                              "seller": SELLER.public_key, "nonce": bytes(range(16))}
    fields.update(kw)
    return seal_payment(CODE, **fields)


def _lifted_by_mallory() -> bytes:
    # Mallory (a relay) copies BUYER's sealed box into a request of her own, signed by her.
    return SignedPurchase.sign(_request(buyer=MALLORY.public_key,
                                        sealed_payment=SEALED_PAYMENT), MALLORY).to_bytes()


SEALED_BAD = [
    pytest.param(lambda: _buy(sealed_payment=_sealed(seller=SELLER2.public_key)),
                 "sealed-to-another", id="sealed-to-another-seller"),
    pytest.param(lambda: _buy(sealed_payment=_sealed(seller=MALLORY.public_key)),
                 "sealed-to-another", id="sealed-to-the-relay"),
    pytest.param(lambda: _buy(sealed_payment=SEALED_PAYMENT[:-1] + bytes(
        [SEALED_PAYMENT[-1] ^ 1])), "sealed-to-another", id="sealed-box-tampered"),
    pytest.param(lambda: _buy(sealed_payment=SEALED_PAYMENT[:60]), "sealed-to-another",
                 id="sealed-box-truncated"),
    pytest.param(_lifted_by_mallory, "other-request", id="box-lifted-into-another-buyers"),
    pytest.param(lambda: _buy(nonce=b"r" * 16, sealed_payment=SEALED_PAYMENT),
                 "other-request", id="box-replayed-under-a-fresh-nonce"),
    pytest.param(lambda: _buy(work=OTHER_WORK, sealed_payment=SEALED_PAYMENT),
                 "other-request", id="box-moved-to-another-work"),
    pytest.param(lambda: _buy(sealed_payment=seal_to(b"7K3Q-M9XR-2HTP-VW4C-X",
                                                     SELLER.public_key)),
                 "other-request", id="bare-code-sealed-without-binding"),
]


@pytest.mark.parametrize("make,reason", SEALED_BAD)
def test_a_bad_sealed_credential_is_refused_by_the_seller(
    make: Callable[[], bytes], reason: str,
) -> None:
    signed = SignedPurchase.from_bytes(make())
    work = signed.request.work
    verify_purchase(signed, seller=SELLER.public_key, work=work, terms=TERMS)
    e = _rejected(reason, lambda: open_payment(signed, SELLER))
    assert CODE not in e.message


def test_the_sealed_credential_opens_for_its_seller_only() -> None:
    signed = _check_purchase(_buy())
    assert open_payment(signed, SELLER) == CODE
    assert CODE.encode() not in signed.to_bytes()
    for other in (SELLER2, MALLORY, BUYER):
        _rejected("sealed-to-another", lambda other=other: open_payment(signed, other))


@pytest.mark.parametrize("n", [0, 48, MAX_SEALED_PAYMENT + 1])
def test_a_sealed_credential_out_of_bounds_is_malformed(n: int) -> None:
    with pytest.raises(ValueError):
        _request(sealed_payment=b"s" * n)
    with pytest.raises(MalformedObject):
        KINDS["purchase"].parse(_resigned("purchase", _set("sealed_payment", b"s" * n)))


def test_a_version_1_request_with_its_code_in_clear_is_refused() -> None:
    def v1(d: dict[str, Any]) -> None:
        del d["sealed_payment"]
        d["payment"], d["v"] = CODE.encode(), 1
    with pytest.raises(MalformedObject):
        KINDS["purchase"].parse(_resigned("purchase", v1))


def test_rejection_reason_codes_are_a_closed_set() -> None:
    with pytest.raises(ValueError, match="reason"):
        PaymentRejected("x", reason="because")


# -- served_by from the buyer's receipts ---------------------------------------------------


def _served_of(*receipts: bytes, size: int = SIZE) -> tuple[Served, ...]:
    return served_by_from_receipts(receipts, work=WORK, buyer=BUYER.public_key, size=size)


def test_served_by_from_a_purchase_requests_receipts() -> None:
    signed = _check_purchase(_buy())
    served = _served_of(*signed.request.receipts)
    assert served == _sv((U1, PIECE + 1), (U2, PIECE))
    assert _served_of() == ()


def _other_sig(receipt: bytes) -> bytes:
    d = _canonical.decode(receipt, max_size=MAX_RECEIPT_SIZE)
    d["sig"] = d["sig"][:-1] + bytes([d["sig"][-1] ^ 1])
    return _canonical.encode(d)


BAD_RECEIPTS = [
    pytest.param(lambda: _transfer(U1, 1, PIECE, downloader=BUYER2),
                 id="receipt-of-another-buyer"),
    pytest.param(lambda: _transfer(U1, 1, PIECE, work=OTHER_WORK),
                 id="receipt-for-another-work"),
    pytest.param(lambda: _other_sig(_transfer(U1, 1, PIECE)), id="receipt-bad-signature"),
    pytest.param(lambda: _canonical.encode({"receipt": TransferReceipt(
        work=WORK, uploader=U1, downloader=BUYER.public_key, seq=1, bytes=PIECE, ts=T0)
        .signed_bytes(), "sig": MALLORY.sign(domain=RECEIPT_DOMAIN, message=b"x"),
        "type": "p2pdist/signed-receipt", "v": 1}), id="receipt-signed-by-mallory"),
    pytest.param(lambda: _transfer(U1, 1, PIECE)[:-1], id="receipt-truncated"),
    pytest.param(lambda: b"", id="receipt-empty"),
    pytest.param(lambda: b"x" * MAX_RECEIPT_SIZE, id="receipt-not-bencode"),
    pytest.param(lambda: b"x" * (MAX_RECEIPT_SIZE + 1), id="receipt-oversized"),
    pytest.param(lambda: SignedPurchase.sign(_request(receipts=()), BUYER).body[:200],
                 id="receipt-is-another-object"),
]


@pytest.mark.parametrize("make", BAD_RECEIPTS)
def test_a_bad_receipt_in_a_purchase_is_rejected(make: Callable[[], bytes]) -> None:
    # Among good ones: one bad receipt is enough to refuse the whole split.
    e = _rejected("bad-receipts", lambda: _served_of(R1, make(), R2))
    assert "receipt" in e.message


def test_the_latest_receipt_per_uploader_wins_whatever_the_order() -> None:
    old, new = _transfer(U1, 1, SIZE), _transfer(U1, 2, PIECE)
    assert _served_of(old, new) == _served_of(new, old) == (Served(U1, PIECE),)


def test_an_uploader_whose_latest_receipt_is_zero_bytes_is_left_out() -> None:
    assert _served_of(_transfer(U1, 1, PIECE), _transfer(U1, 2, 0), R2) == (Served(U2, PIECE),)
    assert _served_of(_transfer(U1, 1, 0)) == ()


@pytest.mark.parametrize("total_over", [-1, 0, 1])
def test_receipts_at_the_size_boundary_are_scaled_only_over_it(total_over: int) -> None:
    size = 2 * PIECE + 1
    served = _served_of(_transfer(U1, 1, PIECE + 1 + total_over), R2, size=size)
    assert sum(s.bytes for s in served) == min(size, 2 * PIECE + 1 + total_over)
    if total_over <= 0:
        assert served == _sv((U1, PIECE + 1 + total_over), (U2, PIECE))


def test_receipts_over_the_size_are_scaled_to_sum_exactly_to_it() -> None:
    # 50 + 30 + 40 = 120 of 100 bytes: 41 2/3, 25, 33 1/3 -> 41, 25, 33 and the one byte
    # left to the largest remainder.
    u = {n: UPLOADERS[i].public_key for i, n in enumerate((50, 30, 40))}
    served = _served_of(*(_transfer(pk, 1, n) for n, pk in u.items()), size=100)
    assert {s.pk: s.bytes for s in served} == {u[50]: 42, u[30]: 25, u[40]: 33}


def test_equal_remainders_go_to_the_lower_key() -> None:
    keys = sorted((U1, U2, U3))
    served = _served_of(*(_transfer(pk, 1, 10) for pk in keys), size=10)
    assert [s.bytes for s in served] == [4, 3, 3]
    assert [s.pk for s in served] == keys


def test_one_receipt_over_the_size_is_capped_at_the_size() -> None:
    assert _served_of(_transfer(U1, 1, MAX_COUNT)) == (Served(U1, SIZE),)
    assert _served_of(_transfer(U1, 1, 1), size=0) == ()


def test_many_uploaders_each_with_the_whole_work_share_it() -> None:
    served = _served_of(*(_transfer(u.public_key, 1, SIZE) for u in UPLOADERS))
    assert sum(s.bytes for s in served) == SIZE
    assert {s.bytes for s in served} == {SIZE // len(UPLOADERS)}


# -- grants --------------------------------------------------------------------------------


def _signed_grant(seller: Identity = SELLER, **kw: Any) -> SignedGrant:
    return SignedGrant.sign(_grant(seller=seller.public_key, **kw), seller)


def test_grant_opens_to_the_content_key_for_its_buyer() -> None:
    signed = _check_grant(_signed_grant().to_bytes())
    assert open_grant(signed, BUYER) == CONTENT_KEY


def test_grant_sealed_now_opens_too() -> None:
    # seal_key is randomized; any sealing of the key opens, and none is the same twice.
    sealed = seal_key(CONTENT_KEY, BUYER.public_key)
    assert sealed != SEALED
    assert sealed != seal_key(CONTENT_KEY, BUYER.public_key)
    assert open_grant(_signed_grant(sealed_key=sealed), BUYER) == CONTENT_KEY


GRANT_REFUSALS = [
    pytest.param(lambda: _signed_grant(MALLORY), {}, "not a seller",
                 id="signed-by-a-non-seller"),
    pytest.param(_signed_grant, {"sellers": (SELLER2.public_key,)}, "not a seller",
                 id="seller-not-in-this-license"),
    pytest.param(lambda: _signed_grant(buyer=BUYER2.public_key,
                                       sealed_key=SEALED_TO_BUYER2), {}, "not you",
                 id="grant-of-another-buyer"),
    pytest.param(_signed_grant, {"buyer": BUYER2.public_key}, "not you",
                 id="grant-copied-to-another-home"),
    pytest.param(lambda: _signed_grant(work=OTHER_WORK), {}, "another work",
                 id="grant-for-another-work"),
    pytest.param(_signed_grant, {"work": OTHER_WORK}, "another work",
                 id="grant-replayed-for-another-work"),
    pytest.param(lambda: _signed_grant(key_id=bytes(32)), {}, "another key",
                 id="grant-for-another-key-id"),
    pytest.param(_signed_grant, {"key_id": bytes(32)}, "another key",
                 id="license-re-keyed"),
]


@pytest.mark.parametrize("make,policy,words", GRANT_REFUSALS)
def test_grant_not_for_this_buyer_work_and_key_is_refused(
    make: Callable[[], SignedGrant], policy: dict[str, Any], words: str,
) -> None:
    with pytest.raises(NotLicensed, match=words) as e:
        _check_grant(make().to_bytes(), **policy)
    assert e.value.exit_code == 3
    assert e.value.remedy


def test_grant_checks_run_in_their_numbered_order() -> None:
    everything_wrong = _signed_grant(MALLORY, work=OTHER_WORK, buyer=BUYER2.public_key,
                                     key_id=bytes(32)).to_bytes()
    sellers = (SELLER.public_key, MALLORY.public_key)
    for words, policy in (
        ("not a seller", {}),
        ("another work", {"sellers": sellers}),
        ("not you", {"sellers": sellers, "work": OTHER_WORK}),
        ("another key", {"sellers": sellers, "work": OTHER_WORK, "buyer": BUYER2.public_key}),
    ):
        with pytest.raises(NotLicensed, match=words):
            _check_grant(everything_wrong, **policy)


def test_grant_copied_to_another_identity_does_not_open() -> None:
    signed = _signed_grant()
    for thief in (BUYER2, MALLORY, SELLER):
        with pytest.raises(NotLicensed, match="another key"):
            open_grant(signed, thief)


def test_grant_whose_key_is_sealed_to_someone_else_does_not_open() -> None:
    # Names BUYER, but the box is BUYER2's: a seller's bug, or a spliced grant.
    signed = _signed_grant(sealed_key=SEALED_TO_BUYER2)
    _check_grant(signed.to_bytes())
    with pytest.raises(InvalidSignature) as e:
        open_grant(signed, BUYER)
    _assert_opaque_refusal(e.value)


def test_any_tampered_sealed_key_byte_is_refused() -> None:
    for i in range(len(SEALED)):
        sealed = SEALED[:i] + bytes([SEALED[i] ^ 0x01]) + SEALED[i + 1:]
        # Kept under the original signature: the signature catches it.
        envelope = _replayed("grant", _set("sealed_key", sealed))
        with pytest.raises(InvalidSignature):
            _check_grant(envelope)
        # Re-signed by the seller: the box's tag catches it.
        with pytest.raises(InvalidSignature):
            open_grant(_signed_grant(sealed_key=sealed), BUYER)


# -- malformed bytes -----------------------------------------------------------------------


def _sized_envelope(kind: str, size: int) -> bytes:
    """A well-signed envelope of exactly *size* bytes, padded under an unknown key."""
    base = len(_envelope(kind, pad=b""))
    out = _envelope(kind, pad=b"x" * (size - base - (len(str(size - base)) - 1)))
    assert len(out) == size, (len(out), size)
    return out


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_envelope_size_limit_is_inclusive(kind: str) -> None:
    k = KINDS[kind]
    with pytest.raises(MalformedObject, match=r"unexpected fields \['pad'\]"):
        k.parse(_sized_envelope(kind, k.max_size))  # parsed, refused for its fields
    with pytest.raises(MalformedObject, match="too large"):
        k.parse(_sized_envelope(kind, k.max_size + 1))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_10_mb_envelope_is_refused_fast_before_parsing(
    kind: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = b"x" * (10 * 1024 * 1024)
    huge = _envelope(kind, body, bytes(64))

    def parse(*_a: object, **_k: object) -> object:
        raise AssertionError("the parser saw an oversized envelope")

    monkeypatch.setattr(_canonical, "decode", parse)
    for data in (huge, b"l" * len(huge), bytearray(huge), memoryview(huge)):
        start = time.perf_counter()
        with pytest.raises(MalformedObject, match="too large"):
            KINDS[kind].parse(data)
        assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_truncation_of_an_envelope_is_malformed(kind: str) -> None:
    envelope = _envelope(kind)
    for n in range(len(envelope)):
        with pytest.raises(MalformedObject):
            KINDS[kind].parse(envelope[:n])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_truncation_of_a_signed_body_is_malformed(kind: str) -> None:
    body = _canonical.encode(KINDS[kind].base)
    for n in range(len(body)):
        with pytest.raises(MalformedObject):
            KINDS[kind].parse(_envelope(kind, body[:n]))


def _unsorted(d: dict[str, Any]) -> bytes:
    """*d* bencoded with its top-level keys in reverse order."""
    return b"d" + b"".join(_canonical.encode(k.encode()) + _canonical.encode(v)
                           for k, v in sorted(d.items(), reverse=True)) + b"e"


def _body(kind: str) -> bytes:
    return _canonical.encode(KINDS[kind].base)


def _replace_last(data: bytes, old: bytes, new: bytes) -> bytes:
    head, sep, tail = data.rpartition(old)
    assert sep, old
    return head + new + tail


def _kinds(make: Callable[[str], bytes], name: str) -> list[Any]:
    return [pytest.param(kind, (lambda kind=kind: make(kind)), id=f"{kind}-{name}")
            for kind in ALL_KINDS]


MALFORMED_ANY_KIND = [
    # envelope encoding
    *_kinds(lambda k: _unsorted(_canonical.decode(_envelope(k), max_size=10**5)),
            "envelope-keys-unsorted"),
    *_kinds(lambda k: _envelope(k).replace(b"1:vi1e", b"1:vi01e"), "envelope-v-leading-zero"),
    *_kinds(lambda k: _envelope(k).replace(b"3:sig64:", b"3:sig064:"),
            "envelope-length-leading-zero"),
    *_kinds(lambda k: _envelope(k) + b"\0", "envelope-trailing-byte"),
    *_kinds(lambda k: _envelope(k) + b"de", "envelope-then-empty-dict"),
    *_kinds(lambda k: b"", "envelope-empty"),
    *_kinds(lambda k: _canonical.encode([_body(k)]), "envelope-is-a-list"),
    *_kinds(_body, "bare-body-without-envelope"),
    *_kinds(lambda k: b"i1e", "envelope-is-an-int"),
    *_kinds(lambda k: b"d" + b"l" * 100 + b"e" * 100 + b"e", "envelope-depth-bomb"),
    *_kinds(lambda k: _envelope(k).replace(b"d4:body", b"d4:body1:x4:body", 1),
            "envelope-duplicate-key"),
    # envelope fields
    *_kinds(lambda k: _envelope(k, type=KINDS[k].type.removesuffix("/signed")),
            "envelope-type-of-the-body"),
    *_kinds(lambda k: _envelope(k, type=b"p2pdist/signed-receipt"), "envelope-receipt-type"),
    *_kinds(lambda k: _envelope(k, type=None), "envelope-no-type"),
    *_kinds(lambda k: _envelope(k, v=2), "envelope-version-2"),
    *_kinds(lambda k: _envelope(k, v=0), "envelope-version-0"),
    *_kinds(lambda k: _envelope(k, v=b"1"), "envelope-version-as-string"),
    *_kinds(lambda k: _envelope(k, v=None), "envelope-no-version"),
    *_kinds(lambda k: _canonical.encode({"sig": bytes(64), "type": KINDS[k].type, "v": 1}),
            "envelope-no-body"),
    *_kinds(lambda k: _envelope(k, KINDS[k].base, bytes(64)), "body-as-dict-not-bytes"),
    *_kinds(lambda k: _envelope(k, 7, bytes(64)), "body-as-int"),
    *_kinds(lambda k: _envelope(k, b""), "body-empty-and-signed"),
    *_kinds(lambda k: _envelope(k, b"x" * 200), "body-not-bencode-and-signed"),
    *_kinds(lambda k: _envelope(k, sig=b""), "sig-empty"),
    *_kinds(lambda k: _envelope(k, sig=bytes(63)), "sig-63-bytes"),
    *_kinds(lambda k: _envelope(k, sig=bytes(65)), "sig-65-bytes"),
    *_kinds(lambda k: _envelope(k, sig=7), "sig-is-int"),
    *_kinds(lambda k: _envelope(k, sig=[bytes(64)]), "sig-is-a-list"),
    *_kinds(lambda k: _envelope(k, extra=b"x"), "envelope-unknown-field"),
    # body encoding, properly signed
    *_kinds(lambda k: _envelope(k, _unsorted(KINDS[k].base)), "body-keys-unsorted"),
    # (the last occurrence: a payment's embedded objects hold these bytes too)
    *_kinds(lambda k: _envelope(k, _replace_last(_body(k), b"1:vi%de" % KINDS[k].base["v"],
                                                 b"1:vi0%de" % KINDS[k].base["v"])),
            "body-int-leading-zero"),
    *_kinds(lambda k: _envelope(k, _replace_last(_body(k), b"4:work32:", b"4:work032:")),
            "body-length-leading-zero"),
    *_kinds(lambda k: _envelope(k, _body(k) + b"e"), "body-trailing-byte"),
    *_kinds(lambda k: _envelope(k, _canonical.encode([KINDS[k].base])), "body-is-a-list"),
    # body type and version, properly signed
    *_kinds(lambda k: _resigned(k, _set("v", KINDS[k].base["v"] + 1)), "body-version-next"),
    *_kinds(lambda k: _resigned(k, _set("v", 0)), "body-version-0"),
    *_kinds(lambda k: _resigned(k, _drop("v")), "body-no-version"),
    *_kinds(lambda k: _resigned(k, _drop("type")), "body-no-type"),
    *_kinds(lambda k: _resigned(k, _set("type", KINDS[k].type)), "body-type-of-the-envelope"),
    *_kinds(lambda k: _resigned(k, _set("type", b"p2pdist/transfer-receipt")),
            "body-receipt-type"),
    *_kinds(lambda k: _resigned(k, _set("extra", b"x")), "body-unknown-field"),
    *_kinds(lambda k: _resigned(k, _set("work", WORK[:31])), "work-31-bytes"),
    *_kinds(lambda k: _resigned(k, _set("work", WORK + b"\0")), "work-33-bytes"),
    *_kinds(lambda k: _resigned(k, _set("work", WORK.hex().encode())), "work-as-hex"),
    *_kinds(lambda k: _resigned(k, _set("buyer", key_to_text(BUYER.public_key).encode())),
            "buyer-as-text"),
    *_kinds(lambda k: _resigned(k, _set("seller", 0)), "seller-is-int"),
    *_kinds(lambda k: _resigned(k, _set("ts", -1)), "ts-negative"),
    *_kinds(lambda k: _resigned(k, _set("ts", MAX_TS + 1)), "ts-after-year-9999"),
    *_kinds(lambda k: _resigned(k, _set("ts", b"1735689600")), "ts-is-string"),
    *(param for key in ("work", "buyer", "seller", "ts")
      for param in _kinds(lambda k, key=key: _resigned(k, _drop(key)), f"without-{key}")),
]

# The other kinds' bodies and envelopes: a grant is no payment receipt, and so on.
CROSS_KIND = [
    pytest.param(parse_as, (lambda parse_as=parse_as, src=src: _envelope(src)),
                 id=f"{src}-envelope-read-as-{parse_as}")
    for src in ALL_KINDS for parse_as in ALL_KINDS if src != parse_as
] + [
    pytest.param(parse_as, (lambda parse_as=parse_as, src=src: _envelope(parse_as, _body(src))),
                 id=f"{src}-body-in-a-{parse_as}-envelope")
    for src in ALL_KINDS for parse_as in ALL_KINDS if src != parse_as
]

MALFORMED_PURCHASE = [
    ("method-uppercase", _set("method", b"Voucher")),
    ("method-33-chars", _set("method", b"m" * 33)),
    ("method-with-space", _set("method", b"vou cher")),
    ("method-empty", _set("method", b"")),
    ("payment-empty", _set("payment", b"")),
    ("payment-129-chars", _set("payment", b"x" * 129)),
    ("payment-non-ascii", _set("payment", "C\u00d6DE".encode())),
    ("payment-with-newline", _set("payment", b"CODE\nX")),
    ("payment-outer-space", _set("payment", b" CODE")),
    ("payment-not-utf8", _set("payment", b"\xff\xfe")),
    ("nonce-15-bytes", _set("nonce", bytes(15))),
    ("nonce-17-bytes", _set("nonce", bytes(17))),
    ("receipts-not-a-list", _set("receipts", R1)),
    ("receipts-65", _set("receipts", [R1] * (MAX_SERVED_BY + 1))),
    ("receipt-513-bytes", _set("receipts", [b"x" * (MAX_RECEIPT_SIZE + 1)])),
    ("receipt-as-dict", _set("receipts", [{"receipt": R1}])),
    ("receipt-as-int", _set("receipts", [1])),
    *((f"without-{key}", _drop(key)) for key in ("method", "sealed_payment", "nonce",
                                                            "receipts")),
]

def _v1_receipt(d: dict[str, Any]) -> None:
    """The body as a v1 receipt had it: a seller-chosen served_by, no request, no code."""
    for key in ("request", "issuance", "code", "proof"):
        del d[key]
    d["served_by"] = [{"bytes": PIECE, "pk": U1}]
    d["v"] = 1


MALFORMED_PAYMENT = [
    ("amount-negative", _set("amount", -500)),
    ("amount-over-10**15", _set("amount", 10**15 + 1)),
    ("amount-is-string", _set("amount", b"500")),
    ("currency-lowercase", _set("currency", b"eur")),
    ("currency-4-letters", _set("currency", b"EURO")),
    ("currency-with-space", _set("currency", b" EU")),
    ("currency-with-digit", _set("currency", b"EU1")),
    ("method-uppercase", _set("method", b"VOUCHER")),
    ("payment-ref-outer-space", _set("payment_ref", b"ref ")),
    ("payment-ref-129-chars", _set("payment_ref", b"r" * 129)),
    ("payment-ref-non-ascii", _set("payment_ref", "r\u00e9f".encode())),
    ("nonce-15-bytes", _set("nonce", bytes(15))),
    # v1 receipts are not read any more, in either shape.
    ("version-1-receipt", _v1_receipt),
    ("version-1-with-v2-fields", _set("v", 1)),
    ("served-by-beside-the-v2-fields", _set("served_by", [])),
    # The receipt is not the answer to the request it holds.
    ("request-of-another-buyer", _set("buyer", BUYER2.public_key)),
    ("request-to-another-seller", _set("seller", SELLER2.public_key)),
    ("request-for-another-work", _set("work", OTHER_WORK)),
    ("request-with-another-nonce", _flip_field("nonce")),
    ("request-with-another-method", _set("method", b"card")),
    ("request-truncated", lambda d: d.update(request=d["request"][:-1])),
    ("request-oversized", _set("request", b"x" * (MAX_PURCHASE_SIZE + 1))),
    ("request-is-a-dict", lambda d: d.update(request=_canonical.decode(
        d["request"], max_size=MAX_PURCHASE_SIZE))),
    ("request-is-the-issuance", lambda d: d.update(request=d["issuance"])),
    ("request-version-1", lambda d: d.update(request=_canonical.encode({
        **_canonical.decode(d["request"], max_size=MAX_PURCHASE_SIZE), "body":
        _canonical.encode({**_canonical.decode(REQUEST.body, max_size=MAX_PURCHASE_SIZE),
                           "v": 1})}))),
    # The issuance record it holds.
    ("issuance-truncated", lambda d: d.update(issuance=d["issuance"][:-1])),
    ("issuance-oversized", _set("issuance", b"x" * 1025)),
    ("issuance-is-the-request", lambda d: d.update(issuance=d["request"])),
    ("issuance-empty", _set("issuance", b"")),
    # The code and its proof.
    ("code-31-bytes", lambda d: d.update(code=d["code"][:31])),
    ("code-33-bytes", lambda d: d.update(code=d["code"] + b"\0")),
    ("code-as-text", lambda d: d.update(code=d["code"].hex().encode())),
    ("proof-path-over-max-proof", _set_proof(path=[b"\x01" * 32] * (MAX_PROOF + 1))),
    ("proof-hash-31-bytes", _set_proof(path=[b"\x01" * 31])),
    ("proof-hash-33-bytes", _set_proof(path=[b"\x01" * 33])),
    ("proof-index-negative", _set_proof(index=-1)),
    ("proof-index-over-2**20", _set_proof(index=(1 << 20) + 1)),
    ("proof-index-is-string", _set_proof(index=b"0")),  # type: ignore[arg-type]
    ("proof-is-a-list", lambda d: d.update(proof=[d["proof"]["index"], d["proof"]["path"]])),
    ("proof-without-path", lambda d: d.update(proof={"index": 0})),
    ("proof-extra-field", lambda d: d.update(proof={**d["proof"], "count": 8})),
    ("proof-path-not-a-list", lambda d: d.update(proof={"index": 0, "path": b"\x01" * 32})),
    *((f"without-{key}", _drop(key))
      for key in ("amount", "currency", "method", "payment_ref", "nonce", "request",
                  "issuance", "code", "proof")),
]

MALFORMED_GRANT = [
    ("key-id-31-bytes", _set("key_id", KEY_ID[:31])),
    ("sealed-key-79-bytes", _set("sealed_key", SEALED[:79])),
    ("sealed-key-81-bytes", _set("sealed_key", SEALED + b"\0")),
    ("sealed-key-bare-content-key", _set("sealed_key", CONTENT_KEY)),
    *((f"without-{key}", _drop(key)) for key in ("key_id", "sealed_key")),
]

MALFORMED = [
    *MALFORMED_ANY_KIND,
    *CROSS_KIND,
    *(pytest.param(kind, (lambda kind=kind, c=c: _resigned(kind, c)), id=f"{kind}-{name}")
      for kind, table in (("purchase", MALFORMED_PURCHASE), ("payment", MALFORMED_PAYMENT),
                          ("grant", MALFORMED_GRANT))
      for name, c in table),
]


@pytest.mark.parametrize("kind,make", MALFORMED)
def test_malformed_envelope_is_refused_as_malformed(
    kind: str, make: Callable[[], bytes],
) -> None:
    with pytest.raises(MalformedObject) as e:
        KINDS[kind].check(make())
    _assert_opaque_refusal(e.value)


def test_proof_keys_unsorted_is_not_canonical() -> None:
    # _canonical.encode sorts keys, so an unsorted proof dict is built by hand.
    body = _canonical.encode(KINDS["payment"].base)
    proof = _canonical.encode(KINDS["payment"].base["proof"])
    assert proof.startswith(b"d5:indexi0e4:path") and proof in body
    unsorted = b"d4:path" + proof[len(b"d5:indexi0e4:path"):-1] + b"5:indexi0ee"
    with pytest.raises(MalformedObject, match="not sorted"):
        _check_payment(_envelope("payment", body.replace(proof, unsorted)))


def test_an_embedded_object_that_is_not_canonical_is_malformed() -> None:
    # The request's envelope with its keys unsorted, inside a receipt the seller signs.
    unsorted = _unsorted(_canonical.decode(REQUEST.to_bytes(), max_size=MAX_PURCHASE_SIZE))
    with pytest.raises(MalformedObject):
        _check_payment(_resigned("payment", _set("request", unsorted)))
    unsorted = _unsorted(_canonical.decode(BATCH.signed.to_bytes(), max_size=4096))
    with pytest.raises(MalformedObject):
        _check_payment(_resigned("payment", _set("issuance", unsorted)))


def test_a_huge_int_in_a_body_is_malformed_not_a_crash() -> None:
    body = _canonical.encode(KINDS["payment"].base)
    for digits in (19, 32, 33, 300):
        bad = body.replace(b"6:amounti500e", b"6:amounti" + b"9" * digits + b"e")
        with pytest.raises(MalformedObject):
            _check_payment(_envelope("payment", bad))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_from_bytes_refuses_what_is_not_bytes(kind: str) -> None:
    with pytest.raises(TypeError):
        KINDS[kind].parse(_envelope(kind).decode("latin-1"))


# -- what can be signed can be verified ---------------------------------------------------

CANNOT_BUILD = [
    pytest.param(lambda: _request(work=WORK[:31]), id="request-work-31-bytes"),
    pytest.param(lambda: _request(method="Voucher"), id="request-method-uppercase"),
    pytest.param(lambda: _request(method="m" * 33), id="request-method-33-chars"),
    pytest.param(lambda: _request(payment=""), id="request-payment-empty"),
    pytest.param(lambda: _request(payment=" CODE"), id="request-payment-leading-space"),
    pytest.param(lambda: _request(payment="CODE "), id="request-payment-trailing-space"),
    pytest.param(lambda: _request(payment="C\u00d6DE"), id="request-payment-non-ascii"),
    pytest.param(lambda: _request(payment="x" * 129), id="request-payment-129-chars"),
    pytest.param(lambda: _request(nonce=bytes(15)), id="request-nonce-15-bytes"),
    pytest.param(lambda: _request(ts=datetime(2025, 1, 1)), id="request-ts-naive"),
    pytest.param(lambda: _request(ts=T0.replace(microsecond=1)), id="request-ts-microseconds"),
    pytest.param(lambda: _request(receipts=(R1,) * 65), id="request-65-receipts"),
    pytest.param(lambda: _request(receipts=(b"x" * 513,)), id="request-receipt-513-bytes"),
    pytest.param(lambda: _payment(amount=-1), id="payment-amount-negative"),
    pytest.param(lambda: _payment(amount=10**15 + 1), id="payment-amount-over-10**15"),
    pytest.param(lambda: _payment(amount=True), id="payment-amount-bool"),
    pytest.param(lambda: _payment(currency="eur"), id="payment-currency-lowercase"),
    pytest.param(lambda: _payment(currency=" EU"), id="payment-currency-leading-space"),
    pytest.param(lambda: _payment(currency="E-R"), id="payment-currency-not-letters"),
    pytest.param(lambda: _payment(payment_ref="ref "), id="payment-ref-trailing-space"),
    pytest.param(lambda: _payment(payment_ref=""), id="payment-ref-empty"),
    pytest.param(lambda: _payment(buyer=BUYER2.public_key, request=REQUEST),
                 id="payment-for-another-buyer-than-its-request"),
    pytest.param(lambda: _payment(seller=SELLER2.public_key, request=REQUEST),
                 id="payment-by-another-seller-than-its-request"),
    pytest.param(lambda: _payment(work=OTHER_WORK, request=REQUEST),
                 id="payment-for-another-work-than-its-request"),
    pytest.param(lambda: _payment(nonce=bytes(16), request=REQUEST),
                 id="payment-with-another-nonce-than-its-request"),
    pytest.param(lambda: _payment(method="card", request=REQUEST),
                 id="payment-with-another-method-than-its-request"),
    pytest.param(lambda: _payment(code=BATCH.codes[0][:31]), id="payment-code-31-bytes"),
    pytest.param(lambda: _payment(proof=MerkleProof(0, (b"\x01" * 32,) * (MAX_PROOF + 1))),
                 id="payment-proof-over-max-proof"),
    pytest.param(lambda: _payment(proof=MerkleProof(0, (b"\x01" * 31,))),
                 id="payment-proof-hash-31-bytes"),
    pytest.param(lambda: _payment(proof=MerkleProof(-1, BATCH.proof(0).path)),
                 id="payment-proof-index-negative"),
    pytest.param(lambda: _payment(proof=MerkleProof((1 << 20) + 1, BATCH.proof(0).path)),
                 id="payment-proof-index-over-the-parsers-bound"),
    pytest.param(lambda: _payment(proof=MerkleProof(True, BATCH.proof(0).path)),
                 id="payment-proof-index-bool"),
    pytest.param(lambda: Served(U1, 0), id="served-zero-bytes"),
    pytest.param(lambda: Served(U1, 2**63), id="served-bytes-2**63"),
    pytest.param(lambda: Served(U1[:31], 1), id="served-key-31-bytes"),
    pytest.param(lambda: _grant(key_id=KEY_ID[:31]), id="grant-key-id-31-bytes"),
    pytest.param(lambda: _grant(sealed_key=CONTENT_KEY), id="grant-sealed-key-32-bytes"),
    pytest.param(lambda: _grant(ts=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
                 id="grant-ts-before-1970"),
    pytest.param(lambda: _grant(ts=datetime(2025, 1, 1)), id="grant-ts-naive"),
]


@pytest.mark.parametrize("make", CANNOT_BUILD)
def test_object_that_cannot_be_verified_cannot_be_built(make: Callable[[], Any]) -> None:
    """A signer must never sign an object that every verifier then refuses."""
    with pytest.raises(ValueError):
        make()


def test_seal_key_refuses_a_key_that_is_not_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal_key(CONTENT_KEY[:31], BUYER.public_key)


def test_ts_in_another_zone_is_kept_as_utc() -> None:
    paris = datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    for obj, base in ((_request(ts=paris), _request()), (_payment(ts=paris), _payment()),
                      (_grant(ts=paris), _grant())):
        assert obj == base
        assert obj.ts.tzinfo is UTC
        assert obj.to_dict() == base.to_dict()
