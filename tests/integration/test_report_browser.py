"""The payout report in a real browser: headless Chromium opens the one HTML file from
disk, with no network, and draws both charts.

Needs Debian's ``chromium`` package (the binary ``chromium``, or
``chromium-headless-shell``); skipped, saying so, where neither is installed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import nacl.signing
import pytest

from p2pdist.licensing import CCTerms, PaidTerms
from p2pdist.payouts.receipts import TransferReceipt
from p2pdist.payouts.report import to_html
from p2pdist.payouts.statement import Period, Pool, Sale, StatementWork, compute_statement

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-headless-shell",
                                                         "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install "
    "chromium)")

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _pk(seed: int) -> bytes:
    return bytes(nacl.signing.SigningKey(bytes([seed]) * 32).verify_key)


def _report(tmp_path: Path) -> Path:
    label, ada, bo, fan1, fan2, thief = (_pk(s) for s in range(1, 7))
    song, free = hashlib.sha256(b"song").digest(), hashlib.sha256(b"free").digest()
    copy = hashlib.sha256(b"copy").digest()
    works = {
        song: StatementWork("Song for a <b>browser</b>", PaidTerms(500, "EUR", 1500, (ada,)),
                            ((ada, 6000), (bo, 4000)), 1000),
        free: StatementWork("Free song", CCTerms("CC-BY-4.0"), ((ada, 10_000),), 1000),
        copy: StatementWork("Free song (my version)", CCTerms("CC0-1.0"),
                            ((thief, 10_000),), 1000),
    }
    sales = [Sale(song, _pk(20 + i), ada, 500, "EUR", T0 + timedelta(days=i),
                  hashlib.sha256(b"request %d" % i).digest(),
                  ((fan1, 300 + i), (fan2, 100)) if i % 2 else ()) for i in range(6)]
    transfers = [TransferReceipt(copy if i == 11 else free, fan1 if i % 3 else fan2,
                                 _pk(40 + i), 1, 1000, T0 + timedelta(days=i // 2))
                 for i in range(12)]
    st = compute_statement(label=label, works=works, sales=sales, transfers=transfers,
                           pool=Pool(2500, "EUR"), period=Period(T0, T0 + timedelta(days=31)),
                           disputed={free, copy})
    page = tmp_path / "statement.html"
    page.write_text(to_html(st, [{"kind": "suspected-sybil", "message": "five keys",
                                  "evidence": {"count": 5}}]), "utf-8")
    return page


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, timeout=180, check=True, cwd=tmp_path)


class _Charts(HTMLParser):
    """Counts the drawing elements inside each <svg id=...> of the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.elements: dict[str, Counter[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        chart = self.stack[-1] if self.stack else None
        if tag == "svg":
            chart = dict(attrs).get("id")
            self.elements.setdefault(chart or "?", Counter())
        elif chart is not None:
            self.elements[chart][tag] += 1
        self.stack.append(chart)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()


def test_report_opens_offline_in_chromium_with_both_charts(tmp_path: Path) -> None:
    page = _report(tmp_path)
    shot = tmp_path / "statement.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000, len(data)  # a blank 1280x2000 page is a few KB
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        # Text, two charts' bars, lines and axes: hundreds of colours, not a blank page.
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or ()) > 200

    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout.decode("utf-8")
    charts = _Charts()
    charts.feed(dom)
    money, spread = charts.elements["chart-money"], charts.elements["chart-spread"]
    assert money["path"] > 20 and money["g"] > 10, money  # bars, ticks, glyphs
    assert spread["path"] > 20 and spread["use"] > 0, spread  # lines, markers
    assert "Song for a &lt;b&gt;browser&lt;/b&gt;" in dom  # escaped, not markup
    assert "suspected-sybil" in dom
    # The settlement: Ada collected the sales and pays the label what others are owed;
    # the pool's money for the disputed works is held, and says why.
    assert 'id="settlement-table"' in dom and "pays the label" in dom
    assert 'id="held-table"' in dom and "held until the label decides" in dom
