"""The canonical bencode under every signed object: vectors, properties, hostile inputs."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist.errors import MalformedObject, VerificationError

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "canonical.json").read_text("utf-8")
)

PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BIG = 1 << 30


def _from_json(v: Any) -> Any:
    """The vector file's value form: JSON ints, lists and objects; {"b": hex} is bytes."""
    if isinstance(v, dict) and set(v) == {"b"}:
        return bytes.fromhex(v["b"])
    if isinstance(v, dict):
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def _rejected(data: bytes, *, strict: bool = True, max_size: int = BIG) -> MalformedObject:
    with pytest.raises(MalformedObject) as e:
        _canonical.decode(data, max_size=max_size, strict=strict)
    assert isinstance(e.value, VerificationError)
    assert e.value.exit_code == 3
    return e.value


# -- known answers ------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: c["name"])
def test_encoding_matches_bep3_vector(case: dict[str, Any]) -> None:
    value = _from_json(case["value"])
    expected = bytes.fromhex(case["encoded_hex"])
    assert _canonical.encode(value) == expected
    assert _canonical.decode(expected, max_size=len(expected)) == value


@pytest.mark.parametrize("case", VECTORS["reject"], ids=lambda c: c["name"])
def test_noncanonical_or_broken_vector_is_rejected(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    _rejected(data)
    if case["lenient_ok"]:
        _canonical.decode(data, max_size=BIG, strict=False)
    else:
        _rejected(data, strict=False)


def test_str_values_encode_as_utf8_bytes_and_keys_decode_to_str() -> None:
    assert _canonical.encode({"k": "\u00e9"}) == b"d1:k2:\xc3\xa9e"
    assert _canonical.decode(b"d1:k2:\xc3\xa9e", max_size=BIG) == {"k": b"\xc3\xa9"}


def test_non_utf8_dict_key_round_trips_through_surrogateescape() -> None:
    data = b"d1:\xffi1ee"
    value = _canonical.decode(data, max_size=BIG)
    assert value == {"\udcff": 1}
    assert _canonical.encode(value) == data


@pytest.mark.parametrize(
    "value",
    [True, 1.5, None, {1: 2}, object(), {"a": 1, b"a": 2}],
    ids=["bool", "float", "none", "int-key", "object", "same-key-as-str-and-bytes"],
)
def test_encoding_a_value_bencode_cannot_hold_is_a_programming_error(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        _canonical.encode(value)


# -- properties ---------------------------------------------------------------------------

_ints = st.integers(min_value=-(10**31 - 1), max_value=10**32 - 1)
_values = st.recursive(
    _ints | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.binary(max_size=8), inner, max_size=5),
    max_leaves=25,
)


def _expected(v: Any) -> Any:
    """What decode returns for *v*: dict keys become str through surrogateescape."""
    if isinstance(v, dict):
        return {k.decode("utf-8", "surrogateescape"): _expected(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_expected(x) for x in v]
    return v


@PROPERTY
@given(_values)
def test_encode_then_strict_decode_round_trips(value: Any) -> None:
    data = _canonical.encode(value)
    decoded = _canonical.decode(data, max_size=len(data))
    assert decoded == _expected(value)
    assert _canonical.encode(decoded) == data


def _encode_keys_in_order(d: dict[bytes, Any], order: list[bytes]) -> bytes:
    out = [b"d"]
    for k in order:
        out += [b"%d:" % len(k), k, _canonical.encode(d[k])]
    out.append(b"e")
    return b"".join(out)


@PROPERTY
@given(
    st.lists(st.binary(max_size=6), min_size=2, max_size=8, unique=True).flatmap(
        lambda keys: st.tuples(st.just(keys), st.permutations(keys))
    ),
    st.integers(min_value=-1000, max_value=1000) | st.binary(max_size=6),
)
def test_strict_decode_rejects_any_reordering_of_dict_keys(
    keys_and_order: tuple[list[bytes], list[bytes]], leaf: Any
) -> None:
    keys, order = keys_and_order
    if order == sorted(keys):
        order = order[::-1]
    d = dict.fromkeys(keys, leaf)
    data = _encode_keys_in_order(d, order)
    _rejected(data)
    assert _canonical.decode(data, max_size=BIG, strict=False) == _expected(d)


@PROPERTY
@given(_values, st.data())
def test_every_strict_prefix_of_an_encoding_is_rejected(value: Any, data: st.DataObject) -> None:
    enc = _canonical.encode(value)
    n = data.draw(st.integers(min_value=0, max_value=len(enc) - 1))
    _rejected(enc[:n])


@PROPERTY
@given(_values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_after_a_value_are_rejected(value: Any, tail: bytes) -> None:
    _rejected(_canonical.encode(value) + tail)


@PROPERTY
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_malformed_only(data: bytes) -> None:
    for strict in (True, False):
        with contextlib.suppress(MalformedObject):
            _canonical.decode(data, max_size=BIG, strict=strict)


# -- hostile inputs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bomb",
    [b"l" * 100_000, b"d1:a" * 100_000, b"l" * 100_000 + b"e" * 100_000,
     b"l" * (_canonical.MAX_DEPTH + 2) + b"e" * (_canonical.MAX_DEPTH + 2)],
    ids=["open-lists", "open-dicts", "balanced-lists", "just-past-max-depth"],
)
def test_depth_bomb_is_rejected_quickly_without_recursion_error(bomb: bytes) -> None:
    t = time.perf_counter()
    e = _rejected(bomb)
    assert time.perf_counter() - t < 1.0
    assert "deeper" in e.message


def test_nesting_at_max_depth_is_accepted_and_one_more_is_not() -> None:
    ok = b"l" * (_canonical.MAX_DEPTH + 1) + b"e" * (_canonical.MAX_DEPTH + 1)
    _canonical.decode(ok, max_size=BIG)
    _rejected(b"l" * (_canonical.MAX_DEPTH + 2) + b"e" * (_canonical.MAX_DEPTH + 2))


@pytest.mark.parametrize(
    "data",
    [b"9" * 31 + b":abc", b"99999999999999999999:x", b"1" * 40 + b":x",
     b"l" + b"4294967296:x" + b"e", b"d1:a" + b"18446744073709551616:" + b"e"],
    ids=["31-digit-length", "20-digit-length", "40-digit-length", "2**32-in-list",
         "2**64-as-dict-value"],
)
def test_huge_length_prefix_is_rejected_without_allocating(data: bytes) -> None:
    t = time.perf_counter()
    _rejected(data)
    assert time.perf_counter() - t < 0.5


@pytest.mark.parametrize(
    "data", [b"i-0e", b"i00e", b"i01e", b"i-01e", b"00:", b"01:a"],
    ids=["negative-zero", "double-zero", "leading-zero", "negative-leading-zero",
         "zero-length-with-leading-zero", "length-with-leading-zero"],
)
def test_second_spelling_of_a_number_is_rejected(data: bytes) -> None:
    e = _rejected(data)
    assert "non-canonical" in e.message


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_duplicate_dict_keys_are_rejected_even_when_lenient(strict: bool) -> None:
    _rejected(b"d1:ai1e1:ai1ee", strict=strict)
    _rejected(b"d1:ai1e1:bi1e1:ai1ee", strict=strict)


def test_input_of_exactly_max_size_is_parsed_and_one_byte_more_is_refused() -> None:
    data = b"100:" + b"x" * 100
    assert _canonical.decode(data, max_size=len(data)) == b"x" * 100
    e = _rejected(data, max_size=len(data) - 1)
    assert "too large" in e.message


def test_size_limit_is_checked_before_parsing() -> None:
    # Garbage that would fail to parse: the size error wins, so nothing was parsed.
    e = _rejected(b"\xff" * 1001, max_size=1000)
    assert "too large" in e.message


def test_decode_reports_what_was_being_read() -> None:
    with pytest.raises(MalformedObject, match="license manifest"):
        _canonical.decode(b"x", max_size=10, what="license manifest")
