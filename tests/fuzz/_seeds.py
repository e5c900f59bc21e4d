"""Real objects to seed the fuzzers: published with the real code, signed with test keys.

Built once per test process (``seeds()``) in a temporary folder: three published works
(CC hybrid, CC v1 folder, paid hybrid with an embedded label certificate), a two-holder
license draft, receipts, payment receipts, grants, certificates, a signed statement,
ledger bundles exported from real SQLite ledgers, and voucher codes from a real book.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.signing

from p2pdist import node
from p2pdist._credit import COLLECTED, ISSUED, RECEIVED
from p2pdist.identity import Identity
from p2pdist.licensing import (
    ArtistCertificate,
    Content,
    PaidTerms,
    SignedCertificate,
    Split,
    content_of_info,
    license_of_info,
)
from p2pdist.licensing._grant import LicenseGrant, SignedGrant, seal_key
from p2pdist.payouts.audit import PAYMENT_ISSUED, WorkInfo
from p2pdist.payouts.ledger import Ledger
from p2pdist.payouts.payments import SignedPayment
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt
from p2pdist.payouts.statement import (
    Sale,
    SignedStatement,
    StatementWork,
    compute_statement,
)
from p2pdist.payouts.vouchers import VoucherBook, format_code
from p2pdist.swarm import info_section, make_magnet
from tests._sales import Batch

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def identity(name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(hashlib.sha256(name.encode()).digest()))


ADA, GRACE, LABEL, BUYER, FAN1, FAN2 = (
    identity(n) for n in ("Ada", "Grace", "Roundhouse Records", "buyer", "fan 1", "fan 2"))


@dataclass(frozen=True)
class Seeds:
    root: Path
    torrents: tuple[bytes, ...]
    magnets: tuple[str, ...]
    licenses: tuple[bytes, ...]  # signed-license envelopes, as in an info dict
    contents: dict[bytes, Content]  # manifest bytes -> the content its torrent commits to
    manifests: tuple[bytes, ...]  # bare manifest bytes
    certificates: tuple[bytes, ...]
    receipts: tuple[bytes, ...]
    payments: tuple[bytes, ...]
    grants: tuple[bytes, ...]
    statements: tuple[bytes, ...]
    bundles: tuple[bytes, ...]
    drafts: tuple[bytes, ...]
    vouchers: tuple[str, ...]
    paid_work: bytes  # the paid work's id (32 bytes)
    paid_terms: PaidTerms
    paid_size: int
    key_id: bytes
    works: dict[bytes, WorkInfo]
    voucher_book: Path


def _publish(home: Path, src: Path, out: Path, **kw: object) -> bytes:
    node.publish(home, ADA, src, out=out, now=T0, **kw)  # type: ignore[arg-type]
    return out.read_bytes()


def _receipt(work: bytes, up: Identity, down: Identity, seq: int, n: int) -> bytes:
    r = TransferReceipt(work, up.public_key, down.public_key, seq, n,
                        T0 + timedelta(seconds=seq % 100_000))
    return SignedReceipt.sign(r, down).to_bytes()


def _bundle(path: Path, who: Identity, items: Sequence[tuple[str, bytes]]) -> bytes:
    with Ledger(path, node=who.public_key) as led:
        if items:
            led.append_many(items)
        return led.export_bundle(who, now=T0 + timedelta(days=1))


@functools.cache
def seeds() -> Seeds:
    root = Path(tempfile.mkdtemp(prefix="p2pdist-fuzz-seeds-"))
    atexit.register(shutil.rmtree, root, True)
    home = root / "home"
    work = root / "work"
    (work / "album" / "disc 1").mkdir(parents=True)
    (work / "song.flac").write_bytes(bytes(i % 251 for i in range(70_000)))
    (work / "album" / "disc 1" / "a.flac").write_bytes(b"a" * 40_000)
    (work / "album" / "b.txt").write_bytes(b"liner notes\n")
    (work / "album" / "c.flac").write_bytes(b"c" * 16_385)
    (work / "paid.flac").write_bytes(b"p" * 50_000)

    cert = SignedCertificate.sign(ArtistCertificate(
        ADA.public_key, "Ada", LABEL.public_key, "Roundhouse Records", T0,
        T0 + timedelta(days=365)), LABEL)
    terms = PaidTerms(500, "EUR", 1500, (ADA.public_key,), "127.0.0.1:7000")
    torrents = (
        _publish(home, work / "song.flac", root / "song.torrent", title="Song",
                 spdx="CC-BY-SA-4.0", trackers=["http://127.0.0.1:6969/announce"]),
        _publish(home, work / "album", root / "album.torrent", title="Album",
                 spdx="CC-BY-4.0", fmt="v1", creators=["Ada", "Grace"]),
        _publish(home, work / "paid.flac", root / "paid.torrent", title="Paid",
                 paid=terms, certificates=[cert]),
    )
    drafts = []
    draft = root / "duet.p2pm"
    node.publish(home, ADA, work / "song.flac", title="Duet", spdx="CC-BY-4.0",
                 splits=[Split(ADA.public_key, 6000), Split(GRACE.public_key, 4000)],
                 draft=draft, now=T0)
    drafts.append(draft.read_bytes())
    node.cosign_draft(GRACE, draft)
    drafts.append(draft.read_bytes())

    licenses, manifests, contents = [], [], {}
    for t in torrents:
        info, signed = license_of_info(info_section(t))
        licenses.append(signed.to_bytes())
        manifests.append(signed.manifest_bytes)
        contents[signed.manifest_bytes] = content_of_info(info)
    paid_info = info_section(torrents[2])
    paid_work = hashlib.sha256(paid_info).digest()
    cc_work = hashlib.sha256(info_section(torrents[0])).digest()
    _, paid_signed = license_of_info(paid_info)
    paid_size = paid_signed.work_size
    enc = paid_signed.manifest.encryption
    assert enc is not None
    key_id = enc.key_id

    receipts = (
        _receipt(cc_work, FAN1, FAN2, 1, 16_384),
        _receipt(cc_work, ADA, FAN1, 7, 70_000),
        _receipt(paid_work, FAN1, BUYER, 2**40, 2**62),
    )
    batch = Batch(ADA, paid_work, 500, "EUR", 4, T0, seed=b"fuzz-seeds")
    payments = tuple(batch.sell(BUYER, ts=T0 + timedelta(hours=i), nonce=bytes([i]) * 16,
                                receipts=rs).to_bytes()
                     for i, rs in enumerate([(), (receipts[2],)]))
    grants = (SignedGrant.sign(LicenseGrant(
        paid_work, BUYER.public_key, ADA.public_key, key_id,
        seal_key(bytes(range(32)), BUYER.public_key), T0), ADA).to_bytes(),)

    works = {
        paid_work: StatementWork("Paid", terms, ((ADA.public_key, 10_000),), paid_size),
    }
    sales = [Sale(p.work, p.buyer, p.seller, p.amount, p.currency, p.ts, p.request_id,
                  ((FAN1.public_key, 30_000), (FAN2.public_key, 20_000)) if i else ())
             for i, p in enumerate(SignedPayment.from_bytes(x).payment for x in payments)]
    statement = compute_statement(label=LABEL.public_key, works=works, sales=sales,
                                  issued=T0 + timedelta(days=30))
    statements = (SignedStatement.sign(statement, LABEL).to_bytes(),)

    bundles = (
        _bundle(root / "fan1.db", FAN1, [(ISSUED, receipts[0]), (RECEIVED, receipts[2])]),
        _bundle(root / "ada.db", ADA, [(RECEIVED, receipts[1]), (PAYMENT_ISSUED, payments[0]),
                                       (PAYMENT_ISSUED, payments[1]), (COLLECTED, receipts[0]),
                                       ("note", b"anything")]),
        _bundle(root / "empty.db", FAN2, []),
    )

    book_path = root / "vouchers.db"
    with VoucherBook(book_path) as book:
        vouchers = tuple(format_code(c) for c in book.issue(paid_work, 4, now=T0))
        book.redeem(paid_work, vouchers[0], buyer=BUYER.public_key, now=T0)

    magnets = (
        *(make_magnet(t) for t in torrents),
        "magnet:?xt=urn:btmh:1220" + "ab" * 32 + "&dn=v2%20only&x.pe=127.0.0.1:6881",
        "magnet:?xt=urn:btih:" + "CD" * 20 + "&xt=urn:btmh:1220" + "ef" * 32
        + "&tr=udp%3A%2F%2F127.0.0.1%3A6969&so=0-2,4&dn=%E2%9C%93",
    )
    return Seeds(
        root=root, torrents=torrents, magnets=magnets, licenses=tuple(licenses),
        contents=contents, manifests=tuple(manifests), certificates=(cert.to_bytes(),),
        receipts=receipts, payments=payments, grants=grants, statements=statements,
        bundles=bundles, drafts=tuple(drafts), vouchers=vouchers, paid_work=paid_work,
        paid_terms=terms, paid_size=paid_size, key_id=key_id,
        works={paid_work: WorkInfo(paid_size, terms)}, voucher_book=book_path,
    )
