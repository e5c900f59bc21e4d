"""Paid-work content encryption: vectors, properties and a table of named attacks.

Every refusal of ciphertext is the one opaque TamperedContent (exit 3), and every
refusal leaves nothing behind: no plaintext, no temp file, no folder it made. Paths
from a work's file list are untrusted and refused with MalformedObject before any
byte is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist._paths import name_problem
from p2pdist.errors import (
    InputError,
    MalformedObject,
    StorageError,
    TamperedContent,
    VerificationError,
)
from p2pdist.licensing import (
    CHUNK,
    ENCRYPTED_SUFFIX,
    PlainFile,
    _encryption,
    decrypt_file,
    decrypt_tree,
    encrypt_file,
    encrypt_tree,
    encrypted_path,
    encrypted_size,
    key_id,
    new_content_key,
    verify_key_id,
)
from p2pdist.licensing._encryption import work_paths_problem

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "encryption.json").read_text("utf-8")
)
INPUT = VECTORS["input"]
CASES = list(zip(INPUT["files"], VECTORS["output"]["files"], strict=True))

PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

KEY = bytes(range(32))
OTHER_KEY = b"\x07" * 32
PATH = ("First Light", "a.flac")
TAG = 16


def _plaintext(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def _listing(root: Path) -> dict[str, bytes | None]:
    """Everything under *root* (hidden entries too): file contents, None for folders."""
    if not root.exists():
        return {}
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


def _encrypt(data: bytes, path: tuple[str, ...] = PATH, key: bytes = KEY,
             chunk: int = CHUNK) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "plain", Path(d) / "cipher"
        src.write_bytes(data)
        encrypt_file(key, path, src, dst, chunk=chunk)
        return dst.read_bytes()


def _decrypt(ct: bytes, path: tuple[str, ...] = PATH, key: bytes = KEY, *,
             plain_size: int, chunk: int = CHUNK) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "cipher", Path(d) / "out" / "plain"
        src.write_bytes(ct)
        try:
            decrypt_file(key, path, src, dst, plain_size=plain_size, chunk=chunk)
        except BaseException:
            assert not (Path(d) / "out").exists(), "a failed decrypt left something behind"
            raise
        assert _listing(Path(d) / "out") == {"plain": dst.read_bytes()}
        return dst.read_bytes()


# -- golden vectors -----------------------------------------------------------------------


def _check_ciphertext(ct: bytes, out: dict[str, Any]) -> None:
    assert len(ct) == out["ciphertext_size"]
    assert hashlib.sha256(ct).hexdigest() == out["ciphertext_sha256"]
    if "ciphertext" in out:
        assert ct.hex() == out["ciphertext"]
    else:
        assert ct[:32].hex() == out["ciphertext_head"]
        assert ct[-32:].hex() == out["ciphertext_tail"]


def test_vectors_use_the_real_chunk_and_span_its_boundaries() -> None:
    assert INPUT["chunk"] == CHUNK == 65536
    assert [f["size"] for f in INPUT["files"]] == [
        0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1]


@pytest.mark.parametrize(("inp", "out"), CASES, ids=[c[0]["name"] for c in CASES])
def test_todays_encryption_reproduces_vector(tmp_path: Path, inp: dict[str, Any],
                                             out: dict[str, Any]) -> None:
    src, dst = tmp_path / "plain", tmp_path / "cipher"
    src.write_bytes(_plaintext(inp["size"]))
    written = encrypt_file(bytes.fromhex(INPUT["key"]), tuple(inp["path"]), src, dst)
    ct = dst.read_bytes()
    _check_ciphertext(ct, out)
    assert written == len(ct) == encrypted_size(inp["size"])


@pytest.mark.parametrize(("inp", "out"), CASES, ids=[c[0]["name"] for c in CASES])
def test_vector_matches_the_spec_by_hand(inp: dict[str, Any], out: dict[str, Any]) -> None:
    """HKDF info, file key and STREAM chunks rebuilt with ``cryptography`` alone."""
    path, size = inp["path"], inp["size"]
    parts = b"".join(b"%d:%s" % (len(p.encode()), p.encode()) for p in path)
    info = b"p2pdist/file-key/v1\x00d4:pathl" + parts + b"e4:sizei%dee" % size
    assert info.hex() == out["info"]
    fkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=info).derive(bytes.fromhex(INPUT["key"]))
    assert fkey.hex() == out["file_key"]
    aead, data = ChaCha20Poly1305(fkey), _plaintext(size)
    pieces = [data[i : i + CHUNK] for i in range(0, size, CHUNK)] or [b""]
    ct = b"".join(
        aead.encrypt(i.to_bytes(11, "big") + bytes([i == len(pieces) - 1]), piece, None)
        for i, piece in enumerate(pieces))
    _check_ciphertext(ct, out)
    assert _decrypt(ct, tuple(path), bytes.fromhex(INPUT["key"]), plain_size=size) == data


@pytest.mark.parametrize("case", VECTORS["output"]["key_ids"], ids=lambda c: c["key"][:8])
def test_key_id_vector(case: dict[str, str]) -> None:
    key = bytes.fromhex(case["key"])
    assert key_id(key).hex() == case["key_id"]
    by_hand = hashlib.blake2b(b"p2pdist/key-id/v1\x00" + key, digest_size=32).hexdigest()
    assert by_hand == case["key_id"]
    verify_key_id(key, expected=bytes.fromhex(case["key_id"]))


def test_empty_file_is_one_final_chunk_holding_only_a_tag() -> None:
    ct = _encrypt(b"")
    assert len(ct) == TAG == encrypted_size(0)
    nonce = bytes(11) + b"\x01"
    assert ct == ChaCha20Poly1305(_file_key(KEY, PATH, 0)).encrypt(nonce, b"", None)


def _file_key(key: bytes, path: tuple[str, ...], size: int) -> bytes:
    parts = b"".join(b"%d:%s" % (len(p.encode()), p.encode()) for p in path)
    info = b"p2pdist/file-key/v1\x00d4:pathl" + parts + b"e4:sizei%dee" % size
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_real_chunk_round_trip_at_boundaries(size: int) -> None:
    data = os.urandom(size)
    ct = _encrypt(data)
    assert len(ct) == encrypted_size(size)
    assert _decrypt(ct, plain_size=size) == data


def test_ciphertext_does_not_show_the_plaintext() -> None:
    marker = b"P2PDIST-PLAINTEXT-MARKER/"
    data = marker * (3 * CHUNK // len(marker))
    ct = _encrypt(data)
    assert marker not in ct
    assert marker[:8] not in ct
    # And the same plaintext under another path or key is unrelated ciphertext.
    assert _encrypt(data, path=("First Light", "b.flac"))[:64] != ct[:64]
    assert _encrypt(data, key=OTHER_KEY)[:64] != ct[:64]


# -- keys and sizes -----------------------------------------------------------------------


def test_new_content_keys_are_fresh_32_byte_keys() -> None:
    keys = {new_content_key() for _ in range(64)}
    assert len(keys) == 64
    assert all(len(k) == 32 for k in keys)


def test_granted_key_that_is_not_the_committed_one_is_refused() -> None:
    with pytest.raises(TamperedContent):
        verify_key_id(OTHER_KEY, expected=key_id(KEY))
    with pytest.raises(TamperedContent):
        verify_key_id(KEY, expected=key_id(KEY)[:31])


def test_key_id_is_not_a_file_key() -> None:
    assert key_id(KEY) != _file_key(KEY, PATH, 0)
    assert key_id(KEY) != KEY


@pytest.mark.parametrize(("bad", "exc"), [
    (b"\x00" * 31, ValueError), (b"\x00" * 33, ValueError), (b"", ValueError),
    ("00" * 32, TypeError), (bytearray(32), TypeError),
])
def test_misused_keys_are_programmer_errors(tmp_path: Path, bad: Any,
                                            exc: type[Exception]) -> None:
    src = tmp_path / "p"
    src.write_bytes(b"x")
    with pytest.raises(exc):
        key_id(bad)
    with pytest.raises(exc):
        encrypt_file(bad, PATH, src, tmp_path / "c")
    with pytest.raises(exc):
        decrypt_file(bad, PATH, src, tmp_path / "d", plain_size=1)
    with pytest.raises(exc):
        encrypt_tree(bad, src, tmp_path / "tree")
    with pytest.raises(exc):
        decrypt_tree(bad, [], tmp_path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


@pytest.mark.parametrize(("args", "exc"), [
    ((["a"], 1), TypeError), (((), 1), ValueError), ((("a", ""), 1), ValueError),
    ((("a", 1), 1), TypeError), ((("a",), -1), ValueError), ((("a",), 1.0), TypeError),
    ((("a",), True), TypeError), ((("\udc80",), 1), ValueError), ((("a",), 1 << 62), ValueError),
])
def test_malformed_plain_file_is_a_programmer_error(args: tuple[Any, Any],
                                                   exc: type[Exception]) -> None:
    with pytest.raises(exc):
        PlainFile(*args)


@pytest.mark.parametrize("chunk", [0, -1, (1 << 24) + 1, True])
def test_bad_chunk_size_is_a_programmer_error(chunk: Any) -> None:
    with pytest.raises(ValueError, match="chunk"):
        encrypted_size(1, chunk=chunk)


def test_encrypted_size_is_a_pure_function_of_the_plain_size() -> None:
    assert encrypted_size(0) == 16
    assert encrypted_size(1) == 17
    assert encrypted_size(CHUNK) == CHUNK + 16
    assert encrypted_size(CHUNK + 1) == CHUNK + 1 + 32
    assert encrypted_size(10 * CHUNK) == 10 * CHUNK + 160
    with pytest.raises(ValueError):
        encrypted_size(-1)


def test_encrypted_path_appends_the_suffix_to_the_file_name_only() -> None:
    assert encrypted_path(("album", "cd1", "a.flac")) == ("album", "cd1", "a.flac.p2pe")
    assert encrypted_path(("a",)) == ("a" + ENCRYPTED_SUFFIX,)


# -- properties ---------------------------------------------------------------------------

_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
                           exclude_characters="/\\."),
    min_size=1, max_size=12)
_paths = st.lists(_names, min_size=1, max_size=4).map(tuple)


@st.composite
def _sized(draw: st.DrawFn) -> tuple[int, int]:
    """A small chunk size and a plain size, often a chunk boundary ±1."""
    chunk = draw(st.integers(1, 64))
    k = draw(st.integers(0, 6))
    size = draw(st.one_of(
        st.sampled_from([max(0, k * chunk - 1), k * chunk, k * chunk + 1]),
        st.integers(0, 7 * chunk)))
    return chunk, size


@PROPERTY
@given(_sized(), _paths, st.binary(min_size=32, max_size=32), st.randoms())
def test_file_round_trips(sized: tuple[int, int], path: tuple[str, ...], key: bytes,
                          rnd: Any) -> None:
    chunk, size = sized
    data = rnd.randbytes(size)
    ct = _encrypt(data, path, key, chunk)
    assert len(ct) == encrypted_size(size, chunk=chunk)
    assert _decrypt(ct, path, key, plain_size=size, chunk=chunk) == data


@PROPERTY
@given(_sized(), st.data())
def test_any_flipped_bit_is_refused(sized: tuple[int, int], data: st.DataObject) -> None:
    chunk, size = sized
    ct = bytearray(_encrypt(_plaintext(size), chunk=chunk))
    pos = data.draw(st.integers(0, len(ct) - 1))
    ct[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(TamperedContent):
        _decrypt(bytes(ct), plain_size=size, chunk=chunk)


@PROPERTY
@given(_sized(), st.data())
def test_any_cut_or_extension_is_refused(sized: tuple[int, int], data: st.DataObject) -> None:
    chunk, size = sized
    ct = _encrypt(_plaintext(size), chunk=chunk)
    cut = data.draw(st.integers(0, len(ct) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=2 * chunk + TAG))
    for bad in (ct[:cut], ct + extra, ct[:cut] + extra):
        if bad == ct:
            continue
        with pytest.raises(TamperedContent):
            _decrypt(bad, plain_size=size, chunk=chunk)
        # The stream layer alone, sizes unchecked, refuses it too.
        with pytest.raises(TamperedContent):
            _open_stream(bad, size, chunk=chunk)


def _open_stream(ct: bytes, size: int, *, path: tuple[str, ...] = PATH, key: bytes = KEY,
                 key_size: int | None = None, chunk: int = CHUNK) -> bytes:
    """Decrypt with the size pre-check skipped, under the key of (path, key_size)."""
    aead = _encryption._file_aead(key, path, size if key_size is None else key_size)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "c").write_bytes(ct)
        with open(Path(d) / "c", "rb", buffering=0) as fin, open(Path(d) / "p", "wb") as fout:
            _encryption._decrypt_stream(aead, size, fin, fout, chunk, None, 0)
        return (Path(d) / "p").read_bytes()


@st.composite
def _trees(draw: st.DrawFn) -> dict[tuple[str, ...], bytes]:
    """A work: 1..6 files under one top-level name, a file list p2pdist._paths allows."""
    names = _names.filter(lambda n: name_problem(n) is None)
    top = draw(names)
    rels = draw(st.lists(st.lists(names, min_size=1, max_size=3).map(tuple),
                         min_size=1, max_size=6, unique=True))
    files: dict[tuple[str, ...], bytes] = {}
    for rel in rels:
        path = (top, *rel)
        if work_paths_problem([*files, path]) is not None:
            continue
        files[path] = draw(st.binary(max_size=200))
    return files


def _write_tree(root: Path, files: dict[tuple[str, ...], bytes]) -> None:
    for path, data in files.items():
        p = root.joinpath(*path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


@PROPERTY
@given(_trees(), st.integers(1, 64))
def test_tree_round_trips(files: dict[tuple[str, ...], bytes], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        plain, cipher, out = Path(d) / "plain", Path(d) / "cipher", Path(d) / "out"
        _write_tree(plain, files)
        top = next(iter(files))[0]
        seen: list[int] = []
        listed = encrypt_tree(KEY, plain / top, cipher, chunk=chunk, progress=seen.append)
        assert listed == [PlainFile(p, len(files[p])) for p in sorted(files)]
        assert seen == sorted(seen)
        assert not seen or seen[-1] == sum(map(len, files.values()))
        assert sorted(_listing(cipher)) == sorted(
            {str(Path(*encrypted_path(p)[: i + 1])) for p in files
             for i in range(len(p) - 1)} | {str(Path(*encrypted_path(p))) for p in files})
        got = decrypt_tree(KEY, listed, cipher, out, chunk=chunk)
        assert got == [out.joinpath(*f.path) for f in listed]
        for path, data in files.items():
            assert out.joinpath(*path).read_bytes() == data
        assert not any(p.name.startswith(".") for p in out.rglob("*"))


# -- named attacks ------------------------------------------------------------------------

# A 4-chunk file whose last chunk is short, and a 4-chunk file whose last chunk is full.
SHORT_TAIL = 3 * CHUNK + 100
FULL_TAIL = 4 * CHUNK
_CT: dict[tuple[tuple[str, ...], int, bytes], bytes] = {}


def _ct(size: int = SHORT_TAIL, path: tuple[str, ...] = PATH, key: bytes = KEY) -> bytes:
    if (path, size, key) not in _CT:
        _CT[path, size, key] = _encrypt(_plaintext(size), path, key)
    return _CT[path, size, key]


def _chunks(ct: bytes) -> list[bytes]:
    step = CHUNK + TAG
    return [ct[i : i + step] for i in range(0, len(ct), step)]


def _flip(ct: bytes, pos: int) -> bytes:
    b = bytearray(ct)
    b[pos] ^= 0x01
    return bytes(b)


@dataclass(frozen=True)
class Attack:
    """A ciphertext presented as the file *path* of *size* bytes, opened with *key*."""

    name: str
    make: Callable[[], bytes]
    size: int = SHORT_TAIL
    path: tuple[str, ...] = PATH
    key: bytes = KEY


def _swap(ct: bytes, i: int, j: int) -> bytes:
    c = _chunks(ct)
    c[i], c[j] = c[j], c[i]
    return b"".join(c)


ATTACKS = [
    Attack("first-two-chunks-swapped", lambda: _swap(_ct(), 0, 1)),
    Attack("three-chunks-rotated", lambda: b"".join(
        [*_chunks(_ct())[1:3], _chunks(_ct())[0], _chunks(_ct())[3]])),
    Attack("final-chunk-swapped-with-the-one-before", lambda: _swap(_ct(FULL_TAIL), 2, 3),
           size=FULL_TAIL),
    Attack("truncated-at-a-chunk-boundary", lambda: b"".join(_chunks(_ct())[:2])),
    Attack("truncated-at-a-chunk-boundary-size-edited-to-match",
           lambda: b"".join(_chunks(_ct())[:2]), size=2 * CHUNK),
    Attack("truncated-mid-chunk", lambda: _ct()[: CHUNK + 1000]),
    Attack("truncated-by-one-byte", lambda: _ct()[:-1]),
    Attack("one-chunk-appended", lambda: _ct() + _chunks(_ct())[1]),
    Attack("final-chunk-appended-again", lambda: _ct(FULL_TAIL) + _chunks(_ct(FULL_TAIL))[3],
           size=FULL_TAIL),
    Attack("final-chunk-dropped", lambda: b"".join(_chunks(_ct(FULL_TAIL))[:3]),
           size=FULL_TAIL),
    Attack("final-chunk-dropped-size-edited-to-match",
           lambda: b"".join(_chunks(_ct(FULL_TAIL))[:3]), size=3 * CHUNK),
    Attack("chunk-from-another-file-of-the-work-spliced-in", lambda: b"".join(
        [_chunks(_ct())[0], _chunks(_ct(path=("First Light", "b.flac")))[1],
         *_chunks(_ct())[2:]])),
    Attack("chunk-from-the-same-file-of-another-work-spliced-in", lambda: b"".join(
        [_chunks(_ct())[0], _chunks(_ct(key=OTHER_KEY))[1], *_chunks(_ct())[2:]])),
    Attack("flipped-tag-byte", lambda: _flip(_ct(), CHUNK + TAG - 1)),
    Attack("flipped-final-tag-byte", lambda: _flip(_ct(), len(_ct()) - 1)),
    Attack("flipped-ciphertext-byte", lambda: _flip(_ct(), 2 * (CHUNK + TAG) + 5)),
    Attack("file-moved-to-another-path", _ct, path=("First Light", "b.flac")),
    Attack("file-moved-to-another-folder", _ct, path=("First Light", "x", "a.flac")),
    Attack("file-moved-to-another-work-name", _ct, path=("Last Light", "a.flac")),
    Attack("path-components-joined-differently", lambda: _ct(path=("First Light", "a", "b")),
           path=("First Light", "a/b")),
    Attack("wrong-key", _ct, key=OTHER_KEY),
    Attack("wrong-plain-size", _ct, size=SHORT_TAIL - 1),
    Attack("wrong-plain-size-ciphertext-padded-to-match", lambda: _ct() + b"\0",
           size=SHORT_TAIL + 1),
    Attack("empty-ciphertext-for-a-non-empty-file", lambda: b""),
    Attack("empty-files-tag-for-a-non-empty-file", lambda: _ct(0)),
    Attack("empty-file-under-another-path", lambda: _ct(0), size=0,
           path=("First Light", "b.flac")),
    Attack("one-byte-file-presented-as-empty", lambda: _ct(1)[:16], size=0),
    Attack("whole-file-of-another-work", lambda: _ct(key=OTHER_KEY)),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_refused_by_decrypt_file(tmp_path: Path, attack: Attack) -> None:
    src, out = tmp_path / "cipher", tmp_path / "out"
    src.write_bytes(attack.make())
    with pytest.raises(TamperedContent) as e:
        decrypt_file(attack.key, attack.path, src, out / "x" / "plain", plain_size=attack.size)
    assert e.value.exit_code == 3
    assert isinstance(e.value, VerificationError)
    assert e.value.message == (
        "the encrypted content does not authenticate (tampered or wrong key)")
    assert e.value.remedy
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cipher"]


@pytest.mark.parametrize("attack", [a for a in ATTACKS if "/" not in "".join(a.path)],
                         ids=lambda a: a.name)
def test_attack_is_refused_by_decrypt_tree(tmp_path: Path, attack: Attack) -> None:
    cipher, out = tmp_path / "cipher", tmp_path / "out"
    src = cipher.joinpath(*encrypted_path(attack.path))
    src.parent.mkdir(parents=True)
    src.write_bytes(attack.make())
    out.mkdir()
    (out / "keep.txt").write_bytes(b"mine")
    with pytest.raises(TamperedContent):
        decrypt_tree(attack.key, [PlainFile(attack.path, attack.size)], cipher, out)
    assert _listing(out) == {"keep.txt": b"mine"}


@pytest.mark.parametrize("attack", [a for a in ATTACKS if len(a.make()) == encrypted_size(
    a.size)], ids=lambda a: a.name)
def test_attack_of_the_right_size_fails_on_a_tag(attack: Attack,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The size check does not catch these: the chunks' tags must."""
    opened: list[int] = []
    real = _encryption._decrypt_stream

    def spy(*args: Any) -> None:
        opened.append(1)
        real(*args)

    monkeypatch.setattr(_encryption, "_decrypt_stream", spy)
    with pytest.raises(TamperedContent):
        _decrypt(attack.make(), attack.path, attack.key, plain_size=attack.size)
    assert opened == [1]


@pytest.mark.parametrize("attack", [a for a in ATTACKS if len(a.make()) != encrypted_size(
    a.size)], ids=lambda a: a.name)
def test_attack_of_the_wrong_size_is_refused_before_any_chunk_is_opened(
        attack: Attack, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*_: Any) -> None:
        raise AssertionError("a chunk was opened")

    monkeypatch.setattr(_encryption, "_decrypt_stream", must_not_run)
    with pytest.raises(TamperedContent):
        _decrypt(attack.make(), attack.path, attack.key, plain_size=attack.size)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_refused_by_the_chunks_alone(attack: Attack) -> None:
    """With the size pre-check skipped, the tags and the end-of-stream check still hold."""
    with pytest.raises(TamperedContent):
        _open_stream(attack.make(), attack.size, path=attack.path, key=attack.key)


def test_truncation_at_a_boundary_fails_on_the_last_chunk_flag_alone() -> None:
    """Even under the untruncated file's key, the cut stream ends on a non-final chunk."""
    cut = b"".join(_chunks(_ct(FULL_TAIL))[:3])
    with pytest.raises(TamperedContent):
        _open_stream(cut, 3 * CHUNK, key_size=FULL_TAIL)
    # While the same chunks, read as a prefix of the whole stream, authenticate.
    assert _open_stream(_ct(FULL_TAIL), FULL_TAIL) == _plaintext(FULL_TAIL)


def test_appended_chunk_fails_the_end_of_stream_check_alone() -> None:
    with pytest.raises(TamperedContent):
        _open_stream(_ct(FULL_TAIL) + _chunks(_ct(FULL_TAIL))[0], FULL_TAIL)


def test_failed_decrypt_keeps_the_file_it_would_have_replaced(tmp_path: Path) -> None:
    src, dst = tmp_path / "cipher", tmp_path / "plain"
    src.write_bytes(_flip(_ct(), 10))
    dst.write_bytes(b"the fan's own file")
    with pytest.raises(TamperedContent):
        decrypt_file(KEY, PATH, src, dst, plain_size=SHORT_TAIL)
    assert _listing(tmp_path) == {"cipher": src.read_bytes(), "plain": b"the fan's own file"}


def test_interrupted_decrypt_leaves_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "cipher", tmp_path / "out" / "plain"
    src.write_bytes(_ct())

    def interrupt(done: int) -> None:
        if done > CHUNK:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        decrypt_file(KEY, PATH, src, dst, plain_size=SHORT_TAIL, progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cipher"]


# -- trees: all or nothing ----------------------------------------------------------------


@pytest.fixture
def album(tmp_path: Path) -> Iterator[tuple[Path, list[PlainFile], Path]]:
    """Three encrypted files of one work: (cipher root, file list, plain folder)."""
    plain = tmp_path / "plain" / "First Light"
    _write_tree(tmp_path / "plain", {
        ("First Light", "01 Dawn.flac"): _plaintext(CHUNK + 5),
        ("First Light", "cd2", "02 Noon.flac"): _plaintext(3 * CHUNK),
        ("First Light", "liner notes.txt"): b"notes",
    })
    (plain / ".DS_Store").write_bytes(b"finder")
    (plain / ".git").mkdir()
    (plain / ".git" / "HEAD").write_bytes(b"ref")
    cipher = tmp_path / "cipher"
    files = encrypt_tree(KEY, plain, cipher)
    yield cipher, files, plain


def test_encrypt_tree_lists_every_visible_file_sorted(
        album: tuple[Path, list[PlainFile], Path]) -> None:
    cipher, files, _ = album
    assert files == [
        PlainFile(("First Light", "01 Dawn.flac"), CHUNK + 5),
        PlainFile(("First Light", "cd2", "02 Noon.flac"), 3 * CHUNK),
        PlainFile(("First Light", "liner notes.txt"), 5),
    ]
    assert sorted(_listing(cipher)) == [
        "First Light", "First Light/01 Dawn.flac.p2pe", "First Light/cd2",
        "First Light/cd2/02 Noon.flac.p2pe", "First Light/liner notes.txt.p2pe"]


def test_encrypt_tree_of_one_file(tmp_path: Path) -> None:
    (tmp_path / "single.flac").write_bytes(b"x" * 10)
    files = encrypt_tree(KEY, tmp_path / "single.flac", tmp_path / "out")
    assert files == [PlainFile(("single.flac",), 10)]
    assert (tmp_path / "out" / "single.flac.p2pe").stat().st_size == encrypted_size(10)
    decrypt_tree(KEY, files, tmp_path / "out", tmp_path / "plain")
    assert (tmp_path / "plain" / "single.flac").read_bytes() == b"x" * 10


def test_decrypt_tree_restores_the_work(album: tuple[Path, list[PlainFile], Path],
                                        tmp_path: Path) -> None:
    cipher, files, plain = album
    seen: list[int] = []
    got = decrypt_tree(KEY, files, cipher, tmp_path / "out", progress=seen.append)
    assert got == [tmp_path / "out" / Path(*f.path) for f in files]
    assert seen[-1] == sum(f.size for f in files) and seen == sorted(seen)
    visible = {k: v for k, v in _listing(plain).items() if not k.startswith(".")}
    assert _listing(tmp_path / "out" / "First Light") == visible


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_one_bad_file_among_three_unlocks_nothing(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path, bad: int) -> None:
    cipher, files, _ = album
    victim = cipher.joinpath(*encrypted_path(files[bad].path))
    victim.write_bytes(_flip(victim.read_bytes(), len(victim.read_bytes()) - 1))
    with pytest.raises(TamperedContent):
        decrypt_tree(KEY, files, cipher, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "out2").mkdir()
    with pytest.raises(TamperedContent):
        decrypt_tree(KEY, files, cipher, tmp_path / "out2")
    assert _listing(tmp_path / "out2") == {}


def test_missing_ciphertext_unlocks_nothing(album: tuple[Path, list[PlainFile], Path],
                                            tmp_path: Path) -> None:
    cipher, files, _ = album
    cipher.joinpath(*encrypted_path(files[2].path)).unlink()
    with pytest.raises(StorageError):
        decrypt_tree(KEY, files, cipher, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_interrupted_unlock_leaves_nothing(album: tuple[Path, list[PlainFile], Path],
                                           tmp_path: Path) -> None:
    cipher, files, _ = album

    def interrupt(done: int) -> None:
        if done > 2 * CHUNK:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        decrypt_tree(KEY, files, cipher, tmp_path / "out", progress=interrupt)
    assert not (tmp_path / "out").exists()


def test_unlock_refuses_to_replace_a_file_unless_told(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path) -> None:
    cipher, files, _ = album
    out = tmp_path / "out"
    (out / "First Light").mkdir(parents=True)
    (out / "First Light" / "liner notes.txt").write_bytes(b"my notes")
    before = _listing(out)
    with pytest.raises(InputError, match="already exists"):
        decrypt_tree(KEY, files, cipher, out)
    assert _listing(out) == before
    decrypt_tree(KEY, files, cipher, out, overwrite=True)
    assert (out / "First Light" / "liner notes.txt").read_bytes() == b"notes"


def test_unlock_that_fails_while_moving_puts_everything_back(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cipher, files, _ = album
    out = tmp_path / "out"
    (out / "First Light").mkdir(parents=True)
    (out / "First Light" / "01 Dawn.flac").write_bytes(b"old dawn")
    before = _listing(out)
    real = os.replace

    def failing_replace(a: Any, b: Any, **dir_fds: Any) -> None:
        if Path(b).name == "liner notes.txt":
            raise OSError(28, "No space left on device")
        real(a, b, **dir_fds)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError):
        decrypt_tree(KEY, files, cipher, out, overwrite=True)
    assert _listing(out) == before


def test_unlock_into_a_folder_where_a_file_stands_is_refused(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path) -> None:
    cipher, files, _ = album
    out = tmp_path / "out"
    out.mkdir()
    (out / "First Light").write_bytes(b"a file, not a folder")
    with pytest.raises(InputError, match="not a folder"):
        decrypt_tree(KEY, files, cipher, out)
    (out / "First Light").unlink()
    (out / "First Light" / "liner notes.txt").mkdir(parents=True)
    with pytest.raises(InputError, match="is a folder"):
        decrypt_tree(KEY, files, cipher, out, overwrite=True)
    assert _listing(out) == {"First Light": None, "First Light/liner notes.txt": None}


# -- trees: hostile file lists ------------------------------------------------------------

HOSTILE_PATHS = [
    ("dot-dot", ("..", "escape.flac")),
    ("dot-dot-inside", ("First Light", "..", "..", "escape.flac")),
    ("dot", ("First Light", ".", "a.flac")),
    ("absolute", ("/etc", "passwd")),
    ("root", ("/",)),
    ("separator-inside", ("First Light", "a/../../b")),
    ("backslash", ("First Light", "..\\..\\b")),
    ("nul", ("First Light", "a\x00.flac")),
    ("newline", ("First Light", "a\n.flac")),
    ("escape-sequence", ("First Light", "\x1b[2Ja.flac")),
    ("bidi-override", ("First Light", "\u202ecalf.exe")),
    ("zero-width", ("First Light", "a\u200b.flac")),
    ("line-separator", ("First Light", "a\u2028.flac")),
    ("hidden-file", ("First Light", ".bashrc")),
    ("hidden-folder", (".ssh", "authorized_keys")),
    ("too-long", ("First Light", "a" * 251)),
    ("too-deep", tuple(["d"] * 65)),
]


@pytest.mark.parametrize(("name", "path"), HOSTILE_PATHS, ids=[n for n, _ in HOSTILE_PATHS])
def test_hostile_path_in_the_file_list_is_refused(tmp_path: Path, name: str,
                                                  path: tuple[str, ...]) -> None:
    (tmp_path / "cipher").mkdir()
    with pytest.raises(MalformedObject):
        decrypt_tree(KEY, [PlainFile(path, 0)], tmp_path / "cipher", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cipher"]


def test_one_hostile_path_among_good_ones_unlocks_nothing(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path) -> None:
    cipher, files, _ = album
    with pytest.raises(MalformedObject):
        decrypt_tree(KEY, [*files, PlainFile(("..", "x"), 0)], cipher, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("files", [
    [PlainFile(("w", "a"), 0), PlainFile(("w", "a"), 0)],
    [PlainFile(("w", "a"), 0), PlainFile(("w", "a", "b"), 0)],
    [PlainFile(("w",), 0), PlainFile(("w", "b"), 0)],
], ids=["listed-twice", "file-is-also-a-folder", "top-file-is-also-a-folder"])
def test_contradictory_file_list_is_refused(tmp_path: Path, files: list[PlainFile]) -> None:
    with pytest.raises(MalformedObject):
        decrypt_tree(KEY, files, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_symlink_in_dest_that_leads_outside_is_refused(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path) -> None:
    cipher, files, _ = album
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "First Light").symlink_to(elsewhere)
    with pytest.raises(MalformedObject, match="symbolic link"):
        decrypt_tree(KEY, files, cipher, out)
    assert _listing(elsewhere) == {}


def test_symlink_in_dest_is_never_written_through_even_inside_dest(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path) -> None:
    # A link that stays inside --dest still writes where the license does not say; a
    # link as the file itself is refused even with overwrite.
    cipher, files, _ = album
    out = tmp_path / "out"
    (out / "other").mkdir(parents=True)
    (out / "other" / "keep.txt").write_bytes(b"mine")
    (out / "First Light").symlink_to(out / "other")
    before = _listing(out)
    with pytest.raises(MalformedObject, match="symbolic link"):
        decrypt_tree(KEY, files, cipher, out, overwrite=True)
    assert _listing(out) == before
    (out / "First Light").unlink()
    (out / "First Light").mkdir()
    first = files[0].path
    (out.joinpath(*first)).symlink_to(out / "other" / "keep.txt")
    with pytest.raises(MalformedObject, match="symbolic link"):
        decrypt_tree(KEY, files, cipher, out, overwrite=True)
    assert (out / "other" / "keep.txt").read_bytes() == b"mine"


def test_a_link_swapped_into_dest_while_unlocking_is_not_written_through(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path) -> None:
    # Another local user who can write into --dest makes the work's folder a link to
    # their own while the files decrypt (after every check ran): nothing lands there.
    cipher, files, _ = album
    out, theirs = tmp_path / "out", tmp_path / "theirs"
    out.mkdir()
    theirs.mkdir()

    def swap(done: int) -> None:
        if not (out / "First Light").is_symlink():
            (out / "First Light").symlink_to(theirs)

    with pytest.raises(MalformedObject, match="became a symbolic link"):
        decrypt_tree(KEY, files, cipher, out, progress=swap)
    assert _listing(theirs) == {}
    assert [p.name for p in out.iterdir()] == ["First Light"]  # only the attacker's link


def test_a_user_given_dest_that_is_a_link_is_followed(
        album: tuple[Path, list[PlainFile], Path], tmp_path: Path) -> None:
    cipher, files, _ = album
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "out").symlink_to(real)
    decrypt_tree(KEY, files, cipher, tmp_path / "out")
    assert len([p for p in real.rglob("*") if p.is_file()]) == len(files)


def test_symlink_in_the_ciphertexts_that_leads_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cipher").mkdir()
    (tmp_path / "secret.p2pe").write_bytes(_ct(0))
    (tmp_path / "cipher" / "w").symlink_to(tmp_path)
    with pytest.raises(MalformedObject, match="escapes"):
        decrypt_tree(KEY, [PlainFile(("w", "secret"), 0)], tmp_path / "cipher",
                     tmp_path / "out")


def test_too_many_files_are_refused_before_any_is_read(tmp_path: Path) -> None:
    many = [PlainFile(("w", f"{i}"), 0) for i in range(_encryption.MAX_FILES + 1)]
    with pytest.raises(MalformedObject, match="more than"):
        decrypt_tree(KEY, many, tmp_path, tmp_path / "out")


# -- trees: what the artist may publish ---------------------------------------------------


def test_encrypt_tree_refuses_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "album" / ".hidden").mkdir(parents=True)
    (tmp_path / "album" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(InputError, match="empty"):
        encrypt_tree(KEY, tmp_path / "album", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_encrypt_tree_refuses_to_write_inside_the_work(tmp_path: Path) -> None:
    (tmp_path / "album").mkdir()
    (tmp_path / "album" / "a.flac").write_bytes(b"x")
    for dst in (tmp_path / "album" / "enc", tmp_path):
        with pytest.raises(InputError, match="inside"):
            encrypt_tree(KEY, tmp_path / "album", dst)
    assert _listing(tmp_path / "album") == {"a.flac": b"x"}


@pytest.mark.parametrize("bad_name", ["a\x1bb.flac", "a\u202eb.flac"])
def test_encrypt_tree_refuses_a_name_a_fan_could_not_unlock(tmp_path: Path,
                                                            bad_name: str) -> None:
    (tmp_path / "album").mkdir()
    (tmp_path / "album" / "good.flac").write_bytes(b"x")
    (tmp_path / "album" / bad_name).write_bytes(b"x")
    with pytest.raises(InputError, match="holds a control") as e:
        encrypt_tree(KEY, tmp_path / "album", tmp_path / "out")
    assert e.value.remedy == "rename it"
    assert bad_name not in e.value.message  # shown escaped, never raw on a terminal
    assert not (tmp_path / "out").exists()


def test_encrypt_tree_refuses_a_folder_named_like_a_ciphertext(tmp_path: Path) -> None:
    (tmp_path / "album" / "a.p2pe").mkdir(parents=True)
    (tmp_path / "album" / "a.p2pe" / "b").write_bytes(b"x")
    (tmp_path / "album" / "a").write_bytes(b"y")
    with pytest.raises(InputError, match="same stem"):
        encrypt_tree(KEY, tmp_path / "album", tmp_path / "out")


def test_encrypt_tree_refuses_a_linked_folder(tmp_path: Path) -> None:
    (tmp_path / "album").mkdir()
    (tmp_path / "album" / "a.flac").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "album" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="link"):
        encrypt_tree(KEY, tmp_path / "album", tmp_path / "out")


def test_encrypt_tree_that_fails_removes_what_it_wrote(tmp_path: Path) -> None:
    _write_tree(tmp_path / "plain", {("w", "a"): b"1", ("w", "b", "c"): b"2", ("w", "d"): b"3"})

    def interrupt(done: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encrypt_tree(KEY, tmp_path / "plain" / "w", tmp_path / "out", progress=interrupt)
    assert not (tmp_path / "out").exists()


def test_encrypt_file_of_a_missing_source_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        encrypt_file(KEY, PATH, tmp_path / "nope", tmp_path / "c")
    with pytest.raises(InputError, match="no such"):
        encrypt_tree(KEY, tmp_path / "nope", tmp_path / "out")
    assert sorted(tmp_path.iterdir()) == []
