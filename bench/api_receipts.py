"""Receipts accepted per second by one node: this code vs. a reference commit, same run.

    .venv/bin/python bench/api_receipts.py [--base e7b34a8] [--count 400] [--fans 2]
                                           [--repeat 3]
    make bench

The target: this code accepts at least 0.9 of the receipts per second the reference
commit (default e7b34a8, the code before the issue 20 fixes) accepts, medians of
--repeat runs of each, alternating (reference, this, this, reference, ...).

The reference is the commit's p2pdist/ package, extracted with `git archive` into a
temporary folder and put first on PYTHONPATH for its node process; the same Python, the
same libraries, the same homes. Everything runs on 127.0.0.1 in the local profile.

Set up once: an artist home publishes one 4 MiB file. Per run, in the code under test:

1. `p2pdist seed --local --api-listen` in the artist home (the ledger grows run to run);
2. --fans fresh fan homes each fetch the work from it (`fetch --local --json`, untimed):
   the node uploaded the whole work to each fan's proven key, and each fan's own
   receipts (seq 1..k) reach the node, so later ones are receipts any version keeps;
3. timed: each fan, on its own thread, POSTs --count more receipts (seq k+1, k+2, ...
   for the whole work, signed with the fan's key, built before the clock starts) one
   after another to the node's POST /receipts, each over a new connection, as a fan's
   node sends them. Every answer must be a 200 (the script stops otherwise).

The figure is receipts accepted per second: fans x count over the wall time of step 3.
Each accepted receipt is verified; up to e7b34a8..fcfc155 each was also appended to the
node's ledger (SQLite WAL, synchronous=FULL: one fsync each), so the disk bounded it.
Since issue 21 a receipt that acknowledges no new byte (these do: the fan has the whole
work) is answered but not written, so against an older reference this compares the
verify-and-answer path with the verify-and-fsync one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from p2pdist._api import post
from p2pdist.identity import load_identity
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt

PASSPHRASE = "bench passphrase, not a secret"  # noqa: S105 - throw-away homes
REPO = Path(__file__).resolve().parent.parent


def _env(tree: Path | None) -> dict[str, str]:
    e = {**os.environ, "P2PDIST_PASSPHRASE": PASSPHRASE, "P2PDIST_NETWORK": "local"}
    if tree is not None:
        e["PYTHONPATH"] = str(tree)
    return e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(home: Path, *args: str, tree: Path | None = None, timeout: float = 300) -> str:
    cp = subprocess.run([sys.executable, "-m", "p2pdist", "--home", str(home), *args],
                        capture_output=True, text=True, timeout=timeout, env=_env(tree),
                        cwd=tree or REPO, check=False)
    if cp.returncode != 0:
        raise SystemExit(f"p2pdist {' '.join(args[:3])}… exited {cp.returncode}\n"
                         f"{cp.stdout}\n{cp.stderr}")
    return cp.stdout


def _reference(commit: str, into: Path) -> Path:
    """The reference commit's p2pdist/ package, extracted into *into*."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "p2pdist"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    # The reference node must import the extracted package, not the installed one.
    where = subprocess.run([sys.executable, "-c", "import p2pdist; print(p2pdist.__file__)"],
                           capture_output=True, text=True, env=_env(into), cwd=into,
                           check=True).stdout.strip()
    if not Path(where).is_relative_to(into):
        raise SystemExit(f"the reference would import {where}, not the one in {into}")
    return into


def one_run(root: Path, artist: Path, pub: dict[str, object], tree: Path | None,
            fans: int, count: int, tag: str) -> float:
    """Receipts accepted per second in one run of the node from *tree* (None: this one)."""
    port, api = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pdist", "--home", str(artist), "seed", "--local",
         "--listen", f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{api}", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(tree),
        cwd=tree or REPO)
    try:
        assert proc.stdout is not None
        buf = ""
        while "}" not in buf:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"the {tag} seeder did not start")
            buf += line
        work, size = bytes.fromhex(str(pub["work"])), int(str(pub["size"]))
        uploader = bytes(load_identity(artist, passphrase=PASSPHRASE).public_key)
        chains: list[list[bytes]] = []
        for i in range(fans):
            fan = root / f"{tag}-fan{i}"
            # The fan runs the node's own code: identity proofs changed version since
            # the reference (a fan proves only a seeder that speaks its version).
            _cli(fan, "init", "--name", f"fan{i}", tree=tree)
            doc = json.loads(_cli(fan, "fetch", str(pub["torrent"]), "--dest",
                                  str(root / f"{tag}-music{i}"), "--local", "--json",
                                  "--peer", f"127.0.0.1:{port}", "--stall-timeout", "60",
                                  tree=tree))
            [seq] = [p["receipt"]["seq"] for p in doc["peers"] if p.get("receipt")]
            me = load_identity(fan, passphrase=PASSPHRASE)
            now = datetime.now(UTC).replace(microsecond=0)
            chains.append([SignedReceipt.sign(TransferReceipt(
                work, uploader, me.public_key, seq + j, size, now), me).to_bytes()
                for j in range(1, count + 1)])
        refused: list[tuple[int, object]] = []

        def send(chain: list[bytes]) -> None:
            for body in chain:
                status, answer = post("127.0.0.1", api, "/receipts", body, timeout=30)
                if status != 200:
                    refused.append((status, answer))

        threads = [threading.Thread(target=send, args=(c,)) for c in chains]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        seconds = time.perf_counter() - t
        if refused:
            raise SystemExit(f"{tag}: {len(refused)} receipts refused, e.g. {refused[0]}")
        return fans * count / seconds
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="e7b34a8", help="the reference commit")
    ap.add_argument("--count", type=int, default=400, help="receipts per fan per run")
    ap.add_argument("--fans", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pdist-bench-") as tmp:
        root = Path(tmp)
        (root / "reference").mkdir()
        base = _reference(args.base, root / "reference")
        album = root / "studio" / "Receipts"
        album.mkdir(parents=True)
        (album / "one.bin").write_bytes(os.urandom(4 * 1024 * 1024))
        artist = root / "artist"
        _cli(artist, "init", "--name", "Artist")
        pub = json.loads(_cli(artist, "publish", str(album), "--title", "Receipts",
                              "--license", "CC-BY-4.0",
                              "--out", str(root / "receipts.torrent"), "--json"))
        rates: dict[str, list[float]] = {"reference": [], "this": []}
        order = [("reference", base), ("this", None)]
        for r in range(args.repeat):
            for name, tree in order if r % 2 == 0 else order[::-1]:
                rates[name].append(one_run(root, artist, pub, tree, args.fans, args.count,
                                           f"{name}{r}"))
    ref, this = statistics.median(rates["reference"]), statistics.median(rates["this"])
    print(f"receipts accepted per second by one node, {args.fans} fans x {args.count} "
          f"receipts, median of {args.repeat} runs each")
    print(f"  reference {args.base}: {ref:8.1f}/s  (runs: "
          f"{', '.join(f'{x:.0f}' for x in rates['reference'])})")
    print(f"  this code:        {this:8.1f}/s  (runs: "
          f"{', '.join(f'{x:.0f}' for x in rates['this'])})")
    print(f"  ratio {this / ref:.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()
