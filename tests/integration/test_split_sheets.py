"""Co-signed split sheets: a work with several rights holders is published only once every
holder signed the same manifest bytes."""

from __future__ import annotations

import json
from pathlib import Path

from p2pdist import _canonical
from p2pdist.identity import load_public_identity
from tests.conftest import run_cli
from tests.integration._story import make_album

MiB = 1024 * 1024


def _homes(tmp_path: Path) -> tuple[Path, Path, Path, str, str]:
    ada, grace, mallory = tmp_path / "ada", tmp_path / "grace", tmp_path / "mallory"
    for h in (ada, grace, mallory):
        run_cli(h, "init", "--name", h.name)
    return (ada, grace, mallory, load_public_identity(ada).key_text,
            load_public_identity(grace).key_text)


def test_every_holder_cosigns_then_the_work_publishes(tmp_path: Path) -> None:
    ada, grace, mallory, a, g = _homes(tmp_path)
    album = make_album(tmp_path / "studio" / "Duet", [MiB + 7, 3000])
    draft = tmp_path / "duet.p2pm"
    d = json.loads(run_cli(ada, "publish", str(album), "--title", "Duet", "--license",
                           "CC-BY-4.0", "--split", f"{a}=6000", "--split", f"{g}=4000",
                           "--draft", str(draft), "--json").stdout)
    assert (d["signed"], d["missing"]) == ([a], [g])
    # Not yet: a holder is missing. Exit 3, nothing written.
    out = tmp_path / "duet.torrent"
    cp = run_cli(ada, "publish", "--manifest", str(draft), str(album), "--out", str(out),
                 check=False)
    assert cp.returncode == 3 and g in cp.stderr and not out.exists()
    # Someone who holds no share cannot sign it.
    cp = run_cli(mallory, "license", "cosign", str(draft), check=False)
    assert cp.returncode == 1 and "no share" in cp.stderr
    assert json.loads(run_cli(grace, "license", "cosign", str(draft), "--json").stdout)[
        "missing"] == []
    pub = json.loads(run_cli(ada, "publish", "--manifest", str(draft), str(album), "--out",
                             str(out), "--json").stdout)
    shown = json.loads(run_cli(ada, "license", "show", str(out), "--json").stdout)
    assert {(s["pk"], s["bps"]) for s in shown["splits"]} == {(a, 6000), (g, 4000)}
    assert {s["pk"] for s in shown["signers"]} == {a, g}
    assert pub["work"] == shown["work"]


def test_a_paid_work_with_two_holders_is_drafted_cosigned_and_sold(tmp_path: Path) -> None:
    ada, grace, _, a, g = _homes(tmp_path)
    album = make_album(tmp_path / "studio" / "Band", [MiB])
    draft = tmp_path / "band.p2pm"
    run_cli(ada, "publish", str(album), "--title", "Band", "--price", "9.99", "--currency",
            "USD", "--split", f"{a}=5000", "--split", f"{g}=5000", "--draft", str(draft))
    run_cli(grace, "license", "cosign", str(draft))
    pub = json.loads(run_cli(ada, "publish", "--manifest", str(draft), str(album), "--out",
                             str(tmp_path / "band.torrent"), "--json").stdout)
    # The drafting node re-encrypted with the drafted key: it holds the key and can sell.
    codes = json.loads(run_cli(ada, "vouchers", "issue", pub["work"], "--count", "1",
                               "--json").stdout)["codes"]
    assert len(codes) == 1
    run_cli(ada, "license", "verify", str(tmp_path / "band.torrent"))


def test_forged_or_wrong_drafts_are_refused(tmp_path: Path) -> None:
    ada, grace, _, a, g = _homes(tmp_path)
    album = make_album(tmp_path / "studio" / "Duet", [MiB])
    draft = tmp_path / "duet.p2pm"
    # Splits that do not sum to 10000 are refused before any hashing.
    cp = run_cli(ada, "publish", str(album), "--title", "Duet", "--license", "CC0-1.0",
                 "--split", f"{a}=6000", "--split", f"{g}=3000", "--draft", str(draft),
                 check=False)
    assert cp.returncode == 1 and "10000" in cp.stderr and not draft.exists()
    run_cli(ada, "publish", str(album), "--title", "Duet", "--license", "CC0-1.0",
            "--split", f"{a}=6000", "--split", f"{g}=4000", "--draft", str(draft))
    run_cli(grace, "license", "cosign", str(draft))
    # A forged split sheet: Ada's share raised after Grace signed. Refused, exit 3.
    doc = _canonical.decode(draft.read_bytes(), max_size=1 << 22)
    assert isinstance(doc, dict)
    forged = dict(doc)
    forged["manifest"] = doc["manifest"].replace(b"i6000e", b"i7000e").replace(
        b"i4000e", b"i3000e")
    bad = tmp_path / "forged.p2pm"
    bad.write_bytes(_canonical.encode(forged))
    cp = run_cli(ada, "publish", "--manifest", str(bad), str(album), "--out",
                 str(tmp_path / "f.torrent"), check=False)
    assert cp.returncode == 3 and not (tmp_path / "f.torrent").exists()
    # Other files than the drafted ones: refused, exit 3.
    other = make_album(tmp_path / "studio2" / "Duet", [MiB], seed=8)
    cp = run_cli(ada, "publish", "--manifest", str(draft), str(other), "--out",
                 str(tmp_path / "o.torrent"), check=False)
    assert cp.returncode == 3 and "not the work the draft was made of" in cp.stderr
    assert not (tmp_path / "o.torrent").exists()
