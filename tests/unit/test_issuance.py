"""Issuance records and their Merkle trees: vectors, properties, named bad inputs.

A seller signs one issuance record per batch of voucher codes (domain
``p2pdist/issuance/v1``): the batch's count, face value, currency and the Merkle root of
its code hashes. A payment receipt proves its code is in the batch with a MerkleProof,
so the tree must let every code prove itself at its own index and nothing else prove
anything. Every refusal of bytes is a MalformedObject or an InvalidSignature (exit 3).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pdist import _canonical
from p2pdist._proof import IDENTITY_DOMAIN
from p2pdist.errors import InvalidSignature, MalformedObject, VerificationError
from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing import DOMAIN as LICENSE_DOMAIN
from p2pdist.licensing._grant import GRANT_DOMAIN
from p2pdist.payouts.issuance import (
    ISSUANCE_DOMAIN,
    MAX_ISSUANCE_SIZE,
    MAX_PROOF,
    Issuance,
    MerkleProof,
    SignedIssuance,
    merkle_levels,
    merkle_proof,
    merkle_root,
)
from p2pdist.payouts.payments import PAYMENT_DOMAIN, PURCHASE_DOMAIN
from p2pdist.payouts.receipts import DOMAIN as RECEIPT_DOMAIN
from p2pdist.payouts.vouchers import code_hash

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "issuances.json").read_text("utf-8")
)["issuances"]

PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

MAX_TS = 253_402_300_799
MAX_PRICE = 10**15
MAX_CODES = 100_000
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TYPE = "p2pdist/voucher-issuance/signed"


def _identity(seed: bytes, name: str) -> Identity:
    return Identity(name, nacl.signing.SigningKey(seed))


SELLER = _identity(bytes(range(32, 64)), "seller")
SELLER2 = _identity(b"\x05" * 32, "second seller")
BUYER = _identity(bytes(range(32)), "buyer")
MALLORY = _identity(b"\x07" * 32, "Mallory")
WORK = hashlib.sha256(b"info dict of duet").digest()
OTHER_WORK = hashlib.sha256(b"info dict of ada's song").digest()


def _hashes(n: int, seed: bytes = b"") -> list[bytes]:
    """*n* code hashes (any 32 bytes are one), sorted: the leaves' order."""
    return sorted(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(n))


# -- the tree, restated from the module's docstring ----------------------------------------


def _leaf(h: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + h).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _reference_root(hashes: list[bytes]) -> bytes:
    """Level by level: pairs hashed, an odd last node carried up unchanged."""
    level = [_leaf(h) for h in sorted(hashes)]
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


SIZES = [1, 2, 3, 5, 8, 1000]
_TREES = {n: (_hashes(n), merkle_levels(_hashes(n))) for n in SIZES}


def _proof(n: int, i: int) -> MerkleProof:
    return MerkleProof(i, merkle_proof(_TREES[n][1], i))


@pytest.mark.parametrize("n", SIZES)
def test_every_index_proves_its_code_to_the_root(n: int) -> None:
    hashes, levels = _TREES[n]
    root = levels[-1][0]
    assert root == merkle_root(hashes) == _reference_root(hashes)
    for i, h in enumerate(hashes):
        proof = _proof(n, i)
        assert len(proof.path) <= MAX_PROOF
        assert proof.root_of(h, n) == root, i


@pytest.mark.parametrize("n", SIZES)
def test_no_proof_works_for_another_index_or_code(n: int) -> None:
    hashes, levels = _TREES[n]
    root = levels[-1][0]
    pairs = (itertools.permutations(range(n), 2) if n <= 8 else
             [(i, (i * 7 + 1) % n) for i in range(n)] + [(0, n - 1), (n - 1, 0)])
    for i, j in pairs:
        if i == j:
            continue
        path = _proof(n, i).path
        # i's path at j's index, with either code; and i's proof for j's code.
        assert MerkleProof(j, path).root_of(hashes[i], n) != root, (i, j)
        assert MerkleProof(j, path).root_of(hashes[j], n) != root, (i, j)
        assert MerkleProof(i, path).root_of(hashes[j], n) != root, (i, j)
    stranger = hashlib.sha256(b"a code never issued").digest()
    for i in range(min(n, 50)):
        assert _proof(n, i).root_of(stranger, n) != root


def _shape(index: int, count: int) -> tuple[bool, ...]:
    """Where leaf *index* of a tree of *count* leaves has a sibling, level by level."""
    out = []
    while count > 1:
        out.append(index ^ 1 < count)
        index, count = index // 2, (count + 1) // 2
    return tuple(out)


@pytest.mark.parametrize("n", SIZES)
def test_a_proof_for_a_tree_of_another_count_fails(n: int) -> None:
    # A proof's shape depends on the count; under a count that gives its index another
    # shape, it leads nowhere (or elsewhere). Where the shape is the same (index 0 of 3
    # leaves and of 4), it leads to the same root: the root does not commit to the
    # count, the signed record does, next to it (and an index past the real leaves
    # would still need a second preimage: see test_no_code_is_proven_past_the_batch).
    hashes, levels = _TREES[n]
    root = levels[-1][0]
    for i in sorted({0, n // 2, n - 1}):
        proof = _proof(n, i)
        for other in {n - 1, n + 1, 2 * n, n + 7} - {0, n}:
            got = proof.root_of(hashes[i], other)
            if i >= other or _shape(i, other) != _shape(i, n):
                assert got != root, (i, other)
            else:
                assert got == root, (i, other)


@pytest.mark.parametrize("n", [n for n in SIZES if n <= 8])
def test_no_code_is_proven_past_the_batch(n: int) -> None:
    # A collector that signs a larger count than its tree has cannot prove a code at an
    # index past the real leaves from the tree's own nodes (each a candidate sibling).
    hashes, levels = _TREES[n]
    root = levels[-1][0]
    nodes = [h for level in levels for h in level][:40]
    for other in (n + 1, n + 2, 2 * n + 1):
        for index in range(n, other):
            depth = len(_shape(index, other))
            for code in [*hashes[:5], *nodes[:5]]:
                for path in itertools.islice(itertools.product(nodes, repeat=min(depth, 2)),
                                             400):
                    full = tuple(path) + tuple(_proof(n, n - 1).path)[len(path):]
                    assert MerkleProof(index, full).root_of(code, other) != root


@pytest.mark.parametrize("n", SIZES)
def test_a_proof_of_another_shape_is_no_proof(n: int) -> None:
    hashes, _ = _TREES[n]
    for i in sorted({0, n // 2, n - 1}):
        proof = _proof(n, i)
        extra = hashlib.sha256(b"extra").digest()
        assert MerkleProof(i, (*proof.path, extra)).root_of(hashes[i], n) is None
        if proof.path:
            assert MerkleProof(i, proof.path[:-1]).root_of(hashes[i], n) is None
    assert _proof(n, 0).root_of(hashes[0], 0) is None
    for index in (-1, n, n + 1, 1 << 20):
        assert MerkleProof(index, _proof(n, 0).path).root_of(hashes[0], n) is None


def test_odd_levels_carry_their_last_node_up_unchanged() -> None:
    h3 = _TREES[3][0]
    l3 = [_leaf(h) for h in h3]
    assert merkle_root(h3) == _node(_node(l3[0], l3[1]), l3[2])
    assert [len(level) for level in _TREES[3][1]] == [3, 2, 1]
    # Leaf 2 of 3 has a sibling at the second level only.
    assert _proof(3, 2).path == (_node(l3[0], l3[1]),)
    h5 = _TREES[5][0]
    l5 = [_leaf(h) for h in h5]
    assert merkle_root(h5) == _node(_node(_node(l5[0], l5[1]), _node(l5[2], l5[3])), l5[4])
    assert [len(level) for level in _TREES[5][1]] == [5, 3, 2, 1]
    assert _proof(5, 4).path == (_node(_node(l5[0], l5[1]), _node(l5[2], l5[3])),)
    # One leaf: the root is its leaf hash, the proof is empty.
    (h1,) = _TREES[1][0]
    assert merkle_root([h1]) == _leaf(h1)
    assert _proof(1, 0).path == ()
    assert [len(p.path) for p in (_proof(1000, 0), _proof(1000, 999))] == [10, 8]


def test_a_tree_of_the_largest_batch_has_proofs_of_at_most_max_proof() -> None:
    hashes = _hashes(MAX_CODES, b"big")
    levels = merkle_levels(hashes)
    assert len(levels) - 1 == MAX_PROOF
    for i in (0, 65_535, 65_536, MAX_CODES - 1):
        proof = MerkleProof(i, merkle_proof(levels, i))
        assert len(proof.path) <= MAX_PROOF
        assert proof.root_of(hashes[i], MAX_CODES) == levels[-1][0]


def test_the_tree_is_over_the_sorted_hashes_and_never_empty() -> None:
    hashes = _TREES[5][0]
    assert merkle_root(hashes[::-1]) == merkle_root(hashes)
    assert merkle_levels(list(reversed(hashes))) == merkle_levels(hashes)
    with pytest.raises(ValueError, match="at least one leaf"):
        merkle_levels([])


def test_an_inner_node_cannot_pass_as_a_code() -> None:
    # Second preimage: a level-1 node of a 4-code tree presented as the code of a
    # 2-leaf tree. Leaves and nodes are hashed under different prefixes, so it fails.
    hashes = _hashes(4)
    levels = merkle_levels(hashes)
    root = levels[-1][0]
    n0, n1 = levels[1]
    assert MerkleProof(0, (n1,)).root_of(n0, 2) != root
    assert MerkleProof(1, (n0,)).root_of(n1, 2) != root
    # A leaf hash presented as a code of a one-code tree is not the leaf itself.
    assert MerkleProof(0, ()).root_of(levels[0][0], 1) != levels[0][0]


@PROPERTY
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70, unique=True),
       st.data())
def test_any_batch_proves_each_code_and_nothing_else(hashes: list[bytes],
                                                     data: st.DataObject) -> None:
    levels = merkle_levels(hashes)
    root = levels[-1][0]
    assert root == _reference_root(hashes)
    leaves = sorted(hashes)
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = MerkleProof(i, merkle_proof(levels, i))
    assert proof.root_of(leaves[i], n) == root
    j = data.draw(st.integers(0, n - 1), label="other index")
    if j != i:
        assert MerkleProof(j, proof.path).root_of(leaves[i], n) != root
        assert proof.root_of(leaves[j], n) != root
    other = data.draw(st.integers(1, 200).filter(lambda c: c != n), label="other count")
    # (same shape, same root: see test_a_proof_for_a_tree_of_another_count_fails)
    assert (proof.root_of(leaves[i], other) == root) == (
        i < other and _shape(i, other) == _shape(i, n))


# -- the signed record ---------------------------------------------------------------------


def _issuance(**kw: Any) -> Issuance:
    fields: dict[str, Any] = {
        "work": WORK, "collector": SELLER.public_key, "count": 8, "face": 500,
        "currency": "EUR", "root": merkle_root(_hashes(8)), "ts": T0,
    }
    fields.update(kw)
    return Issuance(**fields)


BASE = _issuance()
BASE_DICT = BASE.to_dict()
SIGNED = SignedIssuance.sign(BASE, SELLER)


def _envelope(body: Any = None, sig: Any = None, **fields: Any) -> bytes:
    """Canonical envelope bytes; *body* defaults to the base record, *sig* to the
    seller's signature over *body*. A field given as None is left out."""
    if body is None:
        body = _canonical.encode(BASE_DICT)
    if sig is None:
        sig = SELLER.sign(domain=ISSUANCE_DOMAIN, message=body)
    d: dict[str, Any] = {"body": body, "sig": sig, "type": TYPE, "v": 1}
    d.update(fields)
    return _canonical.encode({k: v for k, v in d.items() if v is not None})


def _edited(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    d = dict(BASE_DICT)
    change(d)
    return d


def _resigned(change: Callable[[dict[str, Any]], Any]) -> bytes:
    return _envelope(_canonical.encode(_edited(change)))


def _replayed(change: Callable[[dict[str, Any]], Any]) -> bytes:
    return _envelope(_canonical.encode(_edited(change)), SIGNED.sig)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d[key] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        del d[key]
    return change


def _check(data: bytes) -> SignedIssuance:
    """What a verifier runs on received bytes."""
    signed = SignedIssuance.from_bytes(data)
    signed.verify()
    return signed


def _assert_opaque_refusal(exc: BaseException) -> None:
    assert isinstance(exc, InvalidSignature | MalformedObject), repr(exc)
    assert exc.exit_code == 3
    assert exc.message


def test_base_record_verifies_and_holds_the_bytes_it_was_signed_over() -> None:
    signed = _check(_envelope())
    assert signed == SIGNED
    assert signed.issuance == BASE
    assert signed.body == _canonical.encode(BASE.to_dict())
    assert signed.id == hashlib.sha256(signed.body).digest()


# -- golden vectors ------------------------------------------------------------------------


def _vector_hashes(inp: dict[str, Any]) -> list[bytes]:
    if "codes" in inp:
        return sorted(code_hash(c) for c in inp["codes"])
    return _hashes(inp["synthetic"], b"p2pdist/test-code\0")


def _vector(case: dict[str, Any]) -> tuple[Issuance, Identity]:
    inp = case["input"]
    collector = _identity(bytes.fromhex(inp["collector_seed"]), "from a vector")
    hashes = _vector_hashes(inp)
    return Issuance(work=bytes.fromhex(inp["work"]), collector=collector.public_key,
                    count=len(hashes), face=inp["face"], currency=inp["currency"],
                    root=merkle_root(hashes),
                    ts=datetime.fromtimestamp(inp["ts"], UTC)), collector


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_todays_encoding_reproduces_issuance_vector(case: dict[str, Any]) -> None:
    issuance, collector = _vector(case)
    signed = SignedIssuance.sign(issuance, collector)
    assert signed.body.hex() == case["body_hex"]
    assert signed.sig.hex() == case["sig_hex"]
    assert signed.to_bytes().hex() == case["envelope_hex"]
    expected = case["expected"]
    assert issuance.root.hex() == expected["root_hex"]
    assert issuance.count == expected["count"]
    assert key_to_text(issuance.collector) == expected["collector_pk_text"]


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["name"])
def test_stored_issuance_vector_parses_verifies_and_proves_its_codes(
    case: dict[str, Any],
) -> None:
    issuance, _ = _vector(case)
    expected = case["expected"]
    envelope = bytes.fromhex(case["envelope_hex"])
    signed = _check(envelope)
    assert signed.issuance == issuance
    assert signed.to_bytes() == envelope
    assert signed.id.hex() == expected["id_hex"]
    # The signature, checked with PyNaCl directly.
    nacl.signing.VerifyKey(issuance.collector).verify(
        b"p2pdist/issuance/v1\0" + bytes.fromhex(case["body_hex"]),
        bytes.fromhex(case["sig_hex"]))
    levels = merkle_levels(_vector_hashes(case["input"]))
    for p in expected["proofs"]:
        code, path = bytes.fromhex(p["code_hex"]), tuple(bytes.fromhex(h) for h in p["path"])
        assert merkle_proof(levels, p["index"]) == path
        assert MerkleProof(p["index"], path).root_of(code, issuance.count) == issuance.root


def test_issuance_vectors_pin_the_edges() -> None:
    by_name = {c["name"]: _vector(c)[0] for c in VECTORS}
    assert by_name["gift-one-code"].face == 0
    assert by_name["largest-batch"].count == MAX_CODES
    assert by_name["largest-batch"].face == MAX_PRICE
    sizes = {c["name"]: len(c["envelope_hex"]) // 2 for c in VECTORS}
    assert sizes["largest-batch"] == 371 < MAX_ISSUANCE_SIZE
    largest = next(c for c in VECTORS if c["name"] == "largest-batch")
    assert max(len(p["path"]) for p in largest["expected"]["proofs"]) == MAX_PROOF


def test_any_substituted_byte_in_a_vector_envelope_is_refused() -> None:
    envelope = bytes.fromhex(min(VECTORS, key=lambda c: len(c["envelope_hex"]))
                             ["envelope_hex"])
    _check(envelope)
    leaks = []
    for i in range(len(envelope)):
        for b in {0x00, 0x30, 0x3A, 0x65, 0x69, 0xFF, envelope[i] ^ 1, envelope[i] ^ 0x80} \
                - {envelope[i]}:
            try:
                _check(envelope[:i] + bytes([b]) + envelope[i + 1:])
            except (InvalidSignature, MalformedObject):
                continue
            except Exception as e:  # collect every leak
                leaks.append(f"byte {i} -> {b:#04x}: {type(e).__name__}: {e}")
            else:
                leaks.append(f"byte {i} -> {b:#04x}: verified")
    assert not leaks, "\n".join(leaks[:10])


# -- properties ----------------------------------------------------------------------------

_ids = st.sampled_from([SELLER, SELLER2, BUYER, MALLORY])
_key32 = st.binary(min_size=32, max_size=32)
_times = st.integers(0, MAX_TS).map(lambda t: datetime.fromtimestamp(t, UTC))
_currencies = st.sampled_from(["EUR", "JPY", "BHD", "USD", "CLF", "GBP"])


@st.composite
def _records(draw: st.DrawFn) -> tuple[Issuance, Identity]:
    collector = draw(_ids)
    return Issuance(
        work=draw(_key32), collector=collector.public_key,
        count=draw(st.one_of(st.integers(1, 10), st.integers(1, MAX_CODES))),
        face=draw(st.one_of(st.integers(0, 2_000), st.integers(0, MAX_PRICE))),
        currency=draw(_currencies), root=draw(_key32), ts=draw(_times)), collector


@PROPERTY
@given(_records())
def test_issuance_round_trips(rc: tuple[Issuance, Identity]) -> None:
    issuance, collector = rc
    signed = SignedIssuance.sign(issuance, collector)
    envelope = signed.to_bytes()
    assert len(envelope) <= MAX_ISSUANCE_SIZE
    again = _check(envelope)
    assert again == signed
    assert again.issuance == issuance
    assert again.id == signed.id == hashlib.sha256(signed.body).digest()
    assert Issuance.from_dict(_canonical.decode(signed.body, max_size=4096)) == issuance


@PROPERTY
@given(_records(), st.data())
def test_any_single_byte_change_in_an_issuance_envelope_is_refused(
    rc: tuple[Issuance, Identity], data: st.DataObject,
) -> None:
    issuance, collector = rc
    out = bytearray(SignedIssuance.sign(issuance, collector).to_bytes())
    i = data.draw(st.integers(0, len(out) - 1), label="position")
    out[i] = data.draw(st.integers(0, 255).filter(lambda b: b != out[i]), label="byte")
    with pytest.raises(VerificationError) as e:
        _check(bytes(out))
    _assert_opaque_refusal(e.value)


_edgy_key = st.one_of(st.just(WORK), st.binary(min_size=31, max_size=33))


@settings(PROPERTY, max_examples=300)
@given(st.dictionaries(st.sampled_from(["work", "collector", "count", "face", "currency",
                                        "root", "ts"]), st.none(), min_size=1, max_size=2),
       st.data())
def test_issuance_constructor_and_parser_agree(which: dict[str, None],
                                               data: st.DataObject) -> None:
    edges: dict[str, Any] = {
        "work": _edgy_key, "collector": _edgy_key, "root": _edgy_key,
        "count": st.one_of(st.integers(-1, 2), st.integers(MAX_CODES - 1, MAX_CODES + 1)),
        "face": st.one_of(st.integers(-1, 1), st.integers(MAX_PRICE - 1, MAX_PRICE + 1)),
        "currency": st.one_of(st.text(st.sampled_from("AEUXZ az1"), min_size=2, max_size=4),
                              st.sampled_from(["XXX", "XAU", "XTS", "USN", "CLF"])),
        "ts": st.integers(-1, MAX_TS + 1).map(
            lambda t: datetime.fromtimestamp(max(t, 0), UTC) if 0 <= t <= MAX_TS
            else SimpleNamespace(timestamp=lambda t=t: t)),
    }
    kw = {f.name: getattr(BASE, f.name) for f in BASE.__dataclass_fields__.values()}
    kw.update({name: data.draw(edges[name], label=name) for name in which})
    try:
        built: Issuance | None = Issuance(**kw)
    except ValueError:
        built = None
    body = _canonical.encode(Issuance.to_dict(SimpleNamespace(**kw)))  # type: ignore[arg-type]
    try:
        parsed: SignedIssuance | None = SignedIssuance.from_bytes(_envelope(body, bytes(64)))
    except MalformedObject:
        parsed = None
    assert (built is None) == (parsed is None), (kw, built, parsed)
    assert parsed is None or parsed.issuance == built


# -- named bad inputs ----------------------------------------------------------------------

# Each field changed to another valid value under the collector's old signature.
TAMPERED = [
    ("work-moved-to-another-work", _set("work", OTHER_WORK)),
    ("collector-swapped-for-the-other-seller", _set("collector", SELLER2.public_key)),
    ("count-raised-by-one", _set("count", 9)),
    ("count-lowered-to-one", _set("count", 1)),
    ("face-lowered-to-a-gift", _set("face", 0)),
    ("face-raised", _set("face", 501)),
    ("currency", _set("currency", b"USD")),
    ("root-of-another-batch", _set("root", merkle_root(_hashes(8, b"other")))),
    ("root-byte", _set("root", BASE.root[:-1] + bytes([BASE.root[-1] ^ 1]))),
    ("ts-moved-one-second", _set("ts", int(T0.timestamp()) + 1)),
]


@pytest.mark.parametrize("change", [pytest.param(c, id=n) for n, c in TAMPERED])
def test_field_changed_after_signing_is_refused(
    change: Callable[[dict[str, Any]], None],
) -> None:
    envelope = _replayed(change)
    SignedIssuance.from_bytes(envelope)  # well-formed: only the signature can catch it
    with pytest.raises(InvalidSignature) as e:
        _check(envelope)
    _assert_opaque_refusal(e.value)


def _signed_by(who: Identity, domain: bytes = ISSUANCE_DOMAIN,
               message: bytes | None = None) -> bytes:
    body = _canonical.encode(BASE_DICT)
    return _envelope(body, who.sign(domain=domain, message=message or body))


WRONG_KEY = [
    pytest.param(lambda: _signed_by(MALLORY), id="signed-by-mallory-naming-the-seller"),
    pytest.param(lambda: _signed_by(SELLER2), id="signed-by-another-seller"),
    pytest.param(lambda: _signed_by(BUYER), id="signed-by-a-buyer"),
    *(pytest.param(lambda d=d: _signed_by(SELLER, d), id=f"other-domain-{d.decode()}")
      for d in (PAYMENT_DOMAIN, PURCHASE_DOMAIN, GRANT_DOMAIN, RECEIPT_DOMAIN, LICENSE_DOMAIN,
                IDENTITY_DOMAIN, b"p2pdist/issuance/v2", b"p2pdist/issuance")),
    pytest.param(lambda: _envelope(sig=SELLER.signing_key.sign(
        _canonical.encode(BASE_DICT)).signature), id="signature-without-domain"),
    pytest.param(lambda: _envelope(sig=bytes(64)), id="zero-signature"),
    pytest.param(lambda: _signed_by(SELLER, message=_envelope()),
                 id="signature-over-the-envelope"),
]


@pytest.mark.parametrize("make", WRONG_KEY)
def test_record_not_signed_by_its_collector_in_its_domain_is_refused(
    make: Callable[[], bytes],
) -> None:
    with pytest.raises(InvalidSignature) as e:
        _check(make())
    _assert_opaque_refusal(e.value)


def test_signature_failure_does_not_say_why() -> None:
    messages = set()
    for envelope in [p.values[0]() for p in WRONG_KEY] + [_replayed(c) for _, c in TAMPERED]:
        with pytest.raises(InvalidSignature) as e:
            _check(envelope)
        messages.add((str(e.value), e.value.remedy))
    assert len(messages) == 1


def test_sign_refuses_an_identity_the_record_does_not_name() -> None:
    for who in (SELLER2, BUYER, MALLORY):
        with pytest.raises(ValueError, match="only the collector"):
            SignedIssuance.sign(BASE, who)


def _sized(size: int) -> bytes:
    """A well-signed envelope of exactly *size* bytes, padded under an unknown key."""
    base = len(_envelope(pad=b""))
    out = _envelope(pad=b"x" * (size - base - (len(str(size - base)) - 1)))
    assert len(out) == size, (len(out), size)
    return out


def test_envelope_size_limit_is_inclusive() -> None:
    with pytest.raises(MalformedObject, match=r"unexpected fields \['pad'\]"):
        SignedIssuance.from_bytes(_sized(MAX_ISSUANCE_SIZE))
    with pytest.raises(MalformedObject, match="too large"):
        SignedIssuance.from_bytes(_sized(MAX_ISSUANCE_SIZE + 1))


def test_a_10_mb_envelope_is_refused_fast_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    huge = _envelope(b"x" * (10 * 1024 * 1024), bytes(64))

    def parse(*_a: object, **_k: object) -> object:
        raise AssertionError("the parser saw an oversized envelope")

    monkeypatch.setattr(_canonical, "decode", parse)
    for data in (huge, bytearray(huge), memoryview(huge)):
        start = time.perf_counter()
        with pytest.raises(MalformedObject, match="too large"):
            SignedIssuance.from_bytes(data)  # type: ignore[arg-type]
        assert time.perf_counter() - start < 0.1


def test_every_truncation_is_malformed() -> None:
    envelope = _envelope()
    for n in range(len(envelope)):
        with pytest.raises(MalformedObject):
            SignedIssuance.from_bytes(envelope[:n])
    body = _canonical.encode(BASE_DICT)
    for n in range(len(body)):
        with pytest.raises(MalformedObject):
            SignedIssuance.from_bytes(_envelope(body[:n]))


def _unsorted(d: dict[str, Any]) -> bytes:
    return b"d" + b"".join(_canonical.encode(k.encode()) + _canonical.encode(v)
                           for k, v in sorted(d.items(), reverse=True)) + b"e"


_BODY = _canonical.encode(BASE_DICT)

MALFORMED = [
    # not canonical, properly signed
    ("envelope-keys-unsorted", lambda: _unsorted(_canonical.decode(_envelope(),
                                                                   max_size=4096))),
    ("envelope-trailing-byte", lambda: _envelope() + b"\0"),
    ("envelope-duplicate-key", lambda: _envelope().replace(b"d4:body", b"d4:body1:x4:body",
                                                           1)),
    ("body-keys-unsorted", lambda: _envelope(_unsorted(BASE_DICT))),
    ("body-int-leading-zero", lambda: _envelope(_BODY.replace(b"5:counti8e",
                                                              b"5:counti08e"))),
    ("body-length-leading-zero", lambda: _envelope(_BODY.replace(b"4:root32:",
                                                                 b"4:root032:"))),
    ("body-negative-zero", lambda: _envelope(_BODY.replace(b"4:facei500e", b"4:facei-0e"))),
    ("body-trailing-byte", lambda: _envelope(_BODY + b"e")),
    ("body-is-a-list", lambda: _envelope(_canonical.encode([BASE_DICT]))),
    ("body-empty", lambda: _envelope(b"")),
    ("envelope-empty", lambda: b""),
    ("bare-body", lambda: _BODY),
    # envelope fields
    ("envelope-version-2", lambda: _envelope(v=2)),
    ("envelope-no-type", lambda: _envelope(type=None)),
    ("envelope-type-of-the-body", lambda: _envelope(type=b"p2pdist/voucher-issuance")),
    ("envelope-payment-type", lambda: _envelope(type=b"p2pdist/payment-receipt/signed")),
    ("envelope-unknown-field", lambda: _envelope(extra=b"x")),
    ("sig-63-bytes", lambda: _envelope(sig=bytes(63))),
    ("sig-65-bytes", lambda: _envelope(sig=bytes(65))),
    ("body-as-dict-not-bytes", lambda: _envelope(BASE_DICT, bytes(64))),
    # unknown version and type
    *((name, (lambda c=c: _resigned(c))) for name, c in (
        ("version-2", _set("v", 2)),
        ("version-0", _set("v", 0)),
        ("no-version", _drop("v")),
        ("no-type", _drop("type")),
        ("payment-receipt-type", _set("type", b"p2pdist/payment-receipt")),
        ("unknown-field", _set("codes", [])),
        # count, face, currency
        ("count-0", _set("count", 0)),
        ("count-negative", _set("count", -1)),
        ("count-over-100000", _set("count", MAX_CODES + 1)),
        ("count-is-string", _set("count", b"8")),
        ("face-negative", _set("face", -1)),
        ("face-over-max-price", _set("face", MAX_PRICE + 1)),
        ("face-is-string", _set("face", b"500")),
        ("currency-lowercase", _set("currency", b"eur")),
        ("currency-2-letters", _set("currency", b"EU")),
        ("currency-4-letters", _set("currency", b"EURO")),
        ("currency-not-money", _set("currency", b"XAU")),
        ("currency-test-code", _set("currency", b"XTS")),
        ("currency-unknown", _set("currency", b"ABC")),
        ("currency-not-utf8", _set("currency", b"\xff\xfe\xfd")),
        ("currency-is-int", _set("currency", 978)),
        # keys, root, time
        ("work-31-bytes", _set("work", WORK[:31])),
        ("collector-33-bytes", _set("collector", SELLER.public_key + b"\0")),
        ("collector-as-text", _set("collector", key_to_text(SELLER.public_key).encode())),
        ("root-31-bytes", _set("root", BASE.root[:31])),
        ("root-empty", _set("root", b"")),
        ("ts-negative", _set("ts", -1)),
        ("ts-after-year-9999", _set("ts", MAX_TS + 1)),
        *((f"without-{key}", _drop(key)) for key in
          ("work", "collector", "count", "face", "currency", "root", "ts")),
    )),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=n) for n, m in MALFORMED])
def test_malformed_issuance_is_refused_as_malformed(make: Callable[[], bytes]) -> None:
    with pytest.raises(MalformedObject) as e:
        _check(make())
    _assert_opaque_refusal(e.value)


def test_from_bytes_refuses_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        SignedIssuance.from_bytes(_envelope().decode("latin-1"))  # type: ignore[arg-type]


CANNOT_BUILD = [
    pytest.param({"count": 0}, id="count-0"),
    pytest.param({"count": MAX_CODES + 1}, id="count-over-100000"),
    pytest.param({"count": True}, id="count-bool"),
    pytest.param({"face": -1}, id="face-negative"),
    pytest.param({"face": MAX_PRICE + 1}, id="face-over-max-price"),
    pytest.param({"face": 5.0}, id="face-float"),
    pytest.param({"currency": "eur"}, id="currency-lowercase"),
    pytest.param({"currency": "XAU"}, id="currency-not-money"),
    pytest.param({"currency": "EURO"}, id="currency-4-letters"),
    pytest.param({"root": bytes(31)}, id="root-31-bytes"),
    pytest.param({"collector": SELLER.public_key.hex()}, id="collector-as-hex"),
    pytest.param({"ts": datetime(2025, 1, 1)}, id="ts-naive"),
    pytest.param({"ts": T0.replace(microsecond=1)}, id="ts-microseconds"),
    pytest.param({"ts": datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)}, id="ts-before-1970"),
]


@pytest.mark.parametrize("kw", CANNOT_BUILD)
def test_record_that_cannot_be_verified_cannot_be_built(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _issuance(**kw)


def test_ts_in_another_zone_is_kept_as_utc() -> None:
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    record = _issuance(ts=paris)
    assert record == BASE
    assert record.ts.tzinfo is UTC
    assert record.to_dict() == BASE_DICT
