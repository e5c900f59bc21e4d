"""Vouchers: single-use codes for one work, sold at the merch table like download codes.

A **code** is 16 random Crockford base32 symbols (80 bits from ``secrets``) and one check
symbol, shown to people in groups of four::

    7K3Q-M9XR-2HTP-VW4C-V        (normalised: 7K3QM9XR2HTPVW4CV)

The alphabet is ``0123456789ABCDEFGHJKMNPQRSTVWXYZ`` (no I, L, O, U). Parsing ignores
case, spaces and dashes, and reads I and L as 1 and O as 0, as Crockford says.

**The check symbol.** Read the 17 symbols as elements of GF(32) = GF(2)[x]/(x⁵+x²+1),
s₀ first. A code is well-formed when

    s₀·x¹⁶ + s₁·x¹⁵ + … + s₁₅·x + s₁₆ = 0

i.e. the check symbol s₁₆ is the weighted sum of the data symbols. The weights x¹⁶ … x⁰
are 17 distinct non-zero field elements (x has order 31), and the sum is linear, so a
changed code is caught exactly when the change itself does not sum to zero. That
guarantees, for every code:

- any **one symbol replaced** by any other symbol (check symbol included) is caught:
  a change e ≠ 0 at one place adds wᵢ·e ≠ 0;
- any **two different symbols swapped**, adjacent or not (check symbol included), is
  caught: the change is (a+b)·(wᵢ+wⱼ) ≠ 0 because a ≠ b and wᵢ ≠ wⱼ;
- likewise any change that adds the same d to two symbols, such as twin errors (33
  typed for 88);
- a symbol **left out or typed twice** is caught by the length (always 17 symbols);
- two unrelated typos may cancel out: a random change slips through 1 time in 32.

Crockford's own mod-37 check catches the same single errors and adjacent swaps but needs
five symbols outside the alphabet (``*~$=U``); this one stays within the 32 symbols
people can already read out, and also catches swaps at any distance.

**Storage.** Only ``SHA-256(b"p2pdist/voucher/v1" || 0x00 || normalised code)`` is
stored; the code is shown once, when it is issued. SQLite in WAL mode with
``synchronous=FULL``; every write is one ``BEGIN IMMEDIATE`` transaction, durable once the
call returns. Triggers refuse DELETE and every UPDATE except the one that redeems an
unredeemed voucher, so a redemption cannot be undone or rewritten through SQLite.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from p2pdist._sqlite import open_durable, storage_error
from p2pdist.errors import InputError, StorageError, VoucherRefused
from p2pdist.identity import atomic_write, key_to_text
from p2pdist.payouts.issuance import MerkleProof, SignedIssuance, merkle_levels, merkle_proof

__all__ = [
    "ALPHABET",
    "CODE_DOMAIN",
    "CODE_LENGTH",
    "MAX_CODE_TEXT",
    "MAX_ISSUE",
    "IssuedVoucher",
    "VoucherBook",
    "VoucherRow",
    "code_hash",
    "csv_bytes",
    "format_code",
    "parse_code",
    "payment_ref",
    "write_csv",
]

ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_DOMAIN: Final = b"p2pdist/voucher/v1"
DATA_SYMBOLS: Final = 16  # 80 random bits
CODE_LENGTH: Final = DATA_SYMBOLS + 1
# A pasted code with generous spacing is ~25 characters; anything longer is not a code,
# and is refused before it is looked at character by character.
MAX_CODE_TEXT: Final = 64
MAX_ISSUE: Final = 100_000
ID_BYTES: Final = 8  # a row's id and payment ref: 16 hex digits of the hash
REF_PREFIX: Final = "voucher:"
SCHEMA_VERSION: Final = 2
MAX_TS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z

_T = TypeVar("_T")
_PREFIX = CODE_DOMAIN + b"\0"
_SEPARATORS = frozenset(" -\t\r\n")
_VALUE = {c: i for i, c in enumerate(ALPHABET)} | {"I": 1, "L": 1, "O": 0}
_GF32_POLY = 0b100101  # x^5 + x^2 + 1


def _times_x(a: int) -> int:
    a <<= 1
    return a ^ _GF32_POLY if a & 0b100000 else a


_TIMES_X: Final = tuple(_times_x(a) for a in range(32))


def _syndrome(values: Iterable[int]) -> int:
    # Horner: s0·x^(n-1) + … + s(n-1); 0 for a well-formed code.
    acc = 0
    for v in values:
        acc = _TIMES_X[acc] ^ v
    return acc


def _check_value(data: Iterable[int]) -> int:
    return _TIMES_X[_syndrome(data)]


def _malformed(message: str) -> VoucherRefused:
    return VoucherRefused(message, reason="malformed")


def parse_code(text: str) -> str:
    """The normalised code (17 symbols, upper case, no separators) that *text* spells.

    Raises VoucherRefused("malformed") for anything that is not a well-formed code: too
    long to be one (checked before anything else), a character that is not a Latin letter,
    a digit, a space or a dash (unicode lookalikes included), a U, the wrong number of
    symbols, or a check symbol that does not match (a typo). TypeError if *text* is not
    a str.
    """
    if not isinstance(text, str):
        raise TypeError("a voucher code is a str")
    if len(text) > MAX_CODE_TEXT:
        raise _malformed(f"this is not a voucher code: {len(text)} characters is too long")
    values: list[int] = []
    for ch in text:
        if ch in _SEPARATORS:
            continue
        # ASCII first: str.upper() maps some non-Latin letters onto Latin ones
        # (U+0131 dotless i to I, U+017F long s to S), and a lookalike is not the letter.
        if not ch.isascii():
            raise _malformed(f"{ch!r} (U+{ord(ch):04X}) is not a character of a voucher "
                             "code; codes use plain Latin letters and digits")
        v = _VALUE.get(ch.upper())
        if v is None:
            raise _malformed(f"{ch!r} is not a character of a voucher code"
                             + (" (codes never contain U)" if ch in "Uu" else ""))
        values.append(v)
    if len(values) != CODE_LENGTH:
        raise _malformed("no voucher code was given" if not values else
                         f"a voucher code has {CODE_LENGTH} letters and digits, "
                         f"this has {len(values)}")
    if _syndrome(values):
        raise _malformed("the code's check character does not match: a character is "
                         "mistyped")
    return "".join(ALPHABET[v] for v in values)


def format_code(code: str) -> str:
    """*code* as people read it: ``7K3Q-M9XR-2HTP-VW4C-V``. Parses it first (see parse_code)."""
    return _group(parse_code(code))


def _group(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def code_hash(code: str) -> bytes:
    """What the database keeps of *code*: SHA-256 over the domain tag and the normalised code."""
    return hashlib.sha256(_PREFIX + parse_code(code).encode("ascii")).digest()


def payment_ref(hash_: bytes) -> str:
    """The payment reference of a redemption: ``voucher:`` and the row's id."""
    return REF_PREFIX + hash_[:ID_BYTES].hex()


# RFC 4648 base32 spells the same 5-bit values with other symbols.
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET)


def _new_code() -> str:
    # 10 random bytes are exactly 16 base32 symbols, no padding.
    data = base64.b32encode(secrets.token_bytes(10)).decode("ascii").translate(_FROM_RFC4648)
    return data + ALPHABET[_check_value(_VALUE[c] for c in data)]


def _check_id32(v: object, what: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise ValueError(f"{what} is 32 bytes")
    return v


def _seconds(now: object) -> int:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError("now is an aware datetime (UTC)")
    ts = int(now.timestamp())
    if not 0 <= ts <= MAX_TS:
        raise ValueError("now is out of range")
    return ts


def _time(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class VoucherRow:
    """One voucher as the seller sees it: never the code, only an id from its hash.

    ``redeemed``, ``buyer`` and ``payment_ref`` are all None until it is redeemed, and
    all set after.
    """

    id: str
    work: bytes
    issued: datetime
    redeemed: datetime | None
    buyer: bytes | None
    payment_ref: str | None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or len(self.id) != 2 * ID_BYTES:
            raise ValueError(f"a voucher id is {2 * ID_BYTES} hex digits")
        _check_id32(self.work, "a voucher's work")
        for t in (self.issued, self.redeemed):
            if t is not None and (not isinstance(t, datetime) or t.utcoffset() is None):
                raise ValueError("voucher times are aware datetimes")
        if self.buyer is not None:
            _check_id32(self.buyer, "a voucher's buyer")
        if not (self.redeemed is None) == (self.buyer is None) == (self.payment_ref is None):
            raise ValueError("a voucher has a redemption time, a buyer and a payment ref, "
                             "or none of them")

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "work": self.work.hex(),
            "issued": _iso(self.issued),
            "redeemed": None if self.redeemed is None else _iso(self.redeemed),
            "buyer": None if self.buyer is None else key_to_text(self.buyer),
            "payment_ref": self.payment_ref,
        }


@dataclass(frozen=True, slots=True)
class IssuedVoucher:
    """A code as issued, for the merch-table CSV: the code itself, its work, when."""

    code: str
    work: bytes
    issued: datetime

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "code", format_code(self.code))
        except VoucherRefused as e:  # rows come from issue(): a bad one is a bug
            raise ValueError(f"not a voucher code: {e.message}") from None
        _check_id32(self.work, "a voucher's work")
        _seconds(self.issued)

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "work": self.work.hex(), "issued": _iso(self.issued)}


def write_csv(path: Path | str, rows: Iterable[IssuedVoucher], *,
              overwrite: bool = False) -> None:
    """Write *rows* as CSV (``code,work,issued``, a header line first), 0600, atomically.

    The codes are money and are shown only once: an existing file is refused
    (InputError) unless *overwrite*, because replacing it would lose its codes for good.
    StorageError if the write fails; then nothing is written.
    """
    path = Path(path)
    refused = InputError(
        f"{path} exists; the voucher codes in it cannot be shown again",
        remedy="write the new codes to another file, or move that one away first")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise refused
    try:
        # Not overwriting is exclusive: linked into place, so that of two writers racing
        # for one name, one fails here instead of replacing the other's codes.
        atomic_write(path, csv_bytes(rows), mode=0o600, exclusive=not overwrite)
    except FileExistsError:
        raise refused from None


def csv_bytes(rows: Iterable[IssuedVoucher]) -> bytes:
    """The CSV that write_csv writes."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["code", "work", "issued"])
    for r in rows:
        if not isinstance(r, IssuedVoucher):
            raise TypeError("write_csv() takes IssuedVoucher rows")
        out.writerow([r.code, r.work.hex(), _iso(r.issued)])
    return buf.getvalue().encode("ascii")


# --- the SQLite voucher book ----------------------------------------------------------

_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS issuances (
    id          BLOB    PRIMARY KEY CHECK (typeof(id) = 'blob' AND length(id) = 32),
    record      BLOB    NOT NULL CHECK (typeof(record) = 'blob')
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS voucher_proofs (
    hash        BLOB    PRIMARY KEY CHECK (typeof(hash) = 'blob' AND length(hash) = 32),
    issuance    BLOB    NOT NULL CHECK (typeof(issuance) = 'blob' AND length(issuance) = 32),
    idx         INTEGER NOT NULL CHECK (typeof(idx) = 'integer'),
    path        BLOB    NOT NULL CHECK (typeof(path) = 'blob')
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS issuances_fixed BEFORE UPDATE ON issuances
    BEGIN SELECT RAISE(ABORT, 'an issuance record never changes'); END;
CREATE TRIGGER IF NOT EXISTS issuances_no_delete BEFORE DELETE ON issuances
    BEGIN SELECT RAISE(ABORT, 'an issuance record is never deleted'); END;
CREATE TRIGGER IF NOT EXISTS voucher_proofs_fixed BEFORE UPDATE ON voucher_proofs
    BEGIN SELECT RAISE(ABORT, 'a voucher proof never changes'); END;
CREATE TRIGGER IF NOT EXISTS voucher_proofs_no_delete BEFORE DELETE ON voucher_proofs
    BEGIN SELECT RAISE(ABORT, 'a voucher proof is never deleted'); END;
CREATE TRIGGER IF NOT EXISTS vouchers_no_delete BEFORE DELETE ON vouchers
    BEGIN SELECT RAISE(ABORT, 'vouchers are never deleted'); END;
CREATE TRIGGER IF NOT EXISTS vouchers_redeem_once BEFORE UPDATE ON vouchers
    WHEN OLD.redeemed IS NOT NULL OR NEW.redeemed IS NULL
      OR NEW.hash IS NOT OLD.hash OR NEW.work IS NOT OLD.work OR NEW.issued IS NOT OLD.issued
    BEGIN SELECT RAISE(ABORT, 'a voucher is redeemed once, and then never changes'); END;
"""


def _storage_error(path: Path, e: sqlite3.Error) -> StorageError:
    return storage_error("voucher book", path, e)


class VoucherBook:
    """The vouchers a seller issued, in one SQLite file (``HOME/vouchers.sqlite``).

    Safe to share between threads (calls are serialised on one connection), and any
    number of processes may open the same file: SQLite serialises their writers, and
    ``redeem`` is single-use across all of them.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_durable(self.path, schema=_SCHEMA, version=SCHEMA_VERSION,
                                what="voucher book", check_same_thread=False)

    # -- plumbing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> VoucherBook:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _write(self, fn: Callable[[], _T]) -> _T:
        """Run *fn* in one BEGIN IMMEDIATE transaction: all of it is durable, or none."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn()
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite has rolled back already when COMMIT failed on a full disk;
                    # a second ROLLBACK would hide that error behind "no transaction".
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise _storage_error(self.path, e) from e
        return out

    def _read(self, fn: Callable[[], _T]) -> _T:
        with self._lock:
            try:
                return fn()
            except sqlite3.Error as e:
                raise _storage_error(self.path, e) from e

    # -- issuing

    def issue(self, work: bytes, count: int, *, now: datetime,
              before_commit: Callable[[list[str]], None] | None = None,
              sign: Callable[[bytes, int], SignedIssuance] | None = None) -> list[str]:
        """Issue *count* new codes for *work* in one transaction; return them formatted.

        This is the only time the codes exist in clear: the book keeps their hashes.
        *before_commit* gets the codes inside the transaction (to write them where they
        will be handed out): if it raises, no code was issued. *sign*, given the batch's
        Merkle root and count, returns the signed issuance record (see issuance.py): it is
        kept with each code's proof, and redeem() evidence reads them back; it is called
        inside the transaction, before *before_commit* (if it raises, nothing is issued).
        ValueError unless 1 <= *count* <= MAX_ISSUE and *now* is aware; StorageError if
        SQLite fails (then no code was issued).
        """
        _check_id32(work, "work")
        if not isinstance(count, int) or isinstance(count, bool) \
                or not 1 <= count <= MAX_ISSUE:
            raise ValueError(f"count is an integer in 1..{MAX_ISSUE}")
        ts = _seconds(now)

        def insert() -> list[str]:
            codes = {_new_code() for _ in range(count)}
            while len(codes) < count:  # 80 random bits repeat essentially never
                codes.add(_new_code())
            # In hash order: appending to the B-trees is several times faster than
            # inserting at random places.
            rows = sorted((hashlib.sha256(_PREFIX + c.encode("ascii")).digest(), work, ts)
                          for c in codes)
            self._db.execute("SAVEPOINT batch")
            try:
                self._db.executemany(
                    "INSERT INTO vouchers (hash, work, issued) VALUES (?,?,?)", rows)
            except sqlite3.IntegrityError:
                # A new code equals one issued before: draw those again, one by one.
                self._db.execute("ROLLBACK TO batch")
                codes = set()
                while len(codes) < count:
                    c = _new_code()
                    if c not in codes and self._db.execute(
                            "INSERT OR IGNORE INTO vouchers (hash, work, issued) "
                            "VALUES (?,?,?)", (hashlib.sha256(_PREFIX + c.encode("ascii"))
                                               .digest(), work, ts)).rowcount == 1:
                        codes.add(c)
            self._db.execute("RELEASE batch")
            if sign is not None:
                hashes = sorted(hashlib.sha256(_PREFIX + c.encode("ascii")).digest()
                                for c in codes)
                levels = merkle_levels(hashes)
                signed = sign(levels[-1][0], len(hashes))
                self._db.execute("INSERT INTO issuances (id, record) VALUES (?,?)",
                                 (signed.id, signed.to_bytes()))
                self._db.executemany(
                    "INSERT INTO voucher_proofs (hash, issuance, idx, path) VALUES (?,?,?,?)",
                    ((h, signed.id, i, b"".join(merkle_proof(levels, i)))
                     for i, h in enumerate(hashes)))
            out = [_group(c) for c in codes]
            if before_commit is not None:
                before_commit(out)
            return out

        return self._write(insert)

    # -- reading

    def rows(self, work: bytes) -> list[VoucherRow]:
        """Every voucher of *work*, oldest first: ids, times, buyers, never the codes."""
        _check_id32(work, "work")

        def select() -> list[VoucherRow]:
            return [
                VoucherRow(
                    id=bytes(h)[:ID_BYTES].hex(), work=bytes(w), issued=_time(issued),
                    redeemed=None if redeemed is None else _time(redeemed),
                    buyer=None if buyer is None else bytes(buyer),
                    payment_ref=None if ref is None else bytes(ref).decode("utf-8", "replace"),
                )
                for h, w, issued, redeemed, buyer, ref in self._db.execute(
                    "SELECT hash, work, issued, redeemed, buyer, payment_ref FROM vouchers "
                    "WHERE work = ? ORDER BY issued, hash", (work,))
            ]

        return self._read(select)

    def find(self, code: str) -> VoucherRow | None:
        """The voucher with *code*, or None: one lookup by its hash (the primary key),
        however many codes the book holds. VoucherRefused("malformed") for a bad code."""
        h = code_hash(code)

        def select() -> VoucherRow | None:
            row = self._db.execute(
                "SELECT work, issued, redeemed, buyer, payment_ref FROM vouchers "
                "WHERE hash = ?", (h,)).fetchone()
            if row is None:
                return None
            w, issued, redeemed, buyer, ref = row
            return VoucherRow(
                id=h[:ID_BYTES].hex(), work=bytes(w), issued=_time(issued),
                redeemed=None if redeemed is None else _time(redeemed),
                buyer=None if buyer is None else bytes(buyer),
                payment_ref=None if ref is None else bytes(ref).decode("utf-8", "replace"))

        return self._read(select)

    def evidence(self, code: str) -> tuple[bytes, MerkleProof] | None:
        """The signed issuance record of *code*'s batch and its proof of membership, or
        None for a code issued without one (before issuance records). One lookup each."""
        h = code_hash(code)

        def select() -> tuple[bytes, MerkleProof] | None:
            row = self._db.execute(
                "SELECT p.idx, p.path, i.record FROM voucher_proofs p JOIN issuances i "
                "ON i.id = p.issuance WHERE p.hash = ?", (h,)).fetchone()
            if row is None:
                return None
            idx, path, record = row
            path = bytes(path)
            return bytes(record), MerkleProof(
                idx, tuple(path[i:i + 32] for i in range(0, len(path), 32)))

        return self._read(select)

    def _refusal(self, work: bytes, h: bytes) -> VoucherRefused | None:
        """Why the voucher with hash *h* does not redeem *work*, or None if it does."""
        row = self._db.execute(
            "SELECT work, redeemed FROM vouchers WHERE hash = ?", (h,)).fetchone()
        if row is None:
            return VoucherRefused("no voucher with this code was issued", reason="unknown")
        if bytes(row[0]) != work:
            return VoucherRefused(
                f"this code is a voucher for another work, {bytes(row[0]).hex()}",
                reason="other-work")
        if row[1] is not None:
            # When, never by whom: the buyer's key is the seller's business.
            return VoucherRefused(
                f"this code was already redeemed, on {_iso(_time(row[1]))}",
                reason="redeemed")
        return None

    def check(self, work: bytes, code: str) -> None:
        """Return None if *code* would redeem *work* now; raise VoucherRefused if not.

        Redeems nothing, so a later ``redeem`` may still be refused (another buyer was
        faster): ``redeem`` is the only answer that counts.
        """
        _check_id32(work, "work")
        h = code_hash(code)
        refusal = self._read(lambda: self._refusal(work, h))
        if refusal is not None:
            raise refusal

    # -- redeeming

    def redeem(self, work: bytes, code: str, *, buyer: bytes, now: datetime) -> str:
        """Redeem *code* for *work* and *buyer*, once ever; return its payment ref.

        Checks, in order:
          (1) the code is well-formed, check symbol included      (VoucherRefused "malformed");
          (2) an unredeemed voucher with this code exists for *work*: taken in the same
              statement, inside one BEGIN IMMEDIATE transaction, so of any number of
              threads and processes racing for one code exactly one gets it;
        and if (2) fails, why, in the same transaction:
          (3) no voucher has this code                            (VoucherRefused "unknown");
          (4) it is a voucher for another work                    (VoucherRefused "other-work");
          (5) it was redeemed already, at the time given          (VoucherRefused "redeemed").
        A refusal changes nothing. The redemption is durable when this returns.
        """
        _check_id32(work, "work")
        _check_id32(buyer, "buyer")
        ts = _seconds(now)
        # (1) malformed: refused before the database is touched
        h = code_hash(code)
        ref = payment_ref(h)

        def take() -> str:
            # (2) single use: the row changes only while redeemed IS NULL
            cur = self._db.execute(
                "UPDATE vouchers SET redeemed = ?, buyer = ?, payment_ref = ? "
                "WHERE hash = ? AND work = ? AND redeemed IS NULL",
                (ts, buyer, ref, h, work))
            if cur.rowcount != 1:
                # (3), (4), (5), seen in this transaction; raising rolls it back
                refusal = self._refusal(work, h)
                if refusal is None:
                    raise AssertionError("a redeemable voucher was not redeemed")
                raise refusal
            return ref

        return self._write(take)
