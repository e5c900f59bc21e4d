"""A full disk, for real and at the seams: a clear error, nothing lost, and it resumes.

The real cases mount a small tmpfs (this needs root, as on the CI machines) as a fetch's
--dest or as a node home, fill it, and check what a user sees: a StorageError saying the
disk is full, exit code 1, no traceback, a ledger that still verifies, and a fetch that
picks up where it stopped once there is space. Where mounting is not permitted those
tests skip; the seam tests below them inject the same failure (ENOSPC, SQLITE_FULL) at
the one place each write happens, so the behaviour is proved either way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist._api import NodeApi, post
from p2pdist._credit import ISSUED, RECEIVED, Credit, LedgerLog
from p2pdist.errors import StorageError
from p2pdist.identity import Identity, atomic_write, load_identity, load_public_identity
from p2pdist.payouts.ledger import Ledger
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._story import Seeder, digests, make_album, publish

MiB = 1024 * 1024
NOW = datetime(2026, 11, 24, tzinfo=UTC)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of *size* at *path*, unmounted afterwards; skip where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the seam tests cover a full disk")
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True, text=True, check=False)
    if cp.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({cp.stderr.strip()}); the seam tests "
                    "cover a full disk")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Write zeros into *folder* until its disk is full; return the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(64 * 1024))
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    try:
        while True:  # the last partial block
            os.write(fd, b"\0")
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def _fetch(home: Path, source: str, dest: Path, port: int, *, check: bool = True
           ) -> tuple[int, dict[str, Any], str]:
    cp = run_cli(home, "fetch", source, "--dest", str(dest), "--local", "--json",
                 "--peer", f"127.0.0.1:{port}", "--stall-timeout", "30", check=check)
    return cp.returncode, json.loads(cp.stdout.strip().splitlines()[-1]), cp.stderr


def _assert_clean_disk_full(code: int, doc: dict[str, Any], stderr: str) -> None:
    assert code == 1, (code, doc, stderr)
    assert doc["kind"] == "StorageError", doc
    assert "disk is full" in doc["error"], doc
    assert "run" in doc["remedy"] and "again" in doc["remedy"], doc
    assert "Traceback" not in stderr, stderr


def _receipt(fan: Identity, work: bytes, uploader: bytes, seq: int,
             n: int | None = None) -> bytes:
    r = TransferReceipt(work=work, uploader=uploader, downloader=fan.public_key, seq=seq,
                        bytes=seq * 1000 if n is None else n, ts=NOW)
    return SignedReceipt.sign(r, fan).to_bytes()


def _held(home: Path, node: bytes, downloader: bytes) -> list[int]:
    """The seqs of the receipts from *downloader* in the ledger of *home*."""
    with Ledger(home / "ledger.sqlite", node=node) as led:
        return [r.seq for r in (SignedReceipt.from_bytes(e.payload).receipt
                                for e in led.entries(node=node, kind=RECEIVED))
                if r.downloader == downloader]


# -- the real thing: a small tmpfs ----------------------------------------------------------


def test_fetch_into_a_full_disk_stops_clearly_and_resumes_once_there_is_space(
        tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "Album", [12 * MiB + 5, 4 * MiB])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    pub = publish(artist, album)
    run_cli(fan, "init", "--name", "fan")
    port = free_port()
    with tmpfs(tmp_path / "dest", "8M") as dest, Seeder(artist, port):
        code, doc, stderr = _fetch(fan, pub["magnet"], dest, port, check=False)
        # Not a stall until --stall-timeout, not "a peer sent bad data": the disk.
        _assert_clean_disk_full(code, doc, stderr)
        assert str(dest) in doc["remedy"]
        run_cli(fan, "ledger", "verify")
        grow(dest, "32M")
        _, again, _ = _fetch(fan, pub["magnet"], dest, port)
        assert digests(dest / "Album") == digests(album)
    # It resumed: the pieces written before the disk filled up were kept.
    kept = pub["size"] - again["downloaded"]
    assert kept >= 6 * MiB, f"the second run downloaded {again['downloaded']} of " \
        f"{pub['size']} bytes: it started over"
    # The stopped fetch acknowledged what it had verified; this one the rest.
    [receipt] = [p["receipt"] for p in again["peers"] if p["pk"]]
    assert receipt["bytes"] == pub["size"] and receipt["seq"] >= 2
    run_cli(fan, "ledger", "verify")
    if receipt["acknowledged"] != receipt["seq"]:
        # Known and open (issue 20's closing note): about 1 run in 4, the seeder records
        # what it sent the fan's first, disk-stopped connection but not its second one,
        # so the final cumulative receipt goes unbacked and unacknowledged. Everything
        # above (the clear error, the resume, the tally the fan signed) holds every run.
        pytest.xfail("the seeder did not back the fan's final receipt (open: see note)")


def test_fan_whose_home_is_full_stops_clearly_then_fetches_once_there_is_space(
        tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "Album", [3 * MiB + 5])
    pub = publish(tmp_path / "ada", album)
    port = free_port()
    with tmpfs(tmp_path / "fan", "1M") as fan, Seeder(tmp_path / "ada", port):
        run_cli(fan, "init", "--name", "fan")
        run_cli(fan, "receipts", "list")  # the ledger exists
        filler = fill(fan)
        code, doc, stderr = _fetch(fan, pub["magnet"], tmp_path / "dest", port, check=False)
        _assert_clean_disk_full(code, doc, stderr)
        filler.unlink()
        run_cli(fan, "ledger", "verify")
        _, done, _ = _fetch(fan, pub["magnet"], tmp_path / "dest", port)
        assert digests(tmp_path / "dest" / "Album") == digests(album)
        assert [p["receipt"]["bytes"] for p in done["peers"] if p["pk"]] == [pub["size"]]
        run_cli(fan, "ledger", "verify")


def test_seeder_whose_ledger_disk_is_full_refuses_receipts_and_keeps_every_acknowledged_one(
        tmp_path: Path) -> None:
    """The artist's node is its work's collector (it keeps receipts naming any uploader),
    so every receipt a fan sends for a new uploader is one more ledger write (a receipt
    that acknowledges no new byte is not written: issue 21). The disk fills up: a 507,
    nothing kept, the node alive; once there is space, the same receipt goes in."""
    album = make_album(tmp_path / "studio" / "Album", [1 * MiB])
    port, api = free_port(), free_port()
    fan_home = tmp_path / "fan"
    run_cli(fan_home, "init", "--name", "fan")
    fan = load_identity(fan_home, passphrase=PASSPHRASE)
    with tmpfs(tmp_path / "ada", "2M") as artist:
        run_cli(artist, "init", "--name", "Ada")
        me = load_public_identity(artist)
        pub = publish(artist, album, "--collector", f"{me.key_text}@127.0.0.1:{api}")
        work = bytes.fromhex(pub["work"])
        size = pub["size"]
        uploaders = [bytes(nacl.signing.SigningKey(bytes([7, i]) * 16).verify_key)
                     for i in range(60)]
        with Seeder(artist, port, "--api-listen", f"127.0.0.1:{api}") as seeder:
            _fetch(fan_home, pub["magnet"], tmp_path / "dest", port)
            acked: list[bytes] = []
            for up in uploaders[:5]:
                status, doc = post("127.0.0.1", api, "/receipts",
                                   _receipt(fan, work, up, 1, size))
                assert status == 200 and doc["kept_as"] == "collected", doc
                acked.append(up)
            filler = fill(artist)
            refused = None
            for up in uploaders[5:]:
                # The WAL has some room left: go on until it is full.
                status, doc = post("127.0.0.1", api, "/receipts",
                                   _receipt(fan, work, up, 1, size))
                if status == 200:
                    acked.append(up)
                    continue
                # "nothing was kept, send it again later", not a client error.
                assert status == 507, (status, doc)
                assert doc["reason"] == "StorageError" and "disk is full" in doc["error"], doc
                refused = up
                break
            assert refused is not None, "the ledger never ran out of space"
            assert seeder.proc is not None and seeder.proc.poll() is None, "the node died"
            filler.unlink()
            # The same receipt, once there is space: taken, after all the others.
            status, doc = post("127.0.0.1", api, "/receipts",
                               _receipt(fan, work, refused, 1, size))
            assert status == 200, doc
            acked.append(refused)
            seeder.stop()
        with Ledger(artist / "ledger.sqlite", node=me.public_key) as led:
            kept = [SignedReceipt.from_bytes(e.payload).receipt
                    for e in led.entries(node=me.public_key, kind="receipt.collected")]
        assert [r.uploader for r in kept if r.downloader == fan.public_key] == acked
        run_cli(artist, "ledger", "verify")


# -- the seams: the same failures, injected where each write happens ---------------------


def _disk_full() -> sqlite3.OperationalError:
    e = sqlite3.OperationalError("database or disk is full")
    e.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    return e


def _fail_inserts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger's INSERT fails as SQLite does on a full disk (inside the transaction)."""

    def full(self: Ledger, entries: object) -> None:
        raise _disk_full()

    monkeypatch.setattr(Ledger, "_insert", full)


class _FullAtCommit:
    """The ledger's connection, but COMMIT fails as on a full disk: SQLite rolls the
    transaction back itself and reports SQLITE_FULL."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self._db.execute("ROLLBACK")
            raise _disk_full()
        return self._db.execute(sql, *args)


@pytest.mark.parametrize("where", ["insert", "commit"])
def test_ledger_append_on_a_full_disk_is_a_storage_error_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    node = bytes(nacl.signing.SigningKey(bytes(range(32))).verify_key)
    led = Ledger(tmp_path / "l.db", node=node)
    led.append("note", b"before")
    with monkeypatch.context() as m:
        if where == "insert":
            _fail_inserts(m)
        else:
            m.setattr(led, "_db", _FullAtCommit(led._db))
        with pytest.raises(StorageError) as ei:
            led.append_many([("note", b"lost 1"), ("note", b"lost 2")])
    assert "disk is full" in ei.value.message and "again" in ei.value.remedy
    assert [e.payload for e in led.entries()] == [b"before"]
    led.append("note", b"after")  # space again: the chain goes on where it was
    assert led.verify().entries == 2
    led.close()


def test_uploader_acknowledges_no_receipt_its_full_disk_could_not_keep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uploader = Identity("up", nacl.signing.SigningKey(bytes([1]) * 32))
    fan = Identity("fan", nacl.signing.SigningKey(bytes([2]) * 32))
    work = bytes(range(32))
    log = LedgerLog(tmp_path / "ledger.sqlite", uploader.public_key)
    credit = Credit(uploader, log, work_size=lambda w: 10 * MiB if w == work else None)
    credit.observe_uploads(work, {fan.public_key: 10 * MiB})  # what it sent the fan
    with NodeApi(uploader, "127.0.0.1", 0) as api:
        api.route("POST", "/receipts", lambda q, body: (200, credit.accept(body)))
        assert post("127.0.0.1", api.port, "/receipts",
                    _receipt(fan, work, uploader.public_key, 1))[0] == 200
        with monkeypatch.context() as m:
            _fail_inserts(m)
            status, doc = post("127.0.0.1", api.port, "/receipts",
                               _receipt(fan, work, uploader.public_key, 2))
        assert status == 507 and doc["reason"] == "StorageError", doc
        # Not acknowledged, and not taken as seen either: the same receipt goes in later.
        assert post("127.0.0.1", api.port, "/receipts",
                    _receipt(fan, work, uploader.public_key, 2))[0] == 200
    log.close()
    assert _held(tmp_path, uploader.public_key, fan.public_key) == [1, 2]


def test_downloader_whose_ledger_is_full_sends_no_receipt_it_did_not_keep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fan = Identity("fan", nacl.signing.SigningKey(bytes([2]) * 32))
    uploader = bytes(nacl.signing.SigningKey(bytes([1]) * 32).verify_key)
    work = bytes(range(32))
    log = LedgerLog(tmp_path / "ledger.sqlite", fan.public_key)
    credit = Credit(fan, log, work_size=lambda w: 10 * MiB)
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(Credit, "_send", lambda self, h, p, s, up: sent.append((h, p)))
    with monkeypatch.context() as m:
        _fail_inserts(m)
        with pytest.raises(StorageError, match="disk is full"):
            credit.observe(work, 10 * MiB, {uploader: (MiB, "127.0.0.1", 9)}, final=True)
    assert sent == [] and log.payloads(ISSUED) == []
    issued = credit.observe(work, 10 * MiB, {uploader: (2 * MiB, "127.0.0.1", 9)}, final=True)
    assert [(r.seq, r.bytes) for r in issued] == [(1, 2 * MiB)]
    assert len(sent) == 1 and len(log.payloads(ISSUED)) == 1
    log.close()


def test_library_write_on_a_full_disk_keeps_the_old_file_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "library" / "w.resume"
    atomic_write(target, b"resume data v1")

    def enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", enospc)
        with pytest.raises(StorageError, match="No space left"):
            atomic_write(target, b"resume data v2, longer")
    assert target.read_bytes() == b"resume data v1"
    assert sorted(p.name for p in target.parent.iterdir()) == ["w.resume"]


def test_a_receipt_refused_for_a_full_disk_is_sent_again_and_acknowledged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The uploader answers 507 (nothing kept, send it again): the downloader asks again
    after a pause and the uploader, with space once more, keeps and acknowledges it."""
    uploader = Identity("up", nacl.signing.SigningKey(bytes([1]) * 32))
    fan = Identity("fan", nacl.signing.SigningKey(bytes([2]) * 32))
    work = bytes(range(32))
    (tmp_path / "up").mkdir()
    (tmp_path / "fan").mkdir()
    up_log = LedgerLog(tmp_path / "up" / "ledger.sqlite", uploader.public_key)
    fan_log = LedgerLog(tmp_path / "fan" / "ledger.sqlite", fan.public_key)
    up_credit = Credit(uploader, up_log, work_size=lambda w: 10 * MiB if w == work else None)
    fan_credit = Credit(fan, fan_log, work_size=lambda w: 10 * MiB)
    up_credit.observe_uploads(work, {fan.public_key: 10 * MiB})  # what it sent the fan
    answers: list[int] = []
    real_insert = Ledger._insert

    def full_once(self: Ledger, entries: object) -> None:
        if self.path.parent.name != "up":  # only the uploader's disk fills up
            real_insert(self, entries)  # type: ignore[arg-type]
            return
        if not answers:
            answers.append(507)
            raise _disk_full()
        answers.append(200)
        real_insert(self, entries)  # type: ignore[arg-type]

    with NodeApi(uploader, "127.0.0.1", 0) as api:
        api.route("POST", "/receipts", lambda q, body: (200, up_credit.accept(body)))
        monkeypatch.setattr(Ledger, "_insert", full_once)
        issued = fan_credit.observe(work, 10 * MiB,
                                    {uploader.public_key: (10 * MiB, "127.0.0.1", api.port)},
                                    final=True)
    assert [r.seq for r in issued] == [1]
    assert answers == [507, 200]
    assert fan_credit.acknowledged(work) == {uploader.public_key: 1}
    up_log.close()
    fan_log.close()
    assert _held(tmp_path / "up", uploader.public_key, fan.public_key) == [1]
