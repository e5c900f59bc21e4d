"""Creative Commons terms by SPDX id, and how to say them in plain words."""

from __future__ import annotations

from dataclasses import dataclass

from p2pdist.errors import InputError

__all__ = ["CC_LICENSES", "CCTerms", "cc_terms"]


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
