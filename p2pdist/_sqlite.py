"""One way to open the node's SQLite files (ledger, voucher book): durable and versioned.

WAL with synchronous=FULL (a committed transaction survives power loss), TEXT read as
bytes (a column rewritten as non-UTF-8 TEXT reaches the caller's checks instead of
failing in the decoder), autocommit off so callers issue BEGIN IMMEDIATE themselves, and
a schema created once under ``user_version``, the file and its -wal and -shm 0600 (see
p2pdist._home). Every failure is a StorageError.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from p2pdist._home import precreate_private
from p2pdist.errors import StorageError

__all__ = ["open_durable", "storage_error"]


def _disk_full(path: Path, e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return True
    # Growing the WAL index (-shm) on a full disk is reported as an I/O error.
    if code is None or code & 0xFF != sqlite3.SQLITE_IOERR:
        return False
    try:
        return shutil.disk_usage(path.parent).free < 64 * 1024
    except OSError:
        return False


def storage_error(what: str, path: Path, e: sqlite3.Error) -> StorageError:
    if _disk_full(path, e):
        # A failed transaction rolls back whole: nothing of it was kept, and what was
        # committed before is intact.
        return StorageError(f"the disk is full: the {what} {path} cannot grow ({e})",
                            remedy="free some space, then run the command again: nothing "
                            "committed before was lost")
    return StorageError(f"the {what} {path} could not be used: {e}")


def open_durable(path: Path, *, schema: str, version: int, what: str,
                 check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if need be) *path* with *schema* at *version*; see the module.

    The file is created 0600 before SQLite opens it, so that its -wal and -shm files,
    which SQLite creates with the database file's mode, are private too."""
    try:
        precreate_private(path)
    except OSError as e:
        raise StorageError(f"the {what} {path} could not be created: {e.strerror or e}",
                           remedy="fix the permissions of the node home") from None
    try:
        # isolation_level=None: callers issue BEGIN IMMEDIATE / COMMIT themselves.
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0,
                             check_same_thread=check_same_thread)
    except sqlite3.Error as e:
        raise storage_error(what, path, e) from e
    db.text_factory = bytes
    try:
        mode = bytes(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).decode()
        if mode.lower() != "wal":
            raise StorageError(f"the {what} {path} cannot use WAL mode ({mode})")
        db.execute("PRAGMA synchronous=FULL")
        have = db.execute("PRAGMA user_version").fetchone()[0]
        if have > version:
            raise StorageError(f"the {what} {path} has schema version {have}; this "
                               f"p2pdist reads {version}", remedy="upgrade p2pdist")
        if have < version:
            # One script, one transaction: two processes creating the file at once both
            # run it, and IF NOT EXISTS makes the second a no-op.
            db.executescript(f"BEGIN IMMEDIATE;{schema}PRAGMA user_version={version};COMMIT;")
    except sqlite3.Error as e:
        db.close()
        raise storage_error(what, path, e) from e
    except StorageError:
        db.close()
        raise
    return db
