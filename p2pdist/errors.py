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
    ├── StorageError                  a write to disk failed
    └── VerificationError             exit 3: bad signature, tampered, not licensed
        ├── InvalidSignature          opaque on purpose: no hint which byte was wrong
        ├── MalformedObject           not canonical, oversized, truncated, unknown version
        ├── ContentMismatch           manifest does not bind this torrent's piece hashes
        ├── TermsError                terms that are unknown or inconsistent
        └── NotLicensed               a torrent without a p2pdist license

Every error carries a message and a remedy a user can act on. Programmer misuse raises
TypeError or ValueError instead.
"""

from __future__ import annotations

__all__ = [
    "ContentMismatch",
    "IdentityError",
    "IdentityExists",
    "InputError",
    "InvalidSignature",
    "KeyFileError",
    "LibraryError",
    "MalformedObject",
    "NetworkError",
    "NoIdentity",
    "NotLicensed",
    "P2PDistError",
    "PassphraseError",
    "SourceError",
    "StorageError",
    "TermsError",
    "VerificationError",
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
    pass


class LibraryError(P2PDistError):
    pass


class WorkNotFound(LibraryError):
    default_remedy = "list your works with: p2pdist works"


class NetworkError(P2PDistError):
    default_remedy = "check that a peer is running and reachable (--peer HOST:PORT)"


class StorageError(P2PDistError):
    default_remedy = "free some space or fix the permissions, then run the command again"


class VerificationError(P2PDistError):
    exit_code = 3


class InvalidSignature(VerificationError):
    def __init__(self, message: str = "signature verification failed", **kw: str) -> None:
        super().__init__(message, **kw)


class MalformedObject(VerificationError):
    pass


class ContentMismatch(VerificationError):
    pass


class TermsError(VerificationError):
    pass


class NotLicensed(VerificationError):
    default_remedy = "fetch it anyway with --allow-unlicensed if you trust the source"
