"""The node API: a small HTTP server next to the BitTorrent port, and its client side.

Public part (any peer may call it):
  GET  /identity?challenge=HEX   the node signs the challenge with its key
  POST /receipts                 (issue 3) a downloader's signed receipt for this node

Bounded by design: request bodies are capped before reading, each connection has a read
timeout (slow clients are cut off), and handler errors become 4xx/5xx JSON, never a
traceback. Built on the standard library's ThreadingHTTPServer: one thread per
connection, which the caps above keep bounded.
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from p2pdist import __version__
from p2pdist.errors import InvalidSignature, NetworkError, P2PDistError, StorageError
from p2pdist.identity import Identity, key_from_text, key_to_text, verify_signature

__all__ = [
    "IDENTITY_DOMAIN",
    "ApiError",
    "NodeApi",
    "PeerClaim",
    "client_string",
    "identify",
    "parse_client_string",
    "post",
    "prove_identity",
]

IDENTITY_DOMAIN = b"p2pdist/identity/v1"
MAX_BODY = 64 * 1024
READ_TIMEOUT = 5.0
CHALLENGE_LEN = 32

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


def _identity_message(challenge: bytes, pk: bytes) -> bytes:
    return challenge + pk


Route = Callable[[dict[str, list[str]], bytes], tuple[int, dict[str, Any]]]


class NodeApi:
    """The HTTP server. Routes are (method, path) -> handler(query, body) -> (status, json)."""

    def __init__(self, identity: Identity | None, host: str = "127.0.0.1", port: int = 0,
                 *, token: str | None = None) -> None:
        """With an *identity* it answers GET /identity. With a *token*, every request must
        carry ``Authorization: Bearer TOKEN`` (the control API); others get 401."""
        self.identity = identity
        self._routes: dict[tuple[str, str], Route] = {}
        if identity is not None:
            self._routes[("GET", "/identity")] = self._identity
        expected = f"Bearer {token}".encode() if token is not None else None
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = f"p2pdist/{__version__}"
            sys_version = ""
            timeout = READ_TIMEOUT  # socket timeout: a slow-loris client is cut off

            def log_message(self, format: str, *args: Any) -> None:
                return  # the node's own status shows what matters; no stderr noise

            def _answer(self, status: int, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                try:
                    if expected is not None and not hmac.compare_digest(
                            self.headers.get("Authorization", "").encode(), expected):
                        raise ApiError(401, "unauthorized", "a valid control token is needed")
                    url = urlsplit(self.path)
                    length = self.headers.get("Content-Length", "0")
                    if not (length.isascii() and length.isdigit()):
                        raise ApiError(400, "bad-length", "Content-Length is not a number")
                    if int(length) > MAX_BODY:
                        raise ApiError(413, "oversized", f"body over {MAX_BODY} bytes")
                    route = api._routes.get((method, url.path))
                    if route is None:
                        raise ApiError(404, "not-found", f"no {method} {url.path}")
                    body = self.rfile.read(int(length)) if int(length) else b""
                    if len(body) != int(length):
                        raise ApiError(400, "truncated", "body shorter than Content-Length")
                    status, obj = route(parse_qs(url.query, max_num_fields=16), body)
                    self._answer(status, obj)
                except ApiError as e:
                    self._answer(e.status, {"ok": False, "reason": e.reason, "error": e.message})
                except P2PDistError as e:
                    # A disk that failed us is our problem, not the request's: 507 says
                    # "nothing was kept, send it again later".
                    code = (507 if isinstance(e, StorageError) else
                            422 if e.exit_code == 3 else 400)
                    self._answer(code, {"ok": False, "reason": type(e).__name__,
                                        "error": e.message})
                except (TimeoutError, ConnectionError):
                    self.close_connection = True
                except Exception as e:  # a bug in a handler must not take the node down
                    self._answer(500, {"ok": False, "reason": "internal",
                                       "error": type(e).__name__})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

        try:
            self._server = Server((host, port), Handler)
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
        identity = self.identity
        if identity is None:  # not routed then; kept total for the type checker
            raise ApiError(404, "not-found", "this API has no identity")
        pk = identity.public_key
        sig = identity.sign(domain=IDENTITY_DOMAIN,
                                 message=_identity_message(challenge, pk))
        return 200, {"pk": key_to_text(pk), "name": identity.name,
                     "challenge": challenge.hex(), "sig": sig.hex()}


def identify(host: str, port: int, *, timeout: float = 5.0) -> tuple[bytes, str]:
    """Ask the node at host:port who it is, and check it holds that key: (key, name).

    Unlike prove_identity there is no key to expect: the answer proves only possession
    of the key it names; the caller decides whether that key is one it trusts.
    """
    return _challenge(host, port, None, timeout)


def prove_identity(host: str, port: int, *, pk: bytes, timeout: float = 5.0) -> str:
    """Ask the node at host:port to sign a fresh challenge; check it is *pk*'s signature.

    Returns the name the node gives. Raises InvalidSignature when the answer is not a
    signature by *pk* over our challenge, NetworkError when the node cannot be reached.
    """
    return _challenge(host, port, pk, timeout)[1]


def _challenge(host: str, port: int, pk: bytes | None, timeout: float) -> tuple[bytes, str]:
    challenge = os.urandom(CHALLENGE_LEN)
    status, data = _request(host, port, "GET", f"/identity?challenge={challenge.hex()}",
                            timeout=timeout)
    try:
        doc = json.loads(data) if len(data) <= MAX_BODY and status == 200 else None
        if not isinstance(doc, dict) or doc.get("challenge") != challenge.hex():
            raise InvalidSignature()
        named = key_from_text(str(doc["pk"]))
        if pk is not None and named != pk:
            raise InvalidSignature()
        sig = bytes.fromhex(str(doc["sig"]))
    except (ValueError, KeyError, P2PDistError):
        raise InvalidSignature(f"the node at {host}:{port} gave no valid proof of its key") \
            from None
    verify_signature(pk=named, domain=IDENTITY_DOMAIN,
                     message=_identity_message(challenge, named), signature=sig)
    return named, str(doc.get("name", ""))[:200]


def post(host: str, port: int, path: str, body: bytes, *, timeout: float = 5.0
         ) -> tuple[int, dict[str, Any]]:
    """POST *body* to a peer's API; (status, JSON answer). NetworkError if unreachable."""
    status, data = _request(host, port, "POST", path, body=body, timeout=timeout)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    return status, doc if isinstance(doc, dict) else {}


def _request(host: str, port: int, method: str, path: str, *, body: bytes | None = None,
             timeout: float, token: str | None = None,
             limit: int = MAX_BODY) -> tuple[int, bytes]:
    """One request to a node's API: (status, at most *limit* + 1 bytes of answer)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(limit + 1)
    except (OSError, http.client.HTTPException) as e:
        raise NetworkError(f"the node API at {host}:{port} did not answer: {e}") from None
    finally:
        conn.close()
