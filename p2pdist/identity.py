"""ed25519 identities, the passphrase-sealed keystore, and the text forms of keys.

A public key has one text form everywhere a person or a script sees it: lowercase
RFC 4648 base32 without padding (52 characters). A fingerprint is a short, grouped
digest that may stand beside the key, never instead of it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from p2pdist import _json
from p2pdist._home import PRIVATE_FILE, HomeLock, make_private_dirs
from p2pdist._text import is_printable
from p2pdist.errors import (
    IdentityExists,
    InvalidSignature,
    KeyFileError,
    MalformedObject,
    NoIdentity,
    PassphraseError,
    StorageError,
)

__all__ = [
    "KEYFILE_NAME",
    "MAX_MEMLIMIT",
    "MAX_OPSLIMIT",
    "Identity",
    "PublicIdentity",
    "atomic_write",
    "create_identity",
    "fingerprint",
    "key_from_text",
    "key_to_text",
    "load_identity",
    "load_public_identity",
    "open_sealed",
    "seal_to",
    "verify_signature",
]

KEYFILE_NAME = "identity.key"
KEYFILE_TYPE = "p2pdist/keystore"
MAX_KEYFILE_SIZE = 16 * 1024
# Caps applied on load, before the KDF runs, so an edited key file cannot make us burn
# minutes or gigabytes: a little above libsodium's "moderate" cost (age caps scrypt the
# same way). Key files sealed at the "interactive" cost by older versions still open.
MAX_OPSLIMIT = 4
MAX_MEMLIMIT = 256 * 1024 * 1024
# `init` seals at libsodium's moderate cost: about 0.5 s and 256 MiB per unlock on a
# 2-core machine (interactive, 0.1 s and 64 MiB, is the cost for keys that stay online).
DEFAULT_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
DEFAULT_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
# `init --kdf` (env P2PDIST_KDF): the named argon2id costs a key may be sealed at. A seed
# box with little memory may pick "interactive"; nothing above the load caps is offered.
KDF_COSTS = {
    "moderate": (DEFAULT_OPSLIMIT, DEFAULT_MEMLIMIT),
    "interactive": (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                    nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE),
}
MAX_NAME_LEN = 200
_SEALED_LEN = (nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
               + nacl.bindings.crypto_sign_SEEDBYTES)


def key_to_text(pk: bytes) -> str:
    """The one text form of a 32-byte public key."""
    if len(pk) != 32:
        raise ValueError("a public key is 32 bytes")
    return base64.b32encode(pk).decode("ascii").rstrip("=").lower()


def key_from_text(text: str) -> bytes:
    """Parse a key from its text form; raises MalformedObject when it is not one."""
    t = text.strip().upper()
    if len(t) != 52 or not t.isascii():
        raise MalformedObject(f"not a p2pdist public key: {text[:60]!r}")
    try:
        pk = base64.b32decode(t + "====")
    except ValueError:
        raise MalformedObject(f"not a p2pdist public key: {text[:60]!r}") from None
    if key_to_text(pk) != text.strip().lower():
        raise MalformedObject(f"not a canonical p2pdist public key: {text[:60]!r}")
    return pk


def fingerprint(pk: bytes) -> str:
    """A short human check of a key, e.g. ``K7QF-3MZD-XA2P-9W4C``."""
    digest = base64.b32encode(hashlib.sha256(b"p2pdist/fingerprint/v1\0" + pk).digest())
    s = digest.decode("ascii")[:16]
    return "-".join(s[i : i + 4] for i in range(0, 16, 4))


def verify_signature(*, pk: bytes, domain: bytes, message: bytes, signature: bytes) -> None:
    """Check an ed25519 signature over ``domain || 0x00 || message``; raise InvalidSignature."""
    try:
        nacl.signing.VerifyKey(pk).verify(domain + b"\0" + message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        raise InvalidSignature() from None


def seal_to(data: bytes, pk: bytes) -> bytes:
    """*data* in a libsodium sealed box that only the holder of the ed25519 key *pk* opens
    (to its X25519 key, from crypto_sign_ed25519_pk_to_curve25519). Anonymous: the box
    says nothing of who sealed it, so what must be bound to a sender goes inside."""
    x25519 = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(pk)
    return bytes(nacl.public.SealedBox(nacl.public.PublicKey(x25519)).encrypt(data))


def open_sealed(sealed: bytes, identity: Identity) -> bytes | None:
    """What seal_to sealed to *identity*'s key; None if it was sealed to another key or
    tampered with."""
    box = nacl.public.SealedBox(identity.signing_key.to_curve25519_private_key())
    try:
        return bytes(box.decrypt(bytes(sealed)))
    except (nacl.exceptions.CryptoError, nacl.exceptions.TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    name: str
    public_key: bytes

    @property
    def key_text(self) -> str:
        return key_to_text(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "public_key": self.key_text, "fingerprint": self.fingerprint}


@dataclass(frozen=True, slots=True)
class Identity:
    """An unlocked identity: a name and the ed25519 signing key."""

    name: str
    signing_key: nacl.signing.SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.name, self.public_key)

    def sign(self, *, domain: bytes, message: bytes) -> bytes:
        """Sign ``domain || 0x00 || message``; the domain keeps kinds of objects apart."""
        return bytes(self.signing_key.sign(domain + b"\0" + message).signature)


def atomic_write(path: Path, data: bytes, *, mode: int | None = PRIVATE_FILE,
                 exclusive: bool = False) -> None:
    """Write *data* to *path* through a temp file, fsync and os.replace.

    *mode* 0600 by default (see p2pdist._home; folders it makes are 0700); None leaves
    the new file to the user's umask. *exclusive*: never replace a file, put the temp
    file in place with a hard link, which fails (FileExistsError, not a StorageError)
    when *path* exists, however many processes race for it.
    """
    if path.is_dir():
        raise StorageError(f"cannot write {path}: it is a folder", remedy="name a file")
    try:
        if mode is None:
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            make_private_dirs(path.parent)
        fd, tmp = _new_temp(path, 0o666 if mode is None else mode)
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            _link_exclusive(tmp, path, data, mode)
        else:
            os.replace(tmp, path)
    except FileExistsError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _new_temp(path: Path, mode: int) -> tuple[int, str]:
    """A new hidden temp file beside *path*, created *mode* & ~umask (never an old file)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                           | os.O_NOFOLLOW, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp name beside {path}")


def _link_exclusive(tmp: str, path: Path, data: bytes, mode: int | None) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                           errno.EMLINK):
            raise
        # A file system without hard links: O_EXCL on the name itself is exclusive too.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    os.unlink(tmp)


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return bytes(
        nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            # surrogateescape: a passphrase from a non-UTF-8 environment still has bytes
            passphrase.encode("utf-8", "surrogateescape"),
            salt,
            opslimit=opslimit,
            memlimit=memlimit,
        )
    )


def create_identity(
    home: Path,
    *,
    name: str,
    passphrase: str,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> Identity:
    """Create a new identity in *home*, sealed with *passphrase*. Never overwrites."""
    name = name.strip()
    if not is_printable(name, max_len=MAX_NAME_LEN):
        raise KeyFileError(
            "the name must be 1 to 200 printable characters", remedy='e.g. --name "Ada"'
        )
    if not passphrase:
        raise PassphraseError("the passphrase is empty", remedy="choose a non-empty passphrase")
    path = home / KEYFILE_NAME
    # Under the home's lock, and linked into place: of two `init` at once, one makes the
    # key and the other fails with IdentityExists; a key once printed is never replaced.
    with HomeLock(home):
        if os.path.lexists(path):
            raise IdentityExists(f"an identity already exists at {path}")
        return _create(path, name, passphrase, opslimit, memlimit)


def _create(path: Path, name: str, passphrase: str, opslimit: int, memlimit: int) -> Identity:
    sk = nacl.signing.SigningKey.generate()
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    sealed = box.encrypt(bytes(sk))
    doc = {
        "type": KEYFILE_TYPE,
        "v": 1,
        "name": name,
        "public_key": key_to_text(bytes(sk.verify_key)),
        "kdf": {
            "alg": "argon2id",
            "opslimit": opslimit,
            "memlimit": memlimit,
            "salt": base64.b64encode(salt).decode(),
        },
        "sealed": base64.b64encode(bytes(sealed)).decode(),
    }
    try:
        atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode(), exclusive=True)
    except FileExistsError:
        raise IdentityExists(f"an identity already exists at {path}") from None
    return Identity(name, sk)


def _read_keyfile(home: Path) -> tuple[Path, dict[str, object]]:
    """The key file's JSON, after the checks a signing tool makes before it reads a key.

    A symlink is followed, as ssh does, and the file it leads to is checked: it must be
    a regular file (a folder, a FIFO that would block, a device), private to its owner
    (ssh's "UNPROTECTED PRIVATE KEY FILE": refused, with the chmod that fixes it, even
    for root, who could read it anyway) and small.
    """
    path = home / KEYFILE_NAME
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise KeyFileError(f"the key file {path} is a link to nothing",
                               remedy="restore the key file from your backup") from None
        raise NoIdentity(f"no identity in {home}") from None
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"the key file {path} is not a regular file",
                           remedy="restore the key file from your backup")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"the key file {path} can be read by others (mode {stat.S_IMODE(st.st_mode):o})",
            remedy=f"chmod 600 {path}",
        )
    if st.st_size > MAX_KEYFILE_SIZE:
        raise KeyFileError(f"the key file {path} is too large to be a key file")
    try:
        with path.open("rb") as f:
            doc = _json.loads(f.read(MAX_KEYFILE_SIZE + 1))
    except (OSError, ValueError) as e:
        raise KeyFileError(
            f"the key file {path} is damaged or truncated ({e.__class__.__name__})",
            remedy="restore it from your backup",
        ) from None
    if not isinstance(doc, dict) or doc.get("type") != KEYFILE_TYPE:
        raise KeyFileError(f"{path} is not a p2pdist key file", remedy="restore it from backup")
    if type(doc.get("v")) is not int or doc.get("v") != 1:
        raise KeyFileError(
            f"{path} has key file version {doc.get('v')!r}, this p2pdist reads version 1",
            remedy="upgrade p2pdist",
        )
    return path, doc


def load_public_identity(home: Path) -> PublicIdentity:
    """The name and public key, without the passphrase."""
    path, doc = _read_keyfile(home)
    try:
        return PublicIdentity(_name(doc), key_from_text(_str(doc["public_key"])))
    except (KeyError, TypeError, MalformedObject):
        raise KeyFileError(f"the key file {path} is damaged", remedy="restore it") from None


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise TypeError("not a string")
    return v


def _name(doc: dict[str, object]) -> str:
    name = _str(doc["name"])
    if not is_printable(name, max_len=MAX_NAME_LEN):
        raise TypeError("not a printable name")
    return name


def load_identity(home: Path, *, passphrase: str) -> Identity:
    """Unlock the identity in *home*. Raises PassphraseError on a wrong passphrase."""
    path, doc = _read_keyfile(home)
    try:
        kdf = doc["kdf"]
        if not isinstance(kdf, dict):
            raise TypeError("kdf is not an object")
        if kdf["alg"] != "argon2id":
            raise KeyFileError(f"{path} uses an unknown KDF {kdf['alg']!r}")
        opslimit, memlimit = kdf["opslimit"], kdf["memlimit"]
        if not all(type(x) is int for x in (opslimit, memlimit)):
            raise TypeError("KDF limits must be integers")
        salt = base64.b64decode(_str(kdf["salt"]), validate=True)
        sealed = base64.b64decode(_str(doc["sealed"]), validate=True)
        public = key_from_text(_str(doc["public_key"]))
        name = _name(doc)
    except (KeyError, ValueError, TypeError, MalformedObject):
        raise KeyFileError(f"the key file {path} is damaged", remedy="restore it") from None
    if not (
        nacl.pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT
        and nacl.pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT
    ):
        raise KeyFileError(
            f"the key file {path} asks for KDF cost beyond the allowed caps "
            f"(opslimit {opslimit} <= {MAX_OPSLIMIT}, memlimit {memlimit} <= {MAX_MEMLIMIT})",
            remedy="restore the key file from your backup",
        )
    if len(salt) != nacl.pwhash.argon2id.SALTBYTES or len(sealed) != _SEALED_LEN:
        # Said before the KDF runs: a truncated seal is damage, not a wrong passphrase.
        raise KeyFileError(f"the key file {path} is damaged", remedy="restore it")
    try:
        seed = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit)).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise PassphraseError(
            "wrong passphrase for this identity", remedy="check the passphrase and try again"
        ) from None
    sk = nacl.signing.SigningKey(seed)
    if bytes(sk.verify_key) != public:
        raise KeyFileError(f"the key file {path} does not match its public key")
    return Identity(name, sk)
