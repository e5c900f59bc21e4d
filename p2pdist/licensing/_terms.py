"""A work's terms: Creative Commons by SPDX id, or for sale; and how to say them plainly.

Money is integers in minor units of an ISO 4217 currency (cents for EUR, yen for JPY):
never a float. `parse_price("5.00", "EUR")` is 500; "5.001" EUR is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import iso4217

from p2pdist.errors import InputError

__all__ = [
    "CC_LICENSES",
    "MAX_PRICE",
    "MAX_SELLERS",
    "CCTerms",
    "PaidTerms",
    "Terms",
    "cc_terms",
    "currency_exponent",
    "format_price",
    "paid_terms",
    "parse_price",
]

TOTAL_BPS = 10_000
MAX_SELLERS = 16
MAX_PRICE = 10**15  # minor units: far above any sale, far below any overflow
DEFAULT_REDISTRIBUTOR_BPS = 1_000
_PRICE_RE = re.compile(r"^[0-9]{1,16}(?:\.[0-9]{1,4})?$")


@dataclass(frozen=True, slots=True)
class _CC:
    label: str
    adapt: bool
    attribution: bool
    noncommercial: bool
    sharealike: bool
    url: str


_BASE = "https://creativecommons.org/licenses"
CC_LICENSES: dict[str, _CC] = {
    "CC0-1.0": _CC("CC0 1.0", True, False, False, False,
                   "https://creativecommons.org/publicdomain/zero/1.0/"),
    "CC-BY-4.0": _CC("CC BY 4.0", True, True, False, False, f"{_BASE}/by/4.0/"),
    "CC-BY-SA-4.0": _CC("CC BY-SA 4.0", True, True, False, True, f"{_BASE}/by-sa/4.0/"),
    "CC-BY-NC-4.0": _CC("CC BY-NC 4.0", True, True, True, False, f"{_BASE}/by-nc/4.0/"),
    "CC-BY-NC-SA-4.0": _CC("CC BY-NC-SA 4.0", True, True, True, True, f"{_BASE}/by-nc-sa/4.0/"),
    "CC-BY-ND-4.0": _CC("CC BY-ND 4.0", False, True, False, False, f"{_BASE}/by-nd/4.0/"),
    "CC-BY-NC-ND-4.0": _CC("CC BY-NC-ND 4.0", False, True, True, False,
                           f"{_BASE}/by-nc-nd/4.0/"),
}


@dataclass(frozen=True, slots=True)
class CCTerms:
    """Creative Commons terms, named by SPDX id."""

    spdx: str

    def __post_init__(self) -> None:
        if self.spdx not in CC_LICENSES:
            raise ValueError(f"unknown Creative Commons SPDX id {self.spdx!r}")

    kind = "cc"

    @property
    def license_id(self) -> str:
        return self.spdx

    @property
    def label(self) -> str:
        return CC_LICENSES[self.spdx].label

    @property
    def url(self) -> str:
        return CC_LICENSES[self.spdx].url

    def to_dict(self) -> dict[str, object]:
        return {"kind": "cc", "spdx": self.spdx}

    def plain_words(self, creators: tuple[str, ...]) -> str:
        """E.g. 'CC BY-SA 4.0 — you may share and adapt, credit Ada, share alike'."""
        cc = CC_LICENSES[self.spdx]
        if self.spdx == "CC0-1.0":
            return f"{cc.label} — public domain: you may share and adapt, no credit required"
        parts = ["you may share and adapt" if cc.adapt else "you may share"]
        parts.append(f"credit {' & '.join(creators)}")
        if cc.noncommercial:
            parts.append("non-commercial only")
        if cc.sharealike:
            parts.append("share alike")
        if not cc.adapt:
            parts.append("no derivatives")
        return f"{cc.label} — {', '.join(parts)}"


def cc_terms(spdx: str) -> CCTerms:
    """CC terms for a user-given SPDX id; InputError lists the known ones."""
    # Users type ids in any case; the signed form is always the canonical SPDX spelling.
    spdx = next((k for k in CC_LICENSES if k.lower() == spdx.strip().lower()), spdx)
    if spdx not in CC_LICENSES:
        known = ", ".join(CC_LICENSES)
        raise InputError(f"unknown license {spdx!r}", remedy=f"use one of: {known}")
    return CCTerms(spdx)


def currency_exponent(code: str) -> int | None:
    """Minor-unit digits of an ISO 4217 money currency (EUR 2, JPY 0, BHD 3), else None.

    Codes without minor units (precious metals, test codes, the no-currency code) are not
    money here: None.
    """
    if not (len(code) == 3 and code.isascii() and code.isupper()):
        return None
    try:
        exp = iso4217.Currency(code).exponent
    except ValueError:
        return None
    return exp if isinstance(exp, int) else None


def format_price(price: int, currency: str) -> str:
    """500, "EUR" -> "5.00 EUR"; 500, "JPY" -> "500 JPY"."""
    exp = currency_exponent(currency) or 0
    if exp == 0:
        return f"{price} {currency}"
    whole, minor = divmod(price, 10**exp)
    return f"{whole}.{minor:0{exp}d} {currency}"


def parse_price(text: str, currency: str) -> int:
    """A price as typed ("5", "5.00") in *currency* -> minor units; InputError else."""
    code = currency.strip().upper()
    exp = currency_exponent(code)
    if exp is None:
        raise InputError(f"unknown currency {currency!r}",
                         remedy="use an ISO 4217 code such as EUR, USD, GBP or JPY")
    t = text.strip()
    if not _PRICE_RE.fullmatch(t):
        raise InputError(f"{text!r} is not a price",
                         remedy="write it like 5.00 (digits, an optional point; no sign)")
    minor = Decimal(t) * 10**exp
    if minor != minor.to_integral_value():
        raise InputError(f"{text} has more decimals than {code} allows ({exp})",
                         remedy=f"round it to {exp} decimal(s)")
    value = int(minor)
    if not 0 < value <= MAX_PRICE:
        raise InputError(f"the price must be above zero and at most "
                         f"{format_price(MAX_PRICE, code)}",
                         remedy="publish a free work under a Creative Commons license")
    return value


@dataclass(frozen=True, slots=True)
class PaidTerms:
    """A work for sale: its price, who may sell it, and the share for the fans who carry it.

    ``redistributor_bps`` of each sale goes to the p2pdist nodes that served that buyer,
    pro rata to verified bytes; the rest to the rights holders by the split sheet.
    ``seller_api`` is an optional HOST:PORT hint where a seller's node may be found.
    """

    price: int
    currency: str
    redistributor_bps: int
    sellers: tuple[bytes, ...]
    seller_api: str | None = None

    kind = "paid"

    def __post_init__(self) -> None:
        if not isinstance(self.price, int) or isinstance(self.price, bool) \
                or not 0 < self.price <= MAX_PRICE:
            raise ValueError("a price is a positive integer in minor units")
        if currency_exponent(self.currency) is None:
            raise ValueError(f"unknown ISO 4217 currency {self.currency!r}")
        if not isinstance(self.redistributor_bps, int) \
                or isinstance(self.redistributor_bps, bool) \
                or not 0 <= self.redistributor_bps <= TOTAL_BPS:
            raise ValueError("the redistributor share is 0 to 10000 bps")
        if not 1 <= len(self.sellers) <= MAX_SELLERS:
            raise ValueError(f"a paid work names 1 to {MAX_SELLERS} sellers")
        if any(not isinstance(k, bytes) or len(k) != 32 for k in self.sellers):
            raise ValueError("a seller key is 32 bytes")
        if len(set(self.sellers)) != len(self.sellers):
            raise ValueError("a seller appears twice")
        if self.seller_api is not None and not (
                isinstance(self.seller_api, str) and 3 <= len(self.seller_api) <= 261):
            raise ValueError("the seller API hint is HOST:PORT")

    @property
    def license_id(self) -> str:
        return "paid"

    @property
    def label(self) -> str:
        return f"for sale, {format_price(self.price, self.currency)}"

    @property
    def url(self) -> str:
        return ""

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "currency": self.currency.encode(), "kind": "paid", "price": self.price,
            "redistributor_bps": self.redistributor_bps, "sellers": list(self.sellers),
        }
        if self.seller_api is not None:
            d["seller_api"] = self.seller_api.encode()
        return d

    def plain_words(self, creators: tuple[str, ...]) -> str:
        """E.g. 'For sale at 5.00 EUR by Ada — fans who seed it earn 15% of the sales
        they carry'."""
        share = self.redistributor_bps / 100
        pct = f"{share:g}%"
        fans = (f"fans who seed it earn {pct} of the sales they carry"
                if self.redistributor_bps else "fans who seed it earn no share of sales")
        return (f"For sale at {format_price(self.price, self.currency)} by "
                f"{' & '.join(creators)} — anyone may share the encrypted copy; {fans}")


Terms = CCTerms | PaidTerms


def paid_terms(price: str, currency: str, *, redistributor_bps: int | None,
               sellers: tuple[bytes, ...], seller_api: str | None = None) -> PaidTerms:
    """Paid terms from what a person typed; InputError for anything wrong."""
    value = parse_price(price, currency)
    bps = DEFAULT_REDISTRIBUTOR_BPS if redistributor_bps is None else redistributor_bps
    if not 0 <= bps <= TOTAL_BPS:
        raise InputError(f"--redistributor-share {bps} is out of range",
                         remedy="give basis points from 0 to 10000 (1500 = 15%)")
    try:
        return PaidTerms(value, currency.strip().upper(), bps, sellers, seller_api)
    except ValueError as e:
        raise InputError(str(e)) from None
