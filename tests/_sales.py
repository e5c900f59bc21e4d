"""Real sales for tests, made with the project's own classes and the signer's own keys:
a batch of codes with its signed issuance record, and v2 payment receipts that answer a
buyer-signed purchase request and prove their code. An attacker makes them this way too
(a seller signing what it likes, a buyer signing its own requests)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from p2pdist.identity import Identity
from p2pdist.payouts.issuance import (
    Issuance,
    MerkleProof,
    SignedIssuance,
    merkle_levels,
    merkle_proof,
)
from p2pdist.payouts.payments import (
    PaymentReceipt,
    PurchaseRequest,
    SignedPayment,
    SignedPurchase,
)
from p2pdist.payouts.vouchers import payment_ref

T0 = datetime(2025, 1, 1, tzinfo=UTC)

__all__ = ["T0", "Batch", "request", "sign_payment"]


def request(buyer: Identity, seller: bytes, work: bytes, *, ts: datetime = T0,
            nonce: bytes | None = None, receipts: Sequence[bytes] = (),
            code: str = "code") -> SignedPurchase:
    """A purchase request the buyer signs (its credential sealed to *seller*)."""
    return SignedPurchase.sign(PurchaseRequest.seal(
        work=work, buyer=buyer.public_key, seller=seller, method="voucher", payment=code,
        nonce=nonce if nonce is not None else os.urandom(16), ts=ts,
        receipts=tuple(receipts)), buyer)


def sign_payment(seller: Identity, req: SignedPurchase, issuance: SignedIssuance,
                 code: bytes, proof: MerkleProof, *, amount: int | None = None,
                 currency: str | None = None, ts: datetime | None = None) -> SignedPayment:
    r = req.request
    i = issuance.issuance
    return SignedPayment.sign(PaymentReceipt(
        work=r.work, buyer=r.buyer, seller=seller.public_key,
        amount=i.face if amount is None else amount,
        currency=i.currency if currency is None else currency, method=r.method,
        payment_ref=payment_ref(code), nonce=r.nonce, ts=ts or r.ts, request=req,
        issuance=issuance, code=code, proof=proof), seller)


@dataclass
class Batch:
    """*count* codes of *work* sold at *face* by *collector* (who signs the record)."""

    collector: Identity
    work: bytes
    face: int = 500
    currency: str = "EUR"
    count: int = 8
    ts: datetime = T0
    seed: bytes = b""
    codes: list[bytes] = field(init=False)
    signed: SignedIssuance = field(init=False)
    _levels: list[list[bytes]] = field(init=False)
    _used: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        seed = self.seed or os.urandom(16)
        self.codes = sorted(hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
                            for i in range(self.count))
        self._levels = merkle_levels(self.codes)
        self.signed = SignedIssuance.sign(Issuance(
            work=self.work, collector=self.collector.public_key, count=self.count,
            face=self.face, currency=self.currency, root=self._levels[-1][0], ts=self.ts),
            self.collector)

    def proof(self, index: int) -> MerkleProof:
        return MerkleProof(index, merkle_proof(self._levels, index))

    def sell(self, buyer: Identity, *, index: int | None = None, ts: datetime | None = None,
             nonce: bytes | None = None, receipts: Sequence[bytes] = (),
             seller: Identity | None = None, amount: int | None = None,
             currency: str | None = None, req: SignedPurchase | None = None
             ) -> SignedPayment:
        """A payment receipt for the next unused code (or code *index*), answering a new
        request of *buyer* (or *req*), signed by *seller* (the collector by default)."""
        if index is None:
            index, self._used = self._used, self._used + 1
        who = seller or self.collector
        if req is None:
            req = request(buyer, who.public_key, self.work, ts=ts or self.ts, nonce=nonce,
                          receipts=receipts)
        return sign_payment(who, req, self.signed, self.codes[index], self.proof(index),
                            amount=amount, currency=currency, ts=ts)
