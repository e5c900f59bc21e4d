"""IdentityProof (p2pdist/_proof.py): golden vectors, round trips, named bad inputs, and a
relayed GET /identity that fails (issue 20, finding 1)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist._api import NodeApi, ask_proof, prove_identity
from p2pdist._proof import (
    IDENTITY_DOMAIN,
    MAX_PROOF_SIZE,
    IdentityProof,
    ProofRejected,
    SignedProof,
    canonical_endpoint,
    split_endpoint,
    verify_proof,
)
from p2pdist.errors import InvalidSignature, MalformedObject
from p2pdist.identity import Identity, key_to_text
from tests.integration._rawhttp import exchange
from tests.integration._relay import RelayApi

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "proofs.json").read_text())["proofs"]


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


SELLER = _identity(bytes(range(32, 64)), "Ada")
FAN = _identity(bytes(range(32)), "fan")
MALLORY = _identity(b"\x07" * 32, "Mallory")
EP = "127.0.0.1:7001"
CHALLENGE = bytes(range(32))
BASE = IdentityProof(pk=SELLER.public_key, asker=FAN.public_key, endpoint=EP,
                     challenge=CHALLENGE)


def _check(envelope: bytes, **policy: Any) -> bytes:
    """What an asker that dialed EP with CHALLENGE, expecting SELLER, runs."""
    return verify_proof(SignedProof.from_bytes(envelope), **{
        "asker": FAN.public_key, "endpoint": EP, "challenge": CHALLENGE,
        "keys": (SELLER.public_key,), **policy})


def _envelope(body: bytes, sig: bytes) -> bytes:
    return _canonical.encode({"body": body, "sig": sig,
                              "type": "p2pdist/identity-proof/signed", "v": 1})


def _signed(d: dict[str, Any], who: Identity = SELLER,
            domain: bytes = IDENTITY_DOMAIN) -> bytes:
    body = _canonical.encode(d)
    return _envelope(body, who.sign(domain=domain, message=body))


def _replayed(change: dict[str, Any]) -> bytes:
    """The base proof's signature over a changed body."""
    body = _canonical.encode({**BASE.to_dict(), **change})
    return _envelope(body, SignedProof.sign(BASE, SELLER).sig)


# -- golden vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_proof_vector(case: dict[str, Any]) -> None:
    inp = case["input"]
    node = _identity(bytes.fromhex(inp["node_seed"]), "v")
    proof = IdentityProof(pk=node.public_key,
                          asker=_identity(bytes.fromhex(inp["asker_seed"]), "a").public_key,
                          endpoint=inp["endpoint"], challenge=bytes.fromhex(inp["challenge"]))
    signed = SignedProof.sign(proof, node)
    assert signed.body.hex() == case["body_hex"]
    assert signed.sig.hex() == case["sig_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    assert key_to_text(proof.pk) == case["expected"]["pk_text"]


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_stored_proof_vector_parses_and_verifies(case: dict[str, Any]) -> None:
    inp = case["input"]
    signed = SignedProof.from_bytes(bytes.fromhex(case["envelope_hex"]))
    asker = _identity(bytes.fromhex(inp["asker_seed"]), "a").public_key
    pk = verify_proof(signed, asker=asker, endpoint=inp["endpoint"],
                      challenge=bytes.fromhex(inp["challenge"]))
    assert key_to_text(pk) == case["expected"]["pk_text"]
    # By hand with PyNaCl: the domain is v2, over the body bytes exactly.
    nacl.signing.VerifyKey(pk).verify(b"p2pdist/identity/v2\0" + signed.body, signed.sig)
    assert len(case["envelope_hex"]) // 2 <= MAX_PROOF_SIZE


# -- round trips ---------------------------------------------------------------------------

_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str)
_endpoints = st.tuples(st.one_of(_ipv4, _ipv6), st.integers(1, 65535)).map(
    lambda hp: canonical_endpoint(*hp))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([SELLER, FAN, MALLORY]), st.binary(min_size=32, max_size=32),
       _endpoints, st.binary(min_size=32, max_size=32))
def test_identity_proof_round_trips(node: Identity, asker: bytes, endpoint: str,
                                    challenge: bytes) -> None:
    proof = IdentityProof(pk=node.public_key, asker=asker, endpoint=endpoint,
                          challenge=challenge)
    signed = SignedProof.sign(proof, node)
    again = SignedProof.from_bytes(signed.to_bytes())
    assert again == signed and again.proof == proof
    assert split_endpoint(endpoint) == split_endpoint(again.proof.endpoint)
    assert verify_proof(again, asker=asker, endpoint=endpoint, challenge=challenge,
                        keys=(node.public_key,)) == node.public_key


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_in_a_proof_is_refused(data: st.DataObject) -> None:
    envelope = bytearray(SignedProof.sign(BASE, SELLER).to_bytes())
    i = data.draw(st.integers(0, len(envelope) - 1))
    envelope[i] = data.draw(st.integers(0, 255).filter(lambda b: b != envelope[i]))
    with pytest.raises((InvalidSignature, MalformedObject)):
        _check(bytes(envelope))


# -- named bad inputs ----------------------------------------------------------------------

OTHER = bytes(32 * [9])
BAD: list[Any] = [
    # tampered: a field changed after signing, the signature kept
    pytest.param(lambda: _replayed({"endpoint": b"127.0.0.1:7002"}), InvalidSignature,
                 id="tampered-endpoint"),
    pytest.param(lambda: _replayed({"asker": OTHER}), InvalidSignature, id="tampered-asker"),
    pytest.param(lambda: _replayed({"challenge": OTHER}), InvalidSignature,
                 id="tampered-challenge"),
    pytest.param(lambda: _replayed({"pk": MALLORY.public_key}), InvalidSignature,
                 id="tampered-key"),
    # replayed: a true proof, for another challenge, asker or endpoint
    pytest.param(lambda: _signed({**BASE.to_dict(), "challenge": OTHER}), ProofRejected,
                 id="replayed-old-challenge"),
    pytest.param(lambda: _signed({**BASE.to_dict(), "asker": MALLORY.public_key}),
                 ProofRejected, id="given-to-another-asker"),
    pytest.param(lambda: _signed({**BASE.to_dict(), "endpoint": b"127.0.0.1:7002"}),
                 ProofRejected, id="relayed-proof-of-the-sellers-own-endpoint"),
    # wrong key
    pytest.param(lambda: _signed({**BASE.to_dict(), "pk": MALLORY.public_key}, MALLORY),
                 ProofRejected, id="true-proof-of-another-key"),
    pytest.param(lambda: _signed(BASE.to_dict(), MALLORY), InvalidSignature,
                 id="signed-by-mallory-naming-the-seller"),
    pytest.param(lambda: _signed(BASE.to_dict(), domain=b"p2pdist/identity/v1"),
                 InvalidSignature, id="signed-in-the-v1-domain"),
    pytest.param(lambda: _envelope(_canonical.encode(BASE.to_dict()), SELLER.sign(
        domain=b"p2pdist/identity/v1", message=CHALLENGE + SELLER.public_key)),
        InvalidSignature, id="v1-signature-over-challenge-and-key"),
    # sizes
    pytest.param(lambda: SignedProof.sign(BASE, SELLER).to_bytes()[:-1], MalformedObject,
                 id="truncated"),
    pytest.param(lambda: _signed({**BASE.to_dict(), "pad": b"x" * MAX_PROOF_SIZE}),
                 MalformedObject, id="oversized"),
    pytest.param(lambda: b"", MalformedObject, id="empty"),
    # endpoints in any form but the canonical one, properly signed
    *(pytest.param(lambda ep=ep: _signed({**BASE.to_dict(), "endpoint": ep}),
                   MalformedObject, id=f"endpoint-{name}")
      for name, ep in (("hostname", b"localhost:7001"), ("no-port", b"127.0.0.1"),
                       ("port-0", b"127.0.0.1:0"), ("port-leading-zero", b"127.0.0.1:07001"),
                       ("port-too-big", b"127.0.0.1:65536"),
                       ("ipv4-mapped-ipv6", b"[::ffff:127.0.0.1]:7001"),
                       ("ipv6-without-brackets", b"::1:7001"),
                       ("ipv6-uncompressed", b"[0:0:0:0:0:0:0:1]:7001"),
                       ("ipv6-upper-case", b"[2001:DB8::1]:7001"),
                       ("ipv4-leading-zero", b"127.0.0.01:7001"),
                       ("scoped-ipv6", b"[fe80::1%eth0]:7001"),
                       ("space", b"127.0.0.1: 7001"))),
]


@pytest.mark.parametrize("make,error", BAD)
def test_a_bad_identity_proof_is_refused(make: Callable[[], bytes],
                                         error: type[Exception]) -> None:
    with pytest.raises(error) as e:
        _check(make())
    assert isinstance(e.value, InvalidSignature | MalformedObject)
    assert e.value.exit_code == 3


def test_the_base_proof_verifies() -> None:
    assert _check(SignedProof.sign(BASE, SELLER).to_bytes()) == SELLER.public_key


@pytest.mark.parametrize("host,port,text", [
    ("127.0.0.1", 1, "127.0.0.1:1"),
    ("::ffff:10.0.0.1", 80, "10.0.0.1:80"),
    ("[::1]", 7001, "[::1]:7001"),
    ("2001:DB8:0:0::1", 65535, "[2001:db8::1]:65535"),
])
def test_canonical_endpoint(host: str, port: int, text: str) -> None:
    assert canonical_endpoint(host, port) == text
    assert split_endpoint(text)[1] == port


@pytest.mark.parametrize("host,port", [("localhost", 7001), ("127.0.0.1", 0),
                                       ("127.0.0.1", 65536), ("", 1)])
def test_canonical_endpoint_refuses_names_and_bad_ports(host: str, port: int) -> None:
    with pytest.raises(ValueError):
        canonical_endpoint(host, port)


# -- over HTTP on 127.0.0.1: the signer and a relay ------------------------------------------


def _ask(port: int, endpoint: str) -> tuple[int, dict[str, Any]]:
    path = (f"/identity?challenge={os.urandom(32).hex()}&asker={key_to_text(FAN.public_key)}"
            f"&endpoint={endpoint.replace(':', '%3A')}")
    a = exchange(port, f"GET {path} HTTP/1.1\r\n\r\n".encode())
    return a.status, a.doc if isinstance(a.doc, dict) else {}


def test_a_node_signs_only_its_own_endpoint() -> None:
    with NodeApi(SELLER) as api:
        status, doc = _ask(api.port, f"127.0.0.1:{api.port}")
        assert status == 200
        proof = SignedProof.from_bytes(bytes.fromhex(doc["proof"])).proof
        assert proof.endpoint == f"127.0.0.1:{api.port}" and proof.asker == FAN.public_key
        # Another port (a relay's), another address, a name: refused, nothing signed.
        for other in (f"127.0.0.1:{api.port + 1}", f"127.0.0.2:{api.port}",
                      f"10.0.0.1:{api.port}"):
            status, doc = _ask(api.port, other)
            assert (status, doc["reason"]) == (421, "other-endpoint"), other
            assert "proof" not in doc
        status, doc = _ask(api.port, f"localhost:{api.port}")
        assert (status, doc["reason"]) == (400, "bad-endpoint")
        # The v1 question (a challenge alone) is not answered any more.
        a = exchange(api.port, f"GET /identity?challenge={'00' * 32} HTTP/1.1\r\n\r\n"
                     .encode())
        assert a.status == 400


def test_a_node_vouches_for_an_external_address_configured() -> None:
    with NodeApi(SELLER, external_hosts=("203.0.113.7",)) as api:
        assert _ask(api.port, f"203.0.113.7:{api.port}")[0] == 200
        assert _ask(api.port, f"203.0.113.7:{api.port + 1}")[0] == 421
        assert _ask(api.port, f"203.0.113.8:{api.port}")[0] == 421
        # Fixed at start: nothing a peer says later can add to it.
        assert isinstance(api.external_hosts, frozenset)


def test_a_relayed_identity_answer_fails_verification() -> None:
    # Mallory's API claims the seller's key and forwards GET /identity to the seller:
    # verbatim (the seller refuses to sign Mallory's endpoint), then rewritten to the
    # seller's own endpoint (signed, but not the endpoint the fan dialed).
    with NodeApi(SELLER) as seller, RelayApi(seller.port) as relay:
        with pytest.raises(InvalidSignature):
            prove_identity("127.0.0.1", relay.port, pk=SELLER.public_key,
                           asker=FAN.public_key)
        with pytest.raises(ProofRejected) as e:
            ask_proof("127.0.0.1", relay.port, asker=FAN.public_key)
        assert e.value.reason == "other-endpoint"
        assert len(relay.identity_asks) == 2
        # The seller itself still proves its key to the fan, on its own endpoint.
        assert prove_identity("127.0.0.1", seller.port, pk=SELLER.public_key,
                              asker=FAN.public_key) == "Ada"
