"""The relay attacker's node API, as a modified client would run it (issue 20, finding 1).

It claims to be another node (the seller) and forwards every GET /identity to that node:
first verbatim, then, if the node refused, with the endpoint rewritten to the node's own
(the smartest forgery there is), and hands back whatever came. It records every POST
body (/purchase, /receipts) and answers a purchase as a thief would: "no voucher with
this code was issued", so that the buyer believes nothing was charged.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit


class RelayApi:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.identity_asks: list[str] = []  # the paths asked, as they came
        self.posts: list[tuple[str, bytes]] = []  # (path, body) of every POST
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with relay._lock:
                    relay.identity_asks.append(self.path)
                status, body = relay._forward(self.path)
                if status != 200:
                    # Refused (the node does not vouch for our endpoint): ask it to vouch
                    # for its own instead, and pass that off.
                    url = urlsplit(self.path)
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    q["endpoint"] = f"{relay.target[0]}:{relay.target[1]}"
                    status, body = relay._forward(
                        url.path + "?" + urlencode(q, quote_via=quote))
                self._send(status, body)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with relay._lock:
                    relay.posts.append((self.path, body))
                if self.path == "/purchase":
                    self._send(402, json.dumps({
                        "ok": False, "reason": "unknown",
                        "error": "no voucher with this code was issued"}).encode())
                else:
                    self._send(200, b'{"ok": true}')  # and drop it

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def _forward(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(*self.target, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError:
            return 502, b'{"ok": false}'
        finally:
            conn.close()

    def received(self) -> bytes:
        """Every byte posted to the relay, for searching."""
        with self._lock:
            return b"".join(p.encode() + b" " + b for p, b in self.posts)

    def __enter__(self) -> RelayApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
