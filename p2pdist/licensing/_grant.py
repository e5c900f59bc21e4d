"""LicenseGrant: a paid work's content key, sealed to one buyer and signed by a seller.

    {type: p2pdist/license-grant, v: 1, work, buyer, seller, key_id, sealed_key, ts}

``sealed_key`` is the 32-byte content key in a libsodium sealed box to the buyer's X25519
key, derived from the buyer's ed25519 key: only that buyer's secret key opens it, so a
grant copied to another home unlocks nothing. ``key_id`` is the manifest's public
commitment to the key. The seller signs the grant (domain ``p2pdist/grant/v1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from p2pdist import _canonical
from p2pdist._signed import (
    MAX_TS,
    as_bytes,
    as_dict,
    as_int,
    check_version,
    envelope,
    read_signed,
)
from p2pdist.errors import InvalidSignature, MalformedObject, NotLicensed
from p2pdist.identity import Identity, fingerprint, open_sealed, seal_to, verify_signature

__all__ = ["GRANT_DOMAIN", "LicenseGrant", "SignedGrant", "open_grant", "seal_key",
           "verify_grant"]

GRANT_TYPE: Final = "p2pdist/license-grant"
GRANT_DOMAIN: Final = b"p2pdist/grant/v1"
SEALED_LEN: Final = 32 + 48  # the key, plus an ephemeral X25519 key and a MAC
MAX_GRANT_SIZE: Final = 1024


def seal_key(content_key: bytes, buyer: bytes) -> bytes:
    """The content key in a sealed box that only *buyer*'s secret key opens."""
    if len(content_key) != 32:
        raise ValueError("a content key is 32 bytes")
    return seal_to(content_key, buyer)


@dataclass(frozen=True, slots=True)
class LicenseGrant:
    work: bytes
    buyer: bytes
    seller: bytes
    key_id: bytes
    sealed_key: bytes
    ts: datetime

    def __post_init__(self) -> None:
        for name in ("work", "buyer", "seller", "key_id"):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 32:
                raise ValueError(f"a grant's {name} is 32 bytes")
        if not isinstance(self.sealed_key, bytes) or len(self.sealed_key) != SEALED_LEN:
            raise ValueError(f"a sealed key is {SEALED_LEN} bytes")
        ts = self.ts
        if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond \
                or not 0 <= ts.timestamp() <= MAX_TS:
            raise ValueError("a grant's ts is an aware datetime in whole seconds")
        object.__setattr__(self, "ts", ts.astimezone(UTC))

    def to_dict(self) -> dict[str, object]:
        return {"buyer": self.buyer, "key_id": self.key_id, "sealed_key": self.sealed_key,
                "seller": self.seller, "ts": int(self.ts.timestamp()), "type": GRANT_TYPE,
                "v": 1, "work": self.work}

    @classmethod
    def from_dict(cls, raw: Any) -> LicenseGrant:
        d = as_dict(raw, "license grant", frozenset(
            {"type", "v", "work", "buyer", "seller", "key_id", "sealed_key", "ts"}))
        check_version(d, GRANT_TYPE, "license grant")
        return cls(
            work=as_bytes(d["work"], "grant's work id", 32),
            buyer=as_bytes(d["buyer"], "grant's buyer key", 32),
            seller=as_bytes(d["seller"], "grant's seller key", 32),
            key_id=as_bytes(d["key_id"], "grant's key id", 32),
            sealed_key=as_bytes(d["sealed_key"], "sealed key", SEALED_LEN),
            ts=datetime.fromtimestamp(as_int(d["ts"], "grant's time", 0, MAX_TS), UTC),
        )


@dataclass(frozen=True, slots=True)
class SignedGrant:
    body: bytes
    grant: LicenseGrant
    sig: bytes

    @classmethod
    def sign(cls, grant: LicenseGrant, seller: Identity) -> SignedGrant:
        if seller.public_key != grant.seller:
            raise ValueError("only the seller it names signs a grant")
        body = _canonical.encode(grant.to_dict())
        return cls(body, grant, seller.sign(domain=GRANT_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(GRANT_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedGrant:
        body, d, sig = read_signed(data, GRANT_TYPE, max_size=MAX_GRANT_SIZE,
                                   what="license grant")
        try:
            return cls(body, LicenseGrant.from_dict(d), sig)
        except ValueError as e:
            raise MalformedObject(f"the license grant is invalid: {e}") from None


def verify_grant(signed: SignedGrant, *, work: bytes, buyer: bytes,
                 sellers: tuple[bytes, ...], key_id: bytes) -> None:
    """Verify a grant before opening it.

    Checks, in order:
      (1) the seller it names signed the grant bytes               (InvalidSignature);
      (2) that seller is one the work's license names                   (NotLicensed);
      (3) it is for *work* and *buyer*                                  (NotLicensed);
      (4) it commits to the license's *key_id*                          (NotLicensed).
    """
    g = signed.grant
    # (1)
    verify_signature(pk=g.seller, domain=GRANT_DOMAIN, message=signed.body,
                     signature=signed.sig)
    # (2)
    if g.seller not in sellers:
        raise NotLicensed(f"the grant is signed by {fingerprint(g.seller)}, who is not a "
                          "seller of this work", remedy="buy it with p2pdist buy")
    # (3)
    if g.work != work:
        raise NotLicensed("the grant is for another work", remedy="buy it with p2pdist buy")
    if g.buyer != buyer:
        raise NotLicensed(f"not licensed: the grant is for {fingerprint(g.buyer)}, not you "
                          f"({fingerprint(buyer)})", remedy="buy it with p2pdist buy")
    # (4)
    if g.key_id != key_id:
        raise NotLicensed("the grant is for another key than the license's",
                          remedy="buy it again from a seller the license names")


def open_grant(signed: SignedGrant, identity: Identity) -> bytes:
    """The content key, opened with the buyer's secret key (after verify_grant)."""
    if identity.public_key != signed.grant.buyer:
        raise NotLicensed("not licensed: this grant is for another key",
                          remedy="buy it with p2pdist buy")
    key = open_sealed(signed.grant.sealed_key, identity)
    if key is None or len(key) != 32:
        raise InvalidSignature("the grant's sealed key does not open")
    return key
