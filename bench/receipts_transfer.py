"""Receipts on a transfer: a fetch with receipts on vs. the same fetch without them.

    .venv/bin/python bench/receipts_transfer.py [--size-mib 512] [--repeat 5] [--json]
    make bench

The target: the rate with receipts on is at least 0.95 of the rate without (medians of
--repeat runs of each mode, in the same run of this script).

Everything runs on 127.0.0.1 in the local profile, as real `p2pdist` processes in a
temporary folder:

1. One file of random bytes (--size-mib, default 512 MiB) is published by seeder home ON
   (`init` then `publish`). Home OFF gets a copy of ON's library (the same torrent, the
   same data on disk) but no identity. Both seed at once (`seed --local`), each on its own
   port; each serves the work once, untimed, before the timed runs (a freshly published
   work is seeded in seed mode, which hashes each piece the first time it is sent).
2. Per round, in alternating order (on, off, then off, on, ...), into a fresh fetcher
   home and a fresh --dest each time:
   - on:  the fetcher home has an identity (`init`, untimed). `fetch --local --peer ON
     --json`: the fetcher proves ON's key over ON's GET /identity, signs a cumulative
     receipt every 4 MiB / 5 s and at completion, appends each to its own ledger and
     POSTs it to ON's API, which verifies it and appends it to ON's ledger.
   - off: the fetcher home has no identity, nor has OFF: no node API, no proofs, no
     receipts, no ledger. `fetch --local --peer OFF --json`: the plain path.
   Timed two ways: the whole fetch command (process start to exit; with receipts on it
   includes unlocking the key, an argon2id derivation), and the seconds the fetch itself
   reports (`seconds` in its JSON: from the start of the fetch to the final receipt's
   delivery, without the Python start-up and key unlock).
3. Checked after every run, outside the timing: the copy is byte-for-byte the original
   (SHA-256). On: the fetch names ON's key for its one peer and a receipt for the whole
   size; ON's `receipts list --json` holds, for this fetcher, a received receipt whose
   bytes equal the size (the script fails loudly otherwise); the receipts issued (in the
   fetcher's ledger) and received (in ON's) are counted. Off: no peer key, no receipt, no
   ledger anywhere.

The headline is the median rate of the whole fetch command per mode and their ratio; the
best-of ratio, the in-process ratio and the median of each round's paired ratio are printed
beside it. On a shared machine the runs vary by tens of percent: use a larger --repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transfer import (
    MB,
    Seeder,
    cli,
    fetch_report,
    json_objects,
    run,
    seeding,
    verify,
    workdir,
)

from p2pdist._credit import ISSUED, LEDGER_NAME, RECEIVED
from p2pdist.identity import load_public_identity
from p2pdist.payouts.ledger import Ledger
from p2pdist.payouts.receipts import SignedReceipt

TARGET = 0.95
MODES = ("on", "off")


@dataclass
class Mode:
    name: str
    wall: list[float] = field(default_factory=list)  # whole fetch command, s
    inner: list[float] = field(default_factory=list)  # the fetch's own `seconds`
    issued: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)

    def rate(self, size: int, how: str = "wall", pick: str = "median") -> float:
        secs = self.wall if how == "wall" else self.inner
        best = min(secs) if pick == "best" else statistics.median(secs)
        return size / best / MB


def count_receipts(home: Path, kind: str, work: str, uploader: bytes,
                   downloader: bytes) -> int:
    """Receipts of *kind* for (work, uploader, downloader) in *home*'s ledger."""
    path = home / LEDGER_NAME
    if not path.exists():
        return 0
    with Ledger(path) as led:  # WAL: a reader beside the running seeder is fine
        key = (bytes.fromhex(work), uploader, downloader)
        return sum(1 for e in led.entries(kind=kind)
                   if SignedReceipt.from_bytes(e.payload).receipt.key == key)


def check_on(report: dict[str, object], seed_home: Path, fetch_home: Path, size: int,
             timeout: float) -> tuple[int, int]:
    """Fail loudly unless the whole size was acknowledged to the seeder; (issued, received)."""
    work = str(report["work"])
    seeder_pk = load_public_identity(seed_home)
    fetcher_pk = load_public_identity(fetch_home)
    peers = report["peers"]
    assert isinstance(peers, list)
    mine = [p for p in peers if p.get("pk") == seeder_pk.key_text]
    if len(mine) != 1 or not isinstance(mine[0].get("receipt"), dict) \
            or mine[0]["receipt"]["bytes"] != size:
        raise SystemExit(f"receipts on: the fetch did not issue a receipt for all {size} "
                         f"bytes to the seeder's key; its peers: {json.dumps(peers)}")
    rows = json_objects(run(cli(seed_home, "receipts", "list", "--work", work, "--json"),
                            timeout).stdout)
    flat = [r for obj in rows for r in (obj if isinstance(obj, list) else [obj])]
    held = [r for r in flat if r.get("downloader") == fetcher_pk.key_text
            and r.get("direction") == "received"]
    if len(held) != 1 or held[0].get("bytes") != size:
        raise SystemExit(f"receipts on: the seeder's `receipts list` does not hold a final "
                         f"receipt of {size} bytes from this fetcher: {json.dumps(held)}")
    issued = count_receipts(fetch_home, ISSUED, work, seeder_pk.public_key,
                            fetcher_pk.public_key)
    received = count_receipts(seed_home, RECEIVED, work, seeder_pk.public_key,
                              fetcher_pk.public_key)
    if held[0].get("seq") != issued or mine[0]["receipt"]["seq"] != issued:
        raise SystemExit(f"receipts on: {issued} issued, but the final seq is "
                         f"{held[0].get('seq')} at the seeder and "
                         f"{mine[0]['receipt']['seq']} in the fetch report")
    return issued, received


def check_off(report: dict[str, object], seed_home: Path, fetch_home: Path) -> None:
    peers = report["peers"]
    assert isinstance(peers, list)
    keyed = [p for p in peers if p.get("pk") or p.get("receipt")]
    ledgers = [h / LEDGER_NAME for h in (seed_home, fetch_home) if (h / LEDGER_NAME).exists()]
    if keyed or ledgers:
        raise SystemExit(f"receipts off: found receipt accounting after all: peers "
                         f"{json.dumps(keyed)}, ledgers {ledgers}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512, help="size of the work (MiB)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed fetches of each mode, alternating (medians reported)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where to make the temporary folder (default: the system's, /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    a = ap.parse_args(argv)
    if a.size_mib < 1 or a.repeat < 1:
        ap.error("--size-mib and --repeat must be at least 1")
    size = a.size_mib * 1024 * 1024
    timeout = 60 + size / (5 * MB)  # anything slower than 5 MB/s is broken, not slow

    with workdir("p2pdist-bench-receipts-", a.size_mib, a.dir, a.keep) as (tmp, data, digest):
        homes = {"on": tmp / "seed-on", "off": tmp / "seed-off"}
        run(cli(homes["on"], "init", "--name", "bench-seeder"), 60)
        torrent = tmp / "bench.torrent"
        run(cli(homes["on"], "publish", str(data), "--title", "bench receipts", "--license",
                "CC-BY-4.0", "--out", str(torrent), "--json"), timeout)
        # The same work, seeded by a node without an identity: no API, no ledger.
        shutil.copytree(homes["on"] / "library", homes["off"] / "library")
        modes = {m: Mode(m) for m in MODES}
        n = 0

        def fetch(mode: str, seeder: Seeder, label: str) -> None:
            nonlocal n
            n += 1
            home, dest = tmp / f"fetch-{n}-{mode}", tmp / f"dest-{n}"
            if mode == "on":
                run(cli(home, "init", "--name", f"bench-fan-{n}"), 60)
            os.sync()  # earlier runs' writes are not written back during this one
            wall, got = fetch_report(str(torrent), seeder, dest, home, timeout)
            verify(dest / data.name, digest, f"fetch with receipts {mode}")
            inner = float(got["seconds"])  # type: ignore[arg-type]
            if mode == "on":
                issued, received = check_on(got, homes["on"], home, size, timeout)
            else:
                check_off(got, homes["off"], home)
                issued = received = 0
            shutil.rmtree(dest)
            shutil.rmtree(home)
            if label:
                m = modes[mode]
                m.wall.append(wall)
                m.inner.append(inner)
                m.issued.append(issued)
                m.received.append(received)
            print(f"{label or 'warm-up':14} receipts {mode:3} {size / wall / MB:7.1f} MB/s "
                  f"({wall:.2f} s; in-process {inner:.2f} s, {size / inner / MB:.1f} MB/s)"
                  + (f"; receipts issued {issued}, received {received}" if mode == "on"
                     else ""), file=sys.stderr)

        with seeding(homes["on"]) as on, seeding(homes["off"]) as off:
            seeders = {"on": on, "off": off}
            if not on.report.get("api") or off.report.get("api"):
                raise SystemExit(f"expected a node API on the ON seeder only: "
                                 f"{on.report}, {off.report}")
            for mode in MODES:
                fetch(mode, seeders[mode], "")
            for i in range(a.repeat):
                order = MODES if i % 2 == 0 else MODES[::-1]
                for mode in order:
                    fetch(mode, seeders[mode], f"[round {i + 1}/{a.repeat}]")
        report(a, size, modes)
    return 0


def report(a: argparse.Namespace, size: int, modes: dict[str, Mode]) -> None:
    on, off = modes["on"], modes["off"]
    print(f"\n{a.size_mib} MiB ({size / MB:.1f} MB), {a.repeat} timed fetch(es) per mode, "
          f"alternating; MB = 10^6 bytes")
    print(f"{'':22} {'median':>12} {'best':>12}   {'in-process median':>18}")
    for label, m in (("receipts on", on), ("receipts off (plain)", off)):
        print(f"{label:22} {m.rate(size):7.1f} MB/s {m.rate(size, pick='best'):7.1f} MB/s   "
              f"{m.rate(size, 'inner'):12.1f} MB/s")
    ratio = on.rate(size) / off.rate(size)
    ratio_best = on.rate(size, pick="best") / off.rate(size, pick="best")
    ratio_inner = on.rate(size, "inner") / off.rate(size, "inner")
    # The two fetches of a round ran back to back: pairing them cancels slow drift.
    ratio_paired = statistics.median(t_off / t_on for t_on, t_off in zip(on.wall, off.wall,
                                                                          strict=True))
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"ratio on/off  {ratio:5.3f}  (median, whole fetch command; target >= {TARGET}: "
          f"{verdict})")
    print(f"              {ratio_best:5.3f}  (best, whole fetch command)")
    print(f"              {ratio_inner:5.3f}  (median, in-process `seconds`, without the "
          f"Python start-up and the key unlock)")
    print(f"              {ratio_paired:5.3f}  (median of each round's on/off ratio, whole fetch "
          f"command)")
    print(f"receipts per fetch with receipts on: issued {on.issued}, received {on.received} "
          f"(each run's final receipt acknowledged all {size} bytes)")
    if a.json:
        print(json.dumps({
            "size_mib": a.size_mib, "repeat": a.repeat, "pick": "median",
            "mb_per_s": {"on": on.rate(size), "off": off.rate(size)},
            "mb_per_s_best": {"on": on.rate(size, pick="best"),
                              "off": off.rate(size, pick="best")},
            "mb_per_s_in_process": {"on": on.rate(size, "inner"),
                                    "off": off.rate(size, "inner")},
            "seconds": {"on": on.wall, "off": off.wall},
            "seconds_in_process": {"on": on.inner, "off": off.inner},
            "ratio": ratio, "ratio_best": ratio_best, "ratio_in_process": ratio_inner,
            "ratio_paired": ratio_paired,
            "target": TARGET, "met": ratio >= TARGET,
            "receipts": {"issued": on.issued, "received": on.received},
        }))


if __name__ == "__main__":
    raise SystemExit(main())
