"""Artist certificates, alone and embedded in a license: vectors, properties, attacks.

A label signs a certificate; a fan checks it on the bytes received. Every refusal is a
VerificationError (exit 3): InvalidSignature or MalformedObject for bytes that do not
hold, CertificateMismatch (precise) only once the signature does. Never a KeyError,
TypeError or ValueError leaking out of a parser. Expiry is a status, never an error.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist.errors import (
    InvalidSignature,
    MalformedObject,
    TermsError,
    VerificationError,
)
from p2pdist.identity import Identity, fingerprint, key_to_text
from p2pdist.licensing import (
    CERTIFICATE_DOMAIN,
    DOMAIN,
    MAX_CERTIFICATE_SIZE,
    ArtistCertificate,
    CCTerms,
    CertificateMismatch,
    CertificateStatus,
    Content,
    ContentFile,
    LicenseManifest,
    SignedCertificate,
    SignedManifest,
    Split,
    content_of_info,
    embed_license,
    verify_certificate,
    verify_info,
    verify_manifest,
)
from p2pdist.licensing._grant import GRANT_DOMAIN, LicenseGrant, SignedGrant
from p2pdist.licensing._manifest import MAX_CERTIFICATES
from p2pdist.payouts.receipts import DOMAIN as RECEIPT_DOMAIN
from p2pdist.swarm import make_torrent

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "certificates.json").read_text("utf-8")
)
CERT_VECTORS: list[dict[str, Any]] = VECTORS["certificates"]
MANIFEST_VECTORS: list[dict[str, Any]] = VECTORS["manifests"]

PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

MAX_TS = 253_402_300_799
T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


ADA = _identity(bytes(range(32)), "Ada")
GRACE = _identity(bytes(range(32, 64)), "Grace")
LABEL = _identity(bytes(range(160, 192)), "Roundhouse Records")
LABEL2 = _identity(bytes(range(192, 224)), "Other Label")
MALLORY = _identity(b"\x07" * 32, "Mallory")
BY_PK = {i.public_key: i for i in (ADA, GRACE, LABEL, LABEL2, MALLORY)}


def _cert(**kw: Any) -> ArtistCertificate:
    fields_: dict[str, Any] = {"artist": ADA.public_key, "name": "Ada",
                               "label": LABEL.public_key, "label_name": "Roundhouse Records",
                               "issued": T0, "expires": T1}
    fields_.update(kw)
    return ArtistCertificate(**fields_)


def _signed(cert: ArtistCertificate | None = None) -> SignedCertificate:
    cert = cert or _cert()
    return SignedCertificate.sign(cert, BY_PK[cert.label])


BASE = _cert().to_dict()
TYPE = "p2pdist/artist-certificate/signed"


def _envelope(body: Any = None, sig: Any = None, **extra: Any) -> bytes:
    """Canonical envelope bytes; *body* defaults to the base certificate, *sig* to the
    label's signature over *body*. A field given as None is left out."""
    if body is None:
        body = _canonical.encode(BASE)
    if sig is None:
        sig = LABEL.sign(domain=CERTIFICATE_DOMAIN, message=body)
    d: dict[str, Any] = {"body": body, "sig": sig, "type": TYPE, "v": 1}
    d.update(extra)
    return _canonical.encode({k: v for k, v in d.items() if v is not None})


def _edited(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    d = dict(BASE)
    change(d)
    return d


def _resigned(change: Callable[[dict[str, Any]], Any]) -> bytes:
    """The changed body, properly signed by the label."""
    return _envelope(_canonical.encode(_edited(change)))


def _replayed(change: Callable[[dict[str, Any]], Any]) -> bytes:
    """The changed body, carrying the label's signature over the original."""
    return _envelope(_canonical.encode(_edited(change)),
                     LABEL.sign(domain=CERTIFICATE_DOMAIN, message=_canonical.encode(BASE)))


def _check(envelope: bytes, *, artist: bytes | None = ADA.public_key,
           now: datetime = T0) -> CertificateStatus:
    """Everything a fan runs on a certificate's bytes."""
    return verify_certificate(SignedCertificate.from_bytes(envelope), artist=artist, now=now)


def _assert_opaque_refusal(exc: BaseException) -> None:
    assert isinstance(exc, InvalidSignature | MalformedObject), repr(exc)
    assert exc.exit_code == 3
    assert exc.message


def test_base_certificate_verifies_and_is_valid() -> None:
    status = _check(_envelope())
    assert status.valid
    assert not status.expired
    assert status.state == "valid"
    assert status.certificate == _cert()
    assert status.checked_at == T0


def test_signed_certificate_holds_the_bytes_it_was_signed_over() -> None:
    signed = _signed()
    assert signed.body == _canonical.encode(_cert().to_dict())
    assert signed.to_bytes() == _envelope()
    assert SignedCertificate.from_bytes(_envelope()) == signed


# -- golden vectors ------------------------------------------------------------------------


def _seed(seed_hex: str) -> Identity:
    return _identity(bytes.fromhex(seed_hex), "from a vector")


def _vector_cert(inp: dict[str, Any]) -> tuple[ArtistCertificate, Identity]:
    label = _seed(inp["label_seed"])
    return ArtistCertificate(
        artist=_seed(inp["artist_seed"]).public_key, name=inp["name"],
        label=label.public_key, label_name=inp["label_name"],
        issued=datetime.fromtimestamp(inp["issued"], UTC),
        expires=None if inp["expires"] is None
        else datetime.fromtimestamp(inp["expires"], UTC)), label


@pytest.mark.parametrize("case", CERT_VECTORS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_certificate_vector(case: dict[str, Any]) -> None:
    cert, label = _vector_cert(case["input"])
    signed = SignedCertificate.sign(cert, label)
    assert signed.body.hex() == case["body_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    assert signed.sig.hex() == case["sig_hex"]
    assert key_to_text(cert.artist) == case["expected"]["artist_pk_text"]
    assert key_to_text(cert.label) == case["expected"]["label_pk_text"]
    assert fingerprint(cert.label) == case["expected"]["label_fingerprint"]


@pytest.mark.parametrize("case", CERT_VECTORS, ids=lambda c: c["name"])
def test_stored_certificate_vector_parses_verifies_and_expires_on_time(
    case: dict[str, Any],
) -> None:
    cert, _ = _vector_cert(case["input"])
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = SignedCertificate.from_bytes(envelope)
    assert signed.certificate == cert
    assert signed.body.hex() == case["body_hex"]
    assert signed.to_bytes() == envelope
    # The signature by hand with PyNaCl, not through p2pdist's verifier.
    nacl.signing.VerifyKey(cert.label).verify(
        b"p2pdist/certificate/v1\0" + bytes.fromhex(case["body_hex"]),
        bytes.fromhex(case["sig_hex"]))
    for row in case["expected"]["expired_at"]:
        status = verify_certificate(signed, artist=cert.artist,
                                    now=datetime.fromtimestamp(row["now"], UTC))
        assert status.expired is row["expired"], row
        assert status.state == ("expired" if row["expired"] else "valid")


def test_vector_envelopes_sit_under_the_size_bound() -> None:
    sizes = {c["name"]: len(c["envelope_hex"]) // 2 for c in CERT_VECTORS}
    assert sizes["largest-valid"] == 2_735 < MAX_CERTIFICATE_SIZE
    assert sizes["label-certifies-artist-for-a-year"] == 346
    assert sizes["no-expiry"] == 335


_SUBSTITUTES = (0x00, 0x30, 0x3A, 0x65, 0x69, 0xFF)  # NUL, '0', ':', 'e', 'i', 0xff


def test_any_substituted_byte_in_vector_envelope_is_refused() -> None:
    case = min(CERT_VECTORS, key=lambda c: len(c["envelope_hex"]))
    cert, _ = _vector_cert(case["input"])
    envelope = bytes.fromhex(case["envelope_hex"])
    _check(envelope, artist=cert.artist)
    leaks = []
    for i in range(len(envelope)):
        for b in {*_SUBSTITUTES, envelope[i] ^ 0x01, envelope[i] ^ 0x80} - {envelope[i]}:
            bad = envelope[:i] + bytes([b]) + envelope[i + 1:]
            try:
                _check(bad, artist=cert.artist)
            except (InvalidSignature, MalformedObject):
                continue
            except Exception as e:  # collect every leak, not just the first
                leaks.append(f"byte {i} -> {b:#04x}: {type(e).__name__}: {e}")
            else:
                leaks.append(f"byte {i} -> {b:#04x}: verified")
    assert not leaks, "\n".join(leaks[:10])


def _vector_manifest(inp: dict[str, Any]) -> tuple[LicenseManifest, list[Identity]]:
    c = inp["content"]
    certs = []
    for ci in inp["certificates"]:
        cert, label = _vector_cert(ci)
        certs.append(SignedCertificate.sign(cert, label))
    return LicenseManifest(
        title=inp["title"], creators=tuple(inp["creators"]),
        created=datetime.fromtimestamp(inp["created"], UTC), terms=CCTerms(inp["spdx"]),
        splits=tuple(Split(_seed(s["seed"]).public_key, s["bps"]) for s in inp["splits"]),
        content=Content(c["piece_length"], tuple(
            ContentFile(tuple(f["path"]), f["size"], bytes.fromhex(f["root"]))
            for f in c["files"]), bytes.fromhex(c["v1"])),
        certificates=tuple(certs)), [_seed(s) for s in inp["signers"]]


@pytest.mark.parametrize("case", MANIFEST_VECTORS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_manifest_with_certificates_vector(
    case: dict[str, Any],
) -> None:
    manifest, signers = _vector_manifest(case["input"])
    signed = SignedManifest.sign(manifest, signers)
    assert signed.manifest_bytes.hex() == case["manifest_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    assert [s.sig.hex() for s in signed.signatures] == case["sigs_hex"]


@pytest.mark.parametrize("case", MANIFEST_VECTORS, ids=lambda c: c["name"])
def test_stored_manifest_with_certificates_vector_verifies(case: dict[str, Any]) -> None:
    manifest, _ = _vector_manifest(case["input"])
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = SignedManifest.from_bytes(envelope)
    verify_manifest(signed, content=manifest.content)
    assert signed.manifest == manifest
    assert signed.to_bytes() == envelope
    got = [c.to_bytes().hex() for c in signed.manifest.certificates]
    assert got == case["expected"]["certificates_hex"]
    assert got == sorted(got)  # in byte order, whatever order they were given in
    assert got != [SignedCertificate.sign(*_vector_cert(ci)).to_bytes().hex()
                   for ci in case["input"]["certificates"]]
    # Each embedded certificate is the label's bytes, verbatim, inside the manifest bytes.
    for hex_ in got:
        assert bytes.fromhex(hex_) in bytes.fromhex(case["manifest_hex"])


# -- properties ----------------------------------------------------------------------------

_HIDDEN = ("Cc", "Cf", "Cs", "Zl", "Zp")
_names = st.one_of(
    st.text(st.characters(min_codepoint=32, exclude_categories=_HIDDEN), min_size=1,
            max_size=40),
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x1F6FF,
                          exclude_categories=(*_HIDDEN, "Cn", "Co", "Zs")),
            min_size=295, max_size=300),
).filter(lambda s: s == s.strip())
_ids = st.sampled_from([ADA, GRACE, LABEL, LABEL2, MALLORY])
_ts = st.integers(0, MAX_TS)


@st.composite
def _certs(draw: st.DrawFn) -> ArtistCertificate:
    issued = draw(st.integers(0, MAX_TS - 1))
    expires = draw(st.none() | st.integers(issued + 1, MAX_TS))
    return ArtistCertificate(
        artist=draw(_ids).public_key, name=draw(_names), label=draw(_ids).public_key,
        label_name=draw(_names), issued=datetime.fromtimestamp(issued, UTC),
        expires=None if expires is None else datetime.fromtimestamp(expires, UTC))


@PROPERTY
@given(_certs())
def test_certificate_round_trips(cert: ArtistCertificate) -> None:
    signed = _signed(cert)
    envelope = signed.to_bytes()
    assert len(envelope) <= MAX_CERTIFICATE_SIZE
    again = SignedCertificate.from_bytes(envelope)
    assert again == signed
    assert again.certificate == cert
    assert again.to_bytes() == envelope
    assert ArtistCertificate.from_dict(_canonical.decode(signed.body, max_size=10**5)) == cert
    verify_certificate(again, artist=cert.artist, now=cert.issued)


def _flip(data: bytes, draw: st.DataObject) -> bytes:
    out = bytearray(data)
    i = draw.draw(st.integers(0, len(out) - 1), label="position")
    out[i] = draw.draw(st.integers(0, 255).filter(lambda b: b != out[i]), label="byte")
    return bytes(out)


@PROPERTY
@given(_certs(), st.data())
def test_any_single_byte_change_in_a_certificate_envelope_is_refused(
    cert: ArtistCertificate, data: st.DataObject,
) -> None:
    bad = _flip(_signed(cert).to_bytes(), data)
    with pytest.raises(VerificationError) as e:
        verify_certificate(SignedCertificate.from_bytes(bad), artist=cert.artist,
                           now=cert.issued)
    _assert_opaque_refusal(e.value)


@PROPERTY
@given(_certs(), _ts)
def test_expired_exactly_from_the_expiry_second_on(cert: ArtistCertificate, t: int) -> None:
    now = datetime.fromtimestamp(t, UTC)
    status = verify_certificate(_signed(cert), now=now)
    assert status.expired is (cert.expires is not None and t >= cert.expires.timestamp())
    assert status.valid is not status.expired
    assert status.checked_at == now


# The constructor and the parser draw the same line: a label never signs what every fan
# refuses, and no fan accepts what a label could not have built.
_edgy_text = st.one_of(
    st.text(st.sampled_from(" \t~aZ09-:\u00e9\u202e\u200b\n"), max_size=5),
    st.integers(299, 301).map(lambda n: "x" * n),
    st.integers(299, 301).map(lambda n: "\U0001d11e" * n),
)
_edgy_key = st.one_of(st.sampled_from([ADA.public_key, LABEL.public_key]),
                      st.binary(min_size=31, max_size=33))
_edgy_time = st.one_of(
    st.integers(-1, 2), st.integers(MAX_TS - 1, MAX_TS),
    st.integers(int(T0.timestamp()) - 1, int(T0.timestamp()) + 1),
).map(lambda t: datetime.fromtimestamp(t, UTC))


@st.composite
def _edged(draw: st.DrawFn) -> dict[str, Any]:
    base = {f.name: getattr(_cert(), f.name) for f in fields(ArtistCertificate)}
    edges: dict[str, Any] = {"artist": _edgy_key, "label": _edgy_key, "name": _edgy_text,
                             "label_name": _edgy_text, "issued": _edgy_time,
                             "expires": st.none() | _edgy_time}
    names = draw(st.lists(st.sampled_from(sorted(edges)), min_size=1, max_size=2,
                          unique=True))
    return {**base, **{n: draw(edges[n]) for n in names}}


@settings(PROPERTY, max_examples=300)
@given(_edged())
def test_certificate_constructor_and_parser_agree(kw: dict[str, Any]) -> None:
    try:
        built: ArtistCertificate | None = ArtistCertificate(**kw)
    except ValueError:
        built = None
    wire = SimpleNamespace(**kw)
    try:
        body = _canonical.encode(ArtistCertificate.to_dict(wire))  # type: ignore[arg-type]
    except (OverflowError, ValueError, OSError):
        body = None  # a time the wire cannot carry
    try:
        parsed = None if body is None else SignedCertificate.from_bytes(
            _envelope(body, bytes(64))).certificate
    except MalformedObject:
        parsed = None
    assert (built is None) == (parsed is None), (kw, built, parsed)
    assert parsed == built


# -- named attacks: fields changed after signing ------------------------------------------


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d[key] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        del d[key]
    return change


T0_TS, T1_TS = int(T0.timestamp()), int(T1.timestamp())

# Each change keeps a well-formed certificate, so only the signature can catch it.
TAMPERED = [
    pytest.param(_set("name", b"Grace"), id="name-changed"),
    pytest.param(_set("name", b"Ada "[:-1] + b"."), id="name-one-character-added"),
    pytest.param(_set("artist", MALLORY.public_key), id="artist-swapped-for-mallory"),
    pytest.param(_set("artist", GRACE.public_key), id="artist-moved-to-another-artist"),
    pytest.param(_set("label", LABEL2.public_key), id="label-key-swapped"),
    pytest.param(_set("label_name", b"Big Major Label"), id="label-name-inflated"),
    pytest.param(_set("issued", T0_TS + 1), id="issued-moved-one-second"),
    pytest.param(_set("expires", T1_TS + 1), id="expires-extended-one-second"),
    pytest.param(_set("expires", MAX_TS), id="expires-extended-to-year-9999"),
    pytest.param(_drop("expires"), id="expires-removed"),
]


@pytest.mark.parametrize("change", TAMPERED)
def test_field_changed_after_signing_is_refused(change: Callable[[dict[str, Any]], None]) -> None:
    envelope = _replayed(change)
    SignedCertificate.from_bytes(envelope)  # still well-formed: the signature must catch it
    for artist in (None, ADA.public_key, MALLORY.public_key, GRACE.public_key):
        with pytest.raises(InvalidSignature) as e:
            _check(envelope, artist=artist)
        _assert_opaque_refusal(e.value)


def test_expiry_added_to_a_certificate_without_one_is_refused() -> None:
    forever = _signed(_cert(expires=None))
    body = _canonical.decode(forever.body, max_size=10**4)
    body["expires"] = T1_TS
    with pytest.raises(InvalidSignature):
        _check(_envelope(_canonical.encode(body), forever.sig))


def _signed_by(who: Identity, domain: bytes = CERTIFICATE_DOMAIN,
               message: bytes | None = None) -> bytes:
    body = _canonical.encode(BASE)
    return _envelope(body, who.sign(domain=domain, message=message or body))


WRONG_SIGNER = [
    *(pytest.param(lambda who=who: _signed_by(who), id=f"signed-by-{who.name.split()[0]}")
      for who in (MALLORY, ADA, LABEL2, GRACE)),
    # One key, one domain per kind: a label's signature never moves between kinds.
    *(pytest.param(lambda d=d: _signed_by(LABEL, d), id=f"label-signed-in-{d.decode()}")
      for d in (DOMAIN, GRANT_DOMAIN, RECEIPT_DOMAIN, b"p2pdist/certificate/v2",
                b"p2pdist/certificate", b"")),
    pytest.param(lambda: _envelope(sig=LABEL.signing_key.sign(_canonical.encode(BASE))
                                   .signature), id="signature-without-domain"),
    pytest.param(lambda: _envelope(sig=bytes(64)), id="zero-signature"),
    pytest.param(lambda: _signed_by(LABEL, message=_envelope()),
                 id="signature-over-the-envelope"),
]


@pytest.mark.parametrize("make", WRONG_SIGNER)
def test_certificate_not_signed_by_the_label_it_names_is_refused(
    make: Callable[[], bytes],
) -> None:
    with pytest.raises(InvalidSignature) as e:
        _check(make())
    _assert_opaque_refusal(e.value)


def test_artist_self_certifying_under_a_labels_name_is_refused() -> None:
    # Mallory names LABEL as her label and signs with her own key.
    cert = _cert(artist=MALLORY.public_key, name="Mallory")
    body = _canonical.encode(cert.to_dict())
    with pytest.raises(InvalidSignature):
        _check(_envelope(body, MALLORY.sign(domain=CERTIFICATE_DOMAIN, message=body)),
               artist=MALLORY.public_key)


def test_signature_failure_does_not_say_why() -> None:
    envelopes = [p.values[0]() for p in WRONG_SIGNER]
    envelopes += [_replayed(p.values[0]) for p in TAMPERED]
    messages = set()
    for envelope in envelopes:
        with pytest.raises(InvalidSignature) as e:
            _check(envelope)
        messages.add((str(e.value), e.value.remedy))
    assert len(messages) == 1


@pytest.mark.parametrize("who", [ADA, LABEL2, MALLORY], ids=lambda i: i.name.split()[0])
def test_sign_refuses_an_identity_that_is_not_the_label(who: Identity) -> None:
    with pytest.raises(ValueError, match="only the label"):
        SignedCertificate.sign(_cert(), who)


# -- named attacks: a certificate of someone else ------------------------------------------


def test_certificate_of_another_artist_is_a_mismatch() -> None:
    # GRACE shows ADA's certificate as her own.
    with pytest.raises(CertificateMismatch) as e:
        _check(_envelope(), artist=GRACE.public_key)
    assert e.value.exit_code == 3
    assert fingerprint(ADA.public_key) in e.value.message
    assert fingerprint(GRACE.public_key) in e.value.message
    assert e.value.remedy
    assert isinstance(e.value, VerificationError)


def test_signature_is_checked_before_the_artist() -> None:
    # A forgery for the wrong artist learns nothing but "bad signature".
    with pytest.raises(InvalidSignature):
        _check(_signed_by(MALLORY), artist=GRACE.public_key)


def test_without_an_artist_any_well_signed_certificate_verifies() -> None:
    assert _check(_envelope(), artist=None).certificate.artist == ADA.public_key


# -- expiry --------------------------------------------------------------------------------


@pytest.mark.parametrize("offset,expired", [(-1, False), (0, True), (1, True)],
                         ids=["a-second-before", "at-expiry", "a-second-after"])
def test_expiry_boundary(offset: int, expired: bool) -> None:
    status = _check(_envelope(), now=T1 + offset * SECOND)
    assert status.expired is expired
    assert status.valid is not expired
    assert status.to_dict()["status"] == ("expired" if expired else "valid")


def test_expiry_boundary_within_the_second() -> None:
    assert not _check(_envelope(), now=T1 - timedelta(microseconds=1)).expired
    assert _check(_envelope(), now=T1 + timedelta(microseconds=999_999)).expired


def test_expiry_is_compared_in_utc_whatever_the_zone_of_now() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert not _check(_envelope(), now=(T1 - SECOND).astimezone(tokyo)).expired
    assert _check(_envelope(), now=T1.astimezone(tokyo)).expired
    assert _check(_envelope(), now=T1.astimezone(tokyo)).checked_at.tzinfo == UTC


def test_expired_certificate_still_verifies_and_says_so() -> None:
    status = _check(_envelope(), now=T1 + timedelta(days=3650))
    assert status.expired
    assert status.state == "expired"
    assert status.certificate == _cert()


@pytest.mark.parametrize("now", [T0, T1, datetime.fromtimestamp(MAX_TS, UTC),
                                 datetime(1970, 1, 1, tzinfo=UTC)])
def test_certificate_without_expiry_never_expires(now: datetime) -> None:
    status = verify_certificate(_signed(_cert(expires=None)), now=now)
    assert not status.expired
    assert status.to_dict()["expires"] is None


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        _check(_envelope(), now=datetime(2025, 6, 1))
    with pytest.raises(ValueError, match="aware"):
        _cert().is_expired(now=datetime(2025, 6, 1))


def test_status_to_dict_shows_keys_in_their_one_text_form() -> None:
    d = _check(_envelope()).to_dict()
    assert d == {
        "artist": key_to_text(ADA.public_key), "artist_fingerprint": fingerprint(ADA.public_key),
        "name": "Ada", "label": key_to_text(LABEL.public_key),
        "label_fingerprint": fingerprint(LABEL.public_key),
        "label_name": "Roundhouse Records", "issued": "2025-01-01T00:00:00Z",
        "expires": "2026-01-01T00:00:00Z", "status": "valid",
    }


# -- constructor ---------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    pytest.param({"artist": ADA.public_key[:31]}, id="artist-31-bytes"),
    pytest.param({"label": key_to_text(LABEL.public_key)}, id="label-as-text"),
    pytest.param({"name": ""}, id="name-empty"),
    pytest.param({"name": "x" * 301}, id="name-301"),
    pytest.param({"name": " Ada"}, id="name-outer-space"),
    pytest.param({"name": "Ada\u202eadA"}, id="name-bidi-override"),
    pytest.param({"label_name": "Label\n"}, id="label-name-newline"),
    pytest.param({"label_name": b"Label"}, id="label-name-bytes"),
    pytest.param({"issued": datetime(2025, 1, 1)}, id="issued-naive"),
    pytest.param({"issued": T0 + timedelta(microseconds=1)}, id="issued-microseconds"),
    pytest.param({"issued": T0_TS}, id="issued-int"),
    pytest.param({"expires": T0}, id="expires-at-issue"),
    pytest.param({"expires": T0 - SECOND}, id="expires-before-issue"),
    pytest.param({"issued": datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)},
                 id="issued-before-1970"),
])
def test_constructor_refuses_what_no_fan_could_parse(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _cert(**kw)


def test_constructor_keeps_times_in_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    cert = _cert(issued=T0.astimezone(tokyo), expires=T1.astimezone(tokyo))
    assert cert == _cert()
    assert cert.issued.tzinfo == UTC


# -- malformed bytes -----------------------------------------------------------------------


def _sized_envelope(size: int) -> bytes:
    """A well-signed envelope of exactly *size* bytes, padded under an unknown key."""
    base = len(_envelope(pad=b""))
    out = _envelope(pad=b"x" * (size - base - (len(str(size - base)) - 1)))
    assert len(out) == size, (len(out), size)
    return out


def test_envelope_size_limit_is_inclusive() -> None:
    with pytest.raises(MalformedObject, match=r"unexpected fields \['pad'\]"):
        SignedCertificate.from_bytes(_sized_envelope(MAX_CERTIFICATE_SIZE))
    with pytest.raises(MalformedObject, match="too large"):
        SignedCertificate.from_bytes(_sized_envelope(MAX_CERTIFICATE_SIZE + 1))


def test_10_mb_envelope_is_refused_fast_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = _envelope(b"x" * (10 * 1024 * 1024), bytes(64))

    def parse(*_a: object, **_k: object) -> object:
        raise AssertionError("the parser saw an oversized envelope")

    monkeypatch.setattr(_canonical, "decode", parse)
    for data in (huge, b"l" * len(huge), bytearray(huge), memoryview(huge)):
        start = time.perf_counter()
        with pytest.raises(MalformedObject, match="too large"):
            SignedCertificate.from_bytes(data)  # type: ignore[arg-type]
        assert time.perf_counter() - start < 0.1


def test_every_truncation_of_an_envelope_is_malformed() -> None:
    envelope = _envelope()
    for n in range(len(envelope)):
        with pytest.raises(MalformedObject):
            SignedCertificate.from_bytes(envelope[:n])


def test_every_truncation_of_a_signed_body_is_malformed() -> None:
    body = _canonical.encode(BASE)
    for n in range(len(body)):
        with pytest.raises(MalformedObject):
            SignedCertificate.from_bytes(_envelope(body[:n]))


def _unsorted(d: dict[str, Any]) -> bytes:
    """*d* bencoded with its top-level keys in reverse order."""
    return b"d" + b"".join(_canonical.encode(k.encode()) + _canonical.encode(v)
                           for k, v in sorted(d.items(), reverse=True)) + b"e"


_BODY = _canonical.encode(BASE)
_GRANT = SignedGrant.sign(LicenseGrant(
    work=bytes(32), buyer=ADA.public_key, seller=LABEL.public_key, key_id=bytes(32),
    sealed_key=bytes(80), ts=T0), LABEL)

MALFORMED = [
    # envelope encoding
    pytest.param(lambda: _unsorted(_canonical.decode(_envelope(), max_size=10**4)),
                 id="envelope-keys-unsorted"),
    pytest.param(lambda: _envelope().replace(b"1:vi1e", b"1:vi01e"),
                 id="envelope-v-leading-zero"),
    pytest.param(lambda: _envelope().replace(b"3:sig64:", b"3:sig064:"),
                 id="envelope-length-leading-zero"),
    pytest.param(lambda: _envelope() + b"\0", id="envelope-trailing-byte"),
    pytest.param(lambda: b"", id="envelope-empty"),
    pytest.param(lambda: _canonical.encode([_BODY]), id="envelope-is-a-list"),
    pytest.param(lambda: _BODY, id="bare-body-without-envelope"),
    pytest.param(lambda: b"d" + b"l" * 100 + b"e" * 100 + b"e", id="envelope-depth-bomb"),
    pytest.param(lambda: _envelope().replace(b"d4:body", b"d4:body1:x4:body", 1),
                 id="envelope-duplicate-key"),
    # envelope fields
    pytest.param(lambda: _envelope(type=b"p2pdist/artist-certificate"),
                 id="envelope-type-of-the-body"),
    pytest.param(lambda: _envelope(type=b"p2pdist/license-grant/signed"),
                 id="envelope-grant-type"),
    pytest.param(lambda: _envelope(type=None), id="envelope-no-type"),
    pytest.param(lambda: _envelope(v=2), id="envelope-version-2"),
    pytest.param(lambda: _envelope(v=0), id="envelope-version-0"),
    pytest.param(lambda: _envelope(v=None), id="envelope-no-version"),
    pytest.param(lambda: _envelope(BASE, bytes(64)), id="body-as-dict-not-bytes"),
    pytest.param(lambda: _envelope(b""), id="body-empty-and-signed"),
    pytest.param(lambda: _envelope(sig=bytes(63)), id="sig-63-bytes"),
    pytest.param(lambda: _envelope(sig=bytes(65)), id="sig-65-bytes"),
    pytest.param(lambda: _envelope(sig=7), id="sig-is-int"),
    pytest.param(lambda: _envelope(extra=b"x"), id="envelope-unknown-field"),
    # another kind of object
    pytest.param(_GRANT.to_bytes, id="grant-envelope-read-as-certificate"),
    pytest.param(lambda: _envelope(_GRANT.body), id="grant-body-in-a-certificate-envelope"),
    # body encoding, properly signed
    pytest.param(lambda: _envelope(_unsorted(BASE)), id="body-keys-unsorted"),
    pytest.param(lambda: _envelope(_BODY.replace(b"1:vi1e", b"1:vi01e")),
                 id="body-int-leading-zero"),
    pytest.param(lambda: _envelope(_BODY.replace(b"6:artist32:", b"6:artist032:")),
                 id="body-length-leading-zero"),
    pytest.param(lambda: _envelope(_BODY + b"e"), id="body-trailing-byte"),
    pytest.param(lambda: _envelope(_canonical.encode([BASE])), id="body-is-a-list"),
    # type and version, properly signed
    pytest.param(lambda: _resigned(_set("v", 2)), id="body-version-2"),
    pytest.param(lambda: _resigned(_set("v", 0)), id="body-version-0"),
    pytest.param(lambda: _resigned(_set("type", TYPE)), id="body-type-of-the-envelope"),
    pytest.param(lambda: _resigned(_set("type", b"p2pdist/license-grant")),
                 id="body-grant-type"),
    pytest.param(lambda: _resigned(_set("extra", b"x")), id="body-unknown-field"),
    # fields, properly signed
    pytest.param(lambda: _resigned(_set("artist", ADA.public_key[:31])), id="artist-31-bytes"),
    pytest.param(lambda: _resigned(_set("artist", ADA.public_key + b"\0")),
                 id="artist-33-bytes"),
    pytest.param(lambda: _resigned(_set("artist", key_to_text(ADA.public_key).encode())),
                 id="artist-as-text"),
    pytest.param(lambda: _resigned(_set("label", 0)), id="label-is-int"),
    pytest.param(lambda: _resigned(_set("name", b"")), id="name-empty"),
    pytest.param(lambda: _resigned(_set("name", b"x" * 301)), id="name-301-chars"),
    pytest.param(lambda: _resigned(_set("name", "\U0001d11e".encode() * 301)),
                 id="name-301-four-byte-chars"),
    pytest.param(lambda: _resigned(_set("name", b"Ada\x1b[2J")), id="name-terminal-escape"),
    pytest.param(lambda: _resigned(_set("name", "Ada\u202eadA".encode())),
                 id="name-bidi-override"),
    pytest.param(lambda: _resigned(_set("name", "A\u200bda".encode())),
                 id="name-zero-width-space"),
    pytest.param(lambda: _resigned(_set("name", b"Ada ")), id="name-outer-space"),
    pytest.param(lambda: _resigned(_set("name", b"\xff\xfe")), id="name-not-utf8"),
    pytest.param(lambda: _resigned(_set("name", ["Ada"])), id="name-is-a-list"),
    pytest.param(lambda: _resigned(_set("label_name", b"Label\nFAKE")),
                 id="label-name-newline"),
    pytest.param(lambda: _resigned(_set("label_name", b"")), id="label-name-empty"),
    pytest.param(lambda: _resigned(_set("issued", -1)), id="issued-negative"),
    pytest.param(lambda: _resigned(_set("issued", MAX_TS + 1)), id="issued-after-year-9999"),
    pytest.param(lambda: _resigned(_set("issued", b"1735689600")), id="issued-is-string"),
    pytest.param(lambda: _resigned(_set("expires", T0_TS)), id="expires-at-issue"),
    pytest.param(lambda: _resigned(_set("expires", T0_TS - 1)), id="expires-before-issue"),
    pytest.param(lambda: _resigned(_set("expires", -1)), id="expires-negative"),
    pytest.param(lambda: _resigned(_set("expires", MAX_TS + 1)),
                 id="expires-after-year-9999"),
    pytest.param(lambda: _resigned(_set("expires", b"")), id="expires-empty-string"),
    pytest.param(lambda: _resigned(_set("expires", 2**64)), id="expires-2**64"),
    *(pytest.param(lambda key=key: _resigned(_drop(key)), id=f"without-{key}")
      for key in ("type", "v", "artist", "name", "label", "label_name", "issued")),
]


@pytest.mark.parametrize("make", MALFORMED)
def test_malformed_certificate_is_refused_as_malformed(make: Callable[[], bytes]) -> None:
    with pytest.raises(MalformedObject) as e:
        _check(make())
    _assert_opaque_refusal(e.value)


def test_a_certificate_is_no_grant_either() -> None:
    with pytest.raises(MalformedObject):
        SignedGrant.from_bytes(_envelope())


# -- embedded in a license -----------------------------------------------------------------

CONTENT = Content(
    piece_length=262_144,
    files=(ContentFile(("Duet", "a.flac"), 1_000_000, hashlib.sha256(b"a").digest()),),
    v1_pieces_sha256=hashlib.sha256(b"pieces").digest(),
)
ADA_CERT = _signed()
GRACE_CERT = _signed(_cert(artist=GRACE.public_key, name="Grace", expires=None))
ADA_CERT_2 = _signed(_cert(label=LABEL2.public_key, label_name="Other Label"))
MALLORY_CERT = _signed(_cert(artist=MALLORY.public_key, name="Mallory"))


def _manifest(*certs: SignedCertificate, **kw: Any) -> LicenseManifest:
    fields_: dict[str, Any] = {
        "title": "Duet", "creators": ("Ada", "Grace"), "created": T0,
        "terms": CCTerms("CC-BY-SA-4.0"),
        "splits": (Split(ADA.public_key, 6_000), Split(GRACE.public_key, 4_000)),
        "content": CONTENT, "certificates": certs,
    }
    fields_.update(kw)
    return LicenseManifest(**fields_)


def _license(manifest_bytes: bytes, signers: tuple[Identity, ...] = (ADA, GRACE)) -> bytes:
    return _canonical.encode({
        "manifest": manifest_bytes,
        "signatures": [{"pk": i.public_key, "sig": i.sign(domain=DOMAIN,
                                                           message=manifest_bytes)}
                       for i in signers],
        "type": "p2pdist/signed-license", "v": 1})


def _verify(envelope: bytes) -> SignedManifest:
    signed = SignedManifest.from_bytes(envelope)
    verify_manifest(signed, content=CONTENT)
    return signed


def _manifest_dict(*certs: bytes) -> dict[str, Any]:
    d = _manifest().to_dict()
    d["certificates"] = list(certs)
    return d


def test_manifest_with_certificates_round_trips_and_verifies() -> None:
    m = _manifest(ADA_CERT, GRACE_CERT, ADA_CERT_2)
    data = m.signed_bytes()
    parsed = LicenseManifest.from_bytes(data)
    assert parsed == m
    assert parsed.signed_bytes() == data
    signed = _verify(SignedManifest.sign(m, [ADA, GRACE]).to_bytes())
    assert signed.manifest.certificates == m.certificates
    assert {c.certificate.artist for c in signed.manifest.certificates} == \
        {ADA.public_key, GRACE.public_key}


def test_manifest_without_certificates_has_no_field_and_old_bytes() -> None:
    m = _manifest()
    assert "certificates" not in m.to_dict()
    assert b"certificates" not in m.signed_bytes()
    assert m.certificates == ()


def test_certificates_are_held_in_byte_order_whatever_order_they_are_given() -> None:
    a = _manifest(ADA_CERT, GRACE_CERT, ADA_CERT_2)
    b = _manifest(ADA_CERT_2, ADA_CERT, GRACE_CERT)
    assert a == b
    assert a.signed_bytes() == b.signed_bytes()
    held = [c.to_bytes() for c in a.certificates]
    assert held == sorted(held)


def test_expired_embedded_certificate_still_verifies() -> None:
    # Expiry is the trust verdict's business, not a reason to refuse the license.
    old = _signed(_cert(issued=datetime(2000, 1, 1, tzinfo=UTC),
                        expires=datetime(2001, 1, 1, tzinfo=UTC)))
    _verify(SignedManifest.sign(_manifest(old), [ADA, GRACE]).to_bytes())


def _tampered_cert(signed: SignedCertificate, key: str, value: Any) -> bytes:
    """*signed*'s envelope with one body field changed, under the original signature."""
    body = _canonical.decode(signed.body, max_size=10**4)
    body[key] = value
    return _canonical.encode({"body": _canonical.encode(body), "sig": signed.sig,
                              "type": TYPE, "v": 1})


def test_certificate_changed_inside_a_signed_license_is_refused() -> None:
    # A fan in the middle edits the label's name in a license the holders signed.
    signed = SignedManifest.sign(_manifest(ADA_CERT), [ADA, GRACE])
    d = _canonical.decode(signed.manifest_bytes, max_size=10**6)
    d["certificates"] = [_tampered_cert(ADA_CERT, "label_name", b"Big Major Label")]
    sigs = [{"pk": s.pk, "sig": s.sig} for s in signed.signatures]
    envelope = _canonical.encode({"manifest": _canonical.encode(d), "signatures": sigs,
                                  "type": "p2pdist/signed-license", "v": 1})
    with pytest.raises(InvalidSignature) as e:
        _verify(envelope)
    _assert_opaque_refusal(e.value)


@pytest.mark.parametrize("key,value", [
    ("label_name", b"Big Major Label"),
    ("expires", MAX_TS),
    ("name", b"Ada Lovelace"),
    ("label", LABEL2.public_key),
], ids=["label-name", "expiry-extended", "artist-name", "label-key"])
def test_holders_who_forge_a_labels_certificate_are_refused(key: str, value: Any) -> None:
    # The holders sign the license themselves: their signatures hold, the label's does not.
    envelope = _license(_canonical.encode(_manifest_dict(_tampered_cert(ADA_CERT, key,
                                                                         value))))
    SignedManifest.from_bytes(envelope)  # well-formed: the certificate's signature decides
    with pytest.raises(InvalidSignature) as e:
        _verify(envelope)
    _assert_opaque_refusal(e.value)


def test_holder_who_signs_a_certificate_as_the_label_is_refused() -> None:
    cert = _cert()
    body = _canonical.encode(cert.to_dict())
    fake = _envelope(body, ADA.sign(domain=CERTIFICATE_DOMAIN, message=body))
    with pytest.raises(InvalidSignature):
        _verify(_license(_canonical.encode(_manifest_dict(fake))))


def test_manifest_embedding_a_certificate_of_a_non_holder_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="rights holders"):
        _manifest(ADA_CERT, MALLORY_CERT)


def test_manifest_embedding_a_certificate_of_a_non_holder_is_refused() -> None:
    # Mallory's genuine certificate, slipped into a license she holds no share in.
    envelope = _license(_canonical.encode(_manifest_dict(MALLORY_CERT.to_bytes())))
    with pytest.raises(MalformedObject, match="rights holders"):
        _verify(envelope)


def test_verify_manifest_checks_the_holder_rule_on_a_manifest_built_by_hand() -> None:
    # Parsing refuses it already; verify_manifest does not rely on that.
    signed = SignedManifest.sign(_manifest(ADA_CERT), [ADA, GRACE])
    m = signed.manifest
    object.__setattr__(m, "certificates", (MALLORY_CERT,))
    with pytest.raises(TermsError, match="not one of its rights holders") as e:
        verify_manifest(signed, content=CONTENT)
    assert fingerprint(MALLORY.public_key) in e.value.message


def test_certificate_signatures_are_checked_before_the_content() -> None:
    fake = _tampered_cert(ADA_CERT, "label_name", b"Big Major Label")
    signed = SignedManifest.from_bytes(_license(_canonical.encode(_manifest_dict(fake))))
    other = Content(16_384, (ContentFile(("x",), 1, None),), bytes(32))
    with pytest.raises(InvalidSignature):
        verify_manifest(signed, content=other)


def _eight() -> list[SignedCertificate]:
    return [_signed(_cert(issued=T0 + i * SECOND)) for i in range(MAX_CERTIFICATES + 1)]


@pytest.mark.parametrize("n", [1, MAX_CERTIFICATES - 1, MAX_CERTIFICATES])
def test_up_to_eight_certificates_verify(n: int) -> None:
    m = _manifest(*_eight()[:n])
    assert len(_verify(SignedManifest.sign(m, [ADA, GRACE]).to_bytes())
               .manifest.certificates) == n


def test_nine_certificates_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="at most 8"):
        _manifest(*_eight())


def test_the_same_certificate_twice_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="twice"):
        _manifest(ADA_CERT, GRACE_CERT, ADA_CERT)


def test_a_manifest_certificate_must_be_a_signed_certificate() -> None:
    with pytest.raises(ValueError, match="SignedCertificate"):
        _manifest(ADA_CERT.to_bytes())  # type: ignore[arg-type]


_A, _G = ADA_CERT.to_bytes(), GRACE_CERT.to_bytes()
_LO, _HI = sorted((_A, _G))

MALFORMED_EMBEDDED = [
    pytest.param(lambda: [], id="empty-list-instead-of-absent"),
    pytest.param(lambda: [c.to_bytes() for c in sorted(_eight(), key=SignedCertificate.to_bytes)],
                 id="nine-certificates"),
    pytest.param(lambda: _A, id="not-a-list"),
    pytest.param(lambda: [{"body": ADA_CERT.body, "sig": ADA_CERT.sig}], id="entry-is-a-dict"),
    pytest.param(lambda: [7], id="entry-is-an-int"),
    pytest.param(lambda: [b""], id="entry-empty"),
    pytest.param(lambda: [b"x" * 100], id="entry-not-bencode"),
    pytest.param(lambda: [_A[:-1]], id="entry-truncated"),
    pytest.param(lambda: [_A + b"\0"], id="entry-trailing-byte"),
    pytest.param(lambda: [_A.replace(b"1:vi1e", b"1:vi01e")], id="entry-non-canonical"),
    pytest.param(lambda: [_sized_envelope(MAX_CERTIFICATE_SIZE + 1)], id="entry-oversized"),
    pytest.param(lambda: [b"x" * (10 * 1024 * 1024)], id="entry-10-mb"),
    pytest.param(lambda: [_HI, _LO], id="entries-out-of-byte-order"),
    pytest.param(lambda: [_A, _A], id="entry-twice"),
    pytest.param(lambda: [_GRANT.to_bytes()], id="entry-is-a-grant"),
    pytest.param(lambda: [_resigned(_set("v", 2))], id="entry-version-2"),
    pytest.param(lambda: [_resigned(_set("name", b"Ada\x1b[2J"))], id="entry-escape-in-name"),
]


@pytest.mark.parametrize("make", MALFORMED_EMBEDDED)
def test_malformed_embedded_certificates_are_refused_as_malformed(
    make: Callable[[], Any],
) -> None:
    d = _manifest().to_dict()
    d["certificates"] = make()
    with pytest.raises(MalformedObject) as e:
        _verify(_license(_canonical.encode(d)))
    assert e.value.exit_code == 3
    with pytest.raises(MalformedObject):
        LicenseManifest.from_bytes(_canonical.encode(d))


@st.composite
def _certified_manifests(draw: st.DrawFn) -> LicenseManifest:
    pool = [ADA_CERT, GRACE_CERT, ADA_CERT_2,
            _signed(_cert(artist=GRACE.public_key, name="Grace", label=LABEL2.public_key,
                          label_name="\u00d1and\u00fa", expires=T0 + SECOND))]
    certs = draw(st.lists(st.sampled_from(pool), unique_by=id, max_size=len(pool)))
    return _manifest(*draw(st.permutations(certs)),
                     title=draw(st.text("abc \u00e9", min_size=1).filter(
                         lambda s: s == s.strip())))


@PROPERTY
@given(_certified_manifests())
def test_manifest_with_certificates_round_trips(m: LicenseManifest) -> None:
    envelope = SignedManifest.sign(m, [ADA, GRACE]).to_bytes()
    again = _verify(envelope)
    assert again.manifest == m
    assert again.to_bytes() == envelope


@PROPERTY
@given(_certified_manifests().filter(lambda m: bool(m.certificates)), st.data())
def test_any_single_byte_change_in_a_certified_license_is_refused(
    m: LicenseManifest, data: st.DataObject,
) -> None:
    bad = _flip(SignedManifest.sign(m, [ADA, GRACE]).to_bytes(), data)
    with pytest.raises(VerificationError) as e:
        _verify(bad)
    assert e.value.exit_code == 3


def test_certificates_travel_inside_a_real_torrents_info_dict(tmp_path: Path) -> None:
    track = tmp_path / "duet.flac"
    track.write_bytes(b"duet" * 10_000)
    info = make_torrent(track, fmt="hybrid")["info"]
    assert isinstance(info, dict)
    m = replace(_manifest(ADA_CERT, GRACE_CERT), content=content_of_info(info))
    info_bytes = _canonical.encode(embed_license(info, SignedManifest.sign(m, [ADA, GRACE])))
    lic = verify_info(info_bytes)
    assert lic.manifest.certificates == m.certificates
    assert lic.manifest == m
    # And a certificate edited inside the torrent is refused like any other edit.
    edited = info_bytes.replace(b"Roundhouse Records", b"Roundhouse Recordz", 1)
    assert edited != info_bytes
    with pytest.raises(InvalidSignature):
        verify_info(edited)



def test_every_certificate_signature_is_checked_before_the_holder_rule() -> None:
    signed = SignedManifest.sign(_manifest(ADA_CERT), [ADA, GRACE])
    forged = SignedCertificate(ADA_CERT.body, ADA_CERT.certificate, bytes(64))
    object.__setattr__(signed.manifest, "certificates", (MALLORY_CERT, forged))
    with pytest.raises(InvalidSignature):
        verify_manifest(signed, content=CONTENT)
