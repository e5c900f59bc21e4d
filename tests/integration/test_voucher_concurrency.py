"""Single use under a race: 16 threads and 8 processes redeem the same codes at once.

Half of the threads share one VoucherBook, the other half open their own, and each
process opens its own on the same file, so the race runs through the book's lock,
through SQLite's locking between connections, and between processes. Each code must be
redeemed exactly once, by whoever won, and every loser must hear "redeemed".
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from p2pdist.errors import VoucherRefused
from p2pdist.payouts.vouchers import VoucherBook, code_hash, payment_ref

ROOT = Path(__file__).resolve().parents[2]
WORK = bytes(range(32))
T0 = datetime(2025, 1, 1, tzinfo=UTC)
THREADS = 16
PROCESSES = 8
TIME_LIMIT = 25.0  # seconds, for each test

# A child redeems each code it reads on stdin and answers one line per code, flushed.
CHILD = """
import sys
from datetime import UTC, datetime
from p2pdist.errors import VoucherRefused
from p2pdist.payouts.vouchers import VoucherBook

path, work, buyer = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
with VoucherBook(path) as book:
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            out = "ok " + book.redeem(work, line.strip(), buyer=buyer, now=datetime.now(UTC))
        except VoucherRefused as e:
            out = "refused " + e.reason
        print(out, flush=True)
"""


def _thread_buyer(i: int) -> bytes:
    return bytes([1 + i]) * 32


def _process_buyer(i: int) -> bytes:
    return bytes([101 + i]) * 32


def _outcome(book: VoucherBook, code: str, buyer: bytes) -> str:
    try:
        return "ok " + book.redeem(WORK, code, buyer=buyer, now=datetime.now(UTC))
    except VoucherRefused as e:
        return "refused " + e.reason


@contextmanager
def _children(db: Path) -> Iterator[list[subprocess.Popen[str]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with ExitStack() as stack:
        procs: list[subprocess.Popen[str]] = []
        for i in range(PROCESSES):
            p = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(db), WORK.hex(), _process_buyer(i).hex()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=env)
            stack.callback(_reap, p)
            procs.append(p)
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line == "ready\n", p.stderr.read() if p.stderr else line
        yield procs


def _reap(p: subprocess.Popen[str]) -> None:
    # EOF on stdin ends a child; one that does not end in time is killed.
    with suppress(OSError):
        if p.stdin is not None:
            p.stdin.close()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    for f in (p.stdout, p.stderr):
        if f is not None:
            f.close()


def _books(db: Path, stack: ExitStack) -> list[VoucherBook]:
    shared = stack.enter_context(VoucherBook(db))
    own = [stack.enter_context(VoucherBook(db)) for _ in range(THREADS // 2)]
    return [shared] * (THREADS // 2) + own


def _winners(db: Path) -> dict[bytes, tuple[bytes, str]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT hash, buyer, payment_ref FROM vouchers").fetchall()
    finally:
        con.close()
    return {bytes(h): (bytes(b), r) for h, b, r in rows if b is not None}


def test_threads_and_processes_racing_for_one_code_redeem_it_exactly_once(
        tmp_path: Path) -> None:
    db = tmp_path / "vouchers.sqlite"
    started = time.monotonic()
    rounds = 6
    with VoucherBook(db) as book:
        codes = book.issue(WORK, rounds, now=T0)
    go = threading.Barrier(THREADS + 1, timeout=TIME_LIMIT)

    def contender(book: VoucherBook, i: int) -> list[str]:
        out = []
        for code in codes:
            go.wait()  # released together with the processes' code line
            out.append(_outcome(book, code, _thread_buyer(i)))
        return out

    with ExitStack() as stack, _children(db) as procs, ThreadPoolExecutor(THREADS) as pool:
        books = _books(db, stack)
        futures = [pool.submit(contender, b, i) for i, b in enumerate(books)]
        by_process: list[list[str]] = [[] for _ in procs]
        for code in codes:
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(code + "\n")
                p.stdin.flush()
            go.wait()
            for p, got in zip(procs, by_process, strict=True):
                assert p.stdout is not None
                got.append(p.stdout.readline().strip())
        by_thread = [f.result(timeout=TIME_LIMIT) for f in futures]

    winners = _winners(db)
    for r, code in enumerate(codes):
        outcomes = [t[r] for t in by_thread] + [p[r] for p in by_process]
        ref = payment_ref(code_hash(code))
        assert Counter(outcomes) == {"ok " + ref: 1,
                                     "refused redeemed": THREADS + PROCESSES - 1}, code
        who = outcomes.index("ok " + ref)
        buyer = (_thread_buyer(who) if who < THREADS else _process_buyer(who - THREADS))
        assert winners[code_hash(code)] == (buyer, ref)
    assert time.monotonic() - started < TIME_LIMIT


def test_many_codes_redeemed_concurrently_each_succeed_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "vouchers.sqlite"
    started = time.monotonic()
    with VoucherBook(db) as book:
        codes = book.issue(WORK, 200, now=T0)
    rng = random.Random(20250101)
    go = threading.Barrier(THREADS + 1, timeout=TIME_LIMIT)

    def contender(book: VoucherBook, i: int, order: list[str]) -> dict[str, str]:
        go.wait()
        return {code: _outcome(book, code, _thread_buyer(i)) for code in order}

    with ExitStack() as stack, _children(db) as procs, ThreadPoolExecutor(THREADS) as pool:
        books = _books(db, stack)
        futures = [pool.submit(contender, b, i, rng.sample(codes, len(codes)))
                   for i, b in enumerate(books)]
        orders = [rng.sample(codes, len(codes)) for _ in procs]
        for p, order in zip(procs, orders, strict=True):
            assert p.stdin is not None
            p.stdin.write("".join(c + "\n" for c in order))
            p.stdin.flush()
        go.wait()
        by_process = []  # communicate() closes each child's stdin: EOF, it ends
        for p, order in zip(procs, orders, strict=True):
            out, err = p.communicate(timeout=TIME_LIMIT)
            assert p.returncode == 0, err
            by_process.append(dict(zip(order, out.splitlines(), strict=True)))
        by_thread = [f.result(timeout=TIME_LIMIT) for f in futures]

    contenders = by_thread + by_process
    buyers = [_thread_buyer(i) for i in range(THREADS)] + [
        _process_buyer(i) for i in range(PROCESSES)]
    winners = _winners(db)
    assert len(winners) == len(codes)
    wins = Counter[int]()
    for code in codes:
        ref = payment_ref(code_hash(code))
        outcomes = [c[code] for c in contenders]
        assert Counter(outcomes) == {"ok " + ref: 1,
                                     "refused redeemed": THREADS + PROCESSES - 1}, code
        who = outcomes.index("ok " + ref)
        assert winners[code_hash(code)] == (buyers[who], ref)
        wins[who] += 1
    # A real race, not a queue: more than one contender won codes.
    assert len(wins) > 1
    assert time.monotonic() - started < TIME_LIMIT
