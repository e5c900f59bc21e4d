"""Label certificates and the fan's trust store, end to end through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from p2pdist.identity import load_identity, load_public_identity
from p2pdist.node import certify
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._story import Seeder, make_album

MiB = 1024 * 1024


def test_certified_work_shows_its_label_and_passes_require_trusted(tmp_path: Path) -> None:
    ada, label, fan = tmp_path / "ada", tmp_path / "label", tmp_path / "fan"
    for h, n in ((ada, "Ada"), (label, "Label X"), (fan, "Fan")):
        run_cli(h, "init", "--name", n)
    a = load_public_identity(ada).key_text
    lx = load_public_identity(label).key_text
    cert = tmp_path / "ada.p2pc"
    run_cli(label, "certify", a, "--name", "Ada Lovelace", "--out", str(cert))
    expired = tmp_path / "old.p2pc"  # signed in 2000, valid through 2001
    certify(load_identity(label, passphrase=PASSPHRASE), load_public_identity(ada).public_key,
            "Ada", expires=datetime(2002, 1, 1, tzinfo=UTC), out=expired,
            now=datetime(2000, 1, 1, tzinfo=UTC))
    album = make_album(tmp_path / "studio" / "Certified", [MiB])
    t1, t2 = tmp_path / "c.torrent", tmp_path / "e.torrent"
    run_cli(ada, "publish", str(album), "--title", "Certified", "--license", "CC0-1.0",
            "--certificate", str(cert), "--out", str(t1))
    run_cli(ada, "publish", str(album), "--title", "Expired", "--license", "CC0-1.0",
            "--certificate", str(expired), "--out", str(t2))
    shown = run_cli(fan, "license", "show", str(t1)).stdout
    # Nobody vouches for the label yet: its name and the artist's are claims.
    assert 'claims to be "Label X"' in shown and 'claims to be "Ada Lovelace"' in shown
    assert "label not in your trust" in shown
    assert "expired" in run_cli(fan, "license", "show", str(t2)).stdout
    port = free_port()
    with Seeder(ada, port):
        args = ["--local", "--peer", f"127.0.0.1:{port}", "--require-trusted"]
        # Nobody trusted yet: refused before any byte is written.
        cp = run_cli(fan, "fetch", str(t1), "--dest", str(tmp_path / "m1"), *args,
                     check=False)
        assert cp.returncode == 3 and "not trusted" in cp.stderr
        assert not (tmp_path / "m1").exists()
        run_cli(fan, "trust", "add", lx, "--name", "Label X")
        trust = json.loads(run_cli(fan, "license", "show", str(t1), "--json").stdout)["trust"]
        assert trust["trusted"] and trust["holders"][0]["status"] == "certified"
        run_cli(fan, "fetch", str(t1), "--dest", str(tmp_path / "m1"), *args)
        # An expired certificate of a trusted label does not count.
        cp = run_cli(fan, "fetch", str(t2), "--dest", str(tmp_path / "m2"), *args,
                     check=False)
        assert cp.returncode == 3 and "expired" in cp.stderr
        # Trusting the artist herself does.
        run_cli(fan, "trust", "add", a, "--name", "Ada")
        run_cli(fan, "fetch", str(t2), "--dest", str(tmp_path / "m2"), *args)
    listed = json.loads(run_cli(fan, "trust", "list", "--json").stdout)
    assert [e["name"] for e in listed] == ["Label X", "Ada"]


def test_a_certificate_for_someone_else_or_forged_is_refused_at_publish(tmp_path: Path) -> None:
    ada, label, bob = tmp_path / "ada", tmp_path / "label", tmp_path / "bob"
    for h in (ada, label, bob):
        run_cli(h, "init", "--name", h.name)
    cert = tmp_path / "bob.p2pc"
    run_cli(label, "certify", load_public_identity(bob).key_text, "--name", "Bob", "--out",
            str(cert))
    album = make_album(tmp_path / "studio" / "W", [MiB])
    cp = run_cli(ada, "publish", str(album), "--title", "W", "--license", "CC0-1.0",
                 "--certificate", str(cert), "--out", str(tmp_path / "w.torrent"), check=False)
    assert cp.returncode == 1 and "holds no share" in cp.stderr
    data = bytearray(cert.read_bytes())
    data[-5] ^= 1
    cert.write_bytes(bytes(data))
    cp = run_cli(bob, "publish", str(album), "--title", "W", "--license", "CC0-1.0",
                 "--certificate", str(cert), "--out", str(tmp_path / "w.torrent"), check=False)
    assert cp.returncode == 3
    assert not (tmp_path / "w.torrent").exists()
