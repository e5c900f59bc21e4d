"""The control API of a running node, and the `status` client that asks it.

A running `seed` serves GET /status on 127.0.0.1 (never another address, whatever the
network profile) at a random port. It writes HOME/control.json, mode 0600:
``{"pid", "port", "token", "started", "version"}``; a request without
``Authorization: Bearer TOKEN`` gets 401, so only someone who can read the node home
can ask; a Host other than 127.0.0.1:PORT, localhost:PORT or [::1]:PORT, or any Origin
header, gets 403 (a web page, DNS-rebound or not, cannot drive it). The file is
removed when the node stops; one left by a crash is stale and is recognised as such
(its port no longer answers with that token).

One `seed` per home: a second one is refused (HomeInUse) while the first holds the
home's lock, because two sessions would write the same resume data and ledger chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from p2pdist import __version__, _json
from p2pdist._api import NodeApi, _request
from p2pdist._home import ensure_home
from p2pdist.errors import (
    HomeInUse,
    NetworkError,
    NodeNotRunning,
    P2PDistError,
    StorageError,
)
from p2pdist.identity import atomic_write

__all__ = ["CONTROL_FILE", "ControlServer", "ask_status"]

CONTROL_FILE = "control.json"
LOCK_FILE = "node.lock"
MAX_CONTROL_FILE = 4096
MAX_STATUS = 16 * 1024 * 1024  # a node seeding thousands of works answers in megabytes


@dataclass(frozen=True, slots=True)
class _Handle:
    pid: int
    port: int
    token: str
    started: str


def _read_handle(home: Path) -> _Handle | None:
    """The control file's contents, or None when there is none (or it is unreadable)."""
    path = home / CONTROL_FILE
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONTROL_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise NodeNotRunning(f"cannot read {path}: {e.strerror}",
                             remedy="check the permissions of the node home") from None
    try:
        doc = _json.loads(raw) if len(raw) <= MAX_CONTROL_FILE else None
        if not isinstance(doc, dict):
            return None
        pid, port, token = doc["pid"], doc["port"], doc["token"]
        if not (isinstance(pid, int) and isinstance(port, int) and 0 < port <= 65535
                and isinstance(token, str) and token.isascii() and token.isprintable()):
            return None
        return _Handle(pid, port, token, str(doc.get("started", "")))
    except (ValueError, KeyError):
        return None


def _ask(handle: _Handle, path: str, timeout: float) -> dict[str, Any]:
    status, data = _request("127.0.0.1", handle.port, "GET", path, timeout=timeout,
                            token=handle.token, limit=MAX_STATUS)
    if status == 401:
        raise NodeNotRunning(
            f"the node on 127.0.0.1:{handle.port} refused this home's control token",
            remedy="another program holds that port; restart the node with p2pdist seed")
    try:
        doc = _json.loads(data) if status == 200 and len(data) <= MAX_STATUS else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise NodeNotRunning(f"the node on 127.0.0.1:{handle.port} gave no status "
                             f"(HTTP {status})", remedy="restart it with p2pdist seed")
    return doc


def ask_status(home: Path, *, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the node running in *home* for its status; NodeNotRunning if none answers."""
    handle = _read_handle(home)
    if handle is None:
        raise NodeNotRunning(f"no p2pdist node is running in {home}")
    try:
        return _ask(handle, "/status", timeout)
    except NetworkError:
        raise NodeNotRunning(
            f"no p2pdist node is running in {home} (the one started {handle.started} as "
            f"pid {handle.pid} stopped without cleaning up)") from None


class ControlServer:
    """Serves GET /status for a running node, on 127.0.0.1 with a token; see the module.

    Constructing it takes the home's lock (HOME/node.lock, an flock the kernel drops if
    the process dies), so a second node in the same home fails at once with HomeInUse;
    `start()` then serves the status once the node is ready to answer.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / CONTROL_FILE
        self._api: NodeApi | None = None
        self.token = secrets.token_urlsafe(32)
        lock = home / LOCK_FILE
        try:
            ensure_home(home)
            self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StorageError(f"cannot create {lock}: {e.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            try:
                old = _read_handle(home)
            except P2PDistError:  # the home is in use all the same
                old = None
            who = f" (pid {old.pid}, started {old.started})" if old else ""
            raise HomeInUse(f"a p2pdist node is already running in {home}{who}") from None

    def start(self, status: Callable[[], dict[str, Any]]) -> ControlServer:
        self.started = datetime.now(UTC).replace(microsecond=0).isoformat()
        # Only `p2pdist status` calls it, one request at a time: a few connections suffice.
        self._api = NodeApi(None, "127.0.0.1", 0, token=self.token, max_connections=16,
                            max_per_network=16)
        self._api.route("GET", "/status", lambda q, body: (200, status()))
        self._api.start()
        atomic_write(self.path, json.dumps({
            "pid": os.getpid(), "port": self._api.port, "token": self.token,
            "started": self.started, "version": __version__,
        }).encode(), mode=0o600)
        return self

    @property
    def port(self) -> int:
        return self._api.port if self._api else 0

    def close(self) -> None:
        """Stop serving, remove the control file if it is still ours, drop the lock."""
        if self._api is not None:
            self._api.close()
            self._api = None
            with contextlib.suppress(OSError, P2PDistError):
                mine = _read_handle(self.path.parent)
                if mine is not None and mine.token == self.token:
                    self.path.unlink()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
