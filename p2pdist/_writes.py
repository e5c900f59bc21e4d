"""What a fetch will write, checked before libtorrent writes a byte.

Both checks ask libtorrent's own view of the torrent (swarm.Layout: the paths it will
open under the save path, after it applied the torrent's name, its file-tree rules and
its sanitiser), never our reading of the same bytes:

1. check_layout: libtorrent writes exactly the files the content binding names. Each
   file it will create, path and size, is one of the binding, once, and each file of
   the binding is one it will create: nothing renamed, added, doubled or left out
   (ContentMismatch for a licensed work, MalformedObject for an unlicensed one: exit 3,
   naming the path). No file may be a symbolic link (BEP 47 ``l``), nor carry the
   executable or hidden attribute (``x``, ``h``), which the license does not sign:
   MalformedObject. Pad files (``p``) are left out: libtorrent never creates them.
2. check_dest: below --dest, every path component that already exists is a real folder
   (the last one a regular file), never a symbolic link (lstat: not followed), so the
   fetch cannot write through a link to somewhere else (MalformedObject); an existing
   file needs --overwrite (InputError). --dest itself is the one a person chose: it
   may be a link they made.

Both run while the work is held in a staging folder of its own in the node home
(p2pdist._staging), before --dest is created and the work moved there; libtorrent
has created nothing in --dest, nor read anything there. It opens its files by name
afterwards: someone who can write into --dest while the fetch runs can still swap a
folder for a link; the checks cover the folder as it is when the download is released.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from p2pdist._paths import UNSAFE_PATHS_REMEDY
from p2pdist.errors import ContentMismatch, InputError, MalformedObject, StorageError
from p2pdist.licensing import Content
from p2pdist.swarm import Layout

__all__ = ["LINK_REMEDY", "check_dest", "check_layout"]

LINK_REMEDY = "remove the link, or fetch into a folder without links in it"


def _show(path: tuple[str, ...], size: int | None = None) -> str:
    text = repr("/".join(path)[:200])
    return text if size is None else f"{text} ({size} bytes)"


def check_layout(layout: Layout, content: Content, *, licensed: bool) -> None:
    """Refuse a torrent that libtorrent would write otherwise than *content* says."""
    for f in layout.files:
        if f.symlink is not None:
            raise MalformedObject(
                f"the torrent's file {_show(f.path)} is a symbolic link (to "
                f"{f.symlink[:100]!r}); p2pdist writes only files", remedy=UNSAFE_PATHS_REMEDY)
    for f in layout.written:
        if f.executable or f.hidden:
            kind = "executable" if f.executable else "hidden"
            raise MalformedObject(
                f"the torrent marks its file {_show(f.path)} {kind}, which its license does "
                "not sign; p2pdist writes only plain files",
                remedy="ask the publisher to publish it again with a current p2pdist, which "
                "never marks files")
    written = Counter((f.path, f.size) for f in layout.written)
    bound = Counter((f.path, f.size) for f in content.files)
    extra = sorted((written - bound).elements())
    missing = sorted((bound - written).elements())
    if not extra and not missing:
        return
    names = "the license names" if licensed else "the torrent lists"
    if extra and missing:
        msg = f"libtorrent would write {_show(*extra[0])} where {names} {_show(*missing[0])}"
    elif extra and bound[extra[0]]:
        msg = f"libtorrent would write {_show(*extra[0])} {written[extra[0]]} times"
    elif extra:
        msg = f"libtorrent would write {_show(*extra[0])}, which {names} nowhere"
    else:
        msg = f"{names} {_show(*missing[0])}, which libtorrent would not write"
    if licensed:
        raise ContentMismatch(f"this work would not be written where its license says: {msg}",
                              remedy=UNSAFE_PATHS_REMEDY)
    raise MalformedObject(f"this torrent would not be written as it lists its files: {msg}",
                          remedy=UNSAFE_PATHS_REMEDY)


def check_dest(dest: Path, paths: Iterable[tuple[str, ...]], *, overwrite: bool) -> None:
    """Refuse to write *paths* under *dest* through a link, over a folder, or (unless
    *overwrite*) over a file that is already there. Nothing is followed below *dest*."""
    seen: set[Path] = set()  # folders already looked at
    for path in paths:
        here = dest
        for i, part in enumerate(path):
            here = here / part
            last = i == len(path) - 1
            if not last and here in seen:
                continue
            try:
                mode = os.lstat(here).st_mode
            except FileNotFoundError:
                break
            except OSError as e:
                raise StorageError(f"cannot look at {here}: {e.strerror or e}",
                                   remedy="fix the folder's permissions, or choose another "
                                   "--dest") from None
            if stat.S_ISLNK(mode):
                raise MalformedObject(
                    f"{here} is a symbolic link: the fetch would write through it to wherever "
                    "it leads, maybe outside --dest", remedy=LINK_REMEDY)
            if not last:
                if not stat.S_ISDIR(mode):
                    raise InputError(f"{here} is a file where the work has a folder",
                                     remedy="move it away, or choose another --dest")
                seen.add(here)
            elif stat.S_ISDIR(mode):
                raise InputError(f"{here} is a folder where the work has a file",
                                 remedy="move it away, or choose another --dest")
            elif not stat.S_ISREG(mode):
                raise InputError(f"{here} is not a regular file (a device, a pipe or a "
                                 "socket)", remedy="move it away, or choose another --dest")
            elif not overwrite:
                raise InputError(f"{here} already exists; fetching would check it and "
                                 "overwrite what differs",
                                 remedy="choose another --dest, or add --overwrite")
