"""The node home is private to its owner: folders 0700, files 0600, and one lock.

What a home holds is nobody else's business: the sealed key, the ledger of what was
bought and carried, the voucher book, the library. So the home and every folder p2pdist
makes in it are created 0700, and every file 0600 (SQLite's ``-wal`` and ``-shm`` files
take the mode of their database file, which is created 0600 before SQLite opens it). A
home made 0755 by an older p2pdist is closed to 0700 the next time a command creates
something in it.

Files a user asks for outside the home follow the same rule when they are secrets
(voucher codes, drafts); plaintext a user unlocks into ``--dest`` takes the user's umask,
like any file a program makes for them.

HomeLock is the home's short lock (HOME/home.lock, an flock the kernel drops if the
process dies): a command that creates something in the home that must exist once (the
identity, a batch of voucher codes) holds it, so two such commands at once run one after
the other instead of interleaving their checks and writes. The running `seed` has its own
lock (HOME/node.lock, see _control), held for its life: one seed per home.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from pathlib import Path
from types import TracebackType

from p2pdist.errors import HomeInUse, StorageError

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "HomeLock", "ensure_home", "make_private_dirs",
           "precreate_private"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
HOME_LOCK = "home.lock"


def make_private_dirs(folder: Path) -> None:
    """mkdir -p *folder*: the folders it makes are 0700 (whatever the umask); folders
    that exist are left as they are."""
    missing: list[Path] = []
    p = folder
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(PRIVATE_DIR)
        except FileExistsError:
            continue  # made meanwhile by another process
        d.chmod(PRIVATE_DIR)  # a umask such as 0o277 must not lock the owner out


def ensure_home(home: Path) -> Path:
    """Create the node home 0700 (its parents as mkdir -p would), or close an existing one
    that others can enter to 0700 when it is ours. StorageError when it cannot be made."""
    try:
        if not home.is_dir():
            home.parent.mkdir(parents=True, exist_ok=True)
            make_private_dirs(home)
        st = home.stat()
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            home.chmod(stat.S_IMODE(st.st_mode) & ~0o077)
    except OSError as e:
        raise StorageError(f"cannot create the node home {home}: {e.strerror or e}") from None
    return home


def precreate_private(path: Path) -> None:
    """Make sure *path* (a SQLite database) exists, 0600, before SQLite opens it: SQLite
    gives its ``-wal`` and ``-shm`` files the database file's mode. An existing database
    of ours that others could read (an older p2pdist made it 0644) is closed to 0600, and
    so are its ``-wal`` and ``-shm`` if they are there.

    An existing database is never opened here, only chmod-ed by name: closing any
    descriptor of a file drops every POSIX lock this process holds on it, so opening it
    beside SQLite's own connections (another thread's) would break SQLite's locking.
    """
    with contextlib.suppress(FileExistsError):  # made before, or by another just now
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                         | os.O_NOFOLLOW, PRIVATE_FILE))
    for suffix in ("", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        try:
            st = side.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.getuid():
            side.chmod(PRIVATE_FILE)


class HomeLock:
    """HOME/home.lock, held exclusively while a command changes the home; see the module.

    ``with HomeLock(home):`` waits up to *timeout* seconds for another command to finish,
    then raises HomeInUse. The kernel drops an flock when its process dies, so a crash
    leaves no stale lock.
    """

    def __init__(self, home: Path, *, timeout: float = 120.0) -> None:
        self.home, self.timeout = home, timeout
        self._fd = -1

    def __enter__(self) -> HomeLock:
        ensure_home(self.home)
        path = self.home / HOME_LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         PRIVATE_FILE)
        except OSError as e:
            raise StorageError(f"cannot create {path}: {e.strerror or e}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise HomeInUse(
                        f"another p2pdist command has been changing {self.home} for over "
                        f"{self.timeout:g} s",
                        remedy="wait for it to finish, then run this command again") from None
                time.sleep(0.05)
            except OSError as e:
                os.close(fd)
                raise StorageError(f"cannot lock {path}: {e.strerror or e}") from None
        self._fd = fd
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1
