"""A ledger cannot be flooded into one no label can audit (the outside review of issue 21):
a receipt that acknowledges nothing new is answered but not kept, a collector keeps
receipts of a bounded number of uploaders per downloader, and a bundle too large to read
is one bad bundle, not the end of the audit. Real keys, a real SQLite ledger, the node's
own Credit (what POST /receipts calls)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import nacl.signing
import pytest

from p2pdist._api import ApiError
from p2pdist._credit import COLLECTED, MAX_COLLECTED_UPLOADERS, RECEIVED, Credit, LedgerLog
from p2pdist.identity import Identity
from p2pdist.licensing import CCTerms, Collector
from p2pdist.payouts.audit import WorkInfo
from p2pdist.payouts.ledger import MAX_BUNDLE_SIZE
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt

MiB = 1024 * 1024
NOW = datetime(2026, 12, 1, tzinfo=UTC)
WORK = hashlib.sha256(b"flooded work").digest()


def ident(name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(hashlib.sha256(name.encode()).digest()))


def signed(down: Identity, up: bytes, seq: int, n: int) -> bytes:
    return SignedReceipt.sign(TransferReceipt(WORK, up, down.public_key, seq, n, NOW),
                              down).to_bytes()


def test_receipts_that_acknowledge_nothing_new_are_not_kept(tmp_path: Path) -> None:
    """A downloader (or anyone with its key) posts seq 2, 3, 4… for the same bytes: one
    ledger entry per request, without end, until the bundle is too large to audit."""
    up, fan = ident("uploader"), ident("flooding fan")
    log = LedgerLog(tmp_path / "ledger.sqlite", up.public_key)
    credit = Credit(up, log, work_size=lambda w: 10 * MiB if w == WORK else None)
    credit.observe_uploads(WORK, {fan.public_key: 5 * MiB})
    assert credit.accept(signed(fan, up.public_key, 1, 5 * MiB))["kept_as"] == "received"
    for seq in range(2, 200):
        doc = credit.accept(signed(fan, up.public_key, seq, 5 * MiB))
        assert doc["already"] is True and doc["seq"] == seq
    assert len(log.payloads(RECEIVED)) == 1
    log.close()


def test_a_collector_keeps_a_bounded_number_of_uploaders_per_downloader(
        tmp_path: Path) -> None:
    """One downloader key names made-up uploaders at the work's collector, which keeps
    receipts naming any uploader (it served nothing)."""
    label, fan = ident("label"), ident("one key")
    log = LedgerLog(tmp_path / "ledger.sqlite", label.public_key)
    collector = Collector(label.public_key, "127.0.0.1", 7001)
    credit = Credit(label, log, work_size=lambda w: 10 * MiB if w == WORK else None,
                    collector_of=lambda w: collector)
    made_up = [ident(f"made-up {i}").public_key for i in range(MAX_COLLECTED_UPLOADERS + 3)]
    statuses = []
    for pk in made_up:
        try:
            credit.accept(signed(fan, pk, 1, MiB), source="10.1.2.3")
            statuses.append(200)
        except ApiError as e:
            statuses.append(e.status)
    assert statuses == [200] * MAX_COLLECTED_UPLOADERS + [429] * 3
    # A later receipt of an uploader already kept still goes in; the cap survives a restart.
    assert credit.accept(signed(fan, made_up[0], 2, 2 * MiB))["kept_as"] == "collected"
    again = Credit(label, log, work_size=lambda w: 10 * MiB, collector_of=lambda w: collector)
    again.load()
    with pytest.raises(ApiError) as e:
        again.accept(signed(fan, made_up[-1], 1, MiB), source="10.1.2.3")
    assert e.value.status == 429
    assert len(log.payloads(COLLECTED)) == MAX_COLLECTED_UPLOADERS + 1
    log.close()


def test_a_bundle_too_large_to_read_is_one_bad_bundle_and_the_audit_goes_on(
        tmp_path: Path) -> None:
    from p2pdist.label import _Sized
    from p2pdist.payouts.audit import audit

    big = tmp_path / "flooded.p2pb"
    with big.open("wb") as f:  # sparse: no disk is used
        f.truncate(MAX_BUNDLE_SIZE + 1)
    report = audit(_Sized([big]), {WORK: WorkInfo(MiB, CCTerms("CC-BY-4.0"))})
    [finding] = report.findings
    assert finding.kind == "bad-bundle" and "too large" in str(finding.evidence["message"])
    assert report.bad_bundles == 1
