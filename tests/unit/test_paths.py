"""p2pdist/_paths.py: the one rule for a work's file names, by named bad input and by
property (every name it accepts, libtorrent writes exactly as named)."""

from __future__ import annotations

import hashlib
import unicodedata
import warnings

import libtorrent as lt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist._paths import MAX_COMPONENT_BYTES, MAX_PATH_BYTES, name_problem, paths_problem

REFUSED_NAMES = {
    "empty": "", "dot": ".", "dot-dot": "..", "hidden": ".bashrc", "slash": "a/b",
    "absolute": "/etc", "backslash": "..\\x", "drive": "C:\\x", "drive-relative": "C:x",
    "nul": "a\0b", "newline": "a\nb", "escape": "\x1b[2J", "bidi-override": "\u202egalf.exe",
    "bidi-isolate": "a\u2066b", "lrm": "a\u200eb", "zero-width-space": "a\u200bb",
    "zero-width-joiner": "a\u200db", "bom": "\ufeffa", "line-separator": "a\u2028b",
    "lone-surrogate": "a\udc80", "colon-stream": "a.flac:x", "question": "why?",
    "star": "*", "pipe": "a|b", "quote": 'a"b', "lt": "<a", "gt": "a>",
    "trailing-dot": "a.", "trailing-space": "a ", "CON": "CON", "con-lower": "con",
    "NUL-ext": "NUL.txt", "aux-double-ext": "aux.tar.gz", "PRN": "Prn", "COM1": "COM1",
    "COM9": "com9.flac", "COM-superscript": "COM\u00b9", "LPT1": "LPT1", "LPT0": "lpt0",
    "reserved-space-ext": "CON .txt", "CONIN": "CONIN$", "too-long": "a" * 241,
    "too-long-multibyte": "\u00e9" * 121,
}
ACCEPTED_NAMES = {
    "plain": "01 Song.flac", "dots-inside": "a..b", "not-reserved": "CONSOLE.txt",
    "com10": "COM10", "leading-space": " a", "unicode": "Caf\u00e9 \u266b \u65e5\u672c",
    "emoji": "\U0001f3b5.flac", "at-limit": "a" * MAX_COMPONENT_BYTES,
    "at-limit-multibyte": "\u00e9" * 120, "percent-hash": "100% #1 ~ & $.txt",
}


@pytest.mark.parametrize("name", REFUSED_NAMES.values(), ids=REFUSED_NAMES.keys())
def test_unsafe_name_is_refused(name: str) -> None:
    assert name_problem(name) is not None
    assert paths_problem([("Album", name)]) is not None


@pytest.mark.parametrize("name", ACCEPTED_NAMES.values(), ids=ACCEPTED_NAMES.keys())
def test_portable_name_is_accepted(name: str) -> None:
    assert name_problem(name) is None
    assert paths_problem([("Album", name)]) is None


@pytest.mark.parametrize("paths", [
    [("a", "b"), ("a", "b")],
    [("a", "Song.flac"), ("a", "song.flac")],
    [("a", "STRASSE"), ("a", "stra\u00dfe")],
    [("a", unicodedata.normalize("NFC", "\u00e9")), ("a", unicodedata.normalize("NFD", "\u00e9"))],
    [("a", "b"), ("a", "b", "c")],
    [("a",), ("A", "c")],
    [()],
    [("d",) * 65],
    [("a", *(["b" * 200] * 6))],
], ids=["twice", "case", "casefold", "nfc-nfd", "file-is-folder", "top-file-is-folder-case",
        "no-name", "too-deep", "too-long-path"])
def test_file_list_that_one_disk_would_confuse_is_refused(paths: list[tuple[str, ...]]
                                                          ) -> None:
    assert paths_problem(paths) is not None


def test_limits_hold_at_the_boundary() -> None:
    assert paths_problem([("d",) * 64]) is None
    parts = ["b" * 200] * 5
    fits = ("a" * (MAX_PATH_BYTES - len("/".join(parts)) - 1), *parts)
    assert len("/".join(fits).encode()) == MAX_PATH_BYTES
    assert paths_problem([fits]) is None
    assert paths_problem([("x" + fits[0], *parts)]) is not None


def _libtorrent_path(name: str) -> str:
    info = {"name": b"A", "piece length": 16384, "pieces": hashlib.sha1(b"x").digest(),  # noqa: S324
            "files": [{"length": 1, "path": [name.encode()]}]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ti = lt.torrent_info(lt.bdecode(_canonical.encode({"info": info})))  # type: ignore[arg-type]
        return str(ti.files().file_path(0)).removeprefix("A/")


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.one_of(st.text(min_size=1, max_size=40),
                 st.text(st.characters(codec="utf-8"), min_size=230, max_size=240)))
def test_every_name_the_rule_accepts_libtorrent_writes_verbatim(name: str) -> None:
    # Otherwise the file on disk is not the one the license names, and unlock misses it.
    if name_problem(name) is None:
        assert _libtorrent_path(name) == name


def test_libtorrent_rewrites_a_name_just_over_the_limit() -> None:
    # Why the limit is 240 and not the file systems' 255.
    assert _libtorrent_path("a" * 241) != "a" * 241
    assert _libtorrent_path("a" * 240) == "a" * 240
