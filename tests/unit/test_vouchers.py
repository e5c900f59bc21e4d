"""Vouchers: known answers, what the check symbol catches, named bad codes, single use.

Every refusal of a code is a VoucherRefused with a reason (exit 1), never a KeyError or
IndexError out of the parser, and a refusal leaves the voucher book exactly as it was.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import stat
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist.errors import (
    InputError,
    P2PDistError,
    StorageError,
    VerificationError,
    VoucherRefused,
)
from p2pdist.identity import Identity, key_to_text
from p2pdist.payouts import vouchers as vouchers_mod
from p2pdist.payouts.issuance import Issuance, SignedIssuance, merkle_root
from p2pdist.payouts.vouchers import (
    ALPHABET,
    CODE_DOMAIN,
    CODE_LENGTH,
    MAX_CODE_TEXT,
    MAX_ISSUE,
    IssuedVoucher,
    VoucherBook,
    VoucherRow,
    _syndrome,
    code_hash,
    format_code,
    parse_code,
    payment_ref,
    write_csv,
)

PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

WORK = bytes(range(32))
OTHER_WORK = bytes(range(32, 64))
FAN = b"\x01" * 32
MALLORY = b"\x07" * 32
T0 = datetime(2025, 1, 1, 12, 30, 15, tzinfo=UTC)
T1 = datetime(2025, 2, 3, 4, 5, 6, tzinfo=UTC)

# The example code of the docs and of the "malformed" remedy.
EXAMPLE = "7K3Q-M9XR-2HTP-VW4C-V"
EXAMPLE_NORMAL = "7K3QM9XR2HTPVW4CV"


def _reference_check(data: str) -> str:
    """The check symbol, computed the long way: polynomials over GF(2), then reduced.

    check = sum of s_i * x^(16-i) over the 16 data symbols s_0..s_15, times x, mod
    x^5 + x^2 + 1; i.e. the symbol that makes the 17-symbol weighted sum zero.
    """
    acc = 0
    for i, ch in enumerate(data):
        v = ALPHABET.index(ch)
        for bit in range(5):  # carry-less multiply by x^(16 - i)
            if v >> bit & 1:
                acc ^= 1 << (bit + 16 - i)
    for deg in range(acc.bit_length() - 1, 4, -1):  # reduce mod x^5 + x^2 + 1
        if acc >> deg & 1:
            acc ^= 0b100101 << (deg - 5)
    return ALPHABET[acc]


def _code(data: str) -> str:
    return data + _reference_check(data)


def _printed(code: str) -> str:
    # Spelled out rather than format_code(): the tables below are built at import, and a
    # broken format_code must fail its tests, not the collection of this file.
    return "-".join(code[i : i + 4] for i in range(0, 17, 4))


_data = st.text(alphabet=ALPHABET, min_size=16, max_size=16)
_codes = _data.map(_code)


def _dump(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM vouchers ORDER BY hash").fetchall()
    finally:
        db.close()


@pytest.fixture
def book(tmp_path: Path) -> Iterator[VoucherBook]:
    with VoucherBook(tmp_path / "vouchers.sqlite") as b:
        yield b


# --- known answers ---------------------------------------------------------------------


@pytest.mark.parametrize(("data", "check"), [
    ("0000000000000000", "0"),   # all zero: the sum is zero
    ("0000000000000001", "2"),   # 1 * x
    ("0000000000000010", "4"),   # 1 * x^2
    ("1000000000000000", "V"),   # x^16 = x^4 + x^3 + x + 1 = 27
    ("ZZZZZZZZZZZZZZZZ", "M"),
    ("0123456789ABCDEF", "P"),
    ("GHJKMNPQRSTVWXYZ", "X"),
    ("7K3QM9XR2HTPVW4C", "V"),
])
def test_vector_check_symbols_of_known_strings(data: str, check: str) -> None:
    assert _reference_check(data) == check
    assert parse_code(data + check) == data + check
    assert format_code(data + check) == _printed(data + check)


def test_vector_example_code_normalises_hashes_and_names_its_payment() -> None:
    h = "3c9e7b6a2bb9ab9dc33bc17567b954a7dfa49ba8568eec7dbee8dc20742034ac"
    assert CODE_DOMAIN == b"p2pdist/voucher/v1"
    assert hashlib.sha256(b"p2pdist/voucher/v1\0" + EXAMPLE_NORMAL.encode()).hexdigest() == h
    for typed in (EXAMPLE, EXAMPLE_NORMAL, "7k3q m9xr 2htp vw4c v", " 7K3Q-M9XR--2HTP VW4CV\n",
                  "7k3Q\tm9xR-2Htp-vW4c-V"):
        assert parse_code(typed) == EXAMPLE_NORMAL
        assert format_code(typed) == EXAMPLE
        assert code_hash(typed).hex() == h
    assert payment_ref(bytes.fromhex(h)) == "voucher:3c9e7b6a2bb9ab9d"
    # The remedy shows a real code, so a user who copies it learns the format, not a lie.
    assert EXAMPLE in VoucherRefused("x", reason="malformed").remedy


def test_vector_crockford_aliases_read_as_digits() -> None:
    code = _code("1010000000ZZ1111")
    assert code == "1010000000ZZ1111C"
    assert parse_code("lo1O-oOoO-OoZz-iLIl-c") == code
    assert parse_code("LOIO OOOO 00ZZ 1111 C") == code


@given(data=_data)
@PROPERTY
def test_check_symbol_is_the_reference_one(data: str) -> None:
    assert parse_code(_code(data)) == _code(data)
    assert _syndrome([ALPHABET.index(c) for c in _code(data)]) == 0


# --- properties: the format round-trips, the check symbol catches what it promises ---


@given(code=_codes, seps=st.lists(st.sampled_from(["", "", " ", "-", "--", " - "]),
                                  min_size=18, max_size=18),
       lower=st.lists(st.booleans(), min_size=17, max_size=17))
@PROPERTY
def test_code_round_trips_through_any_spacing_and_case(code: str, seps: list[str],
                                                     lower: list[bool]) -> None:
    typed = seps[0] + "".join(
        (c.lower() if lo else c) + sep for c, lo, sep in zip(code, lower, seps[1:], strict=True))
    assert parse_code(typed) == code
    assert parse_code(format_code(typed)) == code
    assert format_code(code).replace("-", "") == code


@given(code=_codes, where=st.integers(0, CODE_LENGTH - 1), new=st.sampled_from(ALPHABET))
@PROPERTY
def test_any_one_symbol_replaced_is_caught(code: str, where: int, new: str) -> None:
    typo = code[:where] + new + code[where + 1 :]
    if typo == code:
        return
    with pytest.raises(VoucherRefused) as ei:
        parse_code(typo)
    assert ei.value.reason == "malformed"


@given(code=_codes, i=st.integers(0, CODE_LENGTH - 1), j=st.integers(0, CODE_LENGTH - 1))
@PROPERTY
def test_any_two_different_symbols_swapped_are_caught(code: str, i: int, j: int) -> None:
    if code[i] == code[j]:
        return
    s = list(code)
    s[i], s[j] = s[j], s[i]
    with pytest.raises(VoucherRefused, match="check character"):
        parse_code("".join(s))


@given(code=_codes, i=st.integers(0, CODE_LENGTH - 1))
@PROPERTY
def test_a_symbol_left_out_or_typed_twice_is_caught(code: str, i: int) -> None:
    for typo in (code[:i] + code[i + 1 :], code[:i] + code[i] + code[i:]):
        with pytest.raises(VoucherRefused, match="17 letters and digits") as ei:
            parse_code(typo)
        assert ei.value.reason == "malformed"


@given(a=st.lists(st.integers(0, 31), min_size=17, max_size=17),
       b=st.lists(st.integers(0, 31), min_size=17, max_size=17))
@PROPERTY
def test_the_check_is_linear(a: list[int], b: list[int]) -> None:
    # What lets the exhaustive tests below speak for every code: a code changed by an
    # error pattern e passes exactly when e itself sums to zero.
    assert _syndrome([x ^ y for x, y in zip(a, b, strict=True)]) == _syndrome(a) ^ _syndrome(b)


def test_every_single_error_and_every_swap_pattern_is_caught_exhaustively() -> None:
    # By linearity, one code stands for all: every error in one place (17 * 31), and
    # every error that adds the same value d in two places i < j (136 * 31), which is
    # what any swap of two different symbols (d = a xor b) and any twin typo does.
    code = [ALPHABET.index(c) for c in EXAMPLE_NORMAL]
    caught = 0
    for i in range(CODE_LENGTH):
        for d in range(1, 32):
            one = list(code)
            one[i] ^= d
            assert _syndrome(one) != 0
            with pytest.raises(VoucherRefused):
                parse_code("".join(ALPHABET[v] for v in one))
            caught += 1
            for j in range(i + 1, CODE_LENGTH):
                two = list(one)
                two[j] ^= d
                assert _syndrome(two) != 0
                caught += 1
    assert caught == 17 * 31 + 136 * 31


def test_two_independent_typos_can_slip_through_as_documented() -> None:
    # One check symbol is 5 bits: it cannot catch every double error, and does not claim
    # to. Adding d at the last data symbol and d*x at the check symbol cancels out.
    code = [ALPHABET.index(c) for c in EXAMPLE_NORMAL]
    code[15] ^= 1
    code[16] ^= 2
    slipped = "".join(ALPHABET[v] for v in code)
    assert slipped != EXAMPLE_NORMAL
    assert parse_code(slipped) == slipped


@pytest.mark.parametrize("code", [EXAMPLE_NORMAL, _code("1010000000ZZ1111"),
                                  _code("0000000000000000")])
def test_any_typed_character_replaced_is_caught_or_means_the_same(code: str) -> None:
    # At the keyboard: every printable ASCII character at every place of the printed
    # form. Either it is refused, or it spells the same code (case, I/L for 1, O for 0,
    # one separator for another) and is the same code.
    printed = format_code(code)
    same = {c: {c, c.lower()} for c in ALPHABET} | {"1": {"1", "I", "i", "L", "l"},
                                                    "0": {"0", "O", "o"}, "-": set(" -\t\r\n")}
    for k, old in enumerate(printed):
        for new in string.printable:
            typed = printed[:k] + new + printed[k + 1 :]
            if new in same[old]:
                assert parse_code(typed) == code
            else:
                with pytest.raises(VoucherRefused) as ei:
                    parse_code(typed)
                assert ei.value.reason == "malformed"


def test_fresh_codes_are_random_well_formed_and_distinct(book: VoucherBook) -> None:
    codes = book.issue(WORK, 2000, now=T0)
    assert len(set(codes)) == 2000
    for c in codes:
        assert len(c) == 21 and c.count("-") == 4 and format_code(c) == c
        assert not set(c) & set("ILOU")
    # 80 random bits: every data symbol takes every value (not, say, a counter or a clock).
    for pos in range(16):
        assert len({c.replace("-", "")[pos] for c in codes}) == 32


# --- named bad codes --------------------------------------------------------------------

_BAD: dict[str, tuple[str, str]] = {
    "empty": ("", "no voucher code"),
    "only separators": (" - - ", "no voucher code"),
    "too short (16)": (EXAMPLE_NORMAL[:-1], "this has 16"),
    "too long (18)": (EXAMPLE_NORMAL + "0", "this has 18"),
    "one group missing": (EXAMPLE[5:], "this has 13"),
    "bad checksum": (EXAMPLE[:-1] + "W", "check character"),
    "U is never a symbol": (EXAMPLE[:-1] + "U", "never contain U"),
    "crockford mod-37 check symbol *": (EXAMPLE[:-1] + "*", "not a character"),
    "punctuation": ("7K3Q.M9XR.2HTP.VW4C.V", "not a character"),
    "underscore separator": ("7K3Q_M9XR_2HTP_VW4C_V", "not a character"),
    "nul byte": (EXAMPLE + "\0", "not a character"),
    "cyrillic K (U+041A)": (EXAMPLE.replace("K", "\u041a"), "U+041A"),
    "greek capital omicron for 0 (U+039F)": (_code("1010000000ZZ1111").replace("0", "\u039f"),
                                             "U+039F"),
    "fullwidth 7 (U+FF17)": ("\uff17" + EXAMPLE[1:], "U+FF17"),
    "dotless i, whose upper() is I (U+0131)": (
        _printed(_code("1010000000ZZ1111")).replace("1", "\u0131"), "U+0131"),
    "long s, whose upper() is S (U+017F)": (
        _printed(_code("SSSS000000000000")).replace("S", "\u017f"), "U+017F"),
    "kelvin sign for K (U+212A)": (EXAMPLE.replace("K", "\u212a"), "U+212A"),
    "en dash separators (U+2013)": (EXAMPLE.replace("-", "\u2013"), "U+2013"),
    "no-break space (U+00A0)": (EXAMPLE.replace("-", "\u00a0"), "U+00A0"),
    "zero-width space (U+200B)": (EXAMPLE + "\u200b", "U+200B"),
    "65 characters (one over the bound)": (EXAMPLE + " " * (MAX_CODE_TEXT + 1 - 21),
                                           "too long"),
    "10 KB of symbols": ("7" * 10240, "too long"),
    "10 KB of a valid code repeated": ((EXAMPLE + " ") * 466, "too long"),
}


@pytest.mark.parametrize("name", list(_BAD))
def test_bad_code_is_refused_as_malformed(name: str) -> None:
    text, says = _BAD[name]
    with pytest.raises(VoucherRefused) as ei:
        parse_code(text)
    assert ei.value.reason == "malformed"
    assert says in ei.value.message
    assert ei.value.exit_code == 1 and ei.value.remedy
    assert len(ei.value.message) < 200  # a 10 KB input is not echoed back


def test_code_padded_to_exactly_the_bound_is_read() -> None:
    assert parse_code(EXAMPLE + " " * (MAX_CODE_TEXT - 21)) == EXAMPLE_NORMAL


@pytest.mark.parametrize("value", [EXAMPLE.encode(), None, 17])
def test_a_code_that_is_not_text_is_a_programmer_error(value: object) -> None:
    with pytest.raises(TypeError):
        parse_code(value)  # type: ignore[arg-type]


def test_voucher_refused_is_a_policy_failure_with_a_remedy_per_reason() -> None:
    remedies = set()
    for reason in ("malformed", "unknown", "redeemed", "other-work"):
        e = VoucherRefused("no", reason=reason)
        assert isinstance(e, P2PDistError) and not isinstance(e, VerificationError)
        assert (e.reason, e.exit_code) == (reason, 1)
        remedies.add(e.remedy)
    assert len(remedies) == 4 and "" not in remedies
    assert VoucherRefused.reasons == {"malformed", "unknown", "redeemed", "other-work"}
    assert VoucherRefused("no", reason="unknown", remedy="call Ada").remedy == "call Ada"
    with pytest.raises(ValueError, match="reason"):
        VoucherRefused("no", reason="expired")


# --- the book: issuing, listing, storage -------------------------------------------------


def test_issue_returns_codes_once_and_the_book_keeps_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "vouchers.sqlite"
    with VoucherBook(path) as book:
        codes = book.issue(WORK, 5, now=T0 + timedelta(microseconds=999_999))
        rows = book.rows(WORK)
    assert len(rows) == 5 and book.path == path
    assert {r.id for r in rows} == {code_hash(c)[:8].hex() for c in codes}
    for r in rows:
        assert (r.work, r.issued, r.redeemed, r.buyer, r.payment_ref) == (
            WORK, T0, None, None, None)
        assert r.to_dict() == {"id": r.id, "work": WORK.hex(), "issued": "2025-01-01T12:30:15Z",
                               "redeemed": None, "buyer": None, "payment_ref": None}
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for c in codes:
        for spelling in (c, c.replace("-", ""), c.lower(), c.replace("-", "").lower()):
            assert spelling.encode() not in stored
        assert code_hash(c) in stored


def test_rows_are_per_work_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "vouchers.sqlite"
    with VoucherBook(path) as book:
        a = book.issue(WORK, 3, now=T0)
        book.issue(OTHER_WORK, 2, now=T0)
        assert book.rows(bytes(32)) == []
    with VoucherBook(path) as book:
        assert len(book.rows(WORK)) == 3 and len(book.rows(OTHER_WORK)) == 2
        ref = book.redeem(WORK, a[1], buyer=FAN, now=T1)
    with VoucherBook(path) as book:
        (row,) = [r for r in book.rows(WORK) if r.redeemed is not None]
        assert (row.redeemed, row.buyer, row.payment_ref) == (T1, FAN, ref)
        assert row.to_dict()["buyer"] == key_to_text(FAN)
        assert row.to_dict()["redeemed"] == "2025-02-03T04:05:06Z"


@pytest.mark.parametrize("count", [1, MAX_ISSUE])
def test_issue_at_the_bounds(book: VoucherBook, count: int) -> None:
    codes = book.issue(WORK, count, now=T0)
    assert len(codes) == len(set(codes)) == len(book.rows(WORK)) == count


@pytest.mark.parametrize("count", [0, -1, MAX_ISSUE + 1, True, 2.0, "3"])
def test_issue_count_out_of_bounds_is_a_programmer_error(book: VoucherBook,
                                                         count: object) -> None:
    with pytest.raises(ValueError, match="count"):
        book.issue(WORK, count, now=T0)  # type: ignore[arg-type]
    assert book.rows(WORK) == []


def test_misuse_is_a_programmer_error(book: VoucherBook) -> None:
    code = book.issue(WORK, 1, now=T0)[0]
    for bad in (WORK[:31], WORK + b"\0", WORK.hex(), None):
        with pytest.raises(ValueError, match="32 bytes"):
            book.issue(bad, 1, now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="32 bytes"):
            book.redeem(WORK, code, buyer=bad, now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="32 bytes"):
            book.rows(bad)  # type: ignore[arg-type]
    for now in (datetime(2025, 1, 1), "2025-01-01", datetime(1969, 12, 31, tzinfo=UTC)):
        with pytest.raises(ValueError, match="now"):
            book.issue(WORK, 1, now=now)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="now"):
            book.redeem(WORK, code, buyer=FAN, now=now)  # type: ignore[arg-type]
    assert len(book.rows(WORK)) == 1 and book.rows(WORK)[0].redeemed is None


def test_times_in_other_zones_are_stored_as_utc(book: VoucherBook) -> None:
    paris = timezone(timedelta(hours=1))
    code = book.issue(WORK, 1, now=T0.astimezone(paris))[0]
    book.redeem(WORK, code, buyer=FAN, now=T1.astimezone(paris))
    (row,) = book.rows(WORK)
    assert (row.issued, row.redeemed) == (T0, T1)
    assert row.issued.tzinfo is UTC


def test_a_new_code_equal_to_an_issued_one_is_drawn_again(
        book: VoucherBook, monkeypatch: pytest.MonkeyPatch) -> None:
    # 80 random bits never repeat in practice; the primary key would refuse the batch if
    # they did, so issue draws again. Forced here by a generator that repeats itself.
    first = book.issue(WORK, 1, now=T0)[0].replace("-", "")
    fresh = [_code(f"{i:016d}") for i in range(1, 4)]
    draws = iter([first, first, fresh[0], first, fresh[1], fresh[2]])
    monkeypatch.setattr(vouchers_mod, "_new_code", lambda: next(draws))
    codes = book.issue(WORK, 2, now=T1)
    # The batch {first, fresh[0]} was rolled back whole; then one by one, skipping first.
    assert sorted(c.replace("-", "") for c in codes) == fresh[1:]
    assert {r.id for r in book.rows(WORK)} == {
        code_hash(c)[:8].hex() for c in (first, *fresh[1:])}


def test_book_is_wal_with_full_sync(book: VoucherBook) -> None:
    assert book._db.execute("PRAGMA journal_mode").fetchone()[0] == b"wal"
    assert book._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    VoucherBook(tmp_path / "v.sqlite").close()
    db = sqlite3.connect(tmp_path / "v.sqlite")
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(StorageError) as ei:
        VoucherBook(tmp_path / "v.sqlite")
    assert "upgrade" in ei.value.remedy


@pytest.mark.parametrize("setup", ["not a database", "missing folder"])
def test_unusable_file_is_a_storage_error(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "v.sqlite"
    if setup == "not a database":
        path.write_bytes(b"this is not SQLite" * 100)
    else:
        path = tmp_path / "nowhere" / "v.sqlite"
    with pytest.raises(StorageError, match="voucher book"):
        VoucherBook(path)


# --- the book's triggers: no delete, no un-redeeming, no rewriting ----------------------

_FORBIDDEN = {
    "delete a voucher": "DELETE FROM vouchers",
    "un-redeem": "UPDATE vouchers SET redeemed = NULL, buyer = NULL, payment_ref = NULL "
                 "WHERE redeemed IS NOT NULL",
    "move the redemption time": "UPDATE vouchers SET redeemed = redeemed - 1 "
                                "WHERE redeemed IS NOT NULL",
    "change the buyer": f"UPDATE vouchers SET buyer = x'{MALLORY.hex()}' "  # noqa: S608
                        "WHERE redeemed IS NOT NULL",
    "change the payment ref": "UPDATE vouchers SET payment_ref = 'x' WHERE redeemed IS NOT NULL",
    "move a voucher to another work": f"UPDATE vouchers SET work = x'{OTHER_WORK.hex()}' "  # noqa: S608
                                      "WHERE redeemed IS NULL",
    "back-date an issue": "UPDATE vouchers SET issued = 0 WHERE redeemed IS NULL",
    "rehash a voucher": "UPDATE vouchers SET hash = zeroblob(32) WHERE redeemed IS NULL",
    "set a buyer without redeeming": f"UPDATE vouchers SET buyer = x'{FAN.hex()}' "  # noqa: S608
                                     "WHERE redeemed IS NULL",
    "redeem without a buyer": "UPDATE vouchers SET redeemed = 1 WHERE redeemed IS NULL",
    "insert a redeemed voucher without a buyer":
        f"INSERT INTO vouchers (hash, work, issued, redeemed) "  # noqa: S608
        f"VALUES (zeroblob(32), x'{WORK.hex()}', 1, 2)",
    "insert a short hash": f"INSERT INTO vouchers (hash, work, issued) "  # noqa: S608
                           f"VALUES (x'00', x'{WORK.hex()}', 1)",
}


@pytest.mark.parametrize("name", list(_FORBIDDEN))
def test_sqlite_refuses_to_change_history(tmp_path: Path, name: str) -> None:
    path = tmp_path / "v.sqlite"
    with VoucherBook(path) as book:
        a, _ = book.issue(WORK, 2, now=T0)
        book.redeem(WORK, a, buyer=FAN, now=T1)
    before = _dump(path)
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(_FORBIDDEN[name])
    db.close()
    assert _dump(path) == before


# --- redemption -------------------------------------------------------------------------


def test_fan_redeems_a_code_once(book: VoucherBook) -> None:
    code = book.issue(WORK, 3, now=T0)[1]
    book.check(WORK, code)
    ref = book.redeem(WORK, code.lower().replace("-", " "), buyer=FAN, now=T1)
    assert ref == payment_ref(code_hash(code)) == "voucher:" + code_hash(code)[:8].hex()
    redeemed = [r for r in book.rows(WORK) if r.redeemed is not None]
    assert [(r.id, r.redeemed, r.buyer, r.payment_ref) for r in redeemed] == [
        (ref.removeprefix("voucher:"), T1, FAN, ref)]


def test_code_redeemed_twice_is_refused_saying_when_not_by_whom(
        tmp_path: Path, book: VoucherBook) -> None:
    code = book.issue(WORK, 1, now=T0)[0]
    ref = book.redeem(WORK, code, buyer=FAN, now=T1)
    for buyer in (MALLORY, FAN):  # the same buyer again too: a code is used once
        with pytest.raises(VoucherRefused) as ei:
            book.redeem(WORK, code, buyer=buyer, now=T1 + timedelta(days=1))
        assert ei.value.reason == "redeemed"
        assert "2025-02-03T04:05:06Z" in ei.value.message
        assert key_to_text(FAN) not in ei.value.message and FAN.hex() not in ei.value.message
    with pytest.raises(VoucherRefused, match="already redeemed"):
        book.check(WORK, code)
    (row,) = book.rows(WORK)
    assert (row.buyer, row.redeemed, row.payment_ref) == (FAN, T1, ref)


def test_code_never_issued_is_unknown(book: VoucherBook) -> None:
    book.issue(WORK, 3, now=T0)
    for method in ("check", "redeem"):
        with pytest.raises(VoucherRefused) as ei:
            if method == "check":
                book.check(WORK, EXAMPLE)
            else:
                book.redeem(WORK, EXAMPLE, buyer=FAN, now=T1)
        assert ei.value.reason == "unknown"


def test_code_of_another_work_is_refused_and_names_it(book: VoucherBook) -> None:
    code = book.issue(OTHER_WORK, 1, now=T0)[0]
    book.issue(WORK, 1, now=T0)
    with pytest.raises(VoucherRefused) as ei:
        book.redeem(WORK, code, buyer=FAN, now=T1)
    assert ei.value.reason == "other-work" and OTHER_WORK.hex() in ei.value.message
    with pytest.raises(VoucherRefused, match="another work"):
        book.check(WORK, code)
    # It still works for its own work.
    book.redeem(OTHER_WORK, code, buyer=FAN, now=T1)


def test_typo_in_a_code_is_refused_before_any_lookup(
        book: VoucherBook, monkeypatch: pytest.MonkeyPatch) -> None:
    code = book.issue(WORK, 1, now=T0)[0]
    typo = code[:3] + ("0" if code[3] != "0" else "1") + code[4:]

    def no_lookup(*_: object) -> None:
        raise AssertionError("a malformed code reached the database")

    monkeypatch.setattr(book, "_write", no_lookup)
    monkeypatch.setattr(book, "_read", no_lookup)
    for call in (lambda: book.redeem(WORK, typo, buyer=FAN, now=T1),
                 lambda: book.check(WORK, typo)):
        with pytest.raises(VoucherRefused) as ei:
            call()
        assert ei.value.reason == "malformed"


@pytest.mark.parametrize("reason", ["malformed", "unknown", "redeemed", "other-work"])
def test_a_refusal_changes_nothing(tmp_path: Path, reason: str) -> None:
    path = tmp_path / "v.sqlite"
    with VoucherBook(path) as book:
        used, fresh = book.issue(WORK, 2, now=T0)
        other = book.issue(OTHER_WORK, 1, now=T0)[0]
        book.redeem(WORK, used, buyer=FAN, now=T0)
        code = {"malformed": fresh[:-1] + ("0" if fresh[-1] != "0" else "1"),
                "unknown": EXAMPLE, "redeemed": used, "other-work": other}[reason]
        before = _dump(path)
        with pytest.raises(VoucherRefused) as ei:
            book.redeem(WORK, code, buyer=MALLORY, now=T1)
        assert ei.value.reason == reason
        assert _dump(path) == before
        # and the book still works afterwards: no transaction was left open
        book.redeem(WORK, fresh, buyer=FAN, now=T1)
        assert len(_dump(path)) == 3


# --- the merch-table CSV ----------------------------------------------------------------


def test_csv_holds_the_codes_for_the_merch_table_and_only_the_owner_reads_it(
        tmp_path: Path, book: VoucherBook) -> None:
    codes = book.issue(WORK, 3, now=T0)
    out = tmp_path / "table" / "codes.csv"
    write_csv(out, [IssuedVoucher(c, WORK, T0) for c in codes])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text("ascii").splitlines() == ["code,work,issued"] + [
        f"{c},{WORK.hex()},2025-01-01T12:30:15Z" for c in codes]
    # Every code in the file redeems.
    for c in codes:
        book.check(WORK, c)


def test_csv_refuses_to_overwrite_codes_unless_told(tmp_path: Path) -> None:
    out = tmp_path / "codes.csv"
    out.write_text("earlier codes, shown once\n")
    out.chmod(0o644)
    row = IssuedVoucher(EXAMPLE_NORMAL.lower(), WORK, T0)
    with pytest.raises(InputError, match="cannot be shown again"):
        write_csv(out, [row])
    assert out.read_text() == "earlier codes, shown once\n"
    write_csv(out, [row], overwrite=True)
    assert out.read_text() == f"code,work,issued\n{EXAMPLE},{WORK.hex()},2025-01-01T12:30:15Z\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    dangling = tmp_path / "link.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    with pytest.raises(InputError):
        write_csv(dangling, [row])


def test_issued_voucher_and_row_validate_themselves(tmp_path: Path) -> None:
    assert IssuedVoucher("7k3q m9xr 2htp vw4c v", WORK, T0).code == EXAMPLE
    assert IssuedVoucher(EXAMPLE, WORK, T0).to_dict() == {
        "code": EXAMPLE, "work": WORK.hex(), "issued": "2025-01-01T12:30:15Z"}
    with pytest.raises(ValueError, match="not a voucher code"):
        IssuedVoucher(EXAMPLE[:-1] + "W", WORK, T0)
    with pytest.raises(ValueError):
        IssuedVoucher(EXAMPLE, WORK[:5], T0)
    with pytest.raises(ValueError, match="none of them"):
        VoucherRow("00" * 8, WORK, T0, T1, None, "voucher:0000000000000000")
    with pytest.raises(ValueError, match="aware"):
        VoucherRow("00" * 8, WORK, datetime(2025, 1, 1), None, None, None)
    with pytest.raises(TypeError):
        write_csv(tmp_path / "codes.csv", [EXAMPLE])  # type: ignore[list-item]
    assert not (tmp_path / "codes.csv").exists()


# --- issuance records: evidence of each code's batch (issue 21) ---------------------------

SELLER = Identity("seller", nacl.signing.SigningKey(bytes(range(32, 64))))


def _signer(face: int = 500, currency: str = "EUR", work: bytes = WORK,
            calls: list[tuple[bytes, int]] | None = None
            ) -> Callable[[bytes, int], SignedIssuance]:
    """What the seller's node passes as issue(sign=...): its record for the batch."""
    def sign(root: bytes, count: int) -> SignedIssuance:
        if calls is not None:
            calls.append((root, count))
        return SignedIssuance.sign(Issuance(
            work=work, collector=SELLER.public_key, count=count, face=face,
            currency=currency, root=root, ts=T0), SELLER)
    return sign


def _proves(book: VoucherBook, code: str) -> SignedIssuance:
    """The code's evidence, read back, checked the way a buyer or the audit checks it."""
    found = book.evidence(code)
    assert found is not None, code
    record, proof = found
    signed = SignedIssuance.from_bytes(record)
    signed.verify()
    assert proof.root_of(code_hash(code), signed.issuance.count) == signed.issuance.root
    return signed


def test_issue_with_sign_keeps_the_record_and_each_codes_proof(book: VoucherBook) -> None:
    calls: list[tuple[bytes, int]] = []
    codes = book.issue(WORK, 5, now=T0, sign=_signer(calls=calls))
    [(root, count)] = calls  # one record per batch, over the batch's codes
    assert count == 5
    assert root == merkle_root([code_hash(c) for c in codes])
    records = {_proves(book, c).to_bytes() for c in codes}
    assert len(records) == 1
    signed = SignedIssuance.from_bytes(records.pop())
    assert (signed.issuance.count, signed.issuance.face, signed.issuance.root) == (5, 500, root)
    # Each code's proof is its own: at another code's place it proves nothing.
    found = {c: book.evidence(c) for c in codes}
    for a, b in itertools.permutations(codes, 2):
        proof = found[a][1]  # type: ignore[index]
        assert proof.root_of(code_hash(b), 5) != root
    # Any spelling of the code finds the same evidence; it survives redemption.
    assert book.evidence(codes[0].lower().replace("-", " ")) == found[codes[0]]
    book.redeem(WORK, codes[0], buyer=FAN, now=T1)
    assert book.evidence(codes[0]) == found[codes[0]]


def test_each_batch_has_its_own_record(book: VoucherBook) -> None:
    paid = book.issue(WORK, 3, now=T0, sign=_signer(face=500))
    gifts = book.issue(WORK, 2, now=T1, sign=_signer(face=0))
    assert {_proves(book, c).issuance.face for c in paid} == {500}
    assert {_proves(book, c).issuance.face for c in gifts} == {0}
    assert _proves(book, paid[0]).id != _proves(book, gifts[0]).id
    # A code of one batch is not in the other's tree.
    gift_record = _proves(book, gifts[0]).issuance
    _, proof = book.evidence(paid[0])  # type: ignore[misc]
    assert proof.root_of(code_hash(paid[0]), gift_record.count) != gift_record.root


def test_evidence_of_a_code_never_issued_or_issued_without_a_record_is_none(
        book: VoucherBook) -> None:
    plain = book.issue(WORK, 1, now=T0)[0]  # no sign: a book used without records
    assert book.evidence(plain) is None
    assert book.evidence(EXAMPLE) is None
    with pytest.raises(VoucherRefused) as e:
        book.evidence(EXAMPLE[:-1] + "W")
    assert e.value.reason == "malformed"


def test_a_sign_callback_that_fails_issues_nothing(book: VoucherBook) -> None:
    def broken(root: bytes, count: int) -> SignedIssuance:
        raise OSError("the ledger's disk is full")

    with pytest.raises(OSError, match="disk is full"):
        book.issue(WORK, 4, now=T0, sign=broken)
    assert book.rows(WORK) == []
    db = book._db
    assert db.execute("SELECT count(*) FROM issuances").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM voucher_proofs").fetchone()[0] == 0


def test_a_record_over_another_root_is_evidence_that_proves_nothing(
        book: VoucherBook) -> None:
    # A buggy or hostile signer commits to another root: the book keeps what it was
    # given, and the proofs it stores then fail against that record, as a verifier sees.
    def lying(root: bytes, count: int) -> SignedIssuance:
        return _signer()(bytes(32), count)

    [code] = book.issue(WORK, 1, now=T0, sign=lying)
    record, proof = book.evidence(code)  # type: ignore[misc]
    signed = SignedIssuance.from_bytes(record)
    assert proof.root_of(code_hash(code), signed.issuance.count) != signed.issuance.root


_ISSUANCE_FORBIDDEN = {
    "rewrite a record": "UPDATE issuances SET record = x'00'",
    "delete a record": "DELETE FROM issuances",
    "move a proof to another batch": "UPDATE voucher_proofs SET issuance = zeroblob(32)",
    "rewrite a proof": "UPDATE voucher_proofs SET path = x''",
    "delete a proof": "DELETE FROM voucher_proofs",
}


@pytest.mark.parametrize("name", list(_ISSUANCE_FORBIDDEN))
def test_sqlite_refuses_to_change_issuance_evidence(tmp_path: Path, name: str) -> None:
    path = tmp_path / "v.sqlite"
    with VoucherBook(path) as book:
        [code] = book.issue(WORK, 1, now=T0, sign=_signer())
        before = book.evidence(code)
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(_ISSUANCE_FORBIDDEN[name])
    db.close()
    with VoucherBook(path) as book:
        assert book.evidence(code) == before


# The schema of voucher books written before issuance records (user_version 1), as
# p2pdist wrote it until issue 21: copied here, so that the upgrade is tested against
# the real old file, not against today's schema.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS vouchers (
    hash        BLOB    PRIMARY KEY CHECK (typeof(hash) = 'blob' AND length(hash) = 32),
    work        BLOB    NOT NULL CHECK (typeof(work) = 'blob' AND length(work) = 32),
    issued      INTEGER NOT NULL CHECK (typeof(issued) = 'integer'),
    redeemed    INTEGER CHECK (redeemed IS NULL OR typeof(redeemed) = 'integer'),
    buyer       BLOB    CHECK (buyer IS NULL OR (typeof(buyer) = 'blob' AND length(buyer) = 32)),
    payment_ref TEXT    CHECK (payment_ref IS NULL OR typeof(payment_ref) = 'text'),
    CHECK ((redeemed IS NULL) = (buyer IS NULL) AND (redeemed IS NULL) = (payment_ref IS NULL))
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vouchers_work ON vouchers (work, issued);
CREATE TRIGGER IF NOT EXISTS vouchers_no_delete BEFORE DELETE ON vouchers
    BEGIN SELECT RAISE(ABORT, 'vouchers are never deleted'); END;
CREATE TRIGGER IF NOT EXISTS vouchers_redeem_once BEFORE UPDATE ON vouchers
    WHEN OLD.redeemed IS NOT NULL OR NEW.redeemed IS NULL
      OR NEW.hash IS NOT OLD.hash OR NEW.work IS NOT OLD.work OR NEW.issued IS NOT OLD.issued
    BEGIN SELECT RAISE(ABORT, 'a voucher is redeemed once, and then never changes'); END;
"""


def _v1_book(path: Path, codes: list[str], redeemed: str) -> None:
    """A version 1 voucher book holding *codes* (issued at T0), *redeemed* by FAN at T1."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(f"BEGIN;{_SCHEMA_V1}PRAGMA user_version=1;COMMIT;")
    ts = int(T0.timestamp())
    db.executemany("INSERT INTO vouchers (hash, work, issued) VALUES (?,?,?)",
                   [(code_hash(c), WORK, ts) for c in codes])
    db.execute("UPDATE vouchers SET redeemed = ?, buyer = ?, payment_ref = ? WHERE hash = ?",
               (int(T1.timestamp()), FAN, payment_ref(code_hash(redeemed)),
                code_hash(redeemed)))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def test_a_version_1_book_opens_upgrades_and_keeps_its_codes(tmp_path: Path) -> None:
    path = tmp_path / "vouchers.sqlite"
    old = [_code(f"{i:016d}") for i in range(1, 4)]
    _v1_book(path, old, redeemed=old[0])
    with VoucherBook(path) as book:
        assert book._db.execute("PRAGMA user_version").fetchone()[0] == 2
        rows = {r.id: r for r in book.rows(WORK)}
        assert set(rows) == {code_hash(c)[:8].hex() for c in old}
        assert rows[code_hash(old[0])[:8].hex()].buyer == FAN
        # Old codes carry no evidence (there was no record), and still work as before.
        assert [book.evidence(c) for c in old] == [None, None, None]
        with pytest.raises(VoucherRefused) as e:
            book.redeem(WORK, old[0], buyer=MALLORY, now=T1)
        assert e.value.reason == "redeemed"
        book.redeem(WORK, old[1], buyer=FAN, now=T1)
        # New codes in the upgraded book get their record and proofs.
        new = book.issue(WORK, 2, now=T1, sign=_signer())
        for c in new:
            _proves(book, c)
    # Reopened: still version 2, nothing lost, and the v1 triggers still hold.
    with VoucherBook(path) as book:
        assert len(book.rows(WORK)) == 5
        assert book.evidence(old[2]) is None
        assert all(book.evidence(c) is not None for c in new)
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("DELETE FROM vouchers")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("DELETE FROM issuances")
    db.close()
