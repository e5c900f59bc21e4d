"""Payment methods: how a seller decides a purchase request has been paid.

A method turns a verified PurchaseRequest into a payment reference, or refuses it. The
seller's node looks the method up by the request's ``method`` field, so a card processor
or a Lightning invoice is one more class here; nothing else changes.

Vouchers are the first method: single-use codes a seller issues (merch tables, gifts,
press), redeemed atomically in the seller's voucher book.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from p2pdist.payouts.payments import PurchaseRequest
from p2pdist.payouts.vouchers import VoucherBook

__all__ = ["PaymentMethod", "VoucherMethod"]


class PaymentMethod(Protocol):
    """One way to pay. ``authorize`` is called once per purchase, after the request's
    signature, seller and work were verified; it must be atomic (a payment is taken once
    or not at all) and raise a P2PDistError with a reason a buyer can act on."""

    name: str

    def authorize(self, request: PurchaseRequest, payment: str, *, now: datetime) -> str:
        """Take the payment *payment* (the request's credential, opened by the seller);
        return its reference (stored in the payment receipt)."""
        ...


class VoucherMethod:
    """Pay with a single-use voucher code of this work."""

    name = "voucher"

    def __init__(self, book: VoucherBook) -> None:
        self.book = book

    def authorize(self, request: PurchaseRequest, payment: str, *, now: datetime) -> str:
        return self.book.redeem(request.work, payment, buyer=request.buyer, now=now)
