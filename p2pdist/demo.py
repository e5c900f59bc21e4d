"""`p2pdist demo`: the whole story on loopback, with real nodes as separate processes.

An artist publishes a CC work and seeds it; fan 1 fetches it; the artist goes offline;
fans 2 and 3 fetch it from fan 1 alone. Every downloader signs receipts for the verified
bytes each uploader sent; the demo ends with each node's credit, checked against what
the fans report. Every step is a real `p2pdist` command.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from p2pdist.errors import P2PDistError

__all__ = ["run_demo"]

PASSPHRASE = "demo passphrase (use a real one)"  # noqa: S105 - throw-away demo homes


def _free_port() -> int:
    """A free port whose successor (the node API's) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise P2PDistError("no two free consecutive ports on 127.0.0.1")


class _Demo:
    def __init__(self, console: Console, root: Path) -> None:
        self.console = console
        self.root = root
        self.env = {**os.environ, "P2PDIST_NETWORK": "local", "P2PDIST_PASSPHRASE": PASSPHRASE,
                    "COLUMNS": "160"}

    def cli(self, who: str, *args: str, timeout: float = 300, stdin: str | None = None
            ) -> Any:
        """Run one command (*stdin* on its standard input); its --json answer (an object
        or a list), else {}."""
        cmd = [sys.executable, "-m", "p2pdist", "--home", str(self.root / who), *args]
        line = escape(f"$ p2pdist --home {who} {' '.join(_short(a) for a in args)}")
        self.console.print(f"[dim]{line}[/]")
        cp = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout,
                            check=False, input=stdin)
        if cp.returncode != 0:
            raise P2PDistError(f"demo step failed ({who}): {cp.stderr.strip() or cp.stdout}")
        return json.loads(cp.stdout) if "--json" in args else {}

    @contextmanager
    def seeder(self, who: str, port: int, *peers: str) -> Iterator[None]:
        # The node API listens on the BitTorrent port + 1 (the default, made explicit).
        args = ["seed", "--local", "--listen", f"127.0.0.1:{port}", "--api-listen",
                f"127.0.0.1:{port + 1}", "--json"]
        for p in peers:
            args += ["--peer", p]
        line = escape(" ".join(["$ p2pdist --home", who, *args, "&"]))
        self.console.print(f"[dim]{line}[/]")
        proc = subprocess.Popen(
            [sys.executable, "-m", "p2pdist", "--home", str(self.root / who), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        try:
            stdout, stderr = proc.stdout, proc.stderr
            if stdout is None or stderr is None:
                raise TypeError("Popen without pipes")
            ready = ""
            while "}" not in ready:  # the ready line is one JSON object
                line = stdout.readline()
                if not line:
                    raise P2PDistError(f"{who}'s seeder did not start: {stderr.read()}")
                ready += line
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.console.print(f"[dim]  {who} stopped seeding (resume data saved)[/]")


def _short(a: str) -> str:
    return a[:48] + "…" if a.startswith("magnet:") else a


def _make_album(path: Path) -> None:
    rng = random.Random(2026)  # noqa: S311 - demo audio stand-ins, not secrets
    path.mkdir(parents=True)
    for i, (name, mib) in enumerate([("01 Dawn.flac", 6), ("02 Meridian.flac", 9),
                                     ("03 Dusk.flac", 5)]):
        (path / name).write_bytes(rng.randbytes(mib * 1024 * 1024 + 1234 * i))
    (path / "liner-notes.txt").write_text("First Light, by Ada. Recorded at home, 2026.\n")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def run_demo(console: Console, *, workdir: Path | None = None) -> None:
    """Run the story; raise P2PDistError if any step fails."""
    root = Path(tempfile.mkdtemp(prefix="p2pdist-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    try:
        _story(console, root)
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def _story(console: Console, root: Path) -> None:
    d = _Demo(console, root)
    console.rule("[bold]p2pdist demo: superdistribution on 127.0.0.1")
    album = root / "studio" / "First Light"
    _make_album(album)
    original = _digest(album)

    console.print("\n[bold]1. Ada, the artist, creates her identity and publishes a CC work")
    d.cli("ada", "init", "--name", "Ada")
    pub = d.cli("ada", "publish", str(album), "--title", "First Light", "--license",
                "CC-BY-SA-4.0", "--out", str(root / "first-light.torrent"), "--json")
    console.print(f"  magnet: {pub['magnet']}")
    for fan in ("fan1", "fan2", "fan3"):
        d.cli(fan, "init", "--name", fan.replace("fan", "Fan "))

    rows: list[tuple[str, dict[str, Any]]] = []
    ada_port, fan1_port = _free_port(), _free_port()
    names = {f"127.0.0.1:{ada_port}": "Ada", f"127.0.0.1:{fan1_port}": "Fan 1"}
    console.print("\n[bold]2. Ada seeds; Fan 1 fetches by magnet link (metadata over BEP 9)")
    with d.seeder("ada", ada_port):
        r = d.cli("fan1", "fetch", pub["magnet"], "--dest", str(root / "fan1-music"), "--local",
                  "--peer", f"127.0.0.1:{ada_port}", "--json")
        rows.append(("Fan 1", r))
        console.print(f"  verified: {r['license']['summary']}")

    console.print("\n[bold]3. Ada goes offline. Fans 2 and 3 fetch from Fan 1 alone")
    with d.seeder("fan1", fan1_port):
        for fan in ("fan2", "fan3"):
            r = d.cli(fan, "fetch", pub["magnet"], "--dest", str(root / f"{fan}-music"),
                      "--local", "--peer", f"127.0.0.1:{fan1_port}", "--json")
            rows.append((fan.replace("fan", "Fan "), r))
        live = d.cli("fan1", "status", "--json")
        console.print(f"  Fan 1's running node reports {live['credit']:,} bytes of credit "
                      "(p2pdist status)")

    t = Table(title="Who got what from whom", title_justify="left")
    for col in ("Fan", "Served by (verified bytes)", "License", "Seconds", "MB/s",
                "Identical"):
        t.add_column(col, justify="right" if col in ("Seconds", "MB/s") else "left")
    ok = True
    for fan, r in rows:
        match = _digest(Path(r["dest"]) / "First Light") == original
        ok &= match
        served = ", ".join(f"{names.get(p['peer'], p['peer'])} ({p['bytes']:,})"
                           for p in r["peers"]) or "?"
        t.add_row(fan, served, r["license"]["terms"]["spdx"], f"{r['seconds']:.2f}",
                  f"{r['rate'] / 1e6:.1f}", "[green]yes[/]" if match else "[red]NO[/]")
    console.print()
    console.print(t)
    if not ok:
        raise P2PDistError("a fan's copy differs from the original")
    console.print("[green]Every fan holds a byte-identical copy with a verified, signed license."
                  " Fans 2 and 3 never talked to Ada.[/]")

    _credits(d, pub, rows, {"Ada": "ada", "Fan 1": "fan1"},
             {v: k for k, v in names.items()})
    _paid(d, root)
    _label(d, root)


def _label(d: _Demo, root: Path) -> None:
    """The label collects every node's bundle, audits them and pays everyone."""
    console = d.console
    console.print("\n[bold]6. The label audits every node's receipts and pays everyone")
    d.cli("label", "init", "--name", "Label X")
    bundles = []
    for who in ("ada", "fan1", "fan2", "fan3"):
        b = root / "bundles" / f"{who}.p2pb"
        b.parent.mkdir(exist_ok=True)
        d.cli(who, "receipts", "export", "--out", str(b))
        bundles.append(str(b))
    works = ["--works", str(root / "first-light.torrent"), "--works",
             str(root / "night-songs.torrent")]
    report = d.cli("label", "audit", *bundles, *works, "--json")
    console.print(f"  audit: {report['counts']['bundles']} bundles, "
                  f"{report['counts']['receipts']} receipts, "
                  f"{report['counts']['payments']} payments, "
                  f"{len(report['findings'])} finding(s)")
    html = root / "statement.html"
    res = d.cli("label", "payouts", *bundles, *works, "--out", str(html), "--json")
    st = res["statement"]
    names = {d.cli(w, "whoami", "--json")["public_key"]: n
             for w, n in (("ada", "Ada"), ("fan1", "Fan 1"), ("fan2", "Fan 2"),
                          ("fan3", "Fan 3"), ("label", "Label X"))}
    t = Table(title="Payout statement (signed by Label X): who collected, who is owed, "
              "the net", title_justify="left")
    for col in ("Party", "Collected", "Owed", "Net", "Who pays whom"):
        t.add_column(col, justify="left" if col in ("Party", "Who pays whom") else "right")
    for p in st["parties"]:
        name = names.get(p["party"], p["party"][:16])
        f = p["formatted"]
        t.add_row(name, f["collected"], f["owed"], f["net"],
                  p["settles"].replace(p["fingerprint"], name))
    console.print(t)
    for h in st["held"]:
        console.print(escape(f"  held {h['formatted']} of {h['title']!r}: {h['why']}"))
    if not res["sums_exactly"]:
        raise P2PDistError("the statement does not sum to the money in")
    console.print("[green]Every cent is accounted for: the lines sum exactly to the money in."
                  f"[/]\n  report: {html}\n  signed statement: {res['signed']}")
    # Fan 1 trusts Label X's key (given to it by the label, not read from a statement):
    # a statement signed by any other key is refused.
    d.cli("fan1", "trust", "add", d.cli("label", "whoami", "--json")["public_key"],
          "--name", "Label X")
    d.cli("fan1", "statement", "verify", res["signed"])


def _paid(d: _Demo, root: Path) -> None:
    """A work for sale: fans carry the ciphertext, buyers unlock, carriers earn a share."""
    console = d.console
    console.print("\n[bold]5. Ada sells a work: 5.00 EUR, 15% of each sale to the fans "
                  "who carried it to that buyer")
    album = root / "studio" / "Night Songs"
    album.mkdir(parents=True)
    rng = random.Random(7)  # noqa: S311 - demo audio stand-ins, not secrets
    (album / "01 Nocturne.flac").write_bytes(rng.randbytes(3 * 1024 * 1024 + 77))
    (album / "02 Lullaby.flac").write_bytes(rng.randbytes(2 * 1024 * 1024))
    pub = d.cli("ada", "publish", str(album), "--title", "Night Songs", "--price", "5.00",
                "--currency", "EUR", "--redistributor-share", "1500", "--out",
                str(root / "night-songs.torrent"), "--json")
    codes = d.cli("ada", "vouchers", "issue", pub["work"], "--count", "2", "--json")["codes"]
    console.print(f"  two voucher codes for the merch table: {', '.join(codes)}")
    ada_port, fan1_port = _free_port(), _free_port()
    with d.seeder("ada", ada_port):
        d.cli("fan1", "fetch", pub["torrent"], "--dest", str(root / "fan1-night"), "--local",
              "--peer", f"127.0.0.1:{ada_port}", "--json")
        console.print("  Fan 1 holds the ciphertext: it can reseed it, not play it")
        b1 = d.cli("fan1", "buy", pub["work"], "--voucher", "-", "--seller",
                   f"127.0.0.1:{ada_port + 1}", "--json", stdin=codes[0] + "\n")
        with d.seeder("fan1", fan1_port):
            d.cli("fan2", "fetch", pub["torrent"], "--dest", str(root / "fan2-night"),
                  "--local", "--peer", f"127.0.0.1:{fan1_port}", "--json")
        b2 = d.cli("fan2", "buy", pub["work"], "--voucher", "-", "--seller",
                   f"127.0.0.1:{ada_port + 1}", "--json", stdin=codes[1] + "\n")
    d.cli("fan2", "unlock", pub["work"], "--dest", str(root / "fan2-night-plain"))
    if _digest(root / "fan2-night-plain" / "Night Songs") != _digest(album):
        raise P2PDistError("fan 2's unlocked copy differs from the original")
    fan1_pk = d.cli("fan1", "whoami", "--json")["public_key"]
    served = {s["pk"]: s["bytes"] for s in b2["served_by"]}
    if set(served) != {fan1_pk}:
        raise P2PDistError(f"fan 2's purchase should name fan 1 as its carrier: {served}")
    share = 500 * b2["redistributor_bps"] // 10_000  # one carrier: all of the share
    t = Table(title="Sales of Night Songs", title_justify="left")
    for col in ("Buyer", "Paid", "Carried by", "Carrier's share", "Rights holders"):
        t.add_column(col)
    ada_pk = d.cli("ada", "whoami", "--json")["public_key"]
    for who, b in (("Fan 1", b1), ("Fan 2", b2)):
        carriers = [("Fan 1" if s["pk"] == fan1_pk else "Ada" if s["pk"] == ada_pk
                     else s["pk"][:12]) for s in b["served_by"]]
        # With no p2pdist carrier the share returns to the rights holders.
        cut = share if carriers else 0
        t.add_row(who, b["price"], ", ".join(carriers) or "-",
                  f"{cut / 100:.2f} EUR", f"{(500 - cut) / 100:.2f} EUR")
    console.print(t)
    console.print(f"[green]Fan 2 unlocked a byte-identical copy. Fan 1 carried it, so Fan 1 "
                  f"earns {share / 100:.2f} EUR of Fan 2's 5.00 EUR as its redistributor.[/]")


def _credits(d: _Demo, pub: dict[str, Any], rows: list[tuple[str, dict[str, Any]]],
             homes: dict[str, str], endpoints: dict[str, str]) -> None:
    """Each uploader's credit (the receipts it holds) against what the fans say it sent."""
    console = d.console
    console.print("\n[bold]4. Every verified byte was acknowledged: each node's credit")
    t = Table(title="Credit: bytes acknowledged by signed receipts", title_justify="left")
    for col in ("Node", "Downloaders", "Credit", "Fans say it sent", "Match"):
        t.add_column(col, justify="left" if col in ("Node", "Match") else "right")
    ok = True
    for name, home in homes.items():
        held = [r for r in d.cli(home, "receipts", "list", "--work", pub["work"], "--json")
                if r["direction"] == "received"]
        credit = sum(int(r["bytes"]) for r in held)
        sent = sum(int(p["bytes"]) for _, r in rows for p in r["peers"]
                   if p["peer"] == endpoints[name])
        ok &= credit == sent
        t.add_row(name, str(len(held)), f"{credit:,}", f"{sent:,}",
                  "[green]yes[/]" if credit == sent else "[red]NO[/]")
    console.print(t)
    if not ok:
        raise P2PDistError("a node's credit differs from the bytes it served")
    console.print(f"[green]Ada's credit is Fan 1's download ({pub['size']:,} bytes); Fan 1's "
                  "is what Fans 2 and 3 got from it. Export them with: "
                  "p2pdist receipts export --out FILE[/]")
