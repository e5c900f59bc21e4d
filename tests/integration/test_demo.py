"""`p2pdist demo` is the story a newcomer runs first: it must keep working."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_demo_runs_the_whole_story_and_the_credits_add_up(tmp_path: Path) -> None:
    cp = run_cli(tmp_path / "unused-home", "demo", "--workdir", str(tmp_path / "demo"),
                 timeout=300)
    assert "Fans 2 and 3 never talked to Ada" in cp.stdout
    assert "Ada's credit is Fan 1's download" in cp.stdout
    assert "NO" not in cp.stdout
    assert "Fan 1 carried it, so Fan 1 earns 0.75 EUR" in cp.stdout
    assert "Every cent is accounted for" in cp.stdout
    assert "statement.html" in cp.stdout
    # The statement is a settlement: who collected, who is owed, the net, and the fan
    # that checks it trusts the label's key.
    assert "who collected, who is owed" in cp.stdout
    assert "the label pays Fan 1" in cp.stdout and "pays the label" in cp.stdout
    assert "trust add" in cp.stdout
