"""Ledger speed: durable appends per second, and verify/import of 100,000 signed payloads.

    .venv/bin/python bench/ledger.py [--count 100000] [--repeat 2] [--append-seconds 2]
                                     [--dir DIR]

What is timed:

- append: ``Ledger.append_many`` in batches of 1, 10 and 100 entries of 200 bytes, each
  batch one ``BEGIN IMMEDIATE`` … ``COMMIT`` with ``synchronous=FULL`` (an fsync per
  commit), for about --append-seconds each. Figures depend on the disk: use --dir to put
  the database on the disk you care about (default: a temp dir).
- verification of --count receipt-sized signed payloads. Each payload stands in for a
  signed receipt: ``pk (32) || sig (64) || 120 random bytes``, signed with PyNaCl by one
  of 100 keys. The ledger itself checks hashes, chains and checkpoints; the payload
  signatures are checked by a callback (``on_payload``), here a bare PyNaCl verify, the
  way the receipt layer will plug in. Timed, each with that callback:
    * ``Ledger.verify()`` of the node's own database;
    * ``verify_bundle()`` of the exported bundle (parse, chain, Merkle root, signatures);
    * ``Ledger.import_bundle()`` into a fresh database (all that, plus the insert);
  against the bare loop ``VerifyKey(pk).verify(sig || msg)`` over the same payloads. The
  ratio is the bare loop's time over ours: 1.0 means the ledger costs nothing on top of
  the signature checks (the issue's target is at least 0.7). Each is the best of --repeat.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import nacl.signing

from p2pdist.identity import Identity
from p2pdist.payouts.ledger import Entry, Ledger, verify_bundle

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _timed(fn: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_appends(d: Path, node: bytes, seconds: float) -> None:
    rng = random.Random(1)
    print(f"durable appends (synchronous=FULL, WAL), ~{seconds:g} s per batch size, in {d}")
    print(f"{'batch':>6} {'entries/s':>11} {'commits/s':>10}")
    for batch in (1, 10, 100):
        with Ledger(d / f"append-{batch}.db", node=node) as ledger:
            items = [("receipt.received", rng.randbytes(200)) for _ in range(batch)]
            n = 0
            t = time.perf_counter()
            while (elapsed := time.perf_counter() - t) < seconds:
                ledger.append_many(items)
                n += 1
        print(f"{batch:>6} {n * batch / elapsed:>11,.0f} {n / elapsed:>10,.0f}")


def bench_verify(d: Path, identity: Identity, count: int, repeat: int) -> None:
    rng = random.Random(2)
    keys = [nacl.signing.SigningKey(rng.randbytes(32)) for _ in range(100)]
    t = time.perf_counter()
    payloads = []
    for i in range(count):
        sk = keys[i % len(keys)]
        payloads.append(bytes(sk.verify_key) + bytes(sk.sign(rng.randbytes(120))))
    print(f"\n{count:,} signed payloads of {len(payloads[0])} bytes "
          f"(signed in {time.perf_counter() - t:.1f} s)")

    def check(e: Entry) -> None:
        p = e.payload
        nacl.signing.VerifyKey(p[:32]).verify(p[32:])

    def bare() -> None:
        for p in payloads:
            nacl.signing.VerifyKey(p[:32]).verify(p[32:])

    with Ledger(d / "node.db", node=identity.public_key) as node:
        t = time.perf_counter()
        node.append_many(("receipt.received", p) for p in payloads)
        print(f"stored in one batch in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        bundle = node.export_bundle(identity, now=T0)
        print(f"exported a {len(bundle) / 2**20:.1f} MiB bundle in "
              f"{time.perf_counter() - t:.2f} s")
        t_bare = _timed(bare, repeat)
        rows = [
            ("Ledger.verify, hashes only", _timed(node.verify, repeat)),
            ("Ledger.verify + signatures",
             _timed(lambda: node.verify(on_payload=check), repeat)),
            ("verify_bundle, hashes only", _timed(lambda: verify_bundle(bundle), repeat)),
            ("verify_bundle + signatures",
             _timed(lambda: verify_bundle(bundle, on_payload=check), repeat)),
        ]
    imports = iter(range(repeat))

    def fresh_import() -> None:
        # Each run imports into a database of its own: a second import would skip all.
        with Ledger(d / f"label-{next(imports)}.db") as label:
            label.import_bundle(bundle, on_payload=check)
            assert label.size(identity.public_key) == count

    rows.append(("import_bundle + signatures", _timed(fresh_import, repeat)))
    print(f"{'':30} {'seconds':>8} {'entries/s':>10} {'ratio to bare':>14}")
    print(f"{'bare PyNaCl verify loop':30} {t_bare:>8.2f} {count / t_bare:>10,.0f} "
          f"{1.0:>14.2f}")
    for name, secs in rows:
        print(f"{name:30} {secs:>8.2f} {count / secs:>10,.0f} {t_bare / secs:>14.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--append-seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=2, help="best of N for the verify timings")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    identity = Identity("bench", nacl.signing.SigningKey(bytes(range(32))))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        bench_appends(d, identity.public_key, args.append_seconds)
        bench_verify(d, identity, args.count, args.repeat)
        os.sync()


if __name__ == "__main__":
    main()
