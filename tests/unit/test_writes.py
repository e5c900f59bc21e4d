"""p2pdist/_writes.py: what libtorrent will write is what the license names, and --dest
is written through no link. Layouts come from real libtorrent parses of real torrents."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from p2pdist import _canonical
from p2pdist._writes import check_dest, check_layout
from p2pdist.errors import ContentMismatch, InputError, MalformedObject
from p2pdist.licensing import content_of_info
from p2pdist.swarm import Layout, LayoutFile, make_torrent, torrent_layout

PIECE = 16 * 1024
NOTES = b"notes\n"


def _torrent(info: dict[str, Any]) -> bytes:
    return _canonical.encode({"info": info})


def _v2_single(name: bytes, key: str) -> dict[str, Any]:
    return {"name": name, "piece length": PIECE, "meta version": 2,
            "file tree": {key: {"": {"length": len(NOTES),
                                     "pieces root": hashlib.sha256(NOTES).digest()}}}}


def test_v2_file_key_that_is_not_the_name_is_caught_from_libtorrents_own_view() -> None:
    info = _v2_single(b"album", "notes.txt")
    layout = torrent_layout(_torrent(info))
    assert [f.path for f in layout.written] == [("notes.txt",)]  # where libtorrent writes
    content = content_of_info(info)
    assert [f.path for f in content.files] == [("album", "notes.txt")]  # what p2pdist reads
    with pytest.raises(ContentMismatch) as e:
        check_layout(layout, content, licensed=True)
    assert "libtorrent would write 'notes.txt' (6 bytes) where the license names " \
        "'album/notes.txt' (6 bytes)" in e.value.message
    with pytest.raises(MalformedObject, match=re.escape("the torrent lists 'album/notes.txt'")):
        check_layout(layout, content, licensed=False)
    same = _v2_single(b"notes.txt", "notes.txt")
    check_layout(torrent_layout(_torrent(same)), content_of_info(same), licensed=True)


def test_a_v1_file_listed_twice_is_caught_though_the_binding_counts_it_once() -> None:
    data = b"x" * 100
    info = {"name": b"album", "piece length": PIECE,
            "pieces": hashlib.sha1(data + data).digest(),  # noqa: S324 - BitTorrent v1
            "files": [{"length": 100, "path": [b"a.txt"]}, {"length": 100, "path": [b"a.txt"]}]}
    content = content_of_info(info)
    assert len(content.files) == 1
    with pytest.raises(ContentMismatch, match=re.escape("'album/a.txt' (100 bytes) 2 times")):
        check_layout(torrent_layout(_torrent(info)), content, licensed=True)


def _layout(*files: LayoutFile) -> Layout:
    return Layout("album", files)


def _file(*path: str, size: int = 6, **kw: Any) -> LayoutFile:
    return LayoutFile(path=path, size=size, **{"pad": False, "symlink": None,
                                               "executable": False, "hidden": False, **kw})


def test_links_attributes_and_pad_files() -> None:
    content = content_of_info(_v2_single(b"notes.txt", "notes.txt"))
    ok = _file("notes.txt")
    check_layout(_layout(ok, _file("notes.txt", ".pad", "5", size=5, pad=True)), content,
                 licensed=True)  # a pad file is never written: not compared
    for bad, word in [(_file("notes.txt", executable=True), "executable"),
                      (_file("notes.txt", hidden=True), "hidden")]:
        with pytest.raises(MalformedObject, match=word):
            check_layout(_layout(bad), content, licensed=True)
    with pytest.raises(MalformedObject, match="symbolic link"):
        check_layout(_layout(ok, _file("link", size=0, symlink="../../etc")), content,
                     licensed=True)
    with pytest.raises(ContentMismatch, match=re.escape("'notes.txt' (7 bytes) where")):
        check_layout(_layout(_file("notes.txt", size=7)), content, licensed=True)
    with pytest.raises(ContentMismatch, match="which libtorrent would not write"):
        check_layout(_layout(), content, licensed=True)
    with pytest.raises(ContentMismatch, match=re.escape("'extra' (6 bytes), which the license")):
        check_layout(_layout(ok, _file("extra")), content, licensed=True)


def test_publish_records_no_executable_attribute_and_fans_accept_its_torrents(
        tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    (work / "b.txt").write_text("b")
    for fmt in ("hybrid", "v1"):
        t = make_torrent(work, fmt=fmt)
        info = t["info"]
        assert isinstance(info, dict)
        assert _attrs(info) <= {b"p"}, _attrs(info)  # pad files only
        data = _canonical.encode(t)
        layout = torrent_layout(data)
        assert not any(f.executable for f in layout.files)
        check_layout(layout, content_of_info(info), licensed=True)


def _attrs(node: object) -> set[bytes]:
    if isinstance(node, dict):
        found = {node["attr"]} if isinstance(node.get("attr"), bytes) else set()
        return found.union(*(_attrs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_attrs(v) for v in node))
    return set()


# -- check_dest ------------------------------------------------------------------------------

PATHS = [("album", "a.txt"), ("album", "cd2", "b.txt")]


def test_nothing_there_or_folders_only_is_fine(tmp_path: Path) -> None:
    check_dest(tmp_path / "missing", PATHS, overwrite=False)
    (tmp_path / "album" / "cd2").mkdir(parents=True)
    check_dest(tmp_path, PATHS, overwrite=False)


@pytest.mark.parametrize("where", ["album", "album/cd2", "album/a.txt"])
@pytest.mark.parametrize("inside", [True, False], ids=["to-inside", "to-outside"])
def test_a_link_below_dest_is_refused_wherever_it_leads(tmp_path: Path, where: str,
                                                        inside: bool) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "album" / "cd2").mkdir(parents=True)
    (dest / "other").mkdir()
    outside.mkdir()
    (outside / "a.txt").write_bytes(b"keep")
    link = dest / where
    if link.is_dir():
        for sub in sorted(link.rglob("*"), reverse=True):
            sub.rmdir()
        link.rmdir()
    target = (dest / "other") if inside else outside
    link.symlink_to(target / "a.txt" if where.endswith(".txt") else target)
    for overwrite in (False, True):
        with pytest.raises(MalformedObject, match="symbolic link"):
            check_dest(dest, PATHS, overwrite=overwrite)


def test_a_dest_the_user_gave_as_a_link_is_theirs(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "mine").symlink_to(tmp_path / "real")
    check_dest(tmp_path / "mine", PATHS, overwrite=False)


def test_files_and_folders_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "album").mkdir()
    (tmp_path / "album" / "a.txt").write_bytes(b"mine")
    with pytest.raises(InputError, match="already exists"):
        check_dest(tmp_path, PATHS, overwrite=False)
    check_dest(tmp_path, PATHS, overwrite=True)
    (tmp_path / "album" / "cd2").write_bytes(b"a file")
    with pytest.raises(InputError, match="a file where the work has a folder"):
        check_dest(tmp_path, PATHS, overwrite=True)
    (tmp_path / "album" / "cd2").unlink()
    (tmp_path / "album" / "cd2" / "b.txt").mkdir(parents=True)
    with pytest.raises(InputError, match="a folder where the work has a file"):
        check_dest(tmp_path, PATHS, overwrite=True)
    (tmp_path / "album" / "cd2" / "b.txt").rmdir()
    os.mkfifo(tmp_path / "album" / "cd2" / "b.txt")
    with pytest.raises(InputError, match="not a regular file"):
        check_dest(tmp_path, PATHS, overwrite=True)
