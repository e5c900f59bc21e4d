"""The one rule for the file names of a work: what we publish, verify, fetch and unlock.

A work's paths come from outside (a torrent, a manifest, a peer) and are written on
fans' disks, on every platform a fan may use. So the rule is the same everywhere, and
a path is either refused whole, before a byte is written, or used exactly as it is:
we never rewrite a name, as libtorrent's sanitiser does, because the signed license,
the ciphertext names and the files on disk must then all agree.

A path is a tuple of components. Each component is a *portable plain name*:

- not empty, ``.`` or ``..``, and not hidden (a leading ``.``): nothing that means
  "here", "up", or lands in ``~/.ssh`` when a fan fetches into their home;
- no ``/``, ``\\`` or NUL, and none of ``< > : " | ? *`` (drive letters, NTFS streams
  and wildcards on Windows);
- no control, format, surrogate or line/paragraph-separator character: no terminal
  escapes, bidi overrides (U+202E) or zero-width characters (U+200B) that hide what a
  name really is;
- no trailing dot or space (Windows drops them, so ``a.`` would become ``a``), and not
  a device name Windows reserves (CON, PRN, AUX, NUL, COM0-9, LPT0-9, CONIN$,
  CONOUT$), with or without an extension, in any case;
- at most 240 bytes of UTF-8: libtorrent cuts longer names to 240 bytes (keeping the
  extension), so the file on disk would not be the one the license names; every common
  file system takes 255.

A whole path has at most 64 components and 1024 bytes, so that it fits under any
sane ``--dest`` within PATH_MAX. Across a work's file list no two paths may name the
same file on a case-insensitive or Unicode-normalising disk (``Song.flac`` and
``song.flac``, or NFC and NFD spellings of ``é``), and no file may also be another
file's folder.

Callers raise their own error from the reason returned: publish an InputError
("rename it"), verification and unlock a MalformedObject (exit 3). Whether a path
that passes this rule stays inside a given folder on disk is the caller's second
check: no component below that folder may already be a symbolic link (link_below; see
p2pdist._writes for fetch and licensing decrypt_tree for unlock).
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_DEPTH",
    "MAX_PATH_BYTES",
    "UNSAFE_PATHS_REMEDY",
    "link_below",
    "name_problem",
    "paths_problem",
]

MAX_COMPONENT_BYTES = 240
MAX_PATH_BYTES = 1024
MAX_DEPTH = 64
UNSAFE_PATHS_REMEDY = ("do not use this work; if its publisher meant no harm, ask them to "
                       "rename its files")

_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")}
)


def name_problem(part: str, *, max_bytes: int = MAX_COMPONENT_BYTES) -> str | None:
    """Why *part* may not be a file or folder name of a work, or None when it may.

    The reason reads after the name, e.g. ``'..' is empty, '.' or '..'``.
    """
    if not isinstance(part, str):
        return "is not text"
    if part in ("", ".", ".."):
        return "is empty, '.' or '..'"
    if part.startswith("."):
        return "is hidden (starts with '.')"
    if "/" in part or "\\" in part or "\0" in part:
        return "holds a path separator or NUL"
    if any(unicodedata.category(c) in _BAD_CATEGORIES for c in part):
        return "holds a control, format or surrogate character"
    if any(c in _WINDOWS_FORBIDDEN for c in part):
        return 'holds one of < > : " | ? *, which Windows forbids in file names'
    if part.endswith((".", " ")):
        return "ends in a dot or a space, which Windows drops"
    if part.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        return "is a device name Windows reserves (CON, NUL, COM1, LPT1...)"
    if len(part.encode("utf-8")) > max_bytes:
        return f"is longer than {max_bytes} bytes"
    return None


def _fold(part: str) -> str:
    # What a case-insensitive (NTFS, APFS) or normalising (HFS+) disk treats as equal.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", part).casefold())


def _show(path: tuple[str, ...]) -> str:
    return repr("/".join(path)[:200])


def paths_problem(paths: Iterable[tuple[str, ...]]) -> str | None:
    """The first reason the file list *paths* may not be written, or None.

    Checks each path (see the module docstring), then the list: no two paths fold to
    the same file, and no file is also a folder of another.
    """
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    for path in paths:
        if not isinstance(path, tuple) or not path:
            return "a file has no name"
        if len(path) > MAX_DEPTH:
            return f"{_show(path)} is nested more than {MAX_DEPTH} deep"
        for part in path:
            reason = name_problem(part)
            if reason is not None:
                return f"the name {str(part)[:80]!r} {reason}"
        if len("/".join(path).encode("utf-8")) > MAX_PATH_BYTES:
            return f"{_show(path)} is longer than {MAX_PATH_BYTES} bytes"
        key = tuple(_fold(p) for p in path)
        other = seen.get(key)
        if other == path:
            return f"{_show(path)} is listed twice"
        if other is not None:
            return (f"{_show(path)} and {_show(other)} are one file on a disk that ignores "
                    "case or Unicode normalisation")
        seen[key] = path
    for key, path in seen.items():
        for i in range(1, len(key)):
            if key[:i] in seen:
                return f"{_show(seen[key[:i]])} is a file and also the folder of {_show(path)}"
    return None


def link_below(root: Path, path: tuple[str, ...]) -> Path | None:
    """The first of ``root/path[0]``, ``root/path[0]/path[1]``... that is a symbolic link,
    or None. Looked at with lstat, never followed; the walk stops at the first that does
    not exist (nothing below it exists either). *root* itself is not looked at: it is the
    folder a person chose, and may be a link they made."""
    here = root
    for part in path:
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(mode):
            return here
    return None
