"""Raw HTTP over a socket, for tests that send what no well-behaved client would."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any

HANG = 10.0  # the promise: no answer takes longer


@dataclass(frozen=True)
class Answer:
    status: int  # 0: the connection closed without an answer
    headers: dict[str, str]
    doc: Any  # the JSON body, or None
    raw: bytes
    seconds: float


def parse(raw: bytes, seconds: float) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = 0
    if raw:
        version, code, _reason = [*lines[0].split(" ", 2), "", ""][:3]
        assert version.startswith("HTTP/1.") and code.isdigit(), raw[:200]
        status = int(code)
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    return Answer(status, headers, doc, raw, seconds)


def exchange(port: int, data: bytes, *, source: str = "127.0.0.1",
             half_close: bool = True) -> Answer:
    """Send *data*, say we are done (unless not *half_close*), read to the end.

    AssertionError if the answer has not ended within HANG seconds.
    """
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=HANG,
                                  source_address=(source, 0)) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # refused before it read everything: its answer may still be there
        raw = b""
        while True:
            left = started + HANG - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no end of answer within {HANG} s: {data[:120]!r}")
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"no end of answer within {HANG} s: {data[:120]!r}") \
                    from None
            if not chunk:
                break
            raw += chunk
    return parse(raw, time.monotonic() - started)


def assert_clean_refusal(a: Answer, *, request: bytes = b"") -> None:
    """A 4xx with a JSON body that says why: ``{"ok": false, "reason", "error"}``."""
    what = f"{a.raw[:300]!r} for {request[:160]!r}"
    assert 400 <= a.status < 500, what
    assert a.headers.get("content-type") == "application/json", what
    assert isinstance(a.doc, dict) and a.doc.get("ok") is False, what
    assert isinstance(a.doc.get("reason"), str) and a.doc["reason"], what
    assert isinstance(a.doc.get("error"), str) and a.doc["error"], what
    assert a.seconds < HANG, what


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB and the thread count, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out



def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so it measures from now on."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
