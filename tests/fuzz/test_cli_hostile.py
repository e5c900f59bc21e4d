"""Hostile files through the real CLI: the exit code of the contract, a one-line error
with a remedy, no traceback, no hang, and a file over its cap never read into memory
(the peak RSS of each run is measured with wait4)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2pdist.payouts.ledger import MAX_BUNDLE_SIZE
from p2pdist.payouts.statement import MAX_STATEMENT_SIZE
from tests.conftest import PASSPHRASE
from tests.fuzz._seeds import seeds

DEEP = 100_000
CLI_LIMIT = 30.0  # seconds per run: the 10 s promise, plus starting Python and libtorrent


@dataclass(frozen=True)
class Run:
    rc: int
    stdout: str
    stderr: str
    rss_mb: float
    seconds: float


def _run(home: Path, *args: str) -> Run:
    env = {**os.environ, "P2PDIST_PASSPHRASE": PASSPHRASE, "P2PDIST_NETWORK": "local",
           "COLUMNS": "200"}
    out, err = home.parent / "stdout", home.parent / "stderr"
    start = time.monotonic()
    with out.open("wb") as fo, err.open("wb") as fe:
        p = subprocess.Popen([sys.executable, "-m", "p2pdist", "--home", str(home), *args],
                             stdout=fo, stderr=fe, env=env)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            p.returncode = 0  # reaped by wait4 above: Popen must not wait again
    return Run(os.waitstatus_to_exitcode(status), out.read_text(), err.read_text(),
               usage.ru_maxrss / 1024, time.monotonic() - start)


def _sparse(path: Path, size: int) -> str:
    with path.open("wb") as f:
        f.truncate(size)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("hostile")
    made = {
        "garbage": os.urandom(300),
        "deep": b"l" * DEEP + b"e" * DEEP,
        "tokens": b"d4:infol" + b"i0e" * 10_000_000 + b"ee",
        "good.torrent": seeds().torrents[0],
    }
    out = {}
    for name, data in made.items():
        (d / name).write_bytes(data)
        out[name] = str(d / name)
    out["big.torrent"] = _sparse(d / "big.torrent", 100 * 1024 * 1024)
    out["big.bundle"] = _sparse(d / "big.bundle", MAX_BUNDLE_SIZE + 1)
    out["big.p2ps"] = _sparse(d / "big.p2ps", MAX_STATEMENT_SIZE + 1)
    out["dest"] = str(d / "dest")
    return out


# (command line with {file} names, exit code, the file is over its cap: never read)
CASES = {
    "fetch-garbage": ("fetch {garbage} --dest {dest}", 1, False),
    "fetch-deep": ("fetch {deep} --dest {dest}", 1, False),
    "fetch-10M-items": ("fetch {tokens} --dest {dest}", 1, False),
    "fetch-100MB": ("fetch {big.torrent} --dest {dest}", 1, True),
    "license-verify-deep": ("license verify {deep}", 1, False),
    "license-verify-magnet-not-utf8": (
        "license verify magnet:?xt=urn:btih:" + "a" * 40 + "&dn=%ff --peer 127.0.0.1:9", 1,
        False),
    "receipts-import-garbage": ("receipts import {garbage}", 3, False),
    "receipts-import-deep": ("receipts import {deep}", 3, False),
    "receipts-import-over-cap": ("receipts import {big.bundle}", 1, True),
    "audit-strict-garbage": ("audit --strict {garbage} --works {good.torrent}", 3, False),
    # (a bundle over its cap is one bad bundle, never read, and the audit goes on)
    "audit-over-cap": ("audit --strict {big.bundle} --works {good.torrent}", 3, False),
    "statement-verify-deep": ("statement verify {deep}", 3, False),
    "statement-verify-over-cap": ("statement verify {big.p2ps}", 1, True),
    # a device that never ends: refused after the cap + 1 bytes, never read on
    "license-cosign-dev-zero": ("license cosign /dev/zero", 1, True),
    "publish-certificate-dev-zero": (
        "publish {good.torrent} --title T --license CC0-1.0 --certificate /dev/zero", 1, True),
    "audit-works-dev-zero": ("audit {garbage} --works /dev/zero", 1, True),
}


@pytest.fixture(scope="module")
def baseline(files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> float:
    """Peak RSS of a CLI run that reads 300 bytes and refuses them."""
    run = _run(tmp_path_factory.mktemp("base") / "home", "license", "verify",
               files["garbage"])
    assert run.rc == 1, run.stderr
    return run.rss_mb


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_through_the_cli_is_a_clean_error(case: str, files: dict[str, str],
                                                       baseline: float,
                                                       tmp_path: Path) -> None:
    line, code, over_cap = CASES[case]
    args = [a.format(**{k.replace(".", "_"): v for k, v in files.items()})
            for a in line.replace("{big.", "{big_").replace("{good.", "{good_").split()]
    run = _run(tmp_path / "home", *args)
    assert "Traceback" not in run.stderr + run.stdout
    assert run.rc == code, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: "), run.stderr
    assert len(lines) == 2 and lines[1].lstrip().startswith("→ "), run.stderr  # the remedy
    assert run.seconds < CLI_LIMIT
    if over_cap:  # 100 MB to 256 MiB on disk: read, it would show in the peak RSS
        assert "too large" in lines[0]
        assert run.rss_mb < baseline + 32, (run.rss_mb, baseline)
    else:
        assert run.rss_mb < baseline + 160, (run.rss_mb, baseline)
