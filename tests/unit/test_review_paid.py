"""Review findings in p2pdist/paid.py and p2pdist/node.py (paid works), in-process."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist._api import ApiError
from p2pdist._credit import open_ledger
from p2pdist.identity import Identity
from p2pdist.licensing import PaidTerms
from p2pdist.node import publish
from p2pdist.paid import PAYMENT_ISSUED, VOUCHERS_NAME, Shop, issue_vouchers
from p2pdist.payouts.methods import PaymentMethod, VoucherMethod
from p2pdist.payouts.payments import PurchaseRequest, SignedPayment, SignedPurchase
from p2pdist.payouts.vouchers import VoucherBook


def _identity(name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(hashlib.sha256(name.encode()).digest()))


ADA, FAN = _identity("ada"), _identity("fan")


@pytest.fixture
def sold(tmp_path: Path) -> tuple[Path, str]:
    album = tmp_path / "album"
    album.mkdir()
    (album / "a.flac").write_bytes(b"a" * 100_000)
    home = tmp_path / "ada"
    res = publish(home, ADA, album, title="Album",
                  paid=PaidTerms(500, "EUR", 1500, (ADA.public_key,)),
                  out=tmp_path / "album.torrent")
    return home, res.work


def _request(work: str, code: str, buyer: Identity = FAN) -> bytes:
    import os

    return SignedPurchase.sign(PurchaseRequest.seal(
        work=bytes.fromhex(work), buyer=buyer.public_key, seller=ADA.public_key,
        method="voucher", payment=code, nonce=os.urandom(16),
        ts=datetime.now(UTC).replace(microsecond=0), receipts=()), buyer).to_bytes()


class _SlowVoucher:
    """A payment method that takes its time after the money is taken (a slow card
    processor, a busy disk): the window between the payment and its receipt."""

    name = "voucher"

    def __init__(self, inner: VoucherMethod) -> None:
        self.inner = inner

    def authorize(self, request: PurchaseRequest, payment: str, *, now: datetime) -> str:
        ref = self.inner.authorize(request, payment, now=now)
        time.sleep(0.5)
        return ref


class _SlowShop(Shop):
    @contextlib.contextmanager
    def _method(self, name: str) -> Iterator[PaymentMethod]:
        with VoucherBook(self.vouchers) as book:
            yield _SlowVoucher(VoucherMethod(book))


def test_one_voucher_sent_twice_at_once_by_its_buyer_is_one_payment(
        sold: tuple[Path, str]) -> None:
    # The buyer's first request is slow to answer, so it asks again: the seller must not
    # sign two payment receipts for one redemption (the audit calls that a double spend).
    home, work = sold
    [code] = issue_vouchers(home, ADA, work, 1)
    from p2pdist.library import Library

    log = open_ledger(home, ADA.public_key)
    try:
        shop = _SlowShop(ADA, Library(home), log, home / VOUCHERS_NAME)
        answers: list[Any] = []

        def ask() -> None:
            try:
                answers.append(shop.handle(_request(work, code)))
            except ApiError as e:
                answers.append(e)

        threads = [threading.Thread(target=ask) for _ in range(2)]
        threads[0].start()
        time.sleep(0.2)
        threads[1].start()
        for t in threads:
            t.join()
        refs = [SignedPayment.from_bytes(p).payment.payment_ref
                for p in log.payloads(PAYMENT_ISSUED)]
        assert len(refs) == len(set(refs)) == 1
        assert all(isinstance(a, dict) and a["ok"] for a in answers)
    finally:
        log.close()


def test_a_work_for_sale_that_its_publisher_cannot_sell_is_refused(tmp_path: Path) -> None:
    # The content key exists only in the publisher's home, sealed to its key: with other
    # sellers only, no node could ever sell the work (the publisher is not a named seller,
    # the named one has no key). Refused before anything is written.
    from p2pdist.errors import InputError

    album = tmp_path / "album"
    album.mkdir()
    (album / "a.flac").write_bytes(b"a" * 1000)
    home, out = tmp_path / "ada", tmp_path / "album.torrent"
    with pytest.raises(InputError, match="seller"):
        publish(home, ADA, album, title="Album",
                paid=PaidTerms(500, "EUR", 1500, (FAN.public_key,)), out=out)
    assert not out.exists()
    assert not (home / "library").exists() or not any((home / "library").iterdir())
    assert not (home / "paid").exists() or not any((home / "paid").iterdir())


def test_publish_to_a_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # "Every input is checked before anything is written; on error nothing is": with
    # --force and --out naming a folder, the ciphertexts and the sealed key were left in
    # the home before the torrent failed to write.
    from p2pdist.errors import P2PDistError

    album = tmp_path / "album"
    album.mkdir()
    (album / "a.flac").write_bytes(b"a" * 1000)
    home, out = tmp_path / "ada", tmp_path / "out"
    out.mkdir()
    with pytest.raises(P2PDistError, match="folder"):
        publish(home, ADA, album, title="Album",
                paid=PaidTerms(500, "EUR", 1500, (ADA.public_key,)), out=out, force=True)
    assert not (home / "library").exists() or not any((home / "library").iterdir())
    assert not (home / "paid").exists() or not any((home / "paid").iterdir())


def test_a_second_node_is_refused_with_home_in_use_even_if_the_control_file_is_unreadable(
        tmp_path: Path) -> None:
    from p2pdist._control import CONTROL_FILE, ControlServer
    from p2pdist.errors import HomeInUse

    first = ControlServer(tmp_path)
    try:
        (tmp_path / CONTROL_FILE).mkdir()  # unreadable as a file, whoever runs the test
        with pytest.raises(HomeInUse):
            ControlServer(tmp_path)
    finally:
        first.close()


def test_buy_passes_over_a_stale_seller_endpoint_to_the_next_one(tmp_path: Path) -> None:
    # sellers_seen keeps the proofs of where a seller proved its key; if another node
    # answers there now, buy() must try the next candidate (here the license's
    # seller_api hint) instead of giving up with "not a seller".
    from dataclasses import replace

    from p2pdist._api import NodeApi
    from p2pdist._proof import IdentityProof, SignedProof
    from p2pdist.identity import key_to_text
    from p2pdist.library import Library
    from p2pdist.paid import buy

    album = tmp_path / "album"
    album.mkdir()
    (album / "a.flac").write_bytes(b"a" * 1000)
    home, fan_home = tmp_path / "ada", tmp_path / "fan"
    seller_api = NodeApi(ADA, "127.0.0.1", 0).start()
    stranger = NodeApi(_identity("stranger"), "127.0.0.1", 0).start()
    log = open_ledger(home, ADA.public_key)
    fan_log = open_ledger(fan_home, FAN.public_key)
    try:
        res = publish(home, ADA, album, title="Album", out=tmp_path / "album.torrent",
                      paid=PaidTerms(500, "EUR", 1500, (ADA.public_key,),
                                     f"127.0.0.1:{seller_api.port}"))
        shop = Shop(ADA, Library(home), log, home / VOUCHERS_NAME)
        seller_api.route("POST", "/purchase", lambda q, body: (200, shop.handle(body)))
        [code] = issue_vouchers(home, ADA, res.work, 1)
        seller_lib, fan_lib = Library(home), Library(fan_home)
        w = seller_lib.get(res.work)
        ep = f"127.0.0.1:{stranger.port}"
        proof = SignedProof.sign(IdentityProof(pk=ADA.public_key, asker=FAN.public_key,
                                               endpoint=ep, challenge=bytes(32)), ADA)
        fan_lib.add(replace(w, role="fetched", sellers_seen=(
            f"{key_to_text(ADA.public_key)}@{ep} {proof.to_bytes().hex()}",)),
            seller_lib.torrent(res.work))
        bought = buy(fan_lib, fan_log, FAN, res.work, method="voucher", payment=code)
        assert bought.seller == key_to_text(ADA.public_key)
    finally:
        seller_api.close()
        stranger.close()
        log.close()
        fan_log.close()
