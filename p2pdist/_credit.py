"""Receipts in a running node: issue them as a downloader, accept them as an uploader.

Downloader: the swarm reports verified bytes per peer endpoint; once a peer proved its
key, those bytes count for that key. Every RECEIPT_EVERY_BYTES or RECEIPT_EVERY_SECONDS
(whichever first), and once more at completion, the node signs the next cumulative
receipt for each (work, uploader), appends it to its own ledger, and sends it to the
uploader's API. Totals survive restarts: the latest issued receipt is the base.

Uploader: POST /receipts bodies are verified (signature, addressed to us, a work we
serve, not over its size, monotonic) before they are appended; refusals are 4xx. Then
the receipt must be backed: this node keeps it only from a key that proved itself on a
connection this node sent payload bytes of that work to, for at most the bytes sent to
that key (over every connection where it proved itself) plus RECEIPT_SLACK. The node
feeds those figures in every tick (observe_uploads) and writes them to its own ledger
(``upload.served``) before the receipts they back, so they survive restarts and the
audit can compare. A receipt that the figures do not back yet, from a key still
connected, waits up to BACKING_WAIT for the next tick and is then answered 503 ("send it
again": the downloader's outbox does); from any other key it is refused (403
"unserved" or "unbacked").

New keys: as a collector, one source network (/24 for IPv4, /64 for IPv6) brings at
most NEW_KEYS_PER_NET new downloader keys of collected copies per work per
NEW_KEYS_WINDOW seconds (429 beyond): a budget of its own, since a collected copy is
backed by nothing at the collector. Received receipts have no key cap: each is backed by
bytes this node really sent that key. A full budget costs an honest fan of that network
only its copy at the collector; its uploader's own copy is what pays.

Collector: a work's manifest may name a collector (key and API endpoint). Downloaders
send it a copy of every receipt they issue for that work; a node whose key is the
work's collector accepts receipts naming any uploader, with the same checks otherwise
(but none of backing: it served nothing), and keeps them as ``receipt.collected``:
copies that prove only what their downloader signed, never credit of the collector.

Payment receipts (POST /payments): a buyer's node sends the seller-signed payment
receipt of its purchase to the work's collector (send_payment), after proving that the
collector's key answers on the license's endpoint. A node keeps one (``payment.collected``)
only for a work whose license it holds and whose manifest names it as collector, once
the named seller's signature and the terms verify; the same signed sale twice is
answered "already kept" and kept once. New buyer keys of collected payments have a
budget of their own per source network, as collected receipts do. The collector's
ledger then holds every sale its buyers delivered, evidence beside the seller's own
bundle: a sale missing from that bundle is a withheld sale.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from p2pdist._api import ApiError, ask_proof, post
from p2pdist._home import ensure_home
from p2pdist.errors import MalformedObject, P2PDistError, StorageError, VerificationError
from p2pdist.identity import Identity
from p2pdist.licensing import Collector, License, PaidTerms
from p2pdist.payouts.ledger import Entry, Ledger
from p2pdist.payouts.payments import (
    MAX_PAYMENT_SIZE,
    PaymentRejected,
    SignedPayment,
    verify_payment,
)
from p2pdist.payouts.receipts import (
    MAX_RECEIPT_SIZE,
    RECEIPT_SLACK,
    ReceiptRejected,
    SignedReceipt,
    TransferReceipt,
    next_receipt,
    parse_served_rate,
    rejection_reason,
    served_backing,
    served_record,
    verify_receipt,
)

__all__ = ["COLLECTED", "ISSUED", "LEDGER_NAME", "PAYMENT_COLLECTED", "RECEIVED", "SERVED",
           "Credit", "LedgerLog", "ReceiptLog", "open_ledger", "send_payment"]

LEDGER_NAME = "ledger.sqlite"

ISSUED = "receipt.issued"
RECEIVED = "receipt.received"
COLLECTED = "receipt.collected"
# A collector keeps receipts naming at most this many uploaders per (work, downloader)
# (a purchase request carries at most as many): no more is a real swarm's, and a key that
# names made-up uploaders cannot grow the collector's ledger without bound.
MAX_COLLECTED_UPLOADERS = 64
PAYMENT_COLLECTED = "payment.collected"  # a seller-signed sale, as a buyer delivered it
SERVED = "upload.served"
# How long a receipt that is not backed yet, from a key still connected, waits for the
# node's next tick (which polls the counts, and finishes a proof under way) before the
# 503 that has the downloader send it again (after 0.5 s and 1.5 s).
BACKING_WAIT = 2.0
# At most this many receipts wait for a tick at once; the others are answered 503 at
# once. Each waiter holds one of the API's connections: 128 receipts from one claimed key,
# sent from four /24s, held every slot for 2 s at a time and starved every other request.
MAX_BACKING_WAITERS = 8
# Served counts go to the ledger at most this often per (work, key), and before each
# receipt they back.
SERVED_SAVE_EVERY = 1.0
# At most this many new downloader keys per work from one /24 (IPv4) or /64 (IPv6) in
# this window (seconds); the networks tracked are capped, oldest forgotten first.
NEW_KEYS_PER_NET = 32
NEW_KEYS_WINDOW = 3600.0
MAX_TRACKED_NETS = 10_000
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
    # The verified license of a work in this node's library (None: unknown to it).
    license_of: Callable[[bytes], License | None] = field(default=lambda work: None)
    may_send_to: Callable[[str], bool] = field(default=lambda host: True)  # network profile
    # The keys that peers connected to a work claim right now (from any thread).
    claimed_now: Callable[[bytes], set[bytes]] = field(default=lambda work: set())
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _issued: dict[Key, TransferReceipt] = field(default_factory=dict)
    _received: dict[Key, TransferReceipt] = field(default_factory=dict)
    _collected: dict[Key, TransferReceipt] = field(default_factory=dict)
    _uploaders: dict[tuple[bytes, bytes], _Uploader] = field(default_factory=dict)
    # (work, uploader) -> the highest seq the uploader answered 2xx for: it holds that one.
    _acked: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _senders: list[threading.Thread] = field(default_factory=list)
    # Uploader side: (work, downloader) -> bytes sent, as saved in the ledger before this
    # session (what its last record backs: see load), and as counted in this session;
    # the last record (bytes, monotonic time or None if of an earlier session, rate).
    _served_base: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    _served_now: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    _saved: dict[tuple[bytes, bytes], tuple[int, float | None, int]] = \
        field(default_factory=dict)
    # (work, downloader) -> when this session began sending it (the work's tick before).
    _since: dict[tuple[bytes, bytes], float] = field(default_factory=dict)
    _last_tick: dict[bytes, float] = field(default_factory=dict)  # per work
    # (work, downloader) of peers connected now that claim that key (proven or not yet).
    _connected: set[tuple[bytes, bytes]] = field(default_factory=set)
    # Collector side: (work, downloader) with a kept collected copy; (work, network) ->
    # when each new downloader key of its collected copies came.
    _known_collected: set[tuple[bytes, bytes]] = field(default_factory=set)
    # (work, downloader) -> the uploaders its collected receipts name (capped).
    _collected_uploaders: dict[tuple[bytes, bytes], set[bytes]] = field(default_factory=dict)
    _new_keys: dict[tuple[bytes, str], deque[float]] = field(default_factory=dict)
    # Collected payments: sha256 of each kept signed sale's body; (work, buyer) of them;
    # the budget of new buyer keys per (work, network), apart from the receipts' one.
    _payments: set[bytes] = field(default_factory=set)
    _known_buyers: set[tuple[bytes, bytes]] = field(default_factory=set)
    _new_buyers: dict[tuple[bytes, str], deque[float]] = field(default_factory=dict)
    _ticks: dict[bytes, int] = field(default_factory=dict)  # observe_uploads calls per work
    _ticked: threading.Condition = field(init=False)
    _waiters: int = 0  # receipts waiting in _check_backed now

    def __post_init__(self) -> None:
        self._ticked = threading.Condition(self._lock)

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
                if kind == COLLECTED:
                    self._known_collected.add((r.work, r.downloader))
                    self._collected_uploaders.setdefault((r.work, r.downloader), set()).add(
                        r.uploader)
        last: dict[tuple[bytes, bytes], tuple[int, int]] = {}
        for payload in self.log.payloads(SERVED):
            work, down, n, rate = parse_served_rate(payload)
            if (work, down) not in last or n >= last[work, down][0]:
                last[work, down] = (n, rate)  # the latest of the highest
        for (work, down), (n, rate) in last.items():
            # A last record with a rate: the node was sending that key when it wrote it,
            # and was not stopped cleanly since (that writes a record without one). It
            # may have sent up to SERVED_LOST_SECONDS of that rate more before it died,
            # bytes the key's receipts acknowledge: they back it (and the records from
            # now on count them), capped by the work's size.
            base = served_backing(n, rate, self.work_size(work))
            self._served_base[work, down] = base
            self._saved[work, down] = (base, None, rate)
        for payload in self.log.payloads(PAYMENT_COLLECTED):
            sp = SignedPayment.from_bytes(payload)
            self._payments.add(hashlib.sha256(sp.body).digest())
            self._known_buyers.add((sp.payment.work, sp.payment.buyer))

    # -- uploader side --------------------------------------------------------------------

    def accept(self, body: bytes, source: str | None = None) -> dict[str, Any]:
        """Verify and store a receipt a downloader sent us (the POST /receipts handler);
        *source* is the address it came from (None: not from the network)."""
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
        if not collecting:
            self._check_backed(r)  # may wait (outside the lock) for the next tick
        with self._lock:
            prev = index.get(r.key)  # another thread may have kept one meanwhile
            if prev is not None and (r == prev or r.seq <= prev.seq or r.bytes < prev.bytes):
                raise ApiError(409, "replayed" if r == prev else "rollback",
                               f"receipt seq {r.seq} is not after the kept seq {prev.seq}")
            if prev is not None and r.bytes == prev.bytes:
                # Nothing new to acknowledge: keeping it would only grow the ledger (one
                # entry per request, from anyone who can sign as that downloader). It is
                # remembered (a replay of it is refused), not written.
                index[r.key] = r
                return {"ok": True, "seq": r.seq, "bytes": r.bytes, "already": True,
                        "kept_as": "collected" if collecting else "received"}
            if collecting and prev is None and len(self._collected_uploaders.get(
                    (r.work, r.downloader), ())) >= MAX_COLLECTED_UPLOADERS:
                raise ApiError(429, "too-many-uploaders",
                               f"this collector keeps receipts of at most "
                               f"{MAX_COLLECTED_UPLOADERS} uploaders per downloader of a work")
            # Only a collected copy is capped: a received receipt is backed by bytes this
            # node really sent that key, and a cap there only lets fresh keys (free ones
            # at a collector, or cheap real fetches) refuse an honest fan's real receipt.
            if collecting and (r.work, r.downloader) not in self._known_collected:
                self._admit_new_key(r.work, source)
            if not collecting:
                self._save_served(r.work, r.downloader, time.monotonic())
            self.log.append(kind, signed.to_bytes())
            index[r.key] = r
            if collecting:
                self._known_collected.add((r.work, r.downloader))
                self._collected_uploaders.setdefault((r.work, r.downloader), set()).add(
                    r.uploader)
        return {"ok": True, "seq": r.seq, "bytes": r.bytes,
                "kept_as": "collected" if collecting else "received"}

    def served(self, work: bytes, downloader: bytes) -> int:
        """Payload bytes of *work* this node has sent *downloader* (a proven key), in all."""
        k = (work, downloader)
        with self._lock:
            return self._served_base.get(k, 0) + self._served_now.get(k, 0)

    def observe_uploads(self, work: bytes, sent: dict[bytes, int],
                        connected: Iterable[bytes] = ()) -> None:
        """This session's payload bytes sent per proven downloader key of *work* (summed
        over every connection where the key proved itself), and the keys that connected
        peers claim now. Called by the node at each tick; saves what is due."""
        now = time.monotonic()
        with self._lock:
            for pk, n in sent.items():
                k = (work, pk)
                if n > self._served_now.get(k, 0):
                    if k not in self._served_now:
                        self._since[k] = self._last_tick.get(work, now - SERVED_SAVE_EVERY)
                    self._served_now[k] = n
                    last = self._saved.get(k)
                    if last is None or last[1] is None or now - last[1] >= SERVED_SAVE_EVERY:
                        self._save_served(work, pk, now)
            self._last_tick[work] = now
            self._connected = {k for k in self._connected if k[0] != work}
            self._connected.update((work, pk) for pk in connected)
            self._ticks[work] = self._ticks.get(work, 0) + 1
            self._ticked.notify_all()

    def save_served(self) -> None:
        """At a clean close: write every served count that grew since it was last saved,
        and each as stopped (no rate): nothing more was sent after it."""
        now = time.monotonic()
        with self._lock:
            for work, pk in set(self._served_now) | set(self._saved):
                self._save_served(work, pk, now, stopped=True)

    def _save_served(self, work: bytes, pk: bytes, now: float, *,
                     stopped: bool = False) -> None:
        """Record what this node sent *pk* of *work*, if it grew (or, *stopped*, if the
        last record still has a rate); with the rate since the last record, unless
        *stopped*. Under self._lock."""
        k = (work, pk)
        n = self._served_base.get(k, 0) + self._served_now.get(k, 0)
        size = self.work_size(work)
        if size is not None:
            n = min(n, max(size, self._served_base.get(k, 0)))
        last = self._saved.get(k)
        if not n or (last is not None and n <= last[0] and not (stopped and last[2])):
            return
        rate = 0
        if not stopped:
            if last is not None and last[1] is not None:
                ref_n, ref_t = last[0], last[1]
            else:
                ref_n, ref_t = self._served_base.get(k, 0), self._since.get(k, now - 1.0)
            # B/s since the last record, rounded up; and never less than the last record
            # of this session says: the highest rate of the session. The counts come in
            # bursts (a connection's bytes count for its key once it claimed or proved
            # it; a second without growth was seen while bytes flowed), so one slow
            # interval says little of what a kill right after it loses.
            took = max(now - ref_t, 0.2)
            rate = -(-(n - ref_n) * 10 // max(1, round(took * 10)))
            if last is not None and last[1] is not None:
                rate = max(rate, last[2])
            rate = max(rate, 1)  # still sending, however slowly
        self.log.append(SERVED, served_record(work, pk, n, rate))
        self._saved[k] = (n, now, rate)

    def _check_backed(self, r: TransferReceipt) -> None:
        """Return if what this node sent r.downloader of r.work backs r; else ApiError.

        A receipt may come before the tick that counts the bytes it acknowledges (and
        that sees its sender's key proven): then it waits up to BACKING_WAIT, and is
        answered 503 (send it again) unless two ticks saw no connection of the work
        claiming its key: then 403. A key that nothing was sent to and that no connection
        of the work claims is refused at once."""
        k = (r.work, r.downloader)
        with self._lock:
            sent = self._served_base.get(k, 0) + self._served_now.get(k, 0)
            seen = k in self._connected
        if not sent and not seen and r.downloader not in self.claimed_now(r.work):
            # Nothing sent, and no connection of the work claims the key: no tick to
            # wait for.
            raise ApiError(403, "unserved", _UNSERVED)
        deadline = time.monotonic() + BACKING_WAIT
        waiting = False
        with self._ticked:
            start = self._ticks.get(r.work, 0)
            try:
                while True:
                    sent = self._served_base.get(k, 0) + self._served_now.get(k, 0)
                    if sent and r.bytes <= sent + RECEIPT_SLACK:
                        return
                    connected = k in self._connected
                    # Two ticks came and went without the key on a connection: it is
                    # not one this node is serving now.
                    gone = not connected and self._ticks.get(r.work, 0) >= start + 2
                    left = deadline - time.monotonic()
                    if left <= 0 or gone:
                        break
                    if not waiting:
                        if self._waiters >= MAX_BACKING_WAITERS:
                            break  # 503 now: send it again
                        self._waiters += 1
                        waiting = True
                    self._ticked.wait(min(left, 0.1))
            finally:
                if waiting:
                    self._waiters -= 1
        if not gone:
            raise ApiError(503, "not-yet-backed",
                           f"this node has counted {sent} bytes sent to you, not yet the "
                           f"{r.bytes} this receipt acknowledges: send it again shortly")
        if not sent:
            raise ApiError(403, "unserved", _UNSERVED)
        raise ApiError(403, "unbacked",
                       f"this node sent this key {sent} bytes of this work, not "
                       f"{r.bytes}: it keeps receipts for at most what it sent")

    def _admit_new_key(self, work: bytes, source: str | None, *,
                       budget: dict[tuple[bytes, str], deque[float]] | None = None,
                       what: str = "downloader") -> None:
        """Count a new downloader key (or, with the payments' *budget*, buyer key) of
        *work* against its source network (429 if over). Under self._lock."""
        if source is None:
            return  # not from the network (a test or an import)
        keys = self._new_keys if budget is None else budget
        net = _network(source)
        now = time.monotonic()
        k = (work, net)
        times = keys.get(k)
        if times is None:
            if len(keys) >= MAX_TRACKED_NETS:
                del keys[next(iter(keys))]
            times = keys[k] = deque()
        while times and now - times[0] > NEW_KEYS_WINDOW:
            times.popleft()
        if len(times) >= NEW_KEYS_PER_NET:
            raise ApiError(429, "too-many-keys",
                           f"{NEW_KEYS_PER_NET} new {what} keys of this work came from "
                           f"{net} in the last hour already; try again later")
        times.append(now)

    # -- collector of payment receipts ----------------------------------------------------

    def collect_payment(self, body: bytes, source: str | None = None) -> dict[str, Any]:
        """Verify and keep a payment receipt sent to this node as the work's collector
        (the POST /payments handler); *source* is the address it came from. 4xx ApiError
        for anything it does not keep: nothing is kept then."""
        if len(body) > MAX_PAYMENT_SIZE:
            raise ApiError(413, "oversized",
                           f"a payment receipt is at most {MAX_PAYMENT_SIZE} bytes")
        try:
            signed = SignedPayment.from_bytes(body)
        except MalformedObject as e:
            raise ApiError(400, "malformed", e.message) from None
        p = signed.payment
        lic = self.license_of(p.work)
        if lic is None:
            raise ApiError(404, "unknown-work", "this node does not hold that work's license: "
                           "a collector keeps payments only for works in its library")
        collector = lic.manifest.collector
        if collector is None or collector.pk != self.identity.public_key:
            raise ApiError(403, "not-collector",
                           "that work's license does not name this node as its collector")
        terms = lic.manifest.terms
        if not isinstance(terms, PaidTerms):
            raise ApiError(422, "not-for-sale", "that work is not sold: it has no payments")
        try:
            verify_payment(signed, work=p.work, terms=terms)
        except PaymentRejected as e:
            raise ApiError(403 if e.reason == "not-a-seller" else 422, e.reason,
                           e.message) from None
        except VerificationError:
            raise ApiError(422, "bad-signature",
                           "the payment receipt is not signed by the seller it names") \
                from None
        digest = hashlib.sha256(signed.body).digest()
        with self._lock:
            if digest in self._payments:
                return {"ok": True, "kept_as": "collected", "already": True,
                        "message": "already kept"}
            if (p.work, p.buyer) not in self._known_buyers:
                self._admit_new_key(p.work, source, budget=self._new_buyers, what="buyer")
            self.log.append(PAYMENT_COLLECTED, signed.to_bytes())
            self._payments.add(digest)
            self._known_buyers.add((p.work, p.buyer))
        return {"ok": True, "kept_as": "collected", "already": False, "message": "kept"}

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


def send_payment(payload: bytes, collector: Collector, *, asker: bytes,
                 may_send_to: Callable[[str], bool], timeout: float = 5.0,
                 delays: Iterable[float] = SEND_RETRY_DELAYS) -> tuple[str, str]:
    """Deliver a signed payment receipt to the work's *collector* (POST /payments), once
    its key proved itself on the endpoint the license names. Returns (status, detail):
    "sent" (kept there now, or already), "unreachable" (no answer, or busy after the
    retries: send it again later) or "refused" (the network profile may not contact it,
    another key answers there, or it refused the receipt: a 4xx reason)."""
    where = collector.endpoint
    if not may_send_to(collector.host):
        return "refused", (f"{where} is not an address this network profile may contact "
                           "(loopback only in 'local'; globally routable in 'internet')")
    try:
        ask_proof(collector.host, collector.port, asker=asker, keys=(collector.pk,),
                  timeout=timeout)
    except VerificationError as e:
        return "refused", f"the node at {where} is not the collector: {e.message}"
    except P2PDistError as e:
        return "unreachable", e.message
    detail = f"the collector at {where} did not answer"
    for delay in (0.0, *delays):
        time.sleep(delay)
        try:
            status, doc = post(collector.host, collector.port, "/payments", payload,
                               timeout=timeout)
        except P2PDistError as e:
            detail = e.message
            continue
        reason = str(doc.get("reason", ""))[:64]
        if 200 <= status < 300:
            return "sent", str(doc.get("message", "kept"))[:64]
        detail = f"the collector at {where} answered {status} {reason}".rstrip()
        if status not in RETRY_STATUSES:
            return "refused", detail
    return "unreachable", detail


_UNSERVED = ("this node sent this key nothing of this work: it keeps receipts only from "
             "peers it served")


def _network(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) that *address* is in, as text."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


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
    ensure_home(home)
    return LedgerLog(home / LEDGER_NAME, node)
