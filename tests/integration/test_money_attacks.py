"""Issue 21's attack table end to end, with real p2pdist processes on 127.0.0.1.

The world (one per module): an artist sells Night (5.00 EUR, 15 % to the carriers) with
the label as the license's collector, and seeds it; an honest fan F fetches it and seeds
it; four honest buyers fetch it from F alone (F carries their bytes and holds their
receipts) and `buy` it with codes the artist issued; the artist also seeds a CC work,
Song. Each attack is forged the way a modified client would: hand-made purchase requests
POSTed to the artist's real API, and our own classes signing with the attacker's keys
only (a seller's forgery is its own key signing into its own ledger). Each test ends
with `receipts export` of the nodes involved, then `p2pdist audit --json` and
`p2pdist payouts --json` on the label's home, and asserts from what they wrote:

- the attackers' money out is at most their money in (the settlement's nets);
- each honest party is owed what it was before the attack, plus what the honest part of
  the test adds (or within the bound tests/unit/test_money_attacks.py states);
- a finding names the culprit (where the unit test expects one).

The unit-level rows with the arithmetic spelt out are tests/unit/test_money_attacks.py.
Row 10's last step: a decided copy's publisher, seeding its copy, earns no carriers'
share of it (that share goes to the original's holders).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist._api import post
from p2pdist.identity import Identity, key_to_text, load_identity, load_public_identity
from p2pdist.payouts.issuance import ISSUANCE_KIND
from p2pdist.payouts.ledger import Ledger
from p2pdist.payouts.payments import PurchaseRequest, SignedPayment, SignedPurchase
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt, served_record
from p2pdist.payouts.statement import SignedStatement, Statement, verify_statement
from tests._sales import Batch, request, sign_payment
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._story import Seeder, make_album

pytestmark = pytest.mark.slow  # about 75 s alone, 150 s in a loaded run: make test-all

KiB = 1024
PRICE = 500
CUT = PRICE * 1500 // 10_000  # the carriers' share of one sale: 75 cents
POOL = 10_000  # `payouts --pool 100.00 EUR`


def _parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls (CLI subprocesses, mostly) at once; re-raise the first failure."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return results


def _copy_home(src: Path, dst: Path) -> None:
    """A copy of a home whose node is running: the files, and each SQLite database
    through SQLite's backup (a consistent snapshot, its WAL included)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.sqlite*", "*.lock"))
    for db in src.glob("*.sqlite"):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as a, \
                sqlite3.connect(dst / db.name) as b:
            a.backup(b)


def _held(home: Path, kind: str) -> list[bytes]:
    with sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        return [bytes(r[0]) for r in db.execute(
            "SELECT payload FROM entries WHERE kind = ? ORDER BY seq", (kind,))]


def _append(home: Path, node: bytes, *items: tuple[str, bytes]) -> None:
    """What a modified client writes into its own ledger, through the ledger API."""
    with Ledger(home / "ledger.sqlite", node=node) as led:
        led.append_many(items)


def _key() -> Identity:
    """A throwaway attacker key that never had a home."""
    return Identity("attacker", nacl.signing.SigningKey(os.urandom(32)))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _receipt(work: bytes, up: bytes, down: Identity, size: int) -> bytes:
    """A transfer receipt *down* signs: *up* sent it the whole work."""
    return SignedReceipt.sign(TransferReceipt(work, up, down.public_key, 1, size, _now()),
                              down).to_bytes()


@dataclass
class Settlement:
    """What `audit --json` and `payouts --json` said about the bundles (the settlement's
    parties: what each collected, is owed, and the net), and the signed statement that
    `payouts` wrote beside its output."""

    audit: dict[str, Any]
    payouts: dict[str, Any]
    statement: Statement

    def findings(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.audit["findings"] if kind is None or f["kind"] == kind]

    def owed(self, key: bytes) -> int:
        """What the payouts JSON says the label owes *key* (its lines, EUR)."""
        text = key_to_text(key)
        return sum(ln["amount"] for ln in self.payouts["statement"]["lines"]
                   if ln["payee"] == text)

    def role(self, key: bytes, role: str) -> int:
        text = key_to_text(key)
        return sum(ln["amount"] for ln in self.payouts["statement"]["lines"]
                   if ln["payee"] == text and ln["role"] == role)

    def parties(self) -> list[dict[str, Any]]:
        parties: list[dict[str, Any]] = self.payouts["statement"]["parties"]
        return parties

    def collected(self, key: bytes) -> int:
        text = key_to_text(key)
        return sum(p["collected"] for p in self.parties() if p["party"] == text)

    def net(self, keys: Sequence[bytes]) -> int:
        texts = {key_to_text(k) for k in keys}
        return sum(p["net"] for p in self.parties() if p["party"] in texts)

    def money_in(self) -> int:
        return sum(t["in"] for t in self.payouts["statement"]["totals"])


def _new(before: Settlement, after: Settlement) -> list[dict[str, Any]]:
    """The findings of *after* that *before* did not have (by kind and sentence: the
    evidence says where an entry sits, `{bundle: index}`, which moves when a test hands
    the label another bundle list)."""
    old = {(f["kind"], f["message"]) for f in before.findings()}
    return [f for f in after.findings() if (f["kind"], f["message"]) not in old]


@dataclass
class World:
    root: Path
    artist: Path
    label: Path
    fan: Path  # F, the honest carrier
    accomplice: Path
    night: dict[str, Any]
    song: dict[str, Any]
    artist_api: int
    fan_port: int
    artist_port: int
    buyers: list[Path] = field(default_factory=list)
    torrents: list[Path] = field(default_factory=list)
    bundles: dict[str, Path] = field(default_factory=dict)  # home name -> latest export
    dirty: set[Path] = field(default_factory=set)
    last: Settlement | None = None
    n: int = 0

    @property
    def work(self) -> bytes:
        return bytes.fromhex(self.night["work"])

    @property
    def size(self) -> int:
        return int(self.night["size"])

    def key(self, home: Path) -> bytes:
        return load_public_identity(home).public_key

    def ident(self, home: Path) -> Identity:
        return load_identity(home, passphrase=PASSPHRASE)

    def home(self, name: str) -> Path:
        h = self.root / name
        if not (h / "identity.key").exists():
            run_cli(h, "init", "--name", name)
        return h

    def fetch(self, home: Path, port: int, torrent: str | None = None) -> None:
        run_cli(home, "fetch", torrent or self.night["torrent"], "--dest",
                str(self.root / f"{home.name}-files-{port}"), "--local", "--json",
                "--stall-timeout", "60", "--peer", f"127.0.0.1:{port}")

    def codes(self, n: int = 1) -> list[str]:
        doc = json.loads(run_cli(self.artist, "vouchers", "issue", self.night["work"],
                                 "--count", str(n), "--json").stdout)
        codes: list[str] = doc["codes"]
        return codes

    def gift_codes(self, n: int) -> list[str]:
        """Gift and press codes: `vouchers issue --free` (face value 0)."""
        doc = json.loads(run_cli(self.artist, "vouchers", "issue", self.night["work"],
                                 "--count", str(n), "--free", "--json").stdout)
        codes: list[str] = doc["codes"]
        return codes

    def buy(self, home: Path, code: str, api: int | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(run_cli(
            home, "buy", self.night["work"], "--voucher", code, "--seller",
            f"127.0.0.1:{api or self.artist_api}", "--json").stdout)
        return doc

    def purchase(self, buyer: Identity, code: str, receipts: Sequence[bytes] = (), *,
                 api: int | None = None, nonce: bytes | None = None) -> SignedPayment:
        """A hand-made purchase request POSTed to a seller's real API, signed with the
        buyer's own key; the seller's signed payment receipt it answers with."""
        req = PurchaseRequest.seal(work=self.work, buyer=buyer.public_key,
                                   seller=self.key(self.artist), method="voucher",
                                   payment=code, nonce=nonce or os.urandom(16), ts=_now(),
                                   receipts=tuple(receipts))
        status, doc = post("127.0.0.1", api or self.artist_api, "/purchase",
                           SignedPurchase.sign(req, buyer).to_bytes())
        assert status == 200 and doc["ok"], doc
        return SignedPayment.from_bytes(bytes.fromhex(doc["payment"]))

    def export(self, home: Path, *, keep: bool = True) -> Path:
        """`receipts export` of *home*; with *keep*, its bundle from now on."""
        self.n += 1
        out = self.root / "bundles" / f"{home.name}-{self.n}.p2pb"
        out.parent.mkdir(exist_ok=True)
        run_cli(home, "receipts", "export", "--out", str(out))
        if keep:
            self.bundles[home.name] = out
        return out

    def touch(self, *homes: Path) -> None:
        """These homes' ledgers changed: export them again before the next audit."""
        self.dirty.update(homes)
        self.last = None

    def settle(self, *, instead: dict[str, Path] | None = None) -> Settlement:
        """`receipts export` of every home whose ledger changed, then the label's
        `audit --json` and `payouts --json` over every node's latest bundle (*instead*:
        these homes' bundles replaced by the given files, for this audit only)."""
        if self.last is not None and not instead:
            return self.last
        _parallel(*(lambda h=h: self.export(h) for h in sorted(self.dirty)))
        self.dirty.clear()
        bundles = [str(p) for p in {**self.bundles, **(instead or {})}.values()]
        works = [a for t in self.torrents for a in ("--works", str(t))]
        self.n += 1
        out = self.root / "statements" / f"statement-{self.n}.json"
        out.parent.mkdir(exist_ok=True)
        a, p = _parallel(
            lambda: run_cli(self.label, "audit", *bundles, *works, "--json"),
            lambda: run_cli(self.label, "payouts", *bundles, *works, "--out", str(out),
                            "--pool", "100.00", "EUR", "--json"))
        paid = json.loads(p.stdout)
        assert paid["sums_exactly"] is True
        signed = SignedStatement.from_bytes(Path(paid["signed"]).read_bytes())
        verify_statement(signed, label=self.key(self.label))
        st = signed.statement
        assert st.sums_exactly
        assert sum(x.net for x in st.parties) == 0  # double entry: the nets sum to zero
        s = Settlement(json.loads(a.stdout), paid, st)
        assert sum(p["net"] for p in s.parties()) == 0
        # The JSON's settlement is the signed one's.
        assert sorted((p["party"], p["collected"], p["owed"]) for p in s.parties()) == \
            sorted((key_to_text(x.party), x.collected, x.owed) for x in st.parties)
        # The audit's findings are the ones the statement was computed with.
        assert paid["findings"] == len(s.findings())
        if not instead:
            self.last = s
        return s

    def honest(self) -> list[bytes]:
        return [self.key(h) for h in (self.artist, self.fan, self.label)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("money")
    names = ["ada", "label", "fan", "accomplice", *(f"buyer{i}" for i in range(4))]
    _parallel(*(lambda n=n: run_cli(root / n, "init", "--name", n) for n in names))
    artist, label, fan, accomplice = (root / n for n in names[:4])
    label_api, artist_port, artist_api, fan_port = (free_port() for _ in range(4))
    night = json.loads(run_cli(
        artist, "publish", str(make_album(root / "studio" / "Night", [300 * KiB + 7])),
        "--title", "Night", "--price", "5.00", "--currency", "EUR",
        "--redistributor-share", "1500", "--collector",
        f"{load_public_identity(label).key_text}@127.0.0.1:{label_api}",
        "--out", str(root / "night.torrent"), "--json").stdout)
    song_files = make_album(root / "studio" / "Song", [200 * KiB + 3], seed=11)
    song = json.loads(run_cli(artist, "publish", str(song_files), "--title", "Song",
                              "--license", "CC-BY-4.0", "--out", str(root / "song.torrent"),
                              "--json").stdout)
    with Seeder(artist, artist_port, "--api-listen", f"127.0.0.1:{artist_api}"):
        w = World(root, artist, label, fan, accomplice, night, song, artist_api, fan_port,
                  artist_port, torrents=[root / "night.torrent", root / "song.torrent"])
        # The label, as Night's collector, holds its license (it fetches it like a fan).
        _parallel(lambda: w.fetch(label, artist_port), lambda: w.fetch(fan, artist_port))
        with Seeder(label, free_port(), "--api-listen", f"127.0.0.1:{label_api}"), \
                Seeder(fan, fan_port):
            w.buyers = [root / f"buyer{i}" for i in range(4)]
            _parallel(*(lambda b=b: w.fetch(b, fan_port) for b in w.buyers))
            codes = w.codes(4)
            bought = _parallel(*(lambda b=b, c=c: w.buy(b, c)
                                 for b, c in zip(w.buyers, codes, strict=True)))
            for doc in bought:
                assert doc["served_by"] == [{"pk": load_public_identity(fan).key_text,
                                             "bytes": w.size}], doc
                assert doc["collector"] == "sent", doc
            w.touch(artist, label, fan, accomplice, *w.buyers)
            yield w


@pytest.fixture(scope="module")
def baseline(world: World) -> Settlement:
    """The honest world: four sales carried by F, nothing else."""
    s = world.settle()
    assert s.findings() == [], s.findings()
    assert s.owed(world.key(world.fan)) == 4 * CUT
    assert s.owed(world.key(world.artist)) == 4 * (PRICE - CUT)
    assert s.collected(world.key(world.artist)) == 4 * PRICE
    assert s.money_in() == 4 * PRICE
    return s


def _unchanged(before: Settlement, after: Settlement, world: World,
               more: dict[bytes, int] | None = None) -> None:
    """Each honest party is owed what it was, plus what the test's honest part adds."""
    for k in world.honest():
        assert after.owed(k) == before.owed(k) + (more or {}).get(k, 0), key_to_text(k)


# -- the rows ------------------------------------------------------------------------------


def test_gift_codes_naming_an_accomplice_as_carrier_take_nothing(
        world: World, baseline: Settlement) -> None:
    """Row 1: three attacker buyer keys redeem free press codes at the artist's node, each
    with a hand-made request whose receipt credits the accomplice with the whole work;
    the accomplice's own ledger says it served them (its word, in its own chain)."""
    before = world.settle()
    acc = world.ident(world.accomplice)
    fakes = [_key() for _ in range(3)]
    for m, code in zip(fakes, world.gift_codes(3), strict=True):
        r = _receipt(world.work, acc.public_key, m, world.size)
        _append(world.accomplice, acc.public_key,
                ("upload.served", served_record(world.work, m.public_key, world.size)),
                ("receipt.received", r))
        sale = world.purchase(m, code, [r]).payment
        assert (sale.amount, sale.issuance.issuance.face) == (0, 0)
    world.touch(world.artist, world.accomplice)
    after = world.settle()
    assert after.owed(acc.public_key) == 0
    assert after.net([acc.public_key, *(m.public_key for m in fakes)]) <= 0
    assert after.money_in() == before.money_in()
    _unchanged(before, after, world)


def test_a_sale_the_seller_invents_costs_the_seller_what_it_pays_out(
        world: World, baseline: Settlement) -> None:
    """Row 2: the artist's own key signs a 5.00 sale nobody paid for, to a key of its own,
    naming the accomplice as the carrier, into its own ledger before its export (a
    modified seller; done on a copy of its home, so later rows see the honest ledger):
    (a) with a code of a batch it signed: the sale books 5.00 collected by the artist;
    (b) with a code in no batch it signed: it books nothing, and is named."""
    before = world.settle()
    forger = world.root / "ada-forged"
    _copy_home(world.artist, forger)
    ada, acc = world.ident(world.artist), world.ident(world.accomplice)
    m = _key()
    r = _receipt(world.work, acc.public_key, m, world.size)
    _append(world.accomplice, acc.public_key,
            ("upload.served", served_record(world.work, m.public_key, world.size)),
            ("receipt.received", r))
    own = Batch(ada, world.work, PRICE, "EUR", count=4, ts=_now())
    invented = own.sell(m, receipts=[r], ts=_now())
    other = _key()
    unissued = sign_payment(ada, request(other, ada.public_key, world.work, ts=_now()),
                            own.signed, os.urandom(32), own.proof(3))
    _append(forger, ada.public_key, (ISSUANCE_KIND, own.signed.to_bytes()),
            ("payment.issued", invented.to_bytes()), ("payment.issued", unissued.to_bytes()))
    world.touch(world.accomplice)
    world.settle()  # the accomplice's bundle, exported
    after = world.settle(instead={world.artist.name: world.export(forger, keep=False)})
    new = _new(before, after)
    assert [f["kind"] for f in new] == ["unissued-sale"], new
    assert new[0]["evidence"]["seller"] == key_to_text(ada.public_key)
    assert after.collected(ada.public_key) == before.collected(ada.public_key) + PRICE
    # The coalition (the artist, its accomplice, its made-up buyers) nets no more than
    # the artist did honestly: the invented 5.00 is its own money, partly paid out.
    coalition = [ada.public_key, acc.public_key, m.public_key, other.public_key]
    assert after.net(coalition) <= before.net([ada.public_key])
    assert after.owed(acc.public_key) == CUT
    for k in (world.key(world.fan), world.key(world.label)):
        assert after.owed(k) == before.owed(k)


def test_a_buyer_crediting_an_accomplice_cannot_take_the_share_of_the_carrier_holding_its_receipts(
        world: World, baseline: Settlement) -> None:
    """Row 3: a buyer that fetched every byte from F (F's ledger holds its receipts) buys
    with a hand-made request whose only receipt credits the accomplice. (a) The
    accomplice's ledger backs nothing: F is paid in full. (b) The accomplice writes
    served records for it into its own ledger: the buyer signed two copies, a finding
    names it, and the carriers' share of this purchase is scaled (DESIGN's bound)."""
    before = world.settle()
    home = world.home("steerer")
    world.fetch(home, world.fan_port)
    m, acc = world.ident(home), world.ident(world.accomplice)
    [code] = world.codes()
    fake = _receipt(world.work, acc.public_key, m, world.size)
    world.purchase(m, code, [fake])
    world.touch(world.artist, world.fan)
    after = world.settle()
    new = _new(before, after)
    unbacked = [f for f in new if f["kind"] == "unbacked-receipt"]
    assert [f["evidence"]["receipt"]["downloader"] for f in unbacked] == [
        key_to_text(m.public_key)]
    assert unbacked[0]["evidence"]["receipt"]["uploader"] == key_to_text(acc.public_key)
    assert after.owed(acc.public_key) == before.owed(acc.public_key)
    assert after.net([m.public_key, acc.public_key]) <= before.net([acc.public_key])
    _unchanged(before, after, world, {world.key(world.fan): CUT,
                                      world.key(world.artist): PRICE - CUT})
    # (b)
    _append(world.accomplice, acc.public_key,
            ("upload.served", served_record(world.work, m.public_key, world.size)),
            ("receipt.received", fake))
    world.touch(world.accomplice)
    b = world.settle()
    over = [f for f in _new(after, b) if f["kind"] == "over-size"]
    assert [f["evidence"]["downloader"] for f in over] == [key_to_text(m.public_key)]
    # The buyer signed two copies: its purchase's carriers' share is held for the label
    # (the over-size finding is the evidence), not scaled among keys it may have made up.
    label = world.key(world.label)
    assert b.owed(world.key(world.fan)) == before.owed(world.key(world.fan))
    assert b.role(label, "held") == after.role(label, "held") + CUT
    assert b.owed(acc.public_key) == before.owed(acc.public_key)
    assert b.net([m.public_key, acc.public_key]) <= before.net([acc.public_key])


def test_a_buyer_sending_no_receipt_does_not_send_the_carriers_share_to_the_holders(
        world: World, baseline: Settlement) -> None:
    """Row 4: a buyer that fetched every byte from F sends no receipt with its request."""
    before = world.settle()
    home = world.home("silent")
    world.fetch(home, world.fan_port)
    [code] = world.codes()
    sale = world.purchase(world.ident(home), code, []).payment
    assert sale.request.request.receipts == ()
    world.touch(world.artist, world.fan)
    after = world.settle()
    _unchanged(before, after, world, {world.key(world.fan): CUT,
                                      world.key(world.artist): PRICE - CUT})


def test_an_artist_reusing_a_buyers_nonce_in_a_back_dated_sale_erases_nothing(
        world: World, baseline: Settlement) -> None:
    """Row 5: Mallory, seller of its own 0.01 work, signs a sale back-dated by 30 days
    with the nonce of an honest 5.00 sale of Night (read from the buyer's ledger)."""
    before = world.settle()
    home = world.home("mallory")
    own = json.loads(run_cli(
        home, "publish", str(make_album(world.root / "studio" / "Own", [1000], seed=5)),
        "--title", "Own", "--price", "0.01", "--currency", "EUR",
        "--out", str(world.root / "own.torrent"), "--json").stdout)
    world.torrents.append(world.root / "own.torrent")
    honest = SignedPayment.from_bytes(_held(world.buyers[0], "payment.received")[0]).payment
    mallory = world.ident(home)
    then = _now() - timedelta(days=30)
    batch = Batch(mallory, bytes.fromhex(own["work"]), 1, "EUR", count=2, ts=then)
    pay = batch.sell(_key(), nonce=honest.nonce, ts=then)
    assert pay.payment.nonce == honest.nonce
    _append(home, mallory.public_key, (ISSUANCE_KIND, batch.signed.to_bytes()),
            ("payment.issued", pay.to_bytes()))
    world.touch(home)
    after = world.settle()
    assert _new(before, after) == []
    assert after.money_in() == before.money_in() + 1
    assert after.net([mallory.public_key]) <= 0
    _unchanged(before, after, world)
    assert after.collected(world.key(world.artist)) == before.collected(world.key(world.artist))


def test_a_seller_hiding_sales_behind_an_old_checkpoint_is_named_and_the_sales_count(
        world: World, baseline: Settlement) -> None:
    """Row 6: the artist exports its bundle, then sells three more copies (carried by F;
    `buy` sends each payment receipt to the label, the collector); the label audits the
    old checkpoint, and the buyers send no bundle. The sales count (F is paid its share),
    a finding names the artist, and no buyer who paid is called a Sybil."""
    before = world.settle()
    old = world.export(world.artist, keep=False)  # the checkpoint the artist will hand in
    later = [world.home(f"later{i}") for i in range(3)]
    _parallel(*(lambda h=h: world.fetch(h, world.fan_port) for h in later))
    codes = world.codes(3)
    docs = _parallel(*(lambda h=h, c=c: world.buy(h, c)
                       for h, c in zip(later, codes, strict=True)))
    assert [d["collector"] for d in docs] == ["sent"] * 3
    world.touch(world.fan, world.label)
    after = world.settle(instead={world.artist.name: old})
    new = _new(before, after)
    assert sorted(f["kind"] for f in new) == ["withheld-sale"] * 3, json.dumps(new)
    ada = key_to_text(world.key(world.artist))
    assert {f["evidence"]["seller"] for f in new} == {ada}
    assert {f["evidence"]["payment"]["buyer"] for f in new} == {
        load_public_identity(h).key_text for h in later}
    assert after.findings("suspected-sybil") == []
    assert after.money_in() == before.money_in() + 3 * PRICE
    assert after.collected(world.key(world.artist)) == \
        before.collected(world.key(world.artist)) + 3 * PRICE
    _unchanged(before, after, world, {world.key(world.fan): 3 * CUT,
                                      world.key(world.artist): 3 * (PRICE - CUT)})
    world.touch(world.artist)  # later rows audit the artist's whole ledger again


def test_one_code_redeemed_at_two_nodes_sharing_a_key_books_once_per_sale_and_names_the_fork(
        world: World, baseline: Settlement) -> None:
    """Row 9: the artist's home is copied to a second home, which seeds too; one code is
    redeemed at both nodes at once by two buyers. Both get the work (nothing can undo
    that); the two ledgers fork, the audit names the key and the code, each sale books
    the face value against the key that signed it twice. Both sales reached the license's
    collector from their buyers, so neither is held: F, who carried both, is paid for
    both, out of the pocket of the key that sold one code twice. The key's holder nets no
    more than before."""
    before = world.settle()
    [code] = world.codes()
    twin = world.root / "ada-twin"
    _copy_home(world.artist, twin)
    buyers = [world.home("twin-buyer-a"), world.home("twin-buyer-b")]
    _parallel(*(lambda h=h: world.fetch(h, world.fan_port) for h in buyers))
    twin_api = free_port()
    with Seeder(twin, free_port(), "--api-listen", f"127.0.0.1:{twin_api}"):
        docs = _parallel(lambda: world.buy(buyers[0], code),
                         lambda: world.buy(buyers[1], code, api=twin_api))
    assert docs[0]["payment_ref"] == docs[1]["payment_ref"]
    assert [d["collector"] for d in docs] == ["sent", "sent"]
    world.touch(world.artist, twin, world.fan, world.label)
    after = world.settle()
    new = _new(before, after)
    kinds = sorted({f["kind"] for f in new})
    assert "fork" in kinds and "double-spend" in kinds, new
    ada = key_to_text(world.key(world.artist))
    [fork] = [f for f in new if f["kind"] == "fork"]
    assert fork["evidence"]["node"] == ada
    [spent] = [f for f in new if f["kind"] == "double-spend"]
    assert spent["evidence"]["sellers"] == [ada]
    assert spent["evidence"]["payment_ref"] == docs[0]["payment_ref"]
    k = world.key(world.artist)
    assert after.collected(k) == before.collected(k) + 2 * PRICE
    assert after.money_in() == before.money_in() + 2 * PRICE
    assert after.net([k]) <= before.net([k])
    label = world.key(world.label)
    assert after.role(label, "held") == before.role(label, "held")
    f = world.key(world.fan)
    assert after.owed(f) == before.owed(f) + 2 * CUT  # the carrier of both sales: F


@dataclass
class Copied:
    """Row 10's world: the settlements before the copy, with it, and after the decision."""

    before: Settlement
    after: Settlement
    decided: Settlement
    copy: dict[str, Any]
    thief: bytes


@pytest.fixture(scope="module")
def copied(world: World, baseline: Settlement) -> Copied:
    """A thief republishes Song's exact files under its own key as "Song (my version)"
    and seeds it; one fan fetches Song from the artist, one the copy from the thief; the
    label pays a pool of 100.00 (every settle does). Then the label decides (`label
    decide SONG COPY`), exports its ledger again, and pays again."""
    before = world.settle()
    thief = world.home("thief")
    copy = json.loads(run_cli(thief, "publish", str(world.root / "studio" / "Song"),
                              "--title", "Song (my version)", "--license", "CC-BY-4.0",
                              "--out", str(world.root / "copy.torrent"), "--json").stdout)
    world.torrents.append(world.root / "copy.torrent")
    fans = [world.home("song-fan"), world.home("copy-fan")]
    thief_port = free_port()
    with Seeder(thief, thief_port):
        _parallel(lambda: world.fetch(fans[0], world.artist_port, world.song["torrent"]),
                  lambda: world.fetch(fans[1], thief_port, copy["torrent"]))
    world.touch(world.artist, thief)
    after = world.settle()
    run_cli(world.label, "label", "decide", world.song["work"], copy["work"])
    world.touch(world.label)  # its next export carries the signed decision
    return Copied(before, after, world.settle(), copy, world.key(thief))


SLICE = POOL // 2  # two verified downloaders of CC works, one equal slice each
POOL_CARRIERS = SLICE * 1000 // 10_000  # a slice's carriers' share (the pool's 10 %)


def test_a_copy_under_another_key_is_named_its_pool_money_held_then_follows_the_decision(
        world: World, copied: Copied) -> None:
    """Row 10: the audit names the copy and holds both works' pool money (nothing to the
    thief, nothing to the artist). After the label's decision the copy's holder money
    goes to the artist; the thief is paid at most the carriers' share of the slice it
    carried the copy's bytes for (see the next test)."""
    before, after, decided, copy = copied.before, copied.after, copied.decided, copied.copy
    assert before.payouts["statement"]["pool"]["downloaders"] == 0
    new = _new(before, after)
    [found] = [f for f in new if f["kind"] == "copied-work"]
    assert sorted(found["evidence"]["held"]) == sorted([world.song["work"], copy["work"]])
    assert {w["title"]: w["holders"] for w in found["evidence"]["works"]} == {
        "Song": [key_to_text(world.key(world.artist))],
        "Song (my version)": [key_to_text(copied.thief)]}
    assert after.payouts["statement"]["pool"]["downloaders"] == 2
    t, ada, label = copied.thief, world.key(world.artist), world.key(world.label)
    assert after.owed(t) == 0 and after.net([t]) == 0
    assert after.role(label, "held") == before.role(label, "held") + POOL
    assert after.collected(label) == before.collected(label) + POOL
    _unchanged(before, after, world, {label: POOL})
    # Decided: nothing held any more, the copy's holder money is the artist's.
    [found] = [f for f in decided.findings() if f["kind"] == "copied-work"]
    assert found["evidence"]["held"] == []
    assert found["evidence"]["decided"] == {copy["work"]: world.song["work"]}
    assert decided.role(label, "held") == before.role(label, "held")
    assert decided.role(t, "holder") == 0
    # The artist: the whole slice of the fan it carried Song to, and the holder part of
    # the other; the thief: at most what any carrier of those bytes is paid.
    assert decided.owed(ada) == before.owed(ada) + 2 * SLICE
    assert decided.owed(t) == 0 and decided.net([t]) <= 0
    assert decided.owed(world.key(world.fan)) == before.owed(world.key(world.fan))


def test_a_decided_copys_publisher_earns_nothing_by_seeding_its_copy(
        world: World, copied: Copied) -> None:
    """Row 10, the issue's target: the thief took 0 in and may take nothing out."""
    assert copied.decided.owed(copied.thief) == 0
    assert copied.decided.net([copied.thief]) <= 0
