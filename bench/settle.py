"""Audit and payouts at a label's scale, against the same run under an older tree's rules.

    .venv/bin/python bench/settle.py [--receipts 1000000] [--nodes 10000] [--per-key 2]
        [--buy 0.8] [--repeat 1] [--reference TREE] [--cache DIR] [--jobs N]

The bundles come from bench/make_bundles.py (real keys, signatures and SQLite ledgers,
generated once and cached): --receipts receipt entries and, with the defaults, about
100,000 sales. Then, in a fresh process, ``audit()`` of every bundle (read lazily, as the
CLI does) and ``compute_statement()`` of what holds (the sales, every latest receipt),
timed apart, best of --repeat.

--reference TREE (a checkout of p2pdist at another commit), or --reference-commit
COMMIT (e.g. e9efa27, before issue 21's double-entry settlement), runs the same
measurement with that tree's code on that tree's own bundles (its make_bundles.py, the
same parameters), so the reference is today's rules on the same population. The ratio
is the reference's time over this tree's: 1.0 = as fast, above 1 = faster (target: at
least 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# Run in a fresh interpreter with the tree's own p2pdist and make_bundles on sys.path.
_MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
from datetime import UTC, datetime
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
from make_bundles import Params, ensure, works_from_json
from p2pdist.payouts.audit import audit
from p2pdist.payouts.statement import StatementWork, compute_statement
p = json.loads(sys.argv[2])
d = ensure(Params(p["receipts"], p["nodes"], p["per_key"], 2, p["buy"]),
           Path(p["cache"]) if p["cache"] else None, p["jobs"], quiet=True)
works = works_from_json(json.loads((d / "works.json").read_text()))
files = sorted(d.glob("*.bundle"))
swork = {w: StatementWork("w", i.terms, ((b"\1" * 32, 10_000),), i.size)
         for w, i in works.items()}
best_a = best_s = float("inf")
for _ in range(p["repeat"]):
    t = time.perf_counter()
    report = audit((f.read_bytes() for f in files), works)
    a = time.perf_counter() - t
    t = time.perf_counter()
    sales = list(report.sales) if hasattr(report, "sales") else \
        [x.payment for x in report.payments]
    st = compute_statement(label=b"\2" * 32, works=swork, sales=sales,
                           transfers=[s.receipt for s in report.transfers()],
                           issued=datetime(2026, 1, 1, tzinfo=UTC))
    s = time.perf_counter() - t
    best_a, best_s = min(best_a, a), min(best_s, s)
    assert st.sums_exactly
print(json.dumps({"audit": best_a, "statement": best_s, "receipts": report.receipts,
                  "sales": len(sales), "transfers": report.transfer_count,
                  "findings": len(report.findings), "lines": len(st.lines),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(tree: Path, params: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(tree), json.dumps(params)],
                         env=env, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--per-key", type=int, default=2)
    ap.add_argument("--buy", type=float, default=0.8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--reference", type=Path, default=None,
                    help="a checkout of p2pdist whose rules are the reference")
    ap.add_argument("--reference-commit", default=None,
                    help="or a commit of this repository, unpacked with git archive "
                    "(e9efa27: before issue 21's settlement)")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    a = ap.parse_args()
    params = {"receipts": a.receipts, "nodes": a.nodes, "per_key": a.per_key, "buy": a.buy,
              "repeat": a.repeat, "cache": str(a.cache) if a.cache else None, "jobs": a.jobs}
    runs = [("this tree", HERE.parent)]
    if a.reference_commit:
        tmp = Path(tempfile.mkdtemp(prefix="p2pdist-ref-"))
        archive = subprocess.run(["git", "-C", str(HERE.parent), "archive",
                                  a.reference_commit], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        a.reference = tmp
    if a.reference is not None:
        runs.append(("reference", a.reference.resolve()))
    rows = []
    for name, tree in runs:
        t = time.perf_counter()
        print(f"{name}: {tree} (bundles generated if not cached)…", flush=True)
        r = measure(tree, params)
        print(f"  done in {time.perf_counter() - t:.0f} s", flush=True)
        rows.append((name, r))
    print(f"\n{'run':<10} {'receipts':>10} {'sales':>8} {'audit s':>8} {'statement s':>11} "
          f"{'total s':>8} {'findings':>8} {'lines':>7} {'RSS MiB':>8}")
    for name, r in rows:
        print(f"{name:<10} {r['receipts']:>10,} {r['sales']:>8,} {r['audit']:>8.2f} "
              f"{r['statement']:>11.2f} {r['audit'] + r['statement']:>8.2f} "
              f"{r['findings']:>8} {r['lines']:>7,} {r['rss_mib']:>8.0f}")
    if len(rows) == 2:
        new, ref = rows[0][1], rows[1][1]
        total = (ref["audit"] + ref["statement"]) / (new["audit"] + new["statement"])
        print(f"\nspeed vs reference (reference time / this tree's): audit "
              f"{ref['audit'] / new['audit']:.2f}, statement "
              f"{ref['statement'] / new['statement']:.2f}, total {total:.2f} "
              "(target: at least 0.8)")


if __name__ == "__main__":
    main()
