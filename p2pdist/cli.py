"""The p2pdist command line: parse, make one library call, render. No logic here.

libtorrent is imported lazily (through p2pdist.node) so that `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console, ConsoleOptions, RenderableType
from rich.errors import ConsoleError, StyleError
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from p2pdist import __version__
from p2pdist._text import hidden, replace_hidden, shown
from p2pdist.errors import P2PDistError, PassphraseError

if TYPE_CHECKING:
    from p2pdist.node import Node, WorkSnapshot
    from p2pdist.swarm import Profile

app = typer.Typer(
    name="p2pdist",
    help="Peer-to-peer superdistribution: publish, fetch and reseed license-signed works "
    "over BitTorrent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
license_app = typer.Typer(help="Show or verify the signed license of a work.",
                          no_args_is_help=True)
app.add_typer(license_app, name="license")
receipts_app = typer.Typer(help="Signed transfer receipts in this node's ledger.",
                           no_args_is_help=True)
app.add_typer(receipts_app, name="receipts")
ledger_app = typer.Typer(help="This node's append-only ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
vouchers_app = typer.Typer(help="Single-use voucher codes for the works you sell.",
                           no_args_is_help=True)
app.add_typer(vouchers_app, name="vouchers")
trust_app = typer.Typer(help="The keys you trust: artists and labels.", no_args_is_help=True)
app.add_typer(trust_app, name="trust")
statement_app = typer.Typer(help="Payout statements signed by a label.", no_args_is_help=True)
app.add_typer(statement_app, name="statement")
label_app = typer.Typer(help="A label's signed decisions on the works it pays (its other "
                        "commands: certify, audit, payouts).", no_args_is_help=True)
app.add_typer(label_app, name="label")


class _PlainConsole(Console):
    """A console for text that may hold what a peer, a seller or a signer wrote.

    Strings are never read as markup or emoji codes (styles come from Text parts), and no
    control or format character reaches the terminal: outside text is escaped and capped
    where it is shown (``_s``), and ``render`` replaces whatever hidden character is
    left, in any renderable (tables, progress bars), one for one.
    """

    def render(self, renderable: RenderableType,
               options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for seg in super().render(renderable, options):
            # A control segment is rich's own (cursor moves of a live display), and so
            # are the line breaks of its layout; outside text never brings one (_s).
            if seg.control is None and not seg.text.isprintable() \
                    and any(hidden(c) and c != "\n" for c in seg.text):
                yield Segment(replace_hidden(seg.text, keep="\n"), seg.style)
            else:
                yield seg


# soft_wrap: a path in a message or a remedy must stay copy-pasteable on one line
out = _PlainConsole(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = _PlainConsole(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
# What a rendering bug raises: main turns it into one line, never a traceback.
RENDER_ERRORS = (ConsoleError, StyleError)


def _s(value: object, cap: int = 200) -> str:
    """Text from outside (a title, a name, a peer's client string, a seller's words) as
    it may be shown: hidden characters escaped visibly, at most *cap* characters."""
    return shown(value, cap=cap)


def _line(*parts: str | tuple[str, str]) -> Text:
    """One line of output from plain strings and (text, style) pairs: styled, never
    parsed as markup."""
    return Text.assemble(*parts)


class _State:
    home: Path | None = None
    passphrase_file: Path | None = None


STATE = _State()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
LocalOpt = Annotated[
    bool,
    typer.Option("--local", help="Loopback only: bind 127.0.0.1; no DHT, LSD, UPnP, NAT-PMP. "
                 "Also set by P2PDIST_NETWORK=local."),
]
UpLimitOpt = Annotated[
    int, typer.Option("--upload-limit", min=0,
                      help="Upload at most this many KiB/s (0: no limit).")
]
DownLimitOpt = Annotated[
    int, typer.Option("--download-limit", min=0,
                      help="Download at most this many KiB/s (0: no limit).")
]
PeerOpt = Annotated[
    list[str] | None,
    typer.Option("--peer", help="Connect to this peer (HOST:PORT). Repeatable."),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"p2pdist {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="P2PDIST_HOME",
                     help="Node home: identity, library, resume data. "
                     "Default: the platform's user data dir."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help="Read the key passphrase from this file "
                     "(else P2PDIST_PASSPHRASE, else a prompt)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    STATE.home = home
    STATE.passphrase_file = passphrase_file


def _home() -> Path:
    from p2pdist.library import resolve_home

    return resolve_home(STATE.home)


def _passphrase(*, confirm: bool = False) -> str:
    env = os.environ.get("P2PDIST_PASSPHRASE")
    if env is not None:
        return env
    if STATE.passphrase_file is not None:
        try:
            return STATE.passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise PassphraseError(f"cannot read {STATE.passphrase_file}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise PassphraseError(f"{STATE.passphrase_file} is not UTF-8 text",
                                  remedy="put the passphrase in the file as plain text") from None
    if not sys.stdin.isatty():
        raise PassphraseError("no passphrase given and no terminal to ask in")
    return str(typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm,
                            err=True))


def _unlock() -> Any:
    from p2pdist.identity import load_identity

    return load_identity(_home(), passphrase=_passphrase())


def _node_identity() -> Any:
    """This node's unlocked identity, or None when `init` was never run here."""
    from p2pdist.identity import KEYFILE_NAME

    # lexists: a key file that is a broken link is an error, not "no identity here".
    return _unlock() if os.path.lexists(_home() / KEYFILE_NAME) else None


ApiListenOpt = Annotated[
    str | None,
    typer.Option("--api-listen", help="HOST:PORT for the node API (default: the BitTorrent "
                 "port + 1 on the same host)."),
]


ExternalAddressOpt = Annotated[
    list[str] | None,
    typer.Option("--external-address", metavar="HOST",
                 help="Your public IP address, where peers reach your node API (behind a "
                 "NAT, with its API port forwarded): identity proofs vouch for your key "
                 "there too. Repeatable (IPv4 and IPv6). Without it a node proves its key "
                 "only on the addresses it listens on; it never signs an address that "
                 "peers report."),
]


def _api_listen(text: str | None, profile: Profile) -> tuple[str, int] | None:
    from p2pdist.swarm import parse_endpoint
    from p2pdist.swarm._settings import check_bind

    if not text:
        return None
    host, port = parse_endpoint(text, option="--api-listen", allow_zero=True)
    check_bind(profile, host, option="--api-listen")
    return host, port


def _profile(local: bool) -> Profile:
    from p2pdist.swarm import profile_from_env

    return profile_from_env(local)


def _endpoints(peers: list[str] | None) -> list[tuple[str, int]]:
    from p2pdist.swarm import parse_endpoint

    return [parse_endpoint(p) for p in peers or []]


def _emit(obj: object) -> None:
    # One object per line, so a long-running command's output is JSON Lines.
    sys.stdout.write(_json_text(obj) + "\n")
    sys.stdout.flush()


def _json_text(obj: object) -> str:
    """*obj* as one line of JSON that is safe on a terminal.

    json.dumps escapes C0 controls only: DEL, C1 controls (U+009B is a CSI), bidi
    overrides, zero-width characters and lone surrogates would go out as they are. They
    are written as \\u escapes instead, which JSON reads back as the same string.
    """
    text = json.dumps(obj, ensure_ascii=False)
    if text.isprintable():  # at C speed: no hidden character (nor a space but " ")
        return text
    return "".join(_json_escape(c) if hidden(c) else c for c in text)


def _json_escape(c: str) -> str:
    n = ord(c)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters past the BMP
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# -- identity ------------------------------------------------------------------------------


@app.command()
def init(
    name: Annotated[str, typer.Option("--name", help="Your name as fans will see it.")],
    kdf: Annotated[str, typer.Option(
        "--kdf", envvar="P2PDIST_KDF",
        help="The passphrase's argon2id cost: moderate (0.5 s and 256 MiB per unlock, "
             "the default) or interactive (0.1 s and 64 MiB, for a seed box with "
             "little memory; 5x cheaper to guess).")] = "moderate",
    json_out: JsonOpt = False,
) -> None:
    """Create this node's ed25519 identity, sealed with a passphrase."""
    from p2pdist.errors import InputError
    from p2pdist.identity import KDF_COSTS, KEYFILE_NAME, create_identity

    home = _home()
    if kdf not in KDF_COSTS:
        raise InputError(f"no KDF cost named {_s(kdf)!r}",
                         remedy=f"use --kdf {' or '.join(KDF_COSTS)}")
    if (home / KEYFILE_NAME).exists():
        from p2pdist.errors import IdentityExists

        raise IdentityExists(f"an identity already exists at {home / KEYFILE_NAME}")
    opslimit, memlimit = KDF_COSTS[kdf]
    ident = create_identity(home, name=name, passphrase=_passphrase(confirm=True),
                            opslimit=opslimit, memlimit=memlimit)
    if json_out:
        _emit({**ident.public.to_dict(), "home": str(home)})
        return
    out.print(_line("Created identity ", (_s(ident.name), "bold"), f" in {_s(home, 4096)}"))
    out.print(f"  key          {ident.public.key_text}")
    out.print(f"  fingerprint  {ident.public.fingerprint}")


@app.command()
def whoami(json_out: JsonOpt = False) -> None:
    """Show this node's name, public key and fingerprint."""
    from p2pdist.identity import load_public_identity

    home = _home()
    ident = load_public_identity(home)
    if json_out:
        _emit({**ident.to_dict(), "home": str(home)})
        return
    out.print(_line((_s(ident.name), "bold")))
    out.print(f"  key          {ident.key_text}")
    out.print(f"  fingerprint  {ident.fingerprint}")
    out.print(f"  home         {_s(home, 4096)}")


# -- publish -------------------------------------------------------------------------------


@app.command()
def publish(
    path: Annotated[Path, typer.Argument(help="The file or folder of the work.")],
    title: Annotated[str | None, typer.Option("--title", help="The work's title.")] = None,
    license_id: Annotated[
        str | None, typer.Option("--license", help="A free work: SPDX id CC0-1.0, CC-BY-4.0, "
                                 "CC-BY-SA-4.0, CC-BY-NC-4.0, CC-BY-NC-SA-4.0, CC-BY-ND-4.0, "
                                 "CC-BY-NC-ND-4.0."),
    ] = None,
    price: Annotated[
        str | None, typer.Option("--price", help="A work for sale: its price, e.g. 5.00 "
                                 "(with --currency). Its files are encrypted.")
    ] = None,
    currency: Annotated[
        str | None, typer.Option("--currency", help="ISO 4217 code of --price, e.g. EUR.")
    ] = None,
    redistributor_share: Annotated[
        int | None, typer.Option("--redistributor-share", help="Basis points of each sale "
                                 "for the fans who carried the work to that buyer "
                                 "(default 1000 = 10%).")
    ] = None,
    seller: Annotated[
        list[str] | None, typer.Option("--seller", help="KEY of a node that may sell the "
                                       "work (repeatable). Default: you.")
    ] = None,
    seller_api: Annotated[
        str | None, typer.Option("--seller-api", help="HOST:PORT where buyers may find a "
                                 "seller's node API (a hint in the license).")
    ] = None,
    creator: Annotated[
        list[str] | None,
        typer.Option("--creator", help="Credit this name (repeatable). Default: your name."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="hybrid (v1+v2, default) or v1 for old clients.")
    ] = "hybrid",
    tracker: Annotated[
        list[str] | None, typer.Option("--tracker", help="Announce URL (repeatable).")
    ] = None,
    web_seed: Annotated[
        list[str] | None, typer.Option("--web-seed", help="Web seed URL (repeatable).")
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Where to write the .torrent. "
                                  "Default: ./<title>.torrent")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    collector: Annotated[
        str | None, typer.Option("--collector", help="KEY@HOST:PORT: a node (e.g. your "
                                 "label's) that also receives every transfer receipt.")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option("--split", help="KEY=BPS: a rights holder and its "
                                       "share in basis points (repeatable; they sum to 10000). "
                                       "With other holders, write a --draft.")
    ] = None,
    draft: Annotated[
        Path | None, typer.Option("--draft", help="Write an unsigned-by-the-others draft "
                                  "here instead of publishing; holders cosign it.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Publish a draft every holder signed "
                                  "(PATH must be the drafted files).")
    ] = None,
    certificate: Annotated[
        list[Path] | None, typer.Option("--certificate", help="Embed a label's certificate "
                                        "of a rights holder (.p2pc, repeatable).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign a license for a work, make its torrent and add it to your library."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from p2pdist.errors import InputError
    from p2pdist.node import (
        check_publish_args,
        check_splits,
        load_certificate,
        parse_collector,
        publish_draft,
    )
    from p2pdist.node import publish as do_publish

    if manifest is not None:
        if any(v for v in (title, license_id, price, currency, redistributor_share, seller,
                           seller_api, creator, collector, split, draft, certificate)):
            raise InputError("--manifest publishes the draft as its holders signed it",
                             remedy="drop the license options; only PATH, --out, "
                             "--tracker and --web-seed go with --manifest")
        ident = _unlock()
        _published(publish_draft(_home(), ident, manifest, path, trackers=tracker or (),
                                 web_seeds=web_seed or (), out=out_path, force=force),
                   None, json_out)
        return
    if title is None:
        raise InputError("a work needs a --title")
    # A typo fails before the passphrase prompt and the hashing.
    paid = _paid_terms(price, currency, redistributor_share, seller, seller_api)
    check_publish_args(title=title, spdx=license_id, creators=creator or (), fmt=fmt,
                       paid=paid)
    coll = parse_collector(collector) if collector is not None else None
    sheet = check_splits(_splits(split)) if split else ()
    certs = [load_certificate(p) for p in certificate or []]
    if not path.expanduser().exists():
        from p2pdist.errors import InputError

        raise InputError(f"no such file or folder: {path}", remedy="check the path")
    ident = _unlock()
    with Progress(
        TextColumn("Hashing"), BarColumn(), TextColumn("{task.completed}/{task.total} pieces"),
        TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("hash", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, description="hash", completed=done, total=total)

        def encrypting(done: int) -> None:
            bar.update(task, completed=done)

        res = do_publish(
            _home(), ident, path, title=title, spdx=license_id, paid=paid,
            creators=creator or (), fmt=fmt, trackers=tracker or (), web_seeds=web_seed or (),
            out=out_path, force=force, progress=progress, collector=coll,
            encrypt_progress=encrypting, splits=sheet, draft=draft, certificates=certs,
        )
    _published(res, paid, json_out)


def _published(res: Any, paid: Any, json_out: bool) -> None:
    from p2pdist.node import DraftResult

    if json_out:
        _emit(res.to_dict())
        return
    if isinstance(res, DraftResult):
        d = res.to_dict()
        out.print(_line("Wrote the draft of ", (_s(res.title), "bold"),
                        f" to {_s(res.draft, 4096)}"))
        out.print(f"  signed by {len(res.signed)} of {len(res.holders)} rights holders")
        for pk in d["missing"]:  # type: ignore[attr-defined]
            out.print(f"  waiting for {pk}")
        draft = _s(res.draft, 4096)
        out.print(f"Each of them runs: p2pdist license cosign {draft}; then: "
                  f"p2pdist publish --manifest {draft} PATH")
        return
    out.print(_line("Published ", (_s(res.title), "bold"),
                    f" ({_size(res.size)}, {len(res.files)} files) under {_s(res.license)}"))
    out.print(f"  work     {res.work}")
    out.print(f"  torrent  {_s(res.torrent, 4096)}")
    out.print(f"  magnet   {_s(res.magnet, 8192)}")
    if paid is not None:
        out.print(f"  price    {paid.label.removeprefix('for sale, ')}; files encrypted, "
                  "the key kept sealed in your node home")
        out.print(f"Make codes to sell it with: p2pdist vouchers issue {res.work[:16]} "
                  "--count 10 --out codes.csv")
    out.print("Seed it with: p2pdist seed")


def _splits(texts: list[str]) -> list[Any]:
    from p2pdist.errors import InputError
    from p2pdist.identity import key_from_text
    from p2pdist.licensing import Split

    out_ = []
    for t in texts:
        key, sep, bps = t.partition("=")
        try:
            if not sep or not (bps.isascii() and bps.isdigit()):
                raise ValueError
            out_.append(Split(key_from_text(key.strip()), int(bps)))
        except Exception:
            raise InputError(f"--split wants KEY=BPS, not {t!r}",
                             remedy="e.g. --split <52-char key>=6000 (60%)") from None
    return out_


def _paid_terms(price: str | None, currency: str | None, share: int | None,
                sellers: list[str] | None, seller_api: str | None) -> Any:
    """PaidTerms from the publish options, or None for a free work; InputError early."""
    from p2pdist.errors import InputError
    from p2pdist.identity import key_from_text, load_public_identity
    from p2pdist.licensing import paid_terms

    if price is None and currency is None:
        if share is not None or sellers or seller_api:
            raise InputError("--redistributor-share, --seller and --seller-api are for works "
                             "for sale", remedy="add --price and --currency")
        return None
    if price is None or currency is None:
        raise InputError("a work for sale needs both --price and --currency",
                         remedy="e.g. --price 5.00 --currency EUR")
    keys = []
    for text in sellers or []:
        try:
            keys.append(key_from_text(text))
        except Exception:
            raise InputError(f"--seller {text!r} is not a key",
                             remedy="give the 52-character key that `p2pdist whoami` "
                             "prints") from None
    if not keys:
        keys = [load_public_identity(_home()).public_key]
    if seller_api is not None:
        from p2pdist.paid import _endpoint

        _endpoint(seller_api)
    return paid_terms(price, currency, redistributor_bps=share, sellers=tuple(keys),
                      seller_api=seller_api)


# -- seeding -------------------------------------------------------------------------------


def _table(node: Node, snaps: list[WorkSnapshot], title: str) -> Table:
    t = Table(title=title, title_justify="left", expand=False)
    for col in ("Work", "State", "Done", "Peers", "Down", "Up", "Uploaded", "Credit"):
        t.add_column(col, justify="left" if col in ("Work", "State") else "right")
    for s in snaps:
        st = s.status
        t.add_row(
            _s(s.title, 40), _s(f"error: {st.error}", 40) if st.error else st.state.value,
            f"{st.progress * 100:.0f}%", str(st.num_peers),
            f"{_size(st.down_rate)}/s", f"{_size(st.up_rate)}/s",
            _size(st.uploaded), _size(node.credit_of(s.work)),
        )
    return t


def _run_table(node: Node, title: str, json_out: bool) -> None:
    """Render a live table until Ctrl-C (or SIGTERM), then save resume data and stop."""
    from rich.live import Live

    snaps: list[WorkSnapshot] = []
    try:
        if json_out or not out.is_terminal:
            while True:
                snaps = node.tick()
                time.sleep(0.5)
        with Live(_table(node, node.tick(), title), console=out, refresh_per_second=2) as live:
            while True:
                time.sleep(0.5)
                snaps = node.tick()
                live.update(_table(node, snaps, title))
    except KeyboardInterrupt:
        err.print("Stopping: saving resume data…")
    finally:
        node.close()
    if json_out:
        _emit({"stopped": True, "works": [
            {"work": s.work, "title": s.title, "state": s.status.state.value,
             "uploaded": s.status.uploaded, "credit": node.credit_of(s.work)}
            for s in snaps]})
    err.print("Stopped cleanly.")


def _listen(listen: str | None, profile: Profile) -> tuple[str, int]:
    from p2pdist.swarm import Profile, parse_endpoint
    from p2pdist.swarm._settings import check_bind

    if listen:
        host, port = parse_endpoint(listen, option="--listen", allow_zero=True)
        check_bind(profile, host, option="--listen")
        return host, port
    return ("127.0.0.1", 0) if profile is Profile.LOCAL else ("0.0.0.0", 6881)  # noqa: S104


@app.command()
def seed(
    listen: Annotated[
        str | None, typer.Option("--listen", help="HOST:PORT to listen on "
                                 "(default 127.0.0.1:random with --local, 0.0.0.0:6881 else).")
    ] = None,
    peer: PeerOpt = None,
    local: LocalOpt = False,
    upload_limit: UpLimitOpt = 0,
    download_limit: DownLimitOpt = 0,
    api_listen: ApiListenOpt = None,
    external_address: ExternalAddressOpt = None,
    super_seed: Annotated[
        bool, typer.Option("--super-seed", help="Initial seeding (BEP 16): each piece leaves "
                           "you about once and the fans trade the rest; for launching a work "
                           "to many fans at once (a lone fan fetches slower).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON line when ready "
                                           "and a final JSON report on exit.")] = False,
) -> None:
    """Seed every work in your library until interrupted (Ctrl-C)."""
    from p2pdist.node import Node

    profile = _profile(local)
    node = Node(_home(), profile=profile, listen=_listen(listen, profile),
                peers=_endpoints(peer), upload_limit=upload_limit * 1024,
                download_limit=download_limit * 1024, identity=_node_identity(),
                api_listen=_api_listen(api_listen, profile), control=True,
                external_addresses=external_address or ())
    works = node.seed_library(super_seed=super_seed)
    if json_out:
        _emit({"listen": f"127.0.0.1:{node.listen_port}" if profile.value == "local"
               else str(node.listen_port), "port": node.listen_port,
               "works": [w.work for w in works], "problems": node.problems,
               "api": node.api.port if node.api else None})
    else:
        err.print(f"Seeding {len(works)} work(s) on port {node.listen_port} "
                  f"({profile.value} network). Ctrl-C to stop.")
        if not works:
            err.print(_line(("Your library is empty:", "yellow"),
                            " publish or fetch a work first."))
    for work, problem in node.problems.items():
        err.print(_line(("warning:", "yellow"), f" {work[:12]}: {_s(problem, 1000)}"))
    _run_table(node, f"p2pdist seeding on port {node.listen_port}", json_out)


# -- fetching ------------------------------------------------------------------------------


def _verdict(lic: Any) -> dict[str, Any]:
    """The fan's trust verdict on a verified license (its certificates, at this moment)."""
    from datetime import UTC, datetime

    from p2pdist.trust import TrustStore, trust_verdict

    return trust_verdict(lic.manifest, TrustStore(_home()), now=datetime.now(UTC)).to_dict()


def _creators(m: Any) -> str:
    return _s(", ".join(m.creators), 1000)


def _print_license(lic: Any) -> dict[str, Any]:
    """Print a verified license and the fan's trust verdict on it; return the verdict."""
    from p2pdist.identity import fingerprint, key_to_text

    m = lic.manifest
    verdict = _verdict(lic)
    trusted_as = {h["pk"]: h["trusted_as"] for h in verdict["holders"]}
    out.print(_line("License: ", (_s(lic.plain_words(), 1000), "bold")))
    if m.terms.url:
        out.print(f"  {_s(m.terms.url, 300)}")
    for s in lic.signed.signatures:
        name = trusted_as.get(key_to_text(s.pk))
        out.print(f"  signed by {fingerprint(s.pk)}  ({key_to_text(s.pk)})"
                  + (f", whom you trust as {_s(name)}" if name else ""))
    for c in verdict["certificates"]:
        out.print(_certificate_line(c))
    if m.collector is not None:
        out.print(f"  receipts also go to {_s(m.collector.endpoint, 300)}, collector "
                  f"{fingerprint(m.collector.pk)}  ({key_to_text(m.collector.pk)})")
    return verdict


def _certificate_line(c: dict[str, Any]) -> Text:
    """One embedded certificate, as a trust verdict's dict has it. Its names are what its
    signer claims: only a label in the trust store vouches for the artist's name, and that
    label goes by the name the fan gave it; every other name reads "claims to be"."""
    label, artist, name = c["label_fingerprint"], c["artist_fingerprint"], _s(c["name"])
    if c["label_trusted"] and c["status"] != "expired":
        return _line(f"  certified by {_s(c['label_trusted_as'])} ({label}) as \"{name}\": ",
                     ("trusted label", "green"))
    by = (f"{_s(c['label_trusted_as'])} ({label})" if c["label_trusted"] else
          f"{label}, who claims to be \"{_s(c['label_name'])}\"")
    claim = f"  certificate by {by}: {artist} claims to be \"{name}\" "
    if c["status"] == "expired":
        return _line(claim, ("(expired", "yellow"),
                     ")" if c["label_trusted"] else ", label not in your trust store)")
    return _line(claim, "(label not in your trust store)")


@app.command()
def fetch(
    source: Annotated[str, typer.Argument(help="A magnet link or a .torrent file.")],
    dest: Annotated[Path, typer.Option("--dest", help="The folder to save the work in.")],
    peer: PeerOpt = None,
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT to listen on.")] = None,
    seed_after: Annotated[
        bool, typer.Option("--seed", help="Keep seeding after the download (Ctrl-C to stop).")
    ] = False,
    allow_unlicensed: Annotated[
        bool, typer.Option("--allow-unlicensed", help="Fetch a torrent that has no p2pdist "
                           "license (a broken license is still refused).")
    ] = False,
    metadata_timeout: Annotated[
        float, typer.Option("--metadata-timeout", min=0.1, max=86400.0,
                            help="Give up if no peer sends the metadata within this many "
                            "seconds.")
    ] = 60.0,
    stall_timeout: Annotated[
        float, typer.Option("--stall-timeout", min=0.1, max=86400.0,
                            help="Give up if no data arrives for this many seconds (run the "
                            "fetch again to resume).")
    ] = 600.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Let the fetch check and overwrite files "
                           "already in --dest.")
    ] = False,
    require_trusted: Annotated[
        bool, typer.Option("--require-trusted", help="Refuse a work unless every rights "
                           "holder is in your trust store or certified by a label that is.")
    ] = False,
    local: LocalOpt = False,
    upload_limit: UpLimitOpt = 0,
    download_limit: DownLimitOpt = 0,
    api_listen: ApiListenOpt = None,
    external_address: ExternalAddressOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetch a work by magnet link or .torrent, verifying its license before any byte."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from p2pdist.node import Node, fetch_result, wait_complete

    profile = _profile(local)
    node = Node(_home(), profile=profile, listen=_listen(listen, profile),
                peers=_endpoints(peer), upload_limit=upload_limit * 1024,
                download_limit=download_limit * 1024, identity=_node_identity(),
                api_listen=_api_listen(api_listen, profile),
                external_addresses=external_address or ())
    started = time.monotonic()
    try:
        work, lic = node.fetch(
            source, dest, allow_unlicensed=allow_unlicensed, metadata_timeout=metadata_timeout,
            on_warning=lambda m: err.print(_line(("warning:", "yellow"), f" {_s(m, 1000)}")),
            overwrite=overwrite,
            require_trusted=require_trusted,
        )
        if not json_out:
            out.print(_line("Verified license of ", (_s(work.title), "bold"),
                            f"; fetching into {_s(dest, 4096)}"))
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[peers]} peers"),
            console=err, transient=True, disable=not err.is_terminal,
        ) as bar:
            # The column reads its description as markup: a title is escaped for it.
            task = bar.add_task(escape(_s(work.title, 30)), total=work.size or None,
                                peers=0)

            def progress(s: WorkSnapshot) -> None:
                bar.update(task, completed=s.status.total_done,
                           total=s.status.total_wanted or None, peers=s.status.num_peers)

            snap = wait_complete(node, work.work, on_progress=progress,
                                 stall_timeout=stall_timeout)
        res = fetch_result(node, work, lic, started, snap)
        unlocked = _auto_unlock(node, work, lic, dest)
    except KeyboardInterrupt:
        err.print("Interrupted: saving resume data (run the same fetch again to resume)…")
        node.close()
        raise typer.Exit(130) from None
    except BaseException:
        node.close()
        raise
    if json_out:
        _emit({**res.to_dict(), "unlocked": unlocked})
    else:
        out.print(_line(("✓", "green"), " Fetched ", (_s(res.title), "bold"),
                        f" ({_size(res.size)}) into {_s(res.dest, 4096)} in "
                        f"{res.seconds:.1f} s"))
        if unlocked is not None:
            out.print(_line(("✓", "green"),
                            f" Unlocked {len(unlocked)} file(s) with your license grant"))
        elif lic is not None and lic.manifest.encryption is not None:
            out.print("This work is for sale: the files are encrypted. Buy it with "
                      f"p2pdist buy {work.work[:16]} (it asks for the voucher code), then "
                      "p2pdist unlock.")
        if lic is not None:
            _print_license(lic)
        else:
            out.print(_line(("No p2pdist license: you have no signed terms for this work.",
                             "yellow")))
        for p in res.peers:
            # The client string is what the peer says of itself.
            client = _s(p["client"], 100) if p["client"] else "unknown client"
            out.print(f"  from {_s(p['peer'], 100)} ({client}): "
                      f"{_size(int(p['bytes']))}")  # type: ignore[call-overload]
    if seed_after:
        err.print(f"Seeding on port {node.listen_port}. Ctrl-C to stop.")
        _run_table(node, f"p2pdist seeding on port {node.listen_port}", json_out)
    else:
        node.close()


def _auto_unlock(node: Node, work: Any, lic: Any, dest: Path) -> list[str] | None:
    """A paid work this node already bought is unlocked into *dest* after the fetch."""
    if lic is None or lic.manifest.encryption is None or node.identity is None \
            or node.library.secret(work.work, "grant") is None:
        return None
    from p2pdist.paid import unlock

    return [str(p) for p in unlock(node.library, node.identity, work.work, dest)]


# -- paid works -----------------------------------------------------------------------------


def _work_ref(ref: str) -> str:
    """A work of the library by id (prefix), magnet or .torrent file."""
    from p2pdist.errors import WorkNotFound
    from p2pdist.library import Library
    from p2pdist.node import resolve_work

    w = resolve_work(Library(_home()), ref)
    if w is None:
        raise WorkNotFound(f"{ref[:80]} is not in this node's library",
                           remedy="fetch it first, or list your works with: p2pdist works")
    return w


def _face_value(text: str | None, free: bool, price: int, currency: str) -> int | None:
    """What each code is sold for, in minor units: None for the price, 0 with --free."""
    import re
    from decimal import Decimal

    from p2pdist.errors import InputError
    from p2pdist.licensing import format_price, parse_price
    from p2pdist.licensing._terms import currency_exponent

    if free and text is not None:
        raise InputError("--free and --face are two answers to one question",
                         remedy="give --free for gift and press codes, or --face AMOUNT")
    if free:
        return 0
    if text is None:
        return None
    t = text.strip()
    too_much = InputError(
        f"a code's face value is 0 to the price, {format_price(price, currency)}; "
        f"{_s(t, 40)} {currency} is more",
        remedy="give what each code was sold for, or --free for gift and press codes")
    exp = currency_exponent(currency)
    if exp is not None and re.fullmatch(r"[0-9]{1,16}(?:\.[0-9]{1,4})?", t):
        if Decimal(t) * 10**exp > price:  # (before parse_price: its bound is not ours)
            raise too_much
        if Decimal(t) == 0:  # parse_price refuses 0, a face value may be 0
            return 0
    face = parse_price(t, currency)  # every other mistake, with its remedy
    if face > price:
        raise too_much
    return face


@vouchers_app.command("issue")
def vouchers_issue(
    work: Annotated[str, typer.Argument(help="The work (id, prefix, magnet or .torrent).")],
    count: Annotated[int, typer.Option("--count", min=1, max=100_000,
                                       help="How many single-use codes to make.")] = 1,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write them as CSV (code,work,issued), 0600.")
    ] = None,
    face_text: Annotated[str | None, typer.Option(
        "--face", metavar="AMOUNT",
        help="What each code is sold for, in the work's currency: 0 to the price "
             "(default: the price). Sales of these codes are booked at it.")] = None,
    free: Annotated[bool, typer.Option(
        "--free", help="Gift and press codes: face value 0 (a sale of one books nothing).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Make single-use voucher codes for a work you sell (a merch table, a gift, press)."""
    from p2pdist.library import Library
    from p2pdist.licensing import format_price
    from p2pdist.paid import issue_vouchers, paid_license

    key = _work_ref(work)
    _, _, terms = paid_license(Library(_home()), key)
    face = _face_value(face_text, free, terms.price, terms.currency)
    codes = issue_vouchers(_home(), _unlock(), key, count, out=out_path, face=face)
    face = terms.price if face is None else face
    shown = format_price(face, terms.currency)
    if json_out:
        _emit({"work": key, "codes": codes, "csv": str(out_path) if out_path else None,
               "face": shown, "face_minor": face, "currency": terms.currency})
        return
    each = f"each sold for {shown}" if face else "gift codes (face value 0)"
    if out_path is not None:
        out.print(f"Wrote {len(codes)} code(s) to {_s(out_path, 4096)}, {each}. Each works "
                  "once; the node keeps only their hashes.")
    else:
        for c in codes:
            out.print(c)
        err.print(f"{len(codes)} code(s), {each}; each works once. The node keeps only their "
                  "hashes.")


@vouchers_app.command("list")
def vouchers_list(
    work: Annotated[str, typer.Argument(help="The work (id, prefix, magnet or .torrent).")],
    json_out: JsonOpt = False,
) -> None:
    """Show which of a work's codes were redeemed, when and by whom (never the codes)."""
    from p2pdist.paid import list_vouchers

    rows = list_vouchers(_home(), _work_ref(work))
    if json_out:
        _emit(rows)
        return
    t = Table("Voucher", "Issued", "Redeemed", "Buyer", "Payment ref")
    for i in (0, 1, 2, 4):
        t.columns[i].no_wrap = True
    t.columns[3].overflow = "fold"
    t.columns[3].min_width = 52  # a key is never cut short
    for r in rows:
        t.add_row(str(r["id"]), str(r["issued"]), str(r["redeemed"] or "-"),
                  _s(r["buyer"] or "-"), _s(r["payment_ref"] or "-"))
    out.print(t)
    used = sum(1 for r in rows if r["redeemed"])
    out.print(f"{used} of {len(rows)} redeemed")


def _one_line(text: str, where: str) -> str:
    from p2pdist.errors import InputError

    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise InputError(f"{where} holds {'no' if not lines else 'more than one'} voucher "
                         "code", remedy="give exactly one code, on one line")
    return lines[0]


def _voucher_code(voucher: str | None, voucher_file: Path | None) -> str:
    """The voucher code, from where the user put it. A code in argv is readable by every
    user of this machine (/proc/PID/cmdline): it still works, with a warning; stdin
    (``--voucher -``), a file and a prompt without echo keep it off the command line."""
    from p2pdist.errors import InputError

    if voucher is not None and voucher_file is not None:
        raise InputError("give --voucher or --voucher-file, not both")
    if voucher_file is not None:
        try:
            return _one_line(voucher_file.read_text(encoding="utf-8"), str(voucher_file))
        except OSError as e:
            raise InputError(f"cannot read {voucher_file}: {e.strerror}",
                             remedy="check the --voucher-file path") from None
        except UnicodeDecodeError:
            raise InputError(f"{voucher_file} is not UTF-8 text",
                             remedy="put the voucher code in the file as plain text") from None
    if voucher == "-":
        return _one_line(sys.stdin.readline(), "standard input")
    if voucher is not None:
        err.print(_line(("warning:", "yellow"), " a voucher code on the command line can be "
                        "read by other users of this machine; use --voucher-file FILE, "
                        "--voucher - (standard input) or the prompt instead."))
        return voucher
    if not sys.stdin.isatty():
        raise InputError("no voucher code given, and no terminal to ask in",
                         remedy="give --voucher-file FILE, or --voucher - with the code "
                         "on standard input")
    return str(typer.prompt("Voucher code", hide_input=True, err=True)).strip()


@app.command()
def buy(
    source: Annotated[str, typer.Argument(help="The work (id, prefix, magnet or .torrent).")],
    voucher: Annotated[
        str | None, typer.Option("--voucher", help="A voucher code for this work, or - to "
                                 "read it from standard input. A code on the command line "
                                 "can be read by every user of this machine (ps): prefer "
                                 "--voucher -, --voucher-file, or no option at all (a "
                                 "prompt that does not echo).")
    ] = None,
    voucher_file: Annotated[
        Path | None, typer.Option("--voucher-file", help="Read the voucher code from this "
                                  "file (its one line).")
    ] = None,
    seller: Annotated[
        str | None, typer.Option("--seller", help="HOST:PORT of a seller's node API "
                                 "(default: a seller seen in the swarm, or the license's hint).")
    ] = None,
    local: LocalOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Buy a paid work from a seller its license names, paying with a voucher code."""
    from p2pdist.paid import buy_work

    work = _work_ref(source)
    code = _voucher_code(voucher, voucher_file)
    res = buy_work(_home(), _unlock(), work, voucher=code, seller=seller,
                   profile=_profile(local))
    if json_out:
        _emit(res.to_dict())
        return
    out.print(_line(("✓", "green"), " Bought ", (_s(res.title), "bold"),
                    f" for {_s(res.price)} (payment {_s(res.payment_ref)})"))
    out.print(f"  seller   {_s(res.seller)}")
    for pk, n in res.served_by:
        out.print(f"  carried to you by {_s(pk)}: {n:,} bytes — they share "
                  f"{res.redistributor_bps / 100:g}% of this sale")
    if res.collector == "sent":
        out.print(f"  payment receipt sent to the collector at {_s(res.collector_endpoint)}")
    out.print(f"Unlock it with: p2pdist unlock {res.work[:16]} --dest DIR")
    if res.collector not in (None, "sent"):
        err.print(_line(("warning:", "yellow"), " your purchase is complete, but its payment "
                        f"receipt did not reach the work's collector at "
                        f"{_s(res.collector_endpoint)} ({_s(res.collector)}: "
                        f"{_s(res.collector_note, 300)})"))
        err.print(_line(("  → send it later with: p2pdist receipts send-payments", "dim")))


@app.command()
def unlock(
    work: Annotated[str, typer.Argument(help="The work (id, prefix, magnet or .torrent).")],
    dest: Annotated[Path, typer.Option("--dest", help="Where to write the decrypted files.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files of the work "
                                            "already in DEST.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Decrypt a work you bought into DEST: every file authenticates, or nothing is written."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from p2pdist.library import Library
    from p2pdist.paid import unlock as do_unlock

    key = _work_ref(work)
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("unlock", total=Library(_home()).get(key).size or None)
        files = do_unlock(Library(_home()), _unlock(), key, dest,
                          progress=lambda n: bar.update(task, completed=n),
                          overwrite=overwrite)
    if json_out:
        _emit({"work": key, "dest": str(dest), "files": [str(p) for p in files]})
        return
    out.print(_line(("✓", "green"), f" Unlocked {len(files)} file(s) into {_s(dest, 4096)}"))


# -- labels: certificates and trust ---------------------------------------------------------


def _key_arg(text: str, what: str) -> bytes:
    from p2pdist.errors import InputError
    from p2pdist.identity import key_from_text

    try:
        return key_from_text(text.strip())
    except Exception:
        raise InputError(f"{what} {text[:80]!r} is not a key",
                         remedy="give the 52-character key that `p2pdist whoami` prints") \
            from None


@app.command()
def certify(
    artist: Annotated[str, typer.Argument(help="The artist's key (as `whoami` prints it).")],
    name: Annotated[str, typer.Option("--name", help="The artist's name, as you vouch.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the certificate "
                                           "(.p2pc).")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Last day it is valid (YYYY-MM-DD, UTC); "
                                 "default: no expiry.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """As a label, sign a certificate that ARTIST is NAME (publish --certificate embeds it)."""
    from datetime import UTC, date, datetime, timedelta

    from p2pdist.errors import InputError
    from p2pdist.identity import fingerprint, key_to_text
    from p2pdist.node import certify as do_certify

    pk = _key_arg(artist, "ARTIST")
    until = None
    if expires is not None:
        try:
            day = datetime.strptime(expires, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise InputError(f"--expires {expires!r} is not a date",
                             remedy="give it as YYYY-MM-DD") from None
        # valid through that whole day (through its last second on 9999-12-31)
        until = (day + timedelta(days=1) if day.date() < date.max
                 else day.replace(hour=23, minute=59, second=59))
    signed = do_certify(_unlock(), pk, name, expires=until, out=out_path, force=force)
    c = signed.certificate
    if json_out:
        _emit({"certificate": str(out_path), "artist": key_to_text(c.artist), "name": c.name,
               "label": key_to_text(c.label), "label_name": c.label_name,
               "expires": c.expires.isoformat() if c.expires else None})
        return
    # The label is this node: its own name is no claim here.
    out.print(_line(("✓", "green"), f" {_s(c.label_name)} ({fingerprint(c.label)}) certifies "
                    f"{key_to_text(c.artist)} as {_s(c.name)}"
                    + (f", until {c.expires:%Y-%m-%d %H:%M} UTC" if c.expires else "")))
    out.print(f"  written to {_s(out_path, 4096)}; the artist embeds it with: p2pdist "
              f"publish ... --certificate {_s(out_path, 4096)}")


@trust_app.command("add")
def trust_add(
    key: Annotated[str, typer.Argument(help="A key you trust: an artist's or a label's.")],
    name: Annotated[str, typer.Option("--name", help="Your name for it.")],
    json_out: JsonOpt = False,
) -> None:
    """Trust a key: works it signs, or certifies, pass fetch --require-trusted."""
    from datetime import UTC, datetime

    from p2pdist.trust import TrustStore

    e = TrustStore(_home()).add(_key_arg(key, "KEY"), name.strip(), now=datetime.now(UTC))
    if json_out:
        _emit(e.to_dict())
        return
    out.print(_line(("✓", "green"), f" trusting {_s(key.strip())} as {_s(e.name)}"))


@trust_app.command("remove")
def trust_remove(
    key: Annotated[str, typer.Argument(help="A key in your trust store.")],
    json_out: JsonOpt = False,
) -> None:
    """Stop trusting a key."""
    from p2pdist.trust import TrustStore

    e = TrustStore(_home()).remove(_key_arg(key, "KEY"))
    if json_out:
        _emit(e.to_dict())
        return
    out.print(f"no longer trusting {_s(e.name)}")


@trust_app.command("list")
def trust_list(json_out: JsonOpt = False) -> None:
    """The keys you trust."""
    from p2pdist.identity import fingerprint
    from p2pdist.trust import TrustStore

    entries = TrustStore(_home()).all()
    if json_out:
        _emit([e.to_dict() for e in entries])
        return
    if not entries:
        out.print("You trust no key yet: p2pdist trust add KEY --name NAME")
        return
    t = Table("Name", "Key", "Fingerprint", "Added")
    t.columns[1].overflow = "fold"
    t.columns[1].min_width = 52
    for e in entries:
        t.add_row(_s(e.name), e.to_dict()["pk"], fingerprint(e.pk), e.to_dict()["added"])
    out.print(t)


# -- labels: audit and payouts --------------------------------------------------------------

BundlesArg = Annotated[list[Path], typer.Argument(help="Bundles from `receipts export`.")]
WorksOpt = Annotated[
    list[Path] | None,
    typer.Option("--works", help="The works' .torrent files, or folders of them (repeatable)."
                 " Default: every work in your library."),
]


def _audit_progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("Auditing bundles"), BarColumn(), MofNCompleteColumn(),
                    console=err, transient=True, disable=not err.is_terminal)


def _print_findings(findings: list[dict[str, Any]]) -> None:
    if not findings:
        out.print(_line(("✓ no findings", "green"),
                        ": every bundle verified and the receipts add up"))
        return
    t = Table("Finding", "What", "Evidence", title=f"{len(findings)} finding(s)",
              title_justify="left")
    t.columns[2].overflow = "fold"
    for f in findings:
        ev = json.dumps(f["evidence"], sort_keys=True)
        # A finding quotes what a bundle holds: a node's words, not ours.
        t.add_row(_s(f["kind"], 80), _s(f["message"], 1000), _s(ev, 400))
    out.print(t)


@app.command("audit")
def audit_cmd(
    bundles: BundlesArg,
    works: WorksOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when there are findings.")
                      ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify nodes' bundles; report forks, replays, over-size credit, Sybils, bad payments."""
    from p2pdist.identity import load_public_identity
    from p2pdist.label import AuditFailed, audit_bundles, load_works

    lics = load_works(_home(), works or [])
    label = None
    with contextlib.suppress(P2PDistError):  # copies are judged by this home's label key
        label = load_public_identity(_home()).public_key
    with _audit_progress() as bar:
        task = bar.add_task("audit", total=len(bundles))
        report = audit_bundles(bundles, lics, label=label,
                               progress=lambda n, total: bar.update(task, completed=n))
    doc = report.to_dict()
    if json_out:
        _emit(doc)
    else:
        c = report.counts()
        out.print(f"Audited {c['bundles']} bundle(s) from {c['nodes']} node(s): "
                  f"{c['entries']:,} entries, {c['receipts']:,} receipts, "
                  f"{c['payments']:,} payment(s), against {len(lics)} work(s)")
        _print_findings(list(doc["findings"]))  # type: ignore[call-overload]
    if strict and not report.ok:
        raise AuditFailed(f"{len(report.findings)} finding(s)",
                          remedy="read the evidence; drop --strict to report only")


@app.command()
def payouts(
    bundles: BundlesArg,
    out_path: Annotated[Path, typer.Option("--out", help="statement.json, .csv or .html "
                                           "(the signed statement goes beside it, .p2ps).")],
    works: WorksOpt = None,
    start: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD, UTC).")
                     ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Day after the last (YYYY-MM-DD).")
                   ] = None,
    pool: Annotated[
        tuple[str, str] | None,
        typer.Option("--pool", help="AMOUNT CURRENCY to share among the verified downloaders "
                     "of CC works (donations, a grant), one equal slice each."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out and the .p2ps "
                                        "beside it.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Audit the bundles, then say who is owed what, to the cent, in a signed statement."""
    from p2pdist.identity import fingerprint, key_to_text
    from p2pdist.label import load_works, payout
    from p2pdist.licensing import format_price
    from p2pdist.payouts.report import HELD_REASONS, held_money, settles

    lics = load_works(_home(), works or [])
    ident = _unlock()
    with _audit_progress() as bar:
        task = bar.add_task("audit", total=len(bundles))
        res = payout(ident, bundles, lics, out=out_path, start=start, end=end, pool=pool,
                     force=force, progress=lambda n, total: bar.update(task, completed=n))
    if json_out:
        _emit(res.to_dict())
        return
    st = res.statement
    findings = [f.to_dict() for f in res.report.findings]
    _print_findings(findings)
    t = Table("Party", "Collected", "Owed", "Net", "Who pays whom",
              title="Payout statement: the settlement", title_justify="left")
    t.columns[0].overflow = "fold"
    t.columns[0].min_width = 52
    for p in st.parties:
        name = f"{key_to_text(p.party)}\n{fingerprint(p.party)}" + (
            " (you, the label)" if p.party == st.label else "")
        t.add_row(name, format_price(p.collected, p.currency),
                  format_price(p.owed, p.currency),
                  ("-" if p.net < 0 else "") + format_price(abs(p.net), p.currency),
                  settles(st, p))
    out.print(t)
    titles = {w.work: w.title for w in st.works}
    for work, ref, cur, amount, reason in held_money(st):
        out.print(f"  held {format_price(amount, cur)} of {_s(titles.get(work, work.hex()))} "
                  f"({ref}): {HELD_REASONS[reason]}")
    for cur, amount in st.totals_in:
        paid = st.totals_out().get(cur, 0)
        nets = sum(p.net for p in st.parties if p.currency == cur)
        mark = (("✓ sums exactly", "green") if paid == amount and nets == 0
                else ("does not sum", "red"))
        out.print(_line(f"  money in {format_price(amount, cur)}, owed "
                        f"{format_price(paid, cur)}, nets sum to {nets} ", mark))
    out.print(f"Wrote {_s(res.out, 4096)} and the signed statement {_s(res.signed, 4096)} "
              "(artists check it with: p2pdist statement verify FILE)")


@label_app.command("decide")
def label_decide(
    original: Annotated[str, typer.Argument(help="The work that came first (its 64-hex id).")],
    copies: Annotated[list[str] | None, typer.Argument(
        help="The works that copy it. None: ORIGINAL is a work of its own (it shares a file "
        "with others without copying them).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """As a label, sign which work of a group of copies is the original, into your ledger."""
    from p2pdist.label import decide_copies

    res = decide_copies(_home(), _unlock(), original, copies or [])
    if json_out:
        _emit(res.to_dict())
        return
    d = res.signed.decision
    out.print(_line(("✓", "green"), f" {d.original.hex()} is the original"
                    + (f"; {len(d.copies)} cop{'y' if len(d.copies) == 1 else 'ies'} of it:"
                       if d.copies else ", a work of its own")))
    for c in d.copies:
        out.print(f"  {c.hex()}")
    out.print(f"  signed and kept as entry {res.seq} of your ledger; `p2pdist receipts "
              "export` carries it")


@statement_app.command("verify")
def statement_verify(
    path: Annotated[Path, typer.Argument(help="A signed statement (.p2ps).")],
    label: Annotated[str | None, typer.Option(
        "--label", help="The label's key you expect. Without it, the signer must be a "
        "label in your trust store (p2pdist trust add).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify a label's signed payout statement: its signature, its exact sums, and that
    your label signed it (--label KEY, or a label in your trust store); exit 3 if not."""
    from p2pdist.identity import fingerprint, key_to_text
    from p2pdist.label import verify_statement_file
    from p2pdist.payouts.report import statement_json

    st = verify_statement_file(path, label=label, home=_home())
    if json_out:
        _emit({"verified": True, **statement_json(st)})
        return
    from p2pdist.trust import TrustStore

    # A statement names no label: the name is the fan's own, from the trust store.
    entry = TrustStore(_home()).get(st.label)
    by = (f"{_s(entry.name)}, a label you trust" if entry is not None
          else "the label you named with --label (not in your trust store)")
    out.print(_line(("✓ verified", "green"),
                    f": signed by {key_to_text(st.label)} ({fingerprint(st.label)}), {by}; "
                    f"{len(st.lines)} lines sum exactly to the money in"))


# -- license and works --------------------------------------------------------------------


def _license(source: str, peer: list[str] | None, local: bool, timeout: float) -> Any:
    from p2pdist.node import check_source_license

    return check_source_license(_home(), source, profile=_profile(local),
                                peers=_endpoints(peer), timeout=timeout)


MetaTimeoutOpt = Annotated[
    float, typer.Option("--metadata-timeout", min=0.1, max=86400.0,
                        help="Seconds to wait for a magnet's metadata.")
]
SourceArg = Annotated[
    str, typer.Argument(help="A magnet link (with --peer), a .torrent file, or a work id.")
]


@license_app.command("cosign")
def license_cosign(
    draft: Annotated[Path, typer.Argument(help="The draft (.p2pm) to sign.")],
    json_out: JsonOpt = False,
) -> None:
    """Sign a drafted license as one of its rights holders (after reading it)."""
    from p2pdist.identity import fingerprint, key_to_text
    from p2pdist.node import cosign_draft, read_draft

    signed, _ = read_draft(draft)
    m = signed.manifest
    if not json_out:
        out.print(_line("Draft: ", (_s(m.title), "bold"), f" by {_creators(m)}"))
        out.print(f"  terms   {_s(m.terms.plain_words(m.creators), 1000)}")
        for s in m.splits:
            out.print(f"  holder  {key_to_text(s.pk)} ({fingerprint(s.pk)})  "
                      f"{s.bps / 100:g}%")
    res = cosign_draft(_unlock(), draft)
    if json_out:
        _emit(res.to_dict())
        return
    out.print(_line(("✓", "green"),
                    f" Signed: {len(res.signed)} of {len(res.holders)} rights holders"))


@license_app.command("show")
def license_show(
    source: SourceArg,
    peer: PeerOpt = None,
    local: LocalOpt = False,
    metadata_timeout: MetaTimeoutOpt = 60.0,
    json_out: JsonOpt = False,
) -> None:
    """Verify and show the license of a work."""
    lic = _license(source, peer, local, metadata_timeout)
    if json_out:
        _emit({"verified": True, **lic.to_dict(), "trust": _verdict(lic)})
        return
    m = lic.manifest
    out.print(_line((_s(m.title), "bold"), f" by {_creators(m)}  "
                    f"(created {m.created:%Y-%m-%d})"))
    verdict = _print_license(lic)
    holders = {h["pk"]: h for h in verdict["holders"]}
    labels = {c["label"]: c["label_trusted_as"] for c in verdict["certificates"]}
    t = Table("Rights holder", "Fingerprint", "Share", "Trust", title="Split sheet",
              title_justify="left")
    for s in lic.to_dict()["splits"]:
        h = holders.get(s["pk"], {})
        trust = (f"you trust as {_s(h['trusted_as'])}" if h.get("trusted_as") else
                 "certified by " + ", ".join(_s(labels.get(k) or k) for k in h["certified_by"])
                 if h.get("certified_by") else "not in your trust store")
        t.add_row(s["pk"], s["fingerprint"], f"{s['bps'] / 100:.2f}%", trust)
    out.print(t)
    out.print(f"work {lic.work} · {_size(m.content.total_size)} in "
              f"{len(m.content.files)} files")


@license_app.command("verify")
def license_verify(
    source: SourceArg,
    peer: PeerOpt = None,
    local: LocalOpt = False,
    metadata_timeout: MetaTimeoutOpt = 60.0,
    json_out: JsonOpt = False,
) -> None:
    """Verify a work's license: signatures, content binding, terms. Exit 3 if it fails."""
    lic = _license(source, peer, local, metadata_timeout)
    if json_out:
        _emit({"verified": True, "work": lic.work, "title": lic.manifest.title,
               "summary": lic.plain_words()})
        return
    out.print(_line(("✓ verified", "green"),
                    f": {_s(lic.manifest.title)} — {_s(lic.plain_words(), 1000)}"))


@receipts_app.command("list")
def receipts_list(
    work: Annotated[str | None, typer.Option("--work", help="Only this work (id or prefix).")
                    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """One row per (work, uploader, downloader) with the latest bytes and seq."""
    from p2pdist.identity import fingerprint, key_from_text
    from p2pdist.node import list_receipts

    rows = list_receipts(_home(), work=work)
    if json_out:
        _emit(rows)
        return
    if not rows:
        out.print("No receipts yet: they come with transfers between p2pdist nodes.")
        return
    t = Table("Work", "Direction")
    for col in ("Uploader", "Downloader"):
        t.add_column(col, overflow="fold", min_width=52)  # a key is never cut short
    for col in ("Seq", "Bytes", "Time"):
        t.add_column(col)
    for r in rows:
        # A key's text form, with its fingerprint beside it (never instead of it).
        up, down = str(r["uploader"]), str(r["downloader"])
        t.add_row(str(r["work"])[:12], str(r["direction"]),
                  f"{up}\n{fingerprint(key_from_text(up))}",
                  f"{down}\n{fingerprint(key_from_text(down))}", str(r["seq"]),
                  f"{r['bytes']:,}", str(r["ts"]))
    out.print(t)


@receipts_app.command("export")
def receipts_export(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the bundle.")],
    json_out: JsonOpt = False,
) -> None:
    """Write your ledger and a signed checkpoint as a bundle a label can verify offline."""
    from p2pdist.node import export_receipts

    res = export_receipts(_home(), _unlock(), out_path)
    if json_out:
        _emit(res)
        return
    out.print(f"Wrote {res['entries']} entries ({_size(int(str(res['bytes'])))}) to "
              f"{_s(res['bundle'], 4096)}")


@receipts_app.command("send-payments")
def receipts_send_payments(local: LocalOpt = False, json_out: JsonOpt = False) -> None:
    """Send the payment receipts of your purchases to each work's collector (the license's
    `--collector`), e.g. after `buy` warned that it was unreachable. Exit 1 if any stays
    undelivered; one the collector holds already counts as sent."""
    from p2pdist.paid import send_payments

    rows = send_payments(_home(), _unlock(), profile=_profile(local))
    left = [r for r in rows if r["status"] != "sent"]
    if json_out:
        _emit({"payments": rows, "sent": len(rows) - len(left), "undelivered": len(left)})
    else:
        if not rows:
            out.print("No payment receipts to send: none of your purchases names a collector.")
        for r in rows:
            mark = ("✓", "green") if r["status"] == "sent" else ("✗", "red")
            out.print(_line(mark, f" {_s(r['title'])} ({_s(r['payment_ref'])}) → "
                            f"{_s(r['endpoint'])}: {_s(r['status'])}, {_s(r['note'], 300)}"))
    if left:
        if not json_out:
            err.print(_line(("error:", "red"), f" {len(left)} payment receipt(s) did not "
                            "reach their collector"))
            err.print(_line(("  → run p2pdist receipts send-payments again when the "
                             "collector is up", "dim")))
        raise typer.Exit(1)


@receipts_app.command("import")
def receipts_import(
    files: Annotated[list[Path], typer.Argument(help="Bundles from `receipts export`.")],
    json_out: JsonOpt = False,
) -> None:
    """Verify bundles and merge them into this ledger, keeping each node's chain."""
    from p2pdist.node import import_receipts

    reports = import_receipts(_home(), files)
    if json_out:
        _emit(reports)
        return
    for r in reports:
        out.print(f"{_s(r['file'], 4096)}: node {_s(r['node'], 16)}… {r['added']} new, "
                  f"{r['present']} already held")


@ledger_app.command("verify")
def ledger_verify(json_out: JsonOpt = False) -> None:
    """Check chains, checkpoints and receipt signatures. Exit 3 at the first bad entry."""
    from p2pdist.node import verify_ledger

    report = verify_ledger(_home())
    if json_out:
        _emit(report.to_dict())
        return
    out.print(_line(("✓ ledger verified", "green"),
                    f": {report.entries} entries from {report.nodes} node(s), "
                    f"{report.checkpoints} checkpoint(s)"))


@app.command()
def status(json_out: JsonOpt = False) -> None:
    """Ask the node running in this home (p2pdist seed) for its works, peers and credit."""
    from p2pdist._control import ask_status
    from p2pdist.identity import fingerprint, key_from_text

    st = ask_status(_home())
    if json_out:
        _emit(st)
        return
    pk = st.get("pk")
    who = f"{pk} ({fingerprint(key_from_text(pk))})" if isinstance(pk, str) else "no identity"
    out.print(_line(("●", "green"), f" node running in {_s(st.get('home'), 4096)}: "
                    f"{_s(st.get('network'), 20)} network, BitTorrent port "
                    f"{_s(st.get('listen_port'), 8)}, API port {_s(st.get('api_port') or '-', 8)}"
                    f", up {_duration(float(st.get('uptime') or 0))}"))
    out.print(f"  key     {who}")
    out.print(f"  credit  {_size(int(st.get('credit') or 0))} acknowledged by downloaders")
    works = st.get("works") or []
    t = Table("Work", "Title", "State", "Done", "Peers", "Down", "Up", "Uploaded", "Credit",
              title="Works", title_justify="left")
    peers = Table("Work", "Peer", "Client", "Key", "Down", "Up", title="Peers",
                  title_justify="left")
    peers.columns[3].overflow = "fold"
    for w in works:
        t.add_row(_s(w["work"], 12), _s(w["title"], 40),
                  _s(f"error: {w['error']}", 40) if w.get("error") else _s(w["state"], 20),
                  f"{w['progress'] * 100:.0f}%", str(len(w["peers"])),
                  f"{_size(w['down_rate'])}/s", f"{_size(w['up_rate'])}/s",
                  _size(w["uploaded"]), _size(w["credit"]))
        for p in w["peers"]:
            # A client string is what the peer says of itself; a key, what it proved.
            peers.add_row(_s(w["work"], 12), _s(p["peer"], 60), _s(p["client"], 40),
                          _s(p["pk"] or "plain BitTorrent", 60), f"{_size(p['down_rate'])}/s",
                          f"{_size(p['up_rate'])}/s")
    if works:
        out.print(t)
    else:
        out.print("  no works: publish or fetch one, then restart the node")
    if peers.rows:
        out.print(peers)
    for w in st.get("warnings") or []:
        err.print(_line(("warning:", "yellow"), " " + _s(w, 500)))


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@app.command()
def works(json_out: JsonOpt = False) -> None:
    """List the works in your library."""
    from p2pdist.library import Library

    items = Library(_home()).all()
    if json_out:
        _emit([w.to_dict() for w in items])
        return
    if not items:
        out.print("No works yet. Publish one with: p2pdist publish PATH --title T --license ID")
        return
    t = Table("Work", "Title", "License", "Role", "Size", "Complete", "Saved in")
    for w in items:
        t.add_row(w.work[:12], _s(w.title), _s(w.license), w.role, _size(w.size),
                  "yes" if w.complete else "no", _s(w.save_path, 4096))
    out.print(t)


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep the demo's homes and files here "
                                  "(default: a temp folder, removed afterwards).")
    ] = None,
) -> None:
    """Run the whole story on loopback: an artist, three fans and a label."""
    from p2pdist.demo import run_demo

    # The demo's story is written in markup; the guard against hidden characters stays.
    run_demo(_PlainConsole(highlight=False, soft_wrap=True, emoji=False), workdir=workdir)


def _sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: the one place that turns a P2PDistError into a message and exit code."""
    # A shell starts background jobs with SIGINT ignored; a node must still stop cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        app()
    except P2PDistError as e:
        if "--json" in sys.argv[1:]:
            report: dict[str, object] = {"ok": False, "error": e.message, "remedy": e.remedy,
                                         "exit_code": e.exit_code, "kind": type(e).__name__}
            reason = getattr(e, "reason", None)
            if isinstance(reason, str):  # a refusal's one-word reason, for scripts
                report["reason"] = reason
            _emit(report)
        # A message may quote a peer, a seller or a file: escaped and capped here, the one
        # place every error passes.
        err.print(_line(("error:", "red"), " ", _s(e.message, 2000)))
        if e.remedy:
            err.print(_line(("  → " + _s(e.remedy, 1000), "dim")))
        sys.exit(e.exit_code)
    except RENDER_ERRORS as e:
        # A bug in how we render something (rich's markup or style errors) is one line
        # and exit 1, never a traceback; the text is written without rich.
        sys.stderr.write(f"error: p2pdist could not show its output ({type(e).__name__}: "
                         f"{shown(str(e), cap=300)})\n  → please report it; --json "
                         "gives the same data as JSON\n")
        sys.exit(1)
