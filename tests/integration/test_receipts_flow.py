"""Receipts over real nodes on 127.0.0.1: every verified byte from a p2pdist peer is
acknowledged by a receipt signed by the downloader and held by the uploader."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

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
    served = {keys[p["pk"]]: p for p in r2["peers"]}
    # Each uploader's final receipt acknowledges exactly the verified bytes it sent ...
    for p in served.values():
        assert p["receipt"]["bytes"] == p["bytes"], p
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
