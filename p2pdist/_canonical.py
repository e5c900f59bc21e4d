"""The one canonical encoding of signed bytes: bencode, strictly.

Canonical means: dict keys are byte strings in strictly ascending order, integers have no
leading zeros and no ``-0``, string lengths have no leading zeros, nothing trails the
value. ``decode(strict=True)`` refuses anything else, so verification always runs on the
exact bytes that were received and a second encoding of the same value cannot exist.

Dict keys decode to ``str`` through ``surrogateescape`` (so any byte string round-trips);
all other strings stay ``bytes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from p2pdist.errors import MalformedObject

__all__ = ["Value", "decode", "encode"]

Value = Any  # int | bytes | list[Value] | dict[str, Value]

MAX_DEPTH = 64
# Values one decode reads, at most: libtorrent's bdecode stops at 2 million tokens too.
# A 30 MB torrent of "i0e" holds 10 million: read in full, they took 15 s and 150 MB on
# a loaded machine; refused at 2 million, a few seconds and 30 MB.
MAX_TOKENS = 2_000_000
_MAX_INT_DIGITS = 32


def _key_bytes(k: object) -> bytes:
    if isinstance(k, bytes):
        return k
    if isinstance(k, str):
        return k.encode("utf-8", "surrogateescape")
    raise TypeError(f"bencode dict keys must be str or bytes, not {type(k).__name__}")


def encode(value: Value) -> bytes:
    """Encode *value* canonically. ``str`` values are encoded as UTF-8 byte strings."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(v: Value, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply to encode")
    if isinstance(v, bool):
        raise TypeError("bencode has no booleans; use 0/1")
    if isinstance(v, int):
        out.append(b"i%de" % v)
    elif isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        out.append(b"%d:" % len(b))
        out.append(b)
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out.append(b"%d:" % len(b))
        out.append(b)
    elif isinstance(v, Mapping):
        items = sorted(((_key_bytes(k), val) for k, val in v.items()), key=lambda kv: kv[0])
        out.append(b"d")
        prev: bytes | None = None
        for kb, val in items:
            if kb == prev:
                raise ValueError(f"duplicate dict key {kb!r}")
            prev = kb
            out.append(b"%d:" % len(kb))
            out.append(kb)
            _encode(val, out, depth + 1)
        out.append(b"e")
    elif isinstance(v, Sequence):
        out.append(b"l")
        for item in v:
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(v).__name__}")


def decode(data: bytes, *, max_size: int, strict: bool = True, what: str = "object",
           max_tokens: int = MAX_TOKENS) -> Value:
    """Decode one bencoded value that spans all of *data*.

    Raises MalformedObject when *data* is larger than *max_size* (checked before any
    parsing), truncated, nested deeper than MAX_DEPTH, made of more than *max_tokens*
    items, or (with *strict*) not canonical.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("decode() takes bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise MalformedObject(f"{what} is too large ({len(data)} bytes, limit {max_size})")
    try:
        value, end = _Decoder(data, strict, max_tokens).value(0, 0)
    except (IndexError, ValueError) as e:
        raise MalformedObject(f"{what} is not valid bencode: {e}") from None
    if end != len(data):
        raise MalformedObject(f"{what} has {len(data) - end} trailing bytes")
    return value


class _Decoder:
    __slots__ = ("data", "strict", "tokens")

    def __init__(self, data: bytes, strict: bool, max_tokens: int) -> None:
        self.data = data
        self.strict = strict
        self.tokens = max_tokens  # counts down


    def _int(self, start: int, end: int) -> int:
        raw = self.data[start:end]
        if not raw or len(raw) > _MAX_INT_DIGITS:
            raise ValueError("bad integer")
        neg = raw[:1] == b"-"
        digits = raw[1:] if neg else raw
        if not digits.isdigit() or not digits.isascii():
            raise ValueError("bad integer")
        if self.strict and ((digits[:1] == b"0" and len(digits) > 1) or (neg and digits == b"0")):
            raise ValueError("non-canonical integer")
        return int(raw)

    def _string(self, pos: int) -> tuple[bytes, int]:
        colon = self.data.index(b":", pos, pos + _MAX_INT_DIGITS + 1)
        raw = self.data[pos:colon]
        if not raw.isdigit() or not raw.isascii():
            raise ValueError("bad string length")
        if self.strict and raw[:1] == b"0" and len(raw) > 1:
            raise ValueError("non-canonical string length")
        n = int(raw)
        start = colon + 1
        if start + n > len(self.data):
            raise ValueError("truncated string")
        return self.data[start : start + n], start + n

    def value(self, pos: int, depth: int) -> tuple[Value, int]:
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH}")
        self.tokens -= 1
        if self.tokens < 0:
            raise ValueError("made of too many items")
        c = self.data[pos : pos + 1]
        if c == b"i":
            end = self.data.index(b"e", pos + 1, pos + _MAX_INT_DIGITS + 3)
            return self._int(pos + 1, end), end + 1
        if c == b"l":
            items: list[Value] = []
            pos += 1
            while self.data[pos : pos + 1] != b"e":
                if pos >= len(self.data):
                    raise ValueError("truncated list")
                item, pos = self.value(pos, depth + 1)
                items.append(item)
            return items, pos + 1
        if c == b"d":
            d: dict[str, Value] = {}
            pos += 1
            prev: bytes | None = None
            while self.data[pos : pos + 1] != b"e":
                if pos >= len(self.data):
                    raise ValueError("truncated dict")
                if not self.data[pos : pos + 1].isdigit():
                    raise ValueError("dict key is not a string")
                kb, pos = self._string(pos)
                key = kb.decode("utf-8", "surrogateescape")
                if key in d:
                    raise ValueError(f"duplicate key {kb!r}")
                if self.strict and prev is not None and kb < prev:
                    raise ValueError("dict keys not sorted")
                prev = kb
                val, pos = self.value(pos, depth + 1)
                d[key] = val
            return d, pos + 1
        if c.isdigit() and c:
            return self._string(pos)
        if not c:
            raise ValueError("truncated")
        raise ValueError(f"unexpected byte {c!r} at {pos}")
