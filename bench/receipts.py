"""Receipt sign and verify speed, against a bare PyNaCl loop over the same bytes.

    .venv/bin/python bench/receipts.py [--count 5000] [--repeat 5]

What is timed, per receipt, over --count distinct receipts (seq 1..count) of one
downloader; each figure is the best of --repeat runs:

- sign: ``SignedReceipt.sign(receipt, identity).to_bytes()``, i.e. encode the receipt,
  sign it under the receipt domain, encode the envelope: what a downloader does every
  4 MiB. The bare loop is ``SigningKey.sign(domain || 0 || receipt_bytes)`` alone.
- verify: ``SignedReceipt.from_bytes(envelope)`` then ``verify_receipt`` with every policy
  argument (uploader, work size, known works, previous receipt): what an uploader does per
  ``POST /receipts``. The bare loop is ``VerifyKey(pk).verify(msg, sig)`` over the same
  bytes and signatures, with the VerifyKey built once (the fastest a bare loop can be) and
  again per receipt (what a verifier of many downloaders' receipts does).

The ratio is p2pdist's rate over the bare rate: 1.0 means the object model costs nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import nacl.signing

from p2pdist.identity import Identity
from p2pdist.payouts.receipts import DOMAIN, SignedReceipt, TransferReceipt, verify_receipt

WORK = bytes(range(32))
SIZE = 2**40


def _best_rate(fn: Callable[[], None], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return count / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n: int = args.count

    fan = Identity("fan", nacl.signing.SigningKey(bytes(range(32))))
    uploader = bytes(nacl.signing.SigningKey(bytes(range(32, 64))).verify_key)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    receipts = [TransferReceipt(WORK, uploader, fan.public_key, i + 1, (i + 1) * 4_194_304,
                                t0 + timedelta(seconds=5 * i)) for i in range(n)]
    signed = [SignedReceipt.sign(r, fan) for r in receipts]
    envelopes = [s.to_bytes() for s in signed]
    messages = [DOMAIN + b"\0" + s.receipt_bytes for s in signed]
    sigs = [s.sig for s in signed]
    previous = [None, *receipts[:-1]]
    known = {WORK}

    def sign_ours() -> None:
        for r in receipts:
            SignedReceipt.sign(r, fan).to_bytes()

    def sign_bare() -> None:
        sk = fan.signing_key
        for m in messages:
            sk.sign(m)

    def verify_ours() -> None:
        for env, prev in zip(envelopes, previous, strict=True):
            verify_receipt(SignedReceipt.from_bytes(env), uploader=uploader, work_size=SIZE,
                           known_works=known, previous=prev)

    def verify_bare_cached_key() -> None:
        vk = nacl.signing.VerifyKey(fan.public_key)
        for m, s in zip(messages, sigs, strict=True):
            vk.verify(m, s)

    def verify_bare_key_per_receipt() -> None:
        pk = fan.public_key
        for m, s in zip(messages, sigs, strict=True):
            nacl.signing.VerifyKey(pk).verify(m, s)

    rates = {name: _best_rate(fn, n, args.repeat) for name, fn in (
        ("sign", sign_ours), ("sign-bare", sign_bare), ("verify", verify_ours),
        ("verify-bare-cached-key", verify_bare_cached_key),
        ("verify-bare-key-per-receipt", verify_bare_key_per_receipt))}

    print(f"{n} receipts, best of {args.repeat}; envelopes {len(envelopes[0])} bytes")
    print(f"{'':34} {'p2pdist/s':>10} {'bare/s':>10} {'ratio':>6}")
    for ours, bare in (("sign", "sign-bare"), ("verify", "verify-bare-cached-key"),
                       ("verify", "verify-bare-key-per-receipt")):
        label = f"{ours} vs {bare.removeprefix(ours + '-')}"
        print(f"{label:34} {rates[ours]:>10,.0f} {rates[bare]:>10,.0f} "
              f"{rates[ours] / rates[bare]:>6.2f}")


if __name__ == "__main__":
    main()
