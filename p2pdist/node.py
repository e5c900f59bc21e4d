"""A running node: composes identity, licensing, the swarm and the library.

Only this module and cli.py combine domains. The CLI calls one function here per command.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing

from p2pdist import __version__, _canonical
from p2pdist._api import (
    NodeApi,
    PeerClaim,
    ask_proof,
    client_string,
    parse_client_string,
    request_address,
)
from p2pdist._control import ControlServer
from p2pdist._credit import (
    COLLECTED,
    ISSUED,
    LEDGER_NAME,
    RECEIVED,
    Credit,
    LedgerLog,
    open_ledger,
)
from p2pdist._files import read_bounded
from p2pdist._home import ensure_home, make_private_dirs
from p2pdist._paths import UNSAFE_PATHS_REMEDY, paths_problem
from p2pdist._proof import SignedProof, split_endpoint
from p2pdist._staging import Staging, sweep
from p2pdist._text import is_printable
from p2pdist._writes import LINK_REMEDY, check_dest, check_layout
from p2pdist.errors import (
    ContentMismatch,
    InputError,
    InvalidSignature,
    MalformedObject,
    NetworkError,
    NotLicensed,
    NotTrusted,
    P2PDistError,
    SourceError,
    StorageError,
)
from p2pdist.identity import Identity, atomic_write, key_to_text, load_public_identity
from p2pdist.library import Library, Work, now_iso
from p2pdist.licensing import (
    INFO_KEY,
    ArtistCertificate,
    Collector,
    Encryption,
    License,
    LicenseManifest,
    PaidTerms,
    SignedCertificate,
    SignedManifest,
    Split,
    Terms,
    cc_terms,
    content_of_info,
    embed_license,
    license_of_info,
    verify_certificate,
    verify_info,
)
from p2pdist.licensing._encryption import (
    CHUNK,
    ENCRYPTED_SUFFIX,
    encrypt_tree,
    key_id,
    new_content_key,
)
from p2pdist.licensing._grant import seal_key
from p2pdist.licensing._manifest import ENCRYPTION_SCHEME
from p2pdist.payouts.ledger import MAX_BUNDLE_SIZE, Ledger, VerifyReport
from p2pdist.payouts.receipts import SignedReceipt, verify_receipt
from p2pdist.swarm import (
    Layout,
    PeerConnection,
    PeerSnapshot,
    Profile,
    Swarm,
    TorrentState,
    WorkStatus,
    info_section,
    magnet_info,
    make_magnet,
    make_torrent,
    torrent_layout,
    torrent_name,
)
from p2pdist.swarm._settings import check_bind, license_address_allowed

if TYPE_CHECKING:
    from p2pdist.paid import Shop

__all__ = [
    "FetchResult",
    "Node",
    "PublishResult",
    "WorkSnapshot",
    "certify",
    "check_publish_args",
    "check_source_license",
    "check_trusted",
    "client_version",
    "cosign_draft",
    "export_receipts",
    "import_receipts",
    "list_receipts",
    "load_certificate",
    "parse_collector",
    "publish",
    "publish_draft",
    "read_draft",
    "resolve_work",
    "verify_ledger",
    "verify_work",
]

# A download's resume data is saved this often (s) while it makes progress: a crash then
# costs it about this much. Big works have big resume data (their v2 hash trees), so it
# is saved at most this many bytes per second.
RESUME_EVERY = 1.0
# How long a stopped torrent waits for its disk error to arrive before it is blamed on a peer.
ERROR_SETTLE = 2.0
RESUME_WRITE_RATE = 1024 * 1024
RECONNECT_EVERY = 3.0
MAX_TITLE = 300


# -- publish ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishResult:
    work: str
    infohash: str
    magnet: str
    torrent: Path
    title: str
    license: str
    size: int
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "work": self.work,
            "infohash": self.infohash,
            "magnet": self.magnet,
            "torrent": str(self.torrent),
            "title": self.title,
            "license": self.license,
            "size": self.size,
            "files": list(self.files),
        }


def _slug(text: str) -> str:
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-")
    while "--" in s:
        s = s.replace("--", "-")
    return s[:60] or "work"


def check_publish_args(
    *, title: str, spdx: str | None, creators: Sequence[str] = (), fmt: str = "hybrid",
    paid: PaidTerms | None = None,
) -> Terms:
    """Check what a person typed before any passphrase prompt or hashing."""
    if (spdx is None) == (paid is None):
        raise InputError("give either --license SPDX (a free work) or --price and "
                         "--currency (a work for sale)",
                         remedy="e.g. --license CC-BY-SA-4.0, or --price 5.00 --currency EUR")
    terms: Terms = paid if paid is not None else cc_terms(spdx or "")
    if not is_printable(title.strip(), max_len=MAX_TITLE):
        raise InputError("the title must be 1 to 300 printable characters")
    credits = [c.strip() for c in creators if c.strip()]
    if len(credits) > 32 or not all(is_printable(c, max_len=MAX_TITLE) for c in credits):
        raise InputError("give at most 32 creators of 1 to 300 printable characters each")
    if fmt not in ("hybrid", "v1"):
        raise InputError(f"unknown torrent format {fmt!r}", remedy="use --format hybrid or v1")
    return terms


def parse_collector(text: str) -> Collector:
    """``KEY@HOST:PORT`` (the collector's key as `whoami` prints it, then its node API)."""
    from p2pdist.identity import key_from_text

    key, sep, endpoint = text.strip().partition("@")
    remedy = "e.g. --collector <52-char key>@collector.example.org:7001"
    if not sep:
        raise InputError(f"--collector wants KEY@HOST:PORT, not {text!r}", remedy=remedy)
    try:
        pk = key_from_text(key)
    except P2PDistError:
        raise InputError(f"--collector: {key!r} is not a key", remedy=remedy) from None
    try:
        return Collector.parse_endpoint(pk, endpoint)
    except ValueError as e:
        raise InputError(f"--collector: {endpoint!r}: {e}", remedy=remedy) from None


def external_address(text: str) -> str:
    """One --external-address: an IP literal (IPv4, or IPv6 with or without brackets) in
    its canonical form. A host name is refused: a proof names the IP that was dialed, and
    a name resolved once would go stale (or be someone else's) when the address changes."""
    import ipaddress

    remedy = "give this node's public IP address, e.g. --external-address 203.0.113.7"
    try:
        ip = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        raise InputError(f"--external-address wants an IP address, not {text[:80]!r}",
                         remedy=remedy) from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        raise InputError(f"--external-address {ip} is not an address peers can dial",
                         remedy=remedy)
    return ip.compressed


def publish(
    home: Path,
    identity: Identity,
    path: Path,
    *,
    title: str,
    spdx: str | None = None,
    paid: PaidTerms | None = None,
    creators: Sequence[str] = (),
    collector: Collector | None = None,
    splits: Sequence[Split] = (),
    certificates: Sequence[SignedCertificate] = (),
    fmt: str = "hybrid",
    trackers: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    out: Path | None = None,
    force: bool = False,
    draft: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    encrypt_progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> PublishResult | DraftResult:
    """Hash *path*, sign its license, write the .torrent and add the work to the library.

    With *splits* (several rights holders) and *draft*, write an unsigned-by-the-others
    draft instead (see cosign_draft and publish_draft). Every input is checked before
    anything is written; on error nothing is.
    """
    terms = check_publish_args(title=title, spdx=spdx, creators=creators, fmt=fmt, paid=paid)
    sheet = check_splits(splits) if splits else (Split(identity.public_key, 10_000),)
    if draft is None and {s.pk for s in sheet} != {identity.public_key}:
        raise InputError("a work with other rights holders needs their signatures",
                         remedy="write a draft with --draft FILE; each holder runs "
                         "p2pdist license cosign FILE; then publish --manifest FILE PATH")
    if paid is not None and identity.public_key not in paid.sellers:
        # The content key stays in this home, sealed to this node: only it can sell.
        raise InputError("a work for sale must name you among its sellers: only this node "
                         "will hold its content key",
                         remedy="add your own key with --seller (p2pdist whoami)")
    check_certificates(certificates, sheet)
    title = title.strip()
    credits = tuple(c.strip() for c in creators if c.strip()) or (identity.name,)
    path = _check_source_path(path)
    _check_urls(trackers, web_seeds)
    if draft is None:
        out = _check_out(out, title, force)
    content_key = new_content_key() if paid is not None else b""
    prep = _prepare(home, path, fmt=fmt, content_key=content_key, trackers=trackers,
                    web_seeds=web_seeds, progress=progress, encrypt_progress=encrypt_progress)
    try:
        manifest = LicenseManifest(
            title=title,
            creators=credits,
            created=(now or datetime.now(UTC)).replace(microsecond=0),
            terms=terms,
            splits=sheet,
            content=content_of_info(prep.info),
            collector=collector,
            encryption=prep.encryption,
            certificates=tuple(certificates),
        )
        if draft is not None:
            prep.discard()
            return write_draft(home, identity, manifest, draft, content_key=content_key,
                               fmt=fmt, force=force)
        signed = SignedManifest.sign(manifest, [identity])
    except BaseException:
        prep.discard()
        raise
    assert out is not None  # noqa: S101 - set above when there is no draft
    return _finish(home, prep, signed, out=out, content_key=content_key, identity=identity,
                   now=now)


@dataclass
class _Prepared:
    """A hashed (and, for a paid work, encrypted) work, before its license is signed."""

    torrent: dict[str, Any]
    info: dict[str, Any]
    encryption: Encryption | None
    staging: Path | None  # HOME/paid/.publish-*: the ciphertexts, until the work has an id
    save_parent: Path

    def discard(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def _check_source_path(path: Path) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise InputError(f"no such file or folder: {path}", remedy="check the path")
    path = path.resolve()
    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        raise InputError(f"the folder {path} is empty", remedy="publish a folder with files")
    return path


def _check_urls(trackers: Sequence[str], web_seeds: Sequence[str]) -> None:
    for url in (*trackers, *web_seeds):
        if not url.startswith(("http://", "https://", "udp://")):
            raise InputError(f"not a tracker or web seed URL: {url!r}")


def _check_out(out: Path | None, title: str, force: bool) -> Path:
    out = (out or Path.cwd() / f"{_slug(title)}.torrent").expanduser().absolute()
    if out.is_dir():  # --force replaces a file, never a folder
        raise InputError(f"{out} is a folder", remedy="name the .torrent file to write")
    if out.exists() and not force:
        raise InputError(f"{out} already exists", remedy="choose another --out, or add --force")
    return out


def check_certificates(certs: Sequence[SignedCertificate], sheet: Sequence[Split]) -> None:
    """Each certificate to embed is signed by its label and names a rights holder."""
    holders = {s.pk for s in sheet}
    for c in certs:
        verify_certificate(c, now=datetime.now(UTC))  # InvalidSignature if forged
        if c.certificate.artist not in holders:
            raise InputError(
                f"the certificate of {c.certificate.name} is for "
                f"{key_to_text(c.certificate.artist)}, who holds no share in this work",
                remedy="embed certificates of the work's rights holders only")


def load_certificate(path: Path) -> SignedCertificate:
    return SignedCertificate.from_bytes(read_bounded(path, 64 * 1024, what="a certificate"))


def certify(identity: Identity, artist: bytes, name: str, *, expires: datetime | None,
            out: Path, force: bool = False, now: datetime | None = None) -> SignedCertificate:
    """As a label, certify that *artist* is *name*; write the certificate to *out*."""
    out = out.expanduser().absolute()
    if out.exists() and not force:
        raise InputError(f"{out} already exists", remedy="choose another --out, or --force")
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    try:
        cert = ArtistCertificate(artist=artist, name=name.strip(), label=identity.public_key,
                                 label_name=identity.name, issued=issued, expires=expires)
    except ValueError as e:
        raise InputError(f"cannot certify: {e}") from None
    signed = SignedCertificate.sign(cert, identity)
    atomic_write(out, signed.to_bytes(), mode=None)  # public, handed to the artist: the umask
    return signed


def check_trusted(home: Path, lic: License, *, now: datetime | None = None) -> None:
    """--require-trusted: every holder trusted, or certified by a trusted label."""
    from p2pdist.trust import TrustStore, trust_verdict

    v = trust_verdict(lic.manifest, TrustStore(home), now=now or datetime.now(UTC))
    if not v.trusted:
        who = ", ".join(key_to_text(pk) for pk in v.untrusted)
        expired = (f" ({len(v.expired)} certificate(s) expired)" if v.expired else "")
        raise NotTrusted(f"{lic.manifest.title}: not trusted — no trusted key or label "
                         f"vouches for {who}{expired}")


def check_splits(splits: Sequence[Split]) -> tuple[Split, ...]:
    if sum(s.bps for s in splits) != 10_000:
        raise InputError(f"the splits sum to {sum(s.bps for s in splits)} bps, not 10000",
                         remedy="give basis points that add up to 10000 (100%)")
    if len({s.pk for s in splits}) != len(splits):
        raise InputError("a rights holder appears twice in --split")
    return tuple(sorted(splits, key=lambda s: s.pk))


def _prepare(home: Path, path: Path, *, fmt: str, content_key: bytes,
             trackers: Sequence[str], web_seeds: Sequence[str],
             progress: Callable[[int, int], None] | None,
             encrypt_progress: Callable[[int], None] | None,
             piece_length: int = 0) -> _Prepared:
    encryption: Encryption | None = None
    staging: Path | None = None
    save_parent = path.parent
    if content_key:
        # Encrypt first, into the node home; the torrent is made of the ciphertexts.
        # (Deterministic for one key: a drafted work encrypts the same way again.)
        staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=_paid_dir(home)))
        try:
            files = encrypt_tree(content_key, path, staging, progress=encrypt_progress)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        encryption = Encryption(ENCRYPTION_SCHEME, CHUNK, key_id(content_key),
                                tuple((f.path, f.size) for f in files))
        # A folder keeps its name; a single file becomes NAME.p2pe.
        path = staging / (path.name if path.is_dir() else path.name + ENCRYPTED_SUFFIX)
        save_parent = staging
    try:
        torrent = make_torrent(path, fmt=fmt, trackers=trackers, web_seeds=web_seeds,
                               progress=progress, piece_length=piece_length)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return _Prepared(torrent, torrent["info"], encryption, staging, save_parent)


def _finish(home: Path, prep: _Prepared, signed: SignedManifest, *, out: Path,
            content_key: bytes, identity: Identity, now: datetime | None) -> PublishResult:
    """Embed the signed license, check it as a fan will, write the torrent, add the work."""
    try:
        prep.torrent["info"] = embed_license(prep.info, signed)
        data = _canonical.encode(prep.torrent)
        lic = verify_work(info_section(data), torrent_layout(data))  # as a fan checks it
    except BaseException:
        prep.discard()
        raise
    manifest = signed.manifest
    infohash = hashlib.sha1(info_section(data)).hexdigest()  # noqa: S324 - BitTorrent v1 id
    magnet = make_magnet(data)
    library = Library(home)
    save_parent = prep.save_parent
    if prep.staging is not None:
        # The ciphertexts move to HOME/paid/WORK, and the key is kept sealed to this node.
        final = _paid_dir(home) / lic.work
        if final.exists():
            prep.discard()  # published before: the same bytes
        else:
            os.replace(prep.staging, final)
        save_parent = final
        library.save_secret(lic.work, "key", seal_key(content_key, identity.public_key))
    atomic_write(out, data, mode=None)  # the .torrent is for sharing: the umask decides
    library.add(
        Work(
            work=lic.work, infohash=infohash, title=manifest.title,
            license=manifest.terms.license_id, role="published",
            save_path=str(save_parent), size=manifest.content.total_size, added=now_iso(now),
            complete=True, magnet=magnet,
        ),
        data,
    )
    return PublishResult(
        work=lic.work, infohash=infohash, magnet=magnet, torrent=out, title=manifest.title,
        license=manifest.terms.license_id,
        size=manifest.content.total_size,
        files=tuple("/".join(f.path) for f in manifest.content.files),
    )


# -- split sheets: draft, cosign, publish ---------------------------------------------------

DRAFT_TYPE = "p2pdist/license-draft"
MAX_DRAFT_SIZE = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DraftResult:
    draft: Path
    title: str
    holders: tuple[str, ...]
    signed: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"draft": str(self.draft), "title": self.title, "holders": list(self.holders),
                "signed": list(self.signed),
                "missing": [h for h in self.holders if h not in self.signed]}


def _draft_bytes(manifest_bytes: bytes, sigs: Sequence[tuple[bytes, bytes]], fmt: str) -> bytes:
    return _canonical.encode({
        "format": fmt.encode(), "manifest": manifest_bytes,
        "signatures": [{"pk": pk, "sig": sig} for pk, sig in sorted(sigs)],
        "type": DRAFT_TYPE, "v": 1})


def read_draft(path: Path) -> tuple[SignedManifest, str]:
    """A draft's manifest, the signatures it holds so far (each valid), and its format."""
    from p2pdist._signed import as_bytes, as_dict, as_list, check_version
    from p2pdist.identity import verify_signature
    from p2pdist.licensing import DOMAIN, Signature

    raw = read_bounded(path, MAX_DRAFT_SIZE, what="a license draft")
    d = as_dict(_canonical.decode(raw, max_size=MAX_DRAFT_SIZE, what="license draft"),
                "license draft", frozenset({"type", "v", "format", "manifest", "signatures"}))
    check_version(d, DRAFT_TYPE, "license draft")
    fmt = d["format"]
    if fmt not in (b"hybrid", b"v1"):
        raise MalformedObject("the draft's torrent format is unknown")
    mb = as_bytes(d["manifest"], "draft's manifest", max_len=MAX_DRAFT_SIZE)
    manifest = LicenseManifest.from_bytes(mb)
    holders = {s.pk for s in manifest.splits}
    sigs = []
    for s in as_list(d["signatures"], "draft's signatures", 64):
        sd = as_dict(s, "draft signature", frozenset({"pk", "sig"}))
        pk, sig = as_bytes(sd["pk"], "signer key", 32), as_bytes(sd["sig"], "signature", 64)
        if pk not in holders:
            raise InvalidSignature("the draft holds a signature of someone who is not a "
                                   "rights holder")
        verify_signature(pk=pk, domain=DOMAIN, message=mb, signature=sig)
        sigs.append(Signature(pk, sig))
    return SignedManifest(mb, manifest, tuple(sigs)), fmt.decode()


def _draft_result(path: Path, signed: SignedManifest) -> DraftResult:
    return DraftResult(path, signed.manifest.title,
                       tuple(key_to_text(s.pk) for s in signed.manifest.splits),
                       tuple(key_to_text(s.pk) for s in signed.signatures))


def write_draft(home: Path, identity: Identity, manifest: LicenseManifest, path: Path, *,
                content_key: bytes, fmt: str, force: bool = False) -> DraftResult:
    """Write a draft of *manifest*, signed by *identity* if it is a holder. A paid work's
    content key stays in this home, sealed to it, for publish_draft."""
    path = path.expanduser().absolute()
    if path.exists() and not force:
        raise InputError(f"{path} already exists", remedy="choose another --draft, or --force")
    mb = manifest.signed_bytes()
    from p2pdist.licensing import DOMAIN

    sigs = []
    if any(s.pk == identity.public_key for s in manifest.splits):
        sigs.append((identity.public_key, identity.sign(domain=DOMAIN, message=mb)))
    if content_key:
        Library(home).save_secret(hashlib.sha256(mb).hexdigest(), "key",
                                  seal_key(content_key, identity.public_key))
    atomic_write(path, _draft_bytes(mb, sigs, fmt))
    return _draft_result(path, read_draft(path)[0])


def cosign_draft(identity: Identity, path: Path) -> DraftResult:
    """Add this holder's signature to a draft (after reading what it signs)."""
    from p2pdist.licensing import DOMAIN

    signed, fmt = read_draft(path)
    if identity.public_key not in {s.pk for s in signed.manifest.splits}:
        raise InputError("you hold no share in this work: only its rights holders sign it",
                         remedy="ask the holders named in the split sheet to cosign")
    sigs = {s.pk: s.sig for s in signed.signatures}
    sigs[identity.public_key] = identity.sign(domain=DOMAIN, message=signed.manifest_bytes)
    atomic_write(path, _draft_bytes(signed.manifest_bytes, list(sigs.items()), fmt))
    return _draft_result(path, read_draft(path)[0])


def publish_draft(home: Path, identity: Identity, draft: Path, path: Path, *,
                  trackers: Sequence[str] = (), web_seeds: Sequence[str] = (),
                  out: Path | None = None, force: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  encrypt_progress: Callable[[int], None] | None = None,
                  now: datetime | None = None) -> PublishResult:
    """Publish a draft every holder signed: hash *path* again, check it is the drafted
    content, embed the co-signed license."""
    signed, fmt = read_draft(draft)
    m = signed.manifest
    missing = {s.pk for s in m.splits} - {s.pk for s in signed.signatures}
    if missing:
        raise InvalidSignature(
            f"{len(missing)} rights holder(s) have not signed: "
            + ", ".join(key_to_text(pk) for pk in sorted(missing)),
            remedy="each of them runs: p2pdist license cosign " + str(draft))
    content_key = b""
    if m.encryption is not None:
        sealed = Library(home).secret(hashlib.sha256(signed.manifest_bytes).hexdigest(), "key")
        if sealed is None:
            raise InputError("this draft of a work for sale was made on another node",
                             remedy="publish it from the node that wrote the draft")
        from p2pdist.paid import open_own_key

        content_key = open_own_key(sealed, identity)
    path = _check_source_path(path)
    _check_urls(trackers, web_seeds)
    out = _check_out(out, m.title, force)
    prep = _prepare(home, path, fmt=fmt, content_key=content_key, trackers=trackers,
                    web_seeds=web_seeds, progress=progress, encrypt_progress=encrypt_progress,
                    piece_length=m.content.piece_length)
    if content_of_info(prep.info) != m.content or prep.encryption != m.encryption:
        prep.discard()
        raise ContentMismatch(f"{path} is not the work the draft was made of (files or "
                              "bytes differ)", remedy="publish the same files that were drafted")
    return _finish(home, prep, signed, out=out, content_key=content_key, identity=identity,
                   now=now)


def _paid_dir(home: Path) -> Path:
    """HOME/paid: the ciphertexts of the paid works this node published."""
    d = home / "paid"
    try:
        make_private_dirs(ensure_home(home) / "paid")
    except OSError as e:
        raise StorageError(f"cannot create {d}: {e.strerror}") from None
    return d


# -- sources ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    magnet: str | None = None
    torrent: bytes | None = None
    hashes: tuple[str, ...] = ()


def _resolve_source(text: str, library: Library) -> _Source:
    if text.startswith("magnet:"):
        _, magnet_hashes = magnet_info(text)
        return _Source(magnet=text, hashes=tuple(magnet_hashes))
    p = Path(text).expanduser()
    if p.is_file():
        from p2pdist.swarm import MAX_TORRENT_SIZE

        try:
            data = read_bounded(p, MAX_TORRENT_SIZE, what="a torrent file")
        except InputError as e:
            raise SourceError(e.message, remedy=e.remedy) from None
        info = info_section(data)
        ids = (hashlib.sha1(info).hexdigest(), hashlib.sha256(info).hexdigest())  # noqa: S324
        return _Source(torrent=data, hashes=ids)
    w = library.find(text)
    if w is not None:
        return _Source(torrent=library.torrent(w.work), hashes=(w.infohash, w.work))
    raise SourceError(f"no such magnet link, .torrent file or work: {text[:100]!r}")


def resolve_work(library: Library, ref: str) -> str | None:
    """The library's work id for an id (prefix), a magnet link or a .torrent file."""
    src = _resolve_source(ref, library) if ref.startswith("magnet:") or Path(
        ref).expanduser().is_file() else None
    if src is None:
        w = library.find(ref)
        return w.work if w else None
    return next((w.work for w in library.all() if {w.work, w.infohash} & set(src.hashes)),
                None)


def verify_work(info_bytes: bytes, layout: Layout) -> License:
    """verify_info, and libtorrent's own *layout* of the torrent writes exactly the files
    the license names (p2pdist._writes.check_layout): what `license verify` and `fetch`
    accept, and what `publish` checks before it writes the torrent."""
    lic = verify_info(info_bytes)
    check_layout(layout, lic.manifest.content, licensed=True)
    return lic


def _check_paths(info_bytes: bytes, layout: Layout, dest: Path, *, overwrite: bool) -> None:
    """Refuse a torrent whose files could land outside *dest*, hide what they are, or
    replace files a person already has in *dest* (unless *overwrite*).

    The names must pass p2pdist._paths' rule (a licensed work passed it already in
    verify_manifest; this also covers --allow-unlicensed), libtorrent's *layout* must
    write exactly the torrent's files (check_layout), and no path may go through a link
    already below *dest* or meet a file there (check_dest). A file list we cannot read is
    refused, never left to libtorrent's sanitiser.
    """
    info = _canonical.decode(info_bytes, max_size=1 << 26, strict=False, what="info dict")
    if not isinstance(info, dict):
        raise MalformedObject("the torrent's info is not a dict")
    content = content_of_info(info)
    problem = paths_problem([f.path for f in content.files])
    if problem is not None:
        raise MalformedObject(f"the torrent has an unsafe file list: {problem}",
                              remedy=UNSAFE_PATHS_REMEDY)
    check_layout(layout, content, licensed=INFO_KEY in info)
    check_dest(dest, [f.path for f in layout.written], overwrite=overwrite)


def check_source_license(
    home: Path,
    source: str,
    *,
    profile: Profile,
    peers: Sequence[tuple[str, int]] = (),
    timeout: float = 60.0,
) -> License:
    """Verify the license of a magnet link, .torrent file or library work; return it."""
    library = Library(home)
    src = _resolve_source(source, library)
    if src.torrent is not None:
        return verify_work(info_section(src.torrent), torrent_layout(src.torrent))
    import tempfile

    magnet = src.magnet or ""

    with tempfile.TemporaryDirectory(prefix="p2pdist-meta-") as tmp, Swarm(
        profile=profile,
        listen=("127.0.0.1" if profile is Profile.LOCAL else "0.0.0.0", 0),  # noqa: S104
        client_version=client_version(home),
    ) as swarm:
        swarm.add_magnet("m", magnet, Path(tmp), peers=peers)
        try:
            _need_peer_source(swarm, "m", peers)
            info = _wait_metadata(swarm, "m", timeout, peers)
            return verify_work(info, _layout(swarm, "m"))
        finally:
            swarm.remove("m")  # waits for libtorrent to be done with *tmp*


def _need_peer_source(swarm: Swarm, key: str, peers: Sequence[tuple[str, int]]) -> None:
    """In the local profile, with no --peer and no loopback tracker, nobody can answer."""
    if swarm.profile is Profile.LOCAL and not peers and not swarm.trackers(key):
        raise NetworkError("no way to find peers on the local network",
                           remedy="give --peer HOST:PORT, or publish with a loopback --tracker")


def _layout(swarm: Swarm, key: str) -> Layout:
    layout = swarm.layout(key)
    if layout is None:  # _wait_metadata returned: libtorrent holds the torrent
        raise NetworkError("the work's metadata went away before it could be checked")
    return layout


def _wait_metadata(
    swarm: Swarm, key: str, timeout: float, peers: Sequence[tuple[str, int]]
) -> bytes:
    deadline = time.monotonic() + timeout
    last_connect = time.monotonic()
    while True:
        swarm.poll()
        info = swarm.info_section(key)
        if info is not None:
            return info
        if time.monotonic() > deadline:
            raise NetworkError(f"no peer sent the work's metadata within {timeout:.0f} s")
        if peers and time.monotonic() - last_connect > RECONNECT_EVERY:
            swarm.connect(key, peers)
            last_connect = time.monotonic()
        time.sleep(0.05)


def list_receipts(home: Path, *, work: str | None = None) -> list[dict[str, object]]:
    """One row per (work, uploader, downloader): the latest receipt this node holds,
    issued (we downloaded) or received (we uploaded)."""
    ident = load_public_identity(home)
    log = open_ledger(home, ident.public_key)
    try:
        rows: dict[tuple[bytes, bytes, bytes], dict[str, object]] = {}
        for kind, direction in ((ISSUED, "issued"), (RECEIVED, "received"),
                                (COLLECTED, "collected")):
            for payload in log.payloads(kind):
                r = SignedReceipt.from_bytes(payload).receipt
                if work and not r.work.hex().startswith(work.lower()):
                    continue
                have = rows.get(r.key)
                if have is None or int(str(have["seq"])) < r.seq:
                    rows[r.key] = {
                        "work": r.work.hex(), "uploader": key_to_text(r.uploader),
                        "downloader": key_to_text(r.downloader), "seq": r.seq,
                        "bytes": r.bytes, "ts": r.ts.isoformat().replace("+00:00", "Z"),
                        "direction": direction,
                    }
        return sorted(rows.values(), key=lambda d: (str(d["work"]), str(d["uploader"]),
                                                     str(d["downloader"])))
    finally:
        log.close()


def _check_payload(kind: str, payload: bytes) -> None:
    """Receipts in a ledger or bundle must carry their downloader's valid signature."""
    if kind in (ISSUED, RECEIVED, COLLECTED):
        verify_receipt(SignedReceipt.from_bytes(payload))


def _label_ledger(home: Path) -> Ledger:
    try:
        node = load_public_identity(home).public_key
    except P2PDistError:
        node = None  # a label's home may hold only imported chains
    ensure_home(home)
    return Ledger(home / LEDGER_NAME, node=node)


def verify_ledger(home: Path) -> VerifyReport:
    """Check every chain, checkpoint and receipt signature in this home's ledger.
    Raises LedgerCorrupt / ForkDetected / InvalidSignature (exit 3) at the first problem."""
    led = _label_ledger(home)
    try:
        return led.verify(on_payload=lambda e: _check_payload(e.kind, e.payload))
    finally:
        led.close()


def export_receipts(home: Path, identity: Identity, out: Path) -> dict[str, object]:
    """Write this node's ledger as a signed bundle anyone can verify offline."""
    led = Ledger(home / LEDGER_NAME, node=identity.public_key)
    try:
        data = led.export_bundle(identity, now=datetime.now(UTC))
        size = led.size(identity.public_key)
    finally:
        led.close()
    atomic_write(out, data)
    return {"bundle": str(out), "node": key_to_text(identity.public_key), "entries": size,
            "bytes": len(data)}


def import_receipts(home: Path, files: Sequence[Path]) -> list[dict[str, object]]:
    """Merge bundles into this home's ledger, each node's chain kept whole. A bundle
    that does not verify changes nothing."""
    led = _label_ledger(home)
    try:
        out = []
        for f in files:
            data = read_bounded(f, MAX_BUNDLE_SIZE, what="a ledger bundle")
            report = led.import_bundle(
                data, on_payload=lambda e: _check_payload(e.kind, e.payload))
            out.append({"file": str(f), **report.to_dict()})
        return out
    finally:
        led.close()


def _asker_key(home: Path) -> bytes:
    """The key a node without an unlocked identity asks proofs with: its home's public
    key (so `buy` can use the proofs it kept), or a throwaway one."""
    try:
        return load_public_identity(home).public_key
    except P2PDistError:
        return bytes(nacl.signing.SigningKey.generate().verify_key)


def client_version(home: Path) -> str:
    """The BEP 10 client string that names this node to its peers."""
    try:
        pk = load_public_identity(home).public_key
    except P2PDistError:
        return f"p2pdist/{__version__}"
    return client_string(pk, None)


# -- the running node ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkSnapshot:
    work: str
    title: str
    status: WorkStatus
    peers: tuple[PeerSnapshot, ...]


@dataclass(frozen=True, slots=True)
class FetchResult:
    work: str
    infohash: str
    title: str
    license: License | None
    dest: Path
    size: int
    seconds: float
    downloaded: int
    peers: tuple[dict[str, object], ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "work": self.work,
            "infohash": self.infohash,
            "title": self.title,
            "licensed": self.license is not None,
            "license": self.license.to_dict() if self.license else None,
            "dest": str(self.dest),
            "size": self.size,
            "downloaded": self.downloaded,
            "seconds": round(self.seconds, 3),
            "rate": int(self.downloaded / self.seconds) if self.seconds > 0 else 0,
            "peers": list(self.peers),
        }

# Per-connection proof state kept for peers that are gone without trading payload, at
# most: past it, what is kept for those is forgotten (every connection leaves a record).
MAX_IDLE_PEERS = 4096

# A peer whose /identity proof fails (its API busy, a timeout) is asked again, with a
# backoff from 1 s up to PROOF_RETRY_MAX, for as long as it is a peer: a plain
# BitTorrent peer until then.
PROOF_RETRY_MAX = 5.0


class Node:
    """A libtorrent session over this home's library.

    `seed_library()` adds every work; `fetch()` brings a new one in after checking its
    license; `tick()` keeps resume data fresh; `close()` saves it all.
    """

    def __init__(
        self,
        home: Path,
        *,
        profile: Profile,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        peers: Sequence[tuple[str, int]] = (),
        upload_limit: int = 0,
        download_limit: int = 0,
        identity: Identity | None = None,
        api_listen: tuple[str, int] | None = None,
        control: bool = False,
        external_addresses: Sequence[str] = (),
    ) -> None:
        """With an *identity* the node serves its API (default: the BitTorrent port + 1)
        and names itself ``p2pdist/V pk=KEY api=PORT`` to its peers. Its identity proofs
        vouch for its API port on the address a request arrived on and on each of
        *external_addresses* (--external-address: the public address behind a NAT, as
        the user configured it; never one that peers report). With *control* it
        also serves GET /status on 127.0.0.1 for `p2pdist status` (one such node per
        home: HomeInUse if another one answers)."""
        # The local profile binds loopback only: refused before anything is started.
        check_bind(profile, listen[0], option="--listen")
        if api_listen is not None:
            check_bind(profile, api_listen[0], option="--api-listen")
        external = [external_address(a) for a in external_addresses]
        self.home = home
        self.profile = profile
        self.started = time.monotonic()
        self._snaps: list[WorkSnapshot] = []
        self._collectors: dict[str, Collector | None] = {}
        self._licenses: dict[str, License] = {}  # verified, of works in the library
        self._address_verdicts: dict[str, tuple[bool, float]] = {}  # host -> (ok, until)
        # Peers' claimed keys count only once proven through their /identity challenge,
        # bound to the API endpoint dialed (a relay cannot pass): connection -> key, and
        # the proof. Per connection, not per IP:PORT: a later connection from the same
        # IP:PORT (a reused source port, a NAT) is another peer, unproven.
        self._proven: dict[PeerConnection, bytes] = {}
        # Endpoints where another node proved this node's own key, and when.
        self.twins: dict[str, float] = {}
        self._proofs: dict[PeerConnection, SignedProof] = {}
        self._proving: set[PeerConnection] = set()
        # A proof that failed is tried again, with a capped backoff, while the peer stays.
        self._failed_proofs: dict[PeerConnection, tuple[int, float]] = {}  # (tries, retry at)
        self._peers_cap = MAX_IDLE_PEERS  # see _forget_gone_peers
        self._late_proof = False  # a proof succeeded: receipts may be due for done works
        # Who asks (the proofs are bound to it): this home's key, or a throwaway one.
        self._asker = identity.public_key if identity is not None else _asker_key(home)
        self._lock = threading.Lock()
        self.api: NodeApi | None = None
        self.identity = identity
        # Before the session starts: a second node in this home must not touch it.
        self.control = ControlServer(home) if control else None
        self.library = Library(home)
        sweep(home)  # staging folders a fetch that crashed left behind (p2pdist._staging)
        self.peers = tuple(peers)
        try:
            self.swarm = Swarm(
                profile=profile, listen=listen, client_version=client_version(home),
                upload_limit=upload_limit, download_limit=download_limit,
            )
        except P2PDistError:
            if self.control is not None:
                self.control.close()
            raise
        self.ledger: LedgerLog | None = None
        self.credit: Credit | None = None
        self.shop: Shop | None = None
        if identity is not None:
            host, port = api_listen or (listen[0], self.swarm.listen_port + 1)
            # The API answers only once its routes are in place (a receipt sent while the
            # node starts waits in the listen queue, it does not get a 404), and a ledger
            # that cannot be opened closes everything this node started.
            try:
                try:
                    self.api = NodeApi(identity, host, port, external_hosts=external)
                except P2PDistError:
                    if api_listen:
                        raise
                    # The default port is taken: any port will do, the handshake names it.
                    self.api = NodeApi(identity, host, 0, external_hosts=external)
                self.ledger = open_ledger(home, identity.public_key)
                self.credit = Credit(identity, self.ledger, work_size=self._work_size,
                                     collector_of=self._collector_of,
                                     license_of=self._license_of,
                                     may_send_to=self._may_send_to,
                                     claimed_now=self._claimed_now)
                self.credit.load()
            except P2PDistError:
                if self.ledger is not None:
                    self.ledger.close()
                if self.api is not None:
                    self.api.close()
                self.swarm.close()
                if self.control is not None:
                    self.control.close()
                raise
            self.swarm.set_client_version(client_string(identity.public_key, self.api.port))
            credit = self.credit
            self.api.route("POST", "/receipts",
                           lambda q, body: (200, credit.accept(body, request_address())))
            self.api.route("POST", "/payments",
                           lambda q, body: (200, credit.collect_payment(body,
                                                                        request_address())))
            from p2pdist.paid import VOUCHERS_NAME, Shop

            shop = self.shop = Shop(identity, self.library, self.ledger, home / VOUCHERS_NAME)
            self.api.route("POST", "/purchase", lambda q, body: (200, shop.handle(body)))
            self.api.start()
        self._titles: dict[str, str] = {}
        self._next_resume = time.monotonic() + RESUME_EVERY
        self._resumed_done: dict[str, int] = {}  # work -> total_done when last saved
        self._last_connect = time.monotonic()
        self._completed: set[str] = set()
        self.problems: dict[str, str] = {}  # work -> what a person should look at
        if self.control is not None:
            try:
                self.control.start(self.status_report)
            except P2PDistError:
                self.close()
                raise

    @property
    def listen_port(self) -> int:
        return self.swarm.listen_port

    def seed_library(self, *, super_seed: bool = False) -> list[Work]:
        """Add every work of the library to the session, from resume data where saved.
        With *super_seed*, complete works are seeded as their initial seeder would
        (see Swarm.super_seed): for launching a work to many fans at once."""
        works = self.library.all()
        for w in works:
            if w.work in self._titles:
                continue
            if w.complete and not _data_present(Path(w.save_path),
                                                self.library.torrent(w.work)):
                self.problems[w.work] = f"files missing in {w.save_path}"
            resume = self.library.resume(w.work)
            if resume:
                self.swarm.add_resume(w.work, resume, Path(w.save_path), peers=self.peers)
            else:
                self.swarm.add_torrent(
                    w.work, self.library.torrent(w.work), Path(w.save_path),
                    peers=self.peers, seed_mode=w.role == "published" and w.complete,
                )
            self._titles[w.work] = w.title
            if w.complete:
                self._completed.add(w.work)
                if super_seed:
                    self.swarm.super_seed(w.work)
        return works

    def fetch(
        self,
        source: str,
        dest: Path,
        *,
        allow_unlicensed: bool = False,
        metadata_timeout: float = 60.0,
        on_warning: Callable[[str], None] | None = None,
        overwrite: bool = False,
        require_trusted: bool = False,
    ) -> tuple[Work, License | None]:
        """Add *source* held, verify its license, then let the payload flow into *dest*.

        Nothing is written in *dest* unless the license verified (or, with
        *allow_unlicensed*, the torrent has none at all).
        """
        src = _resolve_source(source, self.library)
        dest = dest.expanduser().absolute()
        if dest.exists() and not dest.is_dir():
            raise InputError(f"--dest {dest} is a file, not a folder")
        known = next((w for w in self.library.all() if {w.work, w.infohash} & set(src.hashes)),
                     None)
        key = known.work if known else "pending"
        # A work fetched into *dest* before resumes there. Any other waits in a staging
        # folder of its own, never *dest*, until every check passed (p2pdist._staging):
        # libtorrent creates files and links as soon as it knows the file list.
        here = known is not None and Path(known.save_path) == dest
        staging = None if here else Staging(self.home, src.hashes[0] if src.hashes else "")
        try:
            if staging is None and known and self.library.resume(known.work):
                self.swarm.add_resume(key, self.library.resume(known.work) or b"", dest,
                                      peers=self.peers, hold=True)
            elif staging is None and known:
                self.swarm.add_torrent(key, self.library.torrent(known.work), dest,
                                       peers=self.peers, hold=True)
            elif staging is not None and src.torrent is not None:
                self.swarm.add_torrent(key, src.torrent, staging.path, peers=self.peers,
                                       hold=True, off_disk=True)
            elif staging is not None:
                self.swarm.add_magnet(key, src.magnet or "", staging.path, peers=self.peers)
            try:
                if src.magnet and not here:
                    _need_peer_source(self.swarm, key, self.peers)  # or wait in vain
                info = _wait_metadata(self.swarm, key, metadata_timeout, self.peers)
                lic: License | None
                try:
                    # (1) signatures (2) content binding (3) terms (4) libtorrent's paths
                    lic = verify_work(info, _layout(self.swarm, key))
                except NotLicensed:
                    if not allow_unlicensed:
                        raise
                    lic = None
                    if on_warning:
                        on_warning("this torrent carries no p2pdist license: fetched on "
                                   "your word")
                if require_trusted:
                    if lic is None:
                        raise NotTrusted("an unlicensed torrent has no holder to trust")
                    check_trusted(self.home, lic)
                # What a work already fetched into *dest* wrote there is its own to resume.
                _check_paths(info, _layout(self.swarm, key), dest, overwrite=overwrite or here)
                if not here:
                    _need_peer_source(self.swarm, key, self.peers)
                work_id = hashlib.sha256(info).hexdigest()
                if key == "pending":
                    self.swarm.rekey(key, work_id)
                    key = work_id
                made = not os.path.lexists(dest)
                try:
                    dest.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise InputError(f"cannot create {dest}: {e.strerror}") from None
                if made and dest.is_symlink():  # not the one the user gave: made since
                    raise MalformedObject(f"{dest} became a symbolic link while the fetch "
                                          "started", remedy=LINK_REMEDY)
                if staging is not None:  # checked: from the staging folder to *dest*
                    self.swarm.move(key, dest)
                status = self.swarm.status(key)
                work = Work(
                    work=work_id,
                    infohash=hashlib.sha1(info).hexdigest(),  # noqa: S324 - BitTorrent v1 id
                    title=lic.manifest.title if lic else status.name,
                    license=lic.manifest.terms.license_id if lic else "unlicensed",
                    role=known.role if known else "fetched",
                    save_path=str(dest),
                    size=lic.manifest.content.total_size if lic else status.total_wanted,
                    added=known.added if known else now_iso(),
                    complete=False,
                    magnet=known.magnet if known else (src.magnet or ""),
                )
                if not here:
                    self.library.add(work, src.torrent or self.swarm.torrent_bytes(key) or b"")
            except BaseException:
                # A staged work goes with what libtorrent made in its folder (see remove).
                self.swarm.remove(key)
                raise
        finally:
            if staging is not None:
                staging.remove()
        self._titles[key] = work.title
        self.swarm.release(key)
        self.swarm.connect(key, self.peers)
        return work, lic

    def tick(self) -> list[WorkSnapshot]:
        """Process events, save resume data now and then; return a snapshot of every work."""
        for err in self.swarm.poll():
            # A work whose files went missing shows as an error in its own status; only a
            # lost listening socket stops the node.
            if "listen" in err:
                raise NetworkError(err)
        now = time.monotonic()
        snaps = []
        with self._lock:  # a proof that came late: issue the receipts it was holding back
            late, self._late_proof = self._late_proof, False
        for key in self.swarm.works():
            st = self.swarm.status(key)
            peers = tuple(self.swarm.peers(key))
            snaps.append(WorkSnapshot(key, self._titles.get(key, st.name), st, peers))
            uploaded = self.swarm.uploaded_bytes(key)
            self._prove_peers([p.connection for p in peers]
                              + list(self.swarm.verified_bytes(key)) + list(uploaded))
            self._note_uploads(key, peers, uploaded)
            if st.state is TorrentState.DOWNLOADING or (late and key in self._completed):
                self._issue_receipts(key, final=False)
            if late and key in self._completed:
                self._note_sellers(key)
            if st.complete and key not in self._completed:
                self._on_complete(key)
        with self._lock:
            self._snaps = snaps
        self._forget_gone_peers(snaps)
        if now >= self._next_resume:
            due = [s for s in snaps if s.status.state is TorrentState.DOWNLOADING
                   and self._resumed_done.setdefault(s.work, s.status.total_done)
                   != s.status.total_done]
            saved = self._save_resume([s.work for s in due])
            for s in due:
                if s.work in saved:
                    self._resumed_done[s.work] = s.status.total_done
            self._next_resume = now + max(
                RESUME_EVERY, sum(len(d) for d in saved.values()) / RESUME_WRITE_RATE)
        if self.peers and now - self._last_connect > RECONNECT_EVERY:
            for s in snaps:
                if s.status.num_peers == 0:
                    self.swarm.connect(s.work, self.peers)
            self._last_connect = now
        return snaps

    def status_report(self) -> dict[str, Any]:
        """What `p2pdist status` shows: works, peers and credit as of the last tick.

        Called from the control API's threads: it reads the last snapshot, never the
        session itself.
        """
        with self._lock:
            snaps, proven = list(self._snaps), dict(self._proven)
        works = []
        for s in snaps:
            st = s.status
            works.append({
                "work": s.work, "title": s.title, "state": st.state.value,
                "error": st.disk_error or st.error or None, "progress": round(st.progress, 4),
                "size": st.total_wanted, "done": st.total_done,
                "down_rate": st.down_rate, "up_rate": st.up_rate, "uploaded": st.uploaded,
                "credit": self.credit_of(s.work),
                "peers": [{
                    "peer": p.endpoint, "client": p.client,
                    "pk": key_to_text(proven[p.connection]) if p.connection in proven
                    else None,
                    "downloaded": p.downloaded, "uploaded": p.uploaded,
                    "down_rate": p.down_rate, "up_rate": p.up_rate,
                } for p in s.peers],
            })
        return {
            "ok": True, "running": True, "version": __version__, "home": str(self.home),
            "network": self.profile.value, "listen_port": self.listen_port,
            "api_port": self.api.port if self.api else None,
            "pk": key_to_text(self.identity.public_key) if self.identity else None,
            "uptime": round(time.monotonic() - self.started, 1),
            "credit": sum(w["credit"] for w in works),
            "works": works,
            "warnings": [
                f"another node proves this node's key at {ep}: two nodes with one key (a "
                "copied home?) can redeem one voucher code twice. Stop one, or give it a "
                "key of its own (p2pdist init in a fresh home)"
                for ep in sorted(dict(self.twins))],
        }

    def finished(self, key: str) -> bool:
        """Complete, with its resume data saved and the library record updated."""
        return key in self._completed

    def _prove_peers(self, connections: Sequence[PeerConnection]) -> None:
        """Check, in the background, each new peer's claimed key through its API."""
        for c in connections:
            claim = parse_client_string(self.swarm.peer_client(c))
            if claim is None or claim.api_port is None:
                continue
            with self._lock:
                if c in self._proven or c in self._proving:
                    continue
                if time.monotonic() < self._failed_proofs.get(c, (0, 0.0))[1]:
                    continue
                self._proving.add(c)
            host = c.endpoint.rpartition(":")[0].strip("[]")
            threading.Thread(target=self._prove, args=(c, host, claim), daemon=True,
                             name=f"prove-{c.endpoint}").start()

    def _forget_gone_peers(self, snaps: Sequence[WorkSnapshot]) -> None:
        """Drop the proofs, failed tries and proven keys of connections that are gone and
        traded no payload, once over MAX_IDLE_PEERS: a peer that only connects must not
        grow the node's memory."""
        with self._lock:
            size = len(self._proven) + len(self._failed_proofs)
            if size <= self._peers_cap:
                return
        keep = {p.connection for s in snaps for p in s.peers}
        for key in self.swarm.works():
            keep.update(self.swarm.verified_bytes(key))
            keep.update(self.swarm.uploaded_bytes(key))
        with self._lock:
            keep |= self._proving
            for m in (self._proven, self._proofs, self._failed_proofs):
                for c in [c for c in m if c not in keep]:
                    del m[c]
            self._peers_cap = max(MAX_IDLE_PEERS,
                                  2 * (len(self._proven) + len(self._failed_proofs)))

    def _prove(self, c: PeerConnection, host: str, claim: PeerClaim) -> None:
        try:
            proof, _ = ask_proof(host, claim.api_port or 0, asker=self._asker,
                                 keys=(claim.pk,), timeout=5)
        except P2PDistError:
            # Unproven for now: a plain BitTorrent peer until a later try succeeds (a
            # relay never does: its endpoint is not the key holder's).
            with self._lock:
                self._proving.discard(c)
                tries = self._failed_proofs.get(c, (0, 0.0))[0] + 1
                self._failed_proofs[c] = (
                    tries, time.monotonic() + min(PROOF_RETRY_MAX, 0.5 * 2 ** tries))
            return
        with self._lock:
            self._proving.discard(c)
            self._failed_proofs.pop(c, None)
            if self.identity is not None and claim.pk == self.identity.public_key:
                # Another node holds this node's secret key (a copied home): it can
                # redeem the same voucher codes (the audit's double-spend). Warn; it is
                # no peer to exchange receipts with (nobody acknowledges itself).
                self.twins[c.endpoint] = time.time()
                return
            self._proven[c] = claim.pk
            self._proofs[c] = proof
            self._late_proof = True

    def proven_key(self, connection: PeerConnection, wait: float = 0.0) -> bytes | None:
        """The key the peer of *connection* proved, waiting up to *wait* s for a proof
        under way."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                pk = self._proven.get(connection)
                busy = connection in self._proving
            if pk is not None or not busy or time.monotonic() >= deadline:
                return pk
            time.sleep(0.02)

    def served(self, key: str) -> list[dict[str, object]]:
        """Verified payload bytes per peer that sent them, largest first, with the key
        each peer proved (None for plain BitTorrent clients)."""
        rows = sorted(self.swarm.verified_bytes(key).items(), key=lambda kv: -kv[1])
        out: list[dict[str, object]] = []
        for c, n in rows:
            if n:
                pk = self.proven_key(c, wait=3.0)
                pk_text = key_to_text(pk) if pk else None
                receipt = self.receipts_issued(key).get(pk_text or "")
                out.append({"peer": c.endpoint, "client": self.swarm.peer_client(c),
                            "bytes": n, "pk": pk_text, "receipt": receipt})
        return out

    def _work_size(self, work: bytes) -> int | None:
        try:
            return self.library.get(work.hex()).size
        except P2PDistError:
            return None

    def _collector_of(self, work: bytes) -> Collector | None:
        """The collector the work's (verified, stored) license names, if any."""
        key = work.hex()
        if key not in self._collectors:
            try:
                _, signed = license_of_info(info_section(self.library.torrent(key)))
                self._collectors[key] = signed.manifest.collector
            except P2PDistError:
                return None  # not (yet) in the library: ask again later
        return self._collectors[key]

    def _license_of(self, work: bytes) -> License | None:
        """The verified license of a work in this node's library, or None (not in it, or
        not yet). Verified once per work and node run."""
        key = work.hex()
        lic = self._licenses.get(key)
        if lic is None:
            try:
                lic = verify_info(info_section(self.library.torrent(key)))
            except P2PDistError:
                return None
            self._licenses[key] = lic  # one dict store: no lock needed
        return lic

    def _may_send_to(self, host: str) -> bool:
        """May receipts go to *host*, a collector a license names? Loopback only in the
        local profile; in the internet profile, globally routable addresses only (a
        publisher must not make every fan POST into the fan's own network). A name's
        verdict is kept for 5 minutes, so DNS is not asked for every receipt."""
        now = time.monotonic()
        cached = self._address_verdicts.get(host)
        if cached is not None and cached[1] > now:
            return cached[0]
        ok = license_address_allowed(self.profile, host)
        if len(self._address_verdicts) >= 1024:
            self._address_verdicts.clear()
        self._address_verdicts[host] = (ok, now + 300.0)
        return ok

    def _issue_receipts(self, key: str, *, final: bool) -> None:
        """Acknowledge verified bytes to each uploader that proved its key."""
        if self.credit is None or key == "pending":
            return
        size = self._work_size(bytes.fromhex(key))
        if size is None:
            return
        per_key: dict[bytes, tuple[int, str, int]] = {}
        for c, n in self.swarm.verified_bytes(key).items():
            pk = self.proven_key(c, wait=3.0 if final else 0.0)
            with self._lock:
                proof = self._proofs.get(c)
            if pk is None or proof is None:
                continue  # a plain BitTorrent peer: data, but no receipts
            # Receipts go to the API endpoint on which the key was proven, and nowhere
            # else: not to another endpoint that merely claims the key.
            host, port = split_endpoint(proof.proof.endpoint)
            total, _, _ = per_key.get(pk, (0, "", 0))
            per_key[pk] = (total + n, host, port)
        self.credit.observe(bytes.fromhex(key), size, per_key, final=final)

    def _note_uploads(self, key: str, peers: Sequence[PeerSnapshot],
                      uploaded: dict[PeerConnection, int]) -> None:
        """Tell the credit what this session sent each key of *key*: the bytes that back
        the receipts it will keep, summed over the connections that proved the key or
        claimed it in their handshake.

        A claim is enough here. A receipt still needs the key's own signature, so bytes
        sent to a peer that claimed someone else's key only give that key's real holder
        room it already had; and a fan whose connection closed before its proof came
        back (a full disk stopped its fetch) must not find the bytes it really got
        missing from its backing, or every later cumulative receipt of it is refused."""
        if self.credit is None or key == "pending":
            return
        per_key: dict[bytes, int] = {}
        for c, n in uploaded.items():
            pk = self.proven_key(c)
            if pk is None:
                claim = parse_client_string(self.swarm.peer_client(c))
                pk = claim.pk if claim is not None else None
            if pk is not None and n:
                per_key[pk] = per_key.get(pk, 0) + n
        connected = []
        for p in peers:
            claim = parse_client_string(p.client or self.swarm.peer_client(p.connection))
            if claim is not None:
                connected.append(claim.pk)
        self.credit.observe_uploads(bytes.fromhex(key), per_key, connected)

    def _claimed_now(self, work: bytes) -> set[bytes]:
        """The keys the peers connected to *work* claim right now (an API thread asks)."""
        claims = (parse_client_string(c) for c in self.swarm.live_clients(work.hex()))
        return {c.pk for c in claims if c is not None}

    def credit_of(self, key: str) -> int:
        """Bytes of *key* that downloaders acknowledged to this node."""
        if self.credit is None or len(key) != 64:
            return 0
        return self.credit.received_totals().get(bytes.fromhex(key), 0)

    def receipts_issued(self, key: str) -> dict[str, dict[str, int]]:
        if self.credit is None:
            return {}
        acked = self.credit.acknowledged(bytes.fromhex(key))
        # "acknowledged": the highest seq the uploader answered for (0: none this run).
        return {key_to_text(pk): {"seq": r.seq, "bytes": r.bytes,
                                  "acknowledged": acked.get(pk, 0)}
                for pk, r in self.credit.issued(bytes.fromhex(key)).items()}

    def _on_complete(self, key: str) -> None:
        self._completed.add(key)
        self._issue_receipts(key, final=True)
        self._note_sellers(key)
        # The resume data holds the info dict and the v2 hash trees: seeding restarts from
        # it. (Rebuilding a .torrent with piece layers from it costs libtorrent 2.1 seconds
        # of CPU per hundred MiB, so we don't.)
        self._save_resume([key])
        self.library.mark_complete(key)

    def _note_sellers(self, key: str) -> None:
        """Remember the peers that proved a seller key of this paid work (for `buy`)."""
        if key == "pending":
            return
        try:
            _, signed = license_of_info(info_section(self.library.torrent(key)))
        except P2PDistError:
            return
        terms = signed.manifest.terms
        if not isinstance(terms, PaidTerms):
            return
        with self._lock:
            proofs = dict(self._proofs)
        for proof in proofs.values():
            # The signed proof itself, bound to this node's key and the endpoint dialed:
            # `buy` asks only where a seller proved its key, never where one was claimed.
            p = proof.proof
            if p.pk in terms.sellers:
                self.library.note_seller(key, f"{key_to_text(p.pk)}@{p.endpoint} "
                                         f"{proof.to_bytes().hex()}")

    def _save_resume(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        saved = self.swarm.save_resume(keys)
        for k, data in saved.items():
            self.library.save_resume(k, data)
        return saved

    def close(self) -> None:
        """Acknowledge what arrived, save resume data for every work, stop the session."""
        try:
            try:
                if self.credit is not None:
                    # A fetch that stops early (Ctrl-C, a full disk, a lost peer) still
                    # acknowledges the verified bytes since its last receipt.
                    for k in self.swarm.works():
                        if k != "pending" and k not in self._completed:
                            self._issue_receipts(k, final=True)
                    self.credit.flush()
                    for k in self.swarm.works():  # what it sent, for after a restart
                        if k != "pending":
                            self._note_uploads(k, (), self.swarm.uploaded_bytes(k))
                    self.credit.save_served()
            finally:
                self._save_resume([k for k in self.swarm.works() if k != "pending"])
        finally:
            self.swarm.close()
            if self.api is not None:
                self.api.close()
            if self.shop is not None:
                self.shop.close()
            if self.ledger is not None:
                self.ledger.close()
            if self.control is not None:
                self.control.close()


def _data_present(save_path: Path, torrent: bytes) -> bool:
    """Whether the work's top-level file or folder is still where it was saved."""
    try:
        name = torrent_name(torrent)
    except P2PDistError:
        return True
    return (save_path / name).exists()


def _disk_error(status: WorkStatus, dest: str) -> StorageError:
    """A failed write into the fetch's folder, and how to carry on."""
    if status.disk_full:
        return StorageError(
            f"the disk is full: no space left to write {status.disk_error.partition(':')[0]}",
            remedy=f"free some space on the disk of {dest}, then run the same fetch "
            "again: it resumes where it stopped")
    return StorageError(f"cannot write the work's files: {status.disk_error}",
                        remedy="fix the folder (permissions, a missing disk), then run the "
                        "same fetch again: it resumes where it stopped")


def _storage_error(msg: str) -> P2PDistError:
    if "v1 and v2 hashes" in msg:
        # libtorrent stops a hybrid torrent when a peer's data passes one hash and fails
        # the other: a corrupt or hostile peer, not the disk.
        return NetworkError(f"a peer sent data that fails verification ({msg})",
                            remedy="run the same fetch again: it resumes, and verified "
                            "pieces are kept")
    return StorageError(f"disk error: {msg}")


def wait_complete(
    node: Node,
    key: str,
    *,
    on_progress: Callable[[WorkSnapshot], None] | None = None,
    stall_timeout: float = 600.0,
    interval: float = 0.2,
) -> WorkSnapshot:
    """Tick *node* until *key* is complete; NetworkError when no byte arrives for long."""
    last_done, last_change = -1, time.monotonic()
    while True:
        snaps = {s.work: s for s in node.tick()}
        snap = snaps[key]
        if on_progress:
            on_progress(snap)
        if snap.status.disk_error:
            # Before the torrent's own error: a write that failed can also show as data
            # that fails its hash check.
            raise _disk_error(snap.status, node.library.get(key).save_path)
        if snap.status.state is TorrentState.ERROR:
            # libtorrent's disk thread posts the failed write (file_error_alert) on its
            # own time: a hybrid torrent whose write failed can stop on "v1 and v2 hashes
            # do not describe the same data" a tick before the write's own error arrives.
            settle = time.monotonic() + ERROR_SETTLE
            while not snap.status.disk_error and time.monotonic() < settle:
                time.sleep(0.05)
                snap = {s.work: s for s in node.tick()}[key]
            if snap.status.disk_error:
                raise _disk_error(snap.status, node.library.get(key).save_path)
            raise _storage_error(snap.status.error)
        if snap.status.complete and node.finished(key):
            return snap
        if snap.status.total_done != last_done:
            last_done, last_change = snap.status.total_done, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            raise NetworkError(
                f"no data arrived for {stall_timeout:.0f} s "
                f"({snap.status.total_done} of {snap.status.total_wanted} bytes)",
                remedy="check the peers, then run the same fetch again: it resumes",
            )
        time.sleep(interval)


def fetch_result(node: Node, work: Work, lic: License | None, started: float,
                 snap: WorkSnapshot) -> FetchResult:
    return FetchResult(
        work=work.work, infohash=work.infohash, title=work.title, license=lic,
        dest=Path(work.save_path), size=snap.status.total_wanted,
        seconds=time.monotonic() - started, downloaded=snap.status.total_payload_download,
        peers=tuple(node.served(work.work)),
    )


