"""Review findings in the label's commands, end to end."""

from __future__ import annotations

from pathlib import Path

from p2pdist.identity import load_public_identity
from tests.conftest import run_cli


def test_certify_until_the_last_representable_day_is_not_a_traceback(tmp_path: Path) -> None:
    label, ada = tmp_path / "label", tmp_path / "ada"
    for h in (label, ada):
        run_cli(h, "init", "--name", h.name)
    key = load_public_identity(ada).key_text
    cp = run_cli(label, "certify", key, "--name", "Ada", "--expires", "9999-12-31",
                 "--out", str(tmp_path / "ada.p2pc"), check=False)
    assert "Traceback" not in cp.stderr, cp.stderr
    assert cp.returncode in (0, 1), cp.stderr
