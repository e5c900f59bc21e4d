"""The append-only ledger: vectors, properties, and named attacks on entries and bundles.

Every refusal must be a VerificationError (exit 3), never a KeyError, TypeError or
ValueError leaking out of the parser; a tampered ledger names its first bad entry.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist.errors import (
    ForkDetected,
    InvalidSignature,
    LedgerCorrupt,
    MalformedObject,
    StorageError,
    VerificationError,
)
from p2pdist.identity import Identity, key_to_text
from p2pdist.payouts import ledger as ledger_mod
from p2pdist.payouts._merkle import MerkleBuilder, merkle_root
from p2pdist.payouts.ledger import (
    CHECKPOINT_DOMAIN,
    ENTRY_DOMAIN,
    MAX_PAYLOAD_SIZE,
    ZERO_HASH,
    Checkpoint,
    Entry,
    Ledger,
    SignedCheckpoint,
    _entry_bytes,
    _parse_bundle_fast,
    entry_hash,
    verify_bundle,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "ledger.json").read_text("utf-8")
)

PROPERTY = settings(
    max_examples=60, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

NODE = Identity("node", nacl.signing.SigningKey(bytes(range(32))))
OTHER = Identity("other", nacl.signing.SigningKey(bytes(range(32, 64))))
MALLORY = Identity("Mallory", nacl.signing.SigningKey(b"\x07" * 32))
T0 = datetime(2025, 1, 1, tzinfo=UTC)

_kinds = st.sampled_from(["receipt.received", "receipt.issued", "payment", "x", "a-b_c.9"])
_items = st.lists(st.tuples(_kinds, st.binary(max_size=300)), max_size=12)


def _ledger(path: Path, identity: Identity = NODE,
            items: list[tuple[str, bytes]] | None = None) -> Ledger:
    led = Ledger(path, node=identity.public_key)
    if items is None:
        items = [("receipt.received", b"receipt %d" % i) for i in range(1, 6)]
    led.append_many(items)
    return led


def _raw(path: Path) -> sqlite3.Connection:
    """An attacker's connection: the same file, with the append-only triggers dropped."""
    db = sqlite3.connect(path, isolation_level=None)
    for name in ("entries_no_update", "entries_no_delete",
                 "checkpoints_no_update", "checkpoints_no_delete"):
        db.execute(f"DROP TRIGGER {name}")
    return db


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written out as the spec says it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:])).digest()


# --- known answers -----------------------------------------------------------------------


def test_vector_entry_hashes_are_domain_tagged_canonical_bencode() -> None:
    inp, out = VECTORS["input"], VECTORS["output"]
    node = nacl.signing.SigningKey(bytes.fromhex(inp["seed"])).verify_key.encode()
    assert key_to_text(node) == out["node"]
    prev = ZERO_HASH
    for seq, (e, want) in enumerate(zip(inp["entries"], out["entry_hashes"], strict=True), 1):
        body = _canonical.encode({"node": node, "seq": seq, "kind": e["kind"],
                                  "payload": bytes.fromhex(e["payload"]), "prev": prev})
        h = hashlib.sha256(ENTRY_DOMAIN + b"\0" + body).digest()
        assert h.hex() == want
        prev = h
    assert _reference_root([bytes.fromhex(h) for h in out["entry_hashes"]]).hex() == out["root"]


def test_vector_checkpoint_and_bundle_rebuild_byte_for_byte(tmp_path: Path) -> None:
    from tests.vectors.make_ledger_vectors import build

    assert build(VECTORS["input"], tmp_path / "v.db") == VECTORS["output"]


def test_vector_bundle_verifies_offline() -> None:
    out = VECTORS["output"]
    bundle = verify_bundle(bytes.fromhex(out["bundle"]))
    cp = bundle.checkpoint.checkpoint
    assert [e.hash.hex() for e in bundle.entries] == out["entry_hashes"]
    assert cp.size == 3 and cp.head.hex() == out["entry_hashes"][-1]
    assert cp.root.hex() == out["root"]
    assert cp.ts == datetime.fromtimestamp(VECTORS["input"]["ts"], UTC)
    assert bundle.checkpoint.checkpoint_bytes.hex() == out["checkpoint"]
    nacl.signing.VerifyKey(cp.node).verify(
        CHECKPOINT_DOMAIN + b"\0" + bytes.fromhex(out["checkpoint"]),
        bytes.fromhex(out["checkpoint_sig"]))


# --- properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(41))
def test_merkle_root_matches_rfc6962_reference(n: int) -> None:
    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(n)]
    assert merkle_root(leaves) == _reference_root(leaves)
    b = MerkleBuilder()
    for i, leaf in enumerate(leaves):
        b.append(leaf)
        assert b.root() == _reference_root(leaves[: i + 1])


@PROPERTY
@given(kind=_kinds, payload=st.binary(max_size=2000), seq=st.integers(1, 2**63 - 1),
       node=st.binary(min_size=32, max_size=32), prev=st.binary(min_size=32, max_size=32))
def test_fast_entry_encoding_is_the_canonical_one(kind: str, payload: bytes, seq: int,
                                                  node: bytes, prev: bytes) -> None:
    d = {"node": node, "seq": seq, "kind": kind, "payload": payload, "prev": prev}
    want = _canonical.encode(d)
    assert _entry_bytes(node, seq, kind.encode(), payload, prev) == want
    assert Entry(node, seq, kind, payload, prev).hash == entry_hash(**d)  # type: ignore[arg-type]


@PROPERTY
@given(items=_items, more=_items)
def test_bundle_round_trips_into_a_fresh_ledger(tmp_path_factory: pytest.TempPathFactory,
                                                items: list[tuple[str, bytes]],
                                                more: list[tuple[str, bytes]]) -> None:
    d = tmp_path_factory.mktemp("rt")
    with _ledger(d / "node.db", items=items) as node, Ledger(d / "label.db") as label:
        first = node.export_bundle(NODE, now=T0)
        b = verify_bundle(first)
        assert list(b.entries) == list(node.entries())
        assert b.to_bytes() == first
        r = label.import_bundle(first)
        assert (r.added, r.present, r.checkpoint_stored) == (len(items), 0, True)
        node.append_many(more)
        r = label.import_bundle(node.export_bundle(NODE, now=T0 + timedelta(seconds=1)))
        assert (r.added, r.present) == (len(more), len(items))
        assert list(label.entries()) == list(node.entries())
        assert label.size(NODE.public_key) == node.size() == len(items) + len(more)
        assert label.verify().entries == len(items) + len(more)
        assert node.verify().checkpoints == 2


@PROPERTY
@given(st.data())
def test_bundle_with_any_byte_flipped_is_refused(data: st.DataObject) -> None:
    bundle = bytearray(bytes.fromhex(VECTORS["output"]["bundle"]))
    i = data.draw(st.integers(0, len(bundle) - 1))
    bundle[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(VerificationError):
        verify_bundle(bytes(bundle))


def test_bundle_with_one_bit_flipped_at_every_position_is_refused() -> None:
    good = bytes.fromhex(VECTORS["output"]["bundle"])
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        with pytest.raises(VerificationError):
            verify_bundle(bytes(bad))


def _generic_view(data: bytes) -> tuple[bytes, bytes, bytes, list[tuple[Any, ...]]] | None:
    """What the generic strict decoder makes of *data*, in the fast reader's shape."""
    try:
        d = _canonical.decode(data, max_size=1 << 24)
    except MalformedObject:
        return None
    try:
        return (d["node"], d["checkpoint"]["checkpoint"], d["checkpoint"]["sig"],
                [(e["node"], e["seq"], e["kind"], e["payload"], e["prev"])
                 for e in d["entries"]])
    except (KeyError, TypeError):
        return None


@PROPERTY
@given(st.data())
def test_fast_bundle_reader_accepts_only_what_the_strict_decoder_reads_the_same(
        data: st.DataObject) -> None:
    good = bytes.fromhex(VECTORS["output"]["bundle"])
    assert _parse_bundle_fast(good) is not None  # valid bundles take the fast path
    bad = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        i = data.draw(st.integers(0, len(bad) - 1))
        if op == "flip":
            bad[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            bad[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        else:
            del bad[i : i + data.draw(st.integers(1, 3))]
    fast = _parse_bundle_fast(bytes(bad))
    if fast is not None:
        node, cp, sig, rows = fast
        assert _generic_view(bytes(bad)) == (node, cp, sig, [r[:5] for r in rows])


def test_truncated_bundle_is_refused_at_every_length() -> None:
    good = bytes.fromhex(VECTORS["output"]["bundle"])
    for n in range(len(good)):
        with pytest.raises(MalformedObject):
            verify_bundle(good[:n])


# --- named bad bundles ----------------------------------------------------------------------


def _bundle_dict() -> dict[str, Any]:
    d = _canonical.decode(bytes.fromhex(VECTORS["output"]["bundle"]), max_size=1 << 20)
    assert isinstance(d, dict)
    return d


def test_oversized_bundle_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    good = bytes.fromhex(VECTORS["output"]["bundle"])
    monkeypatch.setattr(ledger_mod, "MAX_BUNDLE_SIZE", len(good))
    verify_bundle(good)  # exactly at the limit
    with pytest.raises(MalformedObject, match="too large"):
        verify_bundle(good + b"x")
    monkeypatch.setattr(ledger_mod, "MAX_BUNDLE_SIZE", len(good) - 1)
    with pytest.raises(MalformedObject, match="too large"):
        verify_bundle(good)


def test_bundle_with_too_many_entries_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_mod, "MAX_BUNDLE_ENTRIES", 2)
    with pytest.raises(MalformedObject, match="entries"):
        verify_bundle(bytes.fromhex(VECTORS["output"]["bundle"]))


@pytest.mark.parametrize("where", ["bundle", "envelope", "checkpoint"])
def test_unknown_version_is_refused_with_upgrade_remedy(where: str) -> None:
    d = _bundle_dict()
    if where == "bundle":
        d["v"] = 2
    elif where == "envelope":
        d["checkpoint"]["v"] = 2
    else:
        cp = _canonical.decode(d["checkpoint"]["checkpoint"], max_size=4096)
        cp["v"] = 2
        d["checkpoint"]["checkpoint"] = _canonical.encode(cp)
    with pytest.raises(MalformedObject, match="version") as ei:
        verify_bundle(_canonical.encode(d))
    assert "upgrade" in ei.value.remedy


def test_non_canonical_bundle_is_refused() -> None:
    good = bytes.fromhex(VECTORS["output"]["bundle"])
    assert b"1:vi1ee" in good
    with pytest.raises(MalformedObject, match="non-canonical"):
        verify_bundle(good.replace(b"1:vi1ee", b"1:vi01ee"))
    with pytest.raises(MalformedObject, match="trailing"):
        verify_bundle(good + b"e")


def test_bundle_of_another_kind_is_refused() -> None:
    d = _bundle_dict()
    d["type"] = "p2pdist/signed-receipt"
    with pytest.raises(MalformedObject, match="not a ledger bundle"):
        verify_bundle(_canonical.encode(d))
    with pytest.raises(MalformedObject):
        verify_bundle(b"le")


def test_checkpoint_signed_by_another_key_is_refused_opaquely(tmp_path: Path) -> None:
    d = _bundle_dict()
    cpb = d["checkpoint"]["checkpoint"]
    d["checkpoint"]["sig"] = MALLORY.sign(domain=CHECKPOINT_DOMAIN, message=cpb)
    with pytest.raises(InvalidSignature) as ei:
        verify_bundle(_canonical.encode(d))
    assert str(ei.value) == "signature verification failed"
    # Mallory's own checkpoint on the node's entries: the bundle names the node, not Mallory.
    cp = Checkpoint.from_bytes(cpb)
    forged = Checkpoint(MALLORY.public_key, cp.size, cp.head, cp.root, cp.ts)
    d["checkpoint"] = SignedCheckpoint.sign(forged, MALLORY).to_dict()
    with pytest.raises(InvalidSignature):
        verify_bundle(_canonical.encode(d))


@pytest.mark.parametrize("field", ["size", "head", "root"])
def test_checkpoint_that_does_not_cover_the_entries_is_refused(field: str) -> None:
    d = _bundle_dict()
    cp = Checkpoint.from_bytes(d["checkpoint"]["checkpoint"])
    other = {"size": cp.size - 1, "head": ZERO_HASH, "root": ZERO_HASH}[field]
    lie = Checkpoint(**{**{f: getattr(cp, f) for f in ("node", "size", "head", "root", "ts")},
                        field: other})
    d["checkpoint"] = SignedCheckpoint.sign(lie, NODE).to_dict()
    with pytest.raises(LedgerCorrupt) as ei:
        verify_bundle(_canonical.encode(d))
    assert ei.value.reason == "checkpoint-mismatch"


def test_bundle_with_an_entry_dropped_or_reordered_is_refused() -> None:
    for mutate, reason in ((lambda es: es.pop(1), "bad-seq"),
                           (lambda es: es.reverse(), "bad-seq"),
                           (lambda es: es.pop(), "checkpoint-mismatch")):
        d = _bundle_dict()
        mutate(d["entries"])
        with pytest.raises(LedgerCorrupt) as ei:
            verify_bundle(_canonical.encode(d))
        assert ei.value.reason == reason


def test_bundle_entry_of_another_node_is_refused() -> None:
    d = _bundle_dict()
    d["entries"][0]["node"] = OTHER.public_key
    with pytest.raises(LedgerCorrupt) as ei:
        verify_bundle(_canonical.encode(d))
    assert (ei.value.seq, ei.value.reason) == (1, "wrong-node")


def test_payload_check_refusal_stops_the_import_and_changes_nothing(tmp_path: Path) -> None:
    def refuse_third(e: Entry) -> None:
        if e.seq == 3:
            raise InvalidSignature()

    with _ledger(tmp_path / "n.db") as node, Ledger(tmp_path / "l.db") as label:
        with pytest.raises(InvalidSignature):
            label.import_bundle(node.export_bundle(NODE, now=T0), on_payload=refuse_third)
        assert list(label.entries()) == [] and label.checkpoints() == []
        with pytest.raises(InvalidSignature):
            node.verify(on_payload=refuse_third)
        seen: list[int] = []
        label.import_bundle(node.export_bundle(NODE, now=T0),
                            on_payload=lambda e: seen.append(e.seq))
        assert seen == [1, 2, 3, 4, 5]


# --- the stored ledger: append-only, tamper-evident -----------------------------------------


def test_appends_chain_and_count_per_node(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", node=NODE.public_key) as led:
        assert led.size() == 0 and led.append_many([]) == []
        a = led.append("receipt.issued", b"a")
        b, c = led.append_many([("payment", b"b"), ("receipt.issued", b"")])
        assert (a.seq, a.prev) == (1, ZERO_HASH)
        assert (b.seq, b.prev, c.seq, c.prev) == (2, a.hash, 3, b.hash)
        assert [e.seq for e in led.entries(kind="receipt.issued")] == [1, 3]
        assert led.size(NODE.public_key) == 3 and led.size(OTHER.public_key) == 0
    with Ledger(tmp_path / "l.db", node=NODE.public_key) as led:  # reopened
        assert led.append("payment", b"d").prev == c.hash
        assert led.verify().entries == 4


def test_misuse_is_a_programmer_error(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", node=NODE.public_key) as led:
        led.append("payment", b"\0" * MAX_PAYLOAD_SIZE)
        for kind, payload in (("Receipt", b""), ("", b""), ("a b", b""), ("x" * 65, b""),
                              ("payment", b"\0" * (MAX_PAYLOAD_SIZE + 1))):
            with pytest.raises(ValueError):
                led.append_many([("payment", b"ok"), (kind, payload)])
        with pytest.raises(TypeError):
            led.append("payment", "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not this ledger's node"):
            led.checkpoint(OTHER, now=T0)
        assert led.size() == 1
    with Ledger(tmp_path / "l.db") as label, pytest.raises(ValueError, match="node="):
        label.append("payment", b"")


def test_update_and_delete_are_refused_by_sqlite(tmp_path: Path) -> None:
    with _ledger(tmp_path / "l.db") as led:
        led.checkpoint(NODE, now=T0)
    db = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    for sql in ("UPDATE entries SET payload = x'00'", "DELETE FROM entries WHERE seq = 5",
                "UPDATE checkpoints SET size = 1", "DELETE FROM checkpoints"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    db.close()
    with Ledger(tmp_path / "l.db", node=NODE.public_key) as led:
        assert led.verify().entries == 5


def test_ledger_is_wal_with_full_sync(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", node=NODE.public_key) as led:
        assert led._db.execute("PRAGMA journal_mode").fetchone()[0] == b"wal"
        assert led._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


_TAMPER: dict[str, object] = {
    "node": OTHER.public_key,
    "seq": 1000,
    "kind": "payment",
    "payload": b"more bytes than were acknowledged",
    "prev": b"\xff" * 32,
    "hash": b"\xff" * 32,
}


@pytest.mark.parametrize("seq", [1, 3, 5])
@pytest.mark.parametrize("column", list(_TAMPER))
def test_tampered_entry_is_named_by_verify(tmp_path: Path, column: str, seq: int) -> None:
    path = tmp_path / "l.db"
    _ledger(path).close()
    db = _raw(path)
    db.execute(f"UPDATE entries SET {column} = ? WHERE seq = ?",  # noqa: S608
               (_TAMPER[column], seq))
    db.close()
    with Ledger(path, node=NODE.public_key) as led, pytest.raises(LedgerCorrupt) as ei:
        led.verify()
    assert ei.value.seq == seq
    assert ei.value.reason in {"bad-hash", "missing"}
    assert ei.value.exit_code == 3
    assert ei.value.to_dict()["seq"] == seq


@pytest.mark.parametrize("value", ["a text payload", 7, 2.5, b"\0" * 31])
def test_stored_column_of_the_wrong_type_is_named(tmp_path: Path, value: object) -> None:
    path = tmp_path / "l.db"
    _ledger(path).close()
    db = _raw(path)
    db.execute("UPDATE entries SET prev = ? WHERE seq = 2", (value,))
    db.close()
    with Ledger(path) as led, pytest.raises(LedgerCorrupt) as ei:
        led.verify()
    assert (ei.value.seq, ei.value.reason) == (2, "malformed")


@pytest.mark.parametrize("value", [key_to_text(NODE.public_key), 7, NODE.public_key[:31]])
def test_stored_node_column_of_the_wrong_type_is_named(tmp_path: Path, value: object) -> None:
    path = tmp_path / "l.db"
    _ledger(path).close()
    db = _raw(path)
    db.execute("UPDATE entries SET node = ? WHERE seq = 4", (value,))
    db.close()
    with Ledger(path) as led, pytest.raises(LedgerCorrupt) as ei:
        led.verify()
    assert (ei.value.seq, ei.value.reason) == (4, "malformed")


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_deleted_entry_is_named_by_verify(tmp_path: Path, seq: int) -> None:
    path = tmp_path / "l.db"
    with _ledger(path) as led:
        led.checkpoint(NODE, now=T0)  # pins the last entry too
    db = _raw(path)
    db.execute("DELETE FROM entries WHERE seq = ?", (seq,))
    db.close()
    with Ledger(path) as led, pytest.raises(LedgerCorrupt) as ei:
        led.verify()
    assert (ei.value.node, ei.value.seq, ei.value.reason) == (NODE.public_key, seq, "missing")


def test_rewritten_history_is_caught_by_the_checkpoint(tmp_path: Path) -> None:
    """An attacker who rehashes the whole chain still cannot sign a checkpoint."""
    path = tmp_path / "l.db"
    with _ledger(path) as led:
        led.checkpoint(NODE, now=T0)
        good = list(led.entries())
    with Ledger(tmp_path / "forged.db", node=NODE.public_key) as forged:
        forged.append_many([(e.kind, b"inflated" if e.seq == 2 else e.payload) for e in good])
        rewritten = list(forged.entries())
    db = _raw(path)
    db.execute("DELETE FROM entries")
    db.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?)",
                   [(e.node, e.seq, e.kind, e.payload, e.prev, e.hash) for e in rewritten])
    db.close()
    with Ledger(path) as led, pytest.raises(LedgerCorrupt) as ei:
        led.verify()
    assert (ei.value.seq, ei.value.reason) == (5, "checkpoint-mismatch")


def test_tampered_stored_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with _ledger(path) as led:
        signed = led.checkpoint(NODE, now=T0)
    env = bytearray(signed.to_bytes())
    env[-5] ^= 1  # inside the signature
    db = _raw(path)
    db.execute("UPDATE checkpoints SET envelope = ?", (bytes(env),))
    db.close()
    with Ledger(path) as led, pytest.raises(LedgerCorrupt) as ei:
        led.verify()
    assert ei.value.reason == "checkpoint-signature"


def test_two_checkpoints_of_one_size_with_different_heads_are_a_fork(tmp_path: Path) -> None:
    honest = _ledger(tmp_path / "a.db")
    liar = _ledger(tmp_path / "b.db",
                   items=[("receipt.received", b"receipt %d" % i) for i in (1, 2, 3, 4, 99)])
    with honest, liar, Ledger(tmp_path / "label.db") as label:
        label.import_bundle(honest.export_bundle(NODE, now=T0))
        before = list(label.entries())
        # The same node key, another history of 5 entries: importing it is refused.
        other_history = liar.export_bundle(NODE, now=T0)
        with pytest.raises(ForkDetected) as ei:
            label.import_bundle(other_history)
        assert ei.value.seq == 5 and ei.value.exit_code == 3
        assert list(label.entries()) == before and len(label.checkpoints()) == 1
        # Kept as evidence, the second checkpoint makes verify report the fork.
        assert label.add_checkpoint(liar.checkpoint(NODE, now=T0))
        with pytest.raises(ForkDetected) as ei:
            label.verify()
        assert ei.value.node == NODE.public_key and ei.value.seq == 5
        assert set(ei.value.heads) == {honest.checkpoints()[0].checkpoint.head,
                                       liar.checkpoints()[0].checkpoint.head}


def test_add_checkpoint_refuses_a_bad_signature(tmp_path: Path) -> None:
    with _ledger(tmp_path / "a.db") as led:
        cp = led.checkpoint(NODE, now=T0)
        forged = SignedCheckpoint(cp.checkpoint_bytes, MALLORY.sign(
            domain=CHECKPOINT_DOMAIN, message=cp.checkpoint_bytes))
        with pytest.raises(InvalidSignature):
            led.add_checkpoint(forged)
        assert not led.add_checkpoint(cp)  # already there


def test_import_merges_several_nodes_and_keeps_each_chain(tmp_path: Path) -> None:
    with _ledger(tmp_path / "a.db") as a, _ledger(tmp_path / "b.db", OTHER) as b, \
            Ledger(tmp_path / "label.db") as label:
        label.import_bundle(a.export_bundle(NODE, now=T0))
        label.import_bundle(b.export_bundle(OTHER, now=T0))
        assert sorted(label.nodes()) == sorted([NODE.public_key, OTHER.public_key])
        assert list(label.entries(node=OTHER.public_key)) == list(b.entries())
        report = label.verify()
        assert (report.nodes, report.entries, report.checkpoints) == (2, 10, 2)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Ledger(tmp_path / "l.db").close()
    db = sqlite3.connect(tmp_path / "l.db")
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(StorageError) as ei:
        Ledger(tmp_path / "l.db")
    assert "upgrade" in ei.value.remedy


@pytest.mark.parametrize("column", ["payload", "kind", "prev"])
def test_stored_text_that_is_not_utf8_is_named_not_a_storage_error(
        tmp_path: Path, column: str) -> None:
    # SQLite stores whatever it is given; Python's default decoder would raise on
    # these bytes typed as TEXT. The ledger reads every column as bytes and names them.
    path = tmp_path / "l.db"
    _ledger(path).close()
    db = _raw(path)
    db.execute(f"UPDATE entries SET {column} = CAST(x'ff00fe' AS TEXT) WHERE seq = 3")  # noqa: S608
    db.close()
    with Ledger(path) as led, pytest.raises(LedgerCorrupt) as ei:
        led.verify()
    assert (ei.value.seq, ei.value.reason) == (3, "malformed")
