"""Debian's aria2c fetches a `--format v1` p2pdist work from a p2pdist seeder.

aria2c has no "add peer" option, so it listens on a loopback port and the p2pdist seeder
connects to it (`seed --peer 127.0.0.1:ARIAPORT`). Loopback only: aria2c runs with DHT, LPD
and PeX off and no tracker; the seeder runs in the local profile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli, start_cli

pytestmark = pytest.mark.interop

DEADLINE = 60.0  # seconds for the whole exchange

ARIA2_LOCAL = (
    "--no-conf=true",
    "--interface=127.0.0.1",
    "--disable-ipv6=true",
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--bt-tracker=",
    "--bt-exclude-tracker=*",
    "--follow-torrent=false",
    "--seed-time=0",
    "--file-allocation=none",
    "--auto-file-renaming=false",
    "--allow-overwrite=true",
    "--summary-interval=0",
    "--console-log-level=warn",
    "--bt-stop-timeout=55",
)


def _make_work(root: Path) -> dict[str, bytes]:
    """A few MiB in three files, spanning many pieces, with odd sizes across piece edges."""
    rng = os.urandom
    files = {
        "album/01-intro.bin": rng(3 * 1024 * 1024 + 12_345),
        "album/notes/liner.txt": rng(777_777),
        "album/02-outro.bin": rng(1024 * 1024 + 1),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:*port* (read from /proc: no connection made)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: the seeder's reconnect loop covers a late listener
    return any(
        parts[1] == want and parts[3] == "0A" for parts in (ln.split() for ln in lines)
    )


def _json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object in *text* (the CLI pretty-prints each report over several lines)."""
    dec, out, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        obj, i = dec.raw_decode(text, i)
        out.append(obj)
    return out


def _stop(proc: subprocess.Popen[str], timeout: float = 15) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def test_aria2c_fetches_v1_work_from_p2pdist_seeder(tmp_path: Path) -> None:
    aria2c = shutil.which("aria2c")
    if aria2c is None:
        pytest.skip("aria2c is not installed")

    seeder_home = tmp_path / "seeder"
    run_cli(seeder_home, "init", "--name", "Seeder")
    files = _make_work(tmp_path / "src")
    torrent = tmp_path / "album.torrent"
    pub = json.loads(run_cli(
        seeder_home, "publish", str(tmp_path / "src" / "album"), "--title", "Album",
        "--license", "CC-BY-4.0", "--format", "v1", "--out", str(torrent), "--json",
    ).stdout)
    assert len(pub["infohash"]) == 40
    assert pub["size"] == sum(len(d) for d in files.values())

    dl = tmp_path / "aria-dl"
    dl.mkdir()
    aria_port = free_port()
    started = time.monotonic()
    aria = subprocess.Popen(
        [aria2c, *ARIA2_LOCAL, f"--listen-port={aria_port}", f"--dir={dl}", str(torrent)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seeder: subprocess.Popen[str] | None = None
    try:
        while not _listening(aria_port) and aria.poll() is None:
            assert time.monotonic() - started < 10, "aria2c did not start listening"
            time.sleep(0.05)
        seeder = start_cli(
            seeder_home, "seed", "--local", "--listen", f"127.0.0.1:{free_port()}",
            "--peer", f"127.0.0.1:{aria_port}", "--json",
        )
        try:
            rc = aria.wait(timeout=max(1.0, DEADLINE - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            aria.kill()
            raise
        aria_out = aria.communicate(timeout=10)[0]
        assert rc == 0, f"aria2c exited {rc}:\n{aria_out}"
    finally:
        if aria.poll() is None:
            aria.kill()
            aria.communicate()
        seed_out, seed_err = _stop(seeder) if seeder is not None else ("", "")

    for rel, data in files.items():
        got = dl / rel
        assert got.is_file(), f"aria2c did not write {rel}:\n{aria_out}"
        assert got.read_bytes() == data, f"{rel} differs from the published file"
    # The seeder's reports: ready (with our work), then stopped cleanly.
    reports = _json_objects(seed_out)
    assert reports, f"no JSON from the seeder:\n{seed_out}\n{seed_err}"
    assert pub["work"] in reports[0]["works"]
