"""Receipts for transfers that never happened (issue 20, finding 4), attacked as a
modified client would: fresh keys made with our own Identity class, receipts signed with
our own classes, posted with raw HTTP to a real seeding node on 127.0.0.1.

The world: an artist seeds a CC work from a real Node in this process (so that the test
decides when it ticks), with its upload limited so that a transfer takes a few seconds.
Two real fans fetch it with the real CLI. Fan 1's final receipt reaches the artist while
the artist's counts of what it sent are stale (its ticks are held): the artist must wait
or ask for it again (503), never lose it. Then the attacker posts "I received the whole
work from you" from three fresh keys: on the old code that raised the artist's credit
by three copies, made its two real fans a suspected Sybil ring, and took the artist's
pool money from 100.00 to 0.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist.identity import Identity, key_to_text, load_identity, load_public_identity
from p2pdist.node import Node
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt
from p2pdist.swarm import Profile
from tests.conftest import PASSPHRASE, free_port, run_cli, start_cli
from tests.integration._rawhttp import Answer, exchange
from tests.integration._story import make_album, publish

MiB = 1024 * 1024
SIZE = 2 * MiB + 5
UPLOAD_LIMIT = 1 * MiB  # bytes/s: a fetch takes about two seconds
TICK = 0.5  # as `p2pdist seed` ticks


class Ticker(threading.Thread):
    """Ticks a node as `p2pdist seed` does, except while held."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True, name="ticker")
        self.node = node
        self.running = threading.Event()
        self.running.set()
        self.idle = threading.Event()  # set while held and not inside a tick
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.running.is_set():
                self.idle.set()
                self.running.wait(0.05)
                continue
            self.idle.clear()
            self.node.tick()
            time.sleep(TICK)

    def hold(self) -> None:
        self.running.clear()
        assert self.idle.wait(10), "the node did not stop ticking"

    def go(self) -> None:
        self.running.set()


@dataclass
class World:
    root: Path
    artist: Path
    fans: tuple[Path, Path]
    pub: dict[str, Any]
    node: Node
    ticker: Ticker
    api: int
    bt: int
    fetched: list[dict[str, Any]]
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.ticker.halt.set()
            self.ticker.go()
            self.ticker.join(10)
            self.node.close()

    @property
    def work(self) -> bytes:
        return bytes.fromhex(self.pub["work"])

    @property
    def artist_pk(self) -> bytes:
        return load_public_identity(self.artist).public_key


def _fetch_args(w: World, fan: Path) -> list[str]:
    return ["fetch", w.pub["magnet"], "--dest", str(w.root / f"{fan.name}-copy"), "--local",
            "--json", "--stall-timeout", "60", "--peer", f"127.0.0.1:{w.bt}"]


def _fetch_while_the_artists_counts_are_stale(w: World, fan: Path) -> dict[str, Any]:
    """Fan's fetch, with the artist's ticks held from the moment it proved the fan's key
    until well after the last byte left: its final receipt arrives before the artist
    counted the bytes it acknowledges."""
    proc = start_cli(fan, *_fetch_args(w, fan))
    fan_pk = load_public_identity(fan).key_text
    key = w.pub["work"]
    deadline = time.monotonic() + 60
    while not any(p["pk"] == fan_pk for s in w.node.status_report()["works"]
                  for p in s["peers"]):  # (the last tick's snapshot: safe from here)
        assert time.monotonic() < deadline and proc.poll() is None, "the fan was never proven"
        time.sleep(0.05)
    w.ticker.hold()
    # Held: only this thread touches the session now. Wait until every byte left.
    while max(sum(p.uploaded for p in w.node.swarm.peers(key)),  # exact, connected
              w.node.swarm.status(key).total_payload_upload) < SIZE:  # a second late
        assert time.monotonic() < deadline and proc.poll() is None, "the transfer stalled"
        time.sleep(0.05)
    time.sleep(3.0)  # the fan's final receipt is at the artist's API by now, unbacked yet
    w.ticker.go()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("phantom")
    album = make_album(root / "studio" / "First Light", [SIZE])
    artist, fan1, fan2 = root / "ada", root / "fan1", root / "fan2"
    pub = publish(artist, album)
    for fan in (fan1, fan2):
        run_cli(fan, "init", "--name", fan.name)
    bt, api = free_port(), free_port()
    node = Node(artist, profile=Profile.LOCAL, listen=("127.0.0.1", bt),
                identity=load_identity(artist, passphrase=PASSPHRASE),
                api_listen=("127.0.0.1", api), control=True, upload_limit=UPLOAD_LIMIT)
    ticker = Ticker(node)
    w: World | None = None
    try:
        node.seed_library()
        ticker.start()
        w = World(root, artist, (fan1, fan2), pub, node, ticker, api, bt, [])
        w.fetched.append(_fetch_while_the_artists_counts_are_stale(w, fan1))
        w.fetched.append(json.loads(run_cli(fan2, *_fetch_args(w, fan2)).stdout))
        yield w
    finally:
        if w is None:
            ticker.halt.set()
            ticker.go()
            if ticker.is_alive():
                ticker.join(10)
            node.close()
        else:
            w.close()


# -- the attacker ------------------------------------------------------------------------


def _phantom(work: bytes, uploader: bytes, size: int) -> tuple[Identity, bytes]:
    """A fresh key's receipt: 'I received the whole work from you'."""
    me = Identity("phantom", nacl.signing.SigningKey.generate())
    r = TransferReceipt(work=work, uploader=uploader, downloader=me.public_key, seq=1,
                        bytes=size, ts=datetime.now(UTC).replace(microsecond=0))
    return me, SignedReceipt.sign(r, me).to_bytes()


def _post(port: int, body: bytes) -> Answer:
    return exchange(port, b"POST /receipts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def _held(home: Path) -> dict[bytes, list[tuple[int, int]]]:
    """(seq, bytes) of every receipt in the ledger of *home*, per downloader."""
    out: dict[bytes, list[tuple[int, int]]] = {}
    with sqlite3.connect(home / "ledger.sqlite") as db:
        for (payload,) in db.execute("SELECT payload FROM entries WHERE kind LIKE "
                                     "'receipt.%' ORDER BY seq"):
            r = SignedReceipt.from_bytes(payload).receipt
            out.setdefault(r.downloader, []).append((r.seq, r.bytes))
    return out


def _status_credit(home: Path, work: str) -> int:
    st = json.loads(run_cli(home, "status", "--json").stdout)
    [w] = [w for w in st["works"] if w["work"] == work]
    return int(w["credit"])


def _attack(w: World, *, check: bool = True) -> list[Identity]:
    """Three fresh keys each say 'I received the whole work from you' to the artist."""
    phantoms = []
    for _ in range(3):
        me, body = _phantom(w.work, w.artist_pk, w.pub["size"])
        a = _post(w.api, body)
        if check:
            assert a.status == 403 and a.doc["reason"] == "unserved", a.raw[:300]
        phantoms.append(me)
    return phantoms


# -- the tests ---------------------------------------------------------------------------


def test_fresh_keys_cannot_post_receipts_for_transfers_that_never_happened(
        world: World) -> None:
    w = world
    fan_pks = [load_public_identity(f).public_key for f in w.fans]
    # Both real fans' receipts are kept in full, fan 1's although it came before the
    # artist had counted what it sent.
    for fan, pk, got in zip(w.fans, fan_pks, w.fetched, strict=True):
        [mine] = [p["receipt"] for p in got["peers"] if p["pk"]]
        assert mine["bytes"] == w.pub["size"] and mine["acknowledged"] == mine["seq"], fan
        assert _held(w.artist)[pk][-1] == (mine["seq"], w.pub["size"]), fan
    credit = w.node.credit_of(w.pub["work"])
    assert credit == 2 * w.pub["size"]
    assert _status_credit(w.artist, w.pub["work"]) == credit

    phantoms = _attack(w)

    held = _held(w.artist)
    assert not [p for p in phantoms if p.public_key in held]
    assert w.node.credit_of(w.pub["work"]) == credit
    assert _status_credit(w.artist, w.pub["work"]) == credit
    for pk, got in zip(fan_pks, w.fetched, strict=True):  # nothing of the fans' was lost
        [mine] = [p["receipt"] for p in got["peers"] if p["pk"]]
        assert held[pk][-1] == (mine["seq"], w.pub["size"])


def test_phantom_receipts_cannot_make_real_fans_a_sybil_ring_and_take_the_pool(
        world: World) -> None:
    w = world
    _attack(w, check=False)  # three more fresh keys, on top of the first test's (if it ran)
    label = w.root / "label"
    run_cli(label, "init", "--name", "label")
    w.close()
    bundles = []
    for h in (w.artist, *w.fans):
        b = w.root / f"{h.name}.p2pb"
        run_cli(h, "receipts", "export", "--out", str(b))
        bundles.append(str(b))
    works = ["--works", w.pub["torrent"]]
    report = json.loads(run_cli(label, "audit", *bundles, *works, "--json").stdout)
    assert report["ok"], report["findings"]
    assert not [f for f in report["findings"] if f["kind"] == "suspected-sybil"]
    res = json.loads(run_cli(label, "payouts", *bundles, *works, "--pool", "100.00", "EUR",
                             "--out", str(w.root / "statement.csv"), "--json").stdout)
    payees = {p["payee"]: p["total"] for p in res["statement"]["payees"]}
    # As without the attack: the holder, and the only uploader of both fans, takes the
    # whole pool of the two verified downloaders.
    assert payees == {load_public_identity(w.artist).key_text: 10_000}
    assert res["statement"]["pool"]["downloaders"] == 2


def test_a_fan_cannot_acknowledge_more_than_it_was_sent(tmp_path: Path) -> None:
    """A fan whose fetch stopped halfway signs 'the whole work': refused, 'unbacked'."""
    from tests.integration._story import Seeder

    album = make_album(tmp_path / "studio" / "First Light", [4 * MiB])
    artist, fan = tmp_path / "ada", tmp_path / "greedy"
    pub = publish(artist, album)
    run_cli(fan, "init", "--name", "greedy")
    me = load_identity(fan, passphrase=PASSPHRASE)
    bt, api = free_port(), free_port()
    with Seeder(artist, bt, "--api-listen", f"127.0.0.1:{api}", "--upload-limit", "256"):
        proc = start_cli(fan, "fetch", pub["magnet"], "--dest", str(tmp_path / "m"),
                         "--local", "--json", "--peer", f"127.0.0.1:{bt}")
        time.sleep(4.0)  # at 256 KiB/s, about 1 of the 4 MiB has come by now
        proc.kill()
        proc.communicate(timeout=30)
        got = _held(artist).get(me.public_key, [])
        seq = got[-1][0] + 1 if got else 1
        r = TransferReceipt(work=bytes.fromhex(pub["work"]),
                            uploader=load_public_identity(artist).public_key,
                            downloader=me.public_key, seq=seq, bytes=pub["size"],
                            ts=datetime.now(UTC).replace(microsecond=0))
        a = _post(api, SignedReceipt.sign(r, me).to_bytes())
        assert a.status == 403 and a.doc["reason"] == "unbacked", a.raw[:400]
        assert _held(artist).get(me.public_key, []) == got
        assert all(n < pub["size"] for _, n in got)


def test_one_network_brings_at_most_32_new_keys_to_a_collector_that_credits_it_nothing(
        tmp_path: Path) -> None:
    """The collector a license names keeps every downloader's receipts for the work (its
    job), as collected copies that never count as its credit; but fresh keys from one
    /24 are capped at 32 per work an hour, and the audit finds the copies the artist's
    ledger cannot back: they take nothing of the pool."""
    from tests.integration._story import Seeder

    new_keys_per_net = 32  # README: at most 32 new keys per work per /24 or /64 an hour

    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    artist, label = tmp_path / "ada", tmp_path / "label"
    run_cli(label, "init", "--name", "label")
    label_pk = load_public_identity(label).key_text
    label_api = free_port()
    pub = publish(artist, album, "--collector", f"{label_pk}@127.0.0.1:{label_api}")
    a_bt, l_bt = free_port(), free_port()
    with Seeder(artist, a_bt):
        run_cli(label, "fetch", pub["magnet"], "--dest", str(tmp_path / "copy"), "--local",
                "--peer", f"127.0.0.1:{a_bt}")
    work, artist_pk = bytes.fromhex(pub["work"]), load_public_identity(artist).public_key
    with Seeder(label, l_bt, "--api-listen", f"127.0.0.1:{label_api}"):
        kept = []
        for _ in range(new_keys_per_net):
            me, body = _phantom(work, artist_pk, pub["size"])
            a = _post(label_api, body)
            assert a.status == 200 and a.doc["kept_as"] == "collected", a.raw[:300]
            kept.append(me.public_key)
        me, body = _phantom(work, artist_pk, pub["size"])
        a = _post(label_api, body)
        assert a.status == 429 and a.doc["reason"] == "too-many-keys", a.raw[:300]
        # A key already kept may go on: its next receipt is not a new key.
        assert _status_credit(label, pub["work"]) == 0
    collected = [r for r in json.loads(run_cli(label, "receipts", "list", "--json").stdout)
                 if r["direction"] == "collected"]
    assert len(collected) == new_keys_per_net
    assert me.public_key not in _held(label)
    assert set(_held(label)) >= set(kept)
    # The label audits its own bundle and the artist's: the copies it collected from the
    # fresh keys are receipts the artist's ledger cannot back. They earn the artist no
    # credit and make no ring of its one real downloader (the label itself).
    bundles = []
    for h in (artist, label):
        run_cli(h, "receipts", "export", "--out", str(tmp_path / f"{h.name}.p2pb"))
        bundles.append(str(tmp_path / f"{h.name}.p2pb"))
    works = ["--works", pub["torrent"]]
    report = json.loads(run_cli(label, "audit", *bundles, *works, "--json").stdout)
    unbacked = [f for f in report["findings"] if f["kind"] == "unbacked-receipt"]
    assert {f["kind"] for f in report["findings"]} == {"unbacked-receipt"}
    assert len(unbacked) == new_keys_per_net
    res = json.loads(run_cli(label, "payouts", *bundles, *works, "--pool", "100.00", "EUR",
                             "--out", str(tmp_path / "statement.csv"), "--json").stdout)
    assert res["statement"]["pool"]["downloaders"] == 1
    assert {p["payee"]: p["total"] for p in res["statement"]["payees"]} == {
        load_public_identity(artist).key_text: 10_000}


# -- the collector's exception, attacked (review of finding 4) ---------------------------


def _phantom_of(work: bytes, uploaders: list[bytes], size: int) -> list[bytes]:
    """One fresh key's receipts, 'I received *size* bytes from you', to each uploader."""
    me = Identity("phantom", nacl.signing.SigningKey.generate())
    now = datetime.now(UTC).replace(microsecond=0)
    return [SignedReceipt.sign(TransferReceipt(work=work, uploader=up,
                                               downloader=me.public_key, seq=1, bytes=size,
                                               ts=now), me).to_bytes() for up in uploaders]


def _export(homes: list[Path], into: Path) -> list[str]:
    into.mkdir(exist_ok=True)
    out = []
    for h in homes:
        b = into / f"{h.name}.p2pb"
        run_cli(h, "receipts", "export", "--out", str(b))
        out.append(str(b))
    return out


def _payouts(label: Path, bundles: list[str], torrent: str, out: Path) -> dict[str, Any]:
    res: dict[str, Any] = json.loads(run_cli(
        label, "payouts", *bundles, "--works", torrent, "--pool", "100.00", "EUR",
        "--out", str(out), "--json").stdout)
    return res


def test_phantom_receipts_at_a_collector_naming_made_up_uploaders_or_a_download_only_fan_take_no_pool(  # noqa: E501
        tmp_path: Path) -> None:
    """The artist's node is its work's collector, and keeps every downloader's receipts
    naming any uploader (its job). The attacker, with no download at all, posts it
    receipts from 30 fresh keys naming two made-up uploaders X1 and X2 (no bundle), and
    from 6 fresh keys naming honest fan F1, who only downloaded. On the old code the
    audit found nothing unbacked, made F1 a suspected Sybil ring's hub, and the pool
    paid X1 and X2 9.30 EUR of the artist's 10.00."""
    from tests.integration._story import Seeder

    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    artist, f1, f2, label = (tmp_path / n for n in ("ada", "fan1", "fan2", "label"))
    for h in (artist, f1, f2, label):
        run_cli(h, "init", "--name", h.name)
    a_pk = load_public_identity(artist)
    bt, api = free_port(), free_port()
    pub = publish(artist, album, "--collector", f"{a_pk.key_text}@127.0.0.1:{api}")
    work = bytes.fromhex(pub["work"])
    seeder = ["--api-listen", f"127.0.0.1:{api}"]
    with Seeder(artist, bt, *seeder):
        for fan in (f1, f2):
            got = json.loads(run_cli(fan, "fetch", pub["magnet"], "--dest",
                                     str(tmp_path / f"{fan.name}-copy"), "--local", "--json",
                                     "--peer", f"127.0.0.1:{bt}").stdout)
            [mine] = [p["receipt"] for p in got["peers"] if p["pk"]]
            assert mine["bytes"] == pub["size"] and mine["acknowledged"] == mine["seq"]
    homes = [artist, f1, f2]
    control = _payouts(label, _export(homes, tmp_path / "control"), pub["torrent"],
                       tmp_path / "control.json")["statement"]
    artist_share = {"payee": a_pk.key_text, "holder": 9_000, "redistributor": 1_000,
                    "total": 10_000}
    assert [{k: p[k] for k in artist_share} for p in control["payees"]] == [artist_share]
    assert control["pool"]["downloaders"] == 2

    # The attacker: throwaway keys, no download, straight to the collector's API.
    x1, x2 = (Identity("x", nacl.signing.SigningKey.generate()).public_key for _ in "xx")
    f1_pk = load_public_identity(f1).public_key
    made_up: list[bytes] = []
    with Seeder(artist, bt, *seeder):
        for i in range(36):
            uploaders, source = ([x1, x2], "127.0.0.1") if i < 30 else ([f1_pk], "127.0.1.1")
            for body in _phantom_of(work, uploaders, MiB // 2 if i < 30 else MiB):
                a = _post_from(api, body, source)
                assert a.status == 200 and a.doc["kept_as"] == "collected", a.raw[:300]
                made_up.append(SignedReceipt.from_bytes(body).receipt.downloader)
        assert _status_credit(artist, pub["work"]) == 2 * pub["size"]  # not its credit
    bundles = _export(homes, tmp_path / "attacked")
    works = ["--works", pub["torrent"]]
    report = json.loads(run_cli(label, "audit", *bundles, *works, "--json").stdout)
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds == {"unbacked-receipt"}, report["findings"]  # no suspected-sybil at all
    unbacked = [f["evidence"] for f in report["findings"]]
    assert len(unbacked) == 66
    why = {(e["receipt"]["uploader"], e["uploader"]) for e in unbacked}
    assert why == {(key_to_text(x1), "no-bundle"), (key_to_text(x2), "no-bundle"),
                   (key_to_text(f1_pk), "records-nothing")}
    assert {e["receipt"]["downloader"] for e in unbacked} == {key_to_text(k)
                                                              for k in made_up}
    st = _payouts(label, bundles, pub["torrent"], tmp_path / "attacked.json")["statement"]
    # Exactly the control's figures: 2 verified downloaders, the artist 90.00 + 10.00;
    # the made-up keys and the honest fan get nothing, nobody is excluded as a Sybil.
    assert [{k: p[k] for k in artist_share} for p in st["payees"]] == [artist_share]
    assert st["pool"] == control["pool"]
    assert {ln["payee"] for ln in st["lines"]} == {a_pk.key_text}


def test_fresh_keys_filling_a_collectors_key_budget_cannot_refuse_an_honest_fans_real_receipt(
        tmp_path: Path) -> None:
    """The artist's node is its work's collector. 33 fresh keys post it receipts naming
    made-up uploaders from 127.0.0.9, in the honest fan's /24: free (no download), they
    fill that /24's budget of new keys of collected copies. Then the fan really fetches
    the work from the artist from 127.0.0.1: on the old code its receipt drew on the same
    budget and was refused (429: acknowledged 0, the artist kept nothing of it)."""
    from tests.integration._story import Seeder

    new_keys_per_net = 32  # README: a collector's budget, per work per /24 an hour
    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    run_cli(artist, "init", "--name", "ada")
    run_cli(fan, "init", "--name", "fan")
    a_pk = load_public_identity(artist)
    bt, api = free_port(), free_port()
    pub = publish(artist, album, "--collector", f"{a_pk.key_text}@127.0.0.1:{api}")
    work = bytes.fromhex(pub["work"])
    with Seeder(artist, bt, "--api-listen", f"127.0.0.1:{api}"):
        answers = []
        for _ in range(new_keys_per_net + 1):
            x = Identity("x", nacl.signing.SigningKey.generate()).public_key
            [body] = _phantom_of(work, [x], 1)
            answers.append(_post_from(api, body, "127.0.0.9").status)
        assert answers == [200] * new_keys_per_net + [429]  # the budget is full
        got = json.loads(run_cli(fan, "fetch", pub["magnet"], "--dest",
                                 str(tmp_path / "copy"), "--local", "--json",
                                 "--peer", f"127.0.0.1:{bt}").stdout)
        [mine] = [p["receipt"] for p in got["peers"] if p["pk"]]
        assert mine["bytes"] == pub["size"] and mine["acknowledged"] == mine["seq"], mine
        assert _status_credit(artist, pub["work"]) == pub["size"]
    fan_pk = load_public_identity(fan).public_key
    assert _held(artist)[fan_pk][-1] == (mine["seq"], pub["size"])


def _post_from(port: int, body: bytes, source: str) -> Answer:
    return exchange(port, b"POST /receipts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body), source=source)
