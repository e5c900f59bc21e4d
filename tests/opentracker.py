"""Debian's `opentracker` on 127.0.0.1, for tests that find peers through a real tracker.

The Debian build answers only whitelisted infohashes, so a test publishes its work, then
calls `allow_torrent` (which adds the v1 hash and, for a hybrid or v2 torrent, the first 40
hex characters of the v2 hash, and reloads the list with SIGHUP) before any peer announces.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OpenTracker:
    """A running opentracker bound to 127.0.0.1 (TCP and UDP on the same port)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("opentracker")
        if binary is None:
            pytest.skip("opentracker is not installed (.ci/run installs it from Debian)")
        self.port = _free_port()
        # Started as root, opentracker runs as `nobody`, who cannot read the test's private
        # temp folder: it would then refuse every announce. Its whitelist lives in a folder
        # anyone may read.
        self._public = Path(tempfile.mkdtemp(prefix="p2pdist-opentracker-"))
        self._public.chmod(0o755)
        self.whitelist = self._public / "whitelist.txt"
        self.whitelist.write_text("")
        self.whitelist.chmod(0o644)
        self.log = workdir / "opentracker.log"
        self._allowed: list[str] = []
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.port),
                 "-A", "127.0.0.1", "-w", str(self.whitelist)],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            )
        try:
            self._wait_listening()
        except BaseException:
            self.close()
            raise

    @property
    def announce(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"opentracker exited {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("opentracker did not start listening within 10 s")

    def allow(self, *hex_hashes: str) -> None:
        """Whitelist these infohashes (40 hex characters each) and reload the list."""
        for raw in hex_hashes:
            h = raw.lower()[:40]
            if h not in self._allowed:
                self._allowed.append(h)
        self.whitelist.write_text("".join(f"{h}\n" for h in self._allowed))
        start = time.monotonic()
        signalled = 0.0
        while not all(self._authorized(h) for h in self._allowed):
            now = time.monotonic()
            if now - start > 10:
                raise RuntimeError(
                    f"opentracker did not reload its whitelist within 10 s (exit code "
                    f"{self.proc.poll()}): {self.log.read_text(errors='replace')}")
            if now - signalled > 1:
                # Again each second: under load, runs were seen where the first reload
                # never took effect.
                self.proc.send_signal(signal.SIGHUP)
                signalled = now
            time.sleep(0.05)

    def allow_torrent(self, torrent: Path) -> None:
        """Whitelist a .torrent's v1 hash and its truncated v2 hash, whichever it has."""
        import libtorrent as lt

        ti = lt.torrent_info(str(torrent))
        hashes = ti.info_hashes()
        found = [str(h) for h in (hashes.v1, hashes.v2) if not h.is_all_zeros()]
        self.allow(*found)

    def _authorized(self, hex_hash: str) -> bool:
        """Announce the way a client would; opentracker refuses a hash it does not list.
        (It does not check a "stopped" announce, so the probe starts, then leaves at once.)"""
        for event in ("started", "stopped"):
            q = urllib.parse.urlencode({
                "info_hash": bytes.fromhex(hex_hash), "peer_id": b"-PROBE-0000000000000",
                "port": 1, "uploaded": 0, "downloaded": 0, "left": 0, "event": event,
                "numwant": 0, "compact": 1,
            }, quote_via=urllib.parse.quote)  # a 0x20 byte is %20: opentracker reads + as +
            with urllib.request.urlopen(f"{self.announce}?{q}", timeout=5) as r:  # noqa: S310
                if b"failure reason" in r.read():
                    return False
        return True

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self._public, ignore_errors=True)


@contextmanager
def opentracker(workdir: Path) -> Iterator[OpenTracker]:
    workdir.mkdir(parents=True, exist_ok=True)
    t = OpenTracker(workdir)
    try:
        yield t
    finally:
        t.close()
