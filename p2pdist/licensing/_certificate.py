"""ArtistCertificate: a label vouches that a key is one of its artists.

    {type: p2pdist/artist-certificate, v: 1, artist, name, label, label_name, issued,
     expires?}

The label signs it (domain ``p2pdist/certificate/v1``) in the shared envelope of
``p2pdist/_signed.py``. ``expires`` is absent for a certificate without an end. A
certificate is embedded in the manifests of the artist's works, so a fan who trusts the
label can trust the work without knowing the artist's key.

``name`` and ``label_name`` are what the label *claims*: anybody can sign a certificate
naming themselves "Big Label". What a certificate is worth comes from the fan's trust in
the label's key (``p2pdist.trust``), never from these names.

Expiry is not a verification failure: an expired certificate still verifies, and its
status says so. It is expired from the second ``expires`` names on (``now >= expires``,
as python-tuf's ``is_expired``).
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
    as_text,
    check_version,
    envelope,
    read_signed,
)
from p2pdist._text import is_printable
from p2pdist.errors import MalformedObject, VerificationError
from p2pdist.identity import Identity, fingerprint, key_to_text, verify_signature

__all__ = [
    "CERTIFICATE_DOMAIN",
    "MAX_CERTIFICATE_SIZE",
    "ArtistCertificate",
    "CertificateMismatch",
    "CertificateStatus",
    "SignedCertificate",
    "verify_certificate",
]

CERTIFICATE_TYPE: Final = "p2pdist/artist-certificate"
CERTIFICATE_DOMAIN: Final = b"p2pdist/certificate/v1"
MAX_CERTIFICATE_NAME: Final = 300
# The largest certificate that can be signed is about 2.7 KB: two names of 300
# four-byte characters. The bound leaves headroom over it, not over anything else.
MAX_CERTIFICATE_SIZE: Final = 4096
_KEYS: Final = frozenset({"type", "v", "artist", "name", "label", "label_name", "issued"})


def _time(ts: Any, what: str) -> datetime:
    if not isinstance(ts, datetime) or ts.utcoffset() is None or ts.microsecond \
            or not 0 <= ts.timestamp() <= MAX_TS:
        raise ValueError(f"a certificate's {what} is an aware datetime in whole seconds")
    return ts.astimezone(UTC)


def _now(now: Any) -> datetime:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError("now is an aware datetime")
    return now


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class CertificateMismatch(VerificationError):
    """A well-signed certificate of another artist than the one it was checked for."""

    default_remedy = "ask the label for a certificate of this artist's key"


@dataclass(frozen=True, slots=True)
class ArtistCertificate:
    """*label* (calling itself *label_name*) certifies that *artist* is *name*."""

    artist: bytes
    name: str
    label: bytes
    label_name: str
    issued: datetime
    expires: datetime | None = None

    def __post_init__(self) -> None:
        # The same rules as from_dict: whatever a label can sign, a fan can verify.
        for key in ("artist", "label"):
            v = getattr(self, key)
            if not isinstance(v, bytes) or len(v) != 32:
                raise ValueError(f"a certificate's {key} key is 32 bytes")
        for key in ("name", "label_name"):
            v = getattr(self, key)
            if not isinstance(v, str) or not is_printable(v, max_len=MAX_CERTIFICATE_NAME):
                raise ValueError(f"a certificate's {key} is 1 to {MAX_CERTIFICATE_NAME} "
                                 "printable characters")
        object.__setattr__(self, "issued", _time(self.issued, "issue time"))
        if self.expires is not None:
            object.__setattr__(self, "expires", _time(self.expires, "expiry"))
            if self.expires <= self.issued:
                raise ValueError("a certificate expires after it is issued")

    def is_expired(self, *, now: datetime) -> bool:
        """True from the second ``expires`` names on; never for a certificate without."""
        return self.expires is not None and _now(now) >= self.expires

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "artist": self.artist, "issued": int(self.issued.timestamp()),
            "label": self.label, "label_name": self.label_name.encode(),
            "name": self.name.encode(), "type": CERTIFICATE_TYPE, "v": 1,
        }
        if self.expires is not None:  # optional: absent, never empty
            d["expires"] = int(self.expires.timestamp())
        return d

    @classmethod
    def from_dict(cls, raw: Any) -> ArtistCertificate:
        d = as_dict(raw, "artist certificate", _KEYS, frozenset({"expires"}))
        check_version(d, CERTIFICATE_TYPE, "artist certificate")
        expires = (datetime.fromtimestamp(as_int(d["expires"], "certificate's expiry", 0,
                                                 MAX_TS), UTC)
                   if "expires" in d else None)
        try:
            return cls(
                artist=as_bytes(d["artist"], "certificate's artist key", 32),
                name=as_text(d["name"], "artist's name", max_len=MAX_CERTIFICATE_NAME),
                label=as_bytes(d["label"], "certificate's label key", 32),
                label_name=as_text(d["label_name"], "label's name",
                                   max_len=MAX_CERTIFICATE_NAME),
                issued=datetime.fromtimestamp(as_int(d["issued"], "certificate's issue time",
                                                     0, MAX_TS), UTC),
                expires=expires,
            )
        except ValueError as e:
            raise MalformedObject(f"the artist certificate is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class SignedCertificate:
    """The certificate bytes exactly as the label signed them, parsed, and the signature."""

    body: bytes
    certificate: ArtistCertificate
    sig: bytes

    @classmethod
    def sign(cls, certificate: ArtistCertificate, label: Identity) -> SignedCertificate:
        if label.public_key != certificate.label:
            raise ValueError("only the label it names signs a certificate")
        body = _canonical.encode(certificate.to_dict())
        return cls(body, certificate, label.sign(domain=CERTIFICATE_DOMAIN, message=body))

    def to_bytes(self) -> bytes:
        return envelope(CERTIFICATE_TYPE + "/signed", self.body, self.sig)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedCertificate:
        """Parse an envelope (size first); MalformedObject for anything else. The
        signature is checked by verify_certificate, not here."""
        body, d, sig = read_signed(data, CERTIFICATE_TYPE, max_size=MAX_CERTIFICATE_SIZE,
                                   what="artist certificate")
        return cls(body, ArtistCertificate.from_dict(d), sig)


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """A certificate whose signature holds, and whether it had expired at ``checked_at``."""

    certificate: ArtistCertificate
    checked_at: datetime
    expired: bool

    @property
    def valid(self) -> bool:
        return not self.expired

    @property
    def state(self) -> str:
        """``valid`` or ``expired``: the word a person or a script sees."""
        return "expired" if self.expired else "valid"

    def to_dict(self) -> dict[str, object]:
        c = self.certificate
        return {
            "artist": key_to_text(c.artist), "artist_fingerprint": fingerprint(c.artist),
            "name": c.name,
            "label": key_to_text(c.label), "label_fingerprint": fingerprint(c.label),
            "label_name": c.label_name,
            "issued": _iso(c.issued),
            "expires": None if c.expires is None else _iso(c.expires),
            "status": self.state,
        }


def verify_certificate(signed: SignedCertificate, *, artist: bytes | None = None,
                       now: datetime) -> CertificateStatus:
    """Verify a certificate and say whether it has expired at *now*.

    Checks, in order:
      (1) the label it names signed the certificate bytes             (InvalidSignature);
      (2) it certifies *artist*, if given                          (CertificateMismatch).
    Expiry is not a failure: the status says ``expired`` and the caller decides.
    """
    now = _now(now)
    c = signed.certificate
    # (1) opaque on failure: no hint of which byte or why
    verify_signature(pk=c.label, domain=CERTIFICATE_DOMAIN, message=signed.body,
                     signature=signed.sig)
    # (2)
    if artist is not None and c.artist != artist:
        raise CertificateMismatch(f"the certificate is for {fingerprint(c.artist)} "
                                  f"({c.name}), not for {fingerprint(artist)}")
    return CertificateStatus(c, now.astimezone(UTC), c.is_expired(now=now))
