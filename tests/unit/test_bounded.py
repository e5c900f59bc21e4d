"""What a node remembers per request or per peer stays bounded: BoundedMap, and the
purchase nonces a seller keeps, pushed past their caps."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from p2pdist._api import ApiError
from p2pdist._bounded import BoundedMap
from p2pdist._credit import open_ledger
from p2pdist.library import Library
from p2pdist.paid import PAYMENT_ISSUED, VOUCHERS_NAME, Shop, issue_vouchers
from p2pdist.payouts.payments import PurchaseRequest, SignedPurchase
from tests.unit.test_review_paid import ADA, FAN, _identity, _request, sold

__all__ = ["sold"]  # the fixture, shared with test_review_paid


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bounded_map_forgets_the_oldest_key_past_its_cap() -> None:
    m: BoundedMap[int, int] = BoundedMap(100, 60.0, clock=Clock())
    for i in range(10_000):
        m.set(i, i)
    assert len(m) == 100
    assert list(m) == list(range(9_900, 10_000))
    assert 0 not in m and m.get(9_999) == 9_999


def test_bounded_map_forgets_a_key_past_its_time() -> None:
    clock = Clock()
    m: BoundedMap[str, int] = BoundedMap(10, 5.0, clock=clock)
    m.set("a", 1)
    clock.t += 3
    m.set("b", 2)
    clock.t += 3
    m.set("a", 3)  # set again: its time starts over
    clock.t += 3
    assert ("a" in m, "b" in m) == (True, False)
    assert m.get("b") is None and len(m) == 1
    clock.t += 3
    assert len(m) == 0 and m.items() == []


def _unknown_code(i: int) -> str:
    from p2pdist.payouts.vouchers import _VALUE, ALPHABET, _check_value

    data = "".join(ALPHABET[(i >> (5 * k)) & 31] for k in range(16))
    return data + ALPHABET[_check_value(_VALUE[c] for c in data)]


def test_a_flood_of_purchase_requests_keeps_at_most_max_nonces(
        sold: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Each signed request leaves its nonce behind, paid or not; a stream of requests
    # signed with throwaway keys grew the seller's set without end.
    import p2pdist.paid

    monkeypatch.setattr(p2pdist.paid, "MAX_NONCES", 64)
    home, work = sold
    [code] = issue_vouchers(home, ADA, work, 1)
    log = open_ledger(home, ADA.public_key)
    shop = Shop(ADA, Library(home), log, home / VOUCHERS_NAME)
    try:
        first = _request(work, code)
        assert shop.handle(first)["ok"]
        for i in range(500):
            with pytest.raises(ApiError) as e:
                shop.handle(_request(work, _unknown_code(i), _identity(f"t{i}")))
            assert e.value.reason == "unknown"
        assert len(shop._nonces) == 64
        # The newest are still refused as replays...
        last = _request(work, _unknown_code(10_000))
        with pytest.raises(ApiError):
            shop.handle(last)
        with pytest.raises(ApiError) as e:
            shop.handle(last)
        assert e.value.reason == "replayed"
        # ... and a forgotten one reaches the payment, which answers the paid request
        # as the repeat it is: one payment, never two.
        again = shop.handle(first)
        assert again["repeated"] is True
        assert len(log.payloads(PAYMENT_ISSUED)) == 1
    finally:
        shop.close()
        log.close()


def test_nonces_outlive_the_request_age_window_only(sold: tuple[Path, str]) -> None:
    from p2pdist.paid import REQUEST_MAX_AGE

    home, work = sold
    log = open_ledger(home, ADA.public_key)
    shop = Shop(ADA, Library(home), log, home / VOUCHERS_NAME)
    try:
        # A request older than the window is stale whatever its nonce: the nonces need
        # not be kept longer than twice the window.
        assert shop._nonces.ttl == 2 * REQUEST_MAX_AGE.total_seconds()
        old = SignedPurchase.sign(PurchaseRequest.seal(
            work=bytes.fromhex(work), buyer=FAN.public_key, seller=ADA.public_key,
            method="voucher", payment=_unknown_code(1), nonce=os.urandom(16),
            ts=(datetime.now(UTC) - 2 * REQUEST_MAX_AGE).replace(microsecond=0),
            receipts=()), FAN).to_bytes()
        with pytest.raises(ApiError) as e:
            shop.handle(old)
        assert e.value.reason == "stale"
    finally:
        shop.close()
        log.close()
