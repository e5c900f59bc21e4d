"""Another account on the same machine: it can read nothing in any node home.

A whole story runs through the real CLI under the laxest umask (0): init, publish (free,
paid and a draft), seed, fetch, reseed, vouchers, buy, unlock. While the nodes still run
(so the ledgers' -wal and -shm files exist) and after they stopped, every folder in every
home is 0700 and every file 0600. Plaintext a user unlocks is theirs: it takes their
umask, nothing forced.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from p2pdist.identity import load_public_identity
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._story import Seeder, digests, make_album


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)  # the CLI processes started meanwhile inherit it
    try:
        yield
    finally:
        os.umask(old)


def _walk(home: Path) -> dict[str, int]:
    """Every entry below *home* (and *home* itself): its relative path -> its mode."""
    modes = {".": stat.S_IMODE(home.lstat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(home):
        for name in (*dirnames, *filenames):
            p = Path(dirpath) / name
            modes[str(p.relative_to(home))] = stat.S_IMODE(p.lstat().st_mode)
    return modes


def _assert_private(home: Path) -> dict[str, int]:
    modes = _walk(home)
    wrong = {}
    for rel, mode in modes.items():
        is_dir = (home / rel).is_dir() and not (home / rel).is_symlink()
        if mode != (0o700 if is_dir else 0o600):
            wrong[rel] = oct(mode)
    assert not wrong, f"{home.name}: not private: {wrong}"
    return modes


def test_another_local_user_can_read_nothing_in_any_home(tmp_path: Path) -> None:
    artist, fan1, fan2 = tmp_path / "ada", tmp_path / "fan1", tmp_path / "fan2"
    studio = make_album(tmp_path / "studio" / "First Light", [300_000, 70_000])
    with _umask(0):
        for home, name in ((artist, "Ada"), (fan1, "Fan One"), (fan2, "Fan Two")):
            run_cli(home, "init", "--name", name)
        paid = json.loads(run_cli(artist, "publish", str(studio), "--title", "Paid",
                                  "--price", "5.00", "--currency", "EUR", "--out",
                                  str(tmp_path / "paid.torrent"), "--json").stdout)
        run_cli(artist, "publish", str(studio), "--title", "Free", "--license", "CC0-1.0",
                "--out", str(tmp_path / "free.torrent"))
        fan_key = load_public_identity(fan1).key_text
        me = load_public_identity(artist).key_text
        draft = tmp_path / "duet.p2pm"
        run_cli(artist, "publish", str(studio), "--title", "Duet", "--license", "CC0-1.0",
                "--split", f"{me}=5000", "--split", f"{fan_key}=5000", "--draft", str(draft))
        codes_csv = tmp_path / "codes.csv"
        run_cli(artist, "vouchers", "issue", paid["work"], "--count", "3", "--out",
                str(codes_csv))
        code = codes_csv.read_text().splitlines()[1].split(",")[0]
        port, api = free_port(), free_port()
        with Seeder(artist, port, "--api-listen", f"127.0.0.1:{api}"):
            run_cli(fan1, "fetch", paid["torrent"], "--dest", str(tmp_path / "fan1-music"),
                    "--local", "--peer", f"127.0.0.1:{port}", "--stall-timeout", "60")
            fan_port = free_port()
            with Seeder(fan1, fan_port):
                run_cli(fan2, "fetch", paid["torrent"], "--dest", str(tmp_path / "fan2-music"),
                        "--local", "--peer", f"127.0.0.1:{fan_port}", "--stall-timeout", "60")
                run_cli(fan2, "buy", paid["work"], "--voucher", code, "--seller",
                        f"127.0.0.1:{api}")
                # While the nodes run: their ledgers are open, -wal and -shm exist.
                running = {h.name: _assert_private(h) for h in (artist, fan1, fan2)}
        run_cli(fan2, "unlock", paid["work"], "--dest", str(tmp_path / "plain-0"))
    assert any(rel.endswith("ledger.sqlite-wal") for rel in running["ada"])
    assert any(rel.endswith("ledger.sqlite-shm") for rel in running["fan1"])
    assert "vouchers.sqlite" in running["ada"]
    assert "control.json" in running["ada"] and "control.json" in running["fan1"]
    for home in (artist, fan1, fan2):
        modes = _assert_private(home)
        assert {"identity.key", "ledger.sqlite", "library"} <= set(modes), home
    assert any(rel.startswith("paid/") for rel in _walk(artist))  # the ciphertexts
    assert any(rel.endswith(".resume") for rel in _walk(fan1))
    assert any(rel.endswith(".grant") for rel in _walk(fan2))
    # Secrets written outside the home are private too: voucher codes, a draft.
    assert stat.S_IMODE(codes_csv.stat().st_mode) == 0o600
    assert stat.S_IMODE(draft.stat().st_mode) == 0o600
    # A .torrent is made to be shared: like the plaintext a user unlocks, it is theirs,
    # and the umask decides; nothing is forced.
    assert stat.S_IMODE((tmp_path / "paid.torrent").stat().st_mode) == 0o666
    with _umask(0o027):
        run_cli(fan2, "unlock", paid["work"], "--dest", str(tmp_path / "plain-27"))
    for mask in (0, 0o027):
        plain = tmp_path / f"plain-{mask:o}" / "First Light"
        assert digests(plain) == digests(studio)
        assert {stat.S_IMODE(p.stat().st_mode) for p in plain.iterdir()} == {0o666 & ~mask}


def test_a_home_an_older_version_left_open_is_closed(tmp_path: Path) -> None:
    """A home and a ledger made 0755/0644 (as before) are closed at the next use."""
    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    run_cli(home, "ledger", "verify")
    home.chmod(0o755)
    (home / "ledger.sqlite").chmod(0o644)
    run_cli(home, "ledger", "verify")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "ledger.sqlite").stat().st_mode) == 0o600


def test_sqlite_gives_wal_and_shm_the_database_file_mode(tmp_path: Path) -> None:
    """What the fix relies on: SQLite creates -wal and -shm with the database's mode."""
    code = ("import sqlite3, sys, os, stat\n"
            "os.umask(0)\n"
            "p = sys.argv[1]\n"
            "os.close(os.open(p, os.O_CREAT | os.O_RDWR, 0o600))\n"
            "db = sqlite3.connect(p, isolation_level=None)\n"
            "db.execute('PRAGMA journal_mode=WAL')\n"
            "db.execute('CREATE TABLE t (x)')\n"
            "db.execute('INSERT INTO t VALUES (1)')\n"
            "print(' '.join(oct(stat.S_IMODE(os.stat(p + s).st_mode)) "
            "for s in ('', '-wal', '-shm')))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.sqlite")],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "P2PDIST_PASSPHRASE": PASSPHRASE}).stdout
    assert out.split() == ["0o600", "0o600", "0o600"]
