"""Staging folders: where a fetch keeps a work until its checks pass, never in --dest.

libtorrent's storage acts as soon as it knows a work's file list (for a magnet, as soon
as a peer sent the metadata, BEP 9): it creates the empty files and the BEP 47 symbolic
links of every file not at priority 0, and it reads (to hash) any file already where the
work's files go. p2pdist's checks (the license, libtorrent's layout and --dest, see
p2pdist._writes) come after. So a work being fetched is added with its own private
folder in the node home as its save path, never --dest:

    HOME/held/<infohash16>-<8 random chars from mkdtemp>/    0700, like every folder of the home

and only once every check passed is its storage moved to --dest (Swarm.move). Whatever
a hostile torrent made libtorrent create in the meantime (a file past the priority list,
a link) stays in the staging folder, and is deleted with it: on success, on refusal, and
after a crash by the next node to start in the home (sweep).

Each staging folder is flock-ed by the process that made it, for as long as it uses it
(the kernel drops the lock when the process dies): sweep removes only folders nobody
holds, never the one of a fetch running beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from p2pdist._home import make_private_dirs
from p2pdist.errors import StorageError

__all__ = ["HELD", "Staging", "sweep"]

HELD = "held"
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_TRIES = 5


class Staging:
    """A new staging folder in *home* (see the module), held until remove()."""

    def __init__(self, home: Path, tag: str) -> None:
        root = home / HELD
        prefix = "".join(c for c in tag[:16] if c.isalnum()) + "-"
        for _ in range(_TRIES):
            try:
                make_private_dirs(root)
                path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))  # 0700
                fd = os.open(path, _OPEN_DIR)
            except FileNotFoundError:
                continue  # a sweep removed it (or HOME/held, empty) meanwhile
            except OSError as e:
                raise StorageError(f"cannot create a staging folder in {root}: "
                                   f"{e.strerror or e}", remedy="check the node home's "
                                   "permissions and free space") from None
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a sweep looks at it
            try:
                ours = os.path.samestat(os.fstat(fd), os.lstat(path))
            except FileNotFoundError:
                ours = False  # a sweep took it before the lock: make another
            if ours:
                self.path, self._fd = path, fd
                return
            os.close(fd)
        raise StorageError(f"cannot create a staging folder in {root}: it keeps vanishing",
                           remedy="run the command again")

    def remove(self) -> None:
        """Delete the folder and all in it (links are removed, never followed), and
        HOME/held when it is left empty."""
        if self._fd < 0:
            return
        try:
            shutil.rmtree(self.path, ignore_errors=True)
        finally:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):  # another one is in use: keep it
            self.path.parent.rmdir()


def sweep(home: Path) -> None:
    """Remove the staging folders in *home* that no process holds: left over from a
    fetch that crashed, or was killed, before it could remove its own."""
    root = home / HELD
    try:
        paths = list(root.iterdir())
    except OSError:
        return
    for path in paths:
        try:
            fd = os.open(path, _OPEN_DIR)
        except OSError:
            continue  # gone meanwhile, or not a folder: not one of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # in use by a fetch running now
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        root.rmdir()
