"""Receipts in a running node: issue them as a downloader, accept them as an uploader.

Downloader: the swarm reports verified bytes per peer endpoint; once a peer proved its
key, those bytes count for that key. Every RECEIPT_EVERY_BYTES or RECEIPT_EVERY_SECONDS
(whichever first), and once more at completion, the node signs the next cumulative
receipt for each (work, uploader), appends it to its own ledger, and sends it to the
uploader's API. Totals survive restarts: the latest issued receipt is the base.

Uploader: POST /receipts bodies are verified (signature, addressed to us, a work we
serve, not over its size, monotonic) before they are appended; refusals are 4xx.

Collector: a work's manifest may name a collector (key and API endpoint). Downloaders
send it a copy of every receipt they issue for that work; a node whose key is the
work's collector accepts receipts naming any uploader, with the same checks otherwise,
and keeps them as ``receipt.collected``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from p2pdist._api import ApiError, post
from p2pdist.errors import MalformedObject, P2PDistError, StorageError, VerificationError
from p2pdist.identity import Identity
from p2pdist.licensing import Collector
from p2pdist.payouts.ledger import Entry, Ledger
from p2pdist.payouts.receipts import (
    MAX_RECEIPT_SIZE,
    ReceiptRejected,
    SignedReceipt,
    TransferReceipt,
    next_receipt,
    rejection_reason,
    verify_receipt,
)

__all__ = ["COLLECTED", "ISSUED", "LEDGER_NAME", "RECEIVED", "Credit", "LedgerLog",
           "ReceiptLog", "open_ledger"]

LEDGER_NAME = "ledger.sqlite"

ISSUED = "receipt.issued"
RECEIVED = "receipt.received"
COLLECTED = "receipt.collected"
RECEIPT_EVERY_BYTES = 4 * 1024 * 1024
RECEIPT_EVERY_SECONDS = 5.0

Key = tuple[bytes, bytes, bytes]  # (work, uploader, downloader)


class ReceiptLog(Protocol):
    """The part of the ledger the credit flow needs."""

    def append(self, kind: str, payload: bytes) -> object: ...

    def payloads(self, kind: str) -> Iterable[bytes]: ...


# Statuses that mean "not now" rather than "no": ask again after these pauses (seconds).
RETRY_STATUSES = frozenset({408, 429, 503, 507})
SEND_RETRY_DELAYS = (0.5, 1.5)


@dataclass(slots=True)
class _Uploader:
    endpoint_host: str
    api_port: int
    last: TransferReceipt | None = None
    last_sent_at: float = 0.0
    base: int = 0  # bytes acknowledged in earlier sessions


@dataclass(slots=True)
class Credit:
    """Receipt state of one node. Thread-safe: the API thread calls accept()."""

    identity: Identity
    log: ReceiptLog
    work_size: Callable[[bytes], int | None]  # None: a work this node does not serve
    collector_of: Callable[[bytes], Collector | None] = field(default=lambda work: None)
    may_send_to: Callable[[str], bool] = field(default=lambda host: True)  # network profile
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _issued: dict[Key, TransferReceipt] = field(default_factory=dict)
    _received: dict[Key, TransferReceipt] = field(default_factory=dict)
    _collected: dict[Key, TransferReceipt] = field(default_factory=dict)
    _uploaders: dict[tuple[bytes, bytes], _Uploader] = field(default_factory=dict)
    # (work, uploader) -> the highest seq the uploader answered 2xx for: it holds that one.
    _acked: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _senders: list[threading.Thread] = field(default_factory=list)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until the receipts on their way have been delivered or failed."""
        deadline = time.monotonic() + timeout
        for t in self._senders:
            t.join(max(0.0, deadline - time.monotonic()))
        self._senders = [t for t in self._senders if t.is_alive()]

    def load(self) -> None:
        """Index the latest issued and received receipt per key from the ledger."""
        for kind, index in ((ISSUED, self._issued), (RECEIVED, self._received),
                            (COLLECTED, self._collected)):
            for payload in self.log.payloads(kind):
                r = SignedReceipt.from_bytes(payload).receipt
                if r.key not in index or r.seq > index[r.key].seq:
                    index[r.key] = r

    # -- uploader side --------------------------------------------------------------------

    def accept(self, body: bytes) -> dict[str, Any]:
        """Verify and store a receipt a downloader sent us (the POST /receipts handler)."""
        if len(body) > MAX_RECEIPT_SIZE:
            raise ApiError(413, "oversized", f"a receipt is at most {MAX_RECEIPT_SIZE} bytes")
        try:
            signed = SignedReceipt.from_bytes(body)
        except MalformedObject as e:
            raise ApiError(400, "malformed", e.message) from None
        r = signed.receipt
        size = self.work_size(r.work)
        me = self.identity.public_key
        collector = self.collector_of(r.work) if r.uploader != me else None
        # As the work's collector we keep receipts naming any uploader (but never us as
        # the downloader: a collector does not acknowledge itself).
        collecting = collector is not None and collector.pk == me and r.downloader != me
        kind, index = (COLLECTED, self._collected) if collecting else (RECEIVED, self._received)
        with self._lock:
            try:
                verify_receipt(
                    signed, uploader=r.uploader if collecting else me,
                    known_works=() if size is None else (r.work,),
                    work_size=size, previous=index.get(r.key),
                )
            except ReceiptRejected as e:
                raise ApiError(409 if e.reason in ("replayed", "rollback") else 422,
                               e.reason, e.message) from None
            except VerificationError as e:
                raise ApiError(422, rejection_reason(e), e.message) from None
            self.log.append(kind, signed.to_bytes())
            index[r.key] = r
        return {"ok": True, "seq": r.seq, "bytes": r.bytes,
                "kept_as": "collected" if collecting else "received"}

    def received_totals(self) -> dict[bytes, int]:
        """Per work: bytes acknowledged to this node by all downloaders (latest receipts)."""
        out: dict[bytes, int] = {}
        with self._lock:
            for (work, _, _), r in self._received.items():
                out[work] = out.get(work, 0) + r.bytes
        return out

    # -- downloader side ------------------------------------------------------------------

    def observe(self, work: bytes, size: int, per_key: dict[bytes, tuple[int, str, int]],
                *, final: bool = False) -> list[TransferReceipt]:
        """Issue receipts for *work* from this session's verified bytes per proven key.

        *per_key* maps uploader key -> (session bytes, host, api port). Returns the
        receipts issued now; each is already in the ledger and on its way to the uploader.
        """
        me = self.identity.public_key
        issued = []
        for pk, (session_bytes, host, api_port) in per_key.items():
            if pk == me:
                continue
            key = (work, pk, me)
            up = self._uploaders.get((work, pk))
            if up is None:
                prev = self._issued.get(key)
                up = _Uploader(host, api_port, prev, 0.0, prev.bytes if prev else 0)
                self._uploaders[(work, pk)] = up
            total = min(size, up.base + session_bytes)
            last_bytes = up.last.bytes if up.last else 0
            if total <= last_bytes:
                continue
            due = (total - last_bytes >= RECEIPT_EVERY_BYTES
                   or time.monotonic() - up.last_sent_at >= RECEIPT_EVERY_SECONDS
                   or final or total == size)
            if not due:
                continue
            r = next_receipt(up.last, work=work, uploader=pk, downloader=me,
                             total_bytes=total, now=self.now())
            signed = SignedReceipt.sign(r, self.identity)
            self.log.append(ISSUED, signed.to_bytes())
            self._issued[key] = r
            up.last, up.last_sent_at = r, time.monotonic()
            issued.append(r)
            targets = [(host, api_port)]
            collector = self.collector_of(work)
            if (collector is not None and collector.pk not in (pk, me)
                    and self.may_send_to(collector.host)):
                targets.append((collector.host, collector.port))
            for i, (h, p) in enumerate(targets):
                t = threading.Thread(target=self._send, args=(h, p, signed, i == 0),
                                     daemon=True, name="send-receipt")
                t.start()
                self._senders.append(t)
        if final:  # the process may end right after: deliver before returning
            self.flush()
        return issued

    def _send(self, host: str, port: int, signed: SignedReceipt, to_uploader: bool) -> None:
        # It is in our ledger already; the next (cumulative) receipt supersedes a lost one.
        # A busy or briefly unreachable node (503, 429, a full disk's 507, no answer) is
        # asked again after SEND_RETRY_DELAYS; a refusal (4xx) is final.
        for delay in (0.0, *SEND_RETRY_DELAYS):
            time.sleep(delay)
            try:
                status, _ = post(host, port, "/receipts", signed.to_bytes(), timeout=5)
            except P2PDistError:
                continue
            if status not in RETRY_STATUSES:
                break
        else:
            return
        if to_uploader and 200 <= status < 300:
            r = signed.receipt
            with self._lock:
                k = (r.work, r.uploader)
                self._acked[k] = max(self._acked.get(k, 0), r.seq)

    def acknowledged(self, work: bytes) -> dict[bytes, int]:
        """Per uploader of *work*: the highest seq it acknowledged holding (this session)."""
        with self._lock:
            return {up: seq for (w, up), seq in self._acked.items() if w == work}

    def collected(self, work: bytes) -> list[TransferReceipt]:
        """Latest collected receipt per (uploader, downloader) for *work*."""
        with self._lock:
            return [r for k, r in self._collected.items() if k[0] == work]

    def issued(self, work: bytes) -> dict[bytes, TransferReceipt]:
        """Latest issued receipt per uploader for *work*."""
        return {k[1]: r for k, r in self._issued.items() if k[0] == work}


class LedgerLog:
    """This node's ledger as the credit flow uses it, safe to share between threads.

    One SQLite connection for the node's whole life, closed by close(): the API serves
    each request on a thread of its own, and a connection per thread (two descriptors,
    the file and its WAL) was never closed, so every request leaked two. A lock keeps
    every call, reads included, in one order on that connection.
    """

    def __init__(self, path: Path, node: bytes) -> None:
        self.path, self.node = path, node
        self._lock = threading.Lock()
        # Opened (and created) now: a broken file fails at start-up.
        self._led: Ledger | None = Ledger(path, node=node, shared=True)

    def _ledger(self) -> Ledger:
        if self._led is None:
            raise StorageError(f"the ledger {self.path.name} is closed: the node is stopping")
        return self._led

    def append(self, kind: str, payload: bytes) -> Entry:
        with self._lock:
            return self._ledger().append(kind, payload)

    def payloads(self, kind: str) -> list[bytes]:
        return [payload for _, payload in self.numbered(kind)]

    def numbered(self, kind: str) -> list[tuple[int, bytes]]:
        """(seq, payload) of every entry of *kind* in this node's chain, in order."""
        with self._lock:
            return [(e.seq, e.payload)
                    for e in self._ledger().entries(node=self.node, kind=kind)]

    def payload_at(self, seq: int) -> bytes | None:
        """The payload of entry *seq* of this node's chain: one lookup, not a scan."""
        with self._lock:
            e = self._ledger().entry(seq)
        return None if e is None else e.payload

    def close(self) -> None:
        with self._lock:
            led, self._led = self._led, None
            if led is not None:
                with contextlib.suppress(Exception):
                    led.close()


def open_ledger(home: Path, node: bytes) -> LedgerLog:
    """This node's ledger, HOME/ledger.sqlite."""
    home.mkdir(parents=True, exist_ok=True)
    return LedgerLog(home / LEDGER_NAME, node)
