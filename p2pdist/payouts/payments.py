"""Purchases: the buyer's signed request and the seller's signed PaymentReceipt.

PurchaseRequest, signed by the buyer (domain ``p2pdist/purchase/v2``)::

    {type: p2pdist/purchase-request, v: 2, work, buyer, seller, method, sealed_payment,
     nonce, ts, receipts: [signed transfer receipts of this buyer for this work]}

It names the seller it is for (a request cannot be replayed to another seller) and
carries a fresh 16-byte nonce (a seller refuses a nonce it has seen). ``sealed_payment``
is the method's credential (e.g. the voucher code) in a sealed box to the seller's X25519
key (from its ed25519 key), so that only that seller reads it: not a relay, not someone
on the network path. Inside the box the credential is bound to this request::

    {type: p2pdist/payment-credential, v: 1, work, buyer, seller, nonce, payment}

so a box lifted from one buyer's request cannot pay for another's (the box is anonymous:
anyone can seal, only the seller opens, and only the buyer knew the code to seal). (v1
carried the credential in clear.)

PaymentReceipt v2, signed by a seller named in the manifest (domain ``p2pdist/payment/v2``)::

    {type: p2pdist/payment-receipt, v: 2, work, buyer, seller, amount, currency, method,
     payment_ref, nonce, ts, request: <the buyer-signed purchase request>,
     issuance: <the signed issuance record of the code's batch>, code: <its hash>,
     proof: {index, path}}

A sale is the buyer's signed request answered: sales are deduplicated on the request
(``request_id``), so a seller cannot erase another's sale by reusing its nonce, and cannot
book one that no buyer signed. It books the face value of the code it spent (``issuance``,
proven by ``proof``) against the code's collector, who must be the seller (double entry:
see issuance.py). Who carried the work is not in it: the audit reads every receipt the
buyer signed (the request carries the buyer's own at the time of purchase). v1 receipts
(a seller-chosen ``served_by``, no request, no code) are no longer read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
from p2pdist.errors import MalformedObject, VerificationError
from p2pdist.identity import Identity, fingerprint, open_sealed, seal_to, verify_signature
from p2pdist.licensing import PaidTerms
from p2pdist.payouts.issuance import MAX_ISSUANCE_SIZE, MAX_PROOF, MerkleProof, SignedIssuance
from p2pdist.payouts.receipts import MAX_RECEIPT_SIZE, SignedReceipt, verify_receipt

__all__ = [
    "MAX_SERVED_BY",
    "PAYMENT_DOMAIN",
    "PURCHASE_DOMAIN",
    "PaymentReceipt",
    "PaymentRejected",
    "PurchaseRequest",
    "Served",
    "SignedPayment",
    "SignedPurchase",
    "check_issued",
    "open_payment",
    "seal_payment",
    "served_by_from_receipts",
    "verify_payment",
    "verify_purchase",
]

PURCHASE_TYPE: Final = "p2pdist/purchase-request"
PAYMENT_TYPE: Final = "p2pdist/payment-receipt"
PURCHASE_DOMAIN: Final = b"p2pdist/purchase/v2"
PURCHASE_VERSION: Final = 2
CREDENTIAL_TYPE: Final = "p2pdist/payment-credential"
PAYMENT_DOMAIN: Final = b"p2pdist/payment/v2"
PAYMENT_VERSION: Final = 2
MAX_SERVED_BY: Final = 64
NONCE_LEN: Final = 16
MAX_PAYMENT_TEXT: Final = 128
# A sealed box adds 48 bytes (an ephemeral X25519 key and a MAC) to the credential's
# canonical dict: about 220 bytes of fields and at most 128 of credential.
MAX_SEALED_PAYMENT: Final = 512
MAX_PURCHASE_SIZE: Final = MAX_SERVED_BY * (MAX_RECEIPT_SIZE + 8) + 2048
MAX_PAYMENT_SIZE: Final = MAX_PURCHASE_SIZE + MAX_ISSUANCE_SIZE + 4096
MAX_PROOF_INDEX: Final = 1 << 20
_METHOD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")

PAYMENT_REASONS: Final = ("not-a-seller", "wrong-work", "wrong-price", "other-buyer",
                          "over-size", "wrong-seller", "bad-receipts", "sealed-to-another",
                          "other-request", "unissued")


class PaymentRejected(VerificationError):
    """A well-signed purchase object that breaks the work's terms; ``reason`` says how."""

    def __init__(self, message: str, *, reason: str, remedy: str | None = None) -> None:
        if reason not in PAYMENT_REASONS:
            raise ValueError(f"unknown payment rejection reason {reason!r}")
        super().__init__(message, remedy=remedy)
        self.reason = reason


def _check_method(method: str) -> str:
    if not (1 <= len(method) <= 32 and set(method) <= _METHOD_CHARS):
        raise ValueError("a payment method is 1-32 of a-z, 0-9 and '-'")
    return method


def _ts(ts: datetime) -> datetime:
    if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond:
        raise ValueError("a time is an aware datetime in whole seconds")
    if not 0 <= ts.timestamp() <= MAX_TS:
        raise ValueError("a time is out of range")
    return ts.astimezone(UTC)


def _key(v: bytes, what: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise ValueError(f"{what} is a 32-byte key")
    return v


@dataclass(frozen=True, slots=True)
class Served:
    """A p2pdist node that served the buyer, and the verified bytes it sent."""

    pk: bytes
    bytes: int

    def __post_init__(self) -> None:
        _key(self.pk, "a served_by key")
        # The parser's bounds: a seller must not sign what no buyer can read back.
        if not isinstance(self.bytes, int) or isinstance(self.bytes, bool) \
                or not 1 <= self.bytes <= MAX_COUNT:
            raise ValueError("served bytes are an integer in 1..2**63-1")


# -- the request ---------------------------------------------------------------------------


def _check_payment(payment: str) -> str:
    if not (isinstance(payment, str) and 0 < len(payment) <= MAX_PAYMENT_TEXT
            and payment.isascii() and payment.isprintable()
            and payment == payment.strip()):  # as_text refuses outer spaces
        raise ValueError("the payment credential is 1-128 printable ASCII characters, "
                         "without outer spaces")
    return payment


def _credential(payment: str, *, work: bytes, buyer: bytes, seller: bytes,
                nonce: bytes) -> bytes:
    return _canonical.encode({"buyer": buyer, "nonce": nonce,
                              "payment": _check_payment(payment).encode(), "seller": seller,
                              "type": CREDENTIAL_TYPE, "v": 1, "work": work})


def seal_payment(payment: str, *, work: bytes, buyer: bytes, seller: bytes,
                 nonce: bytes) -> bytes:
    """The credential *payment* bound to one request and sealed to *seller*'s key."""
    return seal_to(_credential(payment, work=work, buyer=buyer, seller=seller, nonce=nonce),
                   _key(seller, "seller"))


@dataclass(frozen=True, slots=True)
class PurchaseRequest:
    work: bytes
    buyer: bytes
    seller: bytes
    method: str
    sealed_payment: bytes  # seal_payment(): only the seller opens it (open_payment)
    nonce: bytes
    ts: datetime
    receipts: tuple[bytes, ...]  # signed transfer receipt envelopes, as the buyer holds them

    @classmethod
    def seal(cls, *, work: bytes, buyer: bytes, seller: bytes, method: str, payment: str,
             nonce: bytes, ts: datetime, receipts: tuple[bytes, ...] = ()
             ) -> PurchaseRequest:
        """A request whose credential *payment* is sealed to *seller* (the way to make
        one: the seller named is the only key that can read the credential)."""
        return cls(work=work, buyer=buyer, seller=seller, method=method,
                   sealed_payment=seal_payment(payment, work=work, buyer=buyer,
                                               seller=seller, nonce=nonce),
                   nonce=nonce, ts=ts, receipts=receipts)

    def __post_init__(self) -> None:
        for name in ("work", "buyer", "seller"):
            _key(getattr(self, name), name)
        _check_method(self.method)
        if not isinstance(self.sealed_payment, bytes) \
                or not 48 < len(self.sealed_payment) <= MAX_SEALED_PAYMENT:
            raise ValueError(f"a sealed payment credential is 49-{MAX_SEALED_PAYMENT} bytes")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_LEN:
            raise ValueError(f"a nonce is {NONCE_LEN} bytes")
        object.__setattr__(self, "ts", _ts(self.ts))
        if len(self.receipts) > MAX_SERVED_BY or any(
                not isinstance(r, bytes) or len(r) > MAX_RECEIPT_SIZE for r in self.receipts):
            raise ValueError(f"at most {MAX_SERVED_BY} receipts of at most "
                             f"{MAX_RECEIPT_SIZE} bytes")

    def to_dict(self) -> dict[str, object]:
        return {"buyer": self.buyer, "method": self.method.encode(), "nonce": self.nonce,
                "receipts": list(self.receipts), "sealed_payment": self.sealed_payment,
                "seller": self.seller, "ts": int(self.ts.timestamp()), "type": PURCHASE_TYPE,
                "v": PURCHASE_VERSION, "work": self.work}

    @classmethod
    def from_dict(cls, raw: Any) -> PurchaseRequest:
        d = as_dict(raw, "purchase request", frozenset(
            {"type", "v", "work", "buyer", "seller", "method", "sealed_payment", "nonce",
             "ts", "receipts"}))
        check_version(d, PURCHASE_TYPE, "purchase request", PURCHASE_VERSION)
        try:
            return cls(
                work=as_bytes(d["work"], "work id", 32),
                buyer=as_bytes(d["buyer"], "buyer key", 32),
                seller=as_bytes(d["seller"], "seller key", 32),
                method=as_text(d["method"], "payment method", max_len=32),
                sealed_payment=as_bytes(d["sealed_payment"], "sealed payment credential",
                                        max_len=MAX_SEALED_PAYMENT),
                nonce=as_bytes(d["nonce"], "nonce", NONCE_LEN),
                ts=datetime.fromtimestamp(as_int(d["ts"], "time", 0, MAX_TS), UTC),
                receipts=tuple(as_bytes(r, "receipt", max_len=MAX_RECEIPT_SIZE)
                               for r in as_list(d["receipts"], "receipts", MAX_SERVED_BY)),
            )
        except ValueError as e:
            raise MalformedObject(f"the purchase request is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class SignedPurchase:
    body: bytes
    request: PurchaseRequest
    sig: bytes

    @classmethod
    def sign(cls, request: PurchaseRequest, buyer: Identity) -> SignedPurchase:
        if buyer.public_key != request.buyer:
            raise ValueError("only the buyer signs a purchase request")
        body = _canonical.encode(request.to_dict())
        return cls(body, request, buyer.sign(domain=PURCHASE_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(PURCHASE_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPurchase:
        body, d, sig = read_signed(data, PURCHASE_TYPE, max_size=MAX_PURCHASE_SIZE,
                                   what="purchase request")
        return cls(body, PurchaseRequest.from_dict(d), sig)


def verify_purchase(signed: SignedPurchase, *, seller: bytes, work: bytes,
                    terms: PaidTerms) -> None:
    """Verify a purchase request as the seller it is addressed to.

    Checks, in order:
      (1) the buyer signed the request bytes                          (InvalidSignature);
      (2) it is addressed to *seller*, a seller the terms name   ("wrong-seller",
          "not-a-seller");
      (3) it is for *work*                                            ("wrong-work").
    The receipts it carries are checked by served_by_from_receipts; the sealed credential
    by open_payment; the nonce and the payment by the seller (replays, vouchers).
    """
    r = signed.request
    # (1)
    verify_signature(pk=r.buyer, domain=PURCHASE_DOMAIN, message=signed.body,
                     signature=signed.sig)
    # (2)
    if r.seller != seller:
        raise PaymentRejected(
            f"this request is for seller {fingerprint(r.seller)}, not {fingerprint(seller)}",
            reason="wrong-seller", remedy="send it to the seller it names")
    if seller not in terms.sellers:
        raise PaymentRejected(f"{fingerprint(seller)} is not a seller of this work",
                              reason="not-a-seller",
                              remedy="buy from a seller the license names")
    # (3)
    if r.work != work:
        raise PaymentRejected("the request is for another work", reason="wrong-work")


def open_payment(signed: SignedPurchase, seller: Identity) -> str:
    """The credential of a request addressed to *seller* (after verify_purchase), opened
    with the seller's secret key.

    PaymentRejected "sealed-to-another" when the box does not open with this key (it was
    sealed to another seller, or tampered with); "other-request" when it opens but was
    made for another request (a box lifted from another buyer's request: its code stays
    that buyer's).
    """
    r = signed.request
    raw = open_sealed(r.sealed_payment, seller)
    if raw is None:
        raise PaymentRejected("the payment credential is sealed to another key",
                              reason="sealed-to-another",
                              remedy="seal it to the seller the request is sent to")
    try:
        d = as_dict(_canonical.decode(raw, max_size=MAX_SEALED_PAYMENT,
                                      what="payment credential"), "payment credential",
                    frozenset({"type", "v", "work", "buyer", "seller", "nonce", "payment"}))
        check_version(d, CREDENTIAL_TYPE, "payment credential")
        payment = _check_payment(as_text(d["payment"], "payment credential",
                                         max_len=MAX_PAYMENT_TEXT))
    except (ValueError, MalformedObject):
        raise PaymentRejected("the sealed payment credential is not one",
                              reason="other-request") from None
    if (d["work"], d["buyer"], d["seller"], d["nonce"]) != (r.work, r.buyer, r.seller,
                                                            r.nonce):
        raise PaymentRejected("the sealed payment credential was made for another request",
                              reason="other-request",
                              remedy="a buyer seals its own code into its own request")
    return payment


def served_by_from_receipts(receipts: Sequence[bytes], *, work: bytes, buyer: bytes,
                            size: int) -> tuple[Served, ...]:
    """Who served *buyer*, from its own signed receipts for *work*: the latest receipt per
    uploader, each verified; bytes capped so their sum never exceeds *size*
    (largest-remainder scaling). PaymentRejected("bad-receipts") for any bad receipt."""
    latest: dict[bytes, int] = {}
    seqs: dict[bytes, int] = {}
    for raw in receipts:
        try:
            s = SignedReceipt.from_bytes(raw)
            verify_receipt(s)
        except VerificationError as e:
            raise PaymentRejected(f"a transfer receipt in the request is bad: {e.message}",
                                  reason="bad-receipts") from None
        rc = s.receipt
        if rc.work != work or rc.downloader != buyer:
            raise PaymentRejected("a transfer receipt in the request is for another work "
                                  "or another buyer", reason="bad-receipts")
        if rc.seq > seqs.get(rc.uploader, 0):
            seqs[rc.uploader], latest[rc.uploader] = rc.seq, min(rc.bytes, size)
    rows = sorted(((pk, n) for pk, n in latest.items() if n > 0), key=lambda kv: kv[0])
    total = sum(n for _, n in rows)
    if total > size:  # scale down to the work's size, exactly, by largest remainder
        shares = [(pk, n * size // total, n * size % total) for pk, n in rows]
        left = size - sum(q for _, q, _ in shares)
        order = sorted(range(len(shares)), key=lambda i: (-shares[i][2], shares[i][0]))
        bump = set(order[:left])
        rows = [(pk, q + (1 if i in bump else 0)) for i, (pk, q, _) in enumerate(shares)]
    return tuple(Served(pk, n) for pk, n in rows if n > 0)


# -- the receipt ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentReceipt:
    """A sale, signed by the seller (v2): the buyer-signed purchase request it answers,
    and the issued code it spent (the signed issuance record of the code's batch, the
    code's hash and its Merkle proof). ``amount`` is the code's face value (0 for a gift
    or press code). Who carried the work to the buyer is not the seller's word: the
    audit reads it from every receipt the buyer signed (the request carries the buyer's
    own at the time of purchase)."""

    work: bytes
    buyer: bytes
    seller: bytes
    amount: int
    currency: str
    method: str
    payment_ref: str
    nonce: bytes
    ts: datetime
    request: SignedPurchase
    issuance: SignedIssuance
    code: bytes
    proof: MerkleProof

    def __post_init__(self) -> None:
        for name in ("work", "buyer", "seller"):
            _key(getattr(self, name), name)
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) \
                or not 0 <= self.amount <= 10**15:
            raise ValueError("an amount is an integer in minor units, 0 for a gift")
        if not (isinstance(self.currency, str) and len(self.currency) == 3
                and self.currency.isascii() and self.currency.isalpha()
                and self.currency.isupper()):
            raise ValueError("a currency is an ISO 4217 code")
        _check_method(self.method)
        if not (isinstance(self.payment_ref, str) and 0 < len(self.payment_ref) <= 128
                and self.payment_ref.isascii() and self.payment_ref.isprintable()
                and self.payment_ref == self.payment_ref.strip()):  # as_text refuses them
            raise ValueError("a payment ref is 1-128 printable ASCII characters, without "
                             "outer spaces")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_LEN:
            raise ValueError(f"a nonce is {NONCE_LEN} bytes")
        object.__setattr__(self, "ts", _ts(self.ts))
        if not isinstance(self.request, SignedPurchase) \
                or not isinstance(self.issuance, SignedIssuance) \
                or not isinstance(self.proof, MerkleProof):
            raise TypeError("a payment receipt holds a SignedPurchase, a SignedIssuance and "
                            "a MerkleProof")
        r = self.request.request
        if (r.work, r.buyer, r.seller, r.nonce, r.method) != (
                self.work, self.buyer, self.seller, self.nonce, self.method):
            raise ValueError("the payment receipt is not the answer to the request it holds")
        _key(self.code, "a code hash")
        index = self.proof.index
        # The parser's bounds: a seller must not sign a proof no buyer can read back.
        if not isinstance(index, int) or isinstance(index, bool) \
                or not 0 <= index <= MAX_PROOF_INDEX:
            raise ValueError(f"a Merkle proof's leaf index is an integer in "
                             f"0..{MAX_PROOF_INDEX}")
        if len(self.proof.path) > MAX_PROOF or any(
                not isinstance(h, bytes) or len(h) != 32 for h in self.proof.path):
            raise ValueError(f"a Merkle proof is at most {MAX_PROOF} hashes of 32 bytes")

    @property
    def request_id(self) -> bytes:
        """What a sale is deduplicated on: the hash of the buyer-signed request."""
        return hashlib.sha256(self.request.body).digest()

    def to_dict(self) -> dict[str, object]:
        return {"amount": self.amount, "buyer": self.buyer, "code": self.code,
                "currency": self.currency.encode(), "issuance": self.issuance.to_bytes(),
                "method": self.method.encode(), "nonce": self.nonce,
                "payment_ref": self.payment_ref.encode(),
                "proof": {"index": self.proof.index, "path": list(self.proof.path)},
                "request": self.request.to_bytes(), "seller": self.seller,
                "ts": int(self.ts.timestamp()), "type": PAYMENT_TYPE, "v": PAYMENT_VERSION,
                "work": self.work}

    @classmethod
    def from_dict(cls, raw: Any) -> PaymentReceipt:
        d = as_dict(raw, "payment receipt", frozenset(
            {"type", "v", "work", "buyer", "seller", "amount", "currency", "method",
             "payment_ref", "nonce", "ts", "request", "issuance", "code", "proof"}))
        check_version(d, PAYMENT_TYPE, "payment receipt", PAYMENT_VERSION)
        try:
            pd = as_dict(d["proof"], "Merkle proof", frozenset({"index", "path"}))
            proof = MerkleProof(as_int(pd["index"], "leaf index", 0, MAX_PROOF_INDEX), tuple(
                as_bytes(h, "proof hash", 32) for h in as_list(pd["path"], "proof",
                                                               MAX_PROOF)))
            return cls(
                work=as_bytes(d["work"], "work id", 32),
                buyer=as_bytes(d["buyer"], "buyer key", 32),
                seller=as_bytes(d["seller"], "seller key", 32),
                amount=as_int(d["amount"], "amount", 0, 10**15),
                currency=as_text(d["currency"], "currency", max_len=3),
                method=as_text(d["method"], "payment method", max_len=32),
                payment_ref=as_text(d["payment_ref"], "payment ref", max_len=128),
                nonce=as_bytes(d["nonce"], "nonce", NONCE_LEN),
                ts=datetime.fromtimestamp(as_int(d["ts"], "time", 0, MAX_TS), UTC),
                request=SignedPurchase.from_bytes(as_bytes(d["request"], "purchase request",
                                                           max_len=MAX_PURCHASE_SIZE)),
                issuance=_issuance(as_bytes(d["issuance"], "issuance record",
                                            max_len=MAX_ISSUANCE_SIZE)),
                code=as_bytes(d["code"], "code hash", 32),
                proof=proof,
            )
        except ValueError as e:
            raise MalformedObject(f"the payment receipt is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class SignedPayment:
    body: bytes
    payment: PaymentReceipt
    sig: bytes

    @classmethod
    def sign(cls, payment: PaymentReceipt, seller: Identity) -> SignedPayment:
        if seller.public_key != payment.seller:
            raise ValueError("only the seller it names signs a payment receipt")
        body = _canonical.encode(payment.to_dict())
        return cls(body, payment, seller.sign(domain=PAYMENT_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(PAYMENT_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPayment:
        body, d, sig = read_signed(data, PAYMENT_TYPE, max_size=MAX_PAYMENT_SIZE,
                                   what="payment receipt")
        return cls(body, PaymentReceipt.from_dict(d), sig)


# One batch's record is in every sale of its codes: parse each once (a parsed record is
# immutable, and its signature is checked by whoever uses it, never here).
_ISSUANCES: dict[bytes, SignedIssuance] = {}
_MAX_ISSUANCES = 4096


def _issuance(data: bytes) -> SignedIssuance:
    got = _ISSUANCES.get(data)
    if got is None:
        got = SignedIssuance.from_bytes(data)
        if len(_ISSUANCES) >= _MAX_ISSUANCES:
            _ISSUANCES.clear()
        _ISSUANCES[data] = got
    return got


def check_issued(p: PaymentReceipt) -> str | None:
    """Why *p* does not spend an issued code of its own seller at its face value, or None
    (the issuance record's signature is checked by the caller)."""
    i = p.issuance.issuance
    if i.collector != p.seller:
        return "its code was issued by another key than the seller's"
    if i.work != p.work:
        return "its code was issued for another work"
    if p.proof.root_of(p.code, i.count) != i.root:
        return "its code is not in the batch it names (the Merkle proof fails)"
    if (p.amount, p.currency) != (i.face, i.currency):
        return (f"it books {p.amount} {p.currency}, the code's face value is {i.face} "
                f"{i.currency} (minor units)")
    return None


def verify_payment(signed: SignedPayment, *, work: bytes, terms: PaidTerms,
                   buyer: bytes | None = None) -> None:
    """Verify a payment receipt against the work's signed terms.

    Checks, in order:
      (1) the seller it names signed the receipt bytes, the buyer signed the request it
          holds, the collector signed the issuance record it holds   (InvalidSignature);
      (2) that seller is one the terms name                          ("not-a-seller");
      (3) it is for *work*                                             ("wrong-work");
      (4) for *buyer*, if given                                        ("other-buyer");
      (5) it spends a code its seller issued for this work, proven in that batch
                                                                       ("unissued");
      (6) the amount is the code's face value, in the terms' currency ("wrong-price").
    """
    p = signed.payment
    # (1)
    verify_signature(pk=p.seller, domain=PAYMENT_DOMAIN, message=signed.body,
                     signature=signed.sig)
    verify_signature(pk=p.buyer, domain=PURCHASE_DOMAIN, message=p.request.body,
                     signature=p.request.sig)
    p.issuance.verify()
    # (2)
    if p.seller not in terms.sellers:
        raise PaymentRejected(f"{fingerprint(p.seller)} is not a seller of this work",
                              reason="not-a-seller")
    # (3)
    if p.work != work:
        raise PaymentRejected("the payment receipt is for another work", reason="wrong-work")
    # (4)
    if buyer is not None and p.buyer != buyer:
        raise PaymentRejected("the payment receipt is for another buyer",
                              reason="other-buyer")
    # (5), (6)
    why = check_issued(p)
    if why is not None:
        raise PaymentRejected(f"the payment receipt {why}",
                              reason="wrong-price" if "face value" in why else "unissued")
    if p.currency != terms.currency:
        raise PaymentRejected(f"the payment is in {p.currency}, the work sells in "
                              f"{terms.currency}", reason="wrong-price")
    if p.amount > terms.price:
        raise PaymentRejected(f"the code's face value {p.amount} is over the price "
                              f"{terms.price} (minor units)", reason="wrong-price")
