"""Shared helpers for the integration tier: albums, digests and seeder processes."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import run_cli, start_cli


def make_album(folder: Path, sizes: list[int], seed: int = 7) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for i, n in enumerate(sizes):
        (folder / f"{i + 1:02d} track.flac").write_bytes(rng.randbytes(n))
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def publish(home: Path, album: Path, *args: str) -> dict[str, Any]:
    if not (home / "identity.key").exists():
        run_cli(home, "init", "--name", "Ada")
    out = home.parent / f"{album.parent.name}-{len(args)}.torrent"
    cp = run_cli(home, "publish", str(album), "--title", "First Light", "--license",
                 "CC-BY-SA-4.0", "--out", str(out), "--json", *args)
    result: dict[str, Any] = json.loads(cp.stdout)
    return result


class Seeder:
    """`p2pdist seed` in the background, ready once it printed its JSON line."""

    def __init__(self, home: Path, port: int, *args: str) -> None:
        self.home, self.port, self.args = home, port, args
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Seeder:
        self.proc = start_cli(self.home, "seed", "--local", "--listen", f"127.0.0.1:{self.port}",
                              "--json", *self.args)
        assert self.proc.stdout is not None
        buf = ""
        deadline = time.monotonic() + 30
        while "}" not in buf and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"seeder died: {err}")
            buf += line
        return self

    def stop(self) -> str:
        """SIGINT, as Ctrl-C would; return what it printed on stderr."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.communicate(timeout=30)

    def __enter__(self) -> Seeder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)
