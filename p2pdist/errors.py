"""One exception tree for everything a user can meet.

    P2PDistError                      exit 1 unless a subclass says otherwise
    ├── InputError                    bad path, empty work, unknown SPDX id, bad magnet
    │   └── SourceError               a SOURCE that is neither a magnet nor a .torrent
    ├── IdentityError
    │   ├── NoIdentity                `init` was never run in this home
    │   ├── IdentityExists            `init` would overwrite a key
    │   ├── PassphraseError           no passphrase available / wrong passphrase
    │   └── KeyFileError              unreadable, truncated, unsafe permissions, huge KDF
    ├── LibraryError                  the node's list of works
    │   └── WorkNotFound
    ├── NetworkError                  metadata timeout, no peers, stalled transfer
    ├── NodeNotRunning                `status`: no node answers in this home
    ├── HomeInUse                     `seed`: another node already runs in this home
    ├── StorageError                  a write to disk failed
    ├── VoucherRefused                a voucher code: malformed, unknown, redeemed, other work
    └── VerificationError             exit 3: bad signature, tampered, not licensed
        ├── InvalidSignature          opaque on purpose: no hint which byte was wrong
        ├── MalformedObject           not canonical, oversized, truncated, unknown version
        ├── ContentMismatch           manifest does not bind this torrent's piece hashes
        ├── TermsError                terms that are unknown or inconsistent
        ├── NotLicensed               a torrent without a p2pdist license
        ├── NotTrusted                --require-trusted: a holder neither trusted nor certified
        ├── LedgerCorrupt             a ledger or bundle entry fails its chain: node, seq, reason
        ├── ForkDetected              one node signed two different histories of one size
        └── TamperedContent           encrypted content fails its tag: opaque, like InvalidSignature

Every error carries a message and a remedy a user can act on. Programmer misuse raises
TypeError or ValueError instead.
"""

from __future__ import annotations

import base64

__all__ = [
    "ContentMismatch",
    "ForkDetected",
    "HomeInUse",
    "IdentityError",
    "IdentityExists",
    "InputError",
    "InvalidSignature",
    "KeyFileError",
    "LedgerCorrupt",
    "LibraryError",
    "MalformedObject",
    "NetworkError",
    "NoIdentity",
    "NodeNotRunning",
    "NotLicensed",
    "NotTrusted",
    "P2PDistError",
    "PassphraseError",
    "SourceError",
    "StorageError",
    "TamperedContent",
    "TermsError",
    "VerificationError",
    "VoucherRefused",
    "WorkNotFound",
]


class P2PDistError(Exception):
    """Root of every error p2pdist raises on purpose."""

    exit_code = 1
    default_remedy = ""

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy if remedy is not None else self.default_remedy


class InputError(P2PDistError):
    pass


class SourceError(InputError):
    default_remedy = "give a magnet link (magnet:?xt=...) or the path of a .torrent file"


class IdentityError(P2PDistError):
    pass


class NoIdentity(IdentityError):
    default_remedy = 'create one with: p2pdist init --name "Your Name"'


class IdentityExists(IdentityError):
    default_remedy = "use another --home, or keep the key you have"


class PassphraseError(IdentityError):
    default_remedy = "set P2PDIST_PASSPHRASE, pass --passphrase-file FILE, or run in a terminal"


class KeyFileError(IdentityError):
    default_remedy = "restore the key file from your backup"


class LibraryError(P2PDistError):
    pass


class WorkNotFound(LibraryError):
    default_remedy = "list your works with: p2pdist works"


class NetworkError(P2PDistError):
    default_remedy = "check that a peer is running and reachable (--peer HOST:PORT)"


class NodeNotRunning(P2PDistError):
    default_remedy = "start one with: p2pdist seed"


class HomeInUse(P2PDistError):
    default_remedy = "stop that node first (Ctrl-C), or give this one another --home"


class StorageError(P2PDistError):
    default_remedy = "free some space or fix the permissions, then run the command again"


_VOUCHER_REMEDIES = {
    "malformed": "check the code for a typo: 17 letters and digits, like 7K3Q-M9XR-2HTP-VW4C-V",
    "unknown": "check the code and the work; if both are right, ask the seller who issued it",
    "redeemed": "each code works once; if you did not redeem it, ask the seller",
    "other-work": "this code unlocks another work: use it with that work",
}


class VoucherRefused(P2PDistError):
    """A voucher code that unlocks nothing here; ``reason`` says why, in one word.

    ``malformed`` (wrong length, a bad character, a check character that does not
    match), ``unknown`` (no such code), ``redeemed`` (used already), ``other-work`` (a
    code of another work). A policy failure, so precise, and exit 1. A refusal changed
    nothing.
    """

    reasons = frozenset(_VOUCHER_REMEDIES)

    def __init__(self, message: str, *, reason: str, remedy: str | None = None) -> None:
        if reason not in _VOUCHER_REMEDIES:
            raise ValueError(f"unknown voucher refusal reason {reason!r}")
        super().__init__(message,
                         remedy=remedy if remedy is not None else _VOUCHER_REMEDIES[reason])
        self.reason = reason


class VerificationError(P2PDistError):
    exit_code = 3


class InvalidSignature(VerificationError):
    # One remedy for every bad signature: it must not hint at what failed either.
    default_remedy = "do not trust it: get it again from its source, or ask its signer"

    def __init__(self, message: str = "signature verification failed", **kw: str) -> None:
        super().__init__(message, **kw)


class MalformedObject(VerificationError):
    default_remedy = ("it is damaged, truncated or not what it claims to be: get a fresh "
                      "copy from its source")


class ContentMismatch(VerificationError):
    pass


class TermsError(VerificationError):
    pass


class NotLicensed(VerificationError):
    default_remedy = "fetch it anyway with --allow-unlicensed if you trust the source"


class NotTrusted(VerificationError):
    default_remedy = ("trust its holder or its label with: p2pdist trust add KEY --name NAME,"
                      " or fetch without --require-trusted")


def _key_text(pk: bytes) -> str:
    # identity.key_to_text, inlined: identity imports this module.
    return base64.b32encode(pk).decode("ascii").rstrip("=").lower()


class LedgerCorrupt(VerificationError):
    """The first entry of a ledger or bundle that fails verification.

    ``node`` is the entry's node key, ``seq`` its place in that node's chain (for a
    checkpoint: the size it claims) and ``reason`` a short code, e.g. ``bad-hash``.
    """

    default_remedy = (
        "do not trust entries from this point on; re-import the node's bundle from a "
        "copy you trust, or ask the node for a fresh export"
    )

    def __init__(self, message: str, *, node: bytes, seq: int, reason: str,
                 remedy: str | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.node = node
        self.seq = seq
        self.reason = reason

    def to_dict(self) -> dict[str, object]:
        return {"error": "ledger-corrupt", "node": _key_text(self.node), "seq": self.seq,
                "reason": self.reason, "message": self.message}


class ForkDetected(VerificationError):
    """Two signed histories of one node disagree: same ``size``, different heads.

    Signed checkpoints are proof: keep both, they show the node rewrote its ledger.
    """

    default_remedy = (
        "keep both checkpoints as evidence and stop crediting this node until it explains"
    )

    def __init__(self, message: str, *, node: bytes, seq: int, heads: tuple[bytes, bytes],
                 remedy: str | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.node = node
        self.seq = seq
        self.heads = heads

    def to_dict(self) -> dict[str, object]:
        return {"error": "fork", "node": _key_text(self.node), "seq": self.seq,
                "heads": [h.hex() for h in self.heads], "message": self.message}


class TamperedContent(VerificationError):
    """Encrypted content that does not authenticate. Opaque on purpose: no chunk, no byte."""

    default_remedy = (
        "fetch the work again from another peer; if it still fails, ask the seller to "
        "send the key again"
    )

    def __init__(
        self,
        message: str = "the encrypted content does not authenticate (tampered or wrong key)",
        **kw: str,
    ) -> None:
        super().__init__(message, **kw)
