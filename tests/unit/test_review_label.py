"""Review findings in label.py: payouts from the audit's evidence."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.signing
import pytest

from p2pdist.identity import Identity
from p2pdist.label import load_works, payout
from p2pdist.licensing import License
from p2pdist.node import PublishResult, publish
from p2pdist.payouts import audit as audit_mod
from p2pdist.payouts.ledger import Ledger
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt, served_record

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ident(name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(hashlib.sha256(name.encode()).digest()))


ADA, LABEL, MALLORY, FAN, HONEST = (ident(n) for n in ("ada", "label", "mallory", "fan",
                                                        "honest"))


def cc_work(tmp_path: Path) -> tuple[License, PublishResult]:
    src = tmp_path / "song.flac"
    src.write_bytes(b"x" * 100_000)
    res = publish(tmp_path / "ada", ADA, src, title="Song", spdx="CC-BY-4.0",
                  out=tmp_path / "song.torrent", now=T0)
    assert isinstance(res, PublishResult)
    (lic,) = load_works(tmp_path / "ada", [res.torrent])
    return lic, res


def receipt(work: bytes, up: Identity, down: Identity, n: int) -> bytes:
    r = TransferReceipt(work, up.public_key, down.public_key, 1, n, T0 + timedelta(hours=1))
    return SignedReceipt.sign(r, down).to_bytes()


def bundle(tmp_path: Path, who: Identity, items: list[tuple[str, bytes]]) -> Path:
    with Ledger(tmp_path / f"{who.name}.db", node=who.public_key) as led:
        led.append_many(items)
        data = led.export_bundle(who, now=T0 + timedelta(days=1))
    p = tmp_path / f"{who.name}.p2pb"
    p.write_bytes(data)
    return p


def served_bundles(tmp_path: Path, work: bytes,
                   kept: list[tuple[Identity, Identity, int]]) -> list[Path]:
    """Each uploader's own bundle, as its node writes it: a served record for what it
    sent a downloader, then that downloader's receipt (a receipt counts only when its
    uploader's own ledger backs it)."""
    by_up: dict[str, tuple[Identity, list[tuple[str, bytes]]]] = {}
    for up, down, n in kept:
        _, items = by_up.setdefault(up.name, (up, []))
        items += [("upload.served", served_record(work, down.public_key, n)),
                  ("receipt.received", receipt(work, up, down, n))]
    return [bundle(tmp_path, up, items) for up, items in by_up.values()]


def test_every_key_of_a_sybil_ring_is_left_out_of_the_pool_not_only_those_listed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The finding's evidence lists at most MAX_EVIDENCE_ITEMS keys; the pool must still
    # exclude the whole ring.
    monkeypatch.setattr(audit_mod, "MAX_EVIDENCE_ITEMS", 2)
    lic, _ = cc_work(tmp_path)
    work = bytes.fromhex(lic.work)
    ring = [ident(f"sybil-{i}") for i in range(6)]
    kept = [(MALLORY, s, 1000) for s in ring] + [(ADA, FAN, 1000), (MALLORY, FAN, 1000)]
    bundles = served_bundles(tmp_path, work, kept)
    res = payout(LABEL, bundles, [lic], out=tmp_path / "st.json", pool=("10.00", "EUR"),
                 now=T0)
    assert res.statement.pool is not None
    assert res.statement.pool.downloaders == 1 and res.statement.pool.excluded == 6


def test_every_ring_is_left_out_of_the_pool_past_the_findings_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_mod, "MAX_FINDINGS_PER_KIND", 1)
    lic, _ = cc_work(tmp_path)
    work = bytes.fromhex(lic.work)
    kept = []
    for u in range(2):
        up = ident(f"uploader-{u}")
        kept += [(up, ident(f"sybil-{u}-{i}"), 1000) for i in range(5)]
    kept += [(ADA, FAN, 1000)]
    bundles = served_bundles(tmp_path, work, kept)
    res = payout(LABEL, bundles, [lic], out=tmp_path / "st.json", pool=("10.00", "EUR"),
                 now=T0)
    assert res.statement.pool is not None
    assert res.statement.pool.downloaders == 1 and res.statement.pool.excluded == 10


def test_payouts_do_not_overwrite_a_signed_statement_without_force(tmp_path: Path) -> None:
    from p2pdist.errors import InputError

    lic, _ = cc_work(tmp_path)
    work = bytes.fromhex(lic.work)
    b = bundle(tmp_path, ADA, [("receipt.received", receipt(work, ADA, FAN, 1000))])
    first = payout(LABEL, [b], [lic], out=tmp_path / "st.json", now=T0)
    before = first.signed.read_bytes()
    # Another format beside it would sign over st.p2ps: refused without --force.
    with pytest.raises(InputError, match="already exists"):
        payout(LABEL, [b], [lic], out=tmp_path / "st.csv", pool=("1.00", "EUR"), now=T0)
    assert first.signed.read_bytes() == before and not (tmp_path / "st.csv").exists()
    again = payout(LABEL, [b], [lic], out=tmp_path / "st.csv", pool=("1.00", "EUR"),
                   now=T0, force=True)
    assert again.signed.read_bytes() != before


def test_a_mistyped_expected_label_is_an_input_error_not_a_failed_verification(
        tmp_path: Path) -> None:
    from p2pdist.errors import InputError
    from p2pdist.identity import key_to_text
    from p2pdist.label import verify_statement_file

    lic, _ = cc_work(tmp_path)
    work = bytes.fromhex(lic.work)
    b = bundle(tmp_path, ADA, [("receipt.received", receipt(work, ADA, FAN, 1000))])
    res = payout(LABEL, [b], [lic], out=tmp_path / "st.json", now=T0)
    assert verify_statement_file(res.signed, label=key_to_text(LABEL.public_key))
    with pytest.raises(InputError) as e:  # exit 1, not 3: the statement is not at fault
        verify_statement_file(res.signed, label="not-a-key")
    assert e.value.exit_code == 1
    with pytest.raises(InputError):  # an empty --label "$UNSET" must not check nothing
        verify_statement_file(res.signed, label="")


@pytest.mark.parametrize("dates", [{"start": "1960-01-01"},
                                   {"start": "1960-01-01", "end": "2020-01-01"}])
def test_a_period_before_1970_is_an_input_error_not_a_traceback(
        tmp_path: Path, dates: dict[str, str]) -> None:
    from p2pdist.errors import InputError

    lic, _ = cc_work(tmp_path)
    work = bytes.fromhex(lic.work)
    b = bundle(tmp_path, ADA, [("receipt.received", receipt(work, ADA, FAN, 1000))])
    with pytest.raises(InputError, match="--from"):
        payout(LABEL, [b], [lic], out=tmp_path / "st.json", now=T0, **dates)
    assert not (tmp_path / "st.json").exists()


def test_a_statement_too_large_to_sign_is_an_input_error_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from p2pdist.errors import InputError
    from p2pdist.payouts import statement as statement_mod

    lic, _ = cc_work(tmp_path)
    work = bytes.fromhex(lic.work)
    b = bundle(tmp_path, ADA, [("receipt.received", receipt(work, ADA, FAN, 1000))])
    monkeypatch.setattr(statement_mod, "MAX_STATEMENT_SIZE", 300)
    with pytest.raises(InputError, match="too large"):
        payout(LABEL, [b], [lic], out=tmp_path / "st.json", now=T0)
    assert not (tmp_path / "st.json").exists() and not (tmp_path / "st.p2ps").exists()
