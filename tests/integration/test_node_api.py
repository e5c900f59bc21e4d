"""The node API on 127.0.0.1: identity by challenge, and bounded under abuse."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from p2pdist._api import (
    NodeApi,
    PeerClaim,
    client_string,
    parse_client_string,
    prove_identity,
)
from p2pdist.errors import InvalidSignature, NetworkError
from p2pdist.identity import Identity, key_to_text
from tests.conftest import free_port


def _ident(name: str) -> Identity:
    import nacl.signing

    return Identity(name, nacl.signing.SigningKey.generate())


def _get(port: int, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body,
                     headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_node_proves_its_key_by_signing_a_fresh_challenge() -> None:
    ada = _ident("Ada")
    with NodeApi(ada) as api:
        assert prove_identity("127.0.0.1", api.port, pk=ada.public_key) == "Ada"


def test_impostor_claiming_another_key_is_refused() -> None:
    ada, mallory = _ident("Ada"), _ident("Mallory")
    with NodeApi(mallory) as api, pytest.raises(InvalidSignature):
        prove_identity("127.0.0.1", api.port, pk=ada.public_key)


def test_unreachable_node_is_a_network_error() -> None:
    with pytest.raises(NetworkError):
        prove_identity("127.0.0.1", free_port(), pk=_ident("x").public_key, timeout=2)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason"),
    [
        ("/identity?challenge=zz", None, {}, 400, "bad-challenge"),
        ("/identity?challenge=" + "ab" * 31, None, {}, 400, "bad-challenge"),
        ("/identity", None, {}, 400, "bad-challenge"),
        ("/nothing", None, {}, 404, "not-found"),
        ("/identity", b"x", {"Content-Length": "999999999"}, 413, "oversized"),
    ],
    ids=["not-hex", "short", "missing", "unknown-path", "oversized-body"],
)
def test_bad_requests_get_a_4xx_with_a_reason(
    path: str, body: bytes | None, headers: dict[str, str], status: int, reason: str
) -> None:
    with NodeApi(_ident("Ada")) as api:
        got_status, doc = _get(api.port, path, body, headers)
        assert (got_status, doc["reason"]) == (status, reason)
        # and the node still answers properly afterwards
        assert prove_identity("127.0.0.1", api.port, pk=api.identity.public_key)


def test_slow_clients_do_not_starve_the_api() -> None:
    ada = _ident("Ada")
    with NodeApi(ada) as api:
        slow = []
        for _ in range(30):  # bounded: 30 half-open requests
            s = socket.create_connection(("127.0.0.1", api.port), timeout=5)
            s.sendall(b"GET /identity?challenge=")  # and never finish the line
            slow.append(s)
        started = time.monotonic()
        assert prove_identity("127.0.0.1", api.port, pk=ada.public_key) == "Ada"
        assert time.monotonic() - started < 2
        time.sleep(6)  # past the read timeout: the server said 408 and hung up on them
        for s in slow:
            s.settimeout(2)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.0 408 "), answer
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["reason"] == "timeout"
            s.close()


@pytest.mark.parametrize("api_port", [7001, None], ids=["with-api", "without-api"])
def test_client_string_round_trips(api_port: int | None) -> None:
    ada = _ident("Ada")
    claim = parse_client_string(client_string(ada.public_key, api_port))
    assert claim == PeerClaim(ada.public_key, api_port)


@pytest.mark.parametrize(
    "text",
    ["", "qBittorrent/4.5.2", "aria2/1.36.0", "p2pdist/0.1 pk=short",
     "p2pdist/0.1 pk=" + "a" * 51 + "1", "p2pdist/0.1 pk={k} api=99999", "p2pdist/0.1 pk={K}"],
    ids=["empty", "qbittorrent", "aria2", "short-key", "bad-alphabet", "port-out-of-range",
         "upper-case"],
)
def test_plain_or_garbled_client_strings_claim_nothing(text: str) -> None:
    k = key_to_text(_ident("x").public_key)
    claim = parse_client_string(text.format(k=k, K=k.upper()))
    if "99999" in text:
        assert claim is not None and claim.api_port is None
    else:
        assert claim is None
