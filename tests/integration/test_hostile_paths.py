"""Hostile file names, the way a hostile artist ships them: nothing lands outside --dest.

Each work here is a real torrent with a real license, signed by a real key. The names
libtorrent's creator would refuse are written as raw canonical bencode, as a patched
client would write them. A fan meets them through the real CLI:

- `p2pdist fetch MAGNET --peer ...`, with a libtorrent session in this process seeding the
  crafted torrent (the metadata comes from the peer, over BEP 9);
- `p2pdist fetch FILE.torrent --allow-unlicensed`, the same names with no license;
- `p2pdist unlock WORK --dest DIR`, a paid work whose manifest lists the hostile
  plaintext names, in a library a pre-rule p2pdist could have written.

A second set is built by hand as v1, v2 and hybrid info dicts, the way a patched
client writes them (a v2 file keyed apart from the torrent's name, a file listed twice,
executable, hidden and symlink attributes, empty names, pad files): the license shows
what p2pdist reads, and libtorrent's own reading decides what would be written.

Before and after each command, the whole test folder (fan home, seeder, canary folder
beside --dest) is snapshotted: every refusal is a named P2PDistError with a remedy and
the exit code of DESIGN.md, in under 10 s, and nothing anywhere changed. The rule
itself is p2pdist/_paths.py; a work whose names are edgy but portable still fetches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist import _canonical
from p2pdist import errors as errors_mod
from p2pdist.identity import Identity, load_public_identity
from p2pdist.library import Library, Work, now_iso
from p2pdist.licensing import (
    CHUNK,
    DOMAIN,
    INFO_KEY,
    CCTerms,
    Content,
    ContentFile,
    LicenseManifest,
    PaidTerms,
    Split,
    encrypt_file,
    key_id,
    verify_info,
)
from p2pdist.licensing._grant import LicenseGrant, SignedGrant, seal_key
from p2pdist.licensing._manifest import ENCRYPTION_SCHEME, ENVELOPE_TYPE
from p2pdist.swarm import Profile, Swarm, info_section, make_magnet
from tests.conftest import free_port, run_cli

PIECE = 16 * 1024
MALLORY = Identity("Mallory", nacl.signing.SigningKey(hashlib.sha256(b"mallory").digest()))
REFUSAL_DEADLINE = 10.0
# Absolute targets a hostile name aims at; as root (CI) a write there would be real.
ABSOLUTE_TARGETS = [Path("/etc/p2pdist-hostile"), Path("/tmp/p2pdist-hostile")]

Path_ = tuple[str, ...]


# -- the hostile artist's tools -------------------------------------------------------------


@dataclass
class Spec:
    """A work: (path, bytes) per file, the top-level name first; extra per-file keys."""

    files: list[tuple[Path_, bytes]]
    extra: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def single(self) -> bool:
        return len(self.files) == 1 and len(self.files[0][0]) == 1 and not self.extra


def _b(text: str) -> bytes:
    return text.encode("utf-8")


def _pieces(data: bytes) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + PIECE]).digest()  # noqa: S324 - BitTorrent v1
                    for i in range(0, max(1, len(data)), PIECE))


def _info(spec: Spec) -> dict[str, Any]:
    data = b"".join(d for _, d in spec.files)
    info: dict[str, Any] = {"name": _b(spec.files[0][0][0]), "piece length": PIECE,
                            "pieces": _pieces(data)}
    if spec.single:
        info["length"] = len(data)
    else:
        info["files"] = [{"length": len(d), "path": [_b(p) for p in path[1:]],
                          **spec.extra.get(i, {})} for i, (path, d) in enumerate(spec.files)]
    return info


def _content(files: list[tuple[Path_, int]], pieces: bytes) -> dict[str, Any]:
    return {"files": [{"path": [_b(p) for p in path], "size": n}
                      for path, n in sorted(files)],
            "piece_length": PIECE, "v1": hashlib.sha256(pieces).digest()}


def _base_manifest(terms: CCTerms | PaidTerms) -> dict[str, Any]:
    """The honest fields, from p2pdist's own manifest code."""
    placeholder = Content(PIECE, (ContentFile(("x",), 1, None),), b"\0" * 32)
    enc = None
    if isinstance(terms, PaidTerms):
        from p2pdist.licensing import Encryption

        enc = Encryption(ENCRYPTION_SCHEME, CHUNK, b"\0" * 32, ((("x",), 1),))
    m = LicenseManifest(title="Hostile", creators=("Mallory",),
                        created=datetime(2026, 1, 1, tzinfo=UTC), terms=terms,
                        splits=(Split(MALLORY.public_key, 10_000),), content=placeholder,
                        encryption=enc)
    return m.to_dict()


def _signed_torrent(info: dict[str, Any], manifest: dict[str, Any]) -> bytes:
    mb = _canonical.encode(manifest)
    sig = MALLORY.sign(domain=DOMAIN, message=mb)
    info = {**info, INFO_KEY: {"manifest": mb, "signatures": [
        {"pk": MALLORY.public_key, "sig": sig}], "type": ENVELOPE_TYPE, "v": 1}}
    return _canonical.encode({"info": info})


def cc_work(spec: Spec) -> bytes:
    """A CC work whose signed license binds exactly these (hostile) names."""
    info = _info(spec)
    manifest = _base_manifest(CCTerms("CC-BY-4.0"))
    manifest["content"] = _content([(p, len(d)) for p, d in spec.files], info["pieces"])
    return _signed_torrent(info, manifest)


def unlicensed(spec: Spec) -> bytes:
    return _canonical.encode({"info": _info(spec)})


CONTENT_KEY = hashlib.sha256(b"hostile content key").digest()


def paid_work(plain: list[tuple[Path_, bytes]], cipher_dir: Path) -> bytes:
    """A paid work: real ciphertexts of *plain* under *cipher_dir* wherever a patched
    client could have put them (inside this test's folder), and a signed license whose
    encryption section lists the hostile plaintext names."""
    cipher: list[tuple[Path_, bytes]] = []
    cipher_dir.mkdir(parents=True, exist_ok=True)
    for path, data in plain:
        cpath = (*path[:-1], path[-1] + ".p2pe")
        src = cipher_dir.parent / "plain.tmp"
        src.write_bytes(data)
        dst = cipher_dir / "ct.tmp"
        encrypt_file(CONTENT_KEY, path, src, dst)
        ct = dst.read_bytes()
        dst.unlink()
        src.unlink()
        cipher.append((cpath, ct))
        where = Path(os.path.normpath(cipher_dir.joinpath(*cpath))) if all(
            "\0" not in p and p for p in cpath) else None
        if where is not None and where.is_relative_to(cipher_dir.parent.parent):
            with contextlib.suppress(OSError):  # e.g. a name too long for this disk
                where.parent.mkdir(parents=True, exist_ok=True)
                where.write_bytes(ct)
    spec = Spec(cipher)
    info = _info(spec)
    manifest = _base_manifest(PaidTerms(500, "EUR", 1000, (MALLORY.public_key,), None))
    manifest["content"] = _content([(p, len(d)) for p, d in cipher], info["pieces"])
    manifest["encryption"] = {
        "chunk": CHUNK, "files": [{"path": [_b(p) for p in path], "size": len(d)}
                                  for path, d in plain],
        "key_id": key_id(CONTENT_KEY), "scheme": _b(ENCRYPTION_SCHEME)}
    return _signed_torrent(info, manifest)


# -- the cases -------------------------------------------------------------------------------

def _one(*path: str) -> Spec:
    return Spec([(("Album", *path), b"hostile bytes\n")])


HOSTILE: dict[str, Spec] = {
    "dot-dot": _one("..", "..", "escape.txt"),
    "dot-dot-top": Spec([(("..",), b"x")]),
    "dot": _one(".", "a.txt"),
    "empty-component": _one("", "a.txt"),
    "absolute-component": _one("/etc/p2pdist-hostile"),
    "absolute-top": Spec([(("/tmp/p2pdist-hostile",), b"x")]),
    "windows-drive": _one("C:\\p2pdist-hostile"),
    "backslash": _one("..\\..\\escape.txt"),
    "nul": _one("a\x00.txt"),
    "bidi-override": _one("Song \u202egalf.exe"),
    "bidi-isolate": _one("Song \u2067x\u2069.flac"),
    "zero-width-space": _one("Song\u200b.flac"),
    "zero-width-joiner": _one("Song\u200d.flac"),
    "terminal-escape": _one("\x1b]0;pwned\x07.flac"),
    "component-300-chars": _one("a" * 300),
    "path-2000-bytes": _one(*(["d" * 200] * 10), "x.txt"),
    "reserved-CON": _one("CON"),
    "reserved-nul-ext": _one("nul.tar.gz"),
    "reserved-COM1": _one("com1.flac"),
    "reserved-LPT1-space": _one("LPT1 .txt"),
    "reserved-AUX": _one("AUX"),
    "reserved-PRN": _one("Prn.txt"),
    "trailing-dot": _one("song."),
    "trailing-space": _one("song "),
    "windows-colon-stream": _one("song.flac:hidden"),
    "windows-wildcard": _one("why?.flac"),
    "hidden-dotfile": _one(".bashrc"),
    "hidden-ssh-top": Spec([((".ssh", "authorized_keys"), b"ssh-ed25519 AAAA mallory\n")]),
    "file-is-also-folder": Spec([(("Album", "a"), b"x"), (("Album", "a", "b"), b"y")]),
    "case-collision": Spec([(("Album", "Song.flac"), b"x"), (("Album", "song.flac"), b"y")]),
    "unicode-normalisation-collision": Spec([
        (("Album", unicodedata.normalize("NFC", "Café.flac")), b"x"),
        (("Album", unicodedata.normalize("NFD", "Café.flac")), b"y")]),
    "symlink-entry": Spec([(("Album", "link"), b""), (("Album", "z.txt"), b"x")],
                          extra={0: {"attr": b"l", "symlink path": [b"..", b"..", b"etc"]}}),
    "path-utf8-differs": Spec([(("Album", "safe.txt"), b"x")],
                              extra={0: {"path.utf-8": [b"..", b"..", b"escape.txt"]}}),
}

# Through the CLI: one of each kind the issue names (every case above is verified in
# process below; p2pdist/_paths.py's unit tests hold the full tables).
VIA_MAGNET = ["dot-dot", "dot-dot-top", "dot", "empty-component", "absolute-component",
              "windows-drive", "backslash", "nul", "bidi-override", "zero-width-space",
              "component-300-chars", "path-2000-bytes", "reserved-CON", "reserved-nul-ext",
              "trailing-dot", "hidden-ssh-top", "file-is-also-folder", "case-collision",
              "symlink-entry", "path-utf8-differs"]
VIA_UNLICENSED_FILE = ["dot-dot", "absolute-top", "bidi-override", "case-collision",
                       "symlink-entry", "path-utf8-differs"]

# Edgy but portable: accepted, written inside --dest, byte for byte.
EDGY_BUT_SAFE: list[tuple[Path_, bytes]] = [
    (("Ünïcødé • Album ♫", "01 Café del Mar (Remix) [2026].flac"), os.urandom(40_000)),
    (("Ünïcødé • Album ♫", "a..b"), b"not dot-dot"),
    (("Ünïcødé • Album ♫", "CONSOLE.txt"), b"not a device"),
    (("Ünïcødé • Album ♫", "日本語", "トラック.flac"), os.urandom(3000)),
    (("Ünïcødé • Album ♫", "x" * 240), b"240 bytes is the limit"),
]


# -- the seeder and the snapshots ------------------------------------------------------------


@dataclass
class Seeder:
    swarm: Swarm
    port: int
    magnets: dict[str, str]


@pytest.fixture(scope="module")
def seeder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeder]:
    """One libtorrent session seeding every crafted torrent (seed mode: it serves the
    metadata; a fan that asked for a piece would get nothing, and none may ask)."""
    root = tmp_path_factory.mktemp("mallory")
    port = free_port()
    swarm = Swarm(profile=Profile.LOCAL, listen=("127.0.0.1", port))
    magnets: dict[str, str] = {}
    try:
        for name in VIA_MAGNET:
            torrent = cc_work(HOSTILE[name])
            try:
                magnet = make_magnet(torrent)
                swarm.add_torrent(name, torrent, root / name, seed_mode=True)
            except errors_mod.P2PDistError:
                continue  # libtorrent refuses to load it: only the .torrent route is left
            magnets[name] = magnet
        yield Seeder(swarm, port, magnets)
    finally:
        swarm.close()


def snapshot(*roots: Path) -> dict[str, Any]:
    """Every entry under *roots*: kind, size, content hash, link target, mode."""
    snap: dict[str, Any] = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            for n in dirs + files:
                p = Path(dirpath) / n
                st = p.lstat()
                if p.is_symlink():
                    snap[str(p)] = ("link", str(p.readlink()))
                elif p.is_dir():
                    snap[str(p)] = ("dir", oct(st.st_mode))
                else:
                    snap[str(p)] = ("file", st.st_size, oct(st.st_mode),
                                    hashlib.sha256(p.read_bytes()).hexdigest())
    for t in ABSOLUTE_TARGETS:
        snap[str(t)] = os.path.lexists(t)
    return snap


@dataclass
class Scene:
    root: Path
    fan: Path
    dest: Path
    canary: Path

    def watched(self) -> dict[str, Any]:
        return snapshot(self.root)


@pytest.fixture
def scene(tmp_path: Path, fan_home: Path) -> Scene:
    canary = tmp_path / "canary"  # a sibling of --dest: where "../x" would land
    canary.mkdir()
    (canary / "keep.txt").write_text("untouched\n")
    (tmp_path / "escape.txt").write_text("not to be replaced\n")
    return Scene(tmp_path, fan_home, tmp_path / "dest", canary)


@pytest.fixture(scope="module")
def fan_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fan") / "home"
    run_cli(home, "init", "--name", "Fan")
    run_cli(home, "ledger", "verify")  # the home as any node leaves it, ledger and all
    return home


def refused(scene: Scene, *args: str, kinds: tuple[str, ...] = ("MalformedObject",)
            ) -> dict[str, Any]:
    """Run a command that must refuse, and check the refusal and that nothing moved."""
    watched = (scene.root, scene.fan)
    before = snapshot(*watched)
    t0 = time.monotonic()
    cp = run_cli(scene.fan, *args, "--json", check=False, timeout=60)
    took = time.monotonic() - t0
    assert "Traceback" not in cp.stderr, cp.stderr
    doc: dict[str, Any] = json.loads(cp.stdout.splitlines()[-1])
    assert doc.get("ok") is False, (cp.stdout, cp.stderr)
    assert doc["kind"] in kinds, doc
    cls = getattr(errors_mod, doc["kind"])
    assert issubclass(cls, errors_mod.P2PDistError)
    assert cp.returncode == doc["exit_code"] == cls.exit_code, (cp.returncode, doc)
    assert doc["remedy"], doc
    assert took < REFUSAL_DEADLINE, f"took {took:.1f} s"
    assert snapshot(*watched) == before, "something changed on disk"
    assert not scene.dest.exists(), "--dest was created for a refused work"
    return doc


# -- fetch -----------------------------------------------------------------------------------


def test_the_builder_makes_works_that_verify() -> None:
    # The refusals below are about names, not a broken signature or binding.
    for spec in (Spec([(("Album", "a.txt"), b"x"), (("Album", "b.txt"), b"y")]),
                 Spec([(("Song.flac",), b"x")])):
        verify_info(info_section(cc_work(spec)))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_every_hostile_work_fails_verification(case: str) -> None:
    try:
        info = info_section(cc_work(HOSTILE[case]))
    except errors_mod.SourceError:
        return  # libtorrent cannot load it either (a name that is '..')
    with pytest.raises(errors_mod.MalformedObject):
        verify_info(info)


@pytest.mark.parametrize("case", VIA_MAGNET)
def test_hostile_name_by_magnet_from_a_seeder_is_refused_before_any_write(
        case: str, scene: Scene, seeder: Seeder) -> None:
    magnet = seeder.magnets.get(case)
    if magnet is None:  # libtorrent cannot even load it: the fan gets the .torrent file
        torrent = scene.root / "hostile.torrent"
        torrent.write_bytes(cc_work(HOSTILE[case]))
        source = str(torrent)
        kinds: tuple[str, ...] = ("SourceError", "MalformedObject")
    else:
        source, kinds = magnet, ("MalformedObject",)
    doc = refused(scene, "fetch", source, "--dest", str(scene.dest), "--local",
                  "--peer", f"127.0.0.1:{seeder.port}", "--metadata-timeout", "8",
                  kinds=kinds)
    if doc["kind"] == "MalformedObject":
        assert any(w in doc["error"] for w in ("unsafe", "symbolic link", "two different",
                                               "manifest's file path")), doc


@pytest.mark.parametrize("case", VIA_UNLICENSED_FILE)
def test_hostile_name_in_an_unlicensed_torrent_file_is_refused(case: str, scene: Scene
                                                               ) -> None:
    torrent = scene.root / "hostile.torrent"
    torrent.write_bytes(unlicensed(HOSTILE[case]))
    refused(scene, "fetch", str(torrent), "--dest", str(scene.dest), "--local",
            "--allow-unlicensed", "--peer", f"127.0.0.1:{free_port()}",
            kinds=("MalformedObject", "SourceError"))


def test_a_link_in_dest_that_leads_outside_is_not_followed(scene: Scene, seeder: Seeder
                                                            ) -> None:
    spec = Spec([(("Album", "a.txt"), b"x")])
    torrent = scene.root / "honest.torrent"
    torrent.write_bytes(cc_work(spec))
    scene.dest.mkdir()
    (scene.dest / "Album").symlink_to(scene.canary)
    before = snapshot(scene.root, scene.fan)
    cp = run_cli(scene.fan, "fetch", str(torrent), "--dest", str(scene.dest), "--local",
                 "--peer", f"127.0.0.1:{seeder.port}", "--json", check=False, timeout=60)
    doc = json.loads(cp.stdout.splitlines()[-1])
    assert (cp.returncode, doc["kind"]) == (3, "MalformedObject"), doc
    assert "symbolic link" in doc["error"] and doc["remedy"]
    assert snapshot(scene.root, scene.fan) == before


def test_edgy_but_portable_names_fetch_inside_dest(scene: Scene) -> None:
    files = list(EDGY_BUT_SAFE)
    spec = Spec(files)
    torrent_bytes = cc_work(spec)
    verify_info(info_section(torrent_bytes))
    seed_dir = scene.root / "seed"
    for path, data in files:
        p = seed_dir.joinpath(*path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    port = free_port()
    with Swarm(profile=Profile.LOCAL, listen=("127.0.0.1", port)) as swarm:
        swarm.add_torrent("w", torrent_bytes, seed_dir, seed_mode=True)
        outside = snapshot(scene.root)
        cp = run_cli(scene.fan, "fetch", make_magnet(torrent_bytes), "--dest",
                     str(scene.dest), "--local", "--peer", f"127.0.0.1:{port}", "--json",
                     "--stall-timeout", "30", timeout=90)
    assert json.loads(cp.stdout.splitlines()[-1]).get("ok") is not False
    got = {str(p.relative_to(scene.dest)): p.read_bytes()
           for p in scene.dest.rglob("*") if p.is_file()}
    assert got == {"/".join(path): data for path, data in files}
    after = snapshot(scene.root)
    new = {k for k in after if k not in outside}
    assert all(Path(k).is_relative_to(scene.dest) for k in new), new
    assert {k: v for k, v in after.items() if k in outside
            and not Path(k).is_relative_to(scene.dest)} == {
        k: v for k, v in outside.items() if not Path(k).is_relative_to(scene.dest)}


# -- unlock ----------------------------------------------------------------------------------

UNLOCK_CASES: dict[str, list[tuple[Path_, bytes]]] = {
    "dot-dot": [(("Album", "..", "..", "escape.txt"), b"overwrite me")],
    "absolute": [(("Album", "/tmp/p2pdist-hostile"), b"x")],
    "bidi-override": [(("Album", "Song \u202egalf.exe"), b"x")],
    "component-300-chars": [(("Album", "a" * 300), b"x")],
    "reserved-CON": [(("Album", "CON"), b"x")],
    "hidden-ssh-top": [((".ssh", "authorized_keys"), b"ssh-ed25519 AAAA mallory\n")],
    "case-collision": [(("Album", "Song.flac"), b"x"), (("Album", "song.flac"), b"y")],
    "ciphertext-name-too-long": [(("Album", "a" * 237), b"x")],
}


def _library_with(fan: Path, torrent: bytes, save: Path) -> str:
    """The fan's library as an older p2pdist could have left it: the work, complete, and
    a real grant from the seller the license names."""
    info = info_section(torrent)
    work = hashlib.sha256(info).hexdigest()
    lib = Library(fan)
    lib.add(Work(work=work, infohash=hashlib.sha1(info).hexdigest(),  # noqa: S324
                 title="Hostile", license="paid", role="fetched", save_path=str(save),
                 size=1, added=now_iso(), complete=True, magnet=""), torrent)
    buyer = load_public_identity(fan).public_key
    grant = LicenseGrant(work=bytes.fromhex(work), buyer=buyer, seller=MALLORY.public_key,
                         key_id=key_id(CONTENT_KEY),
                         sealed_key=seal_key(CONTENT_KEY, buyer),
                         ts=datetime(2026, 1, 2, tzinfo=UTC))
    lib.save_secret(work, "grant", SignedGrant.sign(grant, MALLORY).to_bytes())
    return work


@pytest.mark.parametrize("case", list(UNLOCK_CASES))
def test_hostile_plaintext_name_is_never_unlocked(case: str, scene: Scene) -> None:
    fan = scene.root / "fan"  # its own home: the library holds the hostile work
    run_cli(fan, "init", "--name", "Fan")
    save = scene.root / "lib" / "save"
    torrent = paid_work(UNLOCK_CASES[case], save)
    work = _library_with(fan, torrent, save)
    refused(Scene(scene.root, fan, scene.dest, scene.canary),
            "unlock", work[:16], "--dest", str(scene.dest))


def test_the_paid_builder_unlocks_when_the_names_are_safe(scene: Scene) -> None:
    # The control: the same hostile-artist tools, safe names, and unlock works.
    fan = scene.root / "fan"
    run_cli(fan, "init", "--name", "Fan")
    save = scene.root / "lib" / "save"
    plain: list[tuple[Path_, bytes]] = [(("Album", "01 Song.flac"), os.urandom(70_000)),
                                        (("Album", "b.txt"), b"b")]
    work = _library_with(fan, paid_work(plain, save), save)
    run_cli(fan, "unlock", work[:16], "--dest", str(scene.dest))
    assert {str(p.relative_to(scene.dest)): p.read_bytes() for p in scene.dest.rglob("*")
            if p.is_file()} == {"/".join(p): d for p, d in plain}


# -- v1, v2 and hybrid torrents built by hand --------------------------------------------------
#
# The hostile artist writes the info dict itself (BEP 3 v1, BEP 52 v2, or both), signs a
# license over the content binding p2pdist's own code computes (or over the honest
# torrent's, then edits the info dict), and seeds the real bytes from a libtorrent
# session, laid out where libtorrent reads them. What the fan's libtorrent would write
# must be exactly what the license names, through no link, over no file it already has.

BLOCK = 16 * 1024


def _merkle(leaves: list[bytes]) -> bytes:
    n = 1
    while n < len(leaves):
        n *= 2
    layer = leaves + [b"\0" * 32] * (n - len(leaves))
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest()
                 for i in range(0, len(layer), 2)]
    return layer[0]


def _v2_leaf(data: bytes, layers: dict[bytes, bytes]) -> dict[str, Any]:
    """A v2 file-tree leaf; a file over one piece adds its piece layer (PIECE = BLOCK)."""
    if not data:
        return {"length": 0}
    leaves = [hashlib.sha256(data[i:i + BLOCK]).digest() for i in range(0, len(data), BLOCK)]
    root = _merkle(leaves)
    if len(data) > PIECE:
        layers[root] = b"".join(leaves)
    return {"length": len(data), "pieces root": root}


@dataclass
class Built:
    """A hand-built torrent: its info dict, piece layers, and the files' bytes."""

    info: dict[str, Any]
    layers: dict[bytes, bytes]
    files: list[tuple[Path_, bytes]]


def build(files: list[tuple[Path_, bytes]], fmt: str) -> Built:
    """The honest torrent of *files* ("v1", "v2" or "hybrid"), the way libtorrent makes
    one: a single file is named by the torrent's name, several sit in the name's folder;
    a hybrid's files are padded to piece boundaries with BEP 47 pad files."""
    single = len(files) == 1 and len(files[0][0]) == 1
    name = files[0][0][0]
    info: dict[str, Any] = {"name": _b(name), "piece length": PIECE}
    layers: dict[bytes, bytes] = {}
    if fmt in ("v2", "hybrid"):
        info["meta version"] = 2
        tree: dict[str, Any] = {}
        for path, data in files:
            node = tree
            for part in (path if single else path[1:])[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = {"": _v2_leaf(data, layers)}
        info["file tree"] = tree
    if fmt in ("v1", "hybrid"):
        stream = b""
        entries: list[dict[str, Any]] = []
        for i, (path, data) in enumerate(files):
            entries.append({"length": len(data), "path": [_b(p) for p in path[1:]]})
            stream += data
            pad = -len(data) % PIECE
            if fmt == "hybrid" and pad and i < len(files) - 1:
                entries.append({"attr": b"p", "length": pad, "path": [b".pad", _b(str(pad))]})
                stream += b"\0" * pad
        info["pieces"] = _pieces(stream)
        if single:
            info["length"] = len(files[0][1])
        else:
            info["files"] = entries
    return Built(info, layers, files)


def signed_work(built: Built, *, bind: Built | None = None) -> bytes:
    """The torrent, with a license the attacker signs over the content binding of
    *bind*'s info (default: of this very info dict, as p2pdist computes it)."""
    from p2pdist.licensing import content_of_info

    manifest = _base_manifest(CCTerms("CC-BY-4.0"))
    manifest["content"] = content_of_info((bind or built).info).to_dict()
    raw = _canonical.decode(_signed_torrent(built.info, manifest), max_size=1 << 26)
    assert isinstance(raw, dict)
    if built.layers:
        raw["piece layers"] = built.layers
    return _canonical.encode(raw)


NOTES = b"the artist's notes\n"
A_TXT = os.urandom(40_000)  # over two pieces: v2 needs its piece layer
B_TXT = b"b" * 300
ALBUM: list[tuple[Path_, bytes]] = [(("album", "a.txt"), A_TXT), (("album", "b.txt"), B_TXT)]


def _v2_finding() -> tuple[Built, Built | None]:
    # The finding: a v2 torrent named "album" whose one file is keyed "notes.txt".
    # p2pdist (and so the license) says album/notes.txt; libtorrent writes notes.txt.
    b = build([(("notes.txt",), NOTES)], "v2")
    b.info["name"] = b"album"
    return b, None


def _hybrid_name_vs_key() -> tuple[Built, Built | None]:
    honest = build([(("notes.txt",), NOTES)], "hybrid")
    b = build([(("notes.txt",), NOTES)], "hybrid")
    b.info["name"] = b"album"  # v1 says a file "album", v2 a file "notes.txt"
    return b, honest


def _hybrid_name_utf8() -> tuple[Built, Built | None]:
    honest = build(ALBUM, "hybrid")
    b = build(ALBUM, "hybrid")
    b.info["name.utf-8"] = b"other"  # libtorrent names the v1 and v2 parts "other"
    return b, honest


def _v1_listed_twice() -> tuple[Built, Built | None]:
    b = build([(("album", "a.txt"), A_TXT), (("album", "b.txt"), A_TXT)], "v1")
    b.info["files"][1]["path"] = [b"a.txt"]  # the binding counts it once
    return b, None


def _attr(fmt: str, attr: bytes) -> tuple[Built, Built | None]:
    b = build(ALBUM, fmt)
    if "file tree" in b.info:
        b.info["file tree"]["a.txt"][""]["attr"] = attr
    if "files" in b.info:
        b.info["files"][0]["attr"] = attr
    return b, None


def _symlink(fmt: str) -> tuple[Built, Built | None]:
    honest = build(ALBUM, fmt)
    b = build(ALBUM, fmt)
    target = [b"..", b"..", b"escape.txt"]
    if "file tree" in b.info:
        b.info["file tree"]["link"] = {"": {"attr": b"l", "length": 0, "symlink path": target}}
    if "files" in b.info:
        b.info["files"].append({"attr": b"l", "length": 0, "path": [b"link"],
                                "symlink path": target})
    return b, honest


def _empty_name(fmt: str, files: list[tuple[Path_, bytes]]) -> tuple[Built, Built | None]:
    honest = build(files, fmt)
    b = build(files, fmt)
    b.info["name"] = b""  # libtorrent says "_" for a folder, the file key for a v2 file
    return b, honest


def _v2_empty_key() -> tuple[Built, Built | None]:
    honest = build(ALBUM, "v2")
    b = build(ALBUM, "v2")
    b.info["file tree"][""] = b.info["file tree"].pop("b.txt")
    return b, honest


def _pad_outside(fmt: str) -> tuple[Built, Built | None]:
    honest = build(ALBUM, fmt)
    b = build(ALBUM, fmt)
    pads = [f for f in b.info["files"] if f.get("attr") == b"p"]
    pads[0]["path"] = [b"..", b"..", b"escape.txt"]
    return b, honest


HAND_BUILT: dict[str, Any] = {
    "v2-name-vs-file-key": _v2_finding,
    "hybrid-name-vs-file-key": _hybrid_name_vs_key,
    "hybrid-name-utf8-differs": _hybrid_name_utf8,
    "v1-file-listed-twice": _v1_listed_twice,
    "v1-executable": lambda: _attr("v1", b"x"),
    "v2-executable": lambda: _attr("v2", b"x"),
    "hybrid-executable": lambda: _attr("hybrid", b"x"),
    "v2-hidden": lambda: _attr("v2", b"h"),
    "v2-pad-attr-on-a-file": lambda: _attr("v2", b"p"),
    "v2-symlink": lambda: _symlink("v2"),
    "hybrid-symlink": lambda: _symlink("hybrid"),
    "v1-empty-name": lambda: _empty_name("v1", ALBUM),
    "v2-empty-name": lambda: _empty_name("v2", ALBUM),
    "v2-empty-name-single-file": lambda: _empty_name("v2", [(("notes.txt",), NOTES)]),
    "hybrid-empty-name": lambda: _empty_name("hybrid", ALBUM),
    "v2-empty-file-key": _v2_empty_key,
    "hybrid-pad-file-outside": lambda: _pad_outside("hybrid"),
}


@dataclass
class Hand:
    torrent: bytes
    magnet: str | None  # None: libtorrent cannot load it, so no peer can seed it
    written: list[Path_]  # where the attacker's libtorrent reads (and a fan's would write)


@pytest.fixture(scope="module")
def hand_seeder(tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Seeder, dict[str, Hand]]]:
    """One libtorrent session seeding every hand-built work, its real bytes on disk
    where libtorrent's own file storage puts them."""
    root = tmp_path_factory.mktemp("mallory-hand")
    port = free_port()
    swarm = Swarm(profile=Profile.LOCAL, listen=("127.0.0.1", port))
    works: dict[str, Hand] = {}
    try:
        for name, make in HAND_BUILT.items():
            built, bind = make()
            torrent = signed_work(built, bind=bind) if _bindable(built, bind) else \
                _canonical.encode({"info": built.info})
            try:
                files = lt_files(torrent)
            except RuntimeError:
                works[name] = Hand(torrent, None, [])
                continue
            data = dict(built.files)
            written = [path for path, link in files if not link]
            for path in written:  # renamed by the attack: the bytes of its honest name
                p = root.joinpath(name, *path)
                with contextlib.suppress(OSError):
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(data.get(path) or data.get(("album", *path[1:]), b""))
            swarm.add_torrent(name, torrent, root / name, seed_mode=True)
            works[name] = Hand(torrent, make_magnet(torrent), written)
        yield Seeder(swarm, port, {}), works
    finally:
        swarm.close()


def lt_files(torrent: bytes) -> list[tuple[Path_, bool]]:
    """(path, is a link) of each file but the pad files, as libtorrent reads the torrent:
    the attacker's own libtorrent, not p2pdist's."""
    import libtorrent as lt

    fs = lt.torrent_info(lt.bdecode(torrent)).layout()
    return [(tuple(fs.file_path(i).split("/")), bool(fs.file_flags(i) & fs.flag_symlink))
            for i in range(fs.num_files()) if not fs.file_flags(i) & fs.flag_pad_file]


def _bindable(built: Built, bind: Built | None) -> bool:
    from p2pdist.licensing import content_of_info

    try:
        content_of_info((bind or built).info)
    except errors_mod.P2PDistError:
        return False
    return True


def _seeded(hand_seeder: tuple[Seeder, dict[str, Hand]], case: str) -> tuple[int, Hand]:
    seeder, works = hand_seeder
    return seeder.port, works[case]


def attack(scene: Scene, port: int, hand: Hand, *args: str,
           kinds: tuple[str, ...] = ("MalformedObject", "ContentMismatch")) -> dict[str, Any]:
    """Fetch or verify a hand-built work through the CLI, from the seeding peer when
    libtorrent can load it (a .torrent file otherwise); it must be refused, exit 3, and
    nothing anywhere may change: --dest, its parent, a link's target, the fan's home."""
    if hand.magnet is not None:
        source = hand.magnet
    else:
        source = str(scene.root / "hand.torrent")
        Path(source).write_bytes(hand.torrent)
        kinds = (*kinds, "SourceError")  # libtorrent itself refuses to read it
    watched = (scene.root, scene.fan)
    before = snapshot(*watched)
    dest_existed = scene.dest.exists()
    cp = run_cli(scene.fan, *args, source, "--local", "--peer", f"127.0.0.1:{port}",
                 "--metadata-timeout", "60", "--json", check=False, timeout=150)
    assert "Traceback" not in cp.stderr, cp.stderr
    doc: dict[str, Any] = json.loads(cp.stdout.splitlines()[-1])
    assert doc.get("ok") is False, (cp.stdout, cp.stderr)
    assert doc["kind"] in kinds, doc
    cls = getattr(errors_mod, doc["kind"])
    assert cp.returncode == doc["exit_code"] == cls.exit_code, (cp.returncode, doc)
    if doc["kind"] != "SourceError":
        assert cp.returncode == 3, doc
    assert doc["remedy"], doc
    assert snapshot(*watched) == before, "something changed on disk"
    assert scene.dest.exists() == dest_existed, "--dest was created for a refused work"
    return doc


def test_v2_torrent_whose_file_key_is_not_its_name_does_not_verify_nor_write(
        scene: Scene, hand_seeder: tuple[Seeder, dict[str, Hand]]) -> None:
    # The finding, as found: the license shows album/notes.txt, libtorrent would write
    # --dest/notes.txt, over a file the fan has and through a link placed there.
    port, hand = _seeded(hand_seeder, "v2-name-vs-file-key")
    assert hand.magnet is not None and hand.written == [("notes.txt",)]
    shown = verify_info(info_section(hand.torrent)).to_dict()["files"]
    assert shown == ["album/notes.txt"]  # what the license alone says
    torrent = scene.root / "album.torrent"
    torrent.write_bytes(hand.torrent)
    for command in (("license", "verify"), ("license", "show")):
        for source in (str(torrent), hand.magnet):
            cp = run_cli(scene.fan, *command, source, "--local", "--peer",
                         f"127.0.0.1:{port}", "--json", check=False, timeout=60)
            doc = json.loads(cp.stdout.splitlines()[-1])
            assert (cp.returncode, doc.get("kind")) == (3, "ContentMismatch"), doc
            assert "'notes.txt'" in doc["error"] and "'album/notes.txt'" in doc["error"], doc
    # An existing file in --dest is not replaced ...
    scene.dest.mkdir()
    (scene.dest / "notes.txt").write_bytes(b"the fan's own notes\n")
    doc = attack(scene, port, hand, "fetch", "--dest", str(scene.dest))
    assert doc["kind"] == "ContentMismatch" and "'notes.txt'" in doc["error"], doc
    assert (scene.dest / "notes.txt").read_bytes() == b"the fan's own notes\n"
    # ... nor written through a link to a file outside --dest, even with --overwrite.
    (scene.dest / "notes.txt").unlink()
    (scene.dest / "notes.txt").symlink_to(scene.canary / "keep.txt")
    attack(scene, port, hand, "fetch", "--dest", str(scene.dest), "--overwrite")
    assert (scene.canary / "keep.txt").read_text() == "untouched\n"


@pytest.mark.parametrize("case", [c for c in HAND_BUILT if c != "v2-name-vs-file-key"])
def test_hand_built_torrent_is_refused_before_any_write(
        case: str, scene: Scene, hand_seeder: tuple[Seeder, dict[str, Hand]]) -> None:
    port, hand = _seeded(hand_seeder, case)
    # A fan's own file where the work (or libtorrent's idea of it) would land.
    for path in (*hand.written, ("album", "a.txt"), ("notes.txt",)):
        p = scene.dest.joinpath(*path)
        with contextlib.suppress(OSError):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"the fan's own file\n")
    mine = {p: p.read_bytes() for p in scene.dest.rglob("*") if p.is_file()}
    attack(scene, port, hand, "fetch", "--dest", str(scene.dest))
    attack(scene, port, hand, "fetch", "--dest", str(scene.dest), "--overwrite")
    attack(scene, port, hand, "license", "verify")
    assert {p: p.read_bytes() for p in scene.dest.rglob("*") if p.is_file()} == mine


@pytest.mark.parametrize("fmt", ["v1", "v2", "hybrid"])
def test_hand_built_honest_work_fetches_exactly_its_files_and_no_pad_file(
        fmt: str, scene: Scene) -> None:
    # The control: the same builder, honest, and the fetch writes what the license says.
    files: list[tuple[Path_, bytes]] = [*ALBUM, (("album", "cd2", "c.txt"), os.urandom(17_000))]
    built = build(files, fmt)
    torrent = signed_work(built)
    seed_dir = scene.root / "seed"
    for path, data in files:
        p = seed_dir.joinpath(*path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    port = free_port()
    with Swarm(profile=Profile.LOCAL, listen=("127.0.0.1", port)) as swarm:
        swarm.add_torrent("w", torrent, seed_dir, seed_mode=True)
        outside = {k: v for k, v in snapshot(scene.root).items()
                   if not Path(k).is_relative_to(scene.dest)}
        cp = run_cli(scene.fan, "fetch", make_magnet(torrent), "--dest", str(scene.dest),
                     "--local", "--peer", f"127.0.0.1:{port}", "--json",
                     "--stall-timeout", "30", timeout=90)
    assert json.loads(cp.stdout.splitlines()[-1]).get("ok") is not False
    got = {str(p.relative_to(scene.dest)): p.read_bytes()
           for p in scene.dest.rglob("*") if p.is_file() or p.is_symlink()}
    assert got == {"/".join(path): data for path, data in files}  # no .pad, nothing else
    assert {k: v for k, v in snapshot(scene.root).items()
            if not Path(k).is_relative_to(scene.dest)} == outside


def test_a_link_in_dest_that_leads_inside_it_is_not_followed_either(
        scene: Scene) -> None:
    # Inside --dest or out of it, a link below --dest is never written through.
    built = build(ALBUM, "hybrid")
    torrent = scene.root / "album.torrent"
    torrent.write_bytes(signed_work(built))
    scene.dest.mkdir()
    (scene.dest / "elsewhere").mkdir()
    (scene.dest / "album").symlink_to(scene.dest / "elsewhere")
    before = snapshot(scene.root, scene.fan)
    cp = run_cli(scene.fan, "fetch", str(torrent), "--dest", str(scene.dest), "--local",
                 "--peer", f"127.0.0.1:{free_port()}", "--json", check=False, timeout=60)
    doc = json.loads(cp.stdout.splitlines()[-1])
    assert (cp.returncode, doc["kind"]) == (3, "MalformedObject"), doc
    assert "symbolic link" in doc["error"] and doc["remedy"], doc
    assert snapshot(scene.root, scene.fan) == before


# -- more files than the hold covers ---------------------------------------------------------
#
# A magnet's file list is unknown until a peer sends it, so the fetch held the work with
# a fixed count of files at priority 0 (swarm's _HOLD_FILES). A torrent with more files
# got the default priority for the rest, and libtorrent created those (empty files, BEP
# 47 links) in --dest the moment the metadata came, before any check: through a link
# already in --dest, outside it. A held work now lives in a staging folder in the home.


def _overflowing_info() -> tuple[dict[str, Any], bytes]:
    """An info dict with a real file, empty files up to the hold's last index, and past
    it an empty file and a BEP 47 link (to the real file), both in a folder 'sub'."""
    from p2pdist.swarm._session import _HOLD_FILES

    data = os.urandom(PIECE)
    files: list[dict[str, Any]] = [{"length": PIECE, "path": [b"a.bin"]}]
    files += [{"length": 0, "path": [b"z", b"%d" % i]} for i in range(_HOLD_FILES)]
    files += [{"length": 0, "path": [b"sub", b"pwned.txt"]},
              {"attr": b"l", "length": 0, "path": [b"sub", b"lnk"],
               "symlink path": [b"a.bin"]}]
    assert len(files) > _HOLD_FILES + 1
    return {"name": b"evil", "piece length": PIECE, "pieces": _pieces(data),
            "files": files}, data


@pytest.fixture(scope="module")
def overflow_seeder(tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[int, dict[str, str]]]:
    """A raw libtorrent session seeding the overflowing torrent twice: with no license,
    and with Mallory's valid license of a one-file work (the file list is not that)."""
    import libtorrent as lt

    root = tmp_path_factory.mktemp("mallory-overflow")
    info, data = _overflowing_info()
    manifest = {**_base_manifest(CCTerms("CC-BY-4.0")),
                "content": _content([(("evil", "a.bin"), PIECE)], info["pieces"])}
    torrents = {"unlicensed": _canonical.encode({"info": info}),
                "licensed-but-wrong": _signed_torrent(info, manifest)}
    ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False,
                      "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
                      "allow_multiple_connections_per_ip": True})
    magnets = {}
    try:
        for name, torrent in torrents.items():
            ti = lt.torrent_info(lt.bdecode(torrent))
            assert ti.num_files() == len(info["files"])  # libtorrent reads them all
            seed = root / name
            (seed / "evil").mkdir(parents=True)
            (seed / "evil" / "a.bin").write_bytes(data)
            atp = lt.add_torrent_params()
            atp.ti, atp.save_path = ti, str(seed)
            # Resume data saying it has the one piece, with every file but a.bin at
            # priority 0: the seeder serves the metadata at once, without creating or
            # checking 200,000 empty files first.
            atp.have_pieces = [True]
            atp.file_priorities = [4] + [0] * (ti.num_files() - 1)
            ses.add_torrent(atp)
            magnets[name] = lt.make_magnet_uri(ti)
        deadline = time.monotonic() + 10
        while not ses.listen_port() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield ses.listen_port(), magnets
    finally:
        del ses


@pytest.mark.slow  # 6 MB of metadata per fetch, and libtorrent reading 200,000 files
@pytest.mark.parametrize("case", ["unlicensed", "licensed-but-wrong"])
def test_magnet_with_more_files_than_the_hold_covers_writes_nothing_before_the_checks(
        case: str, scene: Scene, overflow_seeder: tuple[int, dict[str, str]]) -> None:
    port, magnets = overflow_seeder
    # The fan's --dest holds a link named as the work, leading outside it.
    scene.dest.mkdir()
    (scene.dest / "evil").symlink_to(scene.canary)
    watched = (scene.root, scene.fan)
    before = snapshot(*watched)
    cp = run_cli(scene.fan, "fetch", magnets[case], "--dest", str(scene.dest), "--local",
                 "--peer", f"127.0.0.1:{port}", "--metadata-timeout", "90", "--json",
                 check=False, timeout=150)
    assert "Traceback" not in cp.stderr, cp.stderr
    doc = json.loads(cp.stdout.splitlines()[-1])
    kinds = {"unlicensed": ("NotLicensed",),
             "licensed-but-wrong": ("ContentMismatch", "MalformedObject")}[case]
    assert (cp.returncode, doc.get("kind")) in {(3, k) for k in kinds}, doc
    assert doc["remedy"], doc
    # Nothing in --dest, beside it, or where its link leads (no 'sub/pwned.txt', no
    # 'sub/lnk'), and nothing left in the fan's home: no staging folder either.
    assert snapshot(*watched) == before, "something changed on disk"
    assert not (scene.canary / "sub").exists()
    assert not (scene.fan / "held").exists()
