"""Prints, after a run, how many fuzzed inputs each parser took and its slowest one."""

from __future__ import annotations

import pytest

from tests.fuzz._harness import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    tr = terminalreporter
    tr.section("fuzzed parsers")
    for name, t in sorted(TALLY.items()):
        errors = ", ".join(f"{k} {v}" for k, v in sorted((t.errors or {}).items()))
        tr.write_line(f"{name:<22} {t.examples:>6} inputs, {t.accepted:>5} accepted, "
                      f"worst {t.worst * 1000:8.1f} ms; refused: {errors}")
