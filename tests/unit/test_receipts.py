"""The signed transfer receipt: vectors, properties and a table of named attacks.

Every refusal must be a VerificationError (exit 3), never a KeyError, TypeError or
ValueError leaking out of the parser; policy refusals carry the reason code the node API
maps to its 4xx responses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist.errors import InvalidSignature, MalformedObject, VerificationError
from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing import DOMAIN as LICENSE_DOMAIN
from p2pdist.payouts.receipts import (
    DOMAIN,
    MAX_RECEIPT_SIZE,
    ReceiptRejected,
    ReceiptTooLarge,
    SignedReceipt,
    TransferReceipt,
    next_receipt,
    rejection_reason,
    verify_receipt,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "receipts.json").read_text("utf-8")
)

PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


FAN = _identity(bytes(range(32)), "fan (downloader)")
ARTIST = _identity(bytes(range(32, 64)), "artist (uploader)")
MALLORY = _identity(b"\x07" * 32, "Mallory")
WORK = bytes.fromhex(VECTORS[1]["input"]["work"])
OTHER_WORK = bytes.fromhex(VECTORS[0]["input"]["work"])
SIZE = 8_388_608
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _receipt(**kw: Any) -> TransferReceipt:
    fields: dict[str, Any] = {
        "work": WORK, "uploader": ARTIST.public_key, "downloader": FAN.public_key,
        "seq": 7, "bytes": 4_194_305, "ts": T0,
    }
    fields.update(kw)
    return TransferReceipt(**fields)


BASE = _receipt()
BASE_DICT: dict[str, Any] = BASE.to_dict()
RB = BASE.signed_bytes()


def _envelope(receipt_bytes: Any = RB, sig: Any = None, **fields: Any) -> bytes:
    """Canonical envelope bytes; *sig* defaults to FAN's receipt signature over the bytes."""
    d: dict[str, Any] = {
        "receipt": receipt_bytes,
        "sig": sig if sig is not None else FAN.sign(domain=DOMAIN, message=receipt_bytes),
        "type": "p2pdist/signed-receipt",
        "v": 1,
    }
    d.update(fields)
    return _canonical.encode({k: v for k, v in d.items() if v is not None})


# What the artist's node knows when a receipt arrives: its key, its works and sizes.
POLICY: dict[str, Any] = {"uploader": ARTIST.public_key, "work_size": SIZE,
                          "known_works": {WORK}}


def _verify(envelope: bytes, **policy: Any) -> SignedReceipt:
    """Everything an uploader runs on a received body."""
    signed = SignedReceipt.from_bytes(envelope)
    verify_receipt(signed, **{**POLICY, **policy})
    return signed


def _edited(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    d = dict(BASE_DICT)
    change(d)
    return d


def _resigned(change: Callable[[dict[str, Any]], Any]) -> bytes:
    """An envelope whose downloader properly signed the *changed* receipt dict."""
    return _envelope(_canonical.encode(_edited(change)))


def _replayed(change: Callable[[dict[str, Any]], Any]) -> bytes:
    """The changed receipt dict carrying the signature made for the original."""
    return _envelope(_canonical.encode(_edited(change)), FAN.sign(domain=DOMAIN, message=RB))


def _assert_verification_error(exc: BaseException) -> None:
    assert isinstance(exc, VerificationError)
    assert exc.exit_code == 3
    assert exc.message


def test_base_receipt_verifies() -> None:
    signed = _verify(_envelope())
    assert signed.receipt == BASE
    assert signed.receipt_bytes == RB


# -- golden vectors -----------------------------------------------------------------------


def _build(case_input: dict[str, Any]) -> tuple[TransferReceipt, Identity]:
    downloader = _identity(bytes.fromhex(case_input["downloader_seed"]), "downloader")
    receipt = TransferReceipt(
        work=bytes.fromhex(case_input["work"]),
        uploader=bytes(nacl.signing.SigningKey(bytes.fromhex(case_input["uploader_seed"]))
                       .verify_key),
        downloader=downloader.public_key,
        seq=case_input["seq"],
        bytes=case_input["bytes"],
        ts=datetime.fromtimestamp(case_input["ts"], UTC),
    )
    return receipt, downloader


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_receipt_vector(case: dict[str, Any]) -> None:
    receipt, downloader = _build(case["input"])
    signed = SignedReceipt.sign(receipt, downloader)
    assert signed.receipt_bytes.hex() == case["receipt_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    assert signed.sig.hex() == case["sig_hex"]
    assert key_to_text(receipt.uploader) == case["uploader_pk_text"]
    assert key_to_text(receipt.downloader) == case["downloader_pk_text"]


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_stored_receipt_vector_bytes_verify(case: dict[str, Any]) -> None:
    receipt, _ = _build(case["input"])
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = _verify(envelope, uploader=receipt.uploader, known_works={receipt.work},
                     work_size=receipt.bytes)
    assert signed.receipt == receipt
    assert signed.receipt_bytes.hex() == case["receipt_hex"]
    assert signed.to_bytes() == envelope
    # And by hand with PyNaCl, not through p2pdist's own verifier.
    nacl.signing.VerifyKey(receipt.downloader).verify(
        b"p2pdist/receipt/v1\0" + bytes.fromhex(case["receipt_hex"]),
        bytes.fromhex(case["sig_hex"]))


def test_vector_envelopes_span_the_size_bound() -> None:
    """The smallest and largest valid envelopes, and the bound's headroom above them."""
    sizes = {c["name"]: len(c["envelope_hex"]) // 2 for c in VECTORS}
    assert sizes["zero-bytes-at-epoch"] == 324
    assert sizes["largest-valid"] == 371
    assert 371 < MAX_RECEIPT_SIZE <= 2 * 371


# -- properties ---------------------------------------------------------------------------

_keys = st.sampled_from([FAN, ARTIST, MALLORY, _identity(b"\x09" * 32, "fan 2")])


@st.composite
def _receipts(draw: st.DrawFn) -> tuple[TransferReceipt, Identity]:
    downloader = draw(_keys)
    uploader = draw(_keys.filter(lambda k: k is not downloader))
    receipt = TransferReceipt(
        work=draw(st.binary(min_size=32, max_size=32)),
        uploader=uploader.public_key,
        downloader=downloader.public_key,
        seq=draw(st.integers(1, 2**63 - 1)),
        bytes=draw(st.integers(0, 2**63 - 1)),
        ts=datetime.fromtimestamp(draw(st.integers(0, 253_402_300_799)), UTC),
    )
    return receipt, downloader


@PROPERTY
@given(_receipts())
def test_receipt_bytes_round_trip(rs: tuple[TransferReceipt, Identity]) -> None:
    receipt, _ = rs
    data = receipt.signed_bytes()
    parsed = TransferReceipt.from_bytes(data)
    assert parsed == receipt
    assert parsed.signed_bytes() == data
    assert TransferReceipt.from_dict(_canonical.decode(data, max_size=1000)) == receipt


@PROPERTY
@given(_receipts())
def test_sign_then_verify_holds_after_round_trip(rs: tuple[TransferReceipt, Identity]) -> None:
    receipt, downloader = rs
    signed = SignedReceipt.sign(receipt, downloader)
    envelope = signed.to_bytes()
    assert len(envelope) <= MAX_RECEIPT_SIZE
    again = _verify(envelope, uploader=receipt.uploader, known_works={receipt.work},
                    work_size=receipt.bytes)
    assert again == signed
    assert again.to_bytes() == envelope


@PROPERTY
@given(_receipts(), st.data())
def test_any_single_byte_change_in_envelope_is_rejected(
    rs: tuple[TransferReceipt, Identity], data: st.DataObject
) -> None:
    receipt, downloader = rs
    envelope = bytearray(SignedReceipt.sign(receipt, downloader).to_bytes())
    i = data.draw(st.integers(0, len(envelope) - 1), label="position")
    envelope[i] = data.draw(st.integers(0, 255).filter(lambda b: b != envelope[i]), label="byte")
    with pytest.raises(VerificationError) as e:
        # No policy: only the encoding and the signature may catch it.
        verify_receipt(SignedReceipt.from_bytes(bytes(envelope)))
    _assert_verification_error(e.value)


_SUBSTITUTES = sorted(set(b"-0123456789:deil\x00") | {0x80, 0xFF})


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_any_substituted_byte_in_vector_envelope_is_rejected(case: dict[str, Any]) -> None:
    envelope = bytes.fromhex(case["envelope_hex"])
    leaks = []
    for i in range(len(envelope)):
        for b in {*_SUBSTITUTES, envelope[i] ^ 0x01, envelope[i] ^ 0x80} - {envelope[i]}:
            bad = envelope[:i] + bytes([b]) + envelope[i + 1 :]
            try:
                verify_receipt(SignedReceipt.from_bytes(bad))
            except VerificationError:
                continue
            except Exception as e:  # collect every leak, not just the first
                leaks.append(f"byte {i} -> {b:#04x}: {type(e).__name__}: {e}")
            else:
                leaks.append(f"byte {i} -> {b:#04x}: verified")
    assert not leaks, "\n".join(leaks[:10])


@PROPERTY
@given(st.lists(st.integers(0, 2 * SIZE), min_size=1, max_size=20),
       st.lists(st.integers(0, 3_600), min_size=20, max_size=20))
def test_a_stream_of_next_receipts_verifies_step_by_step(
    totals: list[int], gaps: list[int]
) -> None:
    """Whatever the downloader's running totals do, each next receipt is accepted."""
    previous: TransferReceipt | None = None
    now = T0
    for total, gap in zip(totals, gaps, strict=False):
        now += timedelta(seconds=gap, microseconds=gap)
        r = next_receipt(previous, work=WORK, uploader=ARTIST.public_key,
                         downloader=FAN.public_key, total_bytes=total, now=now)
        signed = SignedReceipt.sign(r, FAN)
        verify_receipt(SignedReceipt.from_bytes(signed.to_bytes()), previous=previous,
                       uploader=ARTIST.public_key, known_works={WORK})
        assert r.seq == (previous.seq + 1 if previous else 1)
        assert r.bytes == max(total, previous.bytes if previous else 0)
        assert r.ts == now.replace(microsecond=0)
        previous = r


# -- named attacks ------------------------------------------------------------------------


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d[key] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        del d[key]
    return change


def _flip(key: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        v = d[key]
        d[key] = v[:-1] + bytes([v[-1] ^ 1])
    return change


# Each field changed to another *valid* value while the downloader's signature over the
# original is kept: the parse succeeds, so only the signature check can catch it.
TAMPERED_FIELDS = [
    pytest.param(_flip("work"), id="work"),
    pytest.param(_set("work", OTHER_WORK), id="work-moved-to-another-work"),
    pytest.param(_set("uploader", MALLORY.public_key), id="uploader-redirected-to-mallory"),
    pytest.param(_set("downloader", MALLORY.public_key), id="downloader"),
    pytest.param(_set("seq", BASE.seq + 1), id="seq"),
    pytest.param(_set("bytes", BASE.bytes + 1), id="bytes-inflated-by-one"),
    pytest.param(_set("bytes", SIZE), id="bytes-inflated-to-whole-work"),
    pytest.param(_set("ts", BASE_DICT["ts"] + 1), id="ts"),
]


@pytest.mark.parametrize("change", TAMPERED_FIELDS)
def test_receipt_field_changed_after_signing_is_rejected(
    change: Callable[[dict[str, Any]], None],
) -> None:
    envelope = _replayed(change)
    SignedReceipt.from_bytes(envelope)  # still well-formed: the signature must catch it
    with pytest.raises(InvalidSignature) as e:
        _verify(envelope)
    _assert_verification_error(e.value)
    assert rejection_reason(e.value) == "bad-signature"


SIGNER_ATTACKS = [
    pytest.param(lambda: _envelope(RB, MALLORY.sign(domain=DOMAIN, message=RB)),
                 id="signed-by-a-key-that-is-not-the-downloaders"),
    pytest.param(lambda: _envelope(RB, ARTIST.sign(domain=DOMAIN, message=RB)),
                 id="signed-by-the-uploader-itself"),
    pytest.param(lambda: _envelope(RB, FAN.sign(domain=LICENSE_DOMAIN, message=RB)),
                 id="manifest-domain-signature-over-receipt-bytes"),
    pytest.param(lambda: _envelope(RB, FAN.sign(domain=b"p2pdist/receipt/v2", message=RB)),
                 id="signature-for-future-receipt-domain"),
    pytest.param(lambda: _envelope(RB, FAN.signing_key.sign(RB).signature),
                 id="signature-without-domain"),
    pytest.param(lambda: _envelope(RB, FAN.sign(domain=DOMAIN, message=_receipt(seq=8)
                                                 .signed_bytes())),
                 id="signature-of-another-receipt"),
    pytest.param(lambda: _envelope(RB, bytes(64)), id="zero-signature"),
    pytest.param(lambda: _envelope(RB, FAN.sign(domain=DOMAIN, message=_envelope())),
                 id="signature-over-the-envelope"),
]


@pytest.mark.parametrize("make", SIGNER_ATTACKS)
def test_receipt_not_signed_by_its_downloader_is_rejected(make: Callable[[], bytes]) -> None:
    with pytest.raises(InvalidSignature) as e:
        _verify(make())
    _assert_verification_error(e.value)


def test_signature_failure_does_not_say_why() -> None:
    messages = set()
    for make in SIGNER_ATTACKS:
        with pytest.raises(InvalidSignature) as e:
            _verify(make.values[0]())  # type: ignore[operator]  # ParameterSet holds objects
        messages.add(str(e.value))
    assert len(messages) == 1


def test_signature_is_checked_before_any_policy() -> None:
    # A forged receipt that also breaks every policy rule learns nothing but "bad signature".
    forged = _envelope(RB, MALLORY.sign(domain=DOMAIN, message=RB))
    with pytest.raises(InvalidSignature):
        _verify(forged, uploader=MALLORY.public_key, known_works=set(), work_size=0,
                previous=BASE)


def test_sign_refuses_an_identity_that_is_not_the_downloader() -> None:
    with pytest.raises(ValueError, match="only the downloader signs"):
        SignedReceipt.sign(BASE, ARTIST)
    with pytest.raises(ValueError, match="only the downloader signs"):
        SignedReceipt.sign(BASE, MALLORY)


def _rejected(envelope: bytes, reason: str, **policy: Any) -> ReceiptRejected:
    with pytest.raises(ReceiptRejected) as e:
        _verify(envelope, **policy)
    _assert_verification_error(e.value)
    assert e.value.reason == reason
    assert rejection_reason(e.value) == reason
    return e.value


def _signed(**kw: Any) -> bytes:
    return SignedReceipt.sign(_receipt(**kw), FAN).to_bytes()


def test_receipt_replayed_is_rejected() -> None:
    e = _rejected(_envelope(), "replayed", previous=BASE)
    assert "already received" in e.message


def test_receipt_seq_rollback_is_rejected() -> None:
    e = _rejected(_signed(seq=6, bytes=BASE.bytes + 1), "rollback", previous=BASE)
    assert "goes backwards" in e.message


def test_receipt_same_seq_with_other_bytes_is_a_rollback_not_a_replay() -> None:
    # Two different receipts under one seq: the downloader equivocates.
    _rejected(_signed(bytes=BASE.bytes + 16_384), "rollback", previous=BASE)
    _rejected(_signed(ts=T0 + timedelta(seconds=1)), "rollback", previous=BASE)


def test_older_receipt_replayed_after_a_newer_one_is_rejected() -> None:
    _rejected(_signed(seq=1, bytes=16_384), "rollback", previous=BASE)


def test_receipt_bytes_rollback_is_rejected() -> None:
    _rejected(_signed(seq=8, bytes=BASE.bytes - 1), "rollback", previous=BASE)


@pytest.mark.parametrize("seq,total", [(8, BASE.bytes), (8, BASE.bytes + 1), (2**63 - 1, SIZE)])
def test_receipt_moving_forward_is_accepted(seq: int, total: int) -> None:
    _verify(_signed(seq=seq, bytes=total), previous=BASE)


@pytest.mark.parametrize("size", [SIZE - 1, SIZE, SIZE + 1])
def test_receipt_bytes_at_work_size_boundary(size: int) -> None:
    envelope = _signed(bytes=SIZE)
    if size < SIZE:
        e = _rejected(envelope, "over-size", work_size=size)
        assert str(SIZE) in e.message
    else:
        _verify(envelope, work_size=size)


def test_receipt_bytes_over_size_is_rejected() -> None:
    _rejected(_signed(bytes=SIZE + 1), "over-size")
    _rejected(_signed(bytes=2**63 - 1), "over-size")


def test_receipt_for_another_work_reused_is_rejected() -> None:
    # A genuine receipt the artist earned for OTHER_WORK, presented to a node that only
    # serves WORK (or re-sent for WORK's credit): the signed work id gives it away.
    e = _rejected(_signed(work=OTHER_WORK), "unknown-work")
    assert OTHER_WORK.hex() in e.message
    _rejected(_signed(), "unknown-work", known_works=set())


def test_receipt_naming_another_uploader_is_rejected() -> None:
    e = _rejected(_signed(uploader=MALLORY.public_key), "wrong-uploader")
    assert e.remedy
    # The uploader's own key as downloader is impossible; the downloader as uploader is not.
    _rejected(_signed(), "wrong-uploader", uploader=FAN.public_key)


def test_policy_checks_run_in_their_numbered_order() -> None:
    everything_wrong = _signed(uploader=MALLORY.public_key, work=OTHER_WORK, bytes=SIZE + 1)
    _rejected(everything_wrong, "wrong-uploader")
    _rejected(everything_wrong, "unknown-work", uploader=MALLORY.public_key)
    _rejected(everything_wrong, "over-size", uploader=MALLORY.public_key,
              known_works={OTHER_WORK})
    # over-size before rollback: a receipt can go backwards *and* be too big
    _rejected(_signed(seq=1, bytes=SIZE + 1), "over-size", previous=BASE)


def test_policy_checks_without_their_argument_are_skipped() -> None:
    verify_receipt(SignedReceipt.from_bytes(_signed(uploader=MALLORY.public_key,
                                                    work=OTHER_WORK, bytes=2**63 - 1)))


def test_previous_for_another_triple_is_a_caller_bug() -> None:
    for other in (_receipt(work=OTHER_WORK), _receipt(uploader=MALLORY.public_key)):
        with pytest.raises(ValueError, match="another"):
            _verify(_envelope(), previous=other)


def _sized_envelope(size: int) -> bytes:
    """An envelope of exactly *size* bytes, padded with a string under an unknown key."""
    base = len(_envelope(pad=b""))
    out = _envelope(pad=b"x" * (size - base - (len(str(size - base)) - 1)))
    assert len(out) == size, (len(out), size)
    return out


def test_envelope_size_limit_is_inclusive() -> None:
    at_limit = _sized_envelope(MAX_RECEIPT_SIZE)
    with pytest.raises(MalformedObject) as e:
        SignedReceipt.from_bytes(at_limit)
    assert not isinstance(e.value, ReceiptTooLarge)  # parsed, refused for its fields
    assert "unexpected fields ['pad']" in e.value.message
    with pytest.raises(ReceiptTooLarge, match="signed receipt is too large") as big:
        SignedReceipt.from_bytes(_sized_envelope(MAX_RECEIPT_SIZE + 1))
    _assert_verification_error(big.value)
    assert rejection_reason(big.value) == "oversized"


@pytest.mark.parametrize("size", [MAX_RECEIPT_SIZE + 1, 64 * 1024, 16 * 1024 * 1024])
def test_oversized_body_is_refused_before_parsing(size: int) -> None:
    # Not even bencode: the bound must come before the parser looks at a byte.
    with pytest.raises(ReceiptTooLarge):
        SignedReceipt.from_bytes(b"l" * size)


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_every_truncation_of_an_envelope_is_rejected_as_malformed(case: dict[str, Any]) -> None:
    envelope = bytes.fromhex(case["envelope_hex"])
    for n in range(len(envelope)):
        with pytest.raises(MalformedObject) as e:
            SignedReceipt.from_bytes(envelope[:n])
        assert rejection_reason(e.value) == "malformed"


def _unsorted(d: dict[str, Any]) -> bytes:
    """*d* bencoded with its top-level keys in reverse order."""
    items = sorted(d.items(), reverse=True)
    return b"d" + b"".join(_canonical.encode(k.encode()) + _canonical.encode(v)
                           for k, v in items) + b"e"


MALFORMED = [
    # envelope encoding
    pytest.param(lambda: _unsorted(_canonical.decode(_envelope(), max_size=1000)),
                 id="envelope-keys-unsorted"),
    pytest.param(lambda: _envelope().replace(b"1:vi1e", b"1:vi01e"),
                 id="envelope-int-leading-zero"),
    pytest.param(lambda: _envelope().replace(b"3:sig64:", b"3:sig064:"),
                 id="envelope-length-leading-zero"),
    pytest.param(lambda: _envelope() + b"\0", id="envelope-trailing-byte"),
    pytest.param(lambda: _envelope() + b"de", id="envelope-then-empty-dict"),
    pytest.param(lambda: b"", id="envelope-empty"),
    pytest.param(lambda: _canonical.encode([RB]), id="envelope-is-a-list"),
    pytest.param(lambda: _canonical.encode(RB), id="envelope-is-a-string"),
    pytest.param(lambda: b"i1e", id="envelope-is-an-int"),
    pytest.param(lambda: b"d" + b"l" * 100 + b"e" * 100 + b"e", id="envelope-depth-bomb"),
    # envelope fields
    pytest.param(lambda: _envelope(type=b"p2pdist/transfer-receipt"), id="envelope-wrong-type"),
    pytest.param(lambda: _envelope(type=b"p2pdist/signed-license"),
                 id="envelope-license-type"),
    pytest.param(lambda: _envelope(type=None), id="envelope-no-type"),
    pytest.param(lambda: _envelope(v=2), id="envelope-unknown-version-2"),
    pytest.param(lambda: _envelope(v=0), id="envelope-version-0"),
    pytest.param(lambda: _envelope(v=b"1"), id="envelope-version-as-string"),
    pytest.param(lambda: _envelope(v=None), id="envelope-no-version"),
    pytest.param(lambda: _envelope(collector=b"x"), id="envelope-unknown-field"),
    pytest.param(lambda: _envelope(receipt=None), id="envelope-no-receipt"),
    pytest.param(lambda: _envelope(BASE_DICT, bytes(64)), id="receipt-as-dict-not-bytes"),
    pytest.param(lambda: _envelope(7, bytes(64)), id="receipt-as-int"),
    pytest.param(lambda: _envelope(b"", bytes(64)), id="receipt-empty"),
    pytest.param(lambda: _envelope(sig=b"", v=1), id="sig-empty"),
    pytest.param(lambda: _envelope(sig=FAN.sign(domain=DOMAIN, message=RB)[:63]),
                 id="sig-63-bytes"),
    pytest.param(lambda: _envelope(sig=FAN.sign(domain=DOMAIN, message=RB) + b"\0"),
                 id="sig-65-bytes"),
    pytest.param(lambda: _envelope(sig=7), id="sig-is-int"),
    pytest.param(lambda: _envelope(sig=[FAN.sign(domain=DOMAIN, message=RB)]),
                 id="sig-is-a-list"),
    # receipt encoding, properly signed by the downloader
    pytest.param(lambda: _envelope(_unsorted(BASE_DICT)), id="receipt-keys-unsorted-and-signed"),
    pytest.param(lambda: _envelope(RB.replace(b"3:seqi7e", b"3:seqi07e")),
                 id="receipt-int-leading-zero-and-signed"),
    pytest.param(lambda: _envelope(RB.replace(b"4:work32:", b"4:work032:")),
                 id="receipt-length-leading-zero-and-signed"),
    pytest.param(lambda: _envelope(RB + b"e"), id="receipt-trailing-byte-and-signed"),
    pytest.param(lambda: _envelope(RB[:-1]), id="receipt-truncated-and-signed"),
    pytest.param(lambda: _envelope(_canonical.encode([BASE_DICT])), id="receipt-is-a-list"),
    pytest.param(lambda: _envelope(b"x" * 200), id="receipt-not-bencode"),
    # receipt fields, properly signed by the downloader
    pytest.param(lambda: _resigned(_set("v", 2)), id="receipt-unknown-version-2"),
    pytest.param(lambda: _resigned(_set("v", 0)), id="receipt-version-0"),
    pytest.param(lambda: _resigned(_drop("v")), id="receipt-no-version"),
    pytest.param(lambda: _resigned(_set("type", b"p2pdist/signed-receipt")),
                 id="receipt-wrong-type-envelope"),
    pytest.param(lambda: _resigned(_set("type", b"p2pdist/license-manifest")),
                 id="receipt-wrong-type-license-manifest"),
    pytest.param(lambda: _resigned(_drop("type")), id="receipt-no-type"),
    pytest.param(lambda: _resigned(_set("collector", b"http://x")),
                 id="receipt-unknown-field"),
    *(pytest.param(lambda k=k: _resigned(_drop(k)), id=f"receipt-without-{k}")
      for k in ("work", "uploader", "downloader", "seq", "bytes", "ts")),
    pytest.param(lambda: _resigned(_set("work", WORK[:31])), id="work-31-bytes"),
    pytest.param(lambda: _resigned(_set("work", WORK + b"\0")), id="work-33-bytes"),
    pytest.param(lambda: _resigned(_set("work", WORK.hex().encode())), id="work-as-hex"),
    pytest.param(lambda: _resigned(_set("uploader", ARTIST.public_key[:31])),
                 id="uploader-31-bytes"),
    pytest.param(lambda: _resigned(_set("uploader", key_to_text(ARTIST.public_key).encode())),
                 id="uploader-as-text"),
    pytest.param(lambda: _resigned(_set("uploader", FAN.public_key)),
                 id="uploader-is-the-downloader"),
    pytest.param(lambda: _resigned(_set("uploader", 0)), id="uploader-is-int"),
    pytest.param(lambda: _resigned(_set("seq", 0)), id="seq-zero"),
    pytest.param(lambda: _resigned(_set("seq", -1)), id="seq-negative"),
    pytest.param(lambda: _resigned(_set("seq", 2**63)), id="seq-2**63"),
    pytest.param(lambda: _resigned(_set("seq", b"7")), id="seq-is-string"),
    pytest.param(lambda: _resigned(_set("bytes", -1)), id="bytes-negative"),
    pytest.param(lambda: _resigned(_set("bytes", 2**63)), id="bytes-2**63"),
    pytest.param(lambda: _resigned(_set("bytes", [1])), id="bytes-is-a-list"),
    pytest.param(lambda: _resigned(_set("ts", -1)), id="ts-negative"),
    pytest.param(lambda: _resigned(_set("ts", 253_402_300_800)), id="ts-after-year-9999"),
    pytest.param(lambda: _resigned(_set("ts", b"1735689600")), id="ts-is-string"),
]


@pytest.mark.parametrize("make", MALFORMED)
def test_malformed_receipt_is_rejected_as_malformed(make: Callable[[], bytes]) -> None:
    with pytest.raises(MalformedObject) as e:
        _verify(make())
    _assert_verification_error(e.value)
    assert rejection_reason(e.value) == "malformed"


def test_receipt_with_a_huge_int_is_malformed_not_a_crash() -> None:
    # 32 digits is the decoder's cap; the size bound alone would let 300 through.
    for digits in (32, 33, 300):
        body = RB.replace(b"5:bytesi4194305e", b"5:bytesi" + b"9" * digits + b"e")
        with pytest.raises(MalformedObject):
            _verify(_envelope(body))


# -- constructor and parser agree --------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _receipt(work=WORK[:31]), id="work-31-bytes"),
        pytest.param(lambda: _receipt(uploader=FAN.public_key), id="uploader-is-downloader"),
        pytest.param(lambda: _receipt(seq=0), id="seq-zero"),
        pytest.param(lambda: _receipt(seq=2**63), id="seq-2**63"),
        pytest.param(lambda: _receipt(seq=True), id="seq-bool"),
        pytest.param(lambda: _receipt(bytes=-1), id="bytes-negative"),
        pytest.param(lambda: _receipt(bytes=2**63), id="bytes-2**63"),
        pytest.param(lambda: _receipt(bytes=1.5), id="bytes-float"),
        pytest.param(lambda: _receipt(ts=datetime(2025, 1, 1)), id="ts-naive"),
        pytest.param(lambda: _receipt(ts=T0.replace(microsecond=1)), id="ts-microseconds"),
        pytest.param(lambda: _receipt(ts=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
                     id="ts-before-1970"),
    ],
)
def test_receipt_that_cannot_be_verified_cannot_be_built(
    make: Callable[[], TransferReceipt],
) -> None:
    """A downloader must never sign a receipt that every uploader then refuses."""
    with pytest.raises(ValueError, match="receipt's"):
        make()


def test_ts_in_another_zone_is_kept_as_utc() -> None:
    paris = timezone(timedelta(hours=1))
    r = _receipt(ts=datetime(2025, 1, 1, 1, tzinfo=paris))
    assert r == BASE
    assert r.ts.tzinfo is UTC
    assert r.signed_bytes() == RB


def test_signed_receipt_built_by_hand_parses_its_own_bytes() -> None:
    signed = SignedReceipt(RB, FAN.sign(domain=DOMAIN, message=RB))
    assert signed.receipt == BASE
    assert replace(signed, sig=bytes(64)).receipt == BASE
    with pytest.raises(MalformedObject):
        SignedReceipt(RB + b"x", bytes(64))
    with pytest.raises(TypeError):
        SignedReceipt(bytearray(RB), bytes(64))  # type: ignore[arg-type]


def test_rejected_reason_codes_are_a_closed_set() -> None:
    with pytest.raises(ValueError, match="reason"):
        ReceiptRejected("x", reason="because")


# -- next_receipt -------------------------------------------------------------------------


def test_first_receipt_starts_at_seq_1() -> None:
    r = next_receipt(None, work=WORK, uploader=ARTIST.public_key, downloader=FAN.public_key,
                     total_bytes=16_384, now=T0 + timedelta(microseconds=999_999))
    assert (r.seq, r.bytes, r.ts) == (1, 16_384, T0)


def test_next_receipt_never_goes_backwards() -> None:
    r = next_receipt(BASE, work=WORK, uploader=ARTIST.public_key, downloader=FAN.public_key,
                     total_bytes=0, now=T0)
    assert (r.seq, r.bytes) == (BASE.seq + 1, BASE.bytes)


def test_next_receipt_converts_now_to_utc() -> None:
    now = datetime(2025, 1, 1, 1, 0, 0, 500, tzinfo=timezone(timedelta(hours=1)))
    r = next_receipt(None, work=WORK, uploader=ARTIST.public_key, downloader=FAN.public_key,
                     total_bytes=0, now=now)
    assert r.ts == T0
    assert r.ts.tzinfo is UTC


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"work": OTHER_WORK}, id="previous-for-another-work"),
        pytest.param({"uploader": MALLORY.public_key}, id="previous-for-another-uploader"),
        pytest.param({"now": datetime(2025, 1, 1)}, id="naive-now"),
        pytest.param({"total_bytes": -1}, id="negative-total"),
    ],
)
def test_next_receipt_refuses_misuse(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"work": WORK, "uploader": ARTIST.public_key,
                            "downloader": FAN.public_key, "total_bytes": 1, "now": T0, **kw}
    with pytest.raises(ValueError):
        next_receipt(BASE, **args)
