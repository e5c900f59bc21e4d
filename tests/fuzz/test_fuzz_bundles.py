"""Fuzzing ledger bundles (`receipts import`, `audit`) and voucher codes (`buy --voucher`,
the seller's voucher book).

Bundles are mutated two ways: as bytes and bencode trees (the chain and checkpoint then
break), and rebuilt around fuzzed payloads with a real hash chain and a checkpoint
signed by the node, so the receipt and payment parsers inside are reached as the audit
and the importer meet them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pdist import node
from p2pdist._credit import COLLECTED, ISSUED, RECEIVED
from p2pdist.payouts._merkle import MerkleBuilder
from p2pdist.payouts.audit import PAYMENT_ISSUED, audit
from p2pdist.payouts.ledger import (
    MAX_PAYLOAD_SIZE,
    ZERO_HASH,
    Checkpoint,
    Entry,
    Ledger,
    SignedCheckpoint,
    _bundle_bytes,
    verify_bundle,
)
from p2pdist.payouts.vouchers import VoucherBook, parse_code
from tests.fuzz._harness import FUZZ, clean
from tests.fuzz._mutate import mutants, text_mutants
from tests.fuzz._seeds import BUYER, FAN1, T0, seeds


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    p = Path(tempfile.mkdtemp(prefix="p2pdist-fuzz-"))
    yield p
    shutil.rmtree(p, ignore_errors=True)


def _rebuilt(items: list[tuple[str, bytes]]) -> bytes:
    """A bundle of FAN1's chain holding *items*, hashed and checkpointed for real."""
    entries, merkle, prev = [], MerkleBuilder(), ZERO_HASH
    for seq, (kind, payload) in enumerate(items, 1):
        e = Entry(FAN1.public_key, seq, kind, payload, prev)
        entries.append(e)
        merkle.append(e.hash)
        prev = e.hash
    cp = Checkpoint(FAN1.public_key, len(entries), prev, merkle.root(), T0 + timedelta(days=1))
    return _bundle_bytes(FAN1.public_key, SignedCheckpoint.sign(cp, FAN1), entries)


_RECEIPT_KINDS = (ISSUED, RECEIVED, COLLECTED)


@st.composite
def bundles(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(mutants(lambda: seeds().bundles))
    items = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from([*_RECEIPT_KINDS, PAYMENT_ISSUED, "payment.received",
                                     "note"]))
        pool = seeds().payments if kind.startswith("payment") else seeds().receipts
        payload = draw(mutants(lambda pool=pool: pool))[:MAX_PAYLOAD_SIZE]
        items.append((kind, payload))
    return _rebuilt(items)


def _bundle(data: bytes, ledger: Ledger) -> None:
    check = node._check_payload
    audit([data], seeds().works)  # findings are returned, never raised
    verify_bundle(data, on_payload=lambda e: check(e.kind, e.payload))
    ledger.import_bundle(data, on_payload=lambda e: check(e.kind, e.payload))


@FUZZ
@given(data=bundles())
def test_fuzzed_bundle_ends_in_a_clean_error(data: bytes, scratch: Path) -> None:
    with Ledger(scratch / "label.db") as ledger:
        clean("ledger bundle", lambda: _bundle(data, ledger))


def _voucher(text: str, book: VoucherBook) -> None:
    s = seeds()
    parse_code(text)  # the buyer's side, before a request is signed
    book.check(s.paid_work, text)
    book.redeem(s.paid_work, text, buyer=BUYER.public_key, now=T0)


def _codes() -> list[str]:
    codes = list(seeds().vouchers)
    return [*codes, codes[1].lower(), codes[2].replace("-", " "), codes[3].replace("-", "")]


@FUZZ
@given(text=text_mutants(_codes))
def test_fuzzed_voucher_code_ends_in_a_clean_error(text: str, scratch: Path) -> None:
    book_path = scratch / "vouchers.db"
    if not book_path.exists():
        shutil.copy(seeds().voucher_book, book_path)
    with VoucherBook(book_path) as book:
        clean("voucher code", lambda: _voucher(text, book))
