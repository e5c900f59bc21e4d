"""Content encryption for paid works: STREAM over ChaCha20-Poly1305, in constant memory.

Format v1, one ciphertext file per plaintext file:

- A work has one random 32-byte content key. Each file has its own key,
  ``HKDF-SHA256(ikm=content key, salt=none, info=b"p2pdist/file-key/v1" || 0x00 ||
  bencode({"path": [component, ...], "size": plain size}))``, components as UTF-8 byte
  strings. A ciphertext therefore only opens under the path and size it was made for.
- The plaintext is cut into chunks of CHUNK (64 KiB) bytes; the last one may be shorter,
  and an empty file is one empty chunk. Chunk *i* is sealed with the nonce
  ``i as 11 bytes big-endian || flag``, where the flag is 0x01 on the last chunk and 0x00
  on every other, and no associated data (the STREAM construction of Hoang, Reyhanitabar,
  Rogaway and Vizár). The file is the concatenation of the sealed chunks.
- So the ciphertext size is ``plain size + 16 * max(1, ceil(plain size / CHUNK))``, a pure
  function checked before a single chunk is opened.
- A ciphertext file is named after its plaintext with the suffix ``.p2pe``, under the
  same top-level name: ``album/cd1/01.flac`` becomes ``album/cd1/01.flac.p2pe``.
- ``key_id`` = BLAKE2b-256(b"p2pdist/key-id/v1" || 0x00 || content key) is the public
  commitment a buyer checks a granted key against before decrypting.

Swapped, reordered, dropped or appended chunks, truncation (also at a chunk boundary), a
file presented under another path or size, another work's key and any flipped bit all
raise the one opaque TamperedContent. Nothing that failed leaves plaintext behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import io
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2pdist import _canonical
from p2pdist._paths import UNSAFE_PATHS_REMEDY, link_below, paths_problem
from p2pdist.errors import (
    InputError,
    MalformedObject,
    StorageError,
    TamperedContent,
)
from p2pdist.licensing._content import MAX_FILES

__all__ = [
    "CHUNK",
    "ENCRYPTED_SUFFIX",
    "KEY_SIZE",
    "TAG_SIZE",
    "PlainFile",
    "decrypt_file",
    "decrypt_tree",
    "encrypt_file",
    "encrypt_tree",
    "encrypted_path",
    "encrypted_size",
    "key_id",
    "new_content_key",
    "verify_key_id",
    "work_paths_problem",
]

CHUNK = 64 * 1024
KEY_SIZE = 32
TAG_SIZE = 16
ENCRYPTED_SUFFIX = ".p2pe"
FILE_KEY_DOMAIN = b"p2pdist/file-key/v1"
KEY_ID_DOMAIN = b"p2pdist/key-id/v1"
_MAX_CHUNK = 1 << 24
_MAX_SIZE = 1 << 62
# Ciphertexts (in the node home) are private; plaintext unlocked for a user takes their umask.
_PRIVATE_FILE, _PRIVATE_DIR = 0o600, 0o700

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class PlainFile:
    """One plaintext file of a work: its path (top-level name first) and its size."""

    path: tuple[str, ...]
    size: int

    def __post_init__(self) -> None:
        _check_path_shape(self.path)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError("a file size is an int")
        if not 0 <= self.size < _MAX_SIZE:
            raise ValueError("a file size is out of range")


# -- keys ---------------------------------------------------------------------------------


def new_content_key() -> bytes:
    """A fresh random content key for one work."""
    return secrets.token_bytes(KEY_SIZE)


def key_id(content_key: bytes) -> bytes:
    """The 32-byte public commitment to *content_key*."""
    _check_key(content_key)
    return hashlib.blake2b(KEY_ID_DOMAIN + b"\0" + content_key, digest_size=32).digest()


def verify_key_id(content_key: bytes, *, expected: bytes) -> None:
    """Check a granted key against the work's key id; raise TamperedContent if it differs."""
    if not hmac.compare_digest(key_id(content_key), expected):
        raise TamperedContent()


def _check_key(content_key: bytes) -> None:
    if not isinstance(content_key, bytes):
        raise TypeError("a content key is bytes")
    if len(content_key) != KEY_SIZE:
        raise ValueError(f"a content key is {KEY_SIZE} bytes")


def _check_path_shape(path: tuple[str, ...]) -> None:
    if not isinstance(path, tuple) or not all(isinstance(p, str) for p in path):
        raise TypeError("a file path is a tuple of str")
    if not path or any(not p for p in path):
        raise ValueError("a file path has no parts, or an empty one")
    for p in path:
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a file path component is not valid Unicode") from None


def _file_aead(content_key: bytes, path: tuple[str, ...], size: int) -> ChaCha20Poly1305:
    _check_key(content_key)
    PlainFile(path, size)  # the same shape checks, as programmer errors
    info = FILE_KEY_DOMAIN + b"\0" + _canonical.encode(
        {"path": [p.encode("utf-8") for p in path], "size": size})
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(content_key)
    return ChaCha20Poly1305(key)


# -- sizes and names ----------------------------------------------------------------------


def _check_chunk(chunk: int) -> None:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= _MAX_CHUNK:
        raise ValueError(f"the chunk size must be 1..{_MAX_CHUNK} bytes")


def _chunk_count(plain_size: int, chunk: int) -> int:
    return max(1, -(-plain_size // chunk))


def encrypted_size(plain_size: int, *, chunk: int = CHUNK) -> int:
    """The exact size of the ciphertext of a *plain_size*-byte file.

    *chunk* is for tests; format v1 is CHUNK, and a ciphertext made with another chunk
    size does not open with this one (except files of a single chunk under both).
    """
    _check_chunk(chunk)
    if isinstance(plain_size, bool) or not isinstance(plain_size, int) or plain_size < 0:
        raise ValueError("a plain size is a non-negative int")
    return plain_size + TAG_SIZE * _chunk_count(plain_size, chunk)


def encrypted_path(path: tuple[str, ...]) -> tuple[str, ...]:
    """Where the ciphertext of *path* lives, relative to the same root."""
    _check_path_shape(path)
    return (*path[:-1], path[-1] + ENCRYPTED_SUFFIX)


def _nonce(index: int, last: bool) -> bytes:
    return (index << 8 | last).to_bytes(12, "big")


# -- streams ------------------------------------------------------------------------------


def _read_into(f: io.FileIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _encrypt_stream(aead: ChaCha20Poly1305, size: int, fin: io.FileIO, fout: BinaryIO,
                    chunk: int, progress: Progress | None, done: int, src: Path) -> int:
    n = _chunk_count(size, chunk)
    buf = memoryview(bytearray(chunk))
    plain = written = 0
    for i in range(n):
        m = min(chunk, size - plain)
        if _read_into(fin, buf[:m]) != m:
            raise StorageError(f"{src} got shorter while it was being encrypted",
                               remedy="leave the files alone while publishing, then retry")
        sealed = aead.encrypt(_nonce(i, i == n - 1), buf[:m], None)
        fout.write(sealed)
        plain += m
        written += len(sealed)
        if progress is not None:
            progress(done + plain)
    if fin.read(1):
        raise StorageError(f"{src} grew while it was being encrypted",
                           remedy="leave the files alone while publishing, then retry")
    return written


def _decrypt_stream(aead: ChaCha20Poly1305, size: int, fin: io.FileIO, fout: BinaryIO,
                    chunk: int, progress: Progress | None, done: int) -> None:
    """Open every chunk of *fin* into *fout*. Checks no size first: the caller does."""
    n = _chunk_count(size, chunk)
    buf = memoryview(bytearray(chunk + TAG_SIZE))
    plain = 0
    for i in range(n):
        m = min(chunk, size - plain) + TAG_SIZE
        if _read_into(fin, buf[:m]) != m:
            raise TamperedContent()
        try:
            fout.write(aead.decrypt(_nonce(i, i == n - 1), buf[:m], None))
        except InvalidTag:
            raise TamperedContent() from None
        plain += m - TAG_SIZE
        if progress is not None:
            progress(done + plain)
    if fin.read(1):
        raise TamperedContent()


# -- files --------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_regular(src: Path) -> Iterator[tuple[io.FileIO, int]]:
    try:
        f = open(src, "rb", buffering=0)  # noqa: SIM115 - the with below closes it
    except OSError as e:
        raise StorageError(f"cannot read {src}: {e.strerror or e}") from e
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{src} is not a regular file")
        yield f, st.st_size


def _make_dirs(folder: Path, created: list[Path], *, private: bool = False) -> None:
    """mkdir -p that appends each folder it makes to *created*, for an exact undo; the
    folders are 0700 if *private*, else as the umask says."""
    missing: list[Path] = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(_PRIVATE_DIR if private else 0o777)
        created.append(d)
        if private:
            d.chmod(_PRIVATE_DIR)


def _remove_dirs(created: Sequence[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _temp_output(folder: Path, name: str, *, private: bool = False
                 ) -> Iterator[tuple[BinaryIO, Path]]:
    """A new temp file in *folder*, fsynced on success, removed on failure: 0600 if
    *private*, else 0666 less the umask (as any program's new file for its user)."""
    for _ in range(100):
        path = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                         | os.O_NOFOLLOW, _PRIVATE_FILE if private else 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temp name in {folder}")
    try:
        with os.fdopen(fd, "wb") as f:
            if private:
                os.fchmod(f.fileno(), _PRIVATE_FILE)
            yield f, path
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _replace_atomically(src: Path, dst: Path, write: Callable[[BinaryIO], None], *,
                        private: bool) -> None:
    """Write *dst* through a temp file beside it; on any failure leave nothing behind."""
    if dst.is_dir():
        raise StorageError(f"cannot write {dst}: it is a folder", remedy="name a file")
    created: list[Path] = []
    try:
        _make_dirs(dst.parent, created, private=private)
        with _temp_output(dst.parent, dst.name, private=private) as (f, tmp):
            write(f)
        os.replace(tmp, dst)
    except BaseException as e:
        _remove_dirs(created)
        if isinstance(e, OSError):
            raise StorageError(f"cannot write {dst} from {src}: {e.strerror or e}") from e
        raise
    _fsync_dir(dst.parent)


def _encrypt_file(content_key: bytes, path: tuple[str, ...], src: Path, dst: Path,
                  progress: Progress | None, chunk: int, done: int) -> tuple[int, int]:
    _check_chunk(chunk)
    with _open_regular(src) as (fin, size):
        aead = _file_aead(content_key, path, size)
        written = 0

        def write(fout: BinaryIO) -> None:
            nonlocal written
            written = _encrypt_stream(aead, size, fin, fout, chunk, progress, done, src)

        _replace_atomically(src, dst, write, private=True)
    return size, written


def encrypt_file(content_key: bytes, path: tuple[str, ...], src: Path, dst: Path, *,
                 progress: Progress | None = None, chunk: int = CHUNK) -> int:
    """Encrypt the file *src*, known in the work as *path*, into *dst*; return its size.

    *dst* is written through a temp file, fsync and os.replace. *progress* gets the
    plaintext bytes done so far. Raises StorageError when a read or write fails (also
    when *src* changes size meanwhile), InputError when *src* is not a regular file.
    """
    return _encrypt_file(content_key, path, src, dst, progress, chunk, 0)[1]


@contextlib.contextmanager
def _open_ciphertext(src: Path, plain_size: int, chunk: int) -> Iterator[io.FileIO]:
    with _open_regular(src) as (fin, size):
        if size != encrypted_size(plain_size, chunk=chunk):
            raise TamperedContent()
        yield fin


def decrypt_file(content_key: bytes, path: tuple[str, ...], src: Path, dst: Path, *,
                 plain_size: int, progress: Progress | None = None,
                 chunk: int = CHUNK) -> None:
    """Decrypt *src*, the ciphertext of the work's file *path*, into *dst*.

    Checks: (1) the ciphertext has exactly ``encrypted_size(plain_size)`` bytes, before
    any chunk is opened; (2) every chunk authenticates under the key of (*path*,
    *plain_size*) with its index and last-chunk flag; (3) nothing follows the last chunk.
    Plaintext goes to a temp file beside *dst* that replaces *dst* only when all three
    hold; on any failure the temp file (and any folder made for it) is removed.

    Raises TamperedContent (opaque: tampered, truncated, moved, wrong key or wrong size),
    StorageError when a read or write fails.
    """
    _check_chunk(chunk)
    aead = _file_aead(content_key, path, plain_size)
    with _open_ciphertext(src, plain_size, chunk) as fin:  # (1)
        _replace_atomically(src, dst, lambda fout: _decrypt_stream(  # (2), (3)
            aead, plain_size, fin, fout, chunk, progress, 0), private=False)


# -- trees --------------------------------------------------------------------------------


def work_paths_problem(paths: Sequence[tuple[str, ...]]) -> str | None:
    """Why a paid work's plaintext file list may not be written, or None.

    p2pdist._paths' rule, on the plaintext paths and on their ciphertext names (so a
    file name must still fit with ``.p2pe`` added, and a folder ``a.p2pe`` beside a file
    ``a`` is refused).
    """
    problem = paths_problem(paths)
    if problem is None and all(p and all(isinstance(c, str) and c for c in p) for p in paths):
        problem = paths_problem([encrypted_path(p) for p in paths])
    return problem


def _list_plain_files(src: Path) -> list[tuple[tuple[str, ...], Path]]:
    if src.is_file():
        return [((src.name,), src)]
    if not src.is_dir():
        raise InputError(f"no such file or folder: {src}", remedy="check the path")
    out: list[tuple[tuple[str, ...], Path]] = []
    for folder, dirs, names in os.walk(src, onerror=_raise_walk_error):
        here = Path(folder)
        # Hidden files (.DS_Store, editor swap files) are not part of a work, as in
        # make_torrent, so that the torrent of the ciphertexts lists every file we return.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            if (here / d).is_symlink():
                raise InputError(f"{str(here / d)!r} is a link to a folder",
                                 remedy="copy that folder into the work instead")
        for name in names:
            if name.startswith("."):
                continue
            p = here / name
            if not p.is_file():
                raise InputError(f"{str(p)!r} is not a regular file",
                                 remedy="remove it from the work")
            out.append(((src.name, *p.relative_to(src).parts), p))
    if not out:
        raise InputError(f"the folder {src} is empty", remedy="publish a folder with files")
    return sorted(out)


def _raise_walk_error(e: OSError) -> None:
    raise StorageError(f"cannot read {e.filename}: {e.strerror or e}") from e


def encrypt_tree(content_key: bytes, src: Path, dst_root: Path, *,
                 progress: Progress | None = None, chunk: int = CHUNK) -> list[PlainFile]:
    """Encrypt the file or folder *src* into *dst_root*; return its files, sorted by path.

    ``src/cd1/01.flac`` becomes ``dst_root/<src name>/cd1/01.flac.p2pe``; hidden files
    and folders are left out, as make_torrent leaves them out. *progress* gets the
    plaintext bytes done so far over the whole tree. Raises InputError for a name that
    cannot be published or a *dst_root* inside *src*, StorageError when I/O fails; on
    failure the ciphertexts this call wrote are removed.
    """
    _check_key(content_key)
    _check_chunk(chunk)
    src = src.expanduser().absolute()
    if src.is_dir() and (dst_root / src.name).resolve().is_relative_to(src.resolve()):
        raise InputError(f"the ciphertexts of {src} would land inside it",
                         remedy="write them to a folder outside the work")
    listed = _list_plain_files(src)
    problem = paths_problem([path for path, _ in listed])
    if problem is not None:
        raise InputError(f"cannot publish {src.name[:80]!r}: {problem}", remedy="rename it")
    targets = {encrypted_path(path) for path, _ in listed}
    for path, p in listed:
        # A file "a" and a folder "a.p2pe" beside it would want the same ciphertext name.
        if any(path[:i] in targets for i in range(1, len(path))):
            raise InputError(f"cannot publish {p}: a folder name ends in "
                             f"{ENCRYPTED_SUFFIX!r} next to a file of the same stem",
                             remedy="rename the folder")
    problem = work_paths_problem([path for path, _ in listed])
    if problem is not None:
        raise InputError(f"cannot publish {src.name[:80]!r}: {problem}", remedy="rename it")
    files: list[PlainFile] = []
    written: list[Path] = []
    created: list[Path] = []
    done = 0
    try:
        for path, p in listed:
            dst = dst_root.joinpath(*encrypted_path(path))
            _make_dirs(dst.parent, created, private=True)
            size, _ = _encrypt_file(content_key, path, p, dst, progress, chunk, done)
            written.append(dst)
            files.append(PlainFile(path, size))
            done += size
    except BaseException as e:
        for w in written:
            with contextlib.suppress(OSError):
                w.unlink()
        _remove_dirs(created)
        if isinstance(e, OSError):
            raise StorageError(f"cannot write under {dst_root}: {e.strerror or e}") from e
        raise
    return files


def _plan(files: Sequence[PlainFile], src_root: Path,
          dst_root: Path) -> list[tuple[PlainFile, Path, Path]]:
    """Each file with its ciphertext and its target, every name checked; see decrypt_tree."""
    if len(files) > MAX_FILES:
        raise MalformedObject(f"the work lists more than {MAX_FILES} files")
    src = src_root.expanduser().absolute().resolve()
    dst = dst_root.expanduser().absolute().resolve()
    if not all(isinstance(f, PlainFile) for f in files):
        raise TypeError("decrypt_tree takes PlainFile values")
    problem = work_paths_problem([f.path for f in files])
    if problem is not None:
        raise MalformedObject(f"the work has an unsafe file list: {problem}",
                              remedy=UNSAFE_PATHS_REMEDY)
    plan: list[tuple[PlainFile, Path, Path]] = []
    for f in files:
        s = src.joinpath(*encrypted_path(f.path)).resolve()
        d = dst.joinpath(*f.path)  # the rule above: plain names, so d is under dst
        if not s.is_relative_to(src):
            raise MalformedObject(f"the work's file {'/'.join(f.path)[:200]!r} escapes "
                                  "its folder")
        _no_link(dst, f.path)
        plan.append((f, s, d))
    targets = {d for _, _, d in plan}
    if len(targets) != len(plan):
        raise MalformedObject("the work lists one file twice")
    for f, _, d in plan:
        if any(parent in targets for parent in d.parents):
            raise MalformedObject(f"the work's file {'/'.join(f.path)[:200]!r} is also a "
                                  "folder of another file")
    return plan


def _no_link(root: Path, path: tuple[str, ...]) -> None:
    link = link_below(root, path)
    if link is not None:
        raise MalformedObject(f"{link} is a symbolic link: unlocking would write through it "
                              "to wherever it leads", remedy="remove the link, or unlock "
                              "into a folder without links in it")


def _folder_fd(root: Path, path: tuple[str, ...]) -> int:
    """The folder of ``root/path``, opened one name at a time without following a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in path[:-1]:
            below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise MalformedObject(f"a folder of {'/'.join(path)[:200]!r} below {root} became "
                                  "a symbolic link while unlocking: not written through it",
                                  remedy="remove the link, or unlock into a folder without "
                                  "links in it") from None
        raise
    return fd


def _preflight(plan: Sequence[tuple[PlainFile, Path, Path]], dst_root: Path, *,
               overwrite: bool, chunk: int) -> None:
    for f, s, d in plan:
        try:
            st = s.stat()
        except OSError as e:
            raise StorageError(f"cannot read {s}: {e.strerror or e}",
                               remedy="fetch the whole work first") from e
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{s} is not a regular file")
        if st.st_size != encrypted_size(f.size, chunk=chunk):
            raise TamperedContent()
        if d.is_dir():
            raise InputError(f"cannot unlock {'/'.join(f.path)}: {d} is a folder",
                             remedy="move it away, or unlock into another folder")
        if os.path.lexists(d) and not overwrite:
            raise InputError(f"cannot unlock {'/'.join(f.path)}: {d} already exists",
                             remedy="move it away, or unlock into another folder")
        for parent in d.parents:
            if parent == dst_root:
                break
            if os.path.lexists(parent) and not parent.is_dir():
                raise InputError(f"cannot unlock {'/'.join(f.path)}: {parent} is not a folder",
                                 remedy="move it away, or unlock into another folder")


def decrypt_tree(content_key: bytes, files: Sequence[PlainFile], src_root: Path,
                 dst_root: Path, *, progress: Progress | None = None, overwrite: bool = False,
                 chunk: int = CHUNK) -> list[Path]:
    """Decrypt a work's ciphertexts under *src_root* into *dst_root*, all or nothing.

    *files* is the work's file list (from its manifest: untrusted). Checks, in order:

    1. the file list passes p2pdist._paths' rule (portable plain names, no two files
       that one disk would confuse, no file that is also a folder), for the plaintext
       and the ciphertext names; every ciphertext resolves inside *src_root*, and no
       component of a target below *dst_root* is a symbolic link already (lstat: a
       target is never written through a link, to inside *dst_root* or out of it;
       *dst_root* itself may be a link its user made) (MalformedObject);
    2. every ciphertext exists (StorageError) and has exactly ``encrypted_size(size)``
       bytes (TamperedContent), before any chunk is opened;
    3. no target is a folder, and none exists unless *overwrite* (InputError);
    4. every chunk of every file authenticates, decrypted into temp files in a hidden
       staging folder inside *dst_root* (TamperedContent);
    5. only then are the files moved into place with os.replace, each into its folder
       opened one name at a time below *dst_root* without following a link (O_NOFOLLOW):
       a link swapped in since (1) is refused, never written through.

    On any failure every temp file is removed, files already moved are taken back (a
    replaced file is restored), folders this call made are removed, and the error is
    raised: *dst_root* is left as it was. Returns the plaintext paths, in *files* order.
    *progress* gets the plaintext bytes decrypted so far over the whole tree.
    """
    _check_key(content_key)
    _check_chunk(chunk)
    plan = _plan(files, src_root, dst_root)  # (1)
    root = dst_root.expanduser().absolute().resolve()
    _preflight(plan, root, overwrite=overwrite, chunk=chunk)  # (2), (3)
    created: list[Path] = []
    journal: list[tuple[Path, Path | None]] = []  # (target, None: placed | its old file)
    staging: Path | None = None
    try:
        _make_dirs(root, created)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".p2pdist-unlock-"))
        temps: list[Path] = []
        done = 0
        for i, (f, s, _) in enumerate(plan):  # (4)
            aead = _file_aead(content_key, f.path, f.size)
            with (_open_ciphertext(s, f.size, chunk) as fin,  # (2) again, on what we read
                  _temp_output(staging, str(i)) as (fout, tmp)):
                _decrypt_stream(aead, f.size, fin, fout, chunk, progress, done)
            temps.append(tmp)
            done += f.size
        for i, (tmp, (f, _, d)) in enumerate(zip(temps, plan, strict=True)):  # (5)
            _make_dirs(d.parent, created)
            dirfd = _folder_fd(root, f.path)
            try:
                name = f.path[-1]
                if os.path.lexists(d):
                    old = staging / f"{i}.replaced"
                    os.replace(name, old, src_dir_fd=dirfd)  # the entry, never its target
                    journal.append((d, old))
                os.replace(tmp, name, dst_dir_fd=dirfd)
                journal.append((d, None))
            finally:
                os.close(dirfd)
    except BaseException as e:
        _undo(journal, staging, created)
        if isinstance(e, OSError):
            raise StorageError(f"cannot unlock into {dst_root}: {e.strerror or e}") from e
        raise
    for folder in {d.parent for _, _, d in plan}:
        _fsync_dir(folder)
    shutil.rmtree(staging, ignore_errors=True)
    return [dst_root.joinpath(*f.path) for f, _, _ in plan]


def _undo(journal: Sequence[tuple[Path, Path | None]], staging: Path | None,
          created: Sequence[Path]) -> None:
    for target, old in reversed(journal):
        with contextlib.suppress(OSError):
            if old is None:
                target.unlink()
            else:
                os.replace(old, target)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_dirs(created)
