"""Bad input a real user types: a one-line error with a remedy, the right exit code, no
traceback, nothing written. Regression tests for an adversarial review of the CLI."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, run_cli
from tests.integration._story import Seeder, digests, make_album, publish

MiB = 1024 * 1024


def _clean_error(cp: object, code: int) -> None:
    assert cp.returncode == code, (cp.stdout, cp.stderr)  # type: ignore[attr-defined]
    assert "Traceback" not in cp.stderr  # type: ignore[attr-defined]
    assert "error:" in cp.stderr  # type: ignore[attr-defined]


@pytest.fixture
def album(tmp_path: Path) -> Path:
    return make_album(tmp_path / "studio" / "First Light", [MiB + 3, 5000])


@pytest.mark.parametrize("peer", ["abc", "999.1.1.1:80", "1:2:3:4", "127.0.0.1:99999",
                                  "127.0.0.1:0", "127.0.0.1:٣"])
def test_garbage_peer_is_a_usage_error_not_a_crash(tmp_path: Path, album: Path, peer: str
                                                   ) -> None:
    pub = publish(tmp_path / "ada", album)
    cp = run_cli(tmp_path / "fan", "fetch", pub["torrent"], "--dest", str(tmp_path / "d"),
                 "--local", "--peer", peer, check=False)
    _clean_error(cp, 1)
    assert "--peer" in cp.stderr
    assert not (tmp_path / "d").exists()


def test_peer_named_localhost_works(tmp_path: Path, album: Path) -> None:
    pub = publish(tmp_path / "ada", album)
    port = free_port()
    with Seeder(tmp_path / "ada", port):
        run_cli(tmp_path / "fan", "fetch", pub["magnet"], "--dest", str(tmp_path / "d"),
                "--local", "--peer", f"localhost:{port}")
    assert digests(tmp_path / "d" / "First Light") == digests(album)


def test_listen_port_in_use_is_an_error_not_another_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cp = run_cli(tmp_path / "ada", "seed", "--local", "--listen", f"127.0.0.1:{port}",
                     "--json", check=False, timeout=30)
    _clean_error(cp, 1)
    assert f"{port}" in cp.stderr


def test_listen_off_loopback_is_refused_in_the_local_profile(tmp_path: Path) -> None:
    cp = run_cli(tmp_path / "ada", "seed", "--local", "--listen", "10.1.2.3:6881",
                 check=False, timeout=30)
    _clean_error(cp, 1)
    assert "loopback" in cp.stderr


def test_fetch_never_silently_overwrites_files_in_dest(tmp_path: Path, album: Path) -> None:
    pub = publish(tmp_path / "ada", album)
    mine = tmp_path / "d" / "First Light" / "02 track.flac"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own notes")
    port = free_port()
    with Seeder(tmp_path / "ada", port):
        cp = run_cli(tmp_path / "fan", "fetch", pub["magnet"], "--dest", str(tmp_path / "d"),
                     "--local", "--peer", f"127.0.0.1:{port}", check=False)
        _clean_error(cp, 1)
        assert "--overwrite" in cp.stderr
        assert mine.read_text() == "my own notes"
        run_cli(tmp_path / "fan", "fetch", pub["magnet"], "--dest", str(tmp_path / "d"),
                "--local", "--peer", f"127.0.0.1:{port}", "--overwrite")
    assert digests(tmp_path / "d" / "First Light") == digests(album)


def test_magnet_with_no_way_to_find_peers_fails_at_once(tmp_path: Path, album: Path) -> None:
    pub = publish(tmp_path / "ada", album)
    started = time.monotonic()
    cp = run_cli(tmp_path / "fan", "fetch", pub["magnet"], "--dest", str(tmp_path / "d"),
                 "--local", check=False)
    _clean_error(cp, 1)
    assert time.monotonic() - started < 10
    assert "--peer" in cp.stderr


@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 10, b"d4:infoi1ee"],
                         ids=["empty", "random", "info-not-a-dict"])
def test_a_file_that_is_not_a_torrent_is_an_input_error(tmp_path: Path, content: bytes
                                                        ) -> None:
    bad = tmp_path / "x.torrent"
    bad.write_bytes(content)
    cp = run_cli(tmp_path / "fan", "fetch", str(bad), "--dest", str(tmp_path / "d"),
                 "--local", "--peer", "127.0.0.1:1", check=False)
    _clean_error(cp, 1)
    assert not (tmp_path / "d").exists()


def test_json_mode_reports_failures_as_json(tmp_path: Path) -> None:
    cp = run_cli(tmp_path / "nobody", "whoami", "--json", check=False)
    assert cp.returncode == 1
    report = json.loads(cp.stdout)
    assert report["ok"] is False and report["kind"] == "NoIdentity"
    assert "p2pdist init" in report["remedy"]


@pytest.mark.parametrize("name", ["Ada\u202eevil", "Ada\u200b", "A\x7fda", "", " "],
                         ids=["bidi-override", "zero-width", "delete", "empty", "blank"])
def test_names_that_hide_characters_are_refused(tmp_path: Path, name: str) -> None:
    cp = run_cli(tmp_path / "ada", "init", "--name", name, check=False)
    _clean_error(cp, 1)
    assert not (tmp_path / "ada" / "identity.key").exists()


def test_bad_creator_fails_before_hashing(tmp_path: Path, album: Path) -> None:
    run_cli(tmp_path / "ada", "init", "--name", "Ada")
    cp = run_cli(tmp_path / "ada", "publish", str(album), "--title", "T", "--license",
                 "cc-by-4.0", "--creator", "a\tb", "--out", str(tmp_path / "t.torrent"),
                 check=False)
    _clean_error(cp, 1)
    assert not (tmp_path / "t.torrent").exists()


def test_out_into_a_file_path_is_a_clear_error(tmp_path: Path, album: Path) -> None:
    run_cli(tmp_path / "ada", "init", "--name", "Ada")
    (tmp_path / "afile").write_text("x")
    cp = run_cli(tmp_path / "ada", "publish", str(album), "--title", "T", "--license",
                 "CC0-1.0", "--out", str(tmp_path / "afile" / "t.torrent"), check=False)
    _clean_error(cp, 1)
