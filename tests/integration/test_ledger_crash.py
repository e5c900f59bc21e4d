"""Crash safety: an entry acknowledged after COMMIT survives SIGKILL at any moment.

A child process appends small batches to the ledger and prints each entry's seq and hash
after its batch commits. The parent kills it with SIGKILL at random moments, 60 times,
reopening the same database each time: while it opens the file, mid-batch, mid-commit.
Afterwards every acknowledged entry is there with the acknowledged hash, and the chain
verifies.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing

from p2pdist.payouts.ledger import Ledger

CHILD = Path(__file__).resolve().parent / "_ledger_child.py"
ROOT = Path(__file__).resolve().parents[2]
KILLS = 60
NODE = bytes(nacl.signing.SigningKey(bytes(range(32))).verify_key)


def _run_once(db: Path, rng: random.Random, acked: dict[int, str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(CHILD), str(db), NODE.hex()],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        if rng.random() < 0.2:
            # Sometimes while it is still starting or opening the database.
            time.sleep(rng.uniform(0, 0.15))
        else:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0, 0.04))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err.decode(errors="replace")
    for line in out.decode().splitlines(keepends=True):
        if not line.endswith("\n") or line == "ready\n":
            continue  # a line cut by the kill promised nothing
        seq, h = line.split()
        acked[int(seq)] = h


def test_acknowledged_entries_survive_sigkill_and_the_chain_verifies(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    rng = random.Random(20261123)
    acked: dict[int, str] = {}
    started = time.monotonic()
    for _ in range(KILLS):
        _run_once(db, rng, acked)
        assert time.monotonic() - started < 50, "the crash test is too slow for this machine"
    assert len(acked) > KILLS, "the child acknowledged too few entries to mean anything"
    with Ledger(db, node=NODE) as ledger:
        stored = {e.seq: e.hash.hex() for e in ledger.entries(node=NODE)}
        missing = {s for s in acked if s not in stored}
        assert not missing, f"acknowledged entries lost after SIGKILL: {sorted(missing)[:10]}"
        changed = {s for s, h in acked.items() if stored[s] != h}
        assert not changed, f"acknowledged entries changed after SIGKILL: {sorted(changed)[:10]}"
        report = ledger.verify()
        assert report.entries == len(stored) == max(stored)
