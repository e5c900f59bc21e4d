"""Whom a fan trusts: the trust store, and the verdict on a license's rights holders.

    HOME/trust.json   {"type": "p2pdist/trust-store", "v": 1,
                       "trusted": [{"pk": KEY, "name": NAME, "added": "...Z"}, ...]}

A key in the store is trusted as itself (an artist) and as a label: a holder of a work is
trusted when their own key is in the store, or when a label whose key is in the store
certifies them with an unexpired certificate embedded in the license. Trust is by key
only. The names inside a certificate are what its signer claims; the store's names are
the fan's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from p2pdist._home import ensure_home
from p2pdist._text import is_printable
from p2pdist.errors import InputError, MalformedObject, StorageError
from p2pdist.identity import atomic_write, fingerprint, key_from_text, key_to_text
from p2pdist.licensing import CertificateStatus, LicenseManifest, verify_certificate

__all__ = ["TRUST_FILE", "TrustEntry", "TrustStore", "Verdict", "trust_verdict"]

TRUST_FILE: Final = "trust.json"
TRUST_TYPE: Final = "p2pdist/trust-store"
MAX_TRUST_FILE: Final = 4 * 1024 * 1024
MAX_TRUST_NAME: Final = 300


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _aware(now: Any) -> datetime:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError("now is an aware datetime")
    return now.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class TrustEntry:
    """A trusted key, the fan's own name for it, and when it was added (UTC, seconds)."""

    pk: bytes
    name: str
    added: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.pk, bytes) or len(self.pk) != 32:
            raise ValueError("a trusted key is 32 bytes")
        if not isinstance(self.name, str) or not is_printable(self.name,
                                                              max_len=MAX_TRUST_NAME):
            raise ValueError(f"a trusted name is 1 to {MAX_TRUST_NAME} printable characters")
        object.__setattr__(self, "added", _aware(self.added))

    def to_dict(self) -> dict[str, str]:
        return {"pk": key_to_text(self.pk), "fingerprint": fingerprint(self.pk),
                "name": self.name, "added": _iso(self.added)}


class TrustStore:
    """HOME/trust.json. Every call reads the file afresh; changes are written atomically
    under an flock on HOME/trust.lock, so two `trust add` at once both land."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / TRUST_FILE

    def all(self) -> tuple[TrustEntry, ...]:
        """Every trusted key, in the order they were first added."""
        return self._read()

    def get(self, pk: bytes) -> TrustEntry | None:
        return next((e for e in self._read() if e.pk == pk), None)

    def is_trusted(self, pk: bytes) -> bool:
        return self.get(pk) is not None

    def add(self, pk: bytes, name: str, *, now: datetime) -> TrustEntry:
        """Trust *pk* as *name*. Adding a trusted key again renames it and keeps the time
        it was first added. InputError for a name that cannot be shown safely."""
        if not isinstance(pk, bytes) or len(pk) != 32:
            raise ValueError("a trusted key is 32 bytes")
        name = name.strip() if isinstance(name, str) else name
        if not isinstance(name, str) or not is_printable(name, max_len=MAX_TRUST_NAME):
            raise InputError(f"a trusted name is 1 to {MAX_TRUST_NAME} printable characters",
                             remedy='e.g. --name "Big Label"')
        added = _aware(now)
        with self._locked():
            entries = list(self._read())
            old = next((i for i, e in enumerate(entries) if e.pk == pk), None)
            if old is None:
                entry = TrustEntry(pk, name, added)
                entries.append(entry)
            else:
                entry = TrustEntry(pk, name, entries[old].added)
                entries[old] = entry
            self._write(entries)
        return entry

    def remove(self, pk: bytes) -> TrustEntry:
        """Stop trusting *pk*; InputError when it is not trusted."""
        with self._locked():
            entries = list(self._read())
            gone = next((e for e in entries if e.pk == pk), None)
            if gone is None:
                raise InputError(f"{fingerprint(pk) if len(pk) == 32 else 'that key'} is not "
                                 "in your trust store", remedy="list it with: p2pdist trust")
            self._write([e for e in entries if e.pk != pk])
        return gone

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            ensure_home(self.home)
            fd = os.open(self.home / "trust.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StorageError(f"cannot lock the trust store in {self.home}: "
                               f"{e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _damaged(self, why: str) -> StorageError:
        return StorageError(f"the trust store {self.path} is damaged ({why})",
                            remedy=f"fix or remove {self.path}, then add the keys you trust "
                                   "again")

    def _read(self) -> tuple[TrustEntry, ...]:
        try:
            if self.path.stat().st_size > MAX_TRUST_FILE:
                raise self._damaged("too large")
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return ()
        except OSError as e:
            raise StorageError(f"cannot read {self.path}: {e.strerror or e}") from None
        except (ValueError, RecursionError):
            raise self._damaged("not JSON") from None
        if not isinstance(doc, dict) or set(doc) != {"type", "v", "trusted"} \
                or doc["type"] != TRUST_TYPE:
            raise self._damaged("not a p2pdist trust store")
        if type(doc["v"]) is not int or doc["v"] != 1:
            raise StorageError(f"{self.path} has version {doc['v']!r}; this p2pdist reads "
                               "version 1", remedy="upgrade p2pdist")
        if not isinstance(doc["trusted"], list):
            raise self._damaged("no list of keys")
        out: list[TrustEntry] = []
        for raw in doc["trusted"]:
            try:
                if not isinstance(raw, dict) or set(raw) != {"pk", "name", "added"} \
                        or not all(isinstance(v, str) for v in raw.values()) \
                        or not raw["added"].endswith("Z"):
                    raise ValueError("an entry is not {pk, name, added}")
                entry = TrustEntry(key_from_text(raw["pk"]), raw["name"],
                                   datetime.fromisoformat(raw["added"]))
            except (ValueError, MalformedObject) as why:
                raise self._damaged(str(why)) from None
            if any(o.pk == entry.pk for o in out):
                raise self._damaged(f"{key_to_text(entry.pk)} is listed twice")
            out.append(entry)
        return tuple(out)

    def _write(self, entries: list[TrustEntry]) -> None:
        doc = {"type": TRUST_TYPE, "v": 1,
               "trusted": [{"pk": key_to_text(e.pk), "name": e.name, "added": _iso(e.added)}
                           for e in entries]}
        atomic_write(self.path, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
                     .encode(), mode=0o600)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a fan may trust a license's rights holders, and why.

    ``trusted`` holds when every split holder is in the trust store (``direct``) or is
    certified, by an unexpired certificate, by a label in the store (``certified``).
    ``untrusted_labels`` are unexpired certificates whose label is not in the store;
    ``expired`` are the expired certificates, whoever signed them: neither kind counts.
    ``untrusted`` are the holders left without trust.
    """

    trusted: bool
    holders: tuple[bytes, ...]
    direct: tuple[TrustEntry, ...]
    certified: tuple[CertificateStatus, ...]
    untrusted_labels: tuple[CertificateStatus, ...]
    expired: tuple[CertificateStatus, ...]
    untrusted: tuple[bytes, ...]
    labels: tuple[TrustEntry, ...]  # the store's entries of the certificates' labels
    certificates: tuple[CertificateStatus, ...]
    checked_at: datetime

    def to_dict(self) -> dict[str, object]:
        direct = {e.pk: e for e in self.direct}
        labels = {e.pk: e.name for e in self.labels}
        by = {pk: [key_to_text(s.certificate.label) for s in self.certified
                   if s.certificate.artist == pk] for pk in self.holders}
        return {
            "trusted": self.trusted,
            "checked_at": _iso(self.checked_at),
            "holders": [
                {"pk": key_to_text(pk), "fingerprint": fingerprint(pk),
                 "status": "trusted" if pk in direct else "certified" if by[pk]
                 else "untrusted",
                 "trusted_as": direct[pk].name if pk in direct else None,
                 "certified_by": by[pk]}
                for pk in self.holders
            ],
            "certificates": [
                {**s.to_dict(), "label_trusted": s.certificate.label in labels,
                 "label_trusted_as": labels.get(s.certificate.label)}
                for s in self.certificates
            ],
        }


def trust_verdict(manifest: LicenseManifest, store: TrustStore, *,
                  now: datetime) -> Verdict:
    """The trust verdict on *manifest*'s split holders at *now*, from *store*.

    Run it on a license verify_manifest accepted. It checks each embedded certificate
    again (verify_certificate: InvalidSignature if one does not hold), so a certificate
    counts only when its signature was checked here. Reads the store once.
    """
    now = _aware(now)
    entries = {e.pk: e for e in store.all()}
    holders = tuple(s.pk for s in manifest.splits)
    statuses = tuple(verify_certificate(c, now=now) for c in manifest.certificates
                     if c.certificate.artist in holders)
    direct = tuple(entries[pk] for pk in holders if pk in entries)
    certified = tuple(s for s in statuses
                      if s.valid and s.certificate.label in entries)
    untrusted_labels = tuple(s for s in statuses
                             if s.valid and s.certificate.label not in entries)
    vouched = {s.certificate.artist for s in certified}
    untrusted = tuple(pk for pk in holders if pk not in entries and pk not in vouched)
    label_keys = dict.fromkeys(s.certificate.label for s in statuses
                               if s.certificate.label in entries)
    return Verdict(
        trusted=not untrusted,
        holders=holders,
        direct=direct,
        certified=certified,
        untrusted_labels=untrusted_labels,
        expired=tuple(s for s in statuses if s.expired),
        untrusted=untrusted,
        labels=tuple(entries[pk] for pk in label_keys),
        checked_at=now,
        certificates=statuses,
    )
