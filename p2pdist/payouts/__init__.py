"""Payouts: signed receipts, the append-only ledger, tallies and statements."""

from p2pdist.payouts.ledger import (
    Bundle,
    Checkpoint,
    Entry,
    ImportReport,
    Ledger,
    SignedCheckpoint,
    VerifyReport,
    entry_hash,
    verify_bundle,
)

__all__ = [
    "Bundle",
    "Checkpoint",
    "Entry",
    "ImportReport",
    "Ledger",
    "SignedCheckpoint",
    "VerifyReport",
    "entry_hash",
    "verify_bundle",
]
