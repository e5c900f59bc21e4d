"""Key file abuse through the real CLI: each case is a clear error, quickly, with the exit
code of DESIGN.md, and the key file is left exactly as it was.

The one legitimate KDF run (a wrong passphrase) may take its time; every other refusal
comes before the KDF, in well under 2 s of the command's own time.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from p2pdist.identity import KEYFILE_NAME, MAX_MEMLIMIT, MAX_OPSLIMIT
from tests.conftest import run_cli

QUICK = 2.0  # seconds of a refusal, beyond the CLI's own start-up (measured per run)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    home = tmp_path_factory.mktemp("key") / "home"
    run_cli(home, "init", "--name", "Ada")
    return (home / KEYFILE_NAME).read_bytes()


def _home(tmp_path: Path, pristine: bytes) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    key = home / KEYFILE_NAME
    key.write_bytes(pristine)
    key.chmod(0o600)
    return home


def _edit_json(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    def apply(key: Path) -> None:
        doc = json.loads(key.read_bytes())
        change(doc)
        key.write_text(json.dumps(doc))
    return apply


def _set_kdf(**kw: object) -> Callable[[Path], None]:
    return _edit_json(lambda d: d["kdf"].update(kw))


def _replace(data: bytes) -> Callable[[Path], None]:
    def apply(key: Path) -> None:
        key.write_bytes(data)
    return apply


def _truncate(n: int) -> Callable[[Path], None]:
    return _replace_with(lambda b: b[:n])


def _replace_with(f: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(key: Path) -> None:
        key.write_bytes(f(key.read_bytes()))
    return apply


def _to_dir(key: Path) -> None:
    key.unlink()
    key.mkdir(mode=0o700)


def _to_fifo(key: Path) -> None:
    key.unlink()
    os.mkfifo(key, 0o600)


def _dangling_link(key: Path) -> None:
    key.unlink()
    key.symlink_to(key.parent / "gone.key")


def _link_to_unprotected(key: Path) -> None:
    target = key.parent.parent / "elsewhere.key"
    target.write_bytes(key.read_bytes())
    target.chmod(0o644)
    key.unlink()
    key.symlink_to(target)


def _truncate_sealed(key: Path) -> None:
    doc = json.loads(key.read_bytes())
    doc["sealed"] = doc["sealed"][:24]
    key.write_text(json.dumps(doc))


ABUSE: dict[str, Callable[[Path], None]] = {
    "opslimit-huge": _set_kdf(opslimit=2**40),
    "memlimit-1TiB": _set_kdf(memlimit=2**40),
    "opslimit-cap+1": _set_kdf(opslimit=MAX_OPSLIMIT + 1),
    "memlimit-cap+1": _set_kdf(memlimit=MAX_MEMLIMIT + 1),
    "opslimit-negative": _set_kdf(opslimit=-1),
    "memlimit-float": _set_kdf(memlimit=1e300),
    "opslimit-bool": _set_kdf(opslimit=True),
    "kdf-unknown": _set_kdf(alg="scrypt"),
    "empty": _replace(b""),
    "garbage": _replace(os.urandom(512)),
    "not-json-object": _replace(b"[1, 2, 3]"),
    "nested-json-16KiB": _replace(b"[" * 16_000),
    "too-large": _replace(b" " * 20_000 + b"{}"),
    "truncated-half": _truncate(200),
    "truncated-one-byte-short": _replace_with(lambda b: b.rstrip()[:-1]),
    "sealed-truncated": _truncate_sealed,
    "name-wrong-type": _edit_json(lambda d: d.update(name={"a": 1})),
    "name-with-bidi": _edit_json(lambda d: d.update(name="Ada\u202e")),
    "public-key-wrong-type": _edit_json(lambda d: d.update(public_key=123)),
    "kdf-wrong-type": _edit_json(lambda d: d.update(kdf=[1])),
    "version-true": _edit_json(lambda d: d.update(v=True)),
    "version-2": _edit_json(lambda d: d.update(v=2)),
    "a-directory": _to_dir,
    "a-fifo": _to_fifo,
    "dangling-symlink": _dangling_link,
    "symlink-to-unprotected-file": _link_to_unprotected,
    "group-readable": lambda key: key.chmod(0o640),
    "world-readable": lambda key: key.chmod(0o604),
    "group-writable-only": lambda key: key.chmod(0o620),
}


def _fingerprint(key: Path) -> object:
    st = key.lstat()
    if stat.S_ISLNK(st.st_mode):
        return ("link", str(key.readlink()))
    if stat.S_ISREG(st.st_mode):
        return ("file", stat.S_IMODE(st.st_mode), key.read_bytes())
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))


@pytest.fixture(scope="module")
def startup(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The CLI's own start-up and clean exit on this (possibly loaded) machine."""
    home = tmp_path_factory.mktemp("startup")
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        run_cli(home, "--help")
        times.append(time.monotonic() - t0)
    return max(times)


def _listing(*roots: Path) -> list[tuple[str, object]]:
    return sorted((str(p), _fingerprint(p)) for r in roots for p in r.rglob("*"))


# whoami reads only the public part: these damage the sealed part, which it never opens.
_PUBLIC_PART_INTACT = {"opslimit-huge", "memlimit-1TiB", "opslimit-cap+1", "memlimit-cap+1",
                       "opslimit-negative", "memlimit-float", "opslimit-bool", "kdf-unknown",
                       "sealed-truncated", "kdf-wrong-type"}
CASES = [(a, ("seed", "--local", "--listen", "127.0.0.1:0")) for a in ABUSE] + [
    (a, ("whoami",)) for a in ("truncated-half", "a-directory", "a-fifo", "group-readable",
                               "name-wrong-type", "nested-json-16KiB")]


@pytest.mark.parametrize(("abuse", "command"), CASES,
                         ids=[f"{c[0]}-{a}" for a, c in CASES])
def test_abused_key_file_is_a_clear_error_quickly_and_left_unchanged(
        tmp_path: Path, pristine: bytes, startup: float, abuse: str,
        command: tuple[str, ...]) -> None:
    home = _home(tmp_path, pristine)
    key = home / KEYFILE_NAME
    ABUSE[abuse](key)
    before = _listing(tmp_path)
    t0 = time.monotonic()
    cp = run_cli(home, *command, "--json", check=False, timeout=60)
    took = time.monotonic() - t0
    assert "Traceback" not in cp.stderr, cp.stderr
    doc = json.loads(cp.stdout.splitlines()[-1])
    assert (cp.returncode, doc["ok"], doc["exit_code"]) == (1, False, 1), doc
    assert doc["kind"] == "KeyFileError", doc
    assert doc["remedy"], doc
    assert took - startup < QUICK, f"{took:.2f} s, against {startup:.2f} s for --help"
    assert _listing(tmp_path) == before  # the key file and everything beside it


def test_permission_remedy_is_the_chmod_that_fixes_it(tmp_path: Path, pristine: bytes) -> None:
    home = _home(tmp_path, pristine)
    (home / KEYFILE_NAME).chmod(0o644)
    cp = run_cli(home, "whoami", "--json", check=False)
    doc = json.loads(cp.stdout)
    assert doc["remedy"] == f"chmod 600 {home / KEYFILE_NAME}"
    assert "read by others" in doc["error"]


def test_wrong_passphrase_is_one_kdf_run_and_a_clear_error(tmp_path: Path, pristine: bytes
                                                           ) -> None:
    home = _home(tmp_path, pristine)
    t0 = time.monotonic()
    cp = run_cli(home, "seed", "--local", "--listen", "127.0.0.1:0", "--json", check=False,
                 env={"P2PDIST_PASSPHRASE": "wrong horse"})
    took = time.monotonic() - t0
    doc = json.loads(cp.stdout.splitlines()[-1])
    assert (cp.returncode, doc["kind"]) == (1, "PassphraseError"), doc
    assert "wrong passphrase" in doc["error"] and doc["remedy"]
    assert "Traceback" not in cp.stderr
    assert took < 10
    assert (home / KEYFILE_NAME).read_bytes() == pristine


def test_a_symlink_to_a_private_key_file_is_followed_like_ssh(tmp_path: Path,
                                                              pristine: bytes) -> None:
    home = _home(tmp_path, pristine)
    target = tmp_path / "vault" / "ada.key"
    target.parent.mkdir()
    (home / KEYFILE_NAME).rename(target)
    (home / KEYFILE_NAME).symlink_to(target)
    run_cli(home, "receipts", "export", "--out", str(tmp_path / "x.p2pb"))
    assert target.read_bytes() == pristine
