"""Fuzzing the signed objects a user receives as bytes: licenses, certificates, transfer
receipts, payment receipts, voucher issuance records, grants, payout statements and
split-sheet drafts.

Each target is what a reader of that object runs: parse the envelope, then verify it
against a real policy (the paid work's terms, the buyer's key, the label's key). Every
mutant must parse and verify, or end in a P2PDistError, within 10 s.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given

from p2pdist import _canonical, node
from p2pdist.identity import Identity
from p2pdist.licensing import (
    CERTIFICATE_DOMAIN,
    DOMAIN,
    SignedCertificate,
    SignedManifest,
    verify_certificate,
    verify_manifest,
)
from p2pdist.licensing._grant import GRANT_DOMAIN, SignedGrant, open_grant, verify_grant
from p2pdist.payouts.issuance import ISSUANCE_DOMAIN, SignedIssuance
from p2pdist.payouts.payments import PAYMENT_DOMAIN, SignedPayment, verify_payment
from p2pdist.payouts.receipts import DOMAIN as RECEIPT_DOMAIN
from p2pdist.payouts.receipts import SignedReceipt, rejection_reason, verify_receipt
from p2pdist.payouts.report import statement_json
from p2pdist.payouts.statement import STATEMENT_DOMAIN, SignedStatement, verify_statement
from tests.fuzz._harness import FUZZ, clean
from tests.fuzz._mutate import mutants
from tests.fuzz._seeds import ADA, BUYER, FAN1, FAN2, GRACE, LABEL, T0, seeds

KEYS: dict[bytes, Identity] = {i.public_key: i for i in (ADA, GRACE, LABEL, BUYER, FAN1, FAN2)}


def _envelope_codec(body_key: str, signer_key: str, domain: bytes
                    ) -> tuple[Callable[[bytes], bytes], Callable[[bytes, bytes], bytes]]:
    """(body_of, resign) for an envelope whose *body_key* holds the signed bytes and whose
    body names its signer under *signer_key*; resign signs as the seed's signer."""

    def body_of(seed: bytes) -> bytes:
        body: bytes = _canonical.decode(seed, max_size=len(seed))[body_key]
        return body

    def resign(seed: bytes, body: bytes) -> bytes:
        env = _canonical.decode(seed, max_size=len(seed))
        old = _canonical.decode(env[body_key], max_size=len(env[body_key]))
        signer = KEYS[old[signer_key]]
        env[body_key] = body
        env["sig"] = signer.sign(domain=domain, message=body)
        return _canonical.encode(env)

    return body_of, resign


def _license_resign(seed: bytes, manifest: bytes) -> bytes:
    env = _canonical.decode(seed, max_size=len(seed))
    env["manifest"] = manifest
    env["signatures"] = [{"pk": s["pk"], "sig": KEYS[s["pk"]].sign(domain=DOMAIN,
                                                                    message=manifest)}
                         for s in env["signatures"]]
    return _canonical.encode(env)


def _license(data: bytes) -> None:
    signed = SignedManifest.from_bytes(data)
    verify_manifest(signed, content=signed.manifest.content)  # (1), (2), (4) reached
    verify_manifest(signed, content=next(iter(seeds().contents.values())))


@FUZZ
@given(data=mutants(lambda: seeds().licenses, body_of=lambda s: _canonical.decode(
    s, max_size=len(s))["manifest"], resign=_license_resign))
def test_fuzzed_license_ends_in_a_clean_error(data: bytes) -> None:
    clean("license manifest", lambda: _license(data))


def _certificate(data: bytes) -> None:
    verify_certificate(SignedCertificate.from_bytes(data), artist=ADA.public_key, now=T0)


_cert_body, _cert_resign = _envelope_codec("body", "label", CERTIFICATE_DOMAIN)


@FUZZ
@given(data=mutants(lambda: seeds().certificates, body_of=_cert_body, resign=_cert_resign))
def test_fuzzed_certificate_ends_in_a_clean_error(data: bytes) -> None:
    clean("certificate", lambda: _certificate(data))


def _receipt(data: bytes) -> None:
    s = seeds()
    try:
        verify_receipt(SignedReceipt.from_bytes(data), uploader=FAN1.public_key,
                       work_size=s.paid_size, known_works={s.paid_work})
    except Exception as e:
        from p2pdist.errors import VerificationError

        if isinstance(e, VerificationError):
            rejection_reason(e)  # what the node API answers with: must know every refusal
        raise


_receipt_body, _receipt_resign = _envelope_codec("receipt", "downloader", RECEIPT_DOMAIN)


@FUZZ
@given(data=mutants(lambda: seeds().receipts, body_of=_receipt_body, resign=_receipt_resign))
def test_fuzzed_transfer_receipt_ends_in_a_clean_error(data: bytes) -> None:
    clean("transfer receipt", lambda: _receipt(data))


def _payment(data: bytes) -> None:
    s = seeds()
    verify_payment(SignedPayment.from_bytes(data), work=s.paid_work, terms=s.paid_terms,
                   buyer=BUYER.public_key)


_pay_body, _pay_resign = _envelope_codec("body", "seller", PAYMENT_DOMAIN)


@FUZZ
@given(data=mutants(lambda: seeds().payments, body_of=_pay_body, resign=_pay_resign))
def test_fuzzed_payment_receipt_ends_in_a_clean_error(data: bytes) -> None:
    clean("payment receipt", lambda: _payment(data))


def _issuances() -> tuple[bytes, ...]:
    """The issuance records the seed sales embed, as a seller's ledger holds them."""
    return tuple(dict.fromkeys(SignedPayment.from_bytes(p).payment.issuance.to_bytes()
                               for p in seeds().payments))


def _issuance(data: bytes) -> None:
    # What the audit runs on a `voucher.issuance` entry of a seller's bundle.
    signed = SignedIssuance.from_bytes(data)
    signed.verify()


_iss_body, _iss_resign = _envelope_codec("body", "collector", ISSUANCE_DOMAIN)


@FUZZ
@given(data=mutants(_issuances, body_of=_iss_body, resign=_iss_resign))
def test_fuzzed_issuance_record_ends_in_a_clean_error(data: bytes) -> None:
    clean("issuance record", lambda: _issuance(data))


def _grant(data: bytes) -> None:
    s = seeds()
    signed = SignedGrant.from_bytes(data)
    verify_grant(signed, work=s.paid_work, buyer=BUYER.public_key,
                 sellers=s.paid_terms.sellers, key_id=s.key_id)
    open_grant(signed, BUYER)


_grant_body, _grant_resign = _envelope_codec("body", "seller", GRANT_DOMAIN)


@FUZZ
@given(data=mutants(lambda: seeds().grants, body_of=_grant_body, resign=_grant_resign))
def test_fuzzed_grant_ends_in_a_clean_error(data: bytes) -> None:
    clean("grant", lambda: _grant(data))


def _statement(data: bytes) -> None:
    signed = SignedStatement.from_bytes(data)
    verify_statement(signed, label=LABEL.public_key)
    statement_json(signed.statement)  # what `statement verify --json` prints


_st_body, _st_resign = _envelope_codec("body", "label", STATEMENT_DOMAIN)


@FUZZ
@given(data=mutants(lambda: seeds().statements, body_of=_st_body, resign=_st_resign))
def test_fuzzed_statement_ends_in_a_clean_error(data: bytes) -> None:
    clean("statement", lambda: _statement(data))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    p = Path(tempfile.mkdtemp(prefix="p2pdist-fuzz-"))
    yield p
    shutil.rmtree(p, ignore_errors=True)


def _draft(data: bytes, path: Path) -> None:
    path.write_bytes(data)
    node.read_draft(path)  # what `license cosign` and `publish --manifest` read first


@FUZZ
@given(data=mutants(lambda: seeds().drafts, body_of=lambda s: _canonical.decode(
    s, max_size=len(s))["manifest"], resign=_license_resign))
def test_fuzzed_license_draft_ends_in_a_clean_error(data: bytes, scratch: Path) -> None:
    clean("license draft (.p2pm)", lambda: _draft(data, scratch / "duet.p2pm"))
