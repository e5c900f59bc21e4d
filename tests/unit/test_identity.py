"""Identities: the sealed keystore, the text form of keys, domain-separated signatures."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nacl.pwhash
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pdist.errors import (
    IdentityExists,
    InvalidSignature,
    KeyFileError,
    MalformedObject,
    NoIdentity,
    PassphraseError,
    VerificationError,
)
from p2pdist.identity import (
    KEYFILE_NAME,
    MAX_MEMLIMIT,
    MAX_OPSLIMIT,
    Identity,
    create_identity,
    fingerprint,
    key_from_text,
    key_to_text,
    load_identity,
    load_public_identity,
    verify_signature,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "keys.json").read_text("utf-8")
)

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

PASS = "correct horse battery staple"
# The cheapest cost argon2id allows, so that most tests unlock in a millisecond.
FAST = {"opslimit": 1, "memlimit": 8192}
B32 = "abcdefghijklmnopqrstuvwxyz234567"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    create_identity(h, name="Ada", passphrase=PASS, **FAST)
    return h


def _keyfile(home: Path) -> Path:
    return home / KEYFILE_NAME


def _edit(home: Path, change: Any) -> None:
    """Rewrite the key file's JSON through *change*, keeping it 0600."""
    path = _keyfile(home)
    doc = json.loads(path.read_text())
    doc = change(doc) or doc
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


def _key(seed: int) -> Identity:
    return Identity(f"k{seed}", nacl.signing.SigningKey(bytes([seed]) * 32))


# -- keystore -----------------------------------------------------------------------------


def test_identity_created_with_default_cost_unlocks_with_its_passphrase(tmp_path: Path) -> None:
    h = tmp_path / "home"
    made = create_identity(h, name="  Ada Lovelace ", passphrase=PASS)
    doc = json.loads(_keyfile(h).read_text())
    assert doc["kdf"]["alg"] == "argon2id"
    assert doc["kdf"]["opslimit"] <= MAX_OPSLIMIT
    assert doc["kdf"]["memlimit"] <= MAX_MEMLIMIT
    loaded = load_identity(h, passphrase=PASS)
    assert loaded.name == made.name == "Ada Lovelace"
    assert bytes(loaded.signing_key) == bytes(made.signing_key)
    assert load_public_identity(h) == made.public


def test_init_seals_at_the_moderate_cost_and_an_interactive_key_still_opens(
        tmp_path: Path) -> None:
    """An offline guesser pays libsodium's moderate cost per passphrase tried; key files
    sealed at the interactive cost by older versions still open."""
    made = create_identity(tmp_path / "new", name="Ada", passphrase=PASS)
    kdf = json.loads(_keyfile(tmp_path / "new").read_text())["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == (nacl.pwhash.argon2id.OPSLIMIT_MODERATE,
                                                  nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
    assert bytes(load_identity(tmp_path / "new", passphrase=PASS).signing_key) == bytes(
        made.signing_key)
    old = create_identity(tmp_path / "old", name="Ada", passphrase=PASS,
                          opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                          memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
    assert bytes(load_identity(tmp_path / "old", passphrase=PASS).signing_key) == bytes(
        old.signing_key)


def test_keyfile_holds_no_plaintext_seed(home: Path) -> None:
    seed = bytes(load_identity(home, passphrase=PASS).signing_key)
    raw = _keyfile(home).read_bytes()
    for form in (seed, seed.hex().encode(), base64.b64encode(seed), base64.b32encode(seed)):
        assert form not in raw


def test_keyfile_is_owner_only_after_create(home: Path) -> None:
    assert stat.S_IMODE(_keyfile(home).stat().st_mode) == 0o600
    # No temp file left; the home's lock file stays, as an flock's file does.
    assert sorted(p.name for p in home.iterdir()) == ["home.lock", KEYFILE_NAME]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_init_twice_refuses_to_overwrite_the_key(home: Path) -> None:
    before = _keyfile(home).read_bytes()
    with pytest.raises(IdentityExists):
        create_identity(home, name="Mallory", passphrase=PASS + "!", **FAST)
    assert _keyfile(home).read_bytes() == before


def test_wrong_passphrase_raises_passphrase_error_without_internals(home: Path) -> None:
    with pytest.raises(PassphraseError) as e:
        load_identity(home, passphrase=PASS[::-1])
    msg = f"{e.value} {e.value.remedy}"
    assert "wrong passphrase" in msg
    for leak in ("Traceback", "nacl", "CryptoError", "Decryption", "\n"):
        assert leak not in msg
    assert e.value.__cause__ is None
    assert e.value.__suppress_context__


@pytest.mark.parametrize("passphrase", ["", "correct horse battery stapl", PASS + " ",
                                        PASS.upper()],
                         ids=["empty", "one-char-short", "trailing-space", "upper-case"])
def test_near_miss_passphrase_is_wrong(home: Path, passphrase: str) -> None:
    with pytest.raises(PassphraseError):
        load_identity(home, passphrase=passphrase)


def test_empty_passphrase_is_refused_at_create(tmp_path: Path) -> None:
    with pytest.raises(PassphraseError):
        create_identity(tmp_path / "h", name="Ada", passphrase="", **FAST)
    assert not (tmp_path / "h" / KEYFILE_NAME).exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "Ada\x1b[31m", "Ada\nMallory"],
                         ids=["empty", "blank", "201-chars", "terminal-escape", "newline"])
def test_name_that_could_mislead_a_reader_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyFileError):
        create_identity(tmp_path / "h", name=name, passphrase=PASS, **FAST)


def test_loading_a_home_without_identity_says_so(tmp_path: Path) -> None:
    with pytest.raises(NoIdentity):
        load_identity(tmp_path, passphrase=PASS)
    with pytest.raises(NoIdentity):
        load_public_identity(tmp_path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o610],
                         ids=lambda m: f"{m:o}")
def test_keyfile_readable_by_others_is_refused_with_chmod_remedy(home: Path, mode: int) -> None:
    path = _keyfile(home)
    path.chmod(mode)
    for load in (lambda: load_identity(home, passphrase=PASS), lambda: load_public_identity(home)):
        with pytest.raises(KeyFileError) as e:
            load()
        assert e.value.remedy == f"chmod 600 {path}"
        assert f"{mode:o}" in e.value.message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700], ids=lambda m: f"{m:o}")
def test_keyfile_private_to_owner_loads(home: Path, mode: int) -> None:
    _keyfile(home).chmod(mode)
    assert load_identity(home, passphrase=PASS).name == "Ada"


def test_every_truncation_of_the_keyfile_raises_keyfile_error(home: Path) -> None:
    path = _keyfile(home)
    full = path.read_bytes()
    assert full.endswith(b"}\n")
    for n in range(len(full) - 1):  # len-1 only drops the final newline: still the key
        path.write_bytes(full[:n])
        with pytest.raises(KeyFileError):
            load_identity(home, passphrase=PASS)


def _set_kdf(**kw: object) -> Any:
    def change(doc: dict[str, Any]) -> None:
        doc["kdf"].update(kw)
    return change


@pytest.mark.parametrize(
    "kdf",
    [
        {"opslimit": 10**6},
        {"memlimit": 2**40},
        {"opslimit": 10**6, "memlimit": 2**40},
        {"opslimit": MAX_OPSLIMIT + 1},
        {"memlimit": MAX_MEMLIMIT + 1},
        {"opslimit": 10**100},
        {"opslimit": -1},
        {"opslimit": 0},
        {"memlimit": 0},
    ],
    ids=["opslimit-1e6", "memlimit-1TiB", "both-huge", "opslimit-cap+1", "memlimit-cap+1",
         "opslimit-googol", "opslimit-negative", "opslimit-zero", "memlimit-zero"],
)
def test_keyfile_asking_for_unbounded_kdf_cost_is_refused_quickly(
    home: Path, kdf: dict[str, int]
) -> None:
    _edit(home, _set_kdf(**kdf))
    t = time.perf_counter()
    with pytest.raises(KeyFileError):
        load_identity(home, passphrase=PASS)
    assert time.perf_counter() - t < 1.0


def test_keyfile_at_the_opslimit_cap_is_still_tried(home: Path) -> None:
    # The cap is inclusive: the KDF runs (and, with another cost, derives a wrong key).
    _edit(home, _set_kdf(opslimit=MAX_OPSLIMIT))
    with pytest.raises(PassphraseError):
        load_identity(home, passphrase=PASS)


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
def test_keyfile_with_non_finite_kdf_cost_raises_keyfile_error(home: Path, value: str) -> None:
    path = _keyfile(home)
    doc = json.loads(path.read_text())
    text = json.dumps(doc).replace(f'"opslimit": {doc["kdf"]["opslimit"]}', f'"opslimit": {value}')
    assert value in text
    path.write_text(text)
    with pytest.raises(KeyFileError):
        load_identity(home, passphrase=PASS)


def _del(*keys: str) -> Any:
    def change(doc: dict[str, Any]) -> None:
        d = doc
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return change


def _put(value: object, *keys: str) -> Any:
    def change(doc: dict[str, Any]) -> None:
        d = doc
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


@pytest.mark.parametrize(
    "change",
    [
        lambda doc: [doc],
        lambda doc: "p2pdist/keystore",
        _put("p2pdist/other", "type"),
        _put(2, "v"),
        _put("1", "v"),
        _del("kdf"),
        _del("sealed"),
        _del("public_key"),
        _del("name"),
        _del("kdf", "salt"),
        _del("kdf", "alg"),
        _put("scrypt", "kdf", "alg"),
        _put([1, 8192], "kdf"),
        _put("argon2id", "kdf"),
        _put("not base64!", "kdf", "salt"),
        _put(base64.b64encode(b"short").decode(), "kdf", "salt"),
        _put(12345, "kdf", "salt"),
        _put("one", "kdf", "opslimit"),
        _put(None, "kdf", "memlimit"),
        _put("not base64!", "sealed"),
        _put("aaaa", "public_key"),
        _put(None, "public_key"),
    ],
    ids=["list", "string", "wrong-type", "version-2", "version-as-string", "no-kdf",
         "no-sealed", "no-public-key", "no-name", "no-salt", "no-alg", "unknown-alg",
         "kdf-is-list", "kdf-is-string", "salt-not-base64", "salt-too-short", "salt-is-int",
         "opslimit-is-word", "memlimit-is-null", "sealed-not-base64", "public-key-garbage",
         "public-key-null"],
)
def test_damaged_keyfile_raises_keyfile_error(home: Path, change: Any) -> None:
    _edit(home, change)
    with pytest.raises(KeyFileError):
        load_identity(home, passphrase=PASS)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 64, b"\xff\xfe{", b"[]", b"null", b" " * (16 * 1024 + 1)],
    ids=["empty", "zeros", "not-utf8", "json-list", "json-null", "over-16KiB"],
)
def test_keyfile_that_is_not_json_keystore_raises_keyfile_error(
    home: Path, content: bytes
) -> None:
    _keyfile(home).write_bytes(content)
    with pytest.raises(KeyFileError):
        load_identity(home, passphrase=PASS)
    with pytest.raises(KeyFileError):
        load_public_identity(home)


def test_keyfile_whose_public_key_was_swapped_is_refused(home: Path) -> None:
    _edit(home, _put(key_to_text(_key(7).public_key), "public_key"))
    assert load_public_identity(home).public_key == _key(7).public_key  # shows the lie...
    with pytest.raises(KeyFileError, match="does not match"):
        load_identity(home, passphrase=PASS)  # ...which unlocking catches


def test_tampered_sealed_seed_does_not_unlock(home: Path) -> None:
    def flip(doc: dict[str, Any]) -> None:
        sealed = bytearray(base64.b64decode(doc["sealed"]))
        sealed[-1] ^= 1
        doc["sealed"] = base64.b64encode(bytes(sealed)).decode()
    _edit(home, flip)
    with pytest.raises(PassphraseError):
        load_identity(home, passphrase=PASS)


# -- text form of keys --------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["pk_text"][:8])
def test_key_text_and_fingerprint_match_vector(case: dict[str, str]) -> None:
    pk = bytes.fromhex(case["pk_hex"])
    if case["seed_hex"]:
        assert bytes(nacl.signing.SigningKey(bytes.fromhex(case["seed_hex"])).verify_key) == pk
    assert key_to_text(pk) == case["pk_text"]
    assert case["pk_text"] == base64.b32encode(pk).decode().rstrip("=").lower()
    assert key_from_text(case["pk_text"]) == pk
    assert fingerprint(pk) == case["fingerprint"]


@PROPERTY
@given(st.binary(min_size=32, max_size=32))
def test_key_text_round_trips_and_has_one_shape(pk: bytes) -> None:
    text = key_to_text(pk)
    assert len(text) == 52
    assert set(text) <= set(B32)
    assert key_from_text(text) == pk
    fp = fingerprint(pk)
    assert len(fp) == 19
    assert fp.count("-") == 3
    assert set(fp.replace("-", "")) <= set(B32.upper())


@PROPERTY
@given(st.binary(min_size=32, max_size=32))
def test_key_text_with_nonzero_padding_bits_is_rejected(pk: bytes) -> None:
    # The last of 52 base32 characters carries 1 key bit and 4 zero padding bits, so only
    # two final characters are canonical; every other one is a second spelling of a key.
    text = key_to_text(pk)
    for c in B32:
        other = text[:-1] + c
        if c in "aq":
            key_from_text(other)
        else:
            with pytest.raises(MalformedObject):
                key_from_text(other)


_PK_TEXT = VECTORS[0]["pk_text"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        _PK_TEXT[:-1],
        _PK_TEXT + "a",
        _PK_TEXT + "====",
        _PK_TEXT[:-4] + "====",
        VECTORS[0]["pk_hex"],
        VECTORS[0]["fingerprint"],
        "0" + _PK_TEXT[1:],
        "1" + _PK_TEXT[1:],
        "8" + _PK_TEXT[1:],
        _PK_TEXT[:26] + " " + _PK_TEXT[26:-1],
        _PK_TEXT[:26] + "-" + _PK_TEXT[27:],
        "\u017f" + _PK_TEXT[1:],
        "\u0131" + _PK_TEXT[1:],
        "\u0430" + _PK_TEXT[1:],
        "\uff41" + _PK_TEXT[1:],
        _PK_TEXT[:-1] + "\x00",
    ],
    ids=["empty", "word", "51-chars", "53-chars", "padded", "padding-inside", "hex-form",
         "fingerprint", "digit-0", "digit-1", "digit-8", "inner-space", "inner-dash",
         "long-s-upper-cases-to-S", "dotless-i-upper-cases-to-I", "cyrillic-a",
         "fullwidth-a", "nul"],
)
def test_text_that_is_not_a_canonical_key_is_rejected(text: str) -> None:
    with pytest.raises(MalformedObject) as e:
        key_from_text(text)
    assert e.value.exit_code == 3


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_key_to_text_refuses_a_non_key(n: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        key_to_text(b"\x01" * n)


# -- signatures ---------------------------------------------------------------------------


def test_signature_verifies_only_under_its_own_domain() -> None:
    ada = _key(1)
    sig = ada.sign(domain=b"p2pdist/license/v1", message=b"manifest")
    verify_signature(pk=ada.public_key, domain=b"p2pdist/license/v1", message=b"manifest",
                     signature=sig)
    for domain, message in [
        (b"p2pdist/receipt/v1", b"manifest"),
        (b"p2pdist/license/v2", b"manifest"),
        (b"p2pdist/license/v1\0manifest", b""),
        (b"p2pdist/license/v", b"1\0manifest"),
        (b"", b"p2pdist/license/v1\0manifest"),
    ]:
        with pytest.raises(InvalidSignature):
            verify_signature(pk=ada.public_key, domain=domain, message=message, signature=sig)


def test_plain_ed25519_signature_without_domain_is_rejected() -> None:
    ada = _key(1)
    raw = ada.signing_key.sign(b"manifest").signature
    with pytest.raises(InvalidSignature):
        verify_signature(pk=ada.public_key, domain=b"p2pdist/license/v1", message=b"manifest",
                         signature=raw)


def test_signature_by_another_key_is_rejected() -> None:
    sig = _key(2).sign(domain=b"d", message=b"m")
    with pytest.raises(InvalidSignature):
        verify_signature(pk=_key(1).public_key, domain=b"d", message=b"m", signature=sig)


def test_invalid_signature_message_gives_no_hint() -> None:
    sig = bytearray(_key(1).sign(domain=b"d", message=b"m"))
    sig[5] ^= 1
    with pytest.raises(InvalidSignature) as e:
        verify_signature(pk=_key(1).public_key, domain=b"d", message=b"m", signature=bytes(sig))
    assert str(e.value) == "signature verification failed"
    assert e.value.__cause__ is None
    assert e.value.__suppress_context__


@PROPERTY
@given(st.binary(max_size=40), st.binary(max_size=80), st.binary(max_size=20))
def test_garbage_key_or_signature_raises_invalid_signature_only(
    pk: bytes, sig: bytes, message: bytes
) -> None:
    with pytest.raises(InvalidSignature) as e:
        verify_signature(pk=pk, domain=b"p2pdist/license/v1", message=message, signature=sig)
    assert isinstance(e.value, VerificationError)


@pytest.mark.parametrize(
    "pk",
    [bytes(32), b"\x01" + bytes(31), b"\xff" * 32,
     bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")],
    ids=["zero", "identity-point", "all-ff", "p-minus-1"],
)
def test_degenerate_public_key_verifies_nothing(pk: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(pk=pk, domain=b"d", message=b"m", signature=bytes(64))


def test_init_seals_at_the_moderate_cost_unless_told_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`init` through the real CLI: the moderate cost by default; `--kdf interactive` for
    a small seed box; a name it doesn't know is a clear error that writes no key."""
    from tests.conftest import run_cli

    monkeypatch.delenv("P2PDIST_KDF")
    env = {k: v for k, v in os.environ.items() if k != "P2PDIST_KDF"}
    for home, args, want in (
            (tmp_path / "default", (), nacl.pwhash.argon2id.MEMLIMIT_MODERATE),
            (tmp_path / "small", ("--kdf", "interactive"),
             nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)):
        cp = subprocess.run([sys.executable, "-m", "p2pdist", "--home", str(home), "init",
                             "--name", "Ada", *args], capture_output=True, text=True,
                            env=env, check=False, timeout=60)
        assert cp.returncode == 0, cp.stderr
        assert json.loads(_keyfile(home).read_text())["kdf"]["memlimit"] == want
    bad = run_cli(tmp_path / "bad", "init", "--name", "Ada", "--kdf", "weak", check=False)
    assert bad.returncode == 1 and "--kdf moderate or interactive" in bad.stderr
    assert not (tmp_path / "bad" / "identity.key").exists()
