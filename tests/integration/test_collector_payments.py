"""Payment receipts reach the work's collector (issue 21, item 4), over real nodes on
127.0.0.1: the buyer's node sends the seller-signed sale to the collector the license
names, which keeps it (``payment.collected``) beside the seller's own bundle, so a sale
the seller leaves out of its export can still be seen. The attacks are what a modified
client sends: hand-made HTTP, our own classes signing with the attacker's keys."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist import _canonical
from p2pdist._api import ApiError
from p2pdist._credit import PAYMENT_COLLECTED, Credit, LedgerLog
from p2pdist.identity import Identity, load_identity, load_public_identity
from p2pdist.licensing import License, verify_info
from p2pdist.payouts.ledger import verify_bundle
from p2pdist.payouts.payments import MAX_PAYMENT_SIZE, PAYMENT_DOMAIN, SignedPayment
from p2pdist.swarm import info_section
from tests._sales import Batch, request
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._rawhttp import exchange
from tests.integration._story import Seeder, make_album

KiB = 1024


@dataclass
class World:
    root: Path
    artist: Path
    label: Path  # the collector of Night, with Night (and Day) in its library
    label2: Path  # the collector of Day, down unless a test starts it
    night: dict[str, Any]
    day: dict[str, Any]
    port: int  # the artist's BitTorrent port
    api: int  # the artist's node API (it sells)
    label_api: int
    label2_api: int

    def home(self, name: str) -> Path:
        h = self.root / name
        if not (h / "identity.key").exists():
            run_cli(h, "init", "--name", name)
        return h

    def code(self, work: dict[str, Any]) -> str:
        doc = json.loads(run_cli(self.artist, "vouchers", "issue", work["work"], "--count",
                                 "1", "--json").stdout)
        code: str = doc["codes"][0]
        return code

    def fetch(self, home: Path, work: dict[str, Any]) -> None:
        run_cli(home, "fetch", work["torrent"], "--dest", str(self.root / f"{home.name}-files"),
                "--local", "--json", "--stall-timeout", "60", "--peer",
                f"127.0.0.1:{self.port}")

    def buy(self, home: Path, work: dict[str, Any], *args: str,
            check: bool = True) -> Any:
        return run_cli(home, "buy", work["work"], "--voucher", self.code(work), "--seller",
                       f"127.0.0.1:{self.api}", *args, check=check)

    def label_node(self) -> Seeder:
        return Seeder(self.label, free_port(), "--api-listen", f"127.0.0.1:{self.label_api}")


def _publish(home: Path, album: Path, title: str, *args: str) -> dict[str, Any]:
    out = home.parent / f"{title}.torrent"
    doc: dict[str, Any] = json.loads(run_cli(
        home, "publish", str(album), "--title", title, "--price", "5.00", "--currency",
        "EUR", "--redistributor-share", "1500", "--out", str(out), "--json", *args).stdout)
    return doc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("collect")
    artist, label, label2 = root / "ada", root / "label", root / "label2"
    for h in (artist, label, label2):
        run_cli(h, "init", "--name", h.name)
    label_api, label2_api = free_port(), free_port()
    night = _publish(artist, make_album(root / "studio" / "Night", [300 * KiB + 7]), "Night",
                     "--collector", f"{load_public_identity(label).key_text}"
                     f"@127.0.0.1:{label_api}")
    day = _publish(artist, make_album(root / "studio" / "Day", [200 * KiB + 3], seed=8),
                   "Day", "--collector", f"{load_public_identity(label2).key_text}"
                   f"@127.0.0.1:{label2_api}")
    port, api = free_port(), free_port()
    with Seeder(artist, port, "--api-listen", f"127.0.0.1:{api}"):
        w = World(root, artist, label, label2, night, day, port, api, label_api, label2_api)
        # A collector holds the license of each work it collects for: it fetches it like
        # any fan (the ciphertext). The label also holds Day, whose collector is label2.
        w.fetch(label, night)
        run_cli(label, "fetch", day["torrent"], "--dest", str(root / "label-day"), "--local",
                "--json", "--stall-timeout", "60", "--peer", f"127.0.0.1:{port}")
        w.fetch(label2, day)
        yield w


@pytest.fixture(scope="module")
def label_up(world: World) -> Iterator[World]:
    with world.label_node():
        yield world


@pytest.fixture(scope="module")
def template(world: World) -> bytes:
    """An honest sale of Night: the bytes of the payment receipt its buyer holds, for
    the attacker to start from."""
    fan = world.home("fan0")
    world.fetch(fan, world.night)
    world.buy(fan, world.night, "--json")  # its collector may be up or down
    [raw] = _held(fan, "payment.received")
    return raw


def _held(home: Path, kind: str) -> list[bytes]:
    """The payloads of *kind* in the home's ledger, read as they are stored (the node may
    be running: a plain read of the SQLite file)."""
    with sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        return [bytes(r[0]) for r in db.execute(
            "SELECT payload FROM entries WHERE kind = ? ORDER BY seq", (kind,))]


def _exported(home: Path, kind: str) -> list[bytes]:
    """The payloads of *kind* in the home's `receipts export` bundle, verified."""
    out = home.parent / f"{home.name}-{os.urandom(4).hex()}.p2pb"
    run_cli(home, "receipts", "export", "--out", str(out))
    bundle = verify_bundle(out.read_bytes())
    return [e.payload for e in bundle.entries if e.kind == kind]


def _post(port: int, body: bytes, path: str = "/payments") -> Any:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
            f"application/octet-stream\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return exchange(port, head + body)


def _mallory(world: World) -> Identity:
    return load_identity(world.home("mallory"), passphrase=PASSPHRASE)


# -- the honest flow ---------------------------------------------------------------------


def test_honest_buy_puts_the_payment_receipt_in_the_collectors_ledger(label_up: World) -> None:
    w = label_up
    fan = w.home("fan1")
    w.fetch(fan, w.night)
    before = _held(w.label, PAYMENT_COLLECTED)
    cp = w.buy(fan, w.night, "--json")
    doc = json.loads(cp.stdout)
    assert doc["collector"] == "sent", doc
    [held] = _exported(fan, "payment.received")
    collected = _exported(w.label, PAYMENT_COLLECTED)
    # The collector's own bundle holds the exact bytes the buyer holds, once.
    assert collected.count(held) == 1
    assert len(collected) == len(before) + 1
    sale = SignedPayment.from_bytes(held).payment
    assert sale.buyer == load_public_identity(fan).public_key
    assert sale.seller == load_public_identity(w.artist).public_key
    run_cli(w.label, "ledger", "verify")


def test_a_buy_while_the_collector_is_down_succeeds_and_send_payments_delivers_it_later(
        world: World) -> None:
    w = world
    fan = w.home("fan2")
    w.fetch(fan, w.day)
    # Day's collector (label2) is not running: the purchase is complete all the same.
    cp = w.buy(fan, w.day)
    assert "Bought" in cp.stdout
    assert "did not reach the work's collector" in cp.stderr
    assert "p2pdist receipts send-payments" in cp.stderr
    [held] = _held(fan, "payment.received")
    run_cli(fan, "unlock", w.day["work"], "--dest", str(w.root / "fan2-plain"))
    # Still down: the resend says so and exits 1; nothing is lost on the buyer's side.
    cp = run_cli(fan, "receipts", "send-payments", "--json", check=False)
    assert cp.returncode == 1, cp.stderr
    doc = json.loads(cp.stdout)
    assert [r["status"] for r in doc["payments"]] == ["unreachable"]
    assert doc["undelivered"] == 1
    assert _held(fan, "payment.received") == [held]
    with Seeder(w.label2, free_port(), "--api-listen", f"127.0.0.1:{w.label2_api}"):
        cp = run_cli(fan, "receipts", "send-payments", "--json")
        doc = json.loads(cp.stdout)
        assert [(r["status"], r["note"]) for r in doc["payments"]] == [("sent", "kept")]
        # Sent again: the collector answers that it holds it, and keeps it once.
        doc = json.loads(run_cli(fan, "receipts", "send-payments", "--json").stdout)
        assert [(r["status"], r["note"]) for r in doc["payments"]] == [
            ("sent", "already kept")]
    assert _exported(w.label2, PAYMENT_COLLECTED) == [held]


# -- attacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["own-key", "names-the-seller"])
def test_payment_receipt_signed_by_a_non_seller_key_is_refused_and_not_kept(
        label_up: World, template: bytes, how: str) -> None:
    """Mallory books a sale of Night at its collector: a copy of an honest sale with a
    fresh nonce, signed with its own key, naming itself (own-key) or the artist
    (names-the-seller) as the seller."""
    w = label_up
    mallory = _mallory(w)
    honest = SignedPayment.from_bytes(template).payment
    if how == "own-key":  # Mallory's own codes of Night, sold by Mallory to Mallory
        body = Batch(mallory, honest.work).sell(mallory).to_bytes()
    else:  # the artist's name and code on it, Mallory's signature under it
        req = request(mallory, honest.seller, honest.work)
        forged = dataclasses.replace(honest, buyer=mallory.public_key, nonce=req.request.nonce,
                                     request=req)
        raw = _canonical.encode(forged.to_dict())
        body = SignedPayment(raw, forged, mallory.sign(domain=PAYMENT_DOMAIN,
                                                       message=raw)).to_bytes()
    before = _held(w.label, PAYMENT_COLLECTED)
    a = _post(w.label_api, body)
    assert a.status == (403 if how == "own-key" else 422), a.doc
    assert a.doc["reason"] == ("not-a-seller" if how == "own-key" else "bad-signature")
    assert _held(w.label, PAYMENT_COLLECTED) == before


def test_payment_receipt_for_a_work_that_does_not_name_this_collector_is_refused(
        label_up: World) -> None:
    """Two sales that are real and signed by their work's seller, sent to a node that is
    not their collector: one of Day (the label holds it; label2 collects it), one of
    Mallory's own work (the label does not hold it)."""
    w = label_up
    fan = w.home("fan3")
    w.fetch(fan, w.day)
    w.buy(fan, w.day, "--json")  # Day's collector is down: the sale is the fan's alone
    [day_sale] = _held(fan, "payment.received")
    mallory = _mallory(w)
    own = _publish(w.home("mallory"), make_album(w.root / "studio" / "Copy", [1000], seed=9),
                   "Copy")
    own_sale = Batch(mallory, bytes.fromhex(own["work"])).sell(mallory).to_bytes()
    before = _held(w.label, PAYMENT_COLLECTED)
    a = _post(w.label_api, day_sale)
    assert (a.status, a.doc["reason"]) == (403, "not-collector"), a.doc
    a = _post(w.label_api, own_sale)
    assert (a.status, a.doc["reason"]) == (404, "unknown-work"), a.doc
    assert _held(w.label, PAYMENT_COLLECTED) == before


@pytest.mark.parametrize("size", [MAX_PAYMENT_SIZE + 1, 64 * KiB + 1])
def test_an_oversized_payment_body_is_refused(label_up: World, template: bytes,
                                              size: int) -> None:
    """An honest sale padded past the bound (inside and past the API's 64 KiB body)."""
    w = label_up
    before = _held(w.label, PAYMENT_COLLECTED)
    a = _post(w.label_api, template + b"\0" * (size - len(template)))
    assert (a.status, a.doc["reason"]) == (413, "oversized"), a.doc
    a = _post(w.label_api, b"not a payment receipt")
    assert (a.status, a.doc["reason"]) == (400, "malformed"), a.doc
    assert _held(w.label, PAYMENT_COLLECTED) == before


def test_a_replayed_payment_receipt_is_kept_once(label_up: World, template: bytes) -> None:
    w = label_up
    answers = [_post(w.label_api, template) for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5
    kept = _held(w.label, PAYMENT_COLLECTED)
    assert kept.count(template) == 1
    assert sum(1 for a in answers if a.doc["already"] is False) <= 1  # the first, if not sent
    assert all(a.doc["kept_as"] == "collected" for a in answers)


def test_a_seller_flooding_its_collector_gets_the_new_buyer_budget_of_a_network(
        world: World, template: bytes, tmp_path: Path) -> None:
    """The named seller signs sales to made-up buyers and sends them from one /24: the
    collector keeps 32 new buyers an hour from that network (429 beyond), and an honest
    buyer of another network is still kept. In-process, on a real ledger."""
    label = load_identity(world.label, passphrase=PASSPHRASE)
    artist = load_identity(world.artist, passphrase=PASSPHRASE)
    lic: License = verify_info(info_section(Path(world.night["torrent"]).read_bytes()))
    log = LedgerLog(tmp_path / "ledger.sqlite", label.public_key)
    credit = Credit(label, log, work_size=lambda work: None, license_of=lambda work: lic)
    honest = SignedPayment.from_bytes(template).payment
    batch = Batch(artist, honest.work, honest.amount, honest.currency, count=34)
    statuses = []
    for i in range(34):
        buyer = Identity(f"made-up {i}", nacl.signing.SigningKey(os.urandom(32)))
        try:
            credit.collect_payment(batch.sell(buyer).to_bytes(),
                                   source=f"10.9.9.{i % 200}")
            statuses.append(200)
        except ApiError as e:
            statuses.append(e.status)
    assert statuses == [200] * 32 + [429, 429]
    assert credit.collect_payment(template, source="10.9.10.1")["already"] is False
    assert len(log.payloads(PAYMENT_COLLECTED)) == 33
    # Kept across a restart: the same sale again is "already kept".
    again = Credit(label, log, work_size=lambda work: None, license_of=lambda work: lic)
    again.load()
    assert again.collect_payment(template, source="10.9.9.1")["already"] is True
    log.close()
