"""The signed license manifest: vectors, properties and a table of named attacks.

Every rejection must be a VerificationError (exit 3), never a KeyError, TypeError or
ValueError leaking out of the parser.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist._paths import name_problem, paths_problem
from p2pdist.errors import (
    ContentMismatch,
    InputError,
    InvalidSignature,
    MalformedObject,
    NotLicensed,
    VerificationError,
)
from p2pdist.identity import Identity, fingerprint, key_to_text
from p2pdist.licensing import (
    CC_LICENSES,
    DOMAIN,
    INFO_KEY,
    MAX_INFO_SIZE,
    MAX_MANIFEST_SIZE,
    CCTerms,
    Collector,
    Content,
    ContentFile,
    LicenseManifest,
    SignedManifest,
    Split,
    cc_terms,
    content_of_info,
    embed_license,
    license_of_info,
    verify_info,
    verify_manifest,
)
from p2pdist.licensing._manifest import MAX_ENVELOPE_SIZE
from p2pdist.node import publish
from p2pdist.swarm import info_section, make_torrent

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "license_manifests.json").read_text("utf-8")
)

PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


ADA = _identity(bytes(range(32)), "Ada")
GRACE = _identity(bytes(range(32, 64)), "Grace")
MALLORY = _identity(b"\x07" * 32, "Mallory")  # holds no share in anything
POOL = [_identity(bytes([i]) * 32, f"holder {i}") for i in range(10, 16)]

CONTENT = Content(
    piece_length=262_144,
    files=(
        ContentFile(("Duet", "a.flac"), 1_000_000, hashlib.sha256(b"a").digest()),
        ContentFile(("Duet", "b.flac"), 16_385, hashlib.sha256(b"b").digest()),
    ),
    v1_pieces_sha256=hashlib.sha256(b"pieces").digest(),
)


def _manifest(**kw: Any) -> LicenseManifest:
    fields: dict[str, Any] = {
        "title": "Duet",
        "creators": ("Ada", "Grace"),
        "created": datetime(2025, 1, 1, tzinfo=UTC),
        "terms": CCTerms("CC-BY-NC-ND-4.0"),
        "splits": (Split(ADA.public_key, 6_000), Split(GRACE.public_key, 4_000)),
        "content": CONTENT,
    }
    fields.update(kw)
    return LicenseManifest(**fields)


BASE = _manifest()
BASE_DICT = BASE.to_dict()


def _sigs(manifest_bytes: bytes, signers: list[Identity],
          domain: bytes = DOMAIN) -> list[dict[str, bytes]]:
    return [{"pk": i.public_key, "sig": i.sign(domain=domain, message=manifest_bytes)}
            for i in signers]


def _envelope(manifest_bytes: bytes, sigs: list[dict[str, bytes]] | None = None,
              **fields: Any) -> bytes:
    """Canonical envelope bytes; *sigs* default to both holders signing *manifest_bytes*."""
    d: dict[str, Any] = {
        "manifest": manifest_bytes,
        "signatures": sigs if sigs is not None else _sigs(manifest_bytes, [ADA, GRACE]),
        "type": "p2pdist/signed-license",
        "v": 1,
    }
    d.update(fields)
    return _canonical.encode({k: v for k, v in d.items() if v is not None})


def _verify(envelope: bytes, content: Content = CONTENT) -> SignedManifest:
    """Everything a fan runs on the received envelope bytes."""
    signed = SignedManifest.from_bytes(envelope)
    verify_manifest(signed, content=content)
    return signed


def _edited(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    d = copy.deepcopy(BASE_DICT)
    change(d)
    return d


def _resigned(change: Callable[[dict[str, Any]], Any]) -> bytes:
    """An envelope whose holders properly signed the *changed* manifest dict."""
    return _envelope(_canonical.encode(_edited(change)))


def _replayed(change: Callable[[dict[str, Any]], Any]) -> bytes:
    """The changed manifest dict carrying the signatures made for the original."""
    sigs = _sigs(BASE.signed_bytes(), [ADA, GRACE])
    return _envelope(_canonical.encode(_edited(change)), sigs)


def _assert_verification_error(exc: BaseException) -> None:
    assert isinstance(exc, VerificationError)
    assert exc.exit_code == 3
    assert exc.message


def test_base_manifest_verifies() -> None:
    _verify(_envelope(BASE.signed_bytes()))


# -- golden vectors -----------------------------------------------------------------------


def _build(case_input: dict[str, Any]) -> tuple[LicenseManifest, list[Identity]]:
    c = case_input["content"]
    content = Content(
        piece_length=c["piece_length"],
        files=tuple(
            ContentFile(tuple(f["path"]), f["size"],
                        bytes.fromhex(f["root"]) if f["root"] else None)
            for f in c["files"]
        ),
        v1_pieces_sha256=bytes.fromhex(c["v1"]) if c["v1"] else None,
    )
    manifest = LicenseManifest(
        title=case_input["title"],
        creators=tuple(case_input["creators"]),
        created=datetime.fromtimestamp(case_input["created"], UTC),
        terms=CCTerms(case_input["spdx"]),
        splits=tuple(
            Split(bytes(nacl.signing.SigningKey(bytes.fromhex(s["seed"])).verify_key), s["bps"])
            for s in case_input["splits"]
        ),
        content=content,
        collector=None if "collector" not in case_input else Collector.parse_endpoint(
            bytes(nacl.signing.SigningKey(
                bytes.fromhex(case_input["collector"]["seed"])).verify_key),
            case_input["collector"]["api"]),
    )
    signers = [_identity(bytes.fromhex(s), "signer") for s in case_input["signers"]]
    return manifest, signers


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_manifest_vector(case: dict[str, Any]) -> None:
    manifest, signers = _build(case["input"])
    signed = SignedManifest.sign(manifest, signers)
    assert signed.manifest_bytes.hex() == case["manifest_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    assert [s.sig.hex() for s in signed.signatures] == [s["sig_hex"] for s in case["signatures"]]
    assert [key_to_text(s.pk) for s in signed.signatures] == [
        s["pk_text"] for s in case["signatures"]
    ]
    assert [fingerprint(s.pk) for s in signed.signatures] == [
        s["fingerprint"] for s in case["signatures"]
    ]


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_stored_vector_bytes_verify(case: dict[str, Any]) -> None:
    manifest, _ = _build(case["input"])
    envelope = bytes.fromhex(case["envelope_hex"])
    manifest_bytes = bytes.fromhex(case["manifest_hex"])
    signed = _verify(envelope, manifest.content)
    assert signed.manifest == manifest
    assert signed.manifest_bytes == manifest_bytes
    assert signed.to_bytes() == envelope
    # And by hand with PyNaCl, not through p2pdist's own verifier.
    for stored, parsed in zip(case["signatures"], signed.signatures, strict=True):
        assert key_to_text(parsed.pk) == stored["pk_text"]
        nacl.signing.VerifyKey(parsed.pk).verify(DOMAIN + b"\0" + manifest_bytes,
                                                 bytes.fromhex(stored["sig_hex"]))


# -- properties ---------------------------------------------------------------------------

# Printable as p2pdist._text defines it: no control, format (bidi, zero-width), surrogate
# or line/paragraph separator characters, and no surrounding white space.
_HIDDEN = ("Cc", "Cf", "Cs", "Zl", "Zp")
_text = st.text(
    alphabet=st.characters(min_codepoint=32, exclude_categories=_HIDDEN), min_size=1, max_size=40
).filter(lambda s: s == s.strip())
_long_text = _text | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF,
                           exclude_categories=(*_HIDDEN, "Zs")),
    min_size=290, max_size=300,
)


@st.composite
def _splits(draw: st.DrawFn) -> tuple[list[Identity], tuple[Split, ...]]:
    holders = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique_by=id))
    cuts = sorted(draw(st.lists(st.integers(1, 9_999), min_size=len(holders) - 1,
                                max_size=len(holders) - 1, unique=True)))
    edges = [0, *cuts, 10_000]
    return holders, tuple(Split(h.public_key, b - a)
                          for h, a, b in zip(holders, edges[:-1], edges[1:], strict=True))


@st.composite
def _contents(draw: st.DrawFn) -> Content:
    # File names a fan may write (p2pdist._paths), as every verified manifest has.
    drawn = draw(st.lists(st.lists(_text.filter(lambda t: name_problem(t) is None),
                                   min_size=1, max_size=3).map(tuple), min_size=1,
                          max_size=5))
    paths: list[tuple[str, ...]] = []
    for p in drawn:
        if paths_problem([*paths, p]) is None:
            paths.append(p)
    v1 = draw(st.none() | st.binary(min_size=32, max_size=32))
    files = []
    for p in sorted(paths):
        size = draw(st.integers(0, 2**40))
        root = draw(st.binary(min_size=32, max_size=32) if v1 is None and size
                    else st.none() | st.binary(min_size=32, max_size=32))
        files.append(ContentFile(p, size, root))
    return Content(2 ** draw(st.integers(14, 24)), tuple(files), v1)


_hostnames = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?(?:\.[a-z0-9]{1,10}){0,3}\Z")
_hosts = _hostnames | st.ip_addresses().map(str)


@st.composite
def _collectors(draw: st.DrawFn) -> Collector:
    return Collector(draw(st.binary(min_size=32, max_size=32)), draw(_hosts),
                     draw(st.integers(1, 65535)))


@st.composite
def _signed_manifests(draw: st.DrawFn) -> tuple[LicenseManifest, list[Identity]]:
    holders, splits = draw(_splits())
    manifest = LicenseManifest(
        title=draw(_long_text),
        creators=tuple(draw(st.lists(_text, min_size=1, max_size=32))),
        created=datetime.fromtimestamp(draw(st.integers(0, 253_402_300_799)), UTC),
        terms=CCTerms(draw(st.sampled_from(sorted(CC_LICENSES)))),
        splits=splits,
        content=draw(_contents()),
        collector=draw(st.none() | _collectors()),
    )
    return manifest, draw(st.permutations(holders))


@PROPERTY
@given(_signed_manifests())
def test_manifest_bytes_round_trip(ms: tuple[LicenseManifest, list[Identity]]) -> None:
    manifest, _ = ms
    data = manifest.signed_bytes()
    parsed = LicenseManifest.from_bytes(data)
    assert parsed == manifest
    assert parsed.signed_bytes() == data


@PROPERTY
@given(_signed_manifests())
def test_sign_then_verify_holds_after_round_trip(
    ms: tuple[LicenseManifest, list[Identity]],
) -> None:
    manifest, signers = ms
    signed = SignedManifest.sign(manifest, signers)
    envelope = signed.to_bytes()
    again = _verify(envelope, manifest.content)
    assert again == signed
    assert again.to_bytes() == envelope


@PROPERTY
@given(_signed_manifests(), st.data())
def test_any_single_byte_change_in_envelope_is_rejected(
    ms: tuple[LicenseManifest, list[Identity]], data: st.DataObject
) -> None:
    manifest, signers = ms
    envelope = bytearray(SignedManifest.sign(manifest, signers).to_bytes())
    i = data.draw(st.integers(0, len(envelope) - 1), label="position")
    envelope[i] = data.draw(st.integers(0, 255).filter(lambda b: b != envelope[i]), label="byte")
    with pytest.raises(VerificationError) as e:
        _verify(bytes(envelope), manifest.content)
    _assert_verification_error(e.value)


# Structural bytes and bit flips: every substitution that can turn one well-formed
# bencode token into another (a digit into '-', a length into another length, ...).
_SUBSTITUTES = sorted(set(b"-0123456789:deil\x00") | {0x80, 0xFF})


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_any_substituted_byte_in_vector_envelope_is_rejected(case: dict[str, Any]) -> None:
    manifest, _ = _build(case["input"])
    envelope = bytes.fromhex(case["envelope_hex"])
    leaks = []
    for i in range(len(envelope)):
        for b in {*_SUBSTITUTES, envelope[i] ^ 0x01, envelope[i] ^ 0x20} - {envelope[i]}:
            bad = envelope[:i] + bytes([b]) + envelope[i + 1 :]
            try:
                _verify(bad, manifest.content)
            except VerificationError:
                continue
            except Exception as e:  # collect every leak, not just the first
                leaks.append(f"byte {i} -> {b:#04x}: {type(e).__name__}: {e}")
            else:
                leaks.append(f"byte {i} -> {b:#04x}: verified")
    assert not leaks, "\n".join(leaks[:10])


# -- named bad inputs ---------------------------------------------------------------------


def _set(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: Any) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return change


def _drop(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def change(d: Any) -> None:
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return change


def _flip(*path: str | int) -> Callable[[dict[str, Any]], None]:
    """Flip the low bit of the last byte of a byte-string field."""
    def change(d: Any) -> None:
        for k in path[:-1]:
            d = d[k]
        v = d[path[-1]]
        d[path[-1]] = v[:-1] + bytes([v[-1] ^ 1])
    return change


def _add(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: Any) -> None:
        for k in path:
            d = d[k]
        d.append(value)
    return change


def _swap_splits(d: dict[str, Any]) -> None:
    d["splits"].reverse()


def _swap_bps(d: dict[str, Any]) -> None:
    a, b = d["splits"]
    a["bps"], b["bps"] = b["bps"], a["bps"]


_ROOT_C = hashlib.sha256(b"c").digest()

# Each field of the manifest, changed to another *valid* value while the holders'
# signatures over the original are kept: the parse succeeds, so only the signature check
# can catch it.
def _add_collector(d: dict[str, Any]) -> None:
    # Mallory adds herself as collector to a license she does not hold: signatures fail.
    d["collector"] = {"api": b"127.0.0.1:7001", "pk": MALLORY.public_key}


TAMPERED_FIELDS = [
    pytest.param(_flip("title"), id="title"),
    pytest.param(_set("title", value=b"Duet (Remastered)"), id="title-extended"),
    pytest.param(_flip("creators", 0), id="creator"),
    pytest.param(_set("creators", value=[b"Mallory"]), id="creators-replaced"),
    pytest.param(_add("creators", value=b"Mallory"), id="creator-added"),
    pytest.param(_set("created", value=BASE_DICT["created"] + 1), id="created"),
    pytest.param(_set("terms", "spdx", value=b"CC0-1.0"), id="terms-relicensed-cc0"),
    pytest.param(_set("terms", "spdx", value=b"CC-BY-4.0"), id="terms-nd-nc-dropped"),
    pytest.param(_set("splits", 0, "pk", value=MALLORY.public_key), id="splits-pk"),
    pytest.param(_swap_bps, id="splits-bps-swapped"),
    pytest.param(_set("splits", value=[{"bps": 10_000, "pk": ADA.public_key}]),
                 id="splits-co-holder-dropped"),
    pytest.param(_swap_splits, id="splits-order"),
    pytest.param(_flip("content", "files", 0, "path", 1), id="content-file-path"),
    pytest.param(_set("content", "files", 0, "size", value=999_999), id="content-file-size"),
    pytest.param(_flip("content", "files", 1, "root"), id="content-file-root"),
    pytest.param(_drop("content", "files", 1, "root"), id="content-file-root-dropped"),
    pytest.param(_add("content", "files",
                      value={"path": [b"Duet", b"c.flac"], "size": 1, "root": _ROOT_C}),
                 id="content-file-added"),
    pytest.param(_set("content", "piece_length", value=524_288), id="content-piece-length"),
    pytest.param(_flip("content", "v1"), id="content-v1"),
    pytest.param(_drop("content", "v1"), id="content-v1-dropped"),
    pytest.param(_add_collector, id="collector-added"),
]


@pytest.mark.parametrize("change", TAMPERED_FIELDS)
def test_manifest_field_changed_after_signing_is_rejected(
    change: Callable[[dict[str, Any]], None],
) -> None:
    envelope = _replayed(change)
    SignedManifest.from_bytes(envelope)  # still well-formed: the signature must catch it
    with pytest.raises(InvalidSignature) as e:
        _verify(envelope)
    _assert_verification_error(e.value)


MB = BASE.signed_bytes()
OTHER_MB = _manifest(title="Another Work").signed_bytes()

SIGNER_ATTACKS = [
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA, MALLORY])), id="wrong-signer"),
    pytest.param(lambda: _envelope(MB, [*_sigs(MB, [ADA]), {
        "pk": GRACE.public_key, "sig": MALLORY.sign(domain=DOMAIN, message=MB)}]),
                 id="non-holder-signature-under-holder-key"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA])), id="missing-co-signer"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [GRACE])), id="missing-main-signer"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA, GRACE, MALLORY])),
                 id="extra-signer-not-a-holder"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA, GRACE, ADA])), id="duplicate-signature"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA, ADA])),
                 id="duplicate-signature-instead-of-co-signer"),
    pytest.param(lambda: _envelope(MB, [{"pk": s["pk"], "sig": t["sig"]} for s, t in
                                        zip(_sigs(MB, [ADA, GRACE]), _sigs(MB, [GRACE, ADA]),
                                            strict=True)]),
                 id="signatures-swapped-between-holders"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA, GRACE], domain=b"p2pdist/receipt/v1")),
                 id="signature-for-receipt-domain"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA, GRACE], domain=b"p2pdist/license/v2")),
                 id="signature-for-future-license-domain"),
    pytest.param(lambda: _envelope(MB, [{"pk": i.public_key, "sig": i.signing_key.sign(MB)
                                         .signature} for i in (ADA, GRACE)]),
                 id="signature-without-domain"),
    pytest.param(lambda: _envelope(MB, _sigs(OTHER_MB, [ADA, GRACE])),
                 id="signatures-of-another-manifest"),
    pytest.param(lambda: _envelope(MB, [{"pk": i.public_key, "sig": bytes(64)}
                                        for i in (ADA, GRACE)]),
                 id="zero-signatures"),
    pytest.param(lambda: _envelope(MB, _sigs(MB + b"e", [ADA, GRACE])),
                 id="signature-over-different-bytes"),
]


@pytest.mark.parametrize("make", SIGNER_ATTACKS)
def test_manifest_signed_by_other_than_exactly_its_holders_is_rejected(
    make: Callable[[], bytes],
) -> None:
    with pytest.raises(InvalidSignature) as e:
        _verify(make())
    _assert_verification_error(e.value)


def test_manifest_signed_by_non_holder_is_rejected() -> None:
    single = _manifest(splits=(Split(ADA.public_key, 10_000),)).signed_bytes()
    with pytest.raises(InvalidSignature):
        _verify(_envelope(single, _sigs(single, [MALLORY])))
    with pytest.raises(InvalidSignature):
        _verify(_envelope(single, [{"pk": ADA.public_key,
                                    "sig": MALLORY.sign(domain=DOMAIN, message=single)}]))


def test_signature_failure_does_not_say_which_signer_failed() -> None:
    messages = set()
    for sigs in (_sigs(MB, [ADA]) + _sigs(OTHER_MB, [GRACE]),
                 _sigs(OTHER_MB, [ADA]) + _sigs(MB, [GRACE])):
        with pytest.raises(InvalidSignature) as e:
            _verify(_envelope(MB, sigs))
        messages.add(str(e.value))
    assert len(messages) == 1


def _unsorted(d: dict[str, Any]) -> bytes:
    """*d* bencoded with its top-level keys in reverse order."""
    items = sorted(d.items(), reverse=True)
    return b"d" + b"".join(_canonical.encode(k.encode()) + _canonical.encode(v)
                           for k, v in items) + b"e"


def _last_replaced(data: bytes, old: bytes, new: bytes) -> bytes:
    i = data.rindex(old)
    return data[:i] + new + data[i + len(old) :]


def _with_leading_zero_created() -> bytes:
    mb = MB.replace(b"7:createdi", b"7:createdi0", 1)
    assert mb != MB
    return mb


def _sized_manifest(size: int) -> bytes:
    """Manifest bytes of exactly *size*, padded with a string under an unknown key."""
    base = _canonical.encode({**BASE_DICT, "zz": b""})
    n = size - len(base)
    while len(_canonical.encode({**BASE_DICT, "zz": b"x" * n})) > size:
        n -= 1
    out = _canonical.encode({**BASE_DICT, "zz": b"x" * n})
    assert len(out) == size
    return out


def _huge_creators(d: dict[str, Any]) -> None:
    d["creators"] = [b"Ada"] * 33


_GOOD_API = b"collector.example:7001"
_BAD_COLLECTORS: dict[str, Any] = {
    "not-a-dict": b"collector.example:7001",
    "empty": {},
    "no-key": {"api": _GOOD_API},
    "no-api": {"pk": ADA.public_key},
    "key-31-bytes": {"api": _GOOD_API, "pk": ADA.public_key[:31]},
    "extra-field": {"api": _GOOD_API, "pk": ADA.public_key, "url": b"http://x"},
    "no-port": {"api": b"collector.example", "pk": ADA.public_key},
    "port-zero": {"api": b"collector.example:0", "pk": ADA.public_key},
    "port-too-big": {"api": b"collector.example:65536", "pk": ADA.public_key},
    "port-signed": {"api": b"collector.example:+80", "pk": ADA.public_key},
    "host-with-slash": {"api": b"evil/../x:80", "pk": ADA.public_key},
    "host-with-space": {"api": b"a b:80", "pk": ADA.public_key},
    "host-empty": {"api": b":80", "pk": ADA.public_key},
    "host-url": {"api": b"http://collector.example:80", "pk": ADA.public_key},
    "v6-unbracketed": {"api": b"::1:80", "pk": ADA.public_key},
    "v4-bracketed": {"api": b"[127.0.0.1]:80", "pk": ADA.public_key},
    "host-too-long": {"api": b"a" * 64 + b".example:80", "pk": ADA.public_key},
    "api-not-utf8": {"api": b"\xff:80", "pk": ADA.public_key},
    "api-an-int": {"api": 80, "pk": ADA.public_key},
}

MALFORMED = [
    # encoding
    pytest.param(lambda: _unsorted(_canonical.decode(_envelope(MB), max_size=10**6)),
                 id="envelope-keys-unsorted"),
    pytest.param(lambda: _envelope(_unsorted(BASE_DICT)), id="manifest-keys-unsorted-and-signed"),
    pytest.param(lambda: _last_replaced(_envelope(MB), b"1:vi1e", b"1:vi01e"),
                 id="envelope-int-leading-zero"),
    pytest.param(lambda: _envelope(_with_leading_zero_created()),
                 id="manifest-int-leading-zero-and-signed"),
    pytest.param(lambda: _envelope(MB.replace(b"4:Duet", b"04:Duet", 1)),
                 id="manifest-length-leading-zero-and-signed"),
    pytest.param(lambda: _envelope(MB) + b"\0", id="envelope-trailing-byte"),
    pytest.param(lambda: _envelope(MB) + _envelope(MB), id="envelope-twice"),
    pytest.param(lambda: _envelope(MB + b"de"), id="manifest-trailing-bytes-and-signed"),
    pytest.param(lambda: _envelope(b""), id="manifest-empty"),
    pytest.param(lambda: _envelope(MB, type=b"p2pdist/license-manifest"),
                 id="envelope-wrong-type"),
    pytest.param(lambda: _envelope(MB, type=None), id="envelope-no-type"),
    pytest.param(lambda: _envelope(MB, v=2), id="envelope-unknown-version-2"),
    pytest.param(lambda: _envelope(MB, v=0), id="envelope-version-0"),
    pytest.param(lambda: _envelope(MB, v=b"1"), id="envelope-version-as-string"),
    pytest.param(lambda: _envelope(MB, v=None), id="envelope-no-version"),
    pytest.param(lambda: _envelope(MB, collector=b"x"), id="envelope-unknown-field"),
    pytest.param(lambda: _envelope(MB, manifest=None), id="envelope-no-manifest"),
    pytest.param(lambda: _envelope(BASE_DICT, _sigs(MB, [ADA])), id="manifest-as-dict-not-bytes"),
    pytest.param(lambda: _envelope(MB, manifest=7), id="manifest-as-int"),
    pytest.param(lambda: _envelope(MB, []), id="no-signatures"),
    pytest.param(lambda: _envelope(MB, signatures=b"sig"), id="signatures-not-a-list"),
    pytest.param(lambda: _envelope(MB, _sigs(MB, [ADA]) * 65), id="more-signatures-than-splits"),
    pytest.param(lambda: _envelope(MB, [[ADA.public_key, b"x" * 64]]), id="signature-is-a-list"),
    pytest.param(lambda: _envelope(MB, [{"pk": ADA.public_key}]), id="signature-without-sig"),
    pytest.param(lambda: _envelope(MB, [{**s, "ts": 1} for s in _sigs(MB, [ADA, GRACE])]),
                 id="signature-extra-field"),
    pytest.param(lambda: _envelope(MB, [{"pk": ADA.public_key[:31], "sig": bytes(64)}]),
                 id="signer-key-31-bytes"),
    pytest.param(lambda: _envelope(MB, [{"pk": ADA.public_key, "sig": bytes(63)}]),
                 id="signature-63-bytes"),
    pytest.param(lambda: _envelope(MB, [{"pk": ADA.public_key, "sig": 0}]),
                 id="signature-is-int"),
    pytest.param(lambda: _canonical.encode([MB]), id="envelope-is-a-list"),
    pytest.param(lambda: _canonical.encode(MB), id="envelope-is-a-string"),
    pytest.param(lambda: b"", id="envelope-empty"),
    # oversized
    pytest.param(lambda: _envelope(_sized_manifest(MAX_MANIFEST_SIZE + 1)),
                 id="manifest-over-max-size"),
    pytest.param(lambda: _envelope(b"x" * (MAX_ENVELOPE_SIZE + 1)), id="envelope-over-max-size"),
    # manifest fields, properly signed by both holders
    pytest.param(lambda: _envelope(_canonical.encode([BASE_DICT])), id="manifest-is-a-list"),
    pytest.param(lambda: _resigned(_set("v", value=2)), id="manifest-unknown-version-2"),
    pytest.param(lambda: _resigned(_set("type", value=b"p2pdist/signed-license")),
                 id="manifest-wrong-type"),
    pytest.param(lambda: _resigned(_set("type", value=b"p2pdist/receipt")),
                 id="manifest-receipt-type"),
    pytest.param(lambda: _resigned(_drop("content")), id="manifest-without-content"),
    pytest.param(lambda: _resigned(_drop("terms")), id="manifest-without-terms"),
    pytest.param(lambda: _resigned(_set("collector", value=b"http://x")),
                 id="manifest-unknown-field"),
    pytest.param(lambda: _resigned(_set("title", value=b"")), id="title-empty"),
    pytest.param(lambda: _resigned(_set("title", value=b"Duet\x1b[2J")),
                 id="title-terminal-escape"),
    pytest.param(lambda: _resigned(_set("title", value=b"\xff\xfe")), id="title-not-utf8"),
    pytest.param(lambda: _resigned(_set("title", value=b"x" * 301)), id="title-301-chars"),
    pytest.param(lambda: _resigned(_set("title", value=7)), id="title-is-int"),
    pytest.param(lambda: _resigned(_set("title", value=[b"Duet"])), id="title-is-list"),
    pytest.param(lambda: _resigned(_set("creators", value=[])), id="creators-empty"),
    pytest.param(lambda: _resigned(_set("creators", value=b"Ada")), id="creators-not-a-list"),
    pytest.param(lambda: _resigned(_huge_creators), id="creators-33"),
    pytest.param(lambda: _resigned(_set("creators", 0, value=b"Ada\nGrace")),
                 id="creator-newline"),
    pytest.param(lambda: _resigned(_set("created", value=-1)), id="created-negative"),
    pytest.param(lambda: _resigned(_set("created", value=2**40)), id="created-2**40"),
    pytest.param(lambda: _resigned(_set("created", value=2**39)), id="created-past-year-9999"),
    pytest.param(lambda: _resigned(_set("created", value=b"2025")), id="created-is-string"),
    pytest.param(lambda: _resigned(_set("terms", "spdx", value=b"MIT")), id="unknown-spdx-id"),
    pytest.param(lambda: _resigned(_set("terms", "spdx", value=b"cc-by-4.0")),
                 id="spdx-id-wrong-case"),
    pytest.param(lambda: _resigned(_drop("terms", "spdx")), id="terms-without-spdx"),
    pytest.param(lambda: _resigned(_set("terms", "kind", value=b"paid")),
                 id="terms-kind-paid-unknown-here"),
    pytest.param(lambda: _resigned(_set("terms", "price", value=100)), id="terms-extra-field"),
    pytest.param(lambda: _resigned(_set("terms", value=b"CC0-1.0")), id="terms-not-a-dict"),
    pytest.param(lambda: _resigned(_set("splits", 1, "bps", value=3_999)),
                 id="splits-sum-9999"),
    pytest.param(lambda: _resigned(_set("splits", 1, "bps", value=4_001)),
                 id="splits-sum-10001"),
    pytest.param(lambda: _resigned(_set("splits", 1, "bps", value=0)), id="split-bps-zero"),
    pytest.param(lambda: _resigned(_set("splits", value=[
        {"bps": 16_000, "pk": ADA.public_key}, {"bps": -6_000, "pk": GRACE.public_key}])),
                 id="split-bps-negative-sum-10000"),
    pytest.param(lambda: _resigned(_set("splits", value=[
        {"bps": 5_000, "pk": ADA.public_key}, {"bps": 5_000, "pk": ADA.public_key}])),
                 id="split-holder-twice"),
    pytest.param(lambda: _resigned(_set("splits", value=[])), id="splits-empty"),
    pytest.param(lambda: _resigned(_set("splits", value=[
        {"bps": 1, "pk": bytes([i]) * 32} for i in range(65)])), id="splits-65-holders"),
    pytest.param(lambda: _resigned(_set("splits", 0, "pk", value=b"\1" * 31)),
                 id="split-key-31-bytes"),
    pytest.param(lambda: _resigned(_set("splits", 0, "bps", value=b"6000")),
                 id="split-bps-is-string"),
    pytest.param(lambda: _resigned(_set("splits", 0, value=[ADA.public_key, 6_000])),
                 id="split-is-a-list"),
    pytest.param(lambda: _resigned(_set("content", "files", value=[])), id="content-no-files"),
    pytest.param(lambda: _resigned(_set("content", "files", 0, "path", value=[])),
                 id="content-path-empty"),
    pytest.param(lambda: _resigned(_set("content", "files", 0, "path", 1, value=b"")),
                 id="content-path-component-empty"),
    pytest.param(lambda: _resigned(_set("content", "files", 0, "path", value=b"Duet/a.flac")),
                 id="content-path-is-a-string"),
    pytest.param(lambda: _resigned(_set("content", "files", 0, "path", 1, value=b"a\x00.flac")),
                 id="content-path-nul"),
    pytest.param(lambda: _resigned(_set("content", "files", 0, "root", value=b"\1" * 31)),
                 id="content-root-31-bytes"),
    pytest.param(lambda: _resigned(_set("content", "files", 0, "size", value=b"1")),
                 id="content-size-is-string"),
    pytest.param(lambda: _resigned(_set("content", "files", 0, "mtime", value=1)),
                 id="content-file-extra-field"),
    pytest.param(lambda: _resigned(_swap_files), id="content-files-unsorted"),
    pytest.param(lambda: _resigned(_set("content", "v1", value=b"\1" * 33)),
                 id="content-v1-33-bytes"),
    pytest.param(lambda: _resigned(_set("content", "piece_length", value=1000)),
                 id="content-piece-length-not-power-of-two"),
    pytest.param(lambda: _resigned(_set("content", "piece_length", value=8192)),
                 id="content-piece-length-8KiB"),
    pytest.param(lambda: _resigned(_set("content", "piece_length", value=0)),
                 id="content-piece-length-zero"),
    pytest.param(lambda: _resigned(_set("content", "piece_length", value=-262_144)),
                 id="content-piece-length-negative"),
    pytest.param(lambda: _resigned(_unbound_content), id="content-binds-no-hashes"),
    *[pytest.param(lambda c=c: _resigned(_set("collector", value=c)), id=f"collector-{name}")
      for name, c in _BAD_COLLECTORS.items()],
]


def _swap_files(d: dict[str, Any]) -> None:
    d["content"]["files"].reverse()


def _unbound_content(d: dict[str, Any]) -> None:
    del d["content"]["v1"]
    del d["content"]["files"][0]["root"]


@pytest.mark.parametrize("make", MALFORMED)
def test_malformed_license_is_rejected_as_malformed(make: Callable[[], bytes]) -> None:
    with pytest.raises(MalformedObject) as e:
        _verify(make())
    _assert_verification_error(e.value)


def test_manifest_with_negative_file_size_is_rejected_as_malformed() -> None:
    # A negative size parses as a bencode int and reaches ContentFile(), which raises a
    # bare ValueError outside the parser's try block.
    envelope = _resigned(_set("content", "files", 0, "size", value=-5))
    with pytest.raises(MalformedObject) as e:
        _verify(envelope)
    _assert_verification_error(e.value)


def test_every_truncation_of_an_envelope_is_rejected_as_malformed() -> None:
    envelope = bytes.fromhex(VECTORS[0]["envelope_hex"])
    manifest, _ = _build(VECTORS[0]["input"])
    for n in range(len(envelope)):
        with pytest.raises(MalformedObject):
            _verify(envelope[:n], manifest.content)


def _empty_files_manifest(n: int, name_len: int) -> bytes:
    files = [{"path": [b"Duet", b"%07d" % i], "size": 0} for i in range(n)]
    files.append({"path": [b"Duet", b"y" * name_len], "size": 0})
    return _canonical.encode({**BASE_DICT, "content": {**BASE_DICT["content"], "files": files}})


@pytest.fixture(scope="module")
def manifest_at_max_size() -> bytes:
    """A valid manifest of exactly MAX_MANIFEST_SIZE bytes: ~30k empty files."""
    # The last name takes up the slack: 200 bytes plus less than one file entry, within
    # the 255 bytes a file name may have.
    per_file = len(_empty_files_manifest(1, 200)) - len(_empty_files_manifest(0, 200))
    n = (MAX_MANIFEST_SIZE - len(_empty_files_manifest(0, 200))) // per_file
    name_len = 200 + MAX_MANIFEST_SIZE - len(_empty_files_manifest(n, 200))
    data = _empty_files_manifest(n, name_len)
    assert len(data) == MAX_MANIFEST_SIZE
    return data


def test_manifest_of_exactly_max_size_verifies(manifest_at_max_size: bytes) -> None:
    signed = SignedManifest.from_bytes(_envelope(manifest_at_max_size))
    verify_manifest(signed, content=signed.manifest.content)
    assert signed.manifest_bytes == manifest_at_max_size


def test_manifest_one_byte_over_max_size_is_refused(manifest_at_max_size: bytes) -> None:
    over = manifest_at_max_size.replace(b"5:title4:Duet", b"5:title5:Duett")
    assert len(over) == MAX_MANIFEST_SIZE + 1
    with pytest.raises(MalformedObject, match="license manifest is too large"):
        _verify(_envelope(over))


def _envelope_of_size(size: int) -> bytes:
    n = size - len(_envelope(b"", []))
    while len(_envelope(b"x" * n, [])) > size:
        n -= 1
    return _envelope(b"x" * n, [])


def test_envelope_size_limit_is_inclusive() -> None:
    at_limit = _envelope_of_size(MAX_ENVELOPE_SIZE)
    assert len(at_limit) == MAX_ENVELOPE_SIZE
    with pytest.raises(MalformedObject) as e:
        _verify(at_limit)
    assert "signed license is too large" not in e.value.message  # parsed, failed later
    over = _envelope_of_size(MAX_ENVELOPE_SIZE + 1)
    assert len(over) == MAX_ENVELOPE_SIZE + 1
    with pytest.raises(MalformedObject, match="signed license is too large"):
        _verify(over)


# -- constructor and parser agree --------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _manifest(title="x" * 301), id="title-301-chars"),
        pytest.param(lambda: _manifest(title="Duet\x1b[2J"), id="title-terminal-escape"),
        pytest.param(lambda: _manifest(creators=("Ada\nGrace",)), id="creator-newline"),
        pytest.param(lambda: _manifest(creators=("Ada",) * 33), id="creators-33"),
        pytest.param(lambda: _manifest(created=datetime(1969, 12, 31, tzinfo=UTC)),
                     id="created-before-1970"),
        pytest.param(lambda: _manifest(created=datetime(2025, 1, 1, 0, 0, 0, 500_000, UTC)),
                     id="created-with-microseconds"),
    ],
)
def test_manifest_that_can_be_signed_can_be_verified(make: Callable[[], LicenseManifest]) -> None:
    """A holder must never sign a manifest that every verifier then rejects or alters."""
    try:
        manifest = make()
    except ValueError:
        return  # refused up front: fine
    assert LicenseManifest.from_bytes(manifest.signed_bytes()) == manifest


# -- the license inside a real torrent ----------------------------------------------------


def _folder(root: Path, name: str, sizes: dict[str, int]) -> Path:
    d = root / name
    for rel, size in sizes.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(hashlib.sha256(rel.encode()).digest() * (size // 32) + b"z" * (size % 32))
    return d


def _licensed_info(path: Path, fmt: str = "hybrid", signers: tuple[Identity, ...] = (ADA,),
                   title: str = "Work") -> tuple[dict[str, Any], SignedManifest]:
    info = make_torrent(path, fmt=fmt)["info"]
    assert isinstance(info, dict)
    manifest = _manifest(
        title=title, creators=("Ada",), content=content_of_info(info),
        splits=tuple(Split(s.public_key, 10_000 // len(signers)) for s in signers),
    )
    signed = SignedManifest.sign(manifest, list(signers))
    return embed_license(info, signed), signed


# Sizes at the 16 KiB piece (and block) boundary, ±1.
BOUNDARY_FILES = {"a/under.bin": 16_383, "a/exact.bin": 16_384, "b/over.bin": 16_385,
                  "c/one.bin": 1, "empty.txt": 0}


@pytest.fixture(scope="module")
def works(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("works")
    return {
        "folder": _folder(root, "Album", BOUNDARY_FILES),
        "single": _folder(root, "solo", {"track.flac": 40_000}) / "track.flac",
        "other": _folder(root, "Other", {"x.bin": 16_384}),
    }


@pytest.mark.parametrize("fmt", ["hybrid", "v1"])
@pytest.mark.parametrize("kind", ["folder", "single"])
def test_license_embedded_in_real_torrent_verifies(
    works: dict[str, Path], fmt: str, kind: str
) -> None:
    info, signed = _licensed_info(works[kind], fmt)
    info_bytes = _canonical.encode(info)
    lic = verify_info(info_bytes)
    assert lic.work == hashlib.sha256(info_bytes).hexdigest()
    assert lic.signed == signed
    content = signed.manifest.content
    assert content.v1_pieces_sha256 is not None
    assert all(f.root is None for f in content.files) == (fmt == "v1")
    if kind == "folder":
        assert {"/".join(f.path[1:]): f.size for f in content.files} == BOUNDARY_FILES
    d = lic.to_dict()
    assert d["signers"] == [{"pk": key_to_text(ADA.public_key),
                             "fingerprint": fingerprint(ADA.public_key)}]


def test_publish_writes_a_torrent_whose_license_verifies(tmp_path: Path,
                                                          works: dict[str, Path]) -> None:
    result = publish(tmp_path / "home", ADA, works["folder"], title="Album",
                     spdx="CC-BY-SA-4.0", out=tmp_path / "album.torrent",
                     now=datetime(2025, 1, 1, tzinfo=UTC))
    lic = verify_info(info_section(result.torrent.read_bytes()))
    assert lic.work == result.work
    assert lic.manifest.terms.spdx == "CC-BY-SA-4.0"
    assert lic.plain_words() == "CC BY-SA 4.0 — you may share and adapt, credit Ada, share alike"


def test_license_moved_to_another_torrent_is_a_content_mismatch(works: dict[str, Path]) -> None:
    _, signed = _licensed_info(works["folder"])
    other = embed_license(make_torrent(works["other"])["info"], signed)
    with pytest.raises(ContentMismatch) as e:
        verify_info(_canonical.encode(other))
    _assert_verification_error(e.value)


def _tamper_pieces(info: dict[str, Any]) -> None:
    info["pieces"] = bytes([info["pieces"][0] ^ 1]) + info["pieces"][1:]


def _tamper_root(info: dict[str, Any]) -> None:
    leaf = info["file tree"]["b"]["over.bin"][""]
    leaf["pieces root"] = bytes([leaf["pieces root"][0] ^ 1]) + leaf["pieces root"][1:]


def _rename(info: dict[str, Any]) -> None:
    info["name"] = b"Album2"


def _rename_file(info: dict[str, Any]) -> None:
    info["file tree"]["b"]["ovr.bin"] = info["file tree"]["b"].pop("over.bin")
    for f in info["files"]:
        if f["path"] == [b"b", b"over.bin"]:
            f["path"] = [b"b", b"ovr.bin"]


def _resize(info: dict[str, Any]) -> None:
    info["file tree"]["c"]["one.bin"][""]["length"] = 2
    for f in info["files"]:
        if f["path"] == [b"c", b"one.bin"]:
            f["length"] = 2


def _double_piece_length(info: dict[str, Any]) -> None:
    info["piece length"] *= 2


def _drop_v1(info: dict[str, Any]) -> None:
    del info["pieces"]
    del info["files"]


@pytest.mark.parametrize(
    "tamper",
    [_tamper_pieces, _tamper_root, _rename, _rename_file, _resize, _double_piece_length,
     _drop_v1],
    ids=["v1-pieces", "v2-pieces-root", "torrent-name", "file-name", "file-size",
         "piece-length", "v1-half-stripped"],
)
def test_torrent_altered_after_signing_is_a_content_mismatch(
    works: dict[str, Path], tamper: Callable[[dict[str, Any]], None]
) -> None:
    info, _ = _licensed_info(works["folder"])
    tamper(info)
    with pytest.raises(ContentMismatch) as e:
        verify_info(_canonical.encode(info))
    _assert_verification_error(e.value)


def test_hybrid_whose_v1_and_v2_file_lists_disagree_is_malformed(works: dict[str, Path]) -> None:
    info, _ = _licensed_info(works["folder"])
    info["files"] = [f for f in info["files"] if f["path"] != [b"c", b"one.bin"]]
    with pytest.raises(MalformedObject):
        verify_info(_canonical.encode(info))


def test_hybrid_folder_holding_one_file_named_like_the_folder_is_licensable(
    tmp_path: Path,
) -> None:
    # BEP 52 writes the same file tree for song/song (folder) as for song (one file); the
    # v1 half says which it is. content_of_info guesses "single file" from the tree alone
    # and then finds the v1 list disagreeing, so this work cannot be published.
    info, _ = _licensed_info(_folder(tmp_path, "song", {"song": 40_000}))
    lic = verify_info(_canonical.encode(info))
    assert [f.path for f in lic.manifest.content.files] == [("song", "song")]


def test_torrent_without_license_is_not_licensed() -> None:
    info = {"length": 1, "name": b"x", "piece length": 16_384, "pieces": bytes(20)}
    with pytest.raises(NotLicensed) as e:
        verify_info(_canonical.encode(info))
    _assert_verification_error(e.value)
    assert e.value.remedy


@pytest.mark.parametrize(
    "info_bytes",
    [
        pytest.param(_canonical.encode([1]), id="info-is-a-list"),
        pytest.param(_canonical.encode({INFO_KEY: b"license", "name": b"x"}),
                     id="license-not-a-dict"),
        pytest.param(b"d4:name1:x7:p2pdistdee1:ai1ee", id="info-keys-unsorted"),
        pytest.param(b"d" + b"4:name1:x" + b"e" * 2, id="info-trailing-byte"),
        pytest.param(b"d4:name" + b"l" * 200, id="info-depth-bomb"),
        pytest.param(b" " * (MAX_INFO_SIZE + 1), id="info-over-max-size"),
        pytest.param(_canonical.encode({INFO_KEY: {}, "name": b"x"}), id="license-empty-dict"),
    ],
)
def test_broken_info_dict_is_rejected(info_bytes: bytes) -> None:
    with pytest.raises(MalformedObject) as e:
        verify_info(info_bytes)
    _assert_verification_error(e.value)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set("name", value=7), id="name-is-int"),
        pytest.param(_set("name", value=b"\xff"), id="name-not-utf8"),
        pytest.param(_drop("piece length"), id="no-piece-length"),
        pytest.param(_set("piece length", value=b"16384"), id="piece-length-is-string"),
        pytest.param(_set("piece length", value=1000), id="piece-length-not-power-of-two"),
        pytest.param(_set("pieces", value=bytes(19)), id="pieces-not-multiple-of-20"),
        pytest.param(_set("pieces", value=[bytes(20)]), id="pieces-is-a-list"),
        pytest.param(_set("files", value=[b"x"]), id="files-entry-not-a-dict"),
        pytest.param(_set("files", 0, "attr", value=5), id="files-attr-is-int"),
        pytest.param(_set("files", 0, "length", value=-1), id="files-length-negative"),
        pytest.param(_set("files", 0, "path", value=[b""]), id="files-path-empty-component"),
        pytest.param(_set("files", 0, "path", value=[b"\xff"]), id="files-path-not-utf8"),
        pytest.param(_drop("files", 0, "path"), id="files-without-path"),
        pytest.param(_set("file tree", value=b"x"), id="file-tree-not-a-dict"),
        pytest.param(_set("file tree", "a", value=[1]), id="file-tree-node-is-a-list"),
        pytest.param(_set("file tree", "a", "under.bin", "", value=b"leaf"),
                     id="file-tree-leaf-not-a-dict"),
        pytest.param(_set("file tree", "a", "under.bin", "", "pieces root", value=b"short"),
                     id="file-tree-root-short"),
        pytest.param(_drop("file tree", "a", "under.bin", "", "length"),
                     id="file-tree-leaf-without-length"),
        pytest.param(_set("file tree", "\udcff", value={"": {"length": 1}}),
                     id="file-tree-name-not-utf8"),
    ],
)
def test_hostile_info_dict_is_malformed_not_a_crash(
    works: dict[str, Path], change: Callable[[dict[str, Any]], None]
) -> None:
    info, _ = _licensed_info(works["folder"])
    change(info)
    with pytest.raises(MalformedObject) as e:
        verify_info(_canonical.encode(info))
    _assert_verification_error(e.value)


def test_license_of_info_parses_without_verifying(works: dict[str, Path]) -> None:
    info, signed = _licensed_info(works["folder"])
    parsed_info, parsed = license_of_info(_canonical.encode(info))
    assert parsed == signed
    assert parsed_info[INFO_KEY] == _canonical.decode(signed.to_bytes(), max_size=10**6)


# -- plain words --------------------------------------------------------------------------

PLAIN_WORDS = {
    "CC0-1.0": "CC0 1.0 — public domain: you may share and adapt, no credit required",
    "CC-BY-4.0": "CC BY 4.0 — you may share and adapt, credit Ada",
    "CC-BY-SA-4.0": "CC BY-SA 4.0 — you may share and adapt, credit Ada, share alike",
    "CC-BY-NC-4.0": "CC BY-NC 4.0 — you may share and adapt, credit Ada, non-commercial only",
    "CC-BY-NC-SA-4.0": "CC BY-NC-SA 4.0 — you may share and adapt, credit Ada, "
                       "non-commercial only, share alike",
    "CC-BY-ND-4.0": "CC BY-ND 4.0 — you may share, credit Ada, no derivatives",
    "CC-BY-NC-ND-4.0": "CC BY-NC-ND 4.0 — you may share, credit Ada, non-commercial only, "
                       "no derivatives",
}


def test_plain_words_cover_exactly_the_seven_licenses() -> None:
    assert set(PLAIN_WORDS) == set(CC_LICENSES)


@pytest.mark.parametrize("spdx", sorted(PLAIN_WORDS))
def test_plain_words_say_what_a_fan_may_do(spdx: str) -> None:
    terms = cc_terms(spdx)
    words = terms.plain_words(("Ada",))
    assert words == PLAIN_WORDS[spdx]
    assert words.startswith(terms.label + " — ")
    assert ("credit Ada" in words) == (spdx != "CC0-1.0")
    assert ("non-commercial only" in words) == ("-NC" in spdx)
    assert ("share alike" in words) == ("-SA" in spdx)
    assert ("no derivatives" in words) == ("-ND" in spdx)
    assert ("adapt" in words) == ("-ND" not in spdx)
    assert terms.url.startswith("https://creativecommons.org/")
    assert terms.url.endswith("/4.0/" if spdx != "CC0-1.0" else "/1.0/")


def test_plain_words_credit_every_creator() -> None:
    assert CCTerms("CC-BY-4.0").plain_words(("Ada", "Grace")) == (
        "CC BY 4.0 — you may share and adapt, credit Ada & Grace"
    )


@pytest.mark.parametrize("typed", ["cc-by-4.0", "Cc-By-4.0", " CC-BY-4.0 "])
def test_typed_license_id_maps_to_the_canonical_spdx_spelling(typed: str) -> None:
    # What a person types is forgiving; what gets signed is always the SPDX spelling, and
    # a manifest carrying any other spelling is refused (see the malformed table).
    assert cc_terms(typed).spdx == "CC-BY-4.0"


@pytest.mark.parametrize("spdx", ["MIT", "CC-BY-3.0", "", "CC-BY-4.1", "CC BY 4.0"])
def test_unknown_license_is_refused_with_the_known_ones_listed(spdx: str) -> None:
    with pytest.raises(InputError) as e:
        cc_terms(spdx)
    assert "CC-BY-SA-4.0" in e.value.remedy
    with pytest.raises(ValueError, match="SPDX"):
        CCTerms(spdx)


def test_terms_relabelled_on_a_parsed_manifest_are_still_checked() -> None:
    # verify_manifest's terms check is the last line of defence for code that builds a
    # SignedManifest by hand; it can only be reached by bypassing CCTerms' own check.
    signed = SignedManifest.from_bytes(_envelope(MB))
    terms = CCTerms("CC0-1.0")
    object.__setattr__(terms, "spdx", "MIT")
    forged = replace(signed, manifest=replace(signed.manifest, terms=terms))
    with pytest.raises(VerificationError):
        verify_manifest(forged, content=CONTENT)
