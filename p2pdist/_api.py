"""The node API: a small HTTP server next to the BitTorrent port, and its client side.

Public part (any peer may call it):
  GET  /identity?challenge=HEX&asker=KEY&endpoint=HOST:PORT
                                 the node signs an IdentityProof (p2pdist/_proof.py) of
                                 the challenge, the asker's key and the endpoint dialed,
                                 and only for an endpoint that is its own
  POST /receipts                 (issue 3) a downloader's signed receipt for this node
  POST /purchase                 a buyer's signed purchase request, on a seller (paid.Shop)
  POST /payments                 a seller-signed payment receipt, on the work's collector
                                 (p2pdist/_credit.py Credit.collect_payment): kept as
                                 ``payment.collected`` once its license names this node
                                 as collector and the seller and terms verify; the same
                                 sale again is 200 "already kept"; 404 unknown-work,
                                 403 not-collector / not-a-seller, 413, 422 otherwise

Bounded by design, for whatever arrives: the request line, the header lines and the body
are capped before they are read (414, 431, 413); a connection must send its request
line within LINE_DEADLINE (about a second: an idle socket holds no slot for long), may be
silent at most READ_TIMEOUT and must send its whole request within REQUEST_DEADLINE (408,
so a slow-loris client trickling a byte at a time is cut off too); at most
MAX_CONNECTIONS are served at once and MAX_PER_NETWORK from one /24 (IPv4) or /64 (IPv6)
network, so that many addresses of one network count as one (503 and 429 beyond). When
every slot is taken, or every slot of the new connection's network, it takes the slot of
the one (of that network) that has waited longest without sending its whole request, so
that requests which arrive whole are served whatever idle or trickling sockets are held,
even by a neighbour in the same /24. Every
refusal is JSON ``{"ok": false, "reason", "error"}``, a 4xx for anything a client can
send, never the standard library's HTML page or a traceback on stderr. Built on the
standard library's ThreadingHTTPServer: one thread per connection, which the caps keep
bounded.
"""

from __future__ import annotations

import contextlib
import hmac
import http
import http.client
import ipaddress
import json
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import nacl.signing

from p2pdist import __version__, _json
from p2pdist._proof import (
    CHALLENGE_LEN,
    IDENTITY_DOMAIN,
    IdentityProof,
    SignedProof,
    canonical_endpoint,
    split_endpoint,
    verify_proof,
)
from p2pdist.errors import InvalidSignature, NetworkError, P2PDistError, StorageError
from p2pdist.identity import Identity, key_from_text, key_to_text

__all__ = [
    "IDENTITY_DOMAIN",
    "ApiError",
    "NodeApi",
    "PeerClaim",
    "ask_proof",
    "client_string",
    "identify",
    "network_of",
    "parse_client_string",
    "post",
    "prove_identity",
    "request_address",
]

MAX_BODY = 64 * 1024
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024  # every header line together
LINE_DEADLINE = 1.0  # to send the request line, from the connection's accept
READ_TIMEOUT = 5.0  # of silence, between two reads
REQUEST_DEADLINE = 8.0  # to send the whole request, however steadily it trickles
MAX_CONNECTIONS = 128
MAX_PER_NETWORK = 32  # from one /24 (IPv4) or /64 (IPv6)

_CLIENT_RE = re.compile(r"^p2pdist/(?P<ver>\S+) pk=(?P<pk>[a-z2-7]{52})(?: api=(?P<api>\d{1,5}))?$")


class ApiError(P2PDistError):
    """A request the API refuses: carries the HTTP status and a reason code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PeerClaim:
    """What a peer's BEP 10 client string claims: a key and an API port. Unproven."""

    pk: bytes
    api_port: int | None


def client_string(pk: bytes, api_port: int | None) -> str:
    """``p2pdist/<version> pk=<base32> api=<port>``: how a node names itself to peers."""
    s = f"p2pdist/{__version__} pk={key_to_text(pk)}"
    return f"{s} api={api_port}" if api_port else s


def parse_client_string(text: str) -> PeerClaim | None:
    """The claim in a peer's client string, or None for a plain BitTorrent client."""
    m = _CLIENT_RE.match(text.strip())
    if not m:
        return None
    api = int(m["api"]) if m["api"] else None
    if api is not None and not 0 < api <= 65535:
        api = None
    try:
        return PeerClaim(key_from_text(m["pk"]), api)
    except P2PDistError:
        return None


# The local address of the connection a handler thread serves (one thread per
# connection): GET /identity signs only an endpoint that is this node's own.
_connection = threading.local()


Route = Callable[[dict[str, list[str]], bytes], tuple[int, dict[str, Any]]]

_REASONS = {400: "bad-request", 405: "bad-method", 408: "timeout", 411: "length-required",
            413: "oversized", 414: "uri-too-long", 429: "too-many-connections",
            431: "headers-too-large", 503: "busy"}


_current = threading.local()


def request_address() -> str | None:
    """The client address of the request this API thread is handling (for a route)."""
    address: str | None = getattr(_current, "address", None)
    return address


class _HeadersTooLarge(Exception):
    """The header lines together went over MAX_HEADER_BYTES."""


class _CappedLines:
    """The connection's reader while headers are parsed: at most *budget* bytes in all.

    http.client.parse_headers allows 100 lines of 64 KiB each (6.4 MB per connection);
    this caps what one connection may make the node hold before its request is known.
    """

    def __init__(self, raw: Any, budget: int) -> None:
        self._raw, self._left = raw, budget

    def readline(self, size: int = -1) -> bytes:
        want = self._left + 1 if size < 0 else min(size, self._left + 1)
        line: bytes = self._raw.readline(want)
        self._left -= len(line)
        if self._left < 0:
            raise _HeadersTooLarge
        return line


# An absolute local path (POSIX or Windows) and what follows it up to a quote or a space.
_LOCAL_PATH = re.compile(r"""(?:(?<![\w.:/])/|\b[A-Za-z]:\\)(?:[^\s'"/\\]+[/\\])+[^\s'",)]*""")


def without_paths(text: str) -> str:
    """*text* with every absolute local path replaced by ``<local file>``: nothing a
    remote client is told names the node's files (its home, its user name)."""
    return _LOCAL_PATH.sub("<local file>", text)


def _line_pending(request: Any) -> bool:
    """Whether a whole request line waits, unread, in the connection's socket buffer."""
    # Polled first: a socket with a timeout waits for data in recv() whatever its flags.
    try:
        poll = select.poll()
        poll.register(request, select.POLLIN)
        if not poll.poll(0):
            return False
        data: bytes = request.recv(MAX_REQUEST_LINE, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (OSError, ValueError):
        return False
    return b"\n" in data


def network_of(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) that *address* is counted in; an IPv4-mapped IPv6
    address counts as its IPv4 one."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


@dataclass(slots=True)
class _Conn:
    """One accepted connection: whence, and until when it may take to send its request
    line and its whole request (None: read whole)."""

    network: str
    address: str
    accepted: float
    line_deadline: float | None
    deadline: float | None
    expired: bool = False
    evicted: bool = False  # its slot was given to a newer connection


class _Server(ThreadingHTTPServer):
    """One thread per connection, bounded: at most *max_connections* at once and
    *max_per_network* from one /24 or /64 (a 503 or 429 beyond, written at once), and
    each must send its request line within LINE_DEADLINE and its whole request within
    REQUEST_DEADLINE (a reaper in the accept loop cuts off the slow ones, however
    steadily they trickle). When all slots are held, or all of the new connection's
    network's, the connection (of that network) that has waited longest without a whole
    request gives its slot to the new one (408 to it); 503 or 429 only when every one
    holds a whole request."""

    daemon_threads = True
    request_queue_size = 128  # a flood waits here to be refused, rather than be dropped

    def __init__(self, address: tuple[str, int], api: NodeApi, *, max_connections: int,
                 max_per_network: int) -> None:
        self.api = api
        self.max_connections, self.max_per_network = max_connections, max_per_network
        self._conns: dict[Any, _Conn] = {}  # every handler thread's, evicted ones too
        self._live = 0  # connections holding a slot (not evicted)
        self._per_network: dict[str, int] = {}
        self._conns_lock = threading.Lock()
        self._next_reap = 0.0
        super().__init__(address, _Handler)

    def conn(self, request: Any) -> _Conn:
        return self._conns[request]

    def line_read(self, request: Any) -> None:
        """The request line arrived: no line deadline any more."""
        with self._conns_lock:
            self._conns[request].line_deadline = None

    def reading_done(self, request: Any) -> bool:
        """The request is read: no deadline any more. False if the reaper came first."""
        with self._conns_lock:
            c = self._conns[request]
            c.deadline = None
            return not c.expired

    def _evict_one(self, network: str | None = None) -> bool:
        """Cut the connection (of *network*, or of any) that has waited longest without
        sending its whole request and free its slot; False if every such connection holds
        a whole request. Lock held.

        The slot is taken from the heaviest user first: within a network, from the
        address that holds most of its connections; across the server, from the network
        that holds most. One neighbour reconnecting as fast as it is cut then only cuts
        its own sockets, never the one request an honest client of that /24 just sent
        (which a loaded machine may not have read yet)."""
        held: dict[str, int] = {}
        for c in self._conns.values():
            if not c.evicted and (network is None or c.network == network):
                group = c.address if network is not None else c.network
                held[group] = held.get(group, 0) + 1

        def heaviest(c: _Conn) -> int:
            return -held.get(c.address if network is not None else c.network, 0)

        # The heaviest user's first; then no request line yet, then the oldest: an idle
        # socket goes before a request whose headers are on their way.
        waiting = sorted(((heaviest(c), c.line_deadline is None, c.accepted, id(r)), r, c)
                         for r, c in self._conns.items()
                         if not c.evicted and c.deadline is not None
                         and (network is None or c.network == network))
        for _, request, c in waiting:
            if c.line_deadline is None or not _line_pending(request):
                break
        else:
            return False
        c.evicted = c.expired = True
        self._release(c)
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_RD)  # its handler reads an end of file: 408
        return True

    def _release(self, c: _Conn) -> None:
        self._live -= 1
        left = self._per_network[c.network] - 1
        if left:
            self._per_network[c.network] = left
        else:
            del self._per_network[c.network]

    def process_request(self, request: Any, client_address: Any) -> None:
        address = str(client_address[0])
        network = network_of(address)
        with self._conns_lock:
            # A network at its cap gives the slot of its own slowest connection, as the
            # whole server does at its cap: a neighbour trickling header bytes on every
            # slot of the /24 cannot keep an honest request of that /24 out.
            if self._per_network.get(network, 0) >= self.max_per_network \
                    and not self._evict_one(network):
                refused: tuple[int, str] | None = (
                    429, f"over {self.max_per_network} connections from {network}")
            elif self._live >= self.max_connections and not self._evict_one():
                refused = (503, "the node is busy; try again shortly")
            else:
                refused = None
                now = time.monotonic()
                self._conns[request] = _Conn(network, address, now, now + LINE_DEADLINE,
                                             now + REQUEST_DEADLINE)
                self._live += 1
                self._per_network[network] = self._per_network.get(network, 0) + 1
        if refused is not None:
            # Written from the accept loop without blocking it: a fresh socket's send
            # buffer is empty, and a peer that cannot take 200 bytes gets nothing.
            status, message = refused
            body = json.dumps({"ok": False, "reason": _REASONS[status],
                               "error": message}).encode()
            head = (f"HTTP/1.0 {status} {http.HTTPStatus(status).phrase}\r\n"
                    "Content-Type: application/json\r\nRetry-After: 1\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(head.encode() + body)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        with self._conns_lock:
            c = self._conns.pop(request, None)
            if c is not None and not c.evicted:
                self._release(c)

    def service_actions(self) -> None:
        """Called by serve_forever between accepts: cut off requests past their deadline
        (the request line's, or the whole request's).

        SHUT_RD wakes the handler's blocked read with an end of file; it can still write
        its 408 answer."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + 0.1
        with self._conns_lock:
            for request, c in self._conns.items():
                # A request line already in the socket's buffer is not late: its handler
                # thread has not run yet (a loaded machine), the client was on time.
                late = (c.line_deadline is not None and now > c.line_deadline
                        and not _line_pending(request)) or \
                    (c.deadline is not None and now > c.deadline)
                if late and not c.expired:
                    c.expired = True
                    with contextlib.suppress(OSError):
                        request.shutdown(socket.SHUT_RD)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that went away mid-answer; no traceback on the node's stderr


class _Handler(BaseHTTPRequestHandler):
    """One request per connection; every answer is JSON ``{"ok": false, "reason",
    "error"}`` or a route's own, never the standard library's HTML or a 5xx for bad
    input."""

    server: _Server
    server_version = f"p2pdist/{__version__}"
    sys_version = ""
    timeout = READ_TIMEOUT  # a client silent this long between two reads is cut off

    def log_message(self, format: str, *args: Any) -> None:
        return  # the node's own status shows what matters; no stderr noise

    def _answer(self, status: int, obj: dict[str, Any]) -> None:
        if isinstance(obj.get("error"), str):
            obj = {**obj, "error": without_paths(obj["error"])}
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # so that the answer has a status line
        body = json.dumps(obj).encode()
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._answer(status, {"ok": False, "reason": reason, "error": message})

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The standard library's own refusals (bad request line, version, header lines),
        as JSON and always a 4xx."""
        if code >= 500:  # 501 unknown method, 505 unknown HTTP version: the client's doing
            code = 405 if code == 501 else 400
        self.close_connection = True
        self._refuse(code, _REASONS.get(code, "bad-request"),
                     message or http.HTTPStatus(code).phrase)

    def handle_one_request(self) -> None:
        self.close_connection = True  # one request per connection
        self._unread = True  # until the whole body is read
        self._answered = False
        self.command, self.requestline, self.request_version = "", "", "HTTP/1.0"
        raw = self.rfile
        conn = self.server.conn(self.request)
        try:
            try:
                line = raw.readline(MAX_REQUEST_LINE + 1)
                if line.endswith(b"\n"):
                    self.server.line_read(self.request)
                if len(line) > MAX_REQUEST_LINE:
                    raise ApiError(414, "uri-too-long",
                                   f"the request line is over {MAX_REQUEST_LINE} bytes")
                if not line.endswith(b"\n"):
                    if conn.expired:
                        raise TimeoutError
                    if line:
                        raise ApiError(400, "bad-request", "the request line ended early")
                    return  # connected and left without a word: nobody to answer
                self.raw_requestline = line
                self.rfile = _CappedLines(raw, MAX_HEADER_BYTES)  # type: ignore[assignment]
                try:
                    if not self.parse_request():  # answered by send_error, but for a blank line
                        raise ApiError(400, "bad-request", "no request line")
                finally:
                    self.rfile = raw
                if conn.expired:
                    raise TimeoutError
            except _HeadersTooLarge:
                raise ApiError(431, "headers-too-large",
                               f"the header lines are over {MAX_HEADER_BYTES} bytes") from None
            except TimeoutError:
                raise ApiError(408, "timeout", "the request came too slowly (its first "
                               f"line within {LINE_DEADLINE:g} s, at most {READ_TIMEOUT:g} s "
                               f"of silence, {REQUEST_DEADLINE:g} s in all)") from None
            if self.request_version == "HTTP/0.9":
                raise ApiError(400, "bad-version", "HTTP/1.0 or HTTP/1.1 only")
            if self.command not in ("GET", "POST"):
                raise ApiError(405, "bad-method", f"no {self.command[:16]!r} here")
            self._handle(self.command)
        except ApiError as e:
            if not self._answered:
                with contextlib.suppress(OSError):
                    self._refuse(e.status, e.reason, e.message)
        except OSError:
            pass  # the client went away; nobody to answer
        finally:
            self.close_connection = True

    def _check_local_client(self) -> None:
        """The control API answers local programs only, never a web page: the Host must
        name the loopback address and port it serves (a DNS-rebound name such as
        evil.example is refused), and a request carrying a browser's Origin is refused
        (a page in a browser may not drive the node, token or not)."""
        hosts = self.headers.get_all("Host", [])
        port = self.server.api.port
        if len(hosts) != 1 or hosts[0].strip().lower() not in (
                f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            raise ApiError(403, "bad-host", f"the control API answers Host 127.0.0.1:{port}, "
                           f"localhost:{port} or [::1]:{port} only")
        if "Origin" in self.headers:
            raise ApiError(403, "origin-refused", "the control API does not answer requests "
                           "from web pages (an Origin header)")

    def _body(self, expected: bytes | None) -> bytes:
        """The request's body, at most MAX_BODY, read before the deadline."""
        if expected is not None and not hmac.compare_digest(
                self.headers.get("Authorization", "").encode("latin-1"), expected):
            raise ApiError(401, "unauthorized", "a valid control token is needed")
        if "Transfer-Encoding" in self.headers:
            raise ApiError(411, "length-required",
                           "send the body with a Content-Length; no Transfer-Encoding")
        lengths = {v.strip() for v in self.headers.get_all("Content-Length", [])}
        if len(lengths) > 1:
            raise ApiError(400, "bad-length", "Content-Length given twice, differently")
        length = lengths.pop() if lengths else "0"
        if not (length.isascii() and length.isdigit()):
            raise ApiError(400, "bad-length", "Content-Length is not a number")
        if len(length.lstrip("0")) > 12 or int(length) > MAX_BODY:
            raise ApiError(413, "oversized", f"body over {MAX_BODY} bytes")
        n = int(length)
        try:
            body = self.rfile.read(n) if n else b""
        except TimeoutError:
            body = None
        if not self.server.reading_done(self.request) or body is None:
            raise ApiError(408, "timeout", "the body came too slowly")
        if len(body) != n:
            raise ApiError(400, "truncated", "body shorter than Content-Length")
        self._unread = False
        return body

    def _handle(self, method: str) -> None:
        api = self.server.api
        try:
            url = urlsplit(self.path)
            query = parse_qs(url.query, max_num_fields=16)
        except ValueError:
            raise ApiError(400, "bad-url", "the URL does not parse (or has over 16 query "
                           "fields)") from None
        if api._expected is not None:
            self._check_local_client()
        body = self._body(api._expected)
        route = api._routes.get((method, url.path))
        if route is None:
            raise ApiError(404, "not-found", f"no {method} {url.path[:200]}")
        _current.address = str(self.client_address[0])
        try:
            _connection.local = self.request.getsockname()
            status, obj = route(query, body)
        except ApiError:
            raise
        except StorageError as e:
            # A disk that failed us is our problem, not the request's: 507 says "nothing
            # was kept, send it again later". Its message names our files: not sent.
            full = "disk is full" in e.message
            status, obj = 507, {"ok": False, "reason": type(e).__name__, "error": (
                "the node's disk is full" if full else "the node could not store it")
                + ": nothing was kept; send it again later"}
        except P2PDistError as e:
            status = 422 if e.exit_code == 3 else 400
            obj = {"ok": False, "reason": type(e).__name__, "error": e.message}
        except Exception as e:  # a bug in a handler must not take the node down
            status, obj = 500, {"ok": False, "reason": "internal", "error": type(e).__name__}
        self._answer(status, obj)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._unread:
                self._linger()

    def _linger(self) -> None:
        """Read (bounded) what the client still sends before closing: closing a socket
        with unread bytes resets it, and the client could lose our answer."""
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(0.5)
            until, left = time.monotonic() + 1.0, 1024 * 1024
            while left > 0 and time.monotonic() < until:
                chunk = self.request.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)


class NodeApi:
    """The HTTP server. Routes are (method, path) -> handler(query, body) -> (status, json)."""

    def __init__(self, identity: Identity | None, host: str = "127.0.0.1", port: int = 0,
                 *, token: str | None = None, max_connections: int = MAX_CONNECTIONS,
                 max_per_network: int = MAX_PER_NETWORK,
                 external_hosts: Collection[str] = ()) -> None:
        """With an *identity* it answers GET /identity, and signs its API port on the
        address a request arrived on or on one of *external_hosts* (IP literals the user
        configured, e.g. its public address behind a NAT). With a *token*, every request must
        carry ``Authorization: Bearer TOKEN`` (the control API); others get 401. The
        control API also refuses (403) a Host other than its loopback address and port,
        and any request with an Origin header (DNS rebinding, a web page)."""
        self.identity = identity
        # Addresses (no port) on which peers outside may reach this node, e.g. behind a
        # NAT: /identity vouches for these as well as the address a request arrived on.
        # Fixed here, from the user's configuration only: an address a remote party
        # suggests (a peer's BEP 10 yourip, libtorrent's vote) would let it choose an
        # endpoint this node signs, and a relay there would pass as this node.
        self.external_hosts: frozenset[str] = frozenset(external_hosts)
        self._routes: dict[tuple[str, str], Route] = {}
        if identity is not None:
            self._routes[("GET", "/identity")] = self._identity
        self._expected = f"Bearer {token}".encode() if token is not None else None
        try:
            self._server = _Server((host, port), self, max_connections=max_connections,
                                   max_per_network=max_per_network)
        except OSError as e:
            raise NetworkError(f"cannot serve the node API on {host}:{port}: {e.strerror}",
                               remedy="pick a free port with --api-listen HOST:PORT") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="node-api",
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def route(self, method: str, path: str, handler: Route) -> None:
        self._routes[(method, path)] = handler

    def start(self) -> NodeApi:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: only if it runs
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> NodeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _identity(self, query: dict[str, list[str]], body: bytes) -> tuple[int, dict[str, Any]]:
        raw = query.get("challenge", [""])[0]
        try:
            challenge = bytes.fromhex(raw)
        except ValueError:
            challenge = b""
        if len(challenge) != CHALLENGE_LEN:
            raise ApiError(400, "bad-challenge", f"challenge must be {CHALLENGE_LEN} hex bytes")
        try:
            asker = key_from_text(query.get("asker", [""])[0])
        except P2PDistError:
            raise ApiError(400, "bad-asker", "asker must be the asking node's key "
                           "(identity proofs are v2: challenge, asker, endpoint)") from None
        endpoint = query.get("endpoint", [""])[0]
        try:
            split_endpoint(endpoint)
        except ValueError:
            raise ApiError(400, "bad-endpoint", "endpoint must be the HOST:PORT dialed, "
                           "as an IP literal in canonical form") from None
        identity = self.identity
        if identity is None:  # not routed then; kept total for the type checker
            raise ApiError(404, "not-found", "this API has no identity")
        if endpoint not in self._own_endpoints():
            # A relay forwarding its own asker's challenge to us: we do not vouch for it.
            raise ApiError(421, "other-endpoint", f"this node does not answer on {endpoint}")
        proof = SignedProof.sign(IdentityProof(pk=identity.public_key, asker=asker,
                                               endpoint=endpoint, challenge=challenge),
                                 identity)
        return 200, {"pk": key_to_text(identity.public_key), "name": identity.name,
                     "proof": proof.to_bytes().hex()}

    def _own_endpoints(self) -> set[str]:
        """The endpoints this node vouches for: its API port on the address the request
        arrived on (its bind address, or with a wildcard bind the interface dialed), or
        on an external address the user configured (--external-address). Nothing a
        remote party says about this node's address is ever signed."""
        local = getattr(_connection, "local", None)
        hosts = set(self.external_hosts)
        if local:
            hosts.add(str(local[0]))
        out = set()
        for h in hosts:
            with contextlib.suppress(ValueError):
                out.add(canonical_endpoint(h, self.port))
        return out


def identify(host: str, port: int, *, asker: bytes | None = None,
             timeout: float = 5.0) -> tuple[bytes, str]:
    """Ask the node at host:port who it is, and check it holds that key: (key, name).

    Unlike prove_identity there is no key to expect: the answer proves only possession
    of the key it names, on the endpoint dialed; the caller decides whether that key is
    one it trusts.
    """
    proof, name = ask_proof(host, port, asker=asker, timeout=timeout)
    return proof.proof.pk, name


def prove_identity(host: str, port: int, *, pk: bytes, asker: bytes | None = None,
                   timeout: float = 5.0) -> str:
    """Ask the node at host:port to prove it holds *pk*, on the endpoint dialed.

    Returns the name the node gives. Raises InvalidSignature (or its ProofRejected) when
    the answer is not *pk*'s proof of our challenge, our key and the endpoint we dialed
    (a relay), NetworkError when the node cannot be reached.
    """
    return ask_proof(host, port, asker=asker, keys=(pk,), timeout=timeout)[1]


def ask_proof(host: str, port: int, *, asker: bytes | None = None,
              keys: Collection[bytes] | None = None,
              timeout: float = 5.0) -> tuple[SignedProof, str]:
    """A fresh identity proof from the node at host:port, verified: signed by one of
    *keys* (any key if None), for *asker* (a throwaway key if None), over a fresh
    challenge and the exact endpoint dialed (the IP the connection went to, so a host
    name is resolved once). Returns the proof, for keeping, and the name the node gives.
    """
    if asker is None:
        asker = bytes(nacl.signing.SigningKey.generate().verify_key)
    challenge = os.urandom(CHALLENGE_LEN)
    dialed: list[str] = []

    def path(peer: tuple[Any, ...]) -> str:
        dialed.append(canonical_endpoint(str(peer[0]), int(peer[1])))
        return (f"/identity?challenge={challenge.hex()}&asker={key_to_text(asker)}"
                f"&endpoint={quote(dialed[0], safe='')}")

    status, data = _request(host, port, "GET", path, timeout=timeout)
    try:
        doc = _json.loads(data) if len(data) <= MAX_BODY and status == 200 else None
        if not isinstance(doc, dict):
            raise InvalidSignature()
        signed = SignedProof.from_bytes(bytes.fromhex(str(doc["proof"])))
    except (ValueError, KeyError, TypeError, P2PDistError):
        raise InvalidSignature(f"the node at {host}:{port} gave no valid proof of its key",
                               remedy="it may be an older p2pdist, or not the node it "
                               "claims to be (a relay)") from None
    verify_proof(signed, asker=asker, endpoint=dialed[0], challenge=challenge, keys=keys)
    return signed, str(doc.get("name", ""))[:200]


def post(host: str, port: int, path: str, body: bytes, *, timeout: float = 5.0
         ) -> tuple[int, dict[str, Any]]:
    """POST *body* to a peer's API; (status, JSON answer). NetworkError if unreachable."""
    status, data = _request(host, port, "POST", path, body=body, timeout=timeout)
    try:
        doc = _json.loads(data)
    except ValueError:
        doc = {}
    return status, doc if isinstance(doc, dict) else {}


def _request(host: str, port: int, method: str, path: str | Callable[[Any], str], *,
             body: bytes | None = None, timeout: float, token: str | None = None,
             limit: int = MAX_BODY) -> tuple[int, bytes]:
    """One request to a node's API: (status, at most *limit* + 1 bytes of answer).
    *path* may be a function of the address the connection went to (getpeername)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if callable(path):
            conn.connect()
            path = path(conn.sock.getpeername())
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(limit + 1)
    except (OSError, http.client.HTTPException) as e:
        raise NetworkError(f"the node API at {host}:{port} did not answer: {e}") from None
    finally:
        conn.close()
