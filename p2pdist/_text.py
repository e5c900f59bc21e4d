"""Text we sign or show: what counts as printable, and how outside text is made safe.

Any string that came from outside this process (a peer's client string, a seller's
error text, a manifest's title, creators and file names, a certificate's names, a
bundle's or a report's strings, anything in an API answer) is shown only through
``shown``: its control characters (C0, DEL, C1: ESC, BEL, CSI, OSC...), format
characters (bidi overrides, zero-width), lone surrogates and line or paragraph
separators are written as visible escapes (``\\x1b``, ``\\u202e``), and it is cut to a
length. A terminal then never receives a window title, a clipboard write, a screen
clear or a disguised link from a peer, and a right-to-left override cannot make a
name read as another.

``shown`` does not make text safe inside rich markup: the CLI renders such text as
plain text, never parsed as markup (see ``p2pdist.cli``).
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["MAX_SHOWN", "hidden", "is_printable", "replace_hidden", "shown"]

# Control, format (bidi overrides, zero-width), surrogate and line/paragraph separators
# can hide or reorder what a person reads.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# The usual length of one name or message on a line; callers pass more or less.
MAX_SHOWN: Final = 200
ELLIPSIS: Final = "…"
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def hidden(c: str) -> bool:
    """True for a character that controls a terminal or hides or reorders text."""
    return unicodedata.category(c) in _BAD_CATEGORIES


def is_printable(text: str, *, max_len: int) -> bool:
    """True when *text* is 1..max_len characters, none of them hidden or controlling."""
    return (
        0 < len(text) <= max_len
        and text == text.strip()
        and not any(hidden(c) for c in text)
    )


def _escape(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def shown(text: object, *, cap: int | None = MAX_SHOWN, keep: str = "") -> str:
    """*text* made safe to show: each hidden character (``hidden``) but those in *keep*
    written as a visible escape, and at most *cap* characters in all, ending in an
    ellipsis when cut (``cap=None``: the whole text, for a page that shows it all).

    The result holds no control or format character but those in *keep*, whatever
    *text* holds (lone surrogates included). Its work is bounded by *cap*, not by the
    length of *text*.
    """
    if cap is not None and cap < 1:
        raise ValueError("cap is at least 1")
    s = text if isinstance(text, str) else str(text)
    if cap is None:
        return "".join(_escape(c) if hidden(c) and c not in keep else c for c in s)
    parts: list[str] = []
    used = 0
    for i, c in enumerate(s):
        piece = _escape(c) if hidden(c) and c not in keep else c
        if used + len(piece) > cap or (used + len(piece) == cap and i + 1 < len(s)):
            # Cut: keep room for the ellipsis, and never split an escape.
            while parts and used + len(ELLIPSIS) > cap:
                used -= len(parts.pop())
            parts.append(ELLIPSIS)
            break
        parts.append(piece)
        used += len(piece)
    return "".join(parts)


def replace_hidden(text: str, *, keep: str = "") -> str:
    """*text* with each hidden character but those in *keep* replaced by U+FFFD, one for
    one (so that styles laid over the text keep their offsets). The last guard before a
    terminal, which keeps the line breaks of its own layout."""
    if text.isprintable() or not any(hidden(c) and c not in keep for c in text):
        return text
    return "".join("\ufffd" if hidden(c) and c not in keep else c for c in text)
