"""Reading a file a user names, never more of it than the object it should hold."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from p2pdist.errors import InputError

__all__ = ["read_bounded"]


def read_bounded(path: Path, limit: int, *, what: str) -> bytes:
    """The bytes of *path*; InputError when it holds more than *limit* bytes or cannot be
    read. A regular file is refused by its size before it is read; anything else (a
    device such as /dev/zero, a pipe) after *limit* + 1 bytes. Never more is read."""
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size > limit:
                raise InputError(f"{path} is too large to be {what} ({st.st_size:,} bytes, "
                                 f"limit {limit:,})", remedy=f"check that it is {what}")
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise InputError(f"{path} is too large to be {what} (over {limit:,} bytes)",
                         remedy=f"check that it is {what}")
    return data
