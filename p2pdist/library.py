"""The node home and its library of works: JSON records, torrents and resume data.

    HOME/identity.key            the sealed ed25519 key (0600)
    HOME/library/WORK.json       what the node knows of a work
    HOME/library/WORK.torrent    the torrent (with the signed license in its info dict)
    HOME/library/WORK.resume     libtorrent resume data: restart without recheck
    HOME/library/WORK.key        a paid work's content key, sealed to this node (0600)
    HOME/library/WORK.grant      a bought work's signed license grant (0600)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from p2pdist import _json
from p2pdist._home import ensure_home
from p2pdist.errors import LibraryError, WorkNotFound
from p2pdist.identity import atomic_write

__all__ = ["Library", "Work", "default_home", "now_iso", "resolve_home"]

_WORK_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_RECORD = 256 * 1024


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("p2pdist", appauthor=False))


def resolve_home(home: Path | None) -> Path:
    """--home, else P2PDIST_HOME, else the platform's user data dir."""
    if home is not None:
        return home.expanduser().absolute()
    env = os.environ.get("P2PDIST_HOME")
    return Path(env).expanduser().absolute() if env else default_home()


@dataclass(frozen=True, slots=True)
class Work:
    work: str  # hex SHA-256 of the info dict
    infohash: str  # hex SHA-1 of the info dict (BitTorrent v1 infohash)
    title: str
    license: str  # SPDX id, or "unlicensed"
    role: str  # "published" or "fetched"
    save_path: str
    size: int
    added: str  # ISO 8601 UTC
    complete: bool
    magnet: str
    # Paid works: sellers proven in the swarm, "KEY@HOST:PORT PROOF" where PROOF is the
    # hex of the signed identity proof bound to that endpoint; `buy` asks there first.
    sellers_seen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.sellers_seen, tuple):
            object.__setattr__(self, "sellers_seen", tuple(self.sellers_seen))
        if not _WORK_RE.match(self.work):
            raise ValueError(f"bad work id {self.work!r}")
        if self.role not in ("published", "fetched"):
            raise ValueError(f"bad role {self.role!r}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Library:
    """The works this node publishes, fetched or seeds. Every write is atomic."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dir = home / "library"

    def _path(self, work: str, ext: str) -> Path:
        if not _WORK_RE.match(work):
            raise ValueError(f"bad work id {work!r}")
        return self.dir / f"{work}.{ext}"

    def add(self, work: Work, torrent: bytes) -> None:
        # The torrent first: a record never points at a torrent that is not there.
        ensure_home(self.home)
        atomic_write(self._path(work.work, "torrent"), torrent)
        self._write(work)

    def _write(self, work: Work) -> None:
        data = json.dumps({"type": "p2pdist/work", "v": 1, **work.to_dict()}, indent=2)
        atomic_write(self._path(work.work, "json"), data.encode() + b"\n")

    def mark_complete(self, work: str) -> Work:
        w = replace(self.get(work), complete=True)
        self._write(w)
        return w

    def note_seller(self, work: str, seller: str) -> None:
        """Remember a seller proven in the swarm (most recent first, at most 8; one per
        "KEY@HOST:PORT", the part before the proof)."""
        w = self.get(work)
        tag = seller.partition(" ")[0]
        if w.sellers_seen[:1] != (seller,):
            seen = (seller, *(s for s in w.sellers_seen if s.partition(" ")[0] != tag))[:8]
            self._write(replace(w, sellers_seen=seen))

    def save_secret(self, work: str, kind: str, data: bytes) -> None:
        """A content key ("key") or a grant ("grant") of *work*, written 0600."""
        if kind not in ("key", "grant"):
            raise ValueError(f"unknown secret kind {kind!r}")
        atomic_write(self._path(work, kind), data, mode=0o600)

    def secret(self, work: str, kind: str) -> bytes | None:
        if kind not in ("key", "grant"):
            raise ValueError(f"unknown secret kind {kind!r}")
        p = self._path(work, kind)
        try:
            if p.stat().st_size > MAX_RECORD:
                raise LibraryError(f"{p} is damaged (too large)")
            return p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise LibraryError(f"cannot read {p}: {e.strerror}") from None

    def all(self) -> list[Work]:
        if not self.dir.is_dir():
            return []
        out = [self._read(p) for p in sorted(self.dir.glob("*.json"))
               if _WORK_RE.match(p.stem)]
        return sorted(out, key=lambda w: w.added)

    def _read(self, path: Path) -> Work:
        try:
            if path.stat().st_size > MAX_RECORD:
                raise ValueError("record too large")
            d = _json.loads(path.read_bytes())
            if d.pop("type") != "p2pdist/work" or d.pop("v") != 1:
                raise ValueError("not a work record")
            return Work(**d)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise LibraryError(
                f"the library record {path} is damaged ({e})",
                remedy=f"remove {path} and its .torrent/.resume, then fetch the work again",
            ) from None

    def get(self, work: str) -> Work:
        p = self._path(work, "json")
        if not p.exists():
            raise WorkNotFound(f"no work {work} in this node's library")
        return self._read(p)

    def find(self, ref: str) -> Work | None:
        """A work by id, v1 infohash, or a unique prefix of 8+ hex digits."""
        ref = ref.lower()
        if not ref or not all(c in "0123456789abcdef" for c in ref):
            return None
        if len(ref) < 8:
            raise LibraryError(f"a work id prefix needs 8 or more hex digits, not {ref!r}",
                               remedy="list the ids with: p2pdist works")
        hits = [w for w in self.all() if w.work.startswith(ref) or w.infohash.startswith(ref)]
        if len(hits) > 1:
            raise LibraryError(f"{ref} names {len(hits)} works", remedy="give more digits")
        return hits[0] if hits else None

    def torrent(self, work: str) -> bytes:
        try:
            return self._path(work, "torrent").read_bytes()
        except OSError as e:
            raise LibraryError(f"the torrent of {work} is missing: {e.strerror}") from None

    def resume(self, work: str) -> bytes | None:
        p = self._path(work, "resume")
        return p.read_bytes() if p.exists() else None

    def save_resume(self, work: str, data: bytes) -> None:
        atomic_write(self._path(work, "resume"), data)


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
