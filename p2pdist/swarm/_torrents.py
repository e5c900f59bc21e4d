"""Making torrents, reading their info dicts, and magnet links, through libtorrent."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from p2pdist import _canonical
from p2pdist._paths import paths_problem
from p2pdist.errors import InputError, MalformedObject, SourceError

__all__ = [
    "MAX_TORRENT_SIZE",
    "Format",
    "Layout",
    "LayoutFile",
    "info_section",
    "magnet_info",
    "make_magnet",
    "make_torrent",
    "torrent_layout",
    "torrent_name",
]

MAX_TORRENT_SIZE = 32 * 1024 * 1024
Format = str  # "hybrid" | "v1"


def make_torrent(
    path: Path,
    *,
    fmt: Format = "hybrid",
    trackers: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
    piece_length: int = 0,
) -> dict[str, _canonical.Value]:
    """Hash *path* (file or folder) into a torrent; return it as a decoded dict.

    *piece_length* 0 lets libtorrent choose from the size; a drafted license names the
    one its content binding was made with. The caller may add keys to the ``info`` dict
    before bencoding it with _canonical.
    """
    flags = {"hybrid": 0, "v1": lt.create_torrent.v1_only}.get(fmt)
    if flags is None:
        raise InputError(f"unknown torrent format {fmt!r}", remedy="use --format hybrid or v1")
    # Hidden files (.DS_Store, editor swap files) are not part of a work.
    root = str(path)
    files = lt.list_files(root, lambda p: p == root or not Path(p).name.startswith("."))
    if not files or sum(f.size for f in files) == 0:
        raise InputError(f"{path} holds no data to publish", remedy="publish a non-empty folder")
    # Every fan refuses a name outside p2pdist._paths' rule: say so now, before hashing.
    problem = paths_problem([tuple(f.filename.split("/")) for f in files])
    if problem is not None:
        raise InputError(f"cannot publish {path.name[:80]!r}: {problem}", remedy="rename it")
    # The files' data only: no executable, hidden or symlink attribute (BEP 47). The
    # license signs paths and sizes, not modes; a fan refuses a file marked executable.
    plain = [lt.create_file_entry(f.filename, f.size) for f in files]
    ct = lt.create_torrent(plain, piece_length, flags)
    ct.set_creator("p2pdist")
    for i, url in enumerate(trackers):
        ct.add_tracker(url, i)
    for url in web_seeds:
        ct.add_url_seed(url)
    n = ct.num_pieces()

    def cb(piece: int) -> None:
        if progress is not None:
            progress(piece + 1, n)

    try:
        lt.set_piece_hashes(ct, str(path.parent), cb)
    except RuntimeError as e:
        raise InputError(f"cannot read the files of {path}: {e}",
                         remedy="check that every file is readable") from None
    raw = lt.bencode(ct.generate())
    value = _canonical.decode(raw, max_size=1 << 40, strict=True, what="new torrent")
    if not isinstance(value, dict):
        raise TypeError("libtorrent made a torrent that is not a dict")
    return value


def _torrent_info(data: bytes) -> lt.torrent_info:
    if len(data) > MAX_TORRENT_SIZE:
        raise SourceError(f"the torrent is too large ({len(data)} bytes)")
    # libtorrent's bdecode first: C++, it refuses 10 million items or 100,000-deep
    # nesting in milliseconds, where Python would walk them for seconds. Then our own
    # bounded parse: one clear error for every file it still lets through.
    try:
        decoded = lt.bdecode(data)
    except RuntimeError as e:
        raise SourceError(f"not a valid torrent file: {e}") from None
    try:
        _canonical.decode(data, max_size=MAX_TORRENT_SIZE, strict=False, what="torrent file")
    except MalformedObject as e:
        raise SourceError(f"not a valid torrent file: {e.message}") from None
    try:
        return lt.torrent_info(decoded)  # type: ignore[arg-type]
    except (RuntimeError, TypeError, ValueError) as e:
        raise SourceError(f"not a valid torrent: {e}") from None


def info_section(torrent: bytes) -> bytes:
    """The exact bytes of a torrent file's info dict."""
    return bytes(_torrent_info(torrent).info_section())


@dataclass(frozen=True, slots=True)
class LayoutFile:
    """One file as libtorrent will write it: its path under the save path."""

    path: tuple[str, ...]
    size: int
    pad: bool  # a BEP 47 pad file: libtorrent never opens it, reads give zeros
    symlink: str | None  # the link libtorrent would make instead of a file, if any
    executable: bool  # libtorrent would create the file with execute permission
    hidden: bool  # libtorrent would set the hidden attribute (Windows)


@dataclass(frozen=True, slots=True)
class Layout:
    """libtorrent's own view of a torrent's files: what a download writes, and where.

    Taken from libtorrent's file storage after it parsed the info dict (the torrent's
    name as libtorrent applies it, its file-tree rules, its sanitiser), so that what we
    check is what will be written, not our reading of the same bytes.
    """

    name: str
    files: tuple[LayoutFile, ...]

    @property
    def written(self) -> tuple[LayoutFile, ...]:
        """Every file libtorrent will create: all but the pad files."""
        return tuple(f for f in self.files if not f.pad)


def layout_of(ti: Any) -> Layout:
    """The Layout of a libtorrent torrent_info (for swarm's own use)."""
    fs = ti.layout() if hasattr(ti, "layout") else ti.files()
    flags = lt.file_storage
    out = []
    for i in range(fs.num_files()):
        f = fs.file_flags(i)
        try:
            path = str(fs.file_path(i))
            link = str(fs.symlink(i)) if f & flags.flag_symlink else None
        except UnicodeDecodeError:
            raise SourceError("libtorrent reads a file name of this torrent as not UTF-8"
                              ) from None
        parts = tuple(path.split(os.sep))  # noqa: PTH206 - .parts would hide '' and '.'
        out.append(LayoutFile(
            path=parts, size=int(fs.file_size(i)),
            pad=bool(f & flags.flag_pad_file), symlink=link,
            executable=bool(f & flags.flag_executable), hidden=bool(f & flags.flag_hidden)))
    return Layout(str(ti.name()), tuple(out))


def torrent_layout(torrent: bytes) -> Layout:
    """What libtorrent would write for a .torrent file's bytes (see Layout)."""
    return layout_of(_torrent_info(torrent))


def torrent_name(torrent: bytes) -> str:
    return str(_torrent_info(torrent).name())


def make_magnet(torrent: bytes) -> str:
    return str(lt.make_magnet_uri(_torrent_info(torrent)))


def magnet_info(uri: str) -> tuple[str, list[str]]:
    """(display name, [hex infohashes]) of a magnet link; SourceError when it is not one."""
    if len(uri) > 64 * 1024 or not uri.startswith("magnet:?"):
        raise SourceError(f"not a magnet link: {uri[:80]!r}")
    try:
        atp = lt.parse_magnet_uri(uri)
        # The bindings decode these as UTF-8 when read (dn=%ff raises): read them here,
        # once, so every later reader (the session adding it) gets valid text.
        name = str(atp.name)
        atp.trackers, atp.url_seeds  # noqa: B018
    except UnicodeDecodeError:
        raise SourceError("not a valid magnet link: a %-escaped field is not UTF-8",
                          remedy="copy the magnet link again from its source") from None
    except (RuntimeError, ValueError) as e:
        raise SourceError(f"not a valid magnet link: {e}") from None
    ih = atp.info_hashes
    hashes = []
    if ih.has_v1():
        hashes.append(str(ih.v1))
    if ih.has_v2():
        hashes.append(str(ih.v2))
    if not hashes:
        raise SourceError("the magnet link names no infohash")
    return name, hashes



