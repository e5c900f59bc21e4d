"""A purchase at the seller, with a voucher book of 100,000 codes vs. one of 100.

    .venv/bin/python bench/purchase.py [--codes 100000] [--reference 100] [--count 50]
    make bench

The target: each kind of purchase takes at most 20 ms at the seller with --codes in the
book, and (the ratio) about as long as with --reference codes: a lookup by the code's
hash, never a scan of the book or the ledger.

Per book size, in one temporary home: a paid work is published (p2pdist.node.publish,
an album of one 100 kB file), the book is filled with that many codes (one
``VoucherBook.issue`` transaction) and a real Shop is built over the real library, the
node's ledger (one SQLite connection, as a running node holds it) and the voucher book,
exactly as `p2pdist seed` routes POST /purchase. What is timed is ``Shop.handle(body)``,
the whole of what the seller does for one request body (parse, verify the buyer's
signature, read and verify the work's license, seal the grant, redeem the voucher, sign
and append the payment receipt, both durable on disk), per request, median and max over
--count requests of each kind:

- fresh: a new code, a new buyer: the payment is taken;
- spent: a code another buyer redeemed: refused ("redeemed", 402);
- repeat: the same buyer sends its redeemed code again (its answer was lost): the
  payment receipt in the ledger is answered again.

The request bodies are signed before the clock starts. Before the timed requests, the
ledger holds --count payments (the fresh ones are timed after them, in the same book).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import nacl.signing

from p2pdist._api import ApiError
from p2pdist._credit import open_ledger
from p2pdist.identity import Identity
from p2pdist.library import Library
from p2pdist.licensing import PaidTerms
from p2pdist.node import publish
from p2pdist.paid import VOUCHERS_NAME, Shop
from p2pdist.payouts.issuance import Issuance, SignedIssuance
from p2pdist.payouts.payments import PurchaseRequest, SignedPurchase
from p2pdist.payouts.vouchers import MAX_ISSUE, VoucherBook

TARGET_MS = 20.0


def _who(name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey.generate())


def _body(seller: Identity, work: bytes, code: str, buyer: Identity) -> bytes:
    return SignedPurchase.sign(PurchaseRequest.seal(
        work=work, buyer=buyer.public_key, seller=seller.public_key, method="voucher",
        payment=code, nonce=os.urandom(16), ts=datetime.now(UTC).replace(microsecond=0),
        receipts=()), buyer).to_bytes()


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def _refused(shop: Shop, body: bytes) -> None:
    try:
        shop.handle(body)
    except ApiError as e:
        if e.status != 402:
            raise
        return
    raise AssertionError("a spent code was accepted")


def measure(root: Path, codes: int, count: int) -> dict[str, list[float]]:
    """Milliseconds per Shop.handle, per kind, with *codes* in the book."""
    seller = _who("ada")
    album = root / "album"
    album.mkdir()
    (album / "a.flac").write_bytes(os.urandom(100_000))
    home = root / "ada"
    res = publish(home, seller, album, title="Album", out=root / "album.torrent",
                  paid=PaidTerms(500, "EUR", 1500, (seller.public_key,)))
    work = bytes.fromhex(res.work)
    now = datetime.now(UTC)
    issued: list[str] = []
    def sign(root_hash: bytes, n: int) -> SignedIssuance:
        # As `vouchers issue` does: the batch's signed issuance record, collected by
        # the seller (each code's Merkle proof is kept with it).
        return SignedIssuance.sign(Issuance(work, seller.public_key, n, 500, "EUR",
                                            root_hash, now.replace(microsecond=0)), seller)

    with VoucherBook(home / VOUCHERS_NAME) as book:
        left = codes
        while left:
            n = min(left, MAX_ISSUE)
            issued += book.issue(work, n, now=now, sign=sign)
            left -= n
    log = open_ledger(home, seller.public_key)
    shop = Shop(seller, Library(home), log, home / VOUCHERS_NAME)
    try:
        first = [(code, _who(f"b{i}")) for i, code in enumerate(issued[:count])]
        for code, buyer in first:  # the payments the spent and repeated codes refer to
            shop.handle(_body(seller, work, code, buyer))
        spent = [_body(seller, work, code, _who("late")) for code, _ in first]
        repeat = [_body(seller, work, code, buyer) for code, buyer in first]
        fresh = [_body(seller, work, code, _who(f"f{i}"))
                 for i, code in enumerate(issued[count:2 * count])]
        return {
            "fresh": [_timed(lambda b=b: shop.handle(b)) for b in fresh],  # type: ignore[misc]
            "spent": [_timed(lambda b=b: _refused(shop, b)) for b in spent],  # type: ignore[misc]
            "repeat": [_timed(lambda b=b: shop.handle(b)) for b in repeat],  # type: ignore[misc]
        }
    finally:
        shop.close()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codes", type=int, default=100_000)
    ap.add_argument("--reference", type=int, default=100)
    ap.add_argument("--count", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pdist-bench-") as tmp:
        (Path(tmp) / "big").mkdir()
        (Path(tmp) / "ref").mkdir()
        ref = measure(Path(tmp) / "ref", max(args.reference, 2 * args.count), args.count)
        big = measure(Path(tmp) / "big", max(args.codes, 2 * args.count), args.count)
    print(f"Shop.handle per request, ms (median / max of {args.count}); book of "
          f"{args.codes:,} codes vs {args.reference:,}")
    print(f"{'':8} {'median':>8} {'max':>8} {'ref median':>11} {'ratio':>6}  target")
    ok = True
    for kind in ("fresh", "spent", "repeat"):
        med, worst = statistics.median(big[kind]), max(big[kind])
        rmed = statistics.median(ref[kind])
        good = med <= TARGET_MS
        ok &= good
        print(f"{kind:8} {med:>8.2f} {worst:>8.2f} {rmed:>11.2f} {med / rmed:>6.2f}  "
              f"<= {TARGET_MS:g} ms {'ok' if good else 'MISSED'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
