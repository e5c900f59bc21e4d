"""The shape every newer signed object shares: field parsers and one envelope.

An object is canonical bencode with ``type`` and ``v``; it travels signed as::

    {"type": "<object type>/signed", "v": 1, "body": <canonical bytes>, "sig": <64 bytes>}

and the signature is ed25519 over ``domain || 0x00 || body`` by the key the body names as
its signer. The body stays a byte string, so verification runs on exactly the bytes that
were signed. (Transfer receipts and license manifests predate this module and keep their
own, equivalent envelopes: their vectors are pinned.)
"""

from __future__ import annotations

from typing import Any

from p2pdist import _canonical
from p2pdist._text import is_printable
from p2pdist.errors import MalformedObject

__all__ = ["as_bytes", "as_dict", "as_int", "as_list", "as_text", "check_version",
           "envelope", "open_envelope", "read_signed"]

MAX_COUNT = 2**63 - 1
MAX_TS = 253_402_300_799  # 9999-12-31T23:59:59Z
_ENVELOPE_KEYS = frozenset({"type", "v", "body", "sig"})


def as_dict(v: Any, what: str, keys: frozenset[str],
            optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise MalformedObject(f"the {what} is not a dict")
    have = v.keys()
    if not keys <= have or not have <= keys | optional:
        extra, missing = sorted(have - keys - optional), sorted(keys - have)
        raise MalformedObject(f"the {what} has unexpected fields {extra} or lacks {missing}")
    return v


def as_int(v: Any, what: str, low: int = 0, high: int = MAX_COUNT) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise MalformedObject(f"the {what} is not an integer")
    if not low <= v <= high:
        raise MalformedObject(f"the {what} {v} is outside {low}..{high}")
    return v


def as_bytes(v: Any, what: str, n: int | None = None, *, max_len: int = 1 << 20) -> bytes:
    if not isinstance(v, bytes) or (n is not None and len(v) != n) or len(v) > max_len:
        raise MalformedObject(f"the {what} is not {n if n is not None else 'a bounded'} bytes")
    return v


def as_text(v: Any, what: str, *, max_len: int = 300) -> str:
    if not isinstance(v, bytes):
        raise MalformedObject(f"the {what} is not a string")
    try:
        s = v.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedObject(f"the {what} is not UTF-8") from None
    if not is_printable(s, max_len=max_len):
        raise MalformedObject(f"the {what} is empty, too long or has control characters")
    return s


def as_list(v: Any, what: str, max_len: int, *, min_len: int = 0) -> list[Any]:
    if not isinstance(v, list) or not min_len <= len(v) <= max_len:
        raise MalformedObject(f"the {what} is not a list of {min_len} to {max_len} items")
    return v


def check_version(d: dict[str, Any], type_: str, what: str, v: int = 1) -> None:
    if d.get("type") != type_.encode():
        raise MalformedObject(f"this is not a {what} (type {d.get('type')!r})")
    if d.get("v") != v:
        raise MalformedObject(f"the {what} has version {d.get('v')!r}; this p2pdist reads "
                              f"version {v}", remedy="upgrade p2pdist")


def envelope(type_: str, body: bytes, sig: bytes) -> bytes:
    return _canonical.encode({"body": body, "sig": sig, "type": type_, "v": 1})


def open_envelope(data: bytes, type_: str, *, max_size: int, what: str) -> tuple[bytes, bytes]:
    """(body bytes, signature) of an envelope; MalformedObject (size first) for anything
    else. The signature is not checked here: the object's verify function does that."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("open_envelope() takes bytes")
    if len(data) > max_size:
        raise MalformedObject(f"the {what} is too large ({len(data)} bytes, "
                              f"limit {max_size})")
    d = as_dict(_canonical.decode(bytes(data), max_size=max_size, what=what), what,
                _ENVELOPE_KEYS)
    check_version(d, type_, what)
    return as_bytes(d["body"], f"{what}'s body", max_len=max_size), \
        as_bytes(d["sig"], f"{what}'s signature", 64)


def read_signed(data: bytes, type_: str, *, max_size: int, what: str
                ) -> tuple[bytes, Any, bytes]:
    """(body bytes, body decoded, signature) of the ``type_ + "/signed"`` envelope of a
    *what*; the caller's from_dict checks the decoded body, its verify function the sig."""
    body, sig = open_envelope(data, type_ + "/signed", max_size=max_size,
                              what=f"signed {what}")
    return body, _canonical.decode(body, max_size=max_size, what=what), sig
