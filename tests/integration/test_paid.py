"""Paid works over real nodes on 127.0.0.1: ciphertext travels freely, only a buyer
opens it, a voucher is spent once, and the fans who carried it are named in the sale."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from p2pdist.identity import load_identity, load_public_identity
from p2pdist.payouts.payments import PurchaseRequest, SignedPurchase
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._story import Seeder, digests

MiB = 1024 * 1024
MARKER = b"PLAINTEXT-MARKER-do-not-leak-7f3a"


@dataclass
class Shop:
    root: Path
    album: Path
    artist: Path
    pub: dict[str, Any]
    port: int
    api: int

    def home(self, name: str) -> Path:
        h = self.root / name
        if not (h / "identity.key").exists():
            run_cli(h, "init", "--name", name)
        return h

    def codes(self, n: int = 1) -> list[str]:
        doc = json.loads(run_cli(self.artist, "vouchers", "issue", self.pub["work"],
                                 "--count", str(n), "--json").stdout)
        codes: list[str] = doc["codes"]
        return codes

    def fetch(self, home: Path, dest: Path, *ports: int) -> dict[str, Any]:
        args = ["fetch", self.pub["torrent"], "--dest", str(dest), "--local", "--json",
                "--stall-timeout", "60"]
        for p in ports or (self.port,):
            args += ["--peer", f"127.0.0.1:{p}"]
        result: dict[str, Any] = json.loads(run_cli(home, *args).stdout)
        return result

    def buy(self, home: Path, code: str, *, api: int | None = None,
            check: bool = True) -> Any:
        return run_cli(home, "buy", self.pub["work"], "--voucher", code, "--seller",
                       f"127.0.0.1:{api or self.api}", "--json", check=check)


def _make_album(folder: Path) -> Path:
    folder.mkdir(parents=True)
    # A marker at the start and across a chunk boundary, so a leak would show.
    (folder / "01 Night.flac").write_bytes(MARKER + bytes(range(256)) * 8000 + MARKER)
    (folder / "02 Day.flac").write_bytes(b"\x00" * (65536 - 5) + MARKER + b"x" * 1000)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "one.txt").write_bytes(b"1")
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    root = tmp_path_factory.mktemp("paid")
    album = _make_album(root / "studio" / "Night Songs")
    artist = root / "ada"
    run_cli(artist, "init", "--name", "Ada")
    out = root / "night.torrent"
    pub = json.loads(run_cli(artist, "publish", str(album), "--title", "Night Songs",
                             "--price", "5.00", "--currency", "EUR",
                             "--redistributor-share", "1500", "--out", str(out),
                             "--json").stdout)
    port, api = free_port(), free_port()
    with Seeder(artist, port, "--api-listen", f"127.0.0.1:{api}"):
        yield Shop(root, album, artist, pub, port, api)


def _files_contain(folder: Path, needle: bytes) -> bool:
    return any(needle in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def _ledger_kinds(home: Path) -> list[str]:
    with sqlite3.connect(home / "ledger.sqlite") as db:
        return [r[0] for r in db.execute("SELECT kind FROM entries ORDER BY seq")]


def test_fan_who_has_not_paid_gets_ciphertext_and_can_reseed_but_not_unlock(shop: Shop) -> None:
    fan1, fan2 = shop.home("fan1"), shop.home("fan2")
    r1 = shop.fetch(fan1, shop.root / "fan1-music")
    assert r1["unlocked"] is None
    assert not _files_contain(shop.root / "fan1-music", MARKER)
    assert sorted(p.name for p in (shop.root / "fan1-music" / "Night Songs").iterdir()) == [
        "01 Night.flac.p2pe", "02 Day.flac.p2pe", "empty.txt.p2pe", "one.txt.p2pe"]
    # Fan 1 reseeds the ciphertext to fan 2, and earns receipts for it.
    port = free_port()
    with Seeder(fan1, port):
        r2 = shop.fetch(fan2, shop.root / "fan2-music", port)
    assert [p["pk"] for p in r2["peers"] if p["bytes"]] == [load_public_identity(fan1).key_text]
    assert digests(shop.root / "fan2-music") == digests(shop.root / "fan1-music")
    cp = run_cli(fan2, "unlock", shop.pub["work"], "--dest", str(shop.root / "fan2-plain"),
                 check=False)
    assert cp.returncode == 3
    assert "not licensed" in cp.stderr and "p2pdist buy" in cp.stderr
    assert not (shop.root / "fan2-plain").exists()


def test_buyer_unlocks_byte_identical_files_and_the_carrier_is_named(shop: Shop) -> None:
    fan1, fan3 = shop.home("fan1"), shop.home("fan3")
    if not (shop.root / "fan1-music").exists():
        shop.fetch(fan1, shop.root / "fan1-music")
    port = free_port()
    with Seeder(fan1, port):
        shop.fetch(fan3, shop.root / "fan3-music", port)
    [code] = shop.codes()
    bought = json.loads(shop.buy(fan3, code).stdout)
    assert bought["price"] == "5.00 EUR"
    assert bought["redistributor_bps"] == 1500
    # The sale names fan 1, who carried every byte to fan 3.
    assert bought["served_by"] == [{"pk": load_public_identity(fan1).key_text,
                                    "bytes": shop.pub["size"]}]
    run_cli(fan3, "unlock", shop.pub["work"], "--dest", str(shop.root / "fan3-plain"))
    assert digests(shop.root / "fan3-plain" / "Night Songs") == digests(shop.album)
    # Both sides keep the payment receipt in their ledgers, and both ledgers verify.
    assert "payment.received" in _ledger_kinds(fan3)
    assert "payment.issued" in _ledger_kinds(shop.artist)
    run_cli(fan3, "ledger", "verify")
    # A fetch of a work already bought unlocks by itself.
    again = shop.fetch(fan3, shop.root / "fan3-again")
    assert again["unlocked"] is not None
    got = digests(shop.root / "fan3-again" / "Night Songs")
    assert {k: v for k, v in got.items() if not k.endswith(".p2pe")} == digests(shop.album)


def test_a_grant_copied_to_another_home_unlocks_nothing(shop: Shop) -> None:
    buyer, thief = shop.home("buyer"), shop.home("thief")
    shop.fetch(buyer, shop.root / "buyer-music")
    [code] = shop.codes()
    shop.buy(buyer, code)
    shop.fetch(thief, shop.root / "thief-music")
    work = shop.pub["work"]
    shutil.copy(buyer / "library" / f"{work}.grant", thief / "library" / f"{work}.grant")
    cp = run_cli(thief, "unlock", work, "--dest", str(shop.root / "thief-plain"), check=False)
    assert cp.returncode == 3
    assert "not licensed" in cp.stderr
    assert not (shop.root / "thief-plain").exists()


def test_a_voucher_is_spent_once_even_by_concurrent_buyers(shop: Shop) -> None:
    homes = [shop.home(f"racer{i}") for i in range(4)]
    for h in homes:
        shop.fetch(h, shop.root / f"{h.name}-music")
    [code] = shop.codes()
    results: list[Any] = [None] * len(homes)

    def race(i: int) -> None:
        results[i] = shop.buy(homes[i], code, check=False)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(homes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1, 1, 1], [r.stderr for r in results]
    for r in results:
        if r.returncode:
            assert json.loads(r.stdout)["kind"] == "PurchaseRefused"
            assert json.loads(r.stdout)["reason"] == "redeemed"
            assert "already redeemed" in r.stderr
    # Used again by a loser: refused, nothing changes. By the winner (whose answer may
    # have been lost): the same payment again, not a second one.
    winner = homes[[r.returncode for r in results].index(0)]
    loser = homes[[r.returncode for r in results].index(1)]
    before = _ledger_kinds(shop.artist)
    assert shop.buy(loser, code, check=False).returncode == 1
    first = json.loads(results[homes.index(winner)].stdout)
    again = json.loads(shop.buy(winner, code).stdout)
    assert again["payment_ref"] == first["payment_ref"]
    assert _ledger_kinds(shop.artist) == before


@pytest.mark.parametrize("case", ["unknown", "typo", "other-work"])
def test_bad_codes_are_refused_and_change_nothing(shop: Shop, case: str) -> None:
    fan = shop.home(f"bad-{case}")
    shop.fetch(fan, shop.root / f"bad-{case}-music")
    [code] = shop.codes()
    if case == "unknown":
        code = "0000-0000-0000-0000-0"
    elif case == "typo":
        code = code[:-1] + ("X" if code[-1] != "X" else "Y")
    else:
        other = shop.root / "studio-other" / "Other"
        other.mkdir(parents=True)
        (other / "x.flac").write_bytes(b"other work")
        pub2 = json.loads(run_cli(shop.artist, "publish", str(other), "--title", "Other",
                                  "--price", "1", "--currency", "EUR", "--out",
                                  str(shop.root / "other.torrent"), "--json").stdout)
        code = json.loads(run_cli(shop.artist, "vouchers", "issue", pub2["work"],
                                  "--json").stdout)["codes"][0]
    before = _ledger_kinds(shop.artist)
    cp = shop.buy(fan, code, check=False)
    assert cp.returncode == 1, cp.stderr
    assert "Traceback" not in cp.stderr
    # A refusal is not signed: it never claims that nothing was charged, it says where
    # the code could go (sealed to the proven seller's key) and that a retry is safe.
    assert "nothing was charged" not in cp.stderr
    assert "sealed to this seller" in " ".join(cp.stderr.split())
    assert _ledger_kinds(shop.artist) == before
    assert not (fan / "library" / f"{shop.pub['work']}.grant").exists()


def test_a_node_that_is_not_a_named_seller_is_refused(shop: Shop) -> None:
    fan, mallory = shop.home("victim"), shop.home("mallory")
    shop.fetch(fan, shop.root / "victim-music")
    shop.fetch(mallory, shop.root / "mallory-music")
    port, api = free_port(), free_port()
    with Seeder(mallory, port, "--api-listen", f"127.0.0.1:{api}"):
        cp = shop.buy(fan, "0000-0000-0000-0000-0", api=api, check=False)
    assert cp.returncode == 3
    assert "not a seller named in this work's license" in cp.stderr
    assert "payment.received" not in _ledger_kinds(fan)


def test_a_replayed_purchase_request_is_refused(shop: Shop) -> None:
    from p2pdist._api import post

    fan = shop.home("replayer")
    shop.fetch(fan, shop.root / "replayer-music")
    [code] = shop.codes()
    ident = load_identity(fan, passphrase=PASSPHRASE)
    seller = load_public_identity(shop.artist).public_key
    req = PurchaseRequest.seal(work=bytes.fromhex(shop.pub["work"]), buyer=ident.public_key,
                               seller=seller, method="voucher", payment=code,
                               nonce=b"n" * 16, ts=datetime.now(UTC).replace(microsecond=0))
    body = SignedPurchase.sign(req, ident).to_bytes()
    status, doc = post("127.0.0.1", shop.api, "/purchase", body)
    assert status == 200 and doc["ok"]
    before = _ledger_kinds(shop.artist)
    status, doc = post("127.0.0.1", shop.api, "/purchase", body)
    assert (status, doc["reason"]) == (409, "replayed")
    # Addressed to another seller, or tampered: refused too, and nothing stored.
    other = SignedPurchase.sign(PurchaseRequest.seal(
        work=req.work, buyer=req.buyer, seller=ident.public_key, method="voucher",
        payment=code, nonce=b"m" * 16, ts=req.ts, receipts=()), ident).to_bytes()
    assert post("127.0.0.1", shop.api, "/purchase", other)[1]["reason"] == "wrong-seller"
    flipped = bytearray(body)
    flipped[-10] ^= 1
    assert post("127.0.0.1", shop.api, "/purchase", bytes(flipped))[0] in (400, 422)
    assert _ledger_kinds(shop.artist) == before


def test_buy_finds_the_seller_it_saw_prove_its_key_in_the_swarm(tmp_path: Path) -> None:
    album = _make_album(tmp_path / "studio" / "Quiet")
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    for h in (artist, fan):
        run_cli(h, "init", "--name", h.name)
    pub = json.loads(run_cli(artist, "publish", str(album), "--title", "Quiet", "--price",
                             "300", "--currency", "JPY", "--out", str(tmp_path / "q.torrent"),
                             "--json").stdout)
    code = json.loads(run_cli(artist, "vouchers", "issue", pub["work"], "--json").stdout)[
        "codes"][0]
    port = free_port()
    with Seeder(artist, port):  # its API on the default port, BitTorrent + 1
        run_cli(fan, "fetch", pub["torrent"], "--dest", str(tmp_path / "m"), "--local",
                "--peer", f"127.0.0.1:{port}")
        # No --seller and no hint in the license: the seller the fetch saw proven.
        bought = json.loads(run_cli(fan, "buy", pub["work"], "--voucher", code,
                                    "--json").stdout)
    assert bought["price"] == "300 JPY"
    assert bought["seller"] == load_public_identity(artist).key_text


def test_buy_without_a_known_seller_says_how_to_name_one(shop: Shop) -> None:
    fan = shop.home("lost")
    shop.fetch(fan, shop.root / "lost-music", shop.port)
    # The fetch saw the seller; forget it, as a fan whose copy came from elsewhere would.
    rec = fan / "library" / f"{shop.pub['work']}.json"
    doc = json.loads(rec.read_text())
    doc["sellers_seen"] = []
    rec.write_text(json.dumps(doc))
    cp = run_cli(fan, "buy", shop.pub["work"], "--voucher", "0000-0000-0000-0000-0",
                 check=False)
    assert cp.returncode == 1
    assert "no seller of this work is known" in cp.stderr and "--seller" in cp.stderr


def test_a_tampered_ciphertext_unlocks_nothing(shop: Shop) -> None:
    fan = shop.home("tamper")
    shop.fetch(fan, shop.root / "tamper-music")
    [code] = shop.codes()
    shop.buy(fan, code)
    victim = shop.root / "tamper-music" / "Night Songs" / "02 Day.flac.p2pe"
    data = bytearray(victim.read_bytes())
    data[66_000] ^= 0x01  # in the second chunk (the first is 65,552 bytes)
    victim.write_bytes(bytes(data))
    dest = shop.root / "tamper-plain"
    cp = run_cli(fan, "unlock", shop.pub["work"], "--dest", str(dest), check=False)
    assert cp.returncode == 3
    assert "does not authenticate" in cp.stderr
    assert not dest.exists() or not any(p.is_file() for p in dest.rglob("*"))


def test_a_seller_that_stopped_after_redeeming_still_answers_its_buyer(shop: Shop) -> None:
    # The voucher was taken but the seller died before it signed and recorded the sale:
    # the same buyer asking again gets its receipt and grant; nobody else does.
    from p2pdist.payouts.vouchers import VoucherBook

    fan, other = shop.home("unlucky"), shop.home("opportunist")
    shop.fetch(fan, shop.root / "unlucky-music")
    [code] = shop.codes()
    with VoucherBook(shop.artist / "vouchers.sqlite") as book:
        book.redeem(bytes.fromhex(shop.pub["work"]), code,
                    buyer=load_public_identity(fan).public_key, now=datetime.now(UTC))
    before = _ledger_kinds(shop.artist).count("payment.issued")
    assert shop.buy(other, code, check=False).returncode == 1
    bought = json.loads(shop.buy(fan, code).stdout)
    assert bought["payment_ref"].startswith("voucher:")
    assert _ledger_kinds(shop.artist).count("payment.issued") == before + 1
    run_cli(fan, "unlock", shop.pub["work"], "--dest", str(shop.root / "unlucky-plain"))
    assert digests(shop.root / "unlucky-plain" / "Night Songs") == digests(shop.album)


# -- issuance records and face values (issue 21) -------------------------------------------


def _payloads(home: Path, kind: str) -> list[bytes]:
    """The payloads of *kind* in the home's ledger, read as stored (the node may run)."""
    with sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        return [bytes(r[0]) for r in db.execute(
            "SELECT payload FROM entries WHERE kind = ? ORDER BY seq", (kind,))]


def _exported(home: Path, kind: str) -> list[bytes]:
    """The payloads of *kind* in the home's `receipts export` bundle, verified."""
    from p2pdist.payouts.ledger import verify_bundle

    out = home.parent / f"{home.name}-{len(list(home.parent.glob('*.p2pb')))}.p2pb"
    run_cli(home, "receipts", "export", "--out", str(out))
    return [e.payload for e in verify_bundle(out.read_bytes()).entries if e.kind == kind]


def _issued(shop: Shop) -> int:
    return len(json.loads(run_cli(shop.artist, "vouchers", "list", shop.pub["work"],
                                  "--json").stdout))


def test_vouchers_issue_signs_one_issuance_record_committing_to_exactly_its_codes(
        shop: Shop) -> None:
    from p2pdist.payouts.issuance import MerkleProof, SignedIssuance, merkle_levels, merkle_proof
    from p2pdist.payouts.vouchers import code_hash

    before = _exported(shop.artist, "voucher.issuance")
    csv_path = shop.root / "three-codes.csv"
    doc = json.loads(run_cli(shop.artist, "vouchers", "issue", shop.pub["work"], "--count",
                             "3", "--out", str(csv_path), "--json").stdout)
    assert (doc["face"], doc["face_minor"], doc["currency"]) == ("5.00 EUR", 500, "EUR")
    after = _exported(shop.artist, "voucher.issuance")
    assert after[:len(before)] == before
    [raw] = after[len(before):]  # one record for the batch
    signed = SignedIssuance.from_bytes(raw)
    signed.verify()
    record = signed.issuance
    assert record.collector == load_public_identity(shop.artist).public_key
    assert record.work == bytes.fromhex(shop.pub["work"])
    assert (record.count, record.face, record.currency) == (3, 500, "EUR")
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:]]
    assert len(rows) == 3 and [r[0] for r in rows] == doc["codes"]
    hashes = sorted(code_hash(r[0]) for r in rows)
    levels = merkle_levels(hashes)
    assert levels[-1][0] == record.root  # the root commits to exactly these codes
    for i, h in enumerate(hashes):
        assert MerkleProof(i, merkle_proof(levels, i)).root_of(h, 3) == record.root
    # The same bytes are in the seller's own ledger, as stored.
    assert raw in _payloads(shop.artist, "voucher.issuance")


def test_a_free_code_unlocks_the_work_and_its_sale_books_zero(shop: Shop) -> None:
    from p2pdist.payouts.payments import SignedPayment, check_issued

    doc = json.loads(run_cli(shop.artist, "vouchers", "issue", shop.pub["work"], "--free",
                             "--json").stdout)
    assert (doc["face"], doc["face_minor"]) == ("0.00 EUR", 0)
    [code] = doc["codes"]
    fan = shop.home("press")
    shop.fetch(fan, shop.root / "press-music")
    bought = json.loads(shop.buy(fan, code).stdout)
    assert bought["price"] == "0.00 EUR"
    run_cli(fan, "unlock", shop.pub["work"], "--dest", str(shop.root / "press-plain"))
    assert digests(shop.root / "press-plain" / "Night Songs") == digests(shop.album)
    [raw] = _payloads(fan, "payment.received")
    sale = SignedPayment.from_bytes(raw).payment
    assert (sale.amount, sale.currency) == (0, "EUR")
    assert sale.issuance.issuance.face == 0
    assert check_issued(sale) is None
    assert raw in _payloads(shop.artist, "payment.issued")


def test_a_face_value_below_the_price_is_signed_and_shown(shop: Shop) -> None:
    from p2pdist.payouts.issuance import SignedIssuance

    cp = run_cli(shop.artist, "vouchers", "issue", shop.pub["work"], "--face", "3.5")
    assert "each sold for 3.50 EUR" in cp.stdout + cp.stderr
    record = SignedIssuance.from_bytes(_payloads(shop.artist, "voucher.issuance")[-1])
    assert (record.issuance.face, record.issuance.count) == (350, 1)
    doc = json.loads(run_cli(shop.artist, "vouchers", "issue", shop.pub["work"], "--face",
                             "0.00", "--json").stdout)
    assert doc["face_minor"] == 0
    doc = json.loads(run_cli(shop.artist, "vouchers", "issue", shop.pub["work"], "--face",
                             "5", "--json").stdout)
    assert doc["face_minor"] == 500


@pytest.mark.parametrize("args,words", [
    pytest.param(["--face", "5.01"], "0 to the price, 5.00 EUR", id="over-the-price"),
    pytest.param(["--face", "9999999999999999"], "0 to the price", id="over-any-price"),
    pytest.param(["--face", "0.001"], "decimals", id="too-many-decimals"),
    pytest.param(["--face", "-1"], "not a price", id="negative"),
    pytest.param(["--face", "5,00"], "not a price", id="comma"),
    pytest.param(["--face", "1e2"], "not a price", id="exponent"),
    pytest.param(["--face", ""], "not a price", id="empty"),
    pytest.param(["--free", "--face", "1"], "--free and --face", id="free-and-face"),
])
def test_a_bad_face_value_is_a_clear_error_and_issues_nothing(
        shop: Shop, args: list[str], words: str) -> None:
    count, records = _issued(shop), len(_payloads(shop.artist, "voucher.issuance"))
    cp = run_cli(shop.artist, "vouchers", "issue", shop.pub["work"], "--count", "2", *args,
                 check=False)
    assert cp.returncode == 1, cp.stderr
    assert words in " ".join(cp.stderr.split())
    assert "Traceback" not in cp.stderr
    assert not any(c.isalnum() for c in cp.stdout)  # no code was printed
    assert _issued(shop) == count
    assert len(_payloads(shop.artist, "voucher.issuance")) == records


def test_a_code_issued_before_issuance_records_is_refused_and_stays_unspent(
        shop: Shop) -> None:
    # A code an older p2pdist issued (no record, no proof) cannot be booked as a sale:
    # the seller refuses it before redeeming it, and says to issue new codes.
    from p2pdist.payouts.vouchers import VoucherBook

    work = bytes.fromhex(shop.pub["work"])
    with VoucherBook(shop.artist / "vouchers.sqlite") as book:
        [code] = book.issue(work, 1, now=datetime.now(UTC))  # without sign=: no record
    fan = shop.home("old-code")
    shop.fetch(fan, shop.root / "old-code-music")
    before = _ledger_kinds(shop.artist)
    cp = shop.buy(fan, code, check=False)
    assert cp.returncode == 1, cp.stderr
    assert "issuance record" in " ".join(cp.stderr.split())
    assert "Traceback" not in cp.stderr
    with VoucherBook(shop.artist / "vouchers.sqlite") as book:
        row = book.find(code)
    assert row is not None and row.redeemed is None
    assert _ledger_kinds(shop.artist) == before
    assert not (fan / "library" / f"{shop.pub['work']}.grant").exists()


def test_a_batch_that_fails_leaves_no_issuance_record_in_the_ledger(shop: Shop) -> None:
    # The CSV cannot be written (its folder is a file): nothing is issued, and the
    # seller's append-only ledger must not keep a signed record of codes that never were.
    count, records = _issued(shop), len(_payloads(shop.artist, "voucher.issuance"))
    blocked = shop.root / "a-file"
    blocked.write_text("not a folder")
    cp = run_cli(shop.artist, "vouchers", "issue", shop.pub["work"], "--count", "2",
                 "--out", str(blocked / "codes.csv"), check=False)
    assert cp.returncode == 1, cp.stderr
    assert "Traceback" not in cp.stderr
    assert _issued(shop) == count
    assert len(_payloads(shop.artist, "voucher.issuance")) == records
