"""Receipts over real nodes on 127.0.0.1: every verified byte from a p2pdist peer is
acknowledged by a receipt signed by the downloader and held by the uploader."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from p2pdist.identity import load_public_identity
from tests.conftest import free_port, run_cli
from tests.integration._story import Seeder, digests, make_album, publish

MiB = 1024 * 1024


def _fetch(home: Path, source: str, dest: Path, *ports: int) -> dict[str, Any]:
    args = ["fetch", source, "--dest", str(dest), "--local", "--json", "--stall-timeout", "60"]
    for p in ports:
        args += ["--peer", f"127.0.0.1:{p}"]
    result: dict[str, Any] = json.loads(run_cli(home, *args).stdout)
    return result


def test_credit_adds_up_when_fan_fetches_from_artist_and_fan_at_once(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [9 * MiB + 5, 3 * MiB])
    artist, fan1, fan2 = tmp_path / "ada", tmp_path / "fan1", tmp_path / "fan2"
    pub = publish(artist, album)
    for fan in (fan1, fan2):
        run_cli(fan, "init", "--name", fan.name)
    a_port, f1_port = free_port(), free_port()
    with Seeder(artist, a_port):
        _fetch(fan1, pub["magnet"], tmp_path / "m1", a_port)
        with Seeder(fan1, f1_port):
            r2 = _fetch(fan2, pub["magnet"], tmp_path / "m2", a_port, f1_port)
    assert digests(tmp_path / "m2" / "First Light") == digests(album)
    keys = {load_public_identity(h).key_text: h.name for h in (artist, fan1)}
    # One uploader may show as several connections (each side also dials the other):
    # its bytes are the sum over them, and they share one receipt.
    sent: dict[str, int] = {}
    served: dict[str, Any] = {}
    for p in r2["peers"]:
        if p["pk"]:
            sent[keys[p["pk"]]] = sent.get(keys[p["pk"]], 0) + p["bytes"]
            served[keys[p["pk"]]] = p
    # Each uploader's final receipt acknowledges exactly the verified bytes it sent ...
    for name, p in served.items():
        assert p["receipt"]["bytes"] == sent[name], (name, p)
    # ... and together they are the whole work, no more.
    assert sum(p["receipt"]["bytes"] for p in served.values()) == pub["size"]
    # The uploaders hold the same receipts fan 2 issued.
    for name, p in served.items():
        held = json.loads(run_cli(tmp_path / name, "receipts", "list", "--json").stdout)
        mine = [r for r in held if r["downloader"] == load_public_identity(fan2).key_text]
        assert [(r["seq"], r["bytes"]) for r in mine] == [
            (p["receipt"]["seq"], p["receipt"]["bytes"])]


def _ledger_rows(home: Path) -> int:
    with sqlite3.connect(home / "ledger.sqlite") as db:
        return int(db.execute("select count(*) from entries").fetchone()[0])


def test_receipt_attacks_are_refused_and_the_ledger_is_unchanged(tmp_path: Path) -> None:
    """A fan the artist really served sends hand-made receipts: each bad one is refused
    for its own reason, and the artist's ledger is unchanged."""
    from datetime import UTC, datetime

    import nacl.signing

    from p2pdist._api import MAX_BODY, post
    from p2pdist.identity import Identity, load_identity
    from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt
    from tests.conftest import PASSPHRASE

    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    artist, fan_home = tmp_path / "ada", tmp_path / "fan"
    pub = publish(artist, album)
    run_cli(fan_home, "init", "--name", "fan")
    fan = load_identity(fan_home, passphrase=PASSPHRASE)
    me = load_public_identity(artist).public_key
    work = bytes.fromhex(pub["work"])
    now = datetime(2026, 11, 23, tzinfo=UTC)
    bt, port = free_port(), free_port()
    with Seeder(artist, bt, "--api-listen", f"127.0.0.1:{port}"):
        _fetch(fan_home, pub["magnet"], tmp_path / "m", bt)  # seq 1: the whole work

        def receipt(seq: int, n: int, *, w: bytes = work, up: bytes = me,
                    signer: Identity = fan) -> bytes:
            r = TransferReceipt(work=w, uploader=up, downloader=fan.public_key, seq=seq,
                                bytes=n, ts=now)
            if signer is fan:
                return SignedReceipt.sign(r, fan).to_bytes()
            forged = SignedReceipt(r.signed_bytes(), signer.sign(
                domain=b"p2pdist/receipt/v1", message=r.signed_bytes()))
            return forged.to_bytes()

        status, doc = post("127.0.0.1", port, "/receipts", receipt(2, pub["size"]))
        assert status == 200, doc
        rows = _ledger_rows(artist)
        other = Identity("x", nacl.signing.SigningKey.generate())
        attacks = {
            "replayed": receipt(2, pub["size"]),
            "rollback": receipt(1, pub["size"]),
            "over-size": receipt(3, pub["size"] + 1),
            "unknown-work": receipt(3, 10, w=bytes(32)),
            "bad-signature": receipt(3, 2000, signer=other),
            "wrong-uploader": receipt(3, 2000, up=other.public_key),
            "oversized": b"d" + b"x" * 600,
            "malformed": b"i1e",
        }
        for reason, body in attacks.items():
            status, doc = post("127.0.0.1", port, "/receipts", body)
            assert 400 <= status < 500, (reason, status, doc)
            assert doc["reason"] == reason, (reason, doc)
        status, doc = post("127.0.0.1", port, "/receipts", b"x" * (MAX_BODY + 1))
        assert status == 413
        assert _ledger_rows(artist) == rows


def test_bundles_export_import_and_verify_offline(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [2 * MiB])
    artist, fan, label = tmp_path / "ada", tmp_path / "fan", tmp_path / "label"
    pub = publish(artist, album)
    run_cli(fan, "init", "--name", "fan")
    port = free_port()
    with Seeder(artist, port):
        _fetch(fan, pub["magnet"], tmp_path / "m", port)
    for who in (artist, fan):
        run_cli(who, "receipts", "export", "--out", str(tmp_path / f"{who.name}.p2pb"))
    imported = json.loads(run_cli(label, "receipts", "import", str(tmp_path / "ada.p2pb"),
                                  str(tmp_path / "fan.p2pb"), "--json").stdout)
    # The artist's bundle: what it sent the fan (upload.served), then the fan's receipt.
    assert [r["added"] for r in imported] == [2, 1]
    again = json.loads(run_cli(label, "receipts", "import", str(tmp_path / "ada.p2pb"),
                               "--json").stdout)
    assert again[0]["added"] == 0 and again[0]["present"] == 2
    ok = json.loads(run_cli(label, "ledger", "verify", "--json").stdout)
    assert ok["ok"] is True and ok["entries"] == 3 and ok["nodes"] == 2

    bad = tmp_path / "bad.p2pb"
    data = bytearray((tmp_path / "fan.p2pb").read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    rows = _ledger_rows(label)
    cp = run_cli(label, "receipts", "import", str(bad), check=False)
    assert cp.returncode == 3 and "Traceback" not in cp.stderr
    assert _ledger_rows(label) == rows


def test_tampered_ledger_fails_verify_with_exit_3(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    pub = publish(artist, album)
    run_cli(fan, "init", "--name", "fan")
    port = free_port()
    with Seeder(artist, port):
        _fetch(fan, pub["magnet"], tmp_path / "m", port)
    run_cli(artist, "ledger", "verify")
    with sqlite3.connect(artist / "ledger.sqlite") as db:
        for (name,) in db.execute("select name from sqlite_master where type='trigger'"):
            db.execute(f"drop trigger {name}")
        db.execute("update entries set payload = cast(substr(payload, 1, 10) || x'00' "
                   "|| substr(payload, 12) as blob)")
    cp = run_cli(artist, "ledger", "verify", "--json", check=False)
    assert cp.returncode == 3, cp.stderr
    assert json.loads(cp.stdout)["ok"] is False
    assert "entry 1" in cp.stderr


def test_receipts_also_reach_the_collector_the_license_names(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [5 * MiB + 3])
    artist, label, fan = tmp_path / "ada", tmp_path / "label", tmp_path / "fan"
    for h in (label, fan):
        run_cli(h, "init", "--name", h.name)
    label_pk = load_public_identity(label).key_text
    label_api = free_port()
    pub = publish(artist, album, "--collector", f"{label_pk}@127.0.0.1:{label_api}")
    shown = json.loads(run_cli(artist, "license", "show", pub["torrent"], "--json").stdout)
    assert shown["collector"]["pk"] == label_pk
    assert shown["collector"]["api"] == f"127.0.0.1:{label_api}"
    a_port, l_port = free_port(), free_port()
    with Seeder(artist, a_port):
        # The label holds the work (it fetches it like any fan), then serves its API.
        _fetch(label, pub["magnet"], tmp_path / "label-copy", a_port)
        with Seeder(label, l_port, "--api-listen", f"127.0.0.1:{label_api}"):
            r = _fetch(fan, pub["magnet"], tmp_path / "m", a_port)
    [served] = [p for p in r["peers"] if p["bytes"]]
    assert served["pk"] == load_public_identity(artist).key_text
    fan_pk = load_public_identity(fan).key_text
    collected = [row for row in json.loads(
        run_cli(label, "receipts", "list", "--json").stdout) if row["direction"] == "collected"]
    # The label holds the fan's receipt to the artist: the same (seq, bytes) the artist holds.
    assert [(row["uploader"], row["downloader"], row["seq"], row["bytes"])
            for row in collected] == [(served["pk"], fan_pk, served["receipt"]["seq"],
                                       pub["size"])]
    held = [row for row in json.loads(run_cli(artist, "receipts", "list", "--json").stdout)
            if row["downloader"] == fan_pk]
    assert [(row["seq"], row["bytes"]) for row in held] == [
        (served["receipt"]["seq"], pub["size"])]
    # The label's own download issued no receipt to itself as collector.
    assert not [row for row in json.loads(run_cli(label, "receipts", "list", "--json").stdout)
                if row["uploader"] == row["downloader"]]
    run_cli(label, "ledger", "verify")  # collected receipts pass the signature check too


def test_publish_refuses_a_malformed_collector_before_hashing(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    pk = load_public_identity(home).key_text
    for bad in ("127.0.0.1:7001", f"{pk}@", f"{pk}@host", f"{pk}@host:0", "nokey@host:7001",
                f"{pk}@a b:80", f"{pk}@::1:80"):
        cp = run_cli(home, "publish", str(album), "--title", "T", "--license", "CC0-1.0",
                     "--collector", bad, "--out", str(tmp_path / "t.torrent"), check=False)
        assert cp.returncode == 1, bad
        assert "--collector" in cp.stderr and "Traceback" not in cp.stderr
        assert not (tmp_path / "t.torrent").exists()


def test_a_node_whose_ledger_cannot_open_stops_everything_it_started(tmp_path: Path) -> None:
    """A damaged ledger refuses the node, and neither its API port nor its home lock is
    left behind: a second try (after the ledger is repaired) starts on the same ports."""
    import socket

    from p2pdist.errors import P2PDistError
    from p2pdist.identity import load_identity
    from p2pdist.node import Node
    from p2pdist.swarm import Profile
    from tests.conftest import PASSPHRASE

    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    artist = tmp_path / "ada"
    publish(artist, album)
    ident = load_identity(artist, passphrase=PASSPHRASE)
    ledger = artist / "ledger.sqlite"
    good = ledger.read_bytes() if ledger.exists() else None
    ledger.write_bytes(b"this is not a SQLite database" * 100)
    bt, api = free_port(), free_port()
    with pytest.raises(P2PDistError):
        Node(artist, profile=Profile.LOCAL, listen=("127.0.0.1", bt), identity=ident,
             api_listen=("127.0.0.1", api), control=True)
    with socket.socket() as s:  # the API's port is free again
        s.bind(("127.0.0.1", api))
    if good is None:
        ledger.unlink()
    else:
        ledger.write_bytes(good)
    node = Node(artist, profile=Profile.LOCAL, listen=("127.0.0.1", bt), identity=ident,
                api_listen=("127.0.0.1", api), control=True)
    try:
        assert node.api is not None and node.api.port == api
    finally:
        node.close()
