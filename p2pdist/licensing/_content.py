"""The content binding: what a torrent's piece hashes commit to, read from its info dict."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from p2pdist._paths import name_problem
from p2pdist.errors import MalformedObject

__all__ = ["Content", "ContentFile", "content_of_info"]

MAX_FILES = 100_000


@dataclass(frozen=True, slots=True)
class ContentFile:
    path: tuple[str, ...]
    size: int
    root: bytes | None  # BEP 52 pieces root, when the torrent has v2

    def __post_init__(self) -> None:
        if not self.path or any(not p for p in self.path):
            raise ValueError("a content path has empty parts")
        if self.size < 0:
            raise ValueError("a file size is negative")
        if self.root is not None and len(self.root) != 32:
            raise ValueError("a pieces root is 32 bytes")

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"path": [p.encode() for p in self.path], "size": self.size}
        if self.root is not None:
            d["root"] = self.root
        return d


@dataclass(frozen=True, slots=True)
class Content:
    """Paths, sizes and the hashes that the torrent's pieces commit to."""

    piece_length: int
    files: tuple[ContentFile, ...]
    v1_pieces_sha256: bytes | None

    def __post_init__(self) -> None:
        if self.piece_length < 16 * 1024 or self.piece_length & (self.piece_length - 1):
            raise ValueError("the piece length is not a power of two of at least 16 KiB")
        if not self.files:
            raise ValueError("a work has at least one file")
        if self.v1_pieces_sha256 is not None and len(self.v1_pieces_sha256) != 32:
            raise ValueError("the v1 pieces digest is 32 bytes")
        if self.v1_pieces_sha256 is None and any(f.root is None for f in self.files if f.size):
            raise ValueError("content binds neither v1 pieces nor v2 roots")
        if list(self.files) != sorted(self.files, key=lambda f: f.path):
            raise ValueError("content files are not sorted by path")

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "files": [f.to_dict() for f in self.files],
            "piece_length": self.piece_length,
        }
        if self.v1_pieces_sha256 is not None:
            d["v1"] = self.v1_pieces_sha256
        return d


def _text(b: Any) -> str:
    if not isinstance(b, bytes):
        raise MalformedObject("a path component is not a string")
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedObject("a path component is not UTF-8") from None


def content_of_info(info: dict[str, Any]) -> Content:
    """Compute the content binding from a decoded info dict (v1, v2 or hybrid).

    Pad files (BEP 47) are left out; files are sorted by path. Refused (MalformedObject),
    because libtorrent would write something other than what this returns: a symbolic
    link (BEP 47 ``attr`` l), a ``name.utf-8`` or ``path.utf-8`` that differs from
    ``name`` or ``path`` (libtorrent prefers those), and a pad file with an unsafe name.
    Whether the names are safe to write is p2pdist._paths' question, asked by the
    callers.
    """
    try:
        _same_utf8(info, "name")
        _no_symlink(info)
        name = _text(info["name"])
        piece_length = info["piece length"]
        if not isinstance(piece_length, int):
            raise MalformedObject("the piece length is not an integer")
        roots: dict[tuple[str, ...], tuple[int, bytes | None]] = {}
        if "file tree" in info:
            tree = info["file tree"]
            # A v1 "files" list decides; only a v2-only torrent needs the tree's shape.
            single = (
                "files" not in info and isinstance(tree, dict) and list(tree) == [name]
                and isinstance(tree[name], dict) and "" in tree[name]
            )
            _walk_tree(tree, () if single else (name,), roots, 0)
        sizes: dict[tuple[str, ...], int] = {}
        v1 = None
        if "pieces" in info:
            pieces = info["pieces"]
            if not isinstance(pieces, bytes) or len(pieces) % 20:
                raise MalformedObject("the v1 pieces are not a list of SHA-1 hashes")
            v1 = hashlib.sha256(pieces).digest()
            if "files" in info:
                for f in info["files"]:
                    _same_utf8(f, "path")
                    _no_symlink(f)
                    if b"p" in f.get("attr", b""):
                        if any(p != ".pad" and name_problem(p) for p in map(_text, f["path"])):
                            raise MalformedObject("the torrent has a pad file with an unsafe "
                                                  "name")
                        continue
                    path = (name, *(_text(p) for p in f["path"]))
                    sizes[path] = f["length"]
            else:
                sizes[(name,)] = info["length"]
        if len(roots) + len(sizes) > 2 * MAX_FILES:
            raise MalformedObject("the torrent lists too many files")
        if roots and sizes and {p: s for p, (s, _) in roots.items()} != sizes:
            raise MalformedObject("the v1 and v2 file lists of this hybrid torrent disagree")
        if roots:
            files = [ContentFile(p, s, r) for p, (s, r) in roots.items()]
        else:
            files = [ContentFile(p, s, None) for p, s in sizes.items()]
        files.sort(key=lambda f: f.path)
        return Content(piece_length, tuple(files), v1)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise MalformedObject(f"the torrent's info dict is malformed ({e})") from None


def _walk_tree(
    node: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], tuple[int, bytes | None]],
    depth: int,
) -> None:
    if not isinstance(node, dict) or depth > 64:
        raise MalformedObject("the v2 file tree is malformed")
    for key, child in node.items():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedObject("a path component is not UTF-8") from None
        if key == "":
            _no_symlink(child)
            out[prefix] = (child["length"], child.get("pieces root"))
        else:
            _walk_tree(child, (*prefix, key), out, depth + 1)


def _same_utf8(d: dict[str, Any], key: str) -> None:
    if f"{key}.utf-8" in d and d[f"{key}.utf-8"] != d[key]:
        raise MalformedObject(f"the torrent gives a file two different names ({key} and "
                              f"{key}.utf-8)")


def _no_symlink(d: dict[str, Any]) -> None:
    attr = d.get("attr", b"")
    if "symlink path" in d or (isinstance(attr, bytes) and b"l" in attr):
        raise MalformedObject("the torrent holds a symbolic link; p2pdist writes only files")
