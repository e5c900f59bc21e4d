"""What counts as printable text in names, titles and credits we sign or show."""

from __future__ import annotations

import unicodedata

__all__ = ["is_printable"]

# Control, format (bidi overrides, zero-width), surrogate and line/paragraph separators
# can hide or reorder what a person reads.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_printable(text: str, *, max_len: int) -> bool:
    """True when *text* is 1..max_len characters, none of them hidden or controlling."""
    return (
        0 < len(text) <= max_len
        and text == text.strip()
        and not any(unicodedata.category(c) in _BAD_CATEGORIES for c in text)
    )
