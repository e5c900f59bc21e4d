"""Every test runs in the `local` network profile: 127.0.0.1, no DHT/LSD/UPnP/NAT-PMP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.opentracker import OpenTracker

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _local_network_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("P2PDIST_NETWORK", "local")
    monkeypatch.setenv("P2PDIST_PASSPHRASE", PASSPHRASE)
    # Test homes are sealed at argon2id's interactive cost: the suite unlocks keys a few
    # thousand times, 0.4 s each more at the moderate default. The default's own tests
    # (tests/unit/test_identity.py, test_kdf_choice) clear this.
    monkeypatch.setenv("P2PDIST_KDF", "interactive")
    from p2pdist.swarm import Profile, profile_from_env

    assert profile_from_env(False) is Profile.LOCAL
    yield
    assert os.environ["P2PDIST_NETWORK"] == "local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(home: Path, *args: str, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `p2pdist` CLI in a subprocess with this home."""
    e = {"P2PDIST_PASSPHRASE": PASSPHRASE, **os.environ, "P2PDIST_NETWORK": "local",
         "COLUMNS": "200", **(env or {})}
    cp = subprocess.run(
        [sys.executable, "-m", "p2pdist", "--home", str(home), *args],
        capture_output=True, text=True, timeout=timeout, env=e, check=False,
    )
    if check and cp.returncode != 0:
        raise AssertionError(
            f"p2pdist {' '.join(args)} exited {cp.returncode}\n"
            f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
        )
    return cp


def start_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a long-running `p2pdist` command (seed, fetch --seed) in the background."""
    e = {"P2PDIST_PASSPHRASE": PASSPHRASE, **os.environ, "P2PDIST_NETWORK": "local",
         "COLUMNS": "200", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "p2pdist", "--home", str(home), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[OpenTracker]:
    """Debian's opentracker on 127.0.0.1 (see tests/opentracker.py)."""
    from tests.opentracker import opentracker

    with opentracker(tmp_path / "opentracker") as t:
        yield t
