"""Payouts: signed receipts, the append-only ledger, vouchers, tallies and statements."""

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
from p2pdist.payouts.vouchers import (
    IssuedVoucher,
    VoucherBook,
    VoucherRow,
    format_code,
    parse_code,
    write_csv,
)

__all__ = [
    "Bundle",
    "Checkpoint",
    "Entry",
    "ImportReport",
    "IssuedVoucher",
    "Ledger",
    "SignedCheckpoint",
    "VerifyReport",
    "VoucherBook",
    "VoucherRow",
    "entry_hash",
    "format_code",
    "parse_code",
    "verify_bundle",
    "write_csv",
]
