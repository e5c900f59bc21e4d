"""The threat model names the tests that show each defence: each one must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THREAT_MODEL = ROOT / "docs" / "threat-model.md"


def test_every_test_the_threat_model_names_exists() -> None:
    text = THREAT_MODEL.read_text(encoding="utf-8")
    refs = re.findall(r"`((?:unit|integration|fuzz)/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(refs) > 40, "the threat model names its tests as `DIR/FILE.py::TEST`"
    missing = []
    for path, name in refs:
        source = ROOT / "tests" / path
        if not source.is_file():
            missing.append(path)
        elif name and not re.search(rf"^def {name}\(", source.read_text(encoding="utf-8"),
                                    re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/threat-model.md names tests that do not exist: {missing}"


def test_the_readme_links_the_threat_model() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/threat-model.md)" in readme
