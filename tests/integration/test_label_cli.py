"""The label's commands end to end: audit (and --strict), payouts in each format, and an
artist verifying the signed statement."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from p2pdist.identity import load_public_identity
from tests.conftest import free_port, run_cli
from tests.integration._story import Seeder, make_album, publish

MiB = 1024 * 1024


def test_label_audits_pays_a_pool_and_the_artist_verifies(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [2 * MiB])
    ada, fan, label = tmp_path / "ada", tmp_path / "fan", tmp_path / "label"
    pub = publish(ada, album)
    for h in (fan, label):
        run_cli(h, "init", "--name", h.name)
    port = free_port()
    with Seeder(ada, port):
        run_cli(fan, "fetch", pub["magnet"], "--dest", str(tmp_path / "m"), "--local",
                "--peer", f"127.0.0.1:{port}")
    bundles = []
    for h in (ada, fan):
        b = tmp_path / f"{h.name}.p2pb"
        run_cli(h, "receipts", "export", "--out", str(b))
        bundles.append(str(b))
    works = ["--works", pub["torrent"]]
    report = json.loads(run_cli(label, "audit", *bundles, *works, "--json").stdout)
    assert report["ok"] and report["counts"]["bundles"] == 2
    run_cli(label, "audit", *bundles, *works, "--strict")
    # A pool of 10.00 EUR for the one verified downloader of this CC work.
    out = tmp_path / "statement.csv"
    res = json.loads(run_cli(label, "payouts", *bundles, *works, "--pool", "10.00", "EUR",
                             "--out", str(out), "--json").stdout)
    assert res["sums_exactly"]
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    owed = [r for r in rows if r["entry"] == "owed"]
    assert owed and sum(int(r["amount_minor"]) for r in owed) == 1000
    # The pool is the label's money: it collected it and pays it all to Ada.
    assert {(r["entry"], r["party"], r["amount_minor"]) for r in rows
            if r["entry"] != "owed"} == {
        ("collected", load_public_identity(label).key_text, "1000"),
        ("net", load_public_identity(label).key_text, "-1000"),
        ("net", load_public_identity(ada).key_text, "1000")}
    a = load_public_identity(ada).key_text
    payees = {p["payee"]: p["total"] for p in res["statement"]["payees"]}
    assert payees == {a: 1000}  # holder and the fan's only uploader: all of it
    # The same settlement, as the label reads it in its terminal.
    (tmp_path / "plain").mkdir()
    plain = run_cli(label, "payouts", *bundles, *works, "--pool", "10.00", "EUR",
                    "--out", str(tmp_path / "plain" / "statement.html")).stdout
    assert f"the label pays {load_public_identity(ada).fingerprint} 10.00 EUR" in plain
    assert "the label pays out 10.00 EUR of what it collected" in plain
    assert "nets sum to 0" in plain
    shown = json.loads(run_cli(ada, "statement", "verify", res["signed"], "--label",
                               load_public_identity(label).key_text, "--json").stdout)
    assert shown["verified"] and shown["sums_exactly"]
    # Signed by someone else than the label Ada expects: exit 3.
    cp = run_cli(ada, "statement", "verify", res["signed"], "--label", a, check=False)
    assert cp.returncode == 3


def test_a_tampered_bundle_is_a_finding_and_strict_exits_3(tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "First Light", [MiB])
    ada, fan, label = tmp_path / "ada", tmp_path / "fan", tmp_path / "label"
    pub = publish(ada, album)
    for h in (fan, label):
        run_cli(h, "init", "--name", h.name)
    port = free_port()
    with Seeder(ada, port):
        run_cli(fan, "fetch", pub["magnet"], "--dest", str(tmp_path / "m"), "--local",
                "--peer", f"127.0.0.1:{port}")
    b = tmp_path / "fan.p2pb"
    run_cli(fan, "receipts", "export", "--out", str(b))
    data = bytearray(b.read_bytes())
    data[len(data) // 2] ^= 0x01
    b.write_bytes(bytes(data))
    works = ["--works", pub["torrent"]]
    plain = run_cli(label, "audit", str(b), *works)
    assert "bad-bundle" in plain.stdout
    cp = run_cli(label, "audit", str(b), *works, "--strict", "--json", check=False)
    assert cp.returncode == 3
    assert json.loads(cp.stdout.splitlines()[0])["findings"][0]["kind"] == "bad-bundle"
    # A report refuses nothing silently: the HTML names the finding.
    html = tmp_path / "s.html"
    run_cli(label, "payouts", str(b), *works, "--out", str(html))
    assert "bad-bundle" in html.read_text()


def test_statement_re_signed_by_any_key_as_label_fails_without_label(tmp_path: Path) -> None:
    """Issue 21, item 6. Mallory takes the label's real statement, and signs it again
    with her own key as its "label", once as it was and once paying herself everything:
    both are well signed and sum to the cent. Without --label, Ada's node checks the
    signer against her trust store and refuses both (exit 3, with a remedy), in text and
    in JSON; the label she trusts still verifies, and --label works as before."""
    import hashlib
    from dataclasses import replace
    from datetime import UTC, datetime

    import nacl.signing

    from p2pdist.identity import Identity, key_to_text
    from p2pdist.licensing import PaidTerms
    from p2pdist.payouts.statement import Line, Sale, SignedStatement, StatementWork
    from p2pdist.payouts.statement import compute_statement as compute

    label = Identity("Label X", nacl.signing.SigningKey(b"\x11" * 32))
    mallory = Identity("Mallory", nacl.signing.SigningKey(b"\x66" * 32))
    ada, fan = (bytes(nacl.signing.SigningKey(bytes([s]) * 32).verify_key) for s in (3, 5))
    song = hashlib.sha256(b"song").digest()
    works = {song: StatementWork("Song", PaidTerms(500, "EUR", 1500, (ada,)),
                                 ((ada, 10_000),), 1000)}
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    sales = [Sale(song, bytes([40 + i]) * 32, ada, 500, "EUR", t0,
                  hashlib.sha256(b"request %d" % i).digest(), ((fan, 1000),))
             for i in range(4)]
    honest = compute(label=label.public_key, works=works, sales=sales)
    files = {"honest": SignedStatement.sign(honest, label)}
    # Re-signed as it was, by Mallory as "label".
    files["re-signed"] = SignedStatement.sign(replace(honest, label=mallory.public_key),
                                              mallory)
    # Or paying Mallory every cent: it still sums exactly, and names her as the label.
    robbed = replace(honest, label=mallory.public_key,
                     lines=(Line(mallory.public_key, "EUR", 2000, "holder", song, "sales"),))
    assert robbed.sums_exactly
    files["robbed"] = SignedStatement.sign(robbed, mallory)
    paths = {}
    for name, signed in files.items():
        paths[name] = tmp_path / f"{name}.p2ps"
        paths[name].write_bytes(signed.to_bytes())

    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    run_cli(home, "trust", "add", key_to_text(label.public_key), "--name", "Label X")
    ok = run_cli(home, "statement", "verify", str(paths["honest"])).stdout
    assert "✓ verified" in ok and "Label X, a label you trust" in ok
    for name in ("re-signed", "robbed"):
        cp = run_cli(home, "statement", "verify", str(paths[name]), check=False)
        assert cp.returncode == 3, (name, cp.stdout, cp.stderr)
        assert "verified" not in cp.stdout
        assert "not a label in your trust store" in cp.stderr
        assert "p2pdist trust add" in cp.stderr and "--label KEY" in cp.stderr
        cp = run_cli(home, "statement", "verify", str(paths[name]), "--json", check=False)
        assert cp.returncode == 3
        doc = json.loads(cp.stdout.splitlines()[0])
        assert doc["ok"] is False and doc["kind"] == "NotTrusted" and doc["exit_code"] == 3
        assert "trust add" in doc["remedy"] and "--label" in doc["remedy"]
        assert "verified" not in doc
        # Pinned to the real label: the other-label refusal, as before.
        cp = run_cli(home, "statement", "verify", str(paths[name]), "--label",
                     key_to_text(label.public_key), "--json", check=False)
        assert cp.returncode == 3 and json.loads(cp.stdout.splitlines()[0])["reason"] == \
            "other-label"
    # --label works as before, trusted or not: the one who names the key decides.
    shown = json.loads(run_cli(home, "statement", "verify", str(paths["re-signed"]),
                               "--label", key_to_text(mallory.public_key), "--json").stdout)
    assert shown["verified"] and shown["label"] == key_to_text(mallory.public_key)
    # Ada's trust store is unchanged by any of it.
    listed = json.loads(run_cli(home, "trust", "list", "--json").stdout)
    keys = [e["pk"] for e in (listed if isinstance(listed, list) else listed["trusted"])]
    assert keys == [key_to_text(label.public_key)]
