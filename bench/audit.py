"""Audit speed and memory over real bundles, against a bare PyNaCl verify loop.

    .venv/bin/python bench/audit.py [--receipts 1000000] [--nodes 1000] [--from 100000]
        [--per-key 10] [--copies 2] [--repeat 1] [--cache DIR] [--jobs N]

Quick try: ``--receipts 100000 --nodes 100 --from 10000``.

For each size (--from receipts on --nodes * from/receipts nodes, so bundles keep their
size, then --receipts on --nodes; --from 0 runs one size) the bundles come from
bench/make_bundles.py (generated once, cached). Then, in a fresh process each, so the
peak memory is the audit's own:

- ``audit(bundles, works)`` with the bundles read lazily, one file at a time, as the CLI
  would: every chain, checkpoint, receipt and payment signature, and the cross-checks.
  The peak RSS of the process (ru_maxrss) after the first run, beside its RSS before.
- the bare loop: every receipt entry in the bundles (parsed beforehand, untimed) checked
  with ``nacl.signing.VerifyKey(pk).verify(domain || 0 || receipt, sig)``, the way
  bench/ledger.py's bare loop does, and again with the raw ``crypto_sign_open``.

The three alternate, --repeat times, and each figure is the best of its runs (other load
on the machine then hits them alike).

The ratio is the bare loop's time over the audit's: 1.0 means the audit costs nothing on
top of the signature checks (target: at least 0.7). The audit checks a receipt held by
two nodes (--copies 2) once when it is the latest of its key, so it verifies slightly
fewer signatures than the bare loop; "verified" says how many, and "same n" is the ratio
against a bare loop over that many signatures (the stricter figure). Growth is the audit's
time per receipt at the largest size over the smallest (1.0 = linear).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.signing
from make_bundles import Params, ensure, works_from_json

from p2pdist.payouts import audit as audit_mod
from p2pdist.payouts.audit import RECEIPT_KINDS, audit
from p2pdist.payouts.ledger import verify_bundle
from p2pdist.payouts.receipts import DOMAIN, SignedReceipt


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measure(d: Path, repeat: int, q: Any) -> None:
    """In a fresh process: time audit() and the bare loops over the bundles in *d*."""
    works = works_from_json(json.loads((d / "works.json").read_text()))
    files = sorted(d.glob("*.bundle"))
    before = _rss_mib()
    t = time.perf_counter()
    report = audit((f.read_bytes() for f in files), works)
    times = [time.perf_counter() - t]
    peak = _rss_mib()  # before anything else is loaded
    # What the bare loops check: every receipt entry, parsed by the strict parser (untimed).
    sigs = []
    for f in files:
        for e in verify_bundle(f.read_bytes()).entries:
            if e.kind in RECEIPT_KINDS:
                s = SignedReceipt.from_bytes(e.payload)
                sigs.append((s.receipt.downloader, DOMAIN + b"\0" + s.receipt_bytes, s.sig))
    sms = [(pk, sig + msg) for pk, msg, sig in sigs]
    real_open = nacl.bindings.crypto_sign_open
    verify_key = nacl.signing.VerifyKey

    def bare() -> None:
        for pk, msg, sig in sigs:
            verify_key(pk).verify(msg, sig)

    def raw() -> None:
        for pk, sm in sms:
            real_open(sm, pk)

    # Alternate the three, best of each: the machine's noise hits them alike.
    bare_times: list[float] = []
    raw_times: list[float] = []
    for i in range(repeat):
        if i:
            t = time.perf_counter()
            audit((f.read_bytes() for f in files), works)
            times.append(time.perf_counter() - t)
        for fn, out in ((bare, bare_times), (raw, raw_times)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    # How many receipt signatures the audit checks (one more pass, untimed).
    crypto = 0

    def counting_open(sm: bytes, pk: bytes) -> bytes:
        nonlocal crypto
        crypto += 1
        return real_open(sm, pk)

    audit_mod.nacl.bindings.crypto_sign_open = counting_open  # type: ignore[attr-defined]
    try:
        audit((f.read_bytes() for f in files), works)
    finally:
        audit_mod.nacl.bindings.crypto_sign_open = real_open  # type: ignore[attr-defined]
    kinds: dict[str, int] = {}
    for finding in report.findings:
        kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
    q.put({"seconds": min(times), "bare": min(bare_times), "raw": min(raw_times),
           "all": [times, bare_times, raw_times], "rss_before": before, "rss_peak": peak,
           "receipts": report.receipts, "verified": crypto, "counts": report.counts(),
           "findings": kinds, "bytes": sum(f.stat().st_size for f in files)})


def run(d: Path, repeat: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(d, repeat, q))
    p.start()
    out: dict[str, Any] = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--from", dest="start", type=int, default=100_000,
                    help="the smaller size for the growth figure (0: only --receipts)")
    ap.add_argument("--per-key", type=int, default=10)
    ap.add_argument("--copies", type=int, choices=(1, 2), default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    a = ap.parse_args()
    sizes = [(a.receipts, a.nodes)]
    if a.start and a.start < a.receipts:
        sizes.insert(0, (a.start, max(2, a.nodes * a.start // a.receipts)))
    rows = []
    for n, m in sizes:
        d = ensure(Params(n, m, a.per_key, a.copies), a.cache, a.jobs)
        print(f"auditing {n:,} receipts from {m:,} bundles…", flush=True)
        rows.append((n, m, run(d, a.repeat)))
    print()
    print(f"{'receipts':>10} {'bundles':>7} {'MiB':>6} {'audit s':>8} {'receipts/s':>10} "
          f"{'verified':>9} {'bare s':>7} {'ratio':>6} {'same n':>6} {'raw s':>7} "
          f"{'ratio':>6} {'RSS MiB':>13} {'findings':>8}")
    for _, m, r in rows:
        print(f"{r['receipts']:>10,} {m:>7,} {r['bytes'] / 2**20:>6.0f} {r['seconds']:>8.2f} "
              f"{r['receipts'] / r['seconds']:>10,.0f} {r['verified']:>9,} "
              f"{r['bare']:>7.2f} {r['bare'] / r['seconds']:>6.2f} "
              f"{r['bare'] * r['verified'] / r['receipts'] / r['seconds']:>6.2f} "
              f"{r['raw']:>7.2f} "
              f"{r['raw'] / r['seconds']:>6.2f} "
              f"{r['rss_before']:>5.0f}->{r['rss_peak']:<6.0f} {sum(r['findings'].values()):>8}")
    if len(rows) == 2:
        (n0, _, r0), (n1, _, r1) = rows
        growth = (r1["seconds"] / r1["receipts"]) / (r0["seconds"] / r0["receipts"])
        print(f"\ngrowth {n0:,} -> {n1:,} receipts: time per receipt x{growth:.2f} "
              "(1.00 = linear)")
    for n, _, r in rows:
        if r["findings"]:
            print(f"findings at {n:,}: {r['findings']}")
        print(f"counts at {n:,}: {r['counts']}")


if __name__ == "__main__":
    main()
