"""Paid terms: prices are integers in ISO 4217 minor units, never floats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pdist.errors import InputError
from p2pdist.licensing._terms import (
    MAX_PRICE,
    PaidTerms,
    currency_exponent,
    format_price,
    paid_terms,
    parse_price,
)

PK = bytes(range(32))


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("5", "EUR", 500),
    ("5.00", "EUR", 500),
    ("5.5", "EUR", 550),
    ("0.01", "EUR", 1),
    (" 12.34 ", "eur", 1234),
    ("500", "JPY", 500),
    ("1.234", "BHD", 1234),
    ("0.001", "KWD", 1),
    ("1.0000", "CLF", 10000),  # four minor digits
])
def test_prices_become_exact_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_price(text, currency) == minor


@pytest.mark.parametrize(("text", "currency"), [
    pytest.param("-5", "EUR", id="negative"),
    pytest.param("0", "EUR", id="zero"),
    pytest.param("0.00", "EUR", id="zero-with-cents"),
    pytest.param("5.001", "EUR", id="more-decimals-than-the-currency"),
    pytest.param("5.5", "JPY", id="decimals-for-a-currency-without"),
    pytest.param("1e3", "EUR", id="exponent-notation"),
    pytest.param("NaN", "EUR", id="nan"),
    pytest.param("inf", "EUR", id="infinity"),
    pytest.param("5,00", "EUR", id="decimal-comma"),
    pytest.param("", "EUR", id="empty"),
    pytest.param("+5", "EUR", id="plus-sign"),
    pytest.param("\u0665", "EUR", id="non-ascii-digit"),
    pytest.param("5.", "EUR", id="trailing-point"),
    pytest.param(".5", "EUR", id="leading-point"),
    pytest.param("99999999999999999", "EUR", id="too-many-digits"),
    pytest.param(str(MAX_PRICE), "EUR", id="over-the-maximum"),
    pytest.param("5", "EURO", id="unknown-currency"),
    pytest.param("5", "XAU", id="gold-is-not-money-here"),
    pytest.param("5", "XXX", id="no-currency"),
    pytest.param("5", "", id="empty-currency"),
    pytest.param("5", "E\u00dcR", id="non-ascii-currency"),
])
def test_bad_prices_are_refused_with_a_remedy(text: str, currency: str) -> None:
    with pytest.raises(InputError) as e:
        parse_price(text, currency)
    assert e.value.remedy


_money = sorted(c for c in ("EUR", "USD", "GBP", "JPY", "BHD", "KWD", "CHF", "ISK", "CLF")
                if currency_exponent(c) is not None)


@given(st.sampled_from(_money), st.integers(1, 10**12))
def test_format_then_parse_round_trips(currency: str, minor: int) -> None:
    text, code = format_price(minor, currency).split(" ")
    assert code == currency
    assert parse_price(text, currency) == minor


def test_format_price_examples() -> None:
    assert format_price(500, "EUR") == "5.00 EUR"
    assert format_price(7, "EUR") == "0.07 EUR"
    assert format_price(500, "JPY") == "500 JPY"
    assert format_price(1234, "BHD") == "1.234 BHD"


@pytest.mark.parametrize("kw", [
    pytest.param({"price": 0}, id="zero-price"),
    pytest.param({"price": -1}, id="negative-price"),
    pytest.param({"price": 5.0}, id="float-price"),
    pytest.param({"price": True}, id="bool-price"),
    pytest.param({"currency": "EURO"}, id="unknown-currency"),
    pytest.param({"redistributor_bps": 10_001}, id="share-over-100pc"),
    pytest.param({"redistributor_bps": -1}, id="negative-share"),
    pytest.param({"sellers": ()}, id="no-seller"),
    pytest.param({"sellers": (PK, PK)}, id="seller-twice"),
    pytest.param({"sellers": (PK[:31],)}, id="short-seller-key"),
    pytest.param({"sellers": tuple(bytes([i]) * 32 for i in range(17))}, id="17-sellers"),
])
def test_paid_terms_refuse_inconsistent_values(kw: dict[str, object]) -> None:
    fields: dict[str, object] = {"price": 500, "currency": "EUR", "redistributor_bps": 1500,
                                 "sellers": (PK,)}
    fields.update(kw)
    with pytest.raises(ValueError):
        PaidTerms(**fields)  # type: ignore[arg-type]


def test_paid_terms_in_plain_words() -> None:
    t = paid_terms("5.00", "eur", redistributor_bps=1500, sellers=(PK,))
    assert (t.price, t.currency, t.redistributor_bps) == (500, "EUR", 1500)
    assert t.plain_words(("Ada",)) == (
        "For sale at 5.00 EUR by Ada — anyone may share the encrypted copy; fans who seed "
        "it earn 15% of the sales they carry")
    with pytest.raises(InputError):
        paid_terms("5", "EUR", redistributor_bps=20_000, sellers=(PK,))
