"""LicenseManifest: the signed license that travels inside a torrent's info dict.

In the info dict, under the key ``p2pdist``, sits an envelope::

    {"type": "p2pdist/signed-license", "v": 1,
     "manifest": <canonical bencode of the manifest>,
     "signatures": [{"pk": <32 bytes>, "sig": <64 bytes>}, ...]}

Each signature is ed25519 over ``b"p2pdist/license/v1" || 0x00 || manifest bytes``. The
manifest stays a byte string inside the envelope, so verification runs on exactly the
bytes that were signed; nothing is re-serialised before it is checked.

The optional ``certificates`` field holds 1 to 8 signed ArtistCertificate envelopes
(``_certificate.py``), as byte strings in ascending byte order, each of a rights holder;
it is absent when there are none. The holders' signatures cover them, and each one
verifies on its own bytes against the label it names.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from p2pdist import _canonical
from p2pdist._paths import UNSAFE_PATHS_REMEDY, paths_problem
from p2pdist._text import is_printable
from p2pdist.errors import (
    ContentMismatch,
    InvalidSignature,
    MalformedObject,
    NotLicensed,
    P2PDistError,
    TermsError,
)
from p2pdist.identity import Identity, fingerprint, key_to_text, verify_signature
from p2pdist.licensing._certificate import (
    CERTIFICATE_DOMAIN,
    MAX_CERTIFICATE_SIZE,
    SignedCertificate,
)
from p2pdist.licensing._content import Content, ContentFile, content_of_info
from p2pdist.licensing._terms import (
    CC_LICENSES,
    MAX_SELLERS,
    CCTerms,
    PaidTerms,
    Terms,
    currency_exponent,
)

__all__ = [
    "DOMAIN",
    "ENCRYPTION_SCHEME",
    "INFO_KEY",
    "MAX_CERTIFICATES",
    "MAX_INFO_SIZE",
    "MAX_MANIFEST_SIZE",
    "Collector",
    "Encryption",
    "License",
    "LicenseManifest",
    "Signature",
    "SignedManifest",
    "Split",
    "embed_license",
    "license_of_info",
    "verify_info",
    "verify_manifest",
]

MANIFEST_TYPE = "p2pdist/license-manifest"
ENVELOPE_TYPE = "p2pdist/signed-license"
DOMAIN = b"p2pdist/license/v1"
INFO_KEY = "p2pdist"
MAX_MANIFEST_SIZE = 1024 * 1024
MAX_ENVELOPE_SIZE = MAX_MANIFEST_SIZE + 64 * 1024
# An info dict carries the v1 piece hashes; 16 MiB is ~800k pieces.
MAX_INFO_SIZE = 16 * 1024 * 1024
MAX_SPLITS = 64
MAX_CREATORS = 32
MAX_TEXT = 300
TOTAL_BPS = 10_000
ENCRYPTION_SCHEME = "p2pdist-stream-v1"
MAX_CERTIFICATES = 8


def _text(v: Any, what: str, *, max_len: int = MAX_TEXT) -> str:
    if not isinstance(v, bytes):
        raise MalformedObject(f"the manifest's {what} is not a string")
    try:
        s = v.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedObject(f"the manifest's {what} is not UTF-8") from None
    if not is_printable(s, max_len=max_len):
        raise MalformedObject(f"the manifest's {what} is empty, too long or has control chars")
    return s


def _int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise MalformedObject(f"the manifest's {what} is not an integer")
    return v


def _bytes(v: Any, what: str, n: int) -> bytes:
    if not isinstance(v, bytes) or len(v) != n:
        raise MalformedObject(f"the manifest's {what} is not {n} bytes")
    return v


def _dict(v: Any, what: str, keys: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(v, dict):
        raise MalformedObject(f"the {what} is not a dict")
    have = set(v)
    if not keys <= have or not have <= keys | optional:
        extra = sorted(have - keys - optional)
        missing = sorted(keys - have)
        raise MalformedObject(f"the {what} has unexpected fields {extra} or lacks {missing}")
    return v


def _list(v: Any, what: str, max_len: int) -> list[Any]:
    if not isinstance(v, list) or not v or len(v) > max_len:
        raise MalformedObject(f"the manifest's {what} is not a list of 1 to {max_len} items")
    return v


def _check_version(d: dict[str, Any], type_: str, what: str) -> None:
    if d.get("type") != type_.encode():
        raise MalformedObject(f"this is not a {what} (type {d.get('type')!r})")
    if d.get("v") != 1:
        raise MalformedObject(
            f"the {what} has version {d.get('v')!r}; this p2pdist reads version 1",
            remedy="upgrade p2pdist",
        )


@dataclass(frozen=True, slots=True)
class Split:
    """One rights holder and their share in basis points."""

    pk: bytes
    bps: int

    def __post_init__(self) -> None:
        if len(self.pk) != 32:
            raise ValueError("a split key is 32 bytes")
        if not 0 < self.bps <= TOTAL_BPS:
            raise ValueError("a split's bps is between 1 and 10000")

    def to_dict(self) -> dict[str, object]:
        return {"bps": self.bps, "pk": self.pk}


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?:{_LABEL}\.)*{_LABEL}$")
MAX_HOST = 253


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= MAX_HOST and bool(_HOSTNAME_RE.fullmatch(host))
    return True


@dataclass(frozen=True, slots=True)
class Collector:
    """Who else receives the receipts for a work (a label, a collecting society): its key
    and the HOST:PORT of its node API. Downloaders send it a copy of each receipt; it
    keeps those naming it as the work's collector."""

    pk: bytes
    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.pk, bytes) or len(self.pk) != 32:
            raise ValueError("a collector key is 32 bytes")
        if not isinstance(self.host, str) or not _host_ok(self.host):
            raise ValueError("a collector host is an IP address or a DNS name")
        if not isinstance(self.port, int) or isinstance(self.port, bool) \
                or not 0 < self.port <= 65535:
            raise ValueError("a collector port is 1 to 65535")

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, object]:
        return {"api": self.endpoint.encode(), "pk": self.pk}

    @classmethod
    def parse_endpoint(cls, pk: bytes, text: str) -> Collector:
        """``HOST:PORT`` or ``[V6]:PORT``; ValueError when it is neither."""
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if ":" not in host:
                raise ValueError("only an IPv6 address goes in brackets")
        elif ":" in host:
            raise ValueError("put an IPv6 address in brackets: [::1]:PORT")
        if not sep or not (port.isascii() and port.isdigit() and len(port) <= 5):
            raise ValueError("a collector endpoint is HOST:PORT")
        return cls(pk, host, int(port))

    @classmethod
    def from_dict(cls, raw: Any) -> Collector:
        d = _dict(raw, "manifest's collector", {"api", "pk"})
        try:
            return cls.parse_endpoint(_bytes(d["pk"], "collector key", 32),
                                      _text(d["api"], "collector endpoint", max_len=MAX_HOST + 8))
        except ValueError as e:
            raise MalformedObject(f"the manifest's collector is invalid: {e}") from None


@dataclass(frozen=True, slots=True)
class Encryption:
    """How a paid work's files were encrypted: the scheme, its chunk size, a public
    commitment to the content key (``key_id``), and the plaintext files (path, size)
    that the ``.p2pe`` files of the torrent decrypt to."""

    scheme: str
    chunk: int
    key_id: bytes
    files: tuple[tuple[tuple[str, ...], int], ...]

    def __post_init__(self) -> None:
        if self.scheme != ENCRYPTION_SCHEME:
            raise ValueError(f"unknown encryption scheme {self.scheme!r}")
        if not isinstance(self.chunk, int) or not 1024 <= self.chunk <= 16 * 1024 * 1024:
            raise ValueError("the encryption chunk is 1 KiB to 16 MiB")
        if not isinstance(self.key_id, bytes) or len(self.key_id) != 32:
            raise ValueError("a key id is 32 bytes")
        if not self.files:
            raise ValueError("an encrypted work has at least one file")
        for path, size in self.files:
            if not path or not all(is_printable(p, max_len=4096) for p in path):
                raise ValueError("a plaintext path is 1 or more printable components")
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**62:
                raise ValueError("a plaintext size is 0 to 2**62")

    @property
    def total_size(self) -> int:
        return sum(size for _, size in self.files)

    def to_dict(self) -> dict[str, object]:
        return {
            "chunk": self.chunk,
            "files": [{"path": [p.encode() for p in path], "size": size}
                      for path, size in self.files],
            "key_id": self.key_id,
            "scheme": self.scheme.encode(),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Encryption:
        d = _dict(raw, "manifest's encryption", {"chunk", "files", "key_id", "scheme"})
        scheme = _text(d["scheme"], "encryption scheme", max_len=64)
        if scheme != ENCRYPTION_SCHEME:
            raise MalformedObject(f"this p2pdist does not know the encryption {scheme!r}",
                                  remedy="upgrade p2pdist")
        files = []
        for f in _list(d["files"], "encrypted files", 100_000):
            fd = _dict(f, "encrypted file", {"path", "size"})
            path = tuple(_text(p, "file path", max_len=4096)
                         for p in _list(fd["path"], "path", 64))
            files.append((path, _int(fd["size"], "plaintext size")))
        try:
            return cls(scheme, _int(d["chunk"], "encryption chunk"),
                       _bytes(d["key_id"], "key id", 32), tuple(files))
        except ValueError as e:
            raise MalformedObject(f"the manifest's encryption is invalid: {e}") from None


def _terms_from_dict(raw: Any) -> Terms:
    if not isinstance(raw, dict):
        raise MalformedObject("the manifest's terms are not a dict")
    kind = raw.get("kind")
    if kind == b"cc":
        d = _dict(raw, "manifest's terms", {"kind", "spdx"})
        spdx = _text(d["spdx"], "SPDX id", max_len=64)
        if spdx not in CC_LICENSES:
            raise MalformedObject(f"unknown license {spdx!r} in the manifest")
        return CCTerms(spdx)
    if kind == b"paid":
        d = _dict(raw, "manifest's terms",
                  {"kind", "price", "currency", "redistributor_bps", "sellers"},
                  {"seller_api"})
        currency = _text(d["currency"], "currency", max_len=3)
        if currency_exponent(currency) is None:
            raise MalformedObject(f"unknown currency {currency!r} in the manifest")
        sellers = tuple(_bytes(k, "seller key", 32)
                        for k in _list(d["sellers"], "sellers", MAX_SELLERS))
        api = (_text(d["seller_api"], "seller API hint", max_len=261)
               if "seller_api" in d else None)
        try:
            return PaidTerms(_int(d["price"], "price"), currency,
                             _int(d["redistributor_bps"], "redistributor share"), sellers, api)
        except ValueError as e:
            raise MalformedObject(f"the manifest's paid terms are invalid: {e}") from None
    raise MalformedObject(f"this p2pdist does not know {kind!r} terms", remedy="upgrade p2pdist")


def _certificates_from_list(raw: Any) -> tuple[SignedCertificate, ...]:
    items = _list(raw, "certificates", MAX_CERTIFICATES)
    if not all(isinstance(c, bytes) and len(c) <= MAX_CERTIFICATE_SIZE for c in items):
        raise MalformedObject("the manifest's certificates are not bounded byte strings")
    if items != sorted(set(items)):
        raise MalformedObject("the manifest's certificates are repeated or not in byte order")
    return tuple(SignedCertificate.from_bytes(c) for c in items)


@dataclass(frozen=True, slots=True)
class LicenseManifest:
    """What the rights holders sign: title, creators, terms, split sheet, content."""

    title: str
    creators: tuple[str, ...]
    created: datetime
    terms: Terms
    splits: tuple[Split, ...]
    content: Content
    collector: Collector | None = None
    encryption: Encryption | None = None
    # Sorted by their envelope bytes on construction: one set, one encoding.
    certificates: tuple[SignedCertificate, ...] = ()

    def __post_init__(self) -> None:
        # The same rules as from_dict: whatever can be signed can be verified.
        for text in (self.title, *self.creators):
            if not is_printable(text, max_len=MAX_TEXT):
                raise ValueError("titles and creators are 1 to 300 printable characters")
        if not 1 <= len(self.creators) <= MAX_CREATORS:
            raise ValueError(f"a manifest names 1 to {MAX_CREATORS} creators")
        if self.created.tzinfo is None or self.created.microsecond:
            raise ValueError("created must be an aware UTC datetime in whole seconds")
        if not 0 <= self.created.timestamp() < 2**40:
            raise ValueError("created is out of range")
        if not self.splits or sum(s.bps for s in self.splits) != TOTAL_BPS:
            raise ValueError("the splits must sum to 10000 bps")
        if len({s.pk for s in self.splits}) != len(self.splits):
            raise ValueError("a rights holder appears twice in the splits")
        if (self.encryption is None) != isinstance(self.terms, CCTerms):
            raise ValueError("a paid work is encrypted, a CC work is not")
        certs = tuple(self.certificates)
        if not all(isinstance(c, SignedCertificate) for c in certs):
            raise ValueError("a manifest's certificates are SignedCertificate objects")
        if len(certs) > MAX_CERTIFICATES:
            raise ValueError(f"a manifest embeds at most {MAX_CERTIFICATES} certificates")
        if len({c.to_bytes() for c in certs}) != len(certs):
            raise ValueError("a certificate appears twice in the manifest")
        holders = {s.pk for s in self.splits}
        if any(c.certificate.artist not in holders for c in certs):
            raise ValueError("an embedded certificate must be of one of the rights holders")
        object.__setattr__(self, "certificates",
                           tuple(sorted(certs, key=SignedCertificate.to_bytes)))

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "content": self.content.to_dict(),
            "created": int(self.created.timestamp()),
            "creators": [c.encode() for c in self.creators],
            "splits": [s.to_dict() for s in self.splits],
            "terms": self.terms.to_dict(),
            "title": self.title.encode(),
            "type": MANIFEST_TYPE,
            "v": 1,
        }
        if self.collector is not None:  # optional: absent, not empty
            d["collector"] = self.collector.to_dict()
        if self.encryption is not None:
            d["encryption"] = self.encryption.to_dict()
        if self.certificates:
            d["certificates"] = [c.to_bytes() for c in self.certificates]
        return d

    def signed_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> LicenseManifest:
        """Parse canonical manifest bytes; MalformedObject for anything else."""
        d = _canonical.decode(data, max_size=MAX_MANIFEST_SIZE, what="license manifest")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, raw: Any) -> LicenseManifest:
        d = _dict(
            raw, "license manifest",
            {"type", "v", "title", "creators", "created", "terms", "splits", "content"},
            {"collector", "encryption", "certificates"},
        )
        _check_version(d, MANIFEST_TYPE, "license manifest")
        terms = _terms_from_dict(d["terms"])
        encryption = Encryption.from_dict(d["encryption"]) if "encryption" in d else None
        if (encryption is None) != isinstance(terms, CCTerms):
            raise MalformedObject("a paid work must be encrypted and a CC work must not be")
        created = _int(d["created"], "created time")
        if not 0 <= created < 2**40:
            raise MalformedObject("the manifest's created time is out of range")
        splits = []
        for s in _list(d["splits"], "splits", MAX_SPLITS):
            sd = _dict(s, "split", {"pk", "bps"})
            bps = _int(sd["bps"], "split bps")
            if not 0 < bps <= TOTAL_BPS:
                raise MalformedObject("a split's bps is out of range")
            splits.append(Split(_bytes(sd["pk"], "split key", 32), bps))
        if sum(s.bps for s in splits) != TOTAL_BPS:
            raise MalformedObject("the splits do not sum to 10000 bps")
        if len({s.pk for s in splits}) != len(splits):
            raise MalformedObject("a rights holder appears twice in the splits")
        collector = Collector.from_dict(d["collector"]) if "collector" in d else None
        certificates = _certificates_from_list(d["certificates"]) if "certificates" in d \
            else ()
        cd = _dict(d["content"], "manifest's content", {"files", "piece_length"}, {"v1"})
        v1 = _bytes(cd["v1"], "v1 digest", 32) if "v1" in cd else None
        try:
            files = []
            for f in _list(cd["files"], "content files", 2 * 100_000):
                fd = _dict(f, "content file", {"path", "size"}, {"root"})
                path = tuple(
                    _text(p, "file path", max_len=4096) for p in _list(fd["path"], "path", 64)
                )
                root = _bytes(fd["root"], "pieces root", 32) if "root" in fd else None
                files.append(ContentFile(path, _int(fd["size"], "file size"), root))
            content = Content(_int(cd["piece_length"], "piece length"), tuple(files), v1)
            return cls(
                title=_text(d["title"], "title"),
                creators=tuple(_text(c, "creator") for c in _list(d["creators"], "creators",
                                                                  MAX_CREATORS)),
                created=datetime.fromtimestamp(created, UTC),
                terms=terms,
                splits=tuple(splits),
                content=content,
                collector=collector,
                encryption=encryption,
                certificates=certificates,
            )
        except ValueError as e:
            raise MalformedObject(f"the manifest is inconsistent: {e}") from None


@dataclass(frozen=True, slots=True)
class Signature:
    pk: bytes
    sig: bytes


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """The manifest bytes exactly as signed, the parsed manifest, and its signatures."""

    manifest_bytes: bytes
    manifest: LicenseManifest
    signatures: tuple[Signature, ...]

    @classmethod
    def sign(cls, manifest: LicenseManifest, signers: Sequence[Identity]) -> SignedManifest:
        data = manifest.signed_bytes()
        sigs = tuple(Signature(i.public_key, i.sign(domain=DOMAIN, message=data)) for i in signers)
        return cls(data, manifest, sigs)

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest": self.manifest_bytes,
            "signatures": [{"pk": s.pk, "sig": s.sig} for s in self.signatures],
            "type": ENVELOPE_TYPE,
            "v": 1,
        }

    def to_bytes(self) -> bytes:
        return _canonical.encode(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedManifest:
        d = _canonical.decode(data, max_size=MAX_ENVELOPE_SIZE, what="signed license")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, raw: Any) -> SignedManifest:
        d = _dict(raw, "signed license", {"type", "v", "manifest", "signatures"})
        _check_version(d, ENVELOPE_TYPE, "signed license")
        mb = d["manifest"]
        if not isinstance(mb, bytes):
            raise MalformedObject("the signed license holds no manifest bytes")
        sigs = []
        for s in _list(d["signatures"], "signatures", MAX_SPLITS):
            sd = _dict(s, "signature", {"pk", "sig"})
            sigs.append(Signature(_bytes(sd["pk"], "signer key", 32),
                                  _bytes(sd["sig"], "signature", 64)))
        return cls(mb, LicenseManifest.from_bytes(mb), tuple(sigs))

    @property
    def work_size(self) -> int:
        return self.manifest.content.total_size


def verify_manifest(signed: SignedManifest, *, content: Content) -> None:
    """Verify a signed manifest against the content a torrent commits to.

    Checks, in order:
      (1) every split holder signed the manifest bytes, and nobody else did;
      (2) each embedded certificate is signed by the label it names (InvalidSignature,
          like (1)) and certifies a split holder (TermsError; parsing refuses that
          already, so this guards manifests built by hand);
      (3) the content binding equals *content* (paths, sizes, piece hashes);
      (4) every file name, the torrent's and a paid work's plaintext ones, passes
          p2pdist._paths' rule, so no fan writes outside its folder or a name that hides
          what it is (MalformedObject);
      (5) the terms are known and consistent.
    Returns None or raises InvalidSignature, ContentMismatch, MalformedObject or
    TermsError. An expired
    certificate still verifies: whether to trust it is p2pdist.trust's question.
    """
    m = signed.manifest
    # (1) signatures: opaque on failure, so no hint of which one or why
    holders = {s.pk for s in m.splits}
    signers = [s.pk for s in signed.signatures]
    if len(set(signers)) != len(signers) or set(signers) != holders:
        raise InvalidSignature("the license is not signed by exactly its rights holders")
    for s in signed.signatures:
        verify_signature(pk=s.pk, domain=DOMAIN, message=signed.manifest_bytes, signature=s.sig)
    # (2) certificates: a holder may not forge a label's word about them
    for c in m.certificates:
        verify_signature(pk=c.certificate.label, domain=CERTIFICATE_DOMAIN, message=c.body,
                         signature=c.sig)
    for c in m.certificates:
        if c.certificate.artist not in holders:
            raise TermsError(f"the license embeds a certificate of "
                             f"{fingerprint(c.certificate.artist)}, who is not one of its "
                             "rights holders", remedy="the license was built wrongly; "
                             "ask the publisher for a corrected one")
    # (3) content binding
    if m.content != content:
        raise ContentMismatch(
            "the license does not match this torrent's content (files or piece hashes differ)",
            remedy="the torrent was altered after signing; get it from the publisher",
        )
    # (4) file names
    problem = paths_problem([f.path for f in m.content.files])
    if problem is None and m.encryption is not None:
        from p2pdist.licensing._encryption import work_paths_problem

        problem = work_paths_problem([path for path, _ in m.encryption.files])
    if problem is not None:
        raise MalformedObject(f"the work has an unsafe file list: {problem}",
                              remedy=UNSAFE_PATHS_REMEDY)
    # (5) terms
    if isinstance(m.terms, CCTerms) and m.terms.spdx not in CC_LICENSES:
        raise TermsError(f"unknown license terms {m.terms.spdx!r}")
    if m.encryption is not None:
        # a paid work's torrent holds exactly the ciphertexts of the files it lists
        from p2pdist.licensing._encryption import encrypted_path, encrypted_size

        enc = m.encryption
        try:
            want = [(encrypted_path(path), encrypted_size(size, chunk=enc.chunk))
                    for path, size in enc.files]
        except (ValueError, TypeError, P2PDistError):
            raise TermsError("the license's encrypted files have unsafe names or sizes") \
                from None
        have = [(f.path, f.size) for f in m.content.files]
        if sorted(want) != sorted(have):
            raise TermsError("the license's encrypted files do not match the torrent's "
                             "files", remedy="the work was altered after signing")


def embed_license(info: dict[str, Any], signed: SignedManifest) -> dict[str, Any]:
    """Return a copy of *info* carrying *signed* under the ``p2pdist`` key."""
    out = dict(info)
    out[INFO_KEY] = signed.to_dict()
    return out


@dataclass(frozen=True, slots=True)
class License:
    """A verified license and the torrent it was verified against."""

    work: str  # hex SHA-256 of the info dict: the v2 infohash of a hybrid torrent
    signed: SignedManifest
    info: dict[str, Any] = field(repr=False)

    @property
    def manifest(self) -> LicenseManifest:
        return self.signed.manifest

    def plain_words(self) -> str:
        return self.manifest.terms.plain_words(self.manifest.creators)

    def to_dict(self) -> dict[str, object]:
        m = self.manifest
        return {
            "work": self.work,
            "title": m.title,
            "creators": list(m.creators),
            "created": m.created.isoformat().replace("+00:00", "Z"),
            "terms": _terms_json(m.terms),
            "summary": self.plain_words(),
            "splits": [
                {"pk": key_to_text(s.pk), "fingerprint": fingerprint(s.pk), "bps": s.bps}
                for s in m.splits
            ],
            "signers": [
                {"pk": key_to_text(s.pk), "fingerprint": fingerprint(s.pk)}
                for s in self.signed.signatures
            ],
            "size": m.content.total_size,
            "files": ["/".join(f.path) for f in m.content.files],
            "collector": None if m.collector is None else {
                "pk": key_to_text(m.collector.pk), "fingerprint": fingerprint(m.collector.pk),
                "api": m.collector.endpoint},
        }


def _terms_json(t: Terms) -> dict[str, object]:
    if isinstance(t, CCTerms):
        return {"kind": "cc", "spdx": t.spdx, "url": t.url}
    return {"kind": "paid", "price": t.price, "currency": t.currency,
            "price_text": t.label.removeprefix("for sale, "),
            "redistributor_bps": t.redistributor_bps,
            "sellers": [{"pk": key_to_text(k), "fingerprint": fingerprint(k)} for k in t.sellers],
            "seller_api": t.seller_api}


def license_of_info(info_bytes: bytes) -> tuple[dict[str, Any], SignedManifest]:
    """Parse (without verifying) the license in a raw info dict.

    Raises NotLicensed when there is none, MalformedObject when it is broken.
    """
    info = _canonical.decode(info_bytes, max_size=MAX_INFO_SIZE, what="torrent info dict")
    if not isinstance(info, dict):
        raise MalformedObject("the torrent's info is not a dict")
    if INFO_KEY not in info:
        raise NotLicensed("this torrent carries no p2pdist license")
    env = info[INFO_KEY]
    if not isinstance(env, dict):
        raise MalformedObject("the torrent's p2pdist license is not a dict")
    return info, SignedManifest.from_dict(env)


def verify_info(info_bytes: bytes) -> License:
    """Parse and verify the license in a torrent's raw info dict (see verify_manifest)."""
    info, signed = license_of_info(info_bytes)
    verify_manifest(signed, content=content_of_info(info))
    return License(hashlib.sha256(info_bytes).hexdigest(), signed, info)
