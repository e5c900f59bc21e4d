"""Two commands racing for one file: "never overwrites" holds, and nothing is lost.

Real `p2pdist` processes started at once. Of several `init` in one home, one makes the
key and the others fail with IdentityExists (exit 1): the key on disk is the one the
winner printed. Of two `vouchers issue` into one --out, one writes its codes and the
other fails, and the voucher book holds exactly the codes in that CSV.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from p2pdist.identity import load_public_identity
from p2pdist.payouts.vouchers import ID_BYTES, code_hash
from tests.conftest import run_cli, start_cli
from tests.integration._story import make_album


def _race(*commands: tuple[Path, tuple[str, ...]]) -> list[tuple[int, str, str]]:
    procs: list[subprocess.Popen[str]] = [start_cli(home, *args) for home, args in commands]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append((p.returncode, stdout, stderr))
    return out


def test_concurrent_inits_make_one_key_and_the_printed_key_is_kept(tmp_path: Path) -> None:
    for round_ in range(2):
        home = tmp_path / f"home{round_}"
        results = _race(*[(home, ("init", "--name", f"Ada {i}", "--json")) for i in range(6)])
        winners = [json.loads(o) for rc, o, _ in results if rc == 0]
        assert len(winners) == 1, results
        for rc, stdout, stderr in results:
            if rc != 0:
                assert rc == 1, stderr
                assert json.loads(stdout)["kind"] == "IdentityExists", stdout
                assert "Traceback" not in stderr
        on_disk = load_public_identity(home)
        assert (on_disk.key_text, on_disk.name) == (winners[0]["public_key"],
                                                    winners[0]["name"])
        # It opens with the passphrase: the key file is whole, not a mix of two.
        run_cli(home, "ledger", "verify")


def test_two_voucher_issues_into_one_csv_leave_no_code_outside_it(tmp_path: Path) -> None:
    artist = tmp_path / "ada"
    run_cli(artist, "init", "--name", "Ada")
    album = make_album(tmp_path / "studio" / "Night", [50_000])
    work = json.loads(run_cli(artist, "publish", str(album), "--title", "Night", "--price",
                              "5.00", "--currency", "EUR", "--out",
                              str(tmp_path / "night.torrent"), "--json").stdout)["work"]
    for round_ in range(1):
        csv_path = tmp_path / f"codes{round_}.csv"
        before = {r["id"] for r in json.loads(
            run_cli(artist, "vouchers", "list", work, "--json").stdout)}
        # Big batches, so that each racer spends a while between its check and its write.
        results = _race(*[(artist, ("vouchers", "issue", work, "--count", "20000", "--out",
                                    str(csv_path), "--json"))] * 4)
        winners = [json.loads(o) for rc, o, _ in results if rc == 0]
        assert len(winners) == 1, [(rc, err) for rc, _, err in results]
        for rc, stdout, stderr in results:
            if rc != 0:
                assert rc == 1 and "exists" in json.loads(stdout)["error"], stderr
        in_csv = [line.split(",")[0] for line in csv_path.read_text().splitlines()[1:]]
        assert sorted(in_csv) == sorted(winners[0]["codes"]) and len(in_csv) == 20000
        after = {r["id"] for r in json.loads(
            run_cli(artist, "vouchers", "list", work, "--json").stdout)}
        assert after - before == {code_hash(c)[:ID_BYTES].hex() for c in in_csv}
