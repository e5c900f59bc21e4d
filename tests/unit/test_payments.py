"""Purchase requests, payment receipts and license grants: vectors, properties, attacks.

Three signed formats share one envelope (p2pdist/_signed.py). Every refusal must be a
VerificationError (exit 3): InvalidSignature or MalformedObject for bytes that do not
hold, PaymentRejected or NotLicensed, with a precise reason, only once the signature does.
Never a KeyError, TypeError or ValueError leaking out of a parser.
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
    open_payment,
    seal_payment,
    served_by_from_receipts,
    verify_payment,
    verify_purchase,
)
from p2pdist.payouts.receipts import DOMAIN as RECEIPT_DOMAIN
from p2pdist.payouts.receipts import MAX_RECEIPT_SIZE, SignedReceipt, TransferReceipt

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "payments.json").read_text("utf-8")
)
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


def _payment(**kw: Any) -> PaymentReceipt:
    fields: dict[str, Any] = {
        "work": WORK, "buyer": BUYER.public_key, "seller": SELLER.public_key, "amount": 500,
        "currency": "EUR", "method": "voucher", "payment_ref": "voucher:7K3Q",
        "nonce": bytes(range(16)), "served_by": _sv((U1, PIECE + 1), (U2, PIECE)), "ts": T0,
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
    verify_payment(signed, **{"work": WORK, "terms": TERMS, "size": SIZE,
                              "buyer": BUYER.public_key, **policy})
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


def _vector_payment(inp: dict[str, Any]) -> tuple[PaymentReceipt, Identity]:
    seller = _seed_identity(inp["seller_seed"])
    served = sorted((_seed_pk(s["uploader_seed"]), s["bytes"]) for s in inp["served_by"])
    return PaymentReceipt(
        work=bytes.fromhex(inp["work"]), buyer=_seed_pk(inp["buyer_seed"]),
        seller=seller.public_key, amount=inp["amount"], currency=inp["currency"],
        method=inp["method"], payment_ref=inp["payment_ref"],
        nonce=bytes.fromhex(inp["nonce"]), served_by=tuple(Served(pk, n) for pk, n in served),
        ts=datetime.fromtimestamp(inp["ts"], UTC)), seller


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
    payment, seller = _vector_payment(case["input"])
    _assert_reproduced(SignedPayment.sign(payment, seller), case)
    assert key_to_text(payment.seller) == case["expected"]["seller_pk_text"]
    assert key_to_text(payment.buyer) == case["expected"]["buyer_pk_text"]


@pytest.mark.parametrize("case", PAYMENTS, ids=lambda c: c["name"])
def test_stored_payment_vector_parses_and_verifies(case: dict[str, Any]) -> None:
    inp, expected = case["input"], case["expected"]
    payment, _ = _vector_payment(inp)
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = SignedPayment.from_bytes(envelope)
    verify_payment(signed, work=payment.work, size=inp["size"], buyer=payment.buyer,
                   terms=_terms(payment.seller, price=inp["amount"],
                                currency=inp["currency"]))
    assert signed.payment == payment
    assert signed.payment.served_by == _served(expected["served_by"])
    assert signed.payment.served_bytes == expected["served_bytes"]
    assert signed.to_bytes() == envelope
    _by_hand(payment.seller, b"p2pdist/payment/v1", case)


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
    assert sizes["largest-envelope"] == 4_999 < MAX_PAYMENT_SIZE
    assert sizes["grant-to-second-buyer-at-max-ts"] == 448 < MAX_GRANT_SIZE
    assert sizes["voucher-no-receipts"] == 665
    assert sizes["voucher-eur-no-served-by"] == 424
    assert sizes["grant-to-buyer"] == 446


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
    seller, buyer, work = _seed_pk(inp["seller_seed"]), _seed_pk(inp["buyer_seed"]), \
        bytes.fromhex(inp["work"])

    def check(data: bytes) -> None:
        if kind == "purchase":
            verify_purchase(SignedPurchase.from_bytes(data), seller=seller, work=work,
                            terms=_terms(seller))
        elif kind == "payment":
            verify_payment(SignedPayment.from_bytes(data), work=work, size=inp["size"],
                           buyer=buyer, terms=_terms(seller, price=inp["amount"],
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


@st.composite
def _payments(draw: st.DrawFn) -> tuple[PaymentReceipt, Identity]:
    seller = draw(_ids)
    served = draw(st.dictionaries(_key32, st.integers(1, MAX_COUNT), max_size=8))
    try:
        payment = PaymentReceipt(
            work=draw(_key32), buyer=draw(_key32), seller=seller.public_key,
            amount=draw(st.integers(1, 10**15)), currency=draw(_currencies),
            method=draw(_methods), payment_ref=draw(_ascii),
            nonce=draw(st.binary(min_size=16, max_size=16)),
            served_by=tuple(Served(pk, n) for pk, n in sorted(served.items())),
            ts=draw(_times))
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
@given(_payments().filter(lambda ps: ps[0].currency in {"EUR", "JPY", "BHD", "USD"}),
       st.data())
def test_any_single_byte_change_in_a_payment_envelope_is_refused(
    ps: tuple[PaymentReceipt, Identity], data: st.DataObject,
) -> None:
    payment, seller = ps
    terms = _terms(payment.seller, price=payment.amount, currency=payment.currency)
    envelope = SignedPayment.sign(payment, seller).to_bytes()
    policy: dict[str, Any] = {"work": payment.work, "terms": terms, "buyer": payment.buyer,
                              "size": payment.served_bytes}
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
    # Whatever the receipts say, the seller can sign the result and the buyer accepts it.
    if len(got) <= MAX_SERVED_BY:
        signed = SignedPayment.sign(_payment(served_by=got), SELLER)
        verify_payment(SignedPayment.from_bytes(signed.to_bytes()), work=WORK, terms=TERMS,
                       size=size, buyer=BUYER.public_key)


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
_edgy_count = st.one_of(st.integers(-1, 2), st.integers(MAX_COUNT - 1, MAX_COUNT + 1))
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


@_AGREE
@given(_edged({**_kwargs(_payment()), "served_by": [(U1, 1), (U2, 2)]}, {
    "work": _edgy_key, "buyer": _edgy_key, "seller": _edgy_key,
    "amount": st.one_of(st.integers(-1, 2), st.integers(10**15 - 1, 10**15 + 1)),
    "currency": _edgy_currencies, "method": _edgy_methods, "payment_ref": _edgy_text,
    "nonce": st.binary(min_size=15, max_size=17), "ts": _edgy_ts,
    "served_by": st.lists(st.tuples(_edgy_key, _edgy_count), max_size=4).flatmap(
        lambda rows: st.sampled_from([rows, sorted(rows)])),
}))
def test_payment_constructor_and_parser_agree(kw: dict[str, Any]) -> None:
    rows = kw["served_by"]
    try:
        built_rows: Any = tuple(Served(pk, n) for pk, n in rows)
    except ValueError:
        built_rows = None
    built = None if built_rows is None else _builds(PaymentReceipt,
                                                   {**kw, "served_by": built_rows})
    wire_rows = tuple(SimpleNamespace(pk=pk, bytes=n) for pk, n in rows)
    parsed = _parses("payment", PaymentReceipt, {**kw, "served_by": wire_rows})
    assert (built is None) == (parsed is None), (kw, built, parsed)
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


def _served_by(*rows: tuple[bytes, int]) -> Callable[[dict[str, Any]], None]:
    return _set("served_by", [{"bytes": n, "pk": pk} for pk, n in sorted(rows)])


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
    *(pytest.param("payment", c, id=f"payment-{name}") for name, c in (
        ("work-moved-to-another-work", _set("work", OTHER_WORK)),
        ("buyer-swapped", _set("buyer", BUYER2.public_key)),
        ("seller-swapped-for-the-other-seller", _set("seller", SELLER2.public_key)),
        ("amount-lowered-by-one", _set("amount", 499)),
        ("currency", _set("currency", b"USD")),
        ("method", _set("method", b"card")),
        ("payment-ref", _set("payment_ref", b"voucher:XXXX")),
        ("nonce", _flip_field("nonce")),
        ("ts-moved-one-second", _set("ts", int(T0.timestamp()) + 1)),
        ("served-by-emptied", _set("served_by", [])),
        ("served-by-entry-dropped", _served_by((U1, PIECE + 1))),
        ("served-by-mallory-added", _served_by((U1, PIECE + 1), (U2, PIECE),
                                               (MALLORY.public_key, 1))),
        ("served-by-bytes-inflated-by-one", _served_by((U1, PIECE + 2), (U2, PIECE))),
        ("served-by-credit-moved-to-mallory", _served_by((MALLORY.public_key, PIECE + 1),
                                                         (U2, PIECE))),
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
                LICENSE_DOMAIN, b"p2pdist/purchase/v1", IDENTITY_DOMAIN)
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
        _check_payment(forged, work=OTHER_WORK, buyer=MALLORY.public_key, size=0,
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
    signer = {SELLER.public_key: SELLER, SELLER2.public_key: SELLER2,
              MALLORY.public_key: MALLORY}[kw.get("seller", SELLER.public_key)]
    return SignedPayment.sign(_payment(**kw), signer).to_bytes()


def _buy(**kw: Any) -> bytes:
    return SignedPurchase.sign(_request(**kw), BUYER).to_bytes()


def test_payment_receipt_from_the_other_named_seller_verifies() -> None:
    _check_payment(_pay(seller=SELLER2.public_key))


def test_payment_receipt_signed_by_a_non_seller_is_rejected() -> None:
    # Mallory signs a receipt naming herself: a good signature, but the terms never named her.
    e = _rejected("not-a-seller", lambda: _check_payment(_pay(seller=MALLORY.public_key)))
    assert "not a seller" in e.message


def test_payment_receipt_replayed_for_another_work_is_rejected() -> None:
    _rejected("wrong-work", lambda: _check_payment(_pay(), work=OTHER_WORK))
    _rejected("wrong-work", lambda: _check_payment(_pay(work=OTHER_WORK)))


def test_payment_receipt_replayed_by_another_buyer_is_rejected() -> None:
    # BUYER2 copies BUYER's receipt (and its served_by credits) as its own proof of payment.
    _rejected("other-buyer", lambda: _check_payment(_pay(), buyer=BUYER2.public_key))
    _check_payment(_pay(), buyer=None)  # a third party checking it names no buyer


@pytest.mark.parametrize("amount,currency", [
    pytest.param(499, "EUR", id="one-cent-short"),
    pytest.param(501, "EUR", id="one-cent-over"),
    pytest.param(1, "EUR", id="one-cent"),
    pytest.param(500, "USD", id="same-number-other-currency"),
    pytest.param(500, "JPY", id="same-number-currency-without-minor-units"),
    pytest.param(50_000, "EUR", id="major-units-mistaken-for-minor"),
])
def test_payment_receipt_for_another_price_is_rejected(amount: int, currency: str) -> None:
    e = _rejected("wrong-price",
                  lambda: _check_payment(_pay(amount=amount, currency=currency)))
    assert f"{amount} {currency}" in e.message


@pytest.mark.parametrize("size", [2 * PIECE, 2 * PIECE + 1, 2 * PIECE + 2])
def test_served_by_at_the_work_size_boundary(size: int) -> None:
    envelope = _pay()  # PIECE + 1 + PIECE = 2 * PIECE + 1 bytes
    if size < 2 * PIECE + 1:
        e = _rejected("over-size", lambda: _check_payment(envelope, size=size))
        assert str(2 * PIECE + 1) in e.message
    else:
        _check_payment(envelope, size=size)


def test_served_by_summing_over_a_work_of_max_entries_is_rejected() -> None:
    largest = bytes.fromhex(next(c for c in PAYMENTS
                                 if c["name"] == "largest-envelope")["envelope_hex"])
    signed = SignedPayment.from_bytes(largest)
    p = signed.payment
    terms = _terms(p.seller, price=p.amount, currency=p.currency)
    _rejected("over-size", lambda: verify_payment(signed, work=p.work, terms=terms,
                                                  size=MAX_COUNT))


def test_payment_checks_run_in_their_numbered_order() -> None:
    everything_wrong = _pay(seller=MALLORY.public_key, work=OTHER_WORK,
                            buyer=BUYER2.public_key, amount=1)
    with_mallory = _terms(SELLER.public_key, MALLORY.public_key)
    _rejected("not-a-seller", lambda: _check_payment(everything_wrong))
    _rejected("wrong-work", lambda: _check_payment(everything_wrong, terms=with_mallory))
    _rejected("other-buyer", lambda: _check_payment(everything_wrong, terms=with_mallory,
                                                    work=OTHER_WORK))
    _rejected("wrong-price", lambda: _check_payment(everything_wrong, terms=with_mallory,
                                                    work=OTHER_WORK, buyer=BUYER2.public_key))
    _rejected("over-size", lambda: _check_payment(
        everything_wrong, terms=_terms(MALLORY.public_key, price=1), work=OTHER_WORK,
        buyer=BUYER2.public_key, size=0))


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
    _check_payment(_pay(served_by=served))
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
    *_kinds(lambda k: _envelope(k, _body(k).replace(b"1:vi%de" % KINDS[k].base["v"],
                                                    b"1:vi0%de" % KINDS[k].base["v"], 1)),
            "body-int-leading-zero"),
    *_kinds(lambda k: _envelope(k, _body(k).replace(b"4:work32:", b"4:work032:")),
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

MALFORMED_PAYMENT = [
    ("amount-zero", _set("amount", 0)),
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
    ("served-by-not-a-list", _set("served_by", {"bytes": 1, "pk": U1})),
    ("served-by-65-entries", _set("served_by", [{"bytes": 1, "pk": bytes([i]) * 32}
                                                for i in range(MAX_SERVED_BY + 1)])),
    ("served-by-unsorted", _set("served_by", [{"bytes": 1, "pk": pk}
                                              for pk in sorted((U1, U2), reverse=True)])),
    ("served-by-key-twice", _set("served_by", [{"bytes": 1, "pk": U1},
                                               {"bytes": 1, "pk": U1}])),
    ("served-by-the-buyer-itself", _served_by((BUYER.public_key, PIECE))),
    ("served-by-zero-bytes", _served_by((U1, 0))),
    ("served-by-negative-bytes", _served_by((U1, -1))),
    ("served-by-bytes-2**63", _served_by((U1, 2**63))),
    ("served-by-key-31-bytes", _served_by((U1[:31], 1))),
    ("served-by-entry-extra-field", _set("served_by", [{"bytes": 1, "pk": U1, "x": 1}])),
    ("served-by-entry-without-bytes", _set("served_by", [{"pk": U1}])),
    ("served-by-entry-is-a-list", _set("served_by", [[U1, 1]])),
    *((f"without-{key}", _drop(key))
      for key in ("amount", "currency", "method", "payment_ref", "nonce", "served_by")),
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


def test_served_by_entry_keys_unsorted_is_not_canonical() -> None:
    # _canonical.encode sorts keys, so an unsorted entry is built by hand.
    body = _canonical.encode(KINDS["payment"].base)
    entry = _canonical.encode({"bytes": PIECE, "pk": U2})
    unsorted = b"d2:pk32:" + U2 + b"5:bytesi%de" % PIECE + b"e"
    assert entry in body
    with pytest.raises(MalformedObject, match="not sorted"):
        _check_payment(_envelope("payment", body.replace(entry, unsorted)))


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
    pytest.param(lambda: _payment(amount=0), id="payment-amount-zero"),
    pytest.param(lambda: _payment(amount=10**15 + 1), id="payment-amount-over-10**15"),
    pytest.param(lambda: _payment(amount=True), id="payment-amount-bool"),
    pytest.param(lambda: _payment(currency="eur"), id="payment-currency-lowercase"),
    pytest.param(lambda: _payment(currency=" EU"), id="payment-currency-leading-space"),
    pytest.param(lambda: _payment(currency="E-R"), id="payment-currency-not-letters"),
    pytest.param(lambda: _payment(payment_ref="ref "), id="payment-ref-trailing-space"),
    pytest.param(lambda: _payment(payment_ref=""), id="payment-ref-empty"),
    pytest.param(lambda: _payment(served_by=_sv((U1, 1), (U2, 1))[::-1]),
                 id="payment-served-by-unsorted"),
    pytest.param(lambda: _payment(served_by=(Served(U1, 1), Served(U1, 2))),
                 id="payment-served-by-key-twice"),
    pytest.param(lambda: _payment(served_by=(Served(BUYER.public_key, 1),)),
                 id="payment-served-by-buyer"),
    pytest.param(lambda: _payment(served_by=tuple(Served(bytes([i]) * 32, 1)
                                                  for i in range(65))),
                 id="payment-served-by-65"),
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
