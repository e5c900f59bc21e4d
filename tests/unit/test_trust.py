"""The trust store (HOME/trust.json) and the verdict on a license's rights holders.

A work is trusted when every split holder is in the fan's store, or is certified by an
unexpired certificate of a label in the store. Names never carry trust; keys do.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from p2pdist.errors import InputError, InvalidSignature, StorageError
from p2pdist.identity import Identity, fingerprint, key_to_text
from p2pdist.licensing import (
    ArtistCertificate,
    CCTerms,
    Content,
    ContentFile,
    LicenseManifest,
    SignedCertificate,
    SignedManifest,
    Split,
    verify_manifest,
)
from p2pdist.trust import TRUST_FILE, TrustEntry, TrustStore, Verdict, trust_verdict

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


ADA = _identity(bytes(range(32)), "Ada")
GRACE = _identity(bytes(range(32, 64)), "Grace")
LABEL = _identity(bytes(range(160, 192)), "Roundhouse Records")
LABEL2 = _identity(bytes(range(192, 224)), "Other Label")
MALLORY = _identity(b"\x07" * 32, "Mallory")
BY_PK = {i.public_key: i for i in (ADA, GRACE, LABEL, LABEL2, MALLORY)}

CONTENT = Content(
    piece_length=262_144,
    files=(ContentFile(("Duet", "a.flac"), 1_000_000, hashlib.sha256(b"a").digest()),),
    v1_pieces_sha256=hashlib.sha256(b"pieces").digest(),
)


def _cert(artist: Identity = ADA, label: Identity = LABEL, *,
          expires: datetime | None = T1, label_name: str | None = None) -> SignedCertificate:
    cert = ArtistCertificate(artist=artist.public_key, name=artist.name,
                             label=label.public_key, label_name=label_name or label.name,
                             issued=T0, expires=expires)
    return SignedCertificate.sign(cert, label)


def _manifest(*certs: SignedCertificate, holders: tuple[Identity, ...] = (ADA,)
              ) -> LicenseManifest:
    splits = tuple(Split(h.public_key, 10_000 // len(holders) + (i == 0) * (10_000 % len(holders)))
                   for i, h in enumerate(holders))
    m = LicenseManifest(title="Duet", creators=tuple(h.name for h in holders), created=T0,
                        terms=CCTerms("CC-BY-4.0"), splits=splits, content=CONTENT,
                        certificates=certs)
    # What a fan runs before asking for a verdict.
    verify_manifest(SignedManifest.sign(m, list(holders)), content=CONTENT)
    return m


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "home")


def _trust(store: TrustStore, *who: Identity) -> None:
    for i in who:
        store.add(i.public_key, i.name, now=T0)


# -- the verdict ---------------------------------------------------------------------------

VERDICTS = [
    # id, trusted keys, holders, certificates (artist, label, expires), now, expected
    pytest.param((ADA,), (ADA,), (), NOW,
                 {"trusted": True, "direct": [ADA], "untrusted": []},
                 id="trusted-signer"),
    pytest.param((LABEL,), (ADA,), ((ADA, LABEL, T1),), NOW,
                 {"trusted": True, "certified": [(ADA, LABEL)], "labels": [LABEL]},
                 id="trusted-label-valid-certificate"),
    pytest.param((LABEL,), (ADA,), ((ADA, LABEL, None),), NOW,
                 {"trusted": True, "certified": [(ADA, LABEL)]},
                 id="trusted-label-certificate-without-expiry"),
    pytest.param((LABEL,), (ADA,), ((ADA, LABEL, T1),), T1,
                 {"trusted": False, "expired": [(ADA, LABEL)], "untrusted": [ADA],
                  "certified": [], "labels": [LABEL]},
                 id="trusted-label-expired-certificate"),
    pytest.param((LABEL,), (ADA,), ((ADA, LABEL, T1),), T1 - SECOND,
                 {"trusted": True, "certified": [(ADA, LABEL)], "expired": []},
                 id="trusted-label-certificate-a-second-before-expiry"),
    pytest.param((), (ADA,), ((ADA, LABEL, T1),), NOW,
                 {"trusted": False, "untrusted_labels": [(ADA, LABEL)], "untrusted": [ADA],
                  "labels": []},
                 id="untrusted-label"),
    pytest.param((LABEL2,), (ADA,), ((ADA, LABEL, T1),), NOW,
                 {"trusted": False, "untrusted_labels": [(ADA, LABEL)], "untrusted": [ADA]},
                 id="certified-by-another-label-than-the-trusted-one"),
    pytest.param((ADA,), (ADA, GRACE), (), NOW,
                 {"trusted": False, "direct": [ADA], "untrusted": [GRACE]},
                 id="two-holders-one-trusted-one-not"),
    pytest.param((ADA, LABEL), (ADA, GRACE), ((GRACE, LABEL, T1),), NOW,
                 {"trusted": True, "direct": [ADA], "certified": [(GRACE, LABEL)],
                  "untrusted": []},
                 id="two-holders-one-trusted-one-certified"),
    pytest.param((LABEL,), (ADA, GRACE), ((ADA, LABEL, T1),), NOW,
                 {"trusted": False, "certified": [(ADA, LABEL)], "untrusted": [GRACE]},
                 id="two-holders-only-one-certified"),
    pytest.param((LABEL,), (ADA, GRACE), ((ADA, LABEL, T1), (GRACE, LABEL, T1)), NOW,
                 {"trusted": True, "untrusted": []},
                 id="two-holders-both-certified-by-one-label"),
    pytest.param((LABEL,), (ADA,), ((ADA, LABEL, T1), (ADA, LABEL2, None)), T1,
                 {"trusted": False, "expired": [(ADA, LABEL)],
                  "untrusted_labels": [(ADA, LABEL2)], "untrusted": [ADA]},
                 id="expired-trusted-label-and-valid-untrusted-label"),
    pytest.param((LABEL, LABEL2), (ADA,), ((ADA, LABEL, T1), (ADA, LABEL2, None)), T1,
                 {"trusted": True, "expired": [(ADA, LABEL)], "certified": [(ADA, LABEL2)],
                  "labels": [LABEL, LABEL2]},
                 id="one-trusted-label-expired-another-still-certifies"),
    pytest.param((ADA, LABEL), (ADA,), ((ADA, LABEL, T1),), T1,
                 {"trusted": True, "direct": [ADA], "expired": [(ADA, LABEL)]},
                 id="trusted-signer-with-an-expired-certificate"),
    pytest.param((), (ADA,), (), NOW,
                 {"trusted": False, "untrusted": [ADA], "direct": [], "certificates": 0},
                 id="empty-store"),
    pytest.param((MALLORY, GRACE), (ADA,), (), NOW,
                 {"trusted": False, "untrusted": [ADA]},
                 id="store-trusts-others-only"),
    # A label trusting itself as artist: its own key is in the store.
    pytest.param((LABEL,), (LABEL,), ((LABEL, LABEL, T1),), NOW,
                 {"trusted": True, "direct": [LABEL], "certified": [(LABEL, LABEL)]},
                 id="label-self-published"),
]


@pytest.mark.parametrize("trusted,holders,certs,now,expected", VERDICTS)
def test_trust_verdict(store: TrustStore, trusted: tuple[Identity, ...],
                       holders: tuple[Identity, ...],
                       certs: tuple[tuple[Identity, Identity, datetime | None], ...],
                       now: datetime, expected: dict[str, Any]) -> None:
    _trust(store, *trusted)
    m = _manifest(*(_cert(a, lbl, expires=e) for a, lbl, e in certs), holders=holders)
    v = trust_verdict(m, store, now=now)
    assert isinstance(v, Verdict)
    assert v.trusted is expected["trusted"]
    assert v.trusted is (not v.untrusted)
    assert v.holders == tuple(h.public_key for h in holders)
    assert v.checked_at == now

    def pairs(statuses: tuple[Any, ...]) -> list[tuple[bytes, bytes]]:
        return [(s.certificate.artist, s.certificate.label) for s in statuses]

    def want(rows: list[tuple[Identity, Identity]]) -> list[tuple[bytes, bytes]]:
        return [(a.public_key, lbl.public_key) for a, lbl in rows]

    if "direct" in expected:
        assert [e.pk for e in v.direct] == [i.public_key for i in expected["direct"]]
    if "untrusted" in expected:
        assert list(v.untrusted) == [i.public_key for i in expected["untrusted"]]
    for key in ("certified", "expired", "untrusted_labels"):
        if key in expected:
            assert sorted(pairs(getattr(v, key))) == sorted(want(expected[key])), key
    if "labels" in expected:
        assert sorted(e.pk for e in v.labels) == sorted(i.public_key
                                                         for i in expected["labels"])
    if "certificates" in expected:
        assert len(v.certificates) == expected["certificates"]
    assert len(v.certificates) == len(certs)
    assert all(s.checked_at == now for s in v.certificates)
    # Every certificate lands in exactly one of the three kinds.
    assert sorted(pairs(v.certified + v.expired + v.untrusted_labels)) == \
        sorted(pairs(v.certificates))


def test_names_carry_no_trust(store: TrustStore) -> None:
    # Mallory's label calls itself by the name the fan gave the trusted label.
    store.add(LABEL.public_key, "Roundhouse Records", now=T0)
    m = _manifest(_cert(ADA, MALLORY, label_name="Roundhouse Records"))
    v = trust_verdict(m, store, now=NOW)
    assert not v.trusted
    assert [s.certificate.label for s in v.untrusted_labels] == [MALLORY.public_key]
    assert v.labels == ()


def test_verdict_rechecks_each_certificate_signature(store: TrustStore) -> None:
    # A manifest object built in memory around a forged certificate: the verdict never
    # counts a certificate whose signature it did not check itself.
    _trust(store, LABEL)
    genuine = _cert()
    forged = SignedCertificate(genuine.body, genuine.certificate, bytes(64))
    m = _manifest()
    object.__setattr__(m, "certificates", (forged,))
    with pytest.raises(InvalidSignature):
        trust_verdict(m, store, now=NOW)


def test_verdict_expiry_follows_now_in_any_zone(store: TrustStore) -> None:
    _trust(store, LABEL)
    m = _manifest(_cert())
    tokyo = timezone(timedelta(hours=9))
    assert trust_verdict(m, store, now=(T1 - SECOND).astimezone(tokyo)).trusted
    assert not trust_verdict(m, store, now=T1.astimezone(tokyo)).trusted
    assert not trust_verdict(m, store, now=T1 + timedelta(microseconds=1)).trusted


def test_verdict_needs_an_aware_now(store: TrustStore) -> None:
    with pytest.raises(ValueError, match="aware"):
        trust_verdict(_manifest(), store, now=datetime(2025, 6, 1))


def test_verdict_follows_the_store(store: TrustStore) -> None:
    m = _manifest(_cert())
    assert not trust_verdict(m, store, now=NOW).trusted
    store.add(LABEL.public_key, "my label", now=T0)
    assert trust_verdict(m, store, now=NOW).trusted
    store.remove(LABEL.public_key)
    assert not trust_verdict(m, store, now=NOW).trusted


def test_verdict_to_dict(store: TrustStore) -> None:
    store.add(ADA.public_key, "Ada (met her)", now=T0)
    store.add(LABEL2.public_key, "my second label", now=T0)
    m = _manifest(_cert(GRACE, LABEL2), _cert(ADA, LABEL), holders=(ADA, GRACE))
    d = trust_verdict(m, store, now=NOW).to_dict()
    assert d["trusted"] is True
    assert d["checked_at"] == "2025-06-01T12:00:00Z"
    assert d["holders"] == [
        {"pk": key_to_text(ADA.public_key), "fingerprint": fingerprint(ADA.public_key),
         "status": "trusted", "trusted_as": "Ada (met her)", "certified_by": []},
        {"pk": key_to_text(GRACE.public_key), "fingerprint": fingerprint(GRACE.public_key),
         "status": "certified", "trusted_as": None,
         "certified_by": [key_to_text(LABEL2.public_key)]},
    ]
    certs = {c["label"]: c for c in d["certificates"]}
    assert certs[key_to_text(LABEL2.public_key)]["label_trusted"] is True
    assert certs[key_to_text(LABEL2.public_key)]["label_trusted_as"] == "my second label"
    assert certs[key_to_text(LABEL2.public_key)]["label_name"] == "Other Label"
    assert certs[key_to_text(LABEL.public_key)]["label_trusted"] is False
    assert certs[key_to_text(LABEL.public_key)]["label_trusted_as"] is None
    assert {c["status"] for c in d["certificates"]} == {"valid"}
    json.dumps(d)  # JSON as it is


def test_verdict_to_dict_reports_an_expired_certificate_of_a_trusted_label(
    store: TrustStore,
) -> None:
    _trust(store, LABEL)
    d = trust_verdict(_manifest(_cert()), store, now=T1).to_dict()
    assert d["trusted"] is False
    assert d["holders"][0]["status"] == "untrusted"
    assert d["certificates"][0]["status"] == "expired"
    assert d["certificates"][0]["label_trusted"] is True


# -- the store -----------------------------------------------------------------------------


def test_an_empty_home_trusts_nobody(store: TrustStore) -> None:
    assert store.all() == ()
    assert not store.is_trusted(ADA.public_key)
    assert store.get(ADA.public_key) is None
    assert not store.path.exists()


def test_add_then_read_back(store: TrustStore) -> None:
    entry = store.add(LABEL.public_key, "Roundhouse Records",
                      now=datetime(2025, 1, 1, 10, 30, 15, 123_456, tzinfo=UTC))
    assert entry == TrustEntry(LABEL.public_key, "Roundhouse Records",
                               datetime(2025, 1, 1, 10, 30, 15, tzinfo=UTC))
    assert store.is_trusted(LABEL.public_key)
    assert store.get(LABEL.public_key) == entry
    assert TrustStore(store.home).all() == (entry,)
    assert store.path == store.home / TRUST_FILE


def test_trust_file_is_typed_json_with_keys_in_their_text_form(store: TrustStore) -> None:
    store.add(LABEL.public_key, "R\u00e9cords \u6771\u4eac",
              now=datetime(2025, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))))
    doc = json.loads(store.path.read_text("utf-8"))
    assert doc == {"type": "p2pdist/trust-store", "v": 1, "trusted": [
        {"pk": key_to_text(LABEL.public_key), "name": "R\u00e9cords \u6771\u4eac",
         "added": "2025-01-01T00:00:00Z"}]}
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_entries_keep_the_order_they_were_added(store: TrustStore) -> None:
    for i, who in enumerate((MALLORY, ADA, LABEL)):
        store.add(who.public_key, who.name, now=T0 + i * SECOND)
    assert [e.pk for e in store.all()] == [MALLORY.public_key, ADA.public_key,
                                           LABEL.public_key]


def test_adding_a_key_again_renames_it_and_keeps_when_it_was_added(store: TrustStore) -> None:
    store.add(LABEL.public_key, "Roundhouse", now=T0)
    store.add(ADA.public_key, "Ada", now=T0 + SECOND)
    again = store.add(LABEL.public_key, "Roundhouse Records", now=T1)
    assert again == TrustEntry(LABEL.public_key, "Roundhouse Records", T0)
    assert store.all() == (again, TrustEntry(ADA.public_key, "Ada", T0 + SECOND))


def test_remove(store: TrustStore) -> None:
    _trust(store, ADA, LABEL)
    gone = store.remove(ADA.public_key)
    assert gone.pk == ADA.public_key
    assert [e.pk for e in store.all()] == [LABEL.public_key]
    with pytest.raises(InputError, match="not in your trust store") as e:
        store.remove(ADA.public_key)
    assert e.value.remedy
    assert fingerprint(ADA.public_key) in e.value.message


def test_removing_from_an_empty_store_is_an_input_error(store: TrustStore) -> None:
    with pytest.raises(InputError):
        store.remove(LABEL.public_key)


@pytest.mark.parametrize("name", ["", "   ", "x" * 301, "Label\nFAKE", "Label\u202e",
                                  "A\u200bB", "\x1b[31mred"])
def test_a_name_that_cannot_be_shown_safely_is_refused(store: TrustStore, name: str) -> None:
    with pytest.raises(InputError):
        store.add(LABEL.public_key, name, now=T0)
    assert store.all() == ()


def test_outer_spaces_of_a_name_are_trimmed(store: TrustStore) -> None:
    assert store.add(LABEL.public_key, "  Label ", now=T0).name == "Label"


@pytest.mark.parametrize("pk", [b"", bytes(31), bytes(33), "a" * 52])
def test_a_key_that_is_not_32_bytes_is_a_programming_error(store: TrustStore, pk: Any) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        store.add(pk, "x", now=T0)


def test_add_needs_an_aware_now(store: TrustStore) -> None:
    with pytest.raises(ValueError, match="aware"):
        store.add(LABEL.public_key, "x", now=datetime(2025, 1, 1))


def test_concurrent_adds_all_land(store: TrustStore) -> None:
    keys = [bytes([i]) * 32 for i in range(1, 17)]
    barrier = threading.Barrier(len(keys))

    def add(pk: bytes) -> None:
        barrier.wait()
        TrustStore(store.home).add(pk, f"key {pk[0]}", now=T0)

    threads = [threading.Thread(target=add, args=(pk,)) for pk in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.pk for e in store.all()) == keys


def _good_doc() -> dict[str, Any]:
    return {"type": "p2pdist/trust-store", "v": 1, "trusted": [
        {"pk": key_to_text(LABEL.public_key), "name": "Label",
         "added": "2025-01-01T00:00:00Z"}]}


def _edit(change: Any) -> bytes:
    d = _good_doc()
    change(d)
    return json.dumps(d).encode()


def _entry(**kw: Any) -> Any:
    return lambda d: d["trusted"][0].update(kw)


DAMAGED = [
    pytest.param(b"", id="empty-file"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nesting-bomb"),
    pytest.param(b"[]", id="a-list"),
    pytest.param(_edit(lambda d: d.update(type="p2pdist/work")), id="another-type"),
    pytest.param(_edit(lambda d: d.pop("v")), id="no-version"),
    pytest.param(_edit(lambda d: d.update(extra=1)), id="unknown-field"),
    pytest.param(_edit(lambda d: d.update(trusted={})), id="trusted-not-a-list"),
    pytest.param(_edit(lambda d: d["trusted"].append("x")), id="entry-not-an-object"),
    pytest.param(_edit(_entry(pk="not a key")), id="entry-bad-key"),
    pytest.param(_edit(_entry(pk=key_to_text(LABEL.public_key)[:-1])),
                 id="entry-key-51-characters"),
    pytest.param(_edit(_entry(pk=LABEL.public_key.hex())), id="entry-key-as-hex"),
    pytest.param(_edit(_entry(name="Label\n")), id="entry-name-newline"),
    pytest.param(_edit(_entry(name="")), id="entry-name-empty"),
    pytest.param(_edit(_entry(name=7)), id="entry-name-not-a-string"),
    pytest.param(_edit(_entry(added="yesterday")), id="entry-added-not-a-time"),
    pytest.param(_edit(_entry(added="2025-01-01T00:00:00")), id="entry-added-naive"),
    pytest.param(_edit(_entry(added="2025-01-01T00:00:00+09:00")),
                 id="entry-added-not-utc"),
    pytest.param(_edit(_entry(extra="x")), id="entry-unknown-field"),
    pytest.param(_edit(lambda d: d["trusted"][0].pop("added")), id="entry-without-added"),
    pytest.param(_edit(lambda d: d["trusted"].append(dict(d["trusted"][0]))),
                 id="key-listed-twice"),
]


@pytest.mark.parametrize("data", DAMAGED)
def test_a_damaged_trust_file_is_refused_not_half_read(tmp_path: Path, data: bytes) -> None:
    store = TrustStore(tmp_path)
    store.path.write_bytes(data)
    for call in (store.all, lambda: store.is_trusted(LABEL.public_key),
                 lambda: store.add(ADA.public_key, "Ada", now=T0),
                 lambda: trust_verdict(_manifest(), store, now=NOW)):
        with pytest.raises(StorageError) as e:
            call()
        assert str(store.path) in e.value.message
        assert e.value.remedy
    assert store.path.read_bytes() == data  # nothing was overwritten


@pytest.mark.parametrize("v", [2, 0, True, "1"])
def test_a_trust_file_of_another_version_is_refused(tmp_path: Path, v: Any) -> None:
    store = TrustStore(tmp_path)
    store.path.write_bytes(_edit(lambda d: d.update(v=v)))
    with pytest.raises(StorageError):
        store.all()


def test_a_huge_trust_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    with store.path.open("wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: 64 MiB on paper, nothing on disk
    with pytest.raises(StorageError, match="too large"):
        store.all()


def test_the_stored_file_reads_back_as_written(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    store.path.write_bytes(_edit(lambda d: None))
    assert store.all() == (TrustEntry(LABEL.public_key, "Label", T0),)


def test_a_home_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    home = tmp_path / "file-not-home"
    home.write_bytes(b"")
    with pytest.raises(StorageError):
        TrustStore(home).add(LABEL.public_key, "Label", now=T0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_trust_file_is_a_storage_error(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    store.add(LABEL.public_key, "Label", now=T0)
    store.path.chmod(0)
    try:
        with pytest.raises(StorageError, match="cannot read"):
            store.all()
    finally:
        store.path.chmod(0o600)
