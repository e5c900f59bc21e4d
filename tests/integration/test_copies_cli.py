"""`p2pdist label decide`: a label signs which work of a group of copies is the original,
into its own ledger, and its next `receipts export` carries the decision to the audit."""

from __future__ import annotations

import json
from pathlib import Path

from p2pdist.identity import load_public_identity
from p2pdist.payouts.copies import (
    DECISION_KIND,
    decisions_from_entries,
    verify_decision,
)
from p2pdist.payouts.ledger import verify_bundle
from tests.conftest import run_cli

ORIGINAL, COPY, OTHER = "a1" * 32, "c0" * 32, "0b" * 32


def test_label_decides_a_copy_and_the_bundle_carries_the_signed_decision(
        tmp_path: Path) -> None:
    label, mallory = tmp_path / "label", tmp_path / "mallory"
    for h in (label, mallory):
        run_cli(h, "init", "--name", h.name)
    assert "decide" in run_cli(label, "label", "--help").stdout
    doc = json.loads(run_cli(label, "label", "decide", ORIGINAL, COPY.upper(), OTHER,
                             "--json").stdout)
    key = load_public_identity(label)
    assert doc["label"] == key.key_text and doc["original"] == ORIGINAL
    assert doc["copies"] == sorted([COPY, OTHER]) and doc["kind"] == DECISION_KIND
    plain = run_cli(label, "label", "decide", OTHER).stdout  # a work of its own
    assert "a work of its own" in plain and OTHER in plain
    # Refused, and nothing signed: a work as its own copy, a copy twice, not a work id.
    for args in ((ORIGINAL, ORIGINAL), (ORIGINAL, COPY, COPY), ("a1" * 31, COPY),
                 (ORIGINAL, "zz" * 32)):
        cp = run_cli(label, "label", "decide", *args, check=False)
        assert cp.returncode == 1 and "Traceback" not in cp.stderr, args
    # Mallory signs "its" decision in its own ledger: it verifies as Mallory's word only.
    run_cli(mallory, "label", "decide", COPY, ORIGINAL)
    bundles = {}
    for h in (label, mallory):
        out = tmp_path / f"{h.name}.p2pb"
        run_cli(h, "receipts", "export", "--out", str(out))
        bundles[h.name] = verify_bundle(out.read_bytes())
    read = decisions_from_entries(bundles["label"].entries)
    assert read.bad == () and len(read.decisions) == 2
    first, second = read.decisions
    verify_decision(first, trusted_labels={key.public_key})
    assert (first.decision.original.hex(), [c.hex() for c in first.decision.copies]) == \
        (ORIGINAL, sorted([COPY, OTHER]))
    assert (second.decision.original.hex(), second.decision.copies) == (OTHER, ())
    (forged,) = decisions_from_entries(bundles["mallory"].entries).decisions
    assert forged.decision.label == load_public_identity(mallory).public_key
    assert [e.kind for e in bundles["label"].entries] == [DECISION_KIND] * 2
