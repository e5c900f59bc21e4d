"""Hostile file names, the way a hostile artist ships them: nothing lands outside --dest.

Each work here is a real torrent with a real license, signed by a real key. The names
libtorrent's creator would refuse are written as raw canonical bencode, as a patched
client would write them. A fan meets them through the real CLI:

- `p2pdist fetch MAGNET --peer ...`, with a libtorrent session in this process seeding the
  crafted torrent (the metadata comes from the peer, over BEP 9);
- `p2pdist fetch FILE.torrent --allow-unlicensed`, the same names with no license;
- `p2pdist unlock WORK --dest DIR`, a paid work whose manifest lists the hostile
  plaintext names, in a library a pre-rule p2pdist could have written.

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
    assert "escapes --dest" in doc["error"] and doc["remedy"]
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
