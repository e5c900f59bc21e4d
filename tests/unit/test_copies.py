"""Copies under another key (issue 21, item 7): works sharing a file's content under other
rights holders are named, with the evidence of who came first; the label's signed
CopyDecision settles them, and until it does both works' money is held.

Works are real: files on disk, hashed by libtorrent into hybrid or v1 torrents, licenses
signed by the holders' keys and verified by verify_info, as a fan's node reads them. The
thieves are modified clients: they take an honest torrent's info dict, or its bytes, and
sign a license of their own over it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist.errors import InvalidSignature, MalformedObject
from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing import (
    CHUNK,
    ArtistCertificate,
    CCTerms,
    Encryption,
    License,
    LicenseManifest,
    PaidTerms,
    SignedCertificate,
    SignedManifest,
    Split,
    content_of_info,
    embed_license,
    encrypt_tree,
    key_id,
    new_content_key,
    verify_info,
)
from p2pdist.licensing._manifest import ENCRYPTION_SCHEME, INFO_KEY
from p2pdist.payouts.copies import (
    DECISION_DOMAIN,
    DECISION_KIND,
    MAX_COPIES,
    MAX_DECISION_SIZE,
    MIN_SHARED_BYTES,
    CopyDecision,
    CopyGroup,
    DecisionRejected,
    SignedCopyDecision,
    decisions_from_entries,
    find_copies,
    is_copy,
    resolve,
    verify_decision,
)
from p2pdist.payouts.ledger import Ledger, verify_bundle
from p2pdist.swarm import make_torrent
from tests.vectors.make_decision_vectors import build as build_vector

KiB, MiB = 1024, 1024 * 1024
VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "copy_decisions.json").read_text()
)["decisions"]


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


ADA = _identity(bytes(range(32)), "Ada")
GRACE = _identity(bytes(range(32, 64)), "Grace")
LABEL = _identity(bytes(range(64, 96)), "Label")
MALLORY = _identity(b"\x07" * 32, "Mallory")  # the thief
EVE = _identity(b"\x08" * 32, "Eve")  # a second thief, or a rogue "label"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def data(seed: str, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


LICENSE_TEXT = data("CC-BY-4.0 legal code", 20 * KiB)
SILENCE = b"\0\0\0\0"
NIGHT = data("Night", 300 * KiB)


class Studio:
    """Writes works to disk and signs their licenses, as `publish` does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0

    def _folder(self, name: str, files: dict[str, bytes]) -> Path:
        self.n += 1
        top = self.root / f"w{self.n}" / name
        for rel, content in files.items():
            p = top / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
        return top

    def work(self, name: str, files: dict[str, bytes] | bytes, holders: tuple[Identity, ...],
             *, title: str | None = None, fmt: str = "hybrid", created: datetime = T0,
             certificates: tuple[SignedCertificate, ...] = ()) -> tuple[bytes, License]:
        """A CC work: a folder *name* of *files*, or a single file *name* of bytes."""
        if isinstance(files, bytes):
            path = self._folder("x", {name: files}) / name
        else:
            path = self._folder(name, files)
        info = make_torrent(path, fmt=fmt)["info"]
        assert isinstance(info, dict)
        return self.sign(info, holders, title=title or name, created=created,
                         certificates=certificates)

    def paid(self, name: str, files: dict[str, bytes], seller: Identity, price: int
             ) -> tuple[bytes, License, dict[str, Any]]:
        """A paid work as `publish --price` makes it: the torrent of its ciphertexts."""
        key = new_content_key()
        src = self._folder(name, files)
        stage = self.root / f"w{self.n}" / "stage"
        plain = encrypt_tree(key, src, stage)
        enc = Encryption(ENCRYPTION_SCHEME, CHUNK, key_id(key),
                         tuple((f.path, f.size) for f in plain))
        info = make_torrent(stage / name)["info"]
        assert isinstance(info, dict)
        wid, lic = self.sign(info, (seller,), title=name, encryption=enc,
                             terms=PaidTerms(price, "EUR", 1500, (seller.public_key,)))
        return wid, lic, info

    @staticmethod
    def sign(info: dict[str, Any], holders: tuple[Identity, ...], *, title: str,
             created: datetime = T0, certificates: tuple[SignedCertificate, ...] = (),
             encryption: Encryption | None = None, terms: Any = None) -> tuple[bytes, License]:
        info = {k: v for k, v in info.items() if k != INFO_KEY}
        bps = [10_000 // len(holders)] * len(holders)
        bps[0] += 10_000 - sum(bps)
        manifest = LicenseManifest(
            title=title, creators=tuple(h.name for h in holders), created=created,
            terms=terms or CCTerms("CC-BY-4.0"),
            splits=tuple(Split(h.public_key, b) for h, b in zip(holders, bps, strict=True)),
            content=content_of_info(info), encryption=encryption, certificates=certificates)
        signed = SignedManifest.sign(manifest, list(holders))
        lic = verify_info(_canonical.encode(embed_license(info, signed)))
        return bytes.fromhex(lic.work), lic


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    return Studio(tmp_path)


def cert(artist: Identity, label: Identity = LABEL) -> SignedCertificate:
    return SignedCertificate.sign(ArtistCertificate(
        artist=artist.public_key, name=artist.name, label=label.public_key,
        label_name=label.name, issued=T0 - timedelta(days=30)), label)


def decide(original: bytes, *copies: bytes, label: Identity = LABEL,
           ts: datetime = T0 + timedelta(days=60)) -> SignedCopyDecision:
    return SignedCopyDecision.sign(CopyDecision(label.public_key, original, copies, ts), label)


def one_group(groups: list[CopyGroup]) -> CopyGroup:
    assert len(groups) == 1, [g.to_dict() for g in groups]
    return groups[0]


# -- copies are named ------------------------------------------------------------------


def test_a_thief_republishing_the_exact_bytes_under_its_own_key_is_named(
        studio: Studio) -> None:
    ada, a_lic = studio.work("night.flac", NIGHT, (ADA,), title="Night")
    # Mallory's client: the same file, renamed, a backdated license of its own.
    thief, t_lic = studio.work("song.flac", NIGHT, (MALLORY,), title="Song (my version)",
                               created=T0 - timedelta(days=200))
    g = one_group(find_copies({ada: a_lic, thief: t_lic}, first_seen={
        ada: T0 + timedelta(days=1), thief: T0 + timedelta(days=90)}))
    assert g.work_ids == {ada, thief}
    assert g.shared_bytes == len(NIGHT)
    (f,) = g.shared
    assert (f.size, f.binding) == (len(NIGHT), "v2-root")
    assert dict(f.paths) == {ada: ("night.flac",), thief: ("song.flac",)}
    root = a_lic.manifest.content.files[0].root
    assert root is not None and f.root == root
    assert g.work(thief).holders == (MALLORY.public_key,)
    assert g.work(thief).created == T0 - timedelta(days=200)
    # Times a receipt's or a sale's signer chose, and the date the thief wrote, are
    # shown as claims: with no trusted label's certificate, the label decides.
    assert g.likely_original is None
    assert "the label decides" in g.reason and ada.hex()[:16] in g.reason
    doc = json.loads(json.dumps(g.to_dict()))
    assert doc["likely_original"] is None and doc["shared"][0]["root"] == root.hex()
    assert {w["title"] for w in doc["works"]} == {"Night", "Song (my version)"}
    assert doc["works"][[w["work"] for w in doc["works"]].index(thief.hex())][
        "holders"] == [key_to_text(MALLORY.public_key)]


def test_a_copy_of_one_track_of_an_album_is_named(studio: Studio) -> None:
    tracks = {f"{i:02} track.flac": data(f"track {i}", 1536 * KiB) for i in range(1, 4)}
    album, al_lic = studio.work("First Light", {**tracks, "LICENSE.txt": LICENSE_TEXT},
                                (ADA, GRACE))
    thief, t_lic = studio.work("Mallory - Dawn", {
        "dawn.flac": tracks["02 track.flac"], "bonus.flac": data("bonus", 4 * MiB)},
        (MALLORY,))
    g = one_group(find_copies({album: al_lic, thief: t_lic}))
    assert g.shared_bytes == 1536 * KiB
    (f,) = g.shared
    assert dict(f.paths) == {album: ("First Light", "02 track.flac"),
                             thief: ("Mallory - Dawn", "dawn.flac")}
    assert g.work(album).holders == tuple(sorted((ADA.public_key, GRACE.public_key)))
    # Nothing signed separates them: both say T0, neither was seen.
    assert g.likely_original is None and "the label decides" in g.reason


def test_a_copy_sold_for_less_under_another_key_is_named(studio: Studio) -> None:
    night, n_lic, info = studio.paid("Night", {"night.flac": NIGHT}, ADA, 500)
    # Mallory bought Night, so it holds the content key: it re-sells the same ciphertexts
    # under its own license at 1.00 EUR, and grants its buyers the key.
    enc = n_lic.manifest.encryption
    assert enc is not None
    thief, t_lic = Studio.sign(info, (MALLORY,), title="Night (cheap)", encryption=enc,
                               terms=PaidTerms(100, "EUR", 0, (MALLORY.public_key,)),
                               created=T0 - timedelta(days=1))
    assert t_lic.manifest.content.files == n_lic.manifest.content.files
    # The thief had to buy Night to hold its key: that sale is the earliest signed
    # evidence the label holds, before any sale of the copy.
    seen = {night: T0 + timedelta(days=1), thief: T0 + timedelta(days=3)}
    g = one_group(find_copies({night: n_lic, thief: t_lic}, first_seen=seen))
    assert {w.work: w.terms for w in g.works} == {night: "5.00 EUR", thief: "1.00 EUR"}
    assert g.shared_bytes == n_lic.manifest.content.total_size > len(NIGHT)
    assert g.likely_original is None and "the label decides" in g.reason
    # Until the label decides, the money of both is held, the thief's cheap sales too.
    assert resolve([g], [], label=LABEL.public_key).disputed == {night, thief}
    # Seen only selling its copy, the thief's sale is the only time seen: it proves
    # nothing (the thief signs its own sales and receipts), and nothing is concluded.
    g = one_group(find_copies({night: n_lic, thief: t_lic}, first_seen={thief: seen[thief]}))
    assert g.likely_original is None


def test_a_v1_only_copy_is_seen_only_as_a_whole_torrent(studio: Studio) -> None:
    ada, a_lic = studio.work("night.flac", NIGHT, (ADA,), fmt="v1")
    thief, t_lic = studio.work("night.flac", NIGHT, (MALLORY,), fmt="v1")
    # A v1-only copy of the single-file hybrid: its v1 side is the same torrent.
    hybrid, h_lic = studio.work("night.flac", NIGHT, (GRACE,))
    # The same bytes in a two-file v1 torrent: the whole differs, nothing is seen.
    other, o_lic = studio.work("Night+", {"night.flac": NIGHT, "b.txt": b"hello"}, (EVE,),
                               fmt="v1")
    assert all(f.root is None for f in a_lic.manifest.content.files)
    g = one_group(find_copies({ada: a_lic, thief: t_lic, hybrid: h_lic, other: o_lic}))
    assert g.work_ids == {ada, thief, hybrid}
    (f,) = g.shared
    assert f.binding == "v1-torrent" and f.size == len(NIGHT)
    assert a_lic.manifest.content.v1_pieces_sha256 == f.root
    assert dict(f.paths) == dict.fromkeys((ada, thief, hybrid), ("night.flac",))


def test_a_certificate_from_the_label_outweighs_an_earlier_sale(studio: Studio) -> None:
    ada, a_lic = studio.work("night.flac", NIGHT, (ADA,), certificates=(cert(ADA),))
    # The thief is "certified" too, by a label of its own making.
    thief, t_lic = studio.work("song.flac", NIGHT, (MALLORY,),
                               certificates=(cert(MALLORY, EVE),))
    lics = {ada: a_lic, thief: t_lic}
    seen = {ada: T0 + timedelta(days=9), thief: T0 + timedelta(days=1)}
    g = one_group(find_copies(lics, first_seen=seen, labels={LABEL.public_key}))
    assert g.work(ada).certified_by == (LABEL.public_key,)
    assert g.work(thief).certified_by == ()
    assert g.likely_original == ada and "certifies" in g.reason
    # Counting every certificate, both carry one: nothing else decides.
    g = one_group(find_copies(lics, first_seen=seen))
    assert g.likely_original is None and "2 carry" in g.reason


def test_times_a_copier_can_forge_never_decide_who_came_first(studio: Studio) -> None:
    """A thief dates its manifest and signs its own sales and receipts with any time
    (the outside review's proof): `created` and first-seen times are shown as claims."""
    ada, a_lic = studio.work("night.flac", NIGHT, (ADA,), created=T0)
    thief, t_lic = studio.work("song.flac", NIGHT, (MALLORY,), created=T0 - timedelta(9000))
    early = T0 - timedelta(days=8000)
    g = one_group(find_copies({ada: a_lic, thief: t_lic},
                              first_seen={ada: T0 + timedelta(1), thief: early}))
    assert g.likely_original is None
    assert "times their signers chose" in g.reason and "as their holders wrote" in g.reason


# -- honest works are not named --------------------------------------------------------


def test_honest_works_sharing_a_license_text_and_a_silence_track_are_not_copies(
        studio: Studio) -> None:
    common = {"LICENSE.txt": LICENSE_TEXT, "silence.wav": SILENCE}
    ada, a_lic = studio.work("Ada - Rain", {"rain.flac": data("rain", 200 * KiB), **common},
                             (ADA,))
    grace, g_lic = studio.work("Grace - Snow", {"snow.flac": data("snow", 150 * KiB),
                                                **common}, (GRACE,))
    assert find_copies({ada: a_lic, grace: g_lic}) == []
    roots = {(f.root, f.size) for f in a_lic.manifest.content.files} & \
        {(f.root, f.size) for f in g_lic.manifest.content.files}
    assert {size for _, size in roots} == {len(LICENSE_TEXT), 4}  # they do share them
    assert resolve([], [], label=LABEL.public_key).disputed == frozenset()


def test_works_of_the_same_holders_sharing_a_file_are_not_copies(studio: Studio) -> None:
    single, s_lic = studio.work("night.flac", NIGHT, (ADA, GRACE))
    # The album holds the single; its split sheet has the same keys in another order.
    album, al_lic = Studio.sign(
        make_info(studio, "First Light", {"night.flac": NIGHT, "b.flac": data("b", 64 * KiB)}),
        (GRACE, ADA), title="First Light")
    assert find_copies({single: s_lic, album: al_lic}) == []
    # A thief copying the single links all three: the holders' own works are one side.
    thief, t_lic = studio.work("song.flac", NIGHT, (MALLORY,))
    g = one_group(find_copies({single: s_lic, album: al_lic, thief: t_lic}))
    assert g.work_ids == {single, album, thief}


def make_info(studio: Studio, name: str, files: dict[str, bytes]) -> dict[str, Any]:
    path = studio._folder(name, files)
    info = make_torrent(path)["info"]
    assert isinstance(info, dict)
    return info


@pytest.mark.parametrize("shared,size_a,size_b,copy", [
    (0, 10, 10, False),
    (1, 2, 9, True), (1, 3, 9, False),  # half of the smaller work
    (20 * KiB, 40 * KiB, 4 * MiB, True), (20 * KiB, 40 * KiB + 1, 4 * MiB, False),
    (MIN_SHARED_BYTES, 50 * MiB, 50 * MiB, True),
    (MIN_SHARED_BYTES - 1, 50 * MiB, 50 * MiB, False),
])
def test_the_copy_rule_at_its_bounds(shared: int, size_a: int, size_b: int,
                                     copy: bool) -> None:
    assert is_copy(shared, size_a, size_b) is copy
    assert is_copy(shared, size_b, size_a) is copy


@pytest.mark.parametrize("own,flagged", [(20 * KiB, True), (20 * KiB + 1, False)])
def test_half_of_the_smaller_work_is_a_copy_a_byte_less_is_not(
        studio: Studio, own: int, flagged: bool) -> None:
    # A small work: a 20 KiB text and a poem; another work holds the same text.
    small, s_lic = studio.work("Poem", {"LICENSE.txt": LICENSE_TEXT,
                                        "poem.txt": data("poem", own)}, (ADA,))
    big, b_lic = studio.work("Album", {"LICENSE.txt": LICENSE_TEXT,
                                       "a.flac": data("a", 400 * KiB)}, (MALLORY,))
    groups = find_copies({small: s_lic, big: b_lic})
    assert bool(groups) is flagged
    if flagged:
        assert one_group(groups).shared_bytes == 20 * KiB


@pytest.mark.parametrize("shared,flagged", [(MIN_SHARED_BYTES, True),
                                            (MIN_SHARED_BYTES - 1, False)])
def test_a_mebibyte_shared_between_big_works_is_a_copy_a_byte_less_is_not(
        studio: Studio, shared: int, flagged: bool) -> None:
    common = data("jingle", shared)
    a, a_lic = studio.work("A", {"jingle.wav": common, "a.flac": data("a", 2 * MiB)}, (ADA,))
    b, b_lic = studio.work("B", {"jingle.wav": common, "b.flac": data("b", 2 * MiB)},
                           (MALLORY,))
    assert bool(find_copies({a: a_lic, b: b_lic})) is flagged


def test_a_license_text_in_many_works_links_none_of_them(studio: Studio) -> None:
    # 40 artists each publish a tiny work: a 20 KiB text and 15 KiB of their own. Each
    # pair shares more than half of the smaller work, but a file this common (more
    # than 32 sets of holders) links nothing on its own.
    people = [_identity(bytes([100 + i]) * 32, f"artist {i}") for i in range(40)]
    lics = dict(studio.work(f"W{i}", {"LICENSE.txt": LICENSE_TEXT,
                                      "own.txt": data(f"own {i}", 15 * KiB)}, (p,))
                for i, p in enumerate(people))
    assert find_copies(lics) == []
    # A thief's exact copy of one of them is still named, and only it.
    victim = next(iter(lics))
    info = dict(lics[victim].info)
    thief, t_lic = Studio.sign(info, (MALLORY,), title="mine")
    g = one_group(find_copies({**lics, thief: t_lic}))
    assert g.work_ids == {victim, thief}


# -- the label decides ----------------------------------------------------------------


@pytest.fixture
def copied(studio: Studio) -> tuple[bytes, bytes, list[CopyGroup]]:
    ada, a_lic = studio.work("night.flac", NIGHT, (ADA,), title="Night")
    thief, t_lic = studio.work("song.flac", NIGHT, (MALLORY,), title="Song (my version)")
    return ada, thief, find_copies({ada: a_lic, thief: t_lic})


def test_the_money_of_both_works_is_held_until_the_label_decides(
        copied: tuple[bytes, bytes, list[CopyGroup]]) -> None:
    ada, thief, groups = copied
    r = resolve(groups, [], label=LABEL.public_key)
    assert r.disputed == {ada, thief} and r.original_of == {}


def test_a_copy_the_label_decided_pays_the_original_and_redirects_the_copy(
        copied: tuple[bytes, bytes, list[CopyGroup]]) -> None:
    ada, thief, groups = copied
    r = resolve(groups, [decide(ada, thief)], label=LABEL.public_key)
    assert r.disputed == frozenset()
    assert r.original_of == {thief: ada}  # the thief's holder money goes to Ada's sheet
    assert r.ignored == ()


def test_a_decision_signed_by_the_thief_or_another_label_moves_nothing(
        copied: tuple[bytes, bytes, list[CopyGroup]]) -> None:
    ada, thief, groups = copied
    forged = decide(thief, ada, label=MALLORY)
    # The label's key named, Mallory's signature: it fails the signature check.
    claimed = SignedCopyDecision(forged.decision.signed_bytes(), CopyDecision(
        LABEL.public_key, thief, (ada,), forged.decision.ts), forged.sig)
    r = resolve(groups, [forged, claimed], label=LABEL.public_key)
    assert r.disputed == {ada, thief} and r.original_of == {}
    assert [i.reason for i in r.ignored] == ["signed by another label",
                                             "its signature does not verify"]


def test_a_decision_naming_works_outside_the_group_is_ignored(
        studio: Studio, copied: tuple[bytes, bytes, list[CopyGroup]]) -> None:
    ada, thief, groups = copied
    honest, _ = studio.work("rain.flac", data("rain", 100 * KiB), (GRACE,))
    r = resolve(groups, [decide(ada, thief, honest), decide(honest, ada)],
                label=LABEL.public_key)
    assert r.disputed == {ada, thief} and r.original_of == {}
    assert [i.reason for i in r.ignored] == [
        "it names 1 work(s) outside the original's group",
        "its original is in no group of copies"]


def test_a_later_decision_overrides_an_earlier_one(
        copied: tuple[bytes, bytes, list[CopyGroup]]) -> None:
    ada, thief, groups = copied
    wrong = decide(thief, ada, ts=T0 + timedelta(days=10))
    right = decide(ada, thief, ts=T0 + timedelta(days=20))
    for order in ([wrong, right], [right, wrong]):
        r = resolve(groups, order, label=LABEL.public_key)
        assert r.original_of == {thief: ada} and r.disputed == frozenset()


def test_two_honest_works_sharing_a_large_file_are_settled_as_works_of_their_own(
        copied: tuple[bytes, bytes, list[CopyGroup]]) -> None:
    ada, other, groups = copied
    r = resolve(groups, [decide(ada)], label=LABEL.public_key)
    assert r.disputed == {other}  # one decision settles one work
    r = resolve(groups, [decide(ada), decide(other)], label=LABEL.public_key)
    assert r.disputed == frozenset() and r.original_of == {}


def test_each_work_of_a_group_is_held_until_named_and_chains_follow_the_last_original(
        studio: Studio) -> None:
    single, s_lic = studio.work("night.flac", NIGHT, (ADA,))
    album, al_lic = studio.work("Album", {"night.flac": NIGHT, "b.flac": data("b", 9 * KiB)},
                                (ADA,))
    thief, t_lic = studio.work("song.flac", NIGHT, (MALLORY,))
    eve, e_lic = studio.work("eve.flac", NIGHT, (EVE,))  # a second copy, seen later
    groups = find_copies({single: s_lic, album: al_lic, thief: t_lic, eve: e_lic})
    assert one_group(groups).work_ids == {single, album, thief, eve}
    d1 = decide(single, thief, ts=T0 + timedelta(days=5))
    r = resolve(groups, [d1], label=LABEL.public_key)
    assert r.disputed == {album, eve} and r.original_of == {thief: single}
    d2 = decide(album, ts=T0 + timedelta(days=6))  # Ada's album: a work of its own
    r = resolve(groups, [d1, d2], label=LABEL.public_key)
    assert r.disputed == {eve} and r.original_of == {thief: single}
    d3 = decide(eve, single, ts=T0 + timedelta(days=7))  # a later word: Eve came first
    r = resolve(groups, [d3, d2, d1], label=LABEL.public_key)
    assert r.disputed == frozenset()
    assert r.original_of == {thief: eve, single: eve}


# -- decisions in ledgers and bundles --------------------------------------------------


def test_decisions_travel_in_a_bundle_and_bad_ones_are_reported(
        tmp_path: Path, copied: tuple[bytes, bytes, list[CopyGroup]]) -> None:
    ada, thief, groups = copied
    good = decide(ada, thief)
    tampered = bytearray(decide(thief, ada).to_bytes())
    tampered[-70] ^= 1  # inside the signature
    led = Ledger(tmp_path / "ledger.sqlite", node=LABEL.public_key)
    try:
        led.append(DECISION_KIND, good.to_bytes())
        led.append(DECISION_KIND, bytes(tampered))
        led.append(DECISION_KIND, b"not a decision")
        led.append(DECISION_KIND, good.to_bytes())  # twice: counted once
        led.append("receipt.note", good.to_bytes())  # another kind: not read
        bundle = verify_bundle(led.export_bundle(LABEL, now=T0 + timedelta(days=61)))
    finally:
        led.close()
    read = decisions_from_entries(bundle.entries)
    assert read.decisions == (good,)
    assert [(b.seq, b.node) for b in read.bad] == [(2, LABEL.public_key),
                                                   (3, LABEL.public_key)]
    assert all(b.to_dict()["reason"] for b in read.bad)
    r = resolve(groups, read.decisions, label=LABEL.public_key)
    assert r.original_of == {thief: ada}


# -- the signed CopyDecision: vectors, round trips, bad inputs ---------------------------


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_decision_vector(case: dict[str, Any]) -> None:
    decision, who = build_vector(case["input"])
    signed = SignedCopyDecision.sign(decision, who)
    assert signed.body.hex() == case["body_hex"]
    assert signed.sig.hex() == case["sig_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    assert key_to_text(decision.label) == case["expected"]["label_text"]


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_stored_decision_vector_parses_and_verifies(case: dict[str, Any]) -> None:
    signed = SignedCopyDecision.from_bytes(bytes.fromhex(case["envelope_hex"]))
    d = signed.decision
    assert [c.hex() for c in d.copies] == case["expected"]["copies"]
    assert d.original.hex() == case["input"]["original"]
    assert int(d.ts.timestamp()) == case["input"]["ts"]
    verify_decision(signed, trusted_labels={d.label})
    # By hand with PyNaCl: the domain, a zero byte, the body bytes exactly.
    nacl.signing.VerifyKey(d.label).verify(b"p2pdist/copy-decision/v1\0" + signed.body,
                                           signed.sig)
    assert len(case["envelope_hex"]) // 2 <= MAX_DECISION_SIZE


_ids = st.binary(min_size=32, max_size=32)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([LABEL, ADA, MALLORY]), _ids,
       st.lists(_ids, max_size=8, unique=True),
       st.integers(0, 253_402_300_799))
def test_copy_decision_round_trips(who: Identity, original: bytes, copies: list[bytes],
                                   ts: int) -> None:
    copies = [c for c in copies if c != original]
    d = CopyDecision(who.public_key, original, tuple(copies), datetime.fromtimestamp(ts, UTC))
    signed = SignedCopyDecision.sign(d, who)
    again = SignedCopyDecision.from_bytes(signed.to_bytes())
    assert again == signed and again.decision == d
    assert list(again.decision.copies) == sorted(copies)
    assert again.to_bytes() == signed.to_bytes()
    verify_decision(again, trusted_labels={who.public_key})


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_in_a_decision_is_refused(data: st.DataObject) -> None:
    env = bytearray(decide(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32).to_bytes())
    i = data.draw(st.integers(0, len(env) - 1))
    env[i] = data.draw(st.integers(0, 255).filter(lambda b: b != env[i]))
    with pytest.raises((InvalidSignature, MalformedObject)):
        verify_decision(SignedCopyDecision.from_bytes(bytes(env)),
                        trusted_labels={LABEL.public_key})


BASE = CopyDecision(LABEL.public_key, b"\x01" * 32, (b"\x02" * 32,), T0)


def _envelope(body: bytes, sig: bytes, **extra: Any) -> bytes:
    return _canonical.encode({"body": body, "sig": sig,
                              "type": b"p2pdist/copy-decision/signed", "v": 1, **extra})


def _signed(fields: dict[str, Any], who: Identity = LABEL, domain: bytes = DECISION_DOMAIN,
            drop: str | None = None) -> bytes:
    d = {**BASE.to_dict(), **fields}
    if drop:
        del d[drop]
    body = _canonical.encode(d)
    return _envelope(body, who.sign(domain=domain, message=body))


def _replayed(fields: dict[str, Any]) -> bytes:
    """BASE's signature over a body with *fields* changed."""
    sig = SignedCopyDecision.sign(BASE, LABEL).sig
    return _envelope(_canonical.encode({**BASE.to_dict(), **fields}), sig)


def _noncanonical() -> bytes:
    """BASE's body with "label" encoded before "copies", signed by the label: a decoder
    that sorted the keys would accept it."""
    d = BASE.to_dict()
    order = ["label", "copies", *sorted(k for k in d if k not in ("label", "copies"))]
    body = b"d" + b"".join(_canonical.encode(k.encode()) + _canonical.encode(d[k])
                           for k in order) + b"e"
    return _envelope(body, LABEL.sign(domain=DECISION_DOMAIN, message=body))


BAD: list[Any] = [
    # tampered: a field changed after signing, the signature kept
    pytest.param(lambda: _replayed({"original": b"\x09" * 32}), InvalidSignature,
                 id="tampered-original"),
    pytest.param(lambda: _replayed({"copies": [b"\x09" * 32]}), InvalidSignature,
                 id="tampered-copies"),
    pytest.param(lambda: _replayed({"copies": []}), InvalidSignature, id="copies-dropped"),
    pytest.param(lambda: _replayed({"ts": 1}), InvalidSignature, id="tampered-ts"),
    # wrong key
    pytest.param(lambda: _signed({}, MALLORY), InvalidSignature,
                 id="signed-by-mallory-naming-the-label"),
    pytest.param(lambda: _replayed({"label": MALLORY.public_key}), InvalidSignature,
                 id="label-key-swapped"),
    pytest.param(lambda: _signed({"label": MALLORY.public_key}, MALLORY), DecisionRejected,
                 id="true-decision-of-an-untrusted-label"),
    pytest.param(lambda: _signed({}, domain=b"p2pdist/statement/v1"), InvalidSignature,
                 id="signed-in-another-domain"),
    # sizes
    pytest.param(lambda: SignedCopyDecision.sign(BASE, LABEL).to_bytes()[:-1],
                 MalformedObject, id="truncated"),
    pytest.param(lambda: b"", MalformedObject, id="empty"),
    pytest.param(lambda: _signed({"copies": sorted(
        bytes([i // 256, i % 256]) + b"\x05" * 30 for i in range(MAX_COPIES + 1))}),
        MalformedObject, id="too-many-copies"),
    pytest.param(lambda: _envelope(b"x" * MAX_DECISION_SIZE, b"\0" * 64), MalformedObject,
                 id="oversized"),
    # non-canonical or malformed bodies, properly signed
    pytest.param(lambda: _signed({"copies": [b"\x03" * 32, b"\x02" * 32]}), MalformedObject,
                 id="copies-out-of-order"),
    pytest.param(lambda: _signed({"copies": [b"\x02" * 32, b"\x02" * 32]}), MalformedObject,
                 id="copy-repeated"),
    pytest.param(lambda: _signed({"copies": [b"\x01" * 32]}), MalformedObject,
                 id="original-named-a-copy"),
    pytest.param(lambda: _signed({"original": b"\x01" * 31}), MalformedObject,
                 id="short-work-id"),
    pytest.param(lambda: _signed({"ts": -1}), MalformedObject, id="negative-ts"),
    pytest.param(lambda: _signed({"extra": 1}), MalformedObject, id="unknown-field"),
    pytest.param(lambda: _signed({}, drop="ts"), MalformedObject, id="missing-ts"),
    pytest.param(lambda: _signed({"v": 2}), MalformedObject, id="unknown-version"),
    pytest.param(lambda: _signed({"type": b"p2pdist/payout-statement"}), MalformedObject,
                 id="another-type"),
    pytest.param(_noncanonical, MalformedObject, id="body-keys-out-of-order"),
    pytest.param(lambda: _envelope(SignedCopyDecision.sign(BASE, LABEL).body, b"\0" * 64,
                                   pad=b"x"), MalformedObject, id="envelope-extra-field"),
    pytest.param(lambda: SignedCopyDecision.sign(BASE, LABEL).to_bytes().replace(
        b"1:vi1e", b"1:vi01e"), MalformedObject, id="envelope-non-canonical-int"),
]


@pytest.mark.parametrize("make,error", BAD)
def test_a_bad_copy_decision_is_refused(make: Callable[[], bytes],
                                        error: type[Exception]) -> None:
    with pytest.raises(error) as e:
        verify_decision(SignedCopyDecision.from_bytes(make()),
                        trusted_labels={LABEL.public_key})
    assert isinstance(e.value, InvalidSignature | MalformedObject | DecisionRejected)
    assert e.value.exit_code == 3


def test_the_base_decision_verifies() -> None:
    verify_decision(SignedCopyDecision.from_bytes(SignedCopyDecision.sign(BASE, LABEL)
                                                  .to_bytes()),
                    trusted_labels={LABEL.public_key})


def test_misuse_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        SignedCopyDecision.sign(BASE, MALLORY)
    with pytest.raises(ValueError):
        CopyDecision(LABEL.public_key, b"\x01" * 32, (b"\x01" * 32,), T0)
    with pytest.raises(ValueError):
        CopyDecision(LABEL.public_key, b"\x01" * 32, (), T0.replace(tzinfo=None))
    with pytest.raises(ValueError):
        CopyDecision(LABEL.public_key, b"\x01" * 32, (b"\x02" * 32,) * 2, T0)


def test_an_uncertified_album_of_certified_tracks_holds_only_itself(studio: Studio) -> None:
    """The outside review: one "album" of a track from each of three works this label
    certifies held all three artists' money (each a group with the album). A work the
    auditing label certifies is not held because an uncertified work copies it; the
    uncertified copy is, until the label decides."""
    from p2pdist.label import check_copies
    from p2pdist.payouts.audit import audit, works_from_licenses

    artists = [_identity(bytes([40 + i]) * 32, f"Artist {i}") for i in range(3)]
    tracks = [data(f"track {i}", 1024 * KiB + 7) for i in range(3)]
    lics = {}
    for a, t in zip(artists, tracks, strict=True):
        wid, lic = studio.work(f"{a.name}.flac", t, (a,), certificates=(cert(a),))
        lics[wid] = lic
    album, a_lic = studio.work("Best of", {f"{i}.flac": t for i, t in enumerate(tracks)},
                               (MALLORY,))
    lics[album] = a_lic
    report = audit([], works_from_licenses(lics.values()))
    report, res = check_copies(report, list(lics.values()), label=LABEL.public_key)
    assert res.disputed == {album}
    assert [f.kind for f in report.findings] == ["copied-work"]
