"""Hypothesis strategies that break real objects: bytes, bencode trees, re-signed bodies, text.

``mutants(seeds)`` draws one of
  * random bytes, or a random (valid) bencode value: nothing of the seed left;
  * 1 to 4 byte edits of a seed: bit flips, "interesting" bytes, truncation, deletion,
    duplication, insertion, a splice with another seed;
  * a number of the seed (a length prefix or an integer) made huge, negative, zero-padded;
  * a tree edit of the decoded seed, re-encoded by a raw encoder that can also write
    unsorted and duplicated keys: a type swap, a huge int, unicode, a dropped or added
    key, a duplicated key, a deep nest, a long list;
  * with *resign*: a tree edit of the seed's signed body, re-signed with the real key,
    so the parser's checks after the signature are reached too.
``text_mutants(seeds)`` does the same for text (magnet links, voucher codes).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from p2pdist import _canonical

Resign = Callable[[bytes, bytes], bytes]  # (seed envelope, new body) -> signed envelope
BodyOf = Callable[[bytes], bytes]

INTERESTING_BYTES = b"\x00\x01\x7f\x80\xff0123456789:-eidl "
INTERESTING_INTS = (0, 1, -1, 2, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**53,
                    2**62, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**31, -(10**31),
                    253_402_300_799, 253_402_300_800)
INTERESTING_TEXT = ("", "é", "\u202eevil", "a\u200bb", "..", "../../etc/passwd", "/abs",
                    "C:\\x", "a\\b", "nul\x00", "CON", "x" * 300, "🎵", "\ufeff", "\r\n")
INTERESTING_STRINGS = (
    b"", b"\x00" * 32, b"\xff" * 64, b"\xc3\x28", b"\xed\xa0\x80", b"cc", b"paid",
    b"p2pdist/signed-license", b"EUR", b"XXX", b"127.0.0.1:1", b"[::1]:0", b"a" * 70_000,
    *(t.encode("utf-8", "surrogatepass") for t in INTERESTING_TEXT),
)


class RawDict(list[tuple[bytes, Any]]):
    """A dict as written, in this order, duplicates kept: what a hostile encoder sends."""


def raw_encode(v: Any, *, unsorted: bool = False) -> bytes:
    out: list[bytes] = []

    def enc(x: Any) -> None:
        if isinstance(x, bool):
            out.append(b"i%de" % int(x))
        elif isinstance(x, int):
            out.append(b"i%de" % x)
        elif isinstance(x, bytes):
            out.append(b"%d:%s" % (len(x), x))
        elif isinstance(x, str):
            enc(x.encode("utf-8", "surrogateescape"))
        elif isinstance(x, RawDict):
            out.append(b"d")
            for k, val in x:
                enc(k)
                enc(val)
            out.append(b"e")
        elif isinstance(x, dict):
            items = sorted((k.encode("utf-8", "surrogateescape"), val) for k, val in x.items())
            if unsorted:
                items.reverse()
            out.append(b"d")
            for k, val in items:
                enc(k)
                enc(val)
            out.append(b"e")
        else:
            out.append(b"l")
            for item in x:
                enc(item)
            out.append(b"e")

    enc(v)
    return b"".join(out)


@functools.cache
def _decoded(seed: bytes) -> Any:
    try:
        return _canonical.decode(seed, max_size=len(seed), strict=False)
    except Exception:  # a seed that is not bencode has no tree
        return None


def _paths(v: Any, path: tuple[Any, ...] = (), out: list[tuple[Any, ...]] | None = None
           ) -> list[tuple[Any, ...]]:
    out = [] if out is None else out
    if len(out) >= 400:
        return out
    out.append(path)
    if isinstance(v, dict):
        for k in v:
            _paths(v[k], (*path, k), out)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _paths(x, (*path, i), out)
    return out


def _get(v: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        v = v[p]
    return v


def _set(root: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


bencode_values = st.recursive(
    st.integers(min_value=-(10**31), max_value=10**31) | st.binary(max_size=40)
    | st.sampled_from(INTERESTING_STRINGS[:-4]),
    lambda kids: st.lists(kids, max_size=5)
    | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=25,
)


@st.composite
def _replacement(draw: st.DrawFn, old: Any) -> Any:
    kind = draw(st.sampled_from(["int", "str", "text", "list", "dict", "swap", "deep",
                                 "many", "value"]))
    if kind == "int":
        return draw(st.sampled_from(INTERESTING_INTS) | st.integers())
    if kind == "str":
        return draw(st.sampled_from(INTERESTING_STRINGS) | st.binary(max_size=64))
    if kind == "text":
        return draw(st.sampled_from(INTERESTING_TEXT) | st.text(max_size=40)).encode(
            "utf-8", "surrogatepass")
    if kind == "list":
        return []
    if kind == "dict":
        return {}
    if kind == "deep":
        n = draw(st.sampled_from([63, 64, 65, 100]))
        deep: Any = old
        for _ in range(n):
            deep = [deep]
        return deep
    if kind == "many":  # one over the usual caps (64 splits, sellers, signatures...)
        return [old] * draw(st.sampled_from([2, 65]))
    if kind == "value":
        return draw(bencode_values)
    # a type swap that keeps the meaning where it can
    if isinstance(old, int):
        return str(old).encode()
    if isinstance(old, bytes):
        return int(old) if old.isdigit() and len(old) < 30 else [old]
    if isinstance(old, list):
        return {str(i): x for i, x in enumerate(old)}
    if isinstance(old, dict):
        return list(old.values())
    return old


@st.composite
def tree_edit(draw: st.DrawFn, seed: bytes) -> bytes | None:
    """A bencode tree edit of *seed*, raw-encoded; None if the seed is not bencode."""
    tree = _decoded(seed)
    if tree is None:
        return None
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        node = _get(tree, path)
        op = draw(st.sampled_from(["replace", "drop", "add", "dup-key", "list"]))
        if op == "drop" and isinstance(node, dict) and node:
            del node[draw(st.sampled_from(sorted(node)))]
        elif op == "add" and isinstance(node, dict):
            key = draw(st.sampled_from(["type", "v", "sig", "extra", "", "\udcff", "p2pdist"])
                       | st.text(max_size=8))
            node[key] = draw(_replacement(node.get(key, 0)))
        elif op == "dup-key" and isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            raw = RawDict((k.encode("utf-8", "surrogateescape"), v)
                          for k, v in sorted(node.items()))
            raw.append((key.encode("utf-8", "surrogateescape"), draw(_replacement(node[key]))))
            tree = _set(tree, path, raw)
            break  # a RawDict is a leaf for further edits
        elif op == "list" and isinstance(node, list) and node:
            i = draw(st.integers(0, len(node) - 1))
            if draw(st.booleans()):
                del node[i]
            else:
                node.insert(i, copy.deepcopy(node[i]))
        else:
            tree = _set(tree, path, draw(_replacement(node)))
    return raw_encode(tree, unsorted=draw(st.integers(0, 9)) == 0)


@st.composite
def byte_edits(draw: st.DrawFn, seed: bytes, others: Sequence[bytes]) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        op = draw(st.sampled_from(["flip", "set", "truncate", "delete", "dup", "insert",
                                   "splice"]))
        if n == 0:
            op = "insert"
        i = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from(INTERESTING_BYTES))
        elif op == "truncate":
            del data[i:]
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "dup":
            j = min(n, i + draw(st.integers(1, 64)))
            data[i:i] = data[i:j]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            other = draw(st.sampled_from(others))
            j = draw(st.integers(0, len(other)))
            data[i:] = other[j:] if draw(st.booleans()) else other[:j]
    return bytes(data)


_NUMBER = re.compile(rb"-?\d+")


@st.composite
def number_edit(draw: st.DrawFn, seed: bytes) -> bytes:
    spans = [m.span() for m in _NUMBER.finditer(seed)][:200]
    if not spans:
        return seed
    a, b = draw(st.sampled_from(spans))
    new = draw(st.sampled_from([b"0", b"00", b"01", b"-0", b"-1", b"9" * 31, b"9" * 33,
                                b"18446744073709551616", b"9223372036854775808",
                                b"4294967296", b"1" * 400]))
    return seed[:a] + new + seed[b:]


@st.composite
def mutants(draw: st.DrawFn, seeds: Callable[[], Sequence[bytes]], *,
            body_of: BodyOf | None = None, resign: Resign | None = None) -> bytes:
    pool = seeds()
    mode = draw(st.sampled_from(["random", "bencode", "bytes", "bytes", "number", "tree",
                                 "tree", "resigned", "resigned", "seed"]))
    if mode == "random":
        return draw(st.binary(max_size=2048))
    if mode == "bencode":
        return raw_encode(draw(bencode_values))
    seed = draw(st.sampled_from(pool))
    if mode == "seed":
        return seed
    if mode == "bytes":
        return draw(byte_edits(seed, pool))
    if mode == "number":
        return draw(number_edit(seed))
    if mode == "resigned" and body_of is not None and resign is not None:
        body = draw(tree_edit(body_of(seed)))
        if body is not None:
            return resign(seed, body)
    edited = draw(tree_edit(seed))
    return edited if edited is not None else draw(byte_edits(seed, pool))


# \u0131 and \u017f: .upper() turns them into I and S
INTERESTING_CHARS = "%&=:?/#+ -\x00\t\n\udcff\u202e\u200bé🎵\u0131\u017f0fFzZuU"


@st.composite
def text_mutants(draw: st.DrawFn, seeds: Callable[[], Sequence[str]]) -> str:
    pool = seeds()
    mode = draw(st.sampled_from(["random", "edit", "edit", "edit", "param", "seed"]))
    if mode == "random":
        return draw(st.text(max_size=200))
    seed = draw(st.sampled_from(pool))
    if mode == "seed":
        return seed
    if mode == "param":
        name = draw(st.sampled_from(["xt", "dn", "tr", "ws", "x.pe", "so", "xl", "as", "kt",
                                     "", "xt.1"]))
        value = draw(st.sampled_from([
            "urn:btih:", "urn:btih:" + "0" * 40, "urn:btih:" + "z" * 32,
            "urn:btih:" + "A" * 39, "urn:btmh:1220", "urn:btmh:1220" + "0" * 63,
            "urn:btmh:1120" + "0" * 64, "urn:btmh:" + "f" * 1000, "%ff%fe", "%", "%zz",
            "%00", "0-99999999999999999999", "-1", "[::1]:99999", "\udcff", "x" * 10_000,
        ]) | st.text(max_size=30))
        sep = draw(st.sampled_from(["&", "?", "&&", ""]))
        text = seed + sep + name + "=" + value
        return text * draw(st.sampled_from([1, 1, 1, 50]))
    chars = list(seed)
    for _ in range(draw(st.integers(1, 4))):
        n = len(chars)
        i = draw(st.integers(0, max(n - 1, 0)))
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate", "dup", "case"]))
        if op == "set" and n:
            chars[i] = draw(st.sampled_from(INTERESTING_CHARS) | st.characters())
        elif op == "insert" or not n:
            chars[i:i] = list(draw(st.sampled_from(INTERESTING_CHARS) | st.text(max_size=8)))
        elif op == "delete":
            del chars[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del chars[i:]
        elif op == "dup":
            chars[i:i] = chars[i : i + draw(st.integers(1, 40))]
        else:
            chars[i] = chars[i].swapcase()
    return "".join(chars)
