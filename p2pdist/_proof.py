"""Identity proofs bound to the endpoint they were asked on (GET /identity).

IdentityProof, signed by the node it names (domain ``p2pdist/identity/v2``)::

    {type: p2pdist/identity-proof, v: 1, pk, asker, endpoint, challenge}

``asker`` is the key of the node that asked, ``endpoint`` the API address it dialed, in
one canonical text form (``1.2.3.4:7001``, ``[2001:db8::1]:7001``: an IP literal, never a
name), and ``challenge`` the asker's fresh 32 random bytes. A node signs only an endpoint
that is its own (its API port, on the address the request arrived on or on an address
the user configured with --external-address; never one a peer reported, such as BEP 10's
yourip), and the asker accepts only a proof of exactly the endpoint it dialed.
So a relay that forwards GET /identity to another node cannot pass as that node: the
other node refuses to sign the relay's endpoint, or signs its own, which the asker did
not dial. (The v1 proof signed ``challenge || pk`` alone, and a relay passed.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from p2pdist import _canonical
from p2pdist._signed import as_bytes, as_dict, as_text, check_version, envelope, read_signed
from p2pdist.errors import InvalidSignature, MalformedObject
from p2pdist.identity import Identity, fingerprint, verify_signature

__all__ = [
    "CHALLENGE_LEN",
    "IDENTITY_DOMAIN",
    "IdentityProof",
    "ProofRejected",
    "SignedProof",
    "canonical_endpoint",
    "split_endpoint",
    "verify_proof",
]

IDENTITY_DOMAIN: Final = b"p2pdist/identity/v2"
PROOF_TYPE: Final = "p2pdist/identity-proof"
CHALLENGE_LEN: Final = 32
MAX_ENDPOINT: Final = 64  # "[" 39 characters of IPv6 "]:" 5 digits
MAX_PROOF_SIZE: Final = 512

PROOF_REASONS: Final = ("other-key", "other-asker", "other-endpoint", "other-challenge")


class ProofRejected(InvalidSignature):
    """A well-signed identity proof that does not vouch for what the asker needs (to a
    caller that asked "is this *pk* here?", as good as a bad signature)."""

    def __init__(self, message: str, *, reason: str) -> None:
        if reason not in PROOF_REASONS:
            raise ValueError(f"unknown proof rejection reason {reason!r}")
        super().__init__(message, remedy="ask the node's own API: a relay cannot prove "
                         "another node's key")
        self.reason = reason


def canonical_endpoint(host: str, port: int) -> str:
    """The one text form of an endpoint: an IP literal (IPv4-mapped IPv6 as IPv4, IPv6 in
    brackets, compressed) and a port in 1..65535. ValueError for a host name."""
    ip = ipaddress.ip_address(host.strip().removeprefix("[").removesuffix("]")
                              .partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"a port is 1..65535, not {port!r}")
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip.compressed}:{port}"


def split_endpoint(text: str) -> tuple[str, int]:
    """(host, port) of an endpoint in its canonical form; ValueError for any other form."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5:
        raise ValueError(f"not an endpoint: {text[:80]!r}")
    if canonical_endpoint(host, int(port)) != text:
        raise ValueError(f"not a canonical endpoint: {text[:80]!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


@dataclass(frozen=True, slots=True)
class IdentityProof:
    pk: bytes
    asker: bytes
    endpoint: str
    challenge: bytes

    def __post_init__(self) -> None:
        for name in ("pk", "asker"):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 32:
                raise ValueError(f"a proof's {name} is a 32-byte key")
        if not isinstance(self.challenge, bytes) or len(self.challenge) != CHALLENGE_LEN:
            raise ValueError(f"a challenge is {CHALLENGE_LEN} bytes")
        if not isinstance(self.endpoint, str) or len(self.endpoint) > MAX_ENDPOINT:
            raise ValueError("an endpoint is a short string")
        split_endpoint(self.endpoint)

    def to_dict(self) -> dict[str, object]:
        return {"asker": self.asker, "challenge": self.challenge,
                "endpoint": self.endpoint.encode(), "pk": self.pk, "type": PROOF_TYPE,
                "v": 1}

    @classmethod
    def from_dict(cls, raw: Any) -> IdentityProof:
        d = as_dict(raw, "identity proof",
                    frozenset({"type", "v", "pk", "asker", "endpoint", "challenge"}))
        check_version(d, PROOF_TYPE, "identity proof")
        try:
            return cls(pk=as_bytes(d["pk"], "proof's key", 32),
                       asker=as_bytes(d["asker"], "asker's key", 32),
                       endpoint=as_text(d["endpoint"], "endpoint", max_len=MAX_ENDPOINT),
                       challenge=as_bytes(d["challenge"], "challenge", CHALLENGE_LEN))
        except ValueError as e:
            raise MalformedObject(f"the identity proof is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class SignedProof:
    body: bytes
    proof: IdentityProof
    sig: bytes

    @classmethod
    def sign(cls, proof: IdentityProof, node: Identity) -> SignedProof:
        if node.public_key != proof.pk:
            raise ValueError("only the node it names signs an identity proof")
        body = _canonical.encode(proof.to_dict())
        return cls(body, proof, node.sign(domain=IDENTITY_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(PROOF_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedProof:
        body, d, sig = read_signed(data, PROOF_TYPE, max_size=MAX_PROOF_SIZE,
                                   what="identity proof")
        return cls(body, IdentityProof.from_dict(d), sig)


def verify_proof(signed: SignedProof, *, asker: bytes, endpoint: str,
                 challenge: bytes | None, keys: Collection[bytes] | None = None) -> bytes:
    """Check a proof as the asker that dialed *endpoint*; the key it proves.

    Checks, in order:
      (1) the key it names signed the proof bytes                     (InvalidSignature);
      (2) that key is one of *keys*, if given                         ("other-key");
      (3) it was asked by *asker*                                     ("other-asker");
      (4) for exactly *endpoint* (canonical form)                     ("other-endpoint");
      (5) over *challenge*, if given (None: a stored proof, checked   ("other-challenge")
          again live before anything is sent on its word).
    """
    p = signed.proof
    verify_signature(pk=p.pk, domain=IDENTITY_DOMAIN, message=signed.body,
                     signature=signed.sig)
    if keys is not None and p.pk not in keys:
        raise ProofRejected(f"the node proved {fingerprint(p.pk)}, not a key expected here",
                            reason="other-key")
    if p.asker != asker:
        raise ProofRejected("the proof was given to another asker", reason="other-asker")
    if p.endpoint != endpoint:
        raise ProofRejected(f"the proof vouches for {p.endpoint}, not {endpoint} (a relay?)",
                            reason="other-endpoint")
    if challenge is not None and p.challenge != challenge:
        raise ProofRejected("the proof answers another challenge", reason="other-challenge")
    return p.pk
