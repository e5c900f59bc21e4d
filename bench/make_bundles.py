"""Generate real receipt bundles for bench/audit.py: real keys, signatures, ledgers.

    .venv/bin/python bench/make_bundles.py [--receipts 1000000] [--nodes 1000]
        [--per-key 10] [--copies 2] [--buy 0.3] [--seed 1] [--cache DIR] [--jobs N]

A deterministic population (everything follows from the parameters):

- --nodes nodes, each with its own ed25519 key;
- works: max(4, nodes // 25), 256 MiB to 1 GiB each; every other one is for sale
  (5.00 EUR, 15 % to redistributors, sold by one node), the others are CC BY-SA;
- transfer streams (work, uploader, downloader) between random distinct nodes, each of
  --per-key cumulative receipts (seq 1, 2, … every 5 s), never more than 16 uploaders per
  (work, downloader) and each at most 1/16 of the work, so nothing is over size;
- each receipt is signed by its downloader and kept in its ledger (``receipt.issued``)
  and, with --copies 2 (the real flow), in its uploader's (``receipt.received``);
- a downloader of a work for sale buys it with probability --buy, with a code of the
  seller's one batch for that work (a signed issuance record at the price, a Merkle
  proof per code): its purchase request, signed by the buyer, carries its latest receipt
  from each uploader; the seller signs a v2 payment receipt holding that request; the
  seller keeps it (``payment.issued``) and so does the buyer (``payment.received``).

--receipts counts receipt entries across all bundles (so with --copies 2 half as many
distinct signatures). Each node's ledger is a real SQLite Ledger, appended in one batch
and exported as a bundle with a signed checkpoint. Nodes are built in parallel (--jobs,
default every core); signatures are deterministic, so the uploader's copy of a receipt is
the downloader's byte for byte without passing them between processes.

Bundles are cached in --cache (default $XDG_CACHE_HOME/p2pdist-bench, else
~/.cache/p2pdist-bench) under a directory named by the parameters, with works.json, and
reused when complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.signing

from p2pdist.identity import Identity
from p2pdist.licensing import CCTerms, PaidTerms
from p2pdist.payouts.audit import WorkInfo
from p2pdist.payouts.issuance import (
    Issuance,
    MerkleProof,
    SignedIssuance,
    merkle_levels,
    merkle_proof,
)
from p2pdist.payouts.ledger import Ledger
from p2pdist.payouts.payments import (
    PaymentReceipt,
    PurchaseRequest,
    SignedPayment,
    SignedPurchase,
)
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt

GEN_VERSION = 2
T0 = datetime(2025, 1, 1, tzinfo=UTC)
MAX_UPLOADERS = 16
PRICE, CURRENCY, SHARE = 500, "EUR", 1500


@dataclass(frozen=True)
class Params:
    receipts: int
    nodes: int
    per_key: int = 10
    copies: int = 2
    buy: float = 0.3
    seed: int = 1

    def name(self) -> str:
        return (f"n{self.receipts}-m{self.nodes}-r{self.per_key}-c{self.copies}"
                f"-b{self.buy:g}-s{self.seed}-v{GEN_VERSION}")


@dataclass(frozen=True)
class Work:
    id: bytes
    size: int
    seller: int | None  # node index, or None for a CC work


@dataclass(frozen=True)
class Stream:
    work: int
    uploader: int
    downloader: int
    count: int  # receipts
    final: int  # bytes acknowledged by the last one
    t: int  # seconds after T0 of the first


@dataclass(frozen=True)
class Sale:
    work: int
    buyer: int
    nonce: bytes
    served: tuple[int, ...]  # stream indexes of the buyer's uploaders
    t: int
    code: int  # its code's index in the work's batch


@dataclass
class Plan:
    params: Params
    seeds: list[bytes]
    pks: list[bytes]
    works: list[Work]
    streams: list[Stream]
    sales: list[Sale]
    by_node: dict[int, list[int]]  # node -> stream indexes it holds receipts of
    sales_by_node: dict[int, list[int]]  # node -> sale indexes it holds
    codes: dict[int, int]  # work -> codes issued (its sales)


def make_plan(p: Params) -> Plan:
    rng = random.Random(p.seed)
    seeds = [hashlib.sha256(b"p2pdist-bench/node/%d/%d" % (p.seed, i)).digest()
             for i in range(p.nodes)]
    pks = [bytes(nacl.signing.SigningKey(s).verify_key) for s in seeds]
    works = []
    for j in range(max(4, p.nodes // 25)):
        size = (256 << 20) * (1 + j % 4)
        works.append(Work(hashlib.sha256(b"p2pdist-bench/work/%d/%d" % (p.seed, j)).digest(),
                          size, rng.randrange(p.nodes) if j % 2 == 0 else None))
    distinct = -(-p.receipts // p.copies)  # distinct signed receipts
    streams: list[Stream] = []
    seen: set[tuple[int, int, int]] = set()
    uploaders: dict[tuple[int, int], list[int]] = defaultdict(list)
    left = distinct
    t = 0
    while left > 0:
        w = rng.randrange(len(works))
        d = rng.randrange(p.nodes)
        u = rng.randrange(p.nodes)
        if u == d or (w, u, d) in seen or len(uploaders[(w, d)]) >= MAX_UPLOADERS:
            continue
        seen.add((w, u, d))
        count = min(p.per_key, left)
        final = works[w].size // MAX_UPLOADERS * rng.randint(50, 100) // 100
        s = len(streams)
        streams.append(Stream(w, u, d, count, max(final, count), t))
        uploaders[(w, d)].append(s)
        left -= count
        t += 7
    sales: list[Sale] = []
    per_work: dict[int, int] = defaultdict(int)
    for (w, d), ss in sorted(uploaders.items()):
        seller = works[w].seller
        if seller is None or seller == d or rng.random() >= p.buy:
            continue
        sold = per_work[w]
        per_work[w] += 1
        sales.append(Sale(w, d, rng.randbytes(16), tuple(ss),
                          max(streams[s].t + 5 * streams[s].count for s in ss) + 60, sold))
    by_node: dict[int, list[int]] = defaultdict(list)
    for i, stream in enumerate(streams):
        by_node[stream.downloader].append(i)
        if p.copies == 2:
            by_node[stream.uploader].append(i)
    sales_by_node: dict[int, list[int]] = defaultdict(list)
    for i, sale in enumerate(sales):
        seller = works[sale.work].seller
        assert seller is not None
        sales_by_node[seller].append(i)
        sales_by_node[sale.buyer].append(i)
    return Plan(p, seeds, pks, works, streams, sales, by_node, sales_by_node, dict(per_work))


def work_infos(plan: Plan) -> dict[bytes, WorkInfo]:
    out = {}
    for w in plan.works:
        terms: CCTerms | PaidTerms = CCTerms("CC-BY-SA-4.0") if w.seller is None else \
            PaidTerms(PRICE, CURRENCY, SHARE, (plan.pks[w.seller],))
        out[w.id] = WorkInfo(w.size, terms)
    return out


# -- one node's ledger, in a worker ----------------------------------------------------------

_PLAN: Plan | None = None
_OUT: Path | None = None


def _init(p: Params, out: Path) -> None:
    global _PLAN, _OUT  # per-worker state, set once by the pool
    _PLAN, _OUT = make_plan(p), out


def _identity(plan: Plan, i: int, cache: dict[int, Identity]) -> Identity:
    ident = cache.get(i)
    if ident is None:
        ident = cache[i] = Identity(f"node{i}", nacl.signing.SigningKey(plan.seeds[i]))
    return ident


_BATCHES: dict[int, tuple[SignedIssuance, list[list[bytes]], list[int]]] = {}


def _code(plan: Plan, w: int, k: int) -> bytes:
    return hashlib.sha256(b"p2pdist-bench/code/%d/%d/%d" % (plan.params.seed, w, k)).digest()


def _batch(plan: Plan, w: int, ids: dict[int, Identity]
           ) -> tuple[SignedIssuance, list[list[bytes]], list[int]]:
    """The seller's one batch of codes for work *w*: the signed record, the tree, and
    each code's leaf index, in sale order."""
    got = _BATCHES.get(w)
    if got is None:
        work = plan.works[w]
        assert work.seller is not None
        codes = [_code(plan, w, k) for k in range(plan.codes[w])]
        levels = merkle_levels(codes)
        signed = SignedIssuance.sign(Issuance(
            work.id, plan.pks[work.seller], len(codes), PRICE, CURRENCY, levels[-1][0], T0),
            _identity(plan, work.seller, ids))
        leaf = {c: i for i, c in enumerate(sorted(codes))}
        got = _BATCHES[w] = (signed, levels, [leaf[c] for c in codes])
    return got


def _payment(plan: Plan, sale: Sale, ids: dict[int, Identity]) -> bytes:
    """The seller's v2 payment receipt for *sale*, the same bytes in every process (the
    sealed credential is stand-in bytes: the audit never opens it)."""
    w = plan.works[sale.work]
    assert w.seller is not None
    seller = _identity(plan, w.seller, ids)
    buyer = _identity(plan, sale.buyer, ids)
    receipts = []
    for s_index in sale.served:
        s = plan.streams[s_index]
        receipts.append(SignedReceipt.sign(TransferReceipt(
            w.id, plan.pks[s.uploader], buyer.public_key, s.count, s.final,
            T0 + timedelta(seconds=s.t + 5 * s.count)), buyer).to_bytes())
    ts = T0 + timedelta(seconds=sale.t)
    req = SignedPurchase.sign(PurchaseRequest(
        work=w.id, buyer=buyer.public_key, seller=seller.public_key, method="voucher",
        sealed_payment=hashlib.sha256(sale.nonce).digest() * 3, nonce=sale.nonce, ts=ts,
        receipts=tuple(receipts)), buyer)
    signed, levels, leaves = _batch(plan, sale.work, ids)
    sorted_index = leaves[sale.code]
    code = _code(plan, sale.work, sale.code)
    return SignedPayment.sign(PaymentReceipt(
        work=w.id, buyer=buyer.public_key, seller=seller.public_key, amount=PRICE,
        currency=CURRENCY, method="voucher", payment_ref="voucher:" + code[:8].hex(),
        nonce=sale.nonce, ts=ts, request=req, issuance=signed, code=code,
        proof=MerkleProof(sorted_index, merkle_proof(levels, sorted_index))),
        seller).to_bytes()


def build_node(i: int) -> tuple[int, int, int]:
    """Build node *i*'s ledger, export it; returns (node, entries, bundle bytes)."""
    plan, out = _PLAN, _OUT
    assert plan is not None and out is not None
    ids: dict[int, Identity] = {}
    me = _identity(plan, i, ids)
    items: list[tuple[int, int, str, bytes]] = []  # (t, order, kind, payload)
    for s_index in plan.by_node.get(i, []):
        s = plan.streams[s_index]
        down = _identity(plan, s.downloader, ids)
        work = plan.works[s.work].id
        kind = "receipt.issued" if s.downloader == i else "receipt.received"
        for k in range(1, s.count + 1):
            r = TransferReceipt(work, plan.pks[s.uploader], down.public_key, k,
                                s.final * k // s.count, T0 + timedelta(seconds=s.t + 5 * k))
            items.append((s.t + 5 * k, len(items), kind,
                          SignedReceipt.sign(r, down).to_bytes()))
    for sale_index in plan.sales_by_node.get(i, []):
        sale = plan.sales[sale_index]
        w = plan.works[sale.work]
        kind = "payment.issued" if w.seller == i else "payment.received"
        items.append((sale.t, len(items), kind, _payment(plan, sale, ids)))
    items.sort()
    with tempfile.TemporaryDirectory(dir=out) as tmp, \
            Ledger(Path(tmp) / "node.db", node=me.public_key) as led:
        led.append_many((kind, payload) for _, _, kind, payload in items)
        data = led.export_bundle(me, now=T0 + timedelta(days=30))
    path = out / f"{i:05d}.bundle"
    path.with_suffix(".part").write_bytes(data)
    os.replace(path.with_suffix(".part"), path)
    return i, len(items), len(data)


# -- the cache -------------------------------------------------------------------------------


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "p2pdist-bench"


def works_to_json(infos: dict[bytes, WorkInfo]) -> dict[str, object]:
    out: dict[str, object] = {}
    for wid, info in infos.items():
        t = info.terms
        out[wid.hex()] = {"size": info.size, "spdx": t.spdx} if isinstance(t, CCTerms) else {
            "size": info.size, "price": t.price, "currency": t.currency,
            "redistributor_bps": t.redistributor_bps, "sellers": [k.hex() for k in t.sellers]}
    return out


def works_from_json(doc: dict[str, dict[str, object]]) -> dict[bytes, WorkInfo]:
    out = {}
    for wid, d in doc.items():
        size = int(str(d["size"]))
        if "spdx" in d:
            out[bytes.fromhex(wid)] = WorkInfo(size, CCTerms(str(d["spdx"])))
        else:
            sellers = d["sellers"]
            assert isinstance(sellers, list)
            out[bytes.fromhex(wid)] = WorkInfo(size, PaidTerms(
                int(str(d["price"])), str(d["currency"]), int(str(d["redistributor_bps"])),
                tuple(bytes.fromhex(k) for k in sellers)))
    return out


def ensure(p: Params, cache: Path | None = None, jobs: int | None = None,
           quiet: bool = False) -> Path:
    """The directory of *p*'s bundles (NNNNN.bundle) and works.json, generated if needed."""
    out = (cache or default_cache()) / p.name()
    if (out / "complete").exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t = time.perf_counter()
    plan = make_plan(p)
    (out / "works.json").write_text(json.dumps(works_to_json(work_infos(plan)), indent=1))
    jobs = jobs or os.cpu_count() or 1
    if not quiet:
        print(f"generating {p.name()}: {len(plan.streams):,} streams, {len(plan.sales):,} "
              f"sales, {p.nodes} nodes on {jobs} processes, into {out}", flush=True)
    done = entries = size = 0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, initializer=_init, initargs=(p, out)) as pool:
        for _, n, b in pool.imap_unordered(build_node, range(p.nodes), chunksize=4):
            done += 1
            entries += n
            size += b
            if not quiet and (done % max(1, p.nodes // 10) == 0 or done == p.nodes):
                print(f"  {done}/{p.nodes} nodes, {entries:,} entries, "
                      f"{size / 2**20:,.0f} MiB, {time.perf_counter() - t:.0f} s", flush=True)
    (out / "complete").write_text(json.dumps({"entries": entries, "bytes": size,
                                              "seconds": round(time.perf_counter() - t, 1)}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--receipts", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--per-key", type=int, default=10)
    ap.add_argument("--copies", type=int, choices=(1, 2), default=2)
    ap.add_argument("--buy", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    a = ap.parse_args()
    out = ensure(Params(a.receipts, a.nodes, a.per_key, a.copies, a.buy, a.seed),
                 a.cache, a.jobs)
    print(out)


if __name__ == "__main__":
    main()
