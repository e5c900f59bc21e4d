"""Opening a database file beside SQLite's own connections must not break its locking.

Closing any descriptor of a file drops every POSIX lock the process holds on it. The
node opens one connection per API thread, so a "make it 0600 first" that opened the
existing database file and closed it again dropped the locks of the connections already
open: another process then took the database for unused, checkpointed it and deleted
its WAL, and what the node committed afterwards went to a deleted file that nobody else
could read (a sale the seller signed never reached the ledger that others read).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from p2pdist._sqlite import open_durable

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"
READ = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "print(c.execute('SELECT count(*) FROM t').fetchone()[0]); c.close()")


def _count_from_another_process(db: Path) -> int:
    return int(subprocess.run([sys.executable, "-c", READ, str(db)], capture_output=True,
                              text=True, check=True).stdout)


def test_a_second_connection_keeps_the_first_ones_writes_visible(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    first = open_durable(db, schema=SCHEMA, version=1, what="ledger",
                         check_same_thread=False)
    held = []
    try:
        first.execute("INSERT INTO t VALUES (1)")
        # Another thread opens the same database, as each API thread does.
        t = threading.Thread(target=lambda: held.append(open_durable(
            db, schema=SCHEMA, version=1, what="ledger", check_same_thread=False)))
        t.start()
        t.join()
        assert _count_from_another_process(db) == 1  # a reader comes and goes
        first.execute("INSERT INTO t VALUES (2)")
        assert _count_from_another_process(db) == 2  # and sees what was committed since
    finally:
        for c in (first, *held):
            c.close()
