"""The node API under abuse: 1,000 malformed or oversized requests and 200 slow-loris
sockets against a real `seed`, while a real fan fetches from it. Every request gets a
4xx with a JSON reason within 10 s, the node keeps seeding and taking the fan's receipts,
its ledger keeps every entry it had, and its memory and threads stay bounded."""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist._api import (
    LINE_DEADLINE,
    MAX_BODY,
    MAX_HEADER_BYTES,
    MAX_PER_NETWORK,
    MAX_REQUEST_LINE,
    NodeApi,
    network_of,
    prove_identity,
)
from p2pdist.errors import P2PDistError
from p2pdist.identity import Identity, load_public_identity
from p2pdist.payouts.receipts import SignedReceipt
from tests.conftest import free_port, run_cli
from tests.integration._rawhttp import (
    HANG,
    Answer,
    assert_clean_refusal,
    exchange,
    parse,
    proc_status,
    reset_peak,
)
from tests.integration._story import Seeder, digests, make_album, publish

MiB = 1024 * 1024
LORIS = 200  # slow-loris sockets, all from one address
MALFORMED = 1000
# Loopback too, in /24 networks of their own (connections are counted per /24): the fan
# comes from 127.0.0.1.
ABUSER, LORIS_FROM = "127.0.3.1", "127.0.2.1"
NEIGHBOUR = "127.0.0.200"  # in the fan's own /24


def _req(first: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return first + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


CL = b"Content-Length: %d"
# name -> (request, the 4xx it must get)
CASES: dict[str, tuple[bytes, int]] = {
    "body-over-cap": (_req(b"POST /receipts HTTP/1.1", CL % (MAX_BODY + 1),
                           body=b"x" * (MAX_BODY + 1)), 413),
    "body-4x-cap": (_req(b"POST /purchase HTTP/1.1", CL % (4 * MAX_BODY),
                         body=b"d" * (4 * MAX_BODY)), 413),
    "length-1e9": (_req(b"POST /receipts HTTP/1.1", b"Content-Length: 999999999",
                        body=b"x" * 1024), 413),
    "length-5000-digits": (_req(b"POST /receipts HTTP/1.1", b"Content-Length: " + b"9" * 5000),
                           413),
    "length-negative": (_req(b"POST /receipts HTTP/1.1", b"Content-Length: -1"), 400),
    "length-twice": (_req(b"POST /receipts HTTP/1.1", CL % 1, CL % 2, body=b"xy"), 400),
    "chunked": (_req(b"POST /receipts HTTP/1.1", b"Transfer-Encoding: chunked",
                     body=b"2\r\nxy\r\n0\r\n\r\n"), 411),
    "body-short": (_req(b"POST /receipts HTTP/1.1", CL % 100, body=b"short"), 400),
    "header-line-over-cap": (_req(b"GET /identity HTTP/1.1",
                                  b"X-Long: " + b"a" * (MAX_HEADER_BYTES + 1)), 431),
    "header-line-64k": (_req(b"GET /identity HTTP/1.1", b"X-Long: " + b"a" * 70_000), 431),
    "headers-over-cap": (_req(b"GET /identity HTTP/1.1",
                              *[b"X-%d: %s" % (i, b"v" * 500) for i in range(40)]), 431),
    "too-many-headers": (_req(b"GET /identity HTTP/1.1",
                              *[b"X-%d: v" % i for i in range(150)]), 431),
    "header-no-colon": (_req(b"GET /identity HTTP/1.1", b"no colon here"), 400),
    "request-line-over-cap": (_req(b"GET /identity?challenge=" + b"a" * MAX_REQUEST_LINE
                                   + b" HTTP/1.1"), 414),
    "request-line-70k": (_req(b"GET /" + b"a" * 70_000 + b" HTTP/1.1"), 414),
    "blank-request-line": (b"\r\n\r\n", 400),
    "binary-request-line": (_req(b"\x00\x01\x02\xff\xfe"), 400),
    "one-word": (_req(b"GET"), 400),
    "four-words": (_req(b"GET / HTTP/1.1 extra"), 400),
    "http-0.9": (b"GET /identity\r\n", 400),
    "http-2.0": (_req(b"GET /identity HTTP/2.0"), 400),
    "http-1.x": (_req(b"GET /identity HTTP/1.x"), 400),
    "not-http": (_req(b"GET /identity FOO/1.1"), 400),
    "tls-hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), 400),
    "put": (_req(b"PUT /receipts HTTP/1.1", CL % 2, body=b"xy"), 405),
    "delete": (_req(b"DELETE /receipts HTTP/1.1"), 405),
    "head": (_req(b"HEAD /identity HTTP/1.1"), 405),
    "options-star": (_req(b"OPTIONS * HTTP/1.1"), 405),
    "trace": (_req(b"TRACE / HTTP/1.1"), 405),
    "connect": (_req(b"CONNECT 127.0.0.1:22 HTTP/1.1"), 405),
    "lower-case-get": (_req(b"get /identity HTTP/1.1"), 405),
    "nul-in-method": (_req(b"G\x00T /identity HTTP/1.1"), 405),
    "traversal": (_req(b"GET /../../../../etc/passwd HTTP/1.1"), 404),
    "traversal-encoded": (_req(b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1"), 404),
    "traversal-to-route": (_req(b"POST /identity/../receipts HTTP/1.1", CL % 3, body=b"i1e"),
                           404),
    "traversal-backslash": (_req(b"GET /..\\..\\windows\\win.ini HTTP/1.1"), 404),
    "double-slash": (_req(b"GET //etc/passwd HTTP/1.1"), 404),
    "nul-in-path": (_req(b"GET /identity%00.json HTTP/1.1"), 404),
    "non-utf8-path": (_req(b"GET /\xff\xfe\xfd HTTP/1.1"), 404),
    "absolute-form": (_req(b"GET http://evil.example/identity?challenge=zz HTTP/1.1"), 400),
    "bad-ipv6-url": (_req(b"GET http://[::1/identity HTTP/1.1"), 400),
    "too-many-query-fields": (_req(b"GET /identity?" + b"&".join(b"a%d=1" % i
                                                                  for i in range(40))
                                   + b" HTTP/1.1"), 400),
    "bad-challenge": (_req(b"GET /identity?challenge=" + b"zz" * 32 + b" HTTP/1.1"), 400),
    "receipt-garbage": (_req(b"POST /receipts HTTP/1.1", CL % 5, body=b"\xff\xfe\x00\x01x"),
                        400),
    "receipt-deep-nesting": (_req(b"POST /receipts HTTP/1.1", CL % 400,
                                  body=b"l" * 200 + b"e" * 200), 400),
    "purchase-deep-json": (_req(b"POST /purchase HTTP/1.1", CL % 20_000,
                                body=b"[" * 10_000 + b"]" * 10_000), 400),
    "purchase-huge-number": (_req(b"POST /purchase HTTP/1.1", CL % 30_002,
                                  body=b"i" + b"9" * 30_000 + b"e"), 400),
}


@dataclass
class Loris:
    sock: socket.socket
    trickle: bool  # sends its headers a byte a second; else opens and says nothing
    opened: float
    closed: float | None = None
    data: bytes = b""
    reset: bool = False
    sent: int = 0


TRICKLE = b"POST /receipts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 1000


def slow_loris(port: int, count: int, seconds: float) -> list[Loris]:
    """*count* sockets from LORIS_FROM, half trickling, half silent; watched until each
    is closed by the server or *seconds* have passed."""
    socks: list[Loris] = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=(LORIS_FROM, 0))
        s.setblocking(False)
        socks.append(Loris(s, trickle=i % 2 == 0, opened=time.monotonic()))
    until = time.monotonic() + seconds
    next_byte = time.monotonic()
    try:
        while time.monotonic() < until:
            live = [lo for lo in socks if lo.closed is None]
            if not live:
                break
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for lo in live:
                    if lo.trickle:
                        try:
                            lo.sock.send(TRICKLE[lo.sent:lo.sent + 1])
                            lo.sent += 1
                        except OSError:
                            pass  # closed on us: the read below sees it
            ready, _, _ = select.select([lo.sock for lo in live], [], [], 0.1)
            for lo in live:
                if lo.sock in ready:
                    try:
                        chunk = lo.sock.recv(65536)
                    except ConnectionResetError:
                        chunk, lo.reset = b"", True
                    except BlockingIOError:
                        continue
                    lo.data += chunk
                    if not chunk:
                        lo.closed = time.monotonic()
    finally:
        for lo in socks:
            lo.sock.close()
    return socks


def answer_of(lo: Loris) -> Answer:
    return parse(lo.data, (lo.closed or lo.opened) - lo.opened)



@dataclass
class Watch:
    """VmRSS / VmHWM (KiB) and threads of a process, sampled until stopped."""

    pid: int
    samples: list[dict[str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(proc_status(self.pid))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def peak(self, key: str) -> int:
        return max(s[key] for s in self.samples)


def _entries(home: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT node, seq, kind, payload, prev, hash FROM entries "
                               "ORDER BY node, seq"))


def _fetch(home: Path, torrent: str, dest: Path, port: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(run_cli(
        home, "fetch", torrent, "--dest", str(dest), "--local", "--json",
        "--peer", f"127.0.0.1:{port}", "--stall-timeout", "60").stdout)
    return doc


def test_malformed_requests_and_slow_loris_leave_seeding_ledger_and_memory_intact(
        tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [3 * MiB, 512 * 1024])
    artist = tmp_path / "ada"
    pub = publish(artist, album)
    pk = load_public_identity(artist).public_key
    fans = [tmp_path / f"fan{i}" for i in range(3)]
    for fan in fans:
        run_cli(fan, "init", "--name", fan.name)
    port, api = free_port(), free_port()
    with Seeder(artist, port, "--api-listen", f"127.0.0.1:{api}") as seeder:
        assert seeder.proc is not None
        pid = seeder.proc.pid
        # A first fan: the ledger has receipts to lose, and libtorrent has started the
        # threads it keeps for serving (7 here), before the baseline is taken.
        _fetch(fans[0], pub["torrent"], tmp_path / "fan0-music", port)
        before_entries = _entries(artist)
        assert before_entries
        run_cli(artist, "ledger", "verify")
        before = proc_status(pid)
        reset_peak(pid)

        cases = [(name, *CASES[name]) for name in sorted(CASES)]
        batch = [cases[i % len(cases)] for i in range(MALFORMED)]
        answers: list[tuple[str, bytes, int, Answer]] = []
        fetched: dict[str, Any] = {}

        def malformed() -> None:
            with ThreadPoolExecutor(4) as pool:
                for (name, wire, want), a in zip(batch, pool.map(
                        lambda c: exchange(api, c[1], source=ABUSER), batch), strict=True):
                    answers.append((name, wire, want, a))

        def fan_fetch() -> None:
            fetched["doc"] = _fetch(fans[1], pub["torrent"], tmp_path / "fan1-music", port)

        with Watch(pid) as watch, ThreadPoolExecutor(3) as pool:
            loris_f = pool.submit(slow_loris, api, LORIS, HANG + 4)
            time.sleep(0.5)  # the slow sockets are in place first
            jobs = [pool.submit(malformed), pool.submit(fan_fetch)]
            for j in jobs:
                j.result(timeout=120)
            lorises = loris_f.result(timeout=60)
            time.sleep(1.0)  # the handler threads of the last ones end
            after = proc_status(pid)
            hwm = proc_status(pid)["VmHWM"]

        # 1. Every malformed request: its own 4xx, with a JSON reason, within 10 s.
        assert len(answers) == MALFORMED
        for name, wire, want, a in answers:
            assert_clean_refusal(a, request=wire)
            assert a.status == want, (name, a.raw[:300])

        # 2. Every slow-loris socket was closed by the node within 10 s with a 408: at
        # once when a newer one of its network took its slot (the network was at its
        # share), else after about a second (no whole request line by LINE_DEADLINE,
        # silent or trickling a byte a second).
        kinds: dict[str, int] = {}
        for lo in lorises:
            assert lo.closed is not None and lo.closed - lo.opened < HANG, lo
            a = answer_of(lo)
            took = lo.closed - lo.opened
            if a.status == 408:
                assert_clean_refusal(a)
                assert took < LINE_DEADLINE + 5, (lo.trickle, took)  # 3.07 s seen in CI
                kind = "408 given up" if took < LINE_DEADLINE - 0.5 else \
                    "408 trickle" if lo.trickle else "408 silent"
                kinds[kind] = kinds.get(kind, 0) + 1
            else:
                assert a.status in (429, 0), a.raw[:300]  # 0: reset before it was read
                if a.status:
                    assert_clean_refusal(a)
                kinds[str(a.status)] = kinds.get(str(a.status), 0) + 1
        # At least the last share of the network ran out its line deadline (the earlier
        # ones, those not cut yet, gave their slots up to newer ones).
        assert kinds.get("408 trickle", 0) + kinds.get("408 silent", 0) >= MAX_PER_NETWORK, \
            kinds
        assert kinds.get("408 trickle") and kinds.get("408 silent"), kinds

        # 3. The node kept seeding: the fan that fetched during the abuse got every byte,
        # proved the node's key and paid it receipts; another fan fetches afterwards.
        assert digests(tmp_path / "fan1-music" / "First Light") == digests(album)
        served = {p["pk"]: p["bytes"] for p in fetched["doc"]["peers"]}
        assert served.get(load_public_identity(artist).key_text) == pub["size"], served
        _fetch(fans[2], pub["torrent"], tmp_path / "fan2-music", port)
        assert digests(tmp_path / "fan2-music" / "First Light") == digests(album)
        assert prove_identity("127.0.0.1", api, pk=pk) == "Ada"

        # 4. The ledger kept every entry it had; what is new is the fans' receipts only,
        # and what the node sent them (upload.served, the figures that back a receipt).
        entries = _entries(artist)
        assert entries[:len(before_entries)] == before_entries
        added = entries[len(before_entries):]
        assert {e[2] for e in added} <= {"receipt.received", "upload.served"}, added
        new = [SignedReceipt.from_bytes(e[3]).receipt for e in added
               if e[2] == "receipt.received"]
        assert new
        fan_keys = {load_public_identity(f).public_key for f in fans[1:]}
        assert {(x.uploader, x.downloader in fan_keys) for x in new} == {(pk, True)}
        assert load_public_identity(fans[1]).public_key in {x.downloader for x in new}
        run_cli(artist, "ledger", "verify")

        # 5. Memory and threads stayed bounded, and the threads went back down.
        peak_threads = watch.peak("Threads")
        figures = (f"RSS {before['VmRSS'] // 1024} MiB before, {hwm // 1024} MiB peak (VmHWM), "
                   f"{after['VmRSS'] // 1024} MiB after; threads {before['Threads']} before, "
                   f"{peak_threads} peak, {after['Threads']} after; slow-loris: {kinds}")
        print(figures)
        assert hwm - before["VmRSS"] < 64 * 1024, figures
        # libtorrent starts up to 11 disk and hashing threads on demand (aio_threads 10,
        # hashing_threads 1), whatever the API does; the API's own: at most one per
        # connection it holds, and none once they are gone.
        assert peak_threads <= before["Threads"] + MAX_PER_NETWORK + 4 + 11, figures
        assert after["Threads"] <= before["Threads"] + 11, figures
        held = _hold(api, MAX_PER_NETWORK, LORIS_FROM)
        try:  # every slot of the slow-loris address is free again: all accepted, silently
            assert select.select(held, [], [], 0.2)[0] == []
            # Past the network's share, a whole request takes the slot of the oldest
            # silent one, which is told so.
            over = exchange(api, b"GET /identity HTTP/1.1\r\n\r\n", source=LORIS_FROM)
            assert over.status == 400, over.raw[:300]  # no challenge: answered all the same
            assert select.select(held, [], [], 1.0)[0][:1] == [held[0]]
        finally:
            for s in held:
                s.close()

        err = seeder.stop()
        assert "Traceback" not in err, err


def _trickler(api: int, stop: threading.Event, counts: dict[str, int]) -> None:
    """A griefer of the fan's own /24: sends a request line, then a header byte every
    half second, and reconnects at once whenever it is cut off (408) or refused (429)."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", api), timeout=3,
                                          source_address=(NEIGHBOUR, 0)) as s:
                s.sendall(b"POST /receipts HTTP/1.1\r\nHost: x\r\n")
                counts["connections"] = counts.get("connections", 0) + 1
                s.settimeout(0.5)
                while not stop.is_set():
                    s.sendall(b"X")
                    try:
                        if s.recv(1, socket.MSG_PEEK):  # an answer: 408 or 429
                            break
                    except TimeoutError:
                        continue
        except OSError:
            pass
        time.sleep(0.005)


def test_trickling_neighbours_in_the_fans_own_24_cannot_keep_its_proof_and_receipts_out(
        tmp_path: Path) -> None:
    # Forty sockets from 127.0.0.200 each send a request line, then trickle header bytes
    # and reconnect when cut: they keep every slot of 127.0.0.0/24 busy without ever
    # reaching the node's global cap. The fan (127.0.0.1) is in that /24.
    album = make_album(tmp_path / "studio" / "First Light", [4 * MiB])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    pub = publish(artist, album)
    ada = load_public_identity(artist)
    run_cli(fan, "init", "--name", "Fan")
    port, api = free_port(), free_port()
    stop = threading.Event()
    counts: dict[str, int] = {}
    with Seeder(artist, port, "--api-listen", f"127.0.0.1:{api}") as seeder:
        griefers = [threading.Thread(target=_trickler, args=(api, stop, counts), daemon=True)
                    for _ in range(40)]
        try:
            for t in griefers:
                t.start()
            time.sleep(3)  # every slot of the /24 held, the spare ones knocking
            assert counts.get("connections", 0) >= MAX_PER_NETWORK, counts
            # The honest identity request from the /24: answered, each time, at once.
            for _ in range(10):
                started = time.monotonic()
                assert prove_identity("127.0.0.1", api, pk=ada.public_key, timeout=5) == "Ada"
                assert time.monotonic() - started < 5
            # The honest fetch from the /24: proves the artist's key, and its receipt is
            # taken, within the fetch.
            started = time.monotonic()
            doc = _fetch(fan, pub["torrent"], tmp_path / "music", port)
            took = time.monotonic() - started
        finally:
            stop.set()
            for t in griefers:
                t.join(10)
        assert digests(tmp_path / "music" / "First Light") == digests(album)
        [peer] = doc["peers"]
        assert peer["pk"] == ada.key_text, doc["peers"]
        assert peer["receipt"] is not None and peer["receipt"]["bytes"] == pub["size"], peer
        assert took < 60, took
        seeder.stop()
    kept = [SignedReceipt.from_bytes(e[3]).receipt for e in _entries(artist)
            if e[2] == "receipt.received"]
    fan_pk = load_public_identity(fan).public_key
    assert max(r.bytes for r in kept if r.downloader == fan_pk) == pub["size"], kept
    assert counts["connections"] > 40, counts  # they were cut and came back, all along


# -- the caps, on an in-process server with small limits -------------------------------

RELEASE = threading.Event()  # answers the small API's POST /slow


@pytest.fixture
def small_api() -> Iterator[NodeApi]:
    release = RELEASE
    release.clear()
    with NodeApi(Identity("Ada", nacl.signing.SigningKey.generate()), max_connections=4,
                 max_per_network=3) as api:
        # A request that arrives whole and is then slow to answer (a busy disk).
        api.route("POST", "/slow", lambda q, body: (200, {"ok": release.wait(10)}))
        yield api
        release.set()


def _hold(port: int, n: int, source: str) -> list[socket.socket]:
    held = [socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=(source, 0)) for _ in range(n)]
    time.sleep(0.2)  # accepted, and each has a handler thread waiting for its request
    return held


def test_one_address_gets_a_429_past_its_share_and_others_are_still_served(
        small_api: NodeApi) -> None:
    # Its share holds whole requests (waiting for their answers): nothing to give up.
    held = _hold(small_api.port, 3, LORIS_FROM)
    for s in held:
        s.sendall(b"POST /slow HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    time.sleep(0.3)  # each one read whole, and waiting for its answer
    try:
        a = exchange(small_api.port, b"GET /identity HTTP/1.1\r\n\r\n", source=LORIS_FROM)
        assert (a.status, a.doc["reason"]) == (429, "too-many-connections")
        assert_clean_refusal(a)
        assert a.seconds < 1
        assert a.headers["retry-after"] == "1"
        assert small_api.identity is not None
        assert prove_identity("127.0.0.1", small_api.port,
                              pk=small_api.identity.public_key) == "Ada"
    finally:
        RELEASE.set()
        for s in held:
            s.close()


def test_trickling_neighbours_holding_every_slot_of_the_24_give_one_up_to_a_whole_request(
        small_api: NodeApi) -> None:
    # The attacker sits in the honest client's own /24 (127.0.0.200 and 127.0.0.1): its
    # request lines came, its headers trickle, the global cap is never reached.
    assert small_api.identity is not None
    held = _hold(small_api.port, 3, NEIGHBOUR)
    for s in held:
        s.sendall(b"POST /receipts HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)  # each request line read; the headers are on their way
    for s in held:
        s.sendall(b"X")
    a = exchange(small_api.port,
                 b"GET /identity?challenge=%s&asker=%s&endpoint=127.0.0.1%%3A%d "
                 b"HTTP/1.1\r\n\r\n" % (b"00" * 32, b"a" * 52, small_api.port))
    try:
        assert a.status == 200 and a.seconds < 1, a.raw[:300]
        # The oldest of the network's slow requests gave up its slot, with a 408.
        ready = select.select(held, [], [], 1.0)[0]
        assert ready == [held[0]]
        assert parse(held[0].recv(65536), 0).status == 408
    finally:
        for s in held:
            s.close()


def test_idle_sockets_holding_every_slot_give_one_up_to_a_whole_request(
        small_api: NodeApi) -> None:
    assert small_api.identity is not None
    held = _hold(small_api.port, 3, LORIS_FROM) + _hold(small_api.port, 1, ABUSER)
    try:
        a = exchange(small_api.port,
                     b"GET /identity?challenge=%s&asker=%s&endpoint=127.0.0.1%%3A%d "
                     b"HTTP/1.1\r\n\r\n" % (b"00" * 32, b"a" * 52, small_api.port))
        assert a.status == 200 and a.seconds < 1, a.raw[:300]
        # The oldest idle socket gave up its slot: it was told so with a 408.
        ready = select.select(held, [], [], 1.0)[0]
        assert held[0] in ready
        assert parse(held[0].recv(65536), 0).status == 408
    finally:
        for s in held:
            s.close()


def test_past_the_connection_cap_of_whole_requests_a_clean_503_then_served_again(
        small_api: NodeApi) -> None:
    assert small_api.identity is not None
    slow = b"POST /slow HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    held = _hold(small_api.port, 3, LORIS_FROM) + _hold(small_api.port, 1, ABUSER)
    for s in held:
        s.sendall(slow)
    time.sleep(0.3)  # each one read whole, and waiting for its answer
    a = exchange(small_api.port, b"GET /identity HTTP/1.1\r\n\r\n")
    assert (a.status, a.doc["reason"]) == (503, "busy")
    assert a.headers["content-type"] == "application/json" and a.seconds < 1
    RELEASE.set()
    for s in held:
        s.close()
    deadline = time.monotonic() + 5
    while True:  # the handler threads see the end of file and free their slots
        try:
            assert prove_identity("127.0.0.1", small_api.port,
                                  pk=small_api.identity.public_key, timeout=2) == "Ada"
            break
        except P2PDistError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize(("address", "network"), [
    ("127.0.0.1", "127.0.0.0/24"),
    ("127.0.0.254", "127.0.0.0/24"),
    ("127.0.1.1", "127.0.1.0/24"),
    ("203.0.113.77", "203.0.113.0/24"),
    ("::ffff:203.0.113.9", "203.0.113.0/24"),  # IPv4-mapped: counted with its IPv4 /24
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("fe80::1%eth0", "fe80::/64"),
])
def test_connections_are_counted_per_24_or_64_network(address: str, network: str) -> None:
    # One host of a /64 has 2**64 addresses, and a cheap VPS a /24 neighbourhood: a cap
    # per address was no cap at all.
    assert network_of(address) == network
