"""Payouts: signed receipts, the append-only ledger, vouchers, tallies and statements."""

# audit() stays in p2pdist.payouts.audit: exported here it would hide that module.
from p2pdist.payouts.audit import AuditReport, Finding, WorkInfo, works_from_licenses
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
from p2pdist.payouts.payments import (
    PaymentReceipt,
    PurchaseRequest,
    SignedPayment,
    SignedPurchase,
    verify_payment,
    verify_purchase,
)
from p2pdist.payouts.statement import (
    Period,
    Pool,
    SignedStatement,
    Statement,
    StatementWork,
    compute_statement,
    verify_statement,
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
    "AuditReport",
    "Bundle",
    "Checkpoint",
    "Entry",
    "Finding",
    "ImportReport",
    "IssuedVoucher",
    "Ledger",
    "PaymentReceipt",
    "Period",
    "Pool",
    "PurchaseRequest",
    "SignedCheckpoint",
    "SignedPayment",
    "SignedPurchase",
    "SignedStatement",
    "Statement",
    "StatementWork",
    "VerifyReport",
    "VoucherBook",
    "VoucherRow",
    "WorkInfo",
    "compute_statement",
    "entry_hash",
    "format_code",
    "parse_code",
    "verify_bundle",
    "verify_payment",
    "verify_purchase",
    "verify_statement",
    "works_from_licenses",
    "write_csv",
]
