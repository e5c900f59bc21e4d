"""Paid works: sell with a payment method, buy, unlock. Composes licensing, payouts, the
library and the node API (with node.py, the only modules that combine domains).

    seller  POST /purchase  ->  Shop.handle: verify the buyer's request, take the payment
                                (a voucher), sign a PaymentReceipt and a LicenseGrant
    buyer   buy()           ->  find a seller that proves its key on the endpoint dialed,
                                send the request (the code sealed to that key) with its
                                own transfer receipts, verify both answers, keep them
    buyer   unlock()        ->  open the grant with its key, decrypt all-or-nothing
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public

from p2pdist._api import ApiError, ask_proof, post
from p2pdist._bounded import BoundedMap
from p2pdist._credit import ISSUED, LedgerLog, ReceiptLog, send_payment
from p2pdist._home import HomeLock
from p2pdist._proof import SignedProof, split_endpoint, verify_proof
from p2pdist.errors import (
    InputError,
    InvalidSignature,
    MalformedObject,
    NetworkError,
    NotLicensed,
    P2PDistError,
    VerificationError,
    VoucherRefused,
)
from p2pdist.identity import Identity, fingerprint, key_to_text
from p2pdist.library import Library, Work
from p2pdist.licensing import License, PaidTerms, format_price, verify_info
from p2pdist.licensing._encryption import (
    PlainFile,
    decrypt_tree,
    verify_key_id,
)
from p2pdist.licensing._grant import LicenseGrant, SignedGrant, open_grant, seal_key, verify_grant
from p2pdist.payouts.issuance import MerkleProof, SignedIssuance
from p2pdist.payouts.methods import PaymentMethod, VoucherMethod
from p2pdist.payouts.payments import (
    PaymentReceipt,
    PaymentRejected,
    PurchaseRequest,
    SignedPayment,
    SignedPurchase,
    open_payment,
    served_by_from_receipts,
    verify_payment,
    verify_purchase,
)
from p2pdist.payouts.receipts import SignedReceipt
from p2pdist.payouts.vouchers import VoucherBook
from p2pdist.swarm import info_section

__all__ = [
    "PAYMENT_ISSUED",
    "PAYMENT_RECEIVED",
    "VOUCHERS_NAME",
    "BuyResult",
    "PurchaseRefused",
    "Shop",
    "buy",
    "buy_work",
    "issue_vouchers",
    "list_vouchers",
    "open_own_key",
    "paid_license",
    "seal_own_key",
    "send_payments",
    "unlock",
]

PAYMENT_ISSUED = "payment.issued"
PAYMENT_RECEIVED = "payment.received"
VOUCHERS_NAME = "vouchers.sqlite"
REQUEST_MAX_AGE = timedelta(hours=24)  # a signed request older (or newer) than this: stale


class PurchaseRefused(P2PDistError):
    """The seller refused the purchase; ``reason`` is its one-word reason."""

    def __init__(self, message: str, *, reason: str, remedy: str | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.reason = reason


# -- the content key, kept by sellers ------------------------------------------------------


def seal_own_key(content_key: bytes, identity: Identity) -> bytes:
    """The content key sealed to this node's own X25519 key, for HOME/library/WORK.key."""
    return seal_key(content_key, identity.public_key)


def open_own_key(sealed: bytes, identity: Identity) -> bytes:
    box = nacl.public.SealedBox(identity.signing_key.to_curve25519_private_key())
    try:
        key = bytes(box.decrypt(sealed))
    except nacl.exceptions.CryptoError:
        raise InvalidSignature("this node's stored content key does not open with its key",
                               remedy="only the node that published the work holds it") \
            from None
    if len(key) != 32:
        raise InvalidSignature("the stored content key is damaged")
    return key


def paid_license(library: Library, work: str) -> tuple[Work, License, PaidTerms]:
    """A work of the library, its verified license, and its paid terms; InputError for
    a work that is not for sale."""
    w = library.get(work)
    lic = verify_info(info_section(library.torrent(w.work)))
    terms = lic.manifest.terms
    if not isinstance(terms, PaidTerms):
        raise InputError(f"{w.title} is not for sale: it is {terms.label}",
                         remedy="fetch it and enjoy it; no purchase is needed")
    return w, lic, terms


def plain_files(lic: License) -> list[PlainFile]:
    enc = lic.manifest.encryption
    if enc is None:
        raise InputError("this work is not encrypted")
    return [PlainFile(path, size) for path, size in enc.files]


# -- the seller ----------------------------------------------------------------------------


# Purchase nonces remembered, at most (and each for 2 x REQUEST_MAX_AGE, after which its
# request is stale anyway). A replay of a forgotten nonce reaches the payment, where a
# redeemed code is answered as the repeat it is: never charged twice.
MAX_NONCES = 100_000


@dataclass
class Shop:
    """POST /purchase for the works this node sells. Thread-safe: the API calls handle()
    from its own threads. Holds the voucher book open (once a purchase needs it) until
    close()."""

    identity: Identity
    library: Library
    log: LedgerLog
    vouchers: Path
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        # From the payment to its receipt in the ledger: a second request for the same
        # redeemed voucher must find that receipt, not sign another (a double spend).
        self._paying = threading.Lock()
        self._book: VoucherBook | None = None
        self._closed = False
        self._nonces: BoundedMap[bytes, None] = BoundedMap(
            MAX_NONCES, 2 * REQUEST_MAX_AGE.total_seconds())
        # payment ref -> the seq of its payment receipt in the ledger: a spent code's
        # receipt is found by one lookup, never by reading every payment.
        self._paid: dict[str, int] = {}
        for seq, payload in self.log.numbered(PAYMENT_ISSUED):
            p = SignedPayment.from_bytes(payload).payment
            self._nonces.set(p.nonce, None)
            self._paid.setdefault(p.payment_ref, seq)

    def close(self) -> None:
        with self._lock:
            book, self._book, self._closed = self._book, None, True
        if book is not None:
            book.close()

    def _voucher_book(self) -> VoucherBook:
        with self._lock:
            if self._closed:
                raise ApiError(503, "busy", "the node is stopping; try again shortly")
            if self._book is None:
                self._book = VoucherBook(self.vouchers)
            return self._book

    @contextlib.contextmanager
    def _method(self, name: str) -> Iterator[PaymentMethod]:
        """The payment method a request names, for one purchase."""
        if name != VoucherMethod.name:
            raise ApiError(422, "unknown-method", f"this seller takes no {name!r}")
        yield VoucherMethod(self._voucher_book())

    def handle(self, body: bytes) -> dict[str, Any]:
        """Verify, take the payment, sign the receipt and the grant; 4xx ApiError else."""
        try:
            signed = SignedPurchase.from_bytes(body)
        except MalformedObject as e:
            raise ApiError(400, "malformed", e.message) from None
        req = signed.request
        try:
            w, lic, terms = paid_license(self.library, req.work.hex())
        except InputError as e:
            raise ApiError(422, "not-for-sale", e.message) from None
        except P2PDistError:
            raise ApiError(404, "unknown-work", "this node does not sell that work") from None
        me = self.identity.public_key
        try:
            verify_purchase(signed, seller=me, work=req.work, terms=terms)
            code = open_payment(signed, self.identity)
        except PaymentRejected as e:
            raise ApiError(403 if e.reason == "not-a-seller" else 422, e.reason,
                           e.message) from None
        except VerificationError:
            raise ApiError(422, "bad-signature", "the request is not signed by its buyer") \
                from None
        now = self.now()
        if abs(now - req.ts) > REQUEST_MAX_AGE:
            raise ApiError(422, "stale", "the request's time is more than a day off; "
                           "check the buyer's clock")
        size = lic.manifest.content.total_size
        try:  # the receipts it carries are checked now: the audit will read them
            served_by_from_receipts(req.receipts, work=req.work, buyer=req.buyer, size=size)
        except PaymentRejected as e:
            raise ApiError(422, e.reason, e.message) from None
        grant = self._grant(w, lic, req.buyer, now)  # before the payment: none without a key
        with self._lock:  # one nonce, one purchase; the payment itself is atomic anyway
            if req.nonce in self._nonces:
                raise ApiError(409, "replayed", "this purchase request was already used")
            self._nonces.set(req.nonce, None)
        if req.method == VoucherMethod.name:
            # A spent code is answered from lookups by its hash, outside the lock that
            # every purchase takes.
            again = self._spent(signed, code, now)
            if again is not None:
                return {"ok": True, "payment": again.to_bytes().hex(),
                        "grant": grant.to_bytes().hex(), "repeated": True}
        with self._paying:
            try:
                with self._method(req.method) as method:
                    evidence = self._evidence(code)
                    ref = method.authorize(req, code, now=now)
            except VoucherRefused as e:
                again = self._paid_before(signed, code, now) \
                    if e.reason == "redeemed" else None
                if again is None:
                    raise ApiError(402 if e.reason != "malformed" else 422, e.reason,
                                   e.message) from None
                # The same buyer, the same code: its answer was lost (a crash, a dropped
                # connection). Answer again; the payment was taken once.
                return {"ok": True, "payment": again.to_bytes().hex(),
                        "grant": grant.to_bytes().hex(), "repeated": True}
            payment = self._sign(signed, ref, code, evidence, now)
            self._paid[ref] = self.log.append(PAYMENT_ISSUED, payment.to_bytes()).seq
        return {"ok": True, "payment": payment.to_bytes().hex(), "grant": grant.to_bytes().hex()}

    def _evidence(self, code: str) -> tuple[SignedIssuance, MerkleProof] | None:
        """The issuance record and proof of *code*, None if no such code (the payment
        refuses it); 402 "unissued" for a code issued before issuance records."""
        try:
            ev = self._voucher_book().evidence(code)
        except VoucherRefused:
            return None  # malformed: authorize says so
        if ev is None:
            if self._voucher_book().find(code) is not None:
                raise ApiError(402, "unissued", "this code was issued without an issuance "
                               "record (by an older p2pdist): the seller issues new codes")
            return None
        return SignedIssuance.from_bytes(ev[0]), ev[1]

    def _sign(self, signed: SignedPurchase, ref: str, code: str,
              evidence: tuple[SignedIssuance, MerkleProof] | None,
              now: datetime) -> SignedPayment:
        from p2pdist.payouts.vouchers import code_hash

        if evidence is None:  # a code that was redeemed has a row: cannot happen
            raise ApiError(503, "no-evidence", "this code's issuance record is missing")
        issuance, proof = evidence
        req = signed.request
        return SignedPayment.sign(PaymentReceipt(
            work=req.work, buyer=req.buyer, seller=self.identity.public_key,
            amount=issuance.issuance.face, currency=issuance.issuance.currency,
            method=req.method, payment_ref=ref, nonce=req.nonce,
            ts=now.replace(microsecond=0), request=signed, issuance=issuance,
            code=code_hash(code), proof=proof), self.identity)

    def _spent(self, signed: SignedPurchase, code: str,
               now: datetime) -> SignedPayment | None:
        """For a voucher of this work that was redeemed already: its refusal (another
        buyer) or its payment receipt again (this buyer); None for any other code, which
        goes on to the payment. Index lookups only, no lock held while reading."""
        req = signed.request
        book = self._voucher_book()
        try:
            row = book.find(code)
        except VoucherRefused as e:
            raise ApiError(422, e.reason, e.message) from None
        if row is None or row.work != req.work or row.redeemed is None:
            return None
        if row.buyer != req.buyer:
            try:
                book.check(req.work, code)
            except VoucherRefused as e:
                raise ApiError(402, e.reason, e.message) from None
            return None  # cannot happen (a redemption never changes); the payment decides
        seq = self._paid.get(row.payment_ref or "")
        raw = self.log.payload_at(seq) if seq is not None else None
        if raw is not None:
            paid = SignedPayment.from_bytes(raw)
            if (paid.payment.buyer, paid.payment.work) == (req.buyer, req.work):
                return paid
        # Being recorded right now, or the seller stopped before it was: under the lock.
        with self._paying:
            return self._paid_before(signed, code, now)

    def _paid_before(self, signed: SignedPurchase, code: str,
                     now: datetime) -> SignedPayment | None:
        """The payment receipt for a voucher this same buyer already redeemed: the one in
        the ledger, or (the seller stopped between redeeming and recording) a new one.
        Called with self._paying held; two lookups by key."""
        from p2pdist.payouts.vouchers import code_hash, payment_ref

        req = signed.request
        try:
            ref = payment_ref(code_hash(code))
        except P2PDistError:
            return None
        seq = self._paid.get(ref)
        if seq is not None:
            raw = self.log.payload_at(seq)
            paid = SignedPayment.from_bytes(raw) if raw is not None else None
            if paid is not None and \
                    (paid.payment.buyer, paid.payment.work) == (req.buyer, req.work):
                return paid
            return None
        row = self._voucher_book().find(code)
        if row is None or (row.payment_ref, row.buyer, row.work) != (ref, req.buyer, req.work):
            return None
        payment = self._sign(signed, ref, code, self._evidence(code), now)
        self._paid[ref] = self.log.append(PAYMENT_ISSUED, payment.to_bytes()).seq
        return payment

    def _grant(self, w: Work, lic: License, buyer: bytes, now: datetime) -> SignedGrant:
        sealed = self.library.secret(w.work, "key")
        enc = lic.manifest.encryption
        if sealed is None or enc is None:
            raise ApiError(503, "no-key", "this seller does not hold the work's key")
        key = open_own_key(sealed, self.identity)
        return SignedGrant.sign(LicenseGrant(
            work=bytes.fromhex(w.work), buyer=buyer, seller=self.identity.public_key,
            key_id=enc.key_id, sealed_key=seal_key(key, buyer),
            ts=now.replace(microsecond=0)), self.identity)


# -- the buyer -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuyResult:
    work: str
    title: str
    price: str
    seller: str
    payment_ref: str
    served_by: tuple[tuple[str, int], ...]
    redistributor_bps: int
    # The payment receipt at the work's collector: None (the license names none),
    # "sent", "unreachable" or "refused" (then `receipts send-payments` sends it later);
    # collector_note says why, collector_endpoint where.
    collector: str | None = None
    collector_note: str = ""
    collector_endpoint: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"work": self.work, "title": self.title, "price": self.price,
                "seller": self.seller, "payment_ref": self.payment_ref,
                "served_by": [{"pk": pk, "bytes": n} for pk, n in self.served_by],
                "redistributor_bps": self.redistributor_bps, "collector": self.collector,
                "collector_note": self.collector_note or None}


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) \
            or not 0 < int(port) <= 65535:
        raise InputError(f"--seller wants HOST:PORT, not {text!r}",
                         remedy="e.g. --seller 127.0.0.1:7001 (the seller's node API)")
    return host, int(port)


def _candidates(w: Work, terms: PaidTerms, seller: str | None,
                me: bytes) -> list[tuple[str, int]]:
    """Where to ask, from signed information only: the endpoints on which a seller the
    license names proved its key to this node (sellers_seen keeps the proofs), and the
    license's own seller_api. A bare "KEY@HOST:PORT" (what a peer merely claimed, kept by
    older versions) is passed over."""
    if seller is not None:
        return [_endpoint(seller)]
    out = []
    for entry in w.sellers_seen:
        try:
            signed = SignedProof.from_bytes(bytes.fromhex(entry.rpartition(" ")[2]))
            verify_proof(signed, asker=me, endpoint=signed.proof.endpoint, challenge=None,
                         keys=terms.sellers)
        except (ValueError, P2PDistError):
            continue
        if (ep := split_endpoint(signed.proof.endpoint)) not in out:
            out.append(ep)
    if terms.seller_api and (ep := _endpoint(terms.seller_api)) not in out:
        out.append(ep)
    if not out:
        raise InputError("no seller of this work is known yet",
                         remedy="give the seller's node API with --seller HOST:PORT, or "
                         "fetch the work from a swarm where a seller seeds")
    return out


def _my_receipts(log: ReceiptLog, work: bytes, me: bytes) -> list[bytes]:
    latest: dict[bytes, tuple[int, bytes]] = {}
    for payload in log.payloads(ISSUED):
        r = SignedReceipt.from_bytes(payload).receipt
        if r.work == work and r.downloader == me and r.seq > latest.get(r.uploader, (0, b""))[0]:
            latest[r.uploader] = (r.seq, payload)
    return [p for _, p in sorted(latest.values(), key=lambda t: t[1])][:64]


def buy(library: Library, log: ReceiptLog, identity: Identity, work: str, *, method: str,
        payment: str, seller: str | None = None, allow: Callable[[str], bool] = lambda h: True,
        now: datetime | None = None,
        may_send_to: Callable[[str], bool] = lambda h: False) -> BuyResult:
    """Buy *work* from a seller its license names; keep the grant and the receipt, and
    send the receipt to the license's collector if *may_send_to* allows its host.

    Raises PaymentRejected ("not-a-seller") when the node *seller* names is not a named
    seller (remembered endpoints where another node answers now are passed over),
    PurchaseRefused with the seller's reason, NetworkError when no seller answers.
    """
    w, lic, terms = paid_license(library, work)
    me = identity.public_key
    errors: list[str] = []
    for host, port in _candidates(w, terms, seller, me):
        if not allow(host):
            errors.append(f"{host}:{port} is not an address this network profile may "
                          "contact (loopback only in 'local'; a license's hint must be "
                          "globally routable in 'internet')")
            continue
        try:
            # A fresh proof, bound to this endpoint, before anything is sent: a relay (a
            # node that forwards /identity to a seller) fails here.
            proof, _name = ask_proof(host, port, asker=me)
        except (NetworkError, VerificationError) as e:
            if seller is not None and isinstance(e, VerificationError):
                raise PaymentRejected(
                    f"the node at {host}:{port} did not prove a key on that endpoint: "
                    f"{e.message}", reason="not-a-seller",
                    remedy="give the seller's own node API (a relay cannot prove its key); "
                    "nothing was sent") from None
            errors.append(e.message)
            continue
        pk = proof.proof.pk
        if pk not in terms.sellers and seller is None:
            # A remembered or hinted endpoint where another node answers now: try the next.
            errors.append(f"{host}:{port} is {fingerprint(pk)}, not a seller of this work")
            continue
        if pk not in terms.sellers:
            raise PaymentRejected(
                f"the node at {host}:{port} is {fingerprint(pk)} ({key_to_text(pk)}), "
                "not a seller named in this work's license", reason="not-a-seller",
                remedy="buy from a seller the license names (p2pdist license show)")
        req = PurchaseRequest.seal(
            work=bytes.fromhex(w.work), buyer=me, seller=pk, method=method, payment=payment,
            nonce=os.urandom(16), ts=(now or datetime.now(UTC)).replace(microsecond=0),
            receipts=tuple(_my_receipts(log, bytes.fromhex(w.work), me)))
        status, doc = post(host, port, "/purchase",
                           SignedPurchase.sign(req, identity).to_bytes(), timeout=30)
        if status != 200:
            # A refusal is not signed: it cannot prove that nothing was charged. What it
            # can say: the code went sealed to the key proven on this endpoint, so that
            # seller alone can redeem it, and a retry with the same code is answered with
            # the purchase it already took, never charged twice.
            reason = str(doc.get("reason", "refused"))
            raise PurchaseRefused(
                f"the seller {fingerprint(pk)} refused: {doc.get('error') or f'HTTP {status}'}",
                reason=reason,
                remedy="the code was sent sealed to this seller's key: no one else can "
                "redeem it. Check the code and run buy again with it (a code this seller "
                "already took from you is answered with your purchase, never charged "
                "twice), or ask the seller")
        return _keep(library, log, identity, w, lic, terms, doc, pk, may_send_to)
    raise NetworkError("no seller answered: " + "; ".join(errors),
                       remedy="check that a seller's node is running; give --seller HOST:PORT")


def _keep(library: Library, log: ReceiptLog, identity: Identity, w: Work, lic: License,
          terms: PaidTerms, doc: dict[str, Any], seller: bytes,
          may_send_to: Callable[[str], bool] = lambda h: False) -> BuyResult:
    enc = lic.manifest.encryption
    if enc is None:
        raise InputError("this work is not encrypted")
    try:
        payment = SignedPayment.from_bytes(bytes.fromhex(str(doc["payment"])))
        grant = SignedGrant.from_bytes(bytes.fromhex(str(doc["grant"])))
    except (KeyError, ValueError):
        raise MalformedObject("the seller's answer holds no payment receipt and grant") \
            from None
    work = bytes.fromhex(w.work)
    verify_payment(payment, work=work, terms=terms, buyer=identity.public_key)
    if payment.payment.seller != seller or grant.grant.seller != seller:
        raise PaymentRejected("the answer is signed by another seller than the one asked",
                              reason="wrong-seller")
    verify_grant(grant, work=work, buyer=identity.public_key, sellers=terms.sellers,
                 key_id=enc.key_id)
    verify_key_id(open_grant(grant, identity), expected=enc.key_id)
    library.save_secret(w.work, "grant", grant.to_bytes())
    if payment.to_bytes() not in log.payloads(PAYMENT_RECEIVED):  # a repeated answer: kept
        log.append(PAYMENT_RECEIVED, payment.to_bytes())
    p = payment.payment
    served = served_by_from_receipts(p.request.request.receipts, work=work, buyer=p.buyer,
                                     size=lic.manifest.content.total_size)
    result = BuyResult(w.work, w.title, format_price(p.amount, p.currency),
                       key_to_text(seller), p.payment_ref,
                       tuple((key_to_text(s.pk), s.bytes) for s in served),
                       terms.redistributor_bps)
    # The sale is kept: now its evidence goes to the collector, if the license names one.
    # A collector that cannot take it fails nothing; `receipts send-payments` resends.
    collector = lic.manifest.collector
    if collector is None or collector.pk == identity.public_key:
        return result
    status, note = send_payment(payment.to_bytes(), collector, asker=identity.public_key,
                                may_send_to=may_send_to)
    return dataclasses.replace(result, collector=status, collector_note=note,
                               collector_endpoint=collector.endpoint)


# -- unlock --------------------------------------------------------------------------------


def unlock(library: Library, identity: Identity, work: str, dest: Path, *,
           progress: Callable[[int], None] | None = None, overwrite: bool = False
           ) -> list[Path]:
    """Decrypt a bought work into *dest*: every file, or (on any failure) none."""
    w, lic, terms = paid_license(library, work)
    enc = lic.manifest.encryption
    if enc is None:
        raise InputError("this work is not encrypted")
    raw = library.secret(w.work, "grant")
    if raw is None:
        raise NotLicensed(f"not licensed: you have not bought {w.title}",
                          remedy=f"buy it with p2pdist buy {w.work[:16]}")
    grant = SignedGrant.from_bytes(raw)
    verify_grant(grant, work=bytes.fromhex(w.work), buyer=identity.public_key,
                 sellers=terms.sellers, key_id=enc.key_id)
    key = open_grant(grant, identity)
    verify_key_id(key, expected=enc.key_id)
    if not w.complete:
        raise InputError(f"{w.title} is not fully downloaded yet",
                         remedy="finish the fetch first (run it again: it resumes)")
    return decrypt_tree(key, plain_files(lic), Path(w.save_path), dest.expanduser().absolute(),
                        progress=progress, overwrite=overwrite)


def payments(log: ReceiptLog, kind: str) -> Sequence[PaymentReceipt]:
    return [SignedPayment.from_bytes(p).payment for p in log.payloads(kind)]


# -- what the CLI calls ---------------------------------------------------------------------


def _own_sale(library: Library, identity: Identity, work: str) -> tuple[Work, PaidTerms]:
    w, _, terms = paid_license(library, work)
    if identity.public_key not in terms.sellers or library.secret(w.work, "key") is None:
        raise InputError(f"you do not sell {w.title}: only a seller named in its license "
                         "who holds its key can issue vouchers",
                         remedy="run this on the node that published the work")
    return w, terms


def issue_vouchers(home: Path, identity: Identity, work: str, count: int, *,
                   out: Path | None = None, now: datetime | None = None,
                   face: int | None = None) -> list[str]:
    """Issue *count* codes for a work this node sells; write them as CSV if *out*.

    Each code was sold for *face* minor units (the work's price if None; 0 for gift and
    press codes): this node signs an issuance record (issuance.py) naming itself as the
    collector of that money, keeps it with the codes' Merkle proofs, and appends it to
    its ledger (``voucher.issuance``) in the same transaction, so the label's audit books
    each sale of these codes at *face* against this node.

    With *out*, a code is in the voucher book only if it is in that CSV: the CSV is
    written, 0600, and linked into place (never over an existing file, however many
    `vouchers issue` race for the name) inside the book's transaction, before it commits.
    A CSV whose transaction then fails is removed. (A crash between the two leaves codes
    in the CSV that the book does not know: they redeem nothing.)"""
    from p2pdist._credit import open_ledger
    from p2pdist.payouts.issuance import ISSUANCE_KIND, Issuance, SignedIssuance
    from p2pdist.payouts.vouchers import IssuedVoucher, write_csv

    w, terms = _own_sale(Library(home), identity, work)
    face = terms.price if face is None else face
    if not 0 <= face <= terms.price:
        raise InputError(f"a code's face value is 0 to the price, "
                         f"{format_price(terms.price, terms.currency)}",
                         remedy="use --free for gift and press codes")
    if out is not None and (out.exists() or out.is_symlink()):
        raise InputError(f"{out} exists; the voucher codes in it cannot be shown again",
                         remedy="write the new codes to another file")
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    placed = False
    record: list[SignedIssuance] = []

    def place(codes: list[str]) -> None:
        nonlocal placed
        if out is not None:
            write_csv(out, [IssuedVoucher(c, bytes.fromhex(w.work), when) for c in codes])
            placed = True
        # Last, once the codes are where they are handed out: a batch that fails before
        # (a CSV that cannot be written) leaves no signed record of codes that never
        # existed in the append-only ledger. (A crash between this and the book's commit
        # still can; a failure to append issues nothing.)
        log.append(ISSUANCE_KIND, record[0].to_bytes())

    def sign(root: bytes, n: int) -> SignedIssuance:
        record.append(SignedIssuance.sign(Issuance(
            work=bytes.fromhex(w.work), collector=identity.public_key, count=n, face=face,
            currency=terms.currency, root=root, ts=when), identity))
        return record[0]

    with HomeLock(home), VoucherBook(home / VOUCHERS_NAME) as book:
        log = open_ledger(home, identity.public_key)
        try:
            return book.issue(bytes.fromhex(w.work), count, now=when, before_commit=place,
                              sign=sign)
        except BaseException:
            if placed and out is not None:  # the CSV of codes that were never issued
                with contextlib.suppress(OSError):
                    out.unlink()
            raise
        finally:
            log.close()


def list_vouchers(home: Path, work: str) -> list[dict[str, object]]:
    w, _, _ = paid_license(Library(home), work)
    path = home / VOUCHERS_NAME
    if not path.exists():
        return []
    with VoucherBook(path) as book:
        return [r.to_dict() for r in book.rows(bytes.fromhex(w.work))]


def _seen_hosts(home: Path, work: str) -> set[str]:
    """The hosts where a seller of *work* proved its key to this node in the swarm (the
    proofs themselves are checked again by _candidates)."""
    w = Library(home).find(work)
    hosts = set()
    for entry in w.sellers_seen if w is not None else ():
        try:
            signed = SignedProof.from_bytes(bytes.fromhex(entry.rpartition(" ")[2]))
            hosts.add(split_endpoint(signed.proof.endpoint)[0])
        except (ValueError, P2PDistError):
            continue
    return hosts


def buy_work(home: Path, identity: Identity, work: str, *, voucher: str,
             seller: str | None, profile: Any) -> BuyResult:
    """`p2pdist buy`: pay with a voucher. In the local profile, loopback sellers only. In
    the internet profile, the --seller the user names may be anywhere, and so may a
    seller that proved its key in the swarm; the license's seller-api hint, which the
    publisher wrote, must be globally routable (it must not reach into the buyer's own
    network)."""
    from p2pdist._credit import open_ledger
    from p2pdist.swarm import Profile
    from p2pdist.swarm._settings import license_address_allowed

    def allow(host: str) -> bool:
        if profile is Profile.LOCAL or seller is None:
            if profile is not Profile.LOCAL and host in _seen_hosts(home, work):
                return True
            return license_address_allowed(profile, host)
        return True

    log = open_ledger(home, identity.public_key)
    try:
        return buy(Library(home), log, identity, work, method="voucher",
                   payment=voucher.strip(), seller=seller, allow=allow,
                   may_send_to=lambda host: license_address_allowed(profile, host))
    finally:
        log.close()


def send_payments(home: Path, identity: Identity, *, profile: Any) -> list[dict[str, object]]:
    """`p2pdist receipts send-payments`: send every payment receipt this node holds as a
    buyer to its work's collector, if the license names one (the collector keeps each
    once: one it holds already is answered "already kept"). One row per receipt sent,
    with its status ("sent", "unreachable", "refused") and why."""
    from p2pdist._credit import open_ledger
    from p2pdist.swarm._settings import license_address_allowed

    library = Library(home)
    log = open_ledger(home, identity.public_key)
    try:
        payloads = log.payloads(PAYMENT_RECEIVED)
    finally:
        log.close()
    rows: list[dict[str, object]] = []
    for raw in dict.fromkeys(payloads):  # a repeated answer kept twice: sent once
        p = SignedPayment.from_bytes(raw).payment
        try:
            w, lic, _ = paid_license(library, p.work.hex())
        except P2PDistError:
            continue  # removed from the library: its collector is not known any more
        collector = lic.manifest.collector
        if collector is None or collector.pk == identity.public_key:
            continue
        status, note = send_payment(raw, collector, asker=identity.public_key,
                                    may_send_to=lambda h: license_address_allowed(profile, h))
        rows.append({"work": w.work, "title": w.title, "payment_ref": p.payment_ref,
                     "collector": key_to_text(collector.pk), "endpoint": collector.endpoint,
                     "status": status, "note": note})
    return rows
