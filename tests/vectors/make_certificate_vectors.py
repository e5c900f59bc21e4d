"""How certificates.json was made: artist certificates, and a license embedding them.
Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_certificate_vectors.py   # rewrite certificates.json

Only rerun it on purpose: the vectors pin today's bytes of the certificate a label signs
and of its place in a license manifest. tests/unit/test_certificates.py rebuilds every
object from its ``input`` section on its own and compares byte for byte.

Keys are fixed seeds (artists ``bytes(range(32))`` and ``bytes(range(32, 64))``, the same
as license_manifests.json; labels ``bytes(range(160, 192))`` and ``bytes(range(192,
224))``); ed25519 is deterministic, so the signatures are stable.

``expected.expired_at`` pins the expiry rule at its boundary: a certificate is expired
from the second ``expires`` names on (``now >= expires``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist.identity import Identity, fingerprint, key_to_text
from p2pdist.licensing import (
    MAX_CERTIFICATE_SIZE,
    ArtistCertificate,
    CCTerms,
    Content,
    ContentFile,
    LicenseManifest,
    SignedCertificate,
    SignedManifest,
    Split,
)

HERE = Path(__file__).resolve().parent

ADA_SEED = bytes(range(32))
GRACE_SEED = bytes(range(32, 64))
LABEL_SEED = bytes(range(160, 192))
LABEL2_SEED = bytes(range(192, 224))
MAX_TS = 253_402_300_799
JAN_2025 = 1_735_689_600
JAN_2026 = 1_767_225_600


def _h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _identity(seed_hex: str) -> Identity:
    return Identity("from a vector", nacl.signing.SigningKey(bytes.fromhex(seed_hex)))


CERTIFICATE_CASES: list[dict[str, Any]] = [
    {"name": "label-certifies-artist-for-a-year",
     "input": {"artist_seed": ADA_SEED.hex(), "name": "Ada", "label_seed": LABEL_SEED.hex(),
               "label_name": "Roundhouse Records", "issued": JAN_2025, "expires": JAN_2026}},
    {"name": "no-expiry",
     "input": {"artist_seed": GRACE_SEED.hex(), "name": "Grace Hopper",
               "label_seed": LABEL_SEED.hex(), "label_name": "Roundhouse Records",
               "issued": JAN_2025, "expires": None}},
    {"name": "unicode-names-other-label",
     "input": {"artist_seed": ADA_SEED.hex(), "name": "\u00c9mile Zo\u00eb",
               "label_seed": LABEL2_SEED.hex(),
               "label_name": "\u00d1and\u00fa R\u00e9cords \u2014 \u6771\u4eac",
               "issued": 0, "expires": 1}},
    # The largest certificate a label can sign: two names of 300 four-byte characters and
    # the last expiry a timestamp can hold.
    {"name": "largest-valid",
     "input": {"artist_seed": GRACE_SEED.hex(), "name": "\U0001d11e" * 300,
               "label_seed": LABEL2_SEED.hex(), "label_name": "\U0001f3b5" * 300,
               "issued": MAX_TS - 1, "expires": MAX_TS}},
]


def build_certificate(case_input: dict[str, Any]) -> tuple[ArtistCertificate, Identity]:
    label = _identity(case_input["label_seed"])
    expires = case_input["expires"]
    return ArtistCertificate(
        artist=_identity(case_input["artist_seed"]).public_key, name=case_input["name"],
        label=label.public_key, label_name=case_input["label_name"],
        issued=datetime.fromtimestamp(case_input["issued"], UTC),
        expires=None if expires is None else datetime.fromtimestamp(expires, UTC),
    ), label


def _expired_at(expires: int | None) -> list[dict[str, Any]]:
    if expires is None:
        return [{"now": t, "expired": False} for t in (0, JAN_2025, MAX_TS)]
    return [{"now": t, "expired": t >= expires}
            for t in sorted({expires - 1, expires, min(expires + 1, MAX_TS)})]


def certificate_vectors() -> list[dict[str, Any]]:
    out = []
    for case in CERTIFICATE_CASES:
        cert, label = build_certificate(case["input"])
        signed = SignedCertificate.sign(cert, label)
        assert len(signed.to_bytes()) <= MAX_CERTIFICATE_SIZE
        out.append({
            **case,
            "body_hex": signed.body.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "sig_hex": signed.sig.hex(),
            "expected": {
                "artist_pk_text": key_to_text(cert.artist),
                "label_pk_text": key_to_text(cert.label),
                "label_fingerprint": fingerprint(cert.label),
                "expired_at": _expired_at(case["input"]["expires"]),
            },
        })
    return out


# A duet whose two holders are each certified; the certificates are given out of byte
# order on purpose: the manifest holds them sorted by their envelope bytes.
MANIFEST_CASES: list[dict[str, Any]] = [
    {"name": "duet-two-holders-certified",
     "input": {
         "title": "Duet", "creators": ["Ada", "Grace"], "created": JAN_2025,
         "spdx": "CC-BY-SA-4.0",
         "splits": [{"seed": ADA_SEED.hex(), "bps": 6_000},
                    {"seed": GRACE_SEED.hex(), "bps": 4_000}],
         "signers": [ADA_SEED.hex(), GRACE_SEED.hex()],
         "content": {"piece_length": 262_144, "v1": _h("v1 pieces of duet"),
                     "files": [{"path": ["Duet", "a.flac"], "size": 1_000_000,
                                "root": _h("duet a")}]},
         "certificates": [CERTIFICATE_CASES[0]["input"], CERTIFICATE_CASES[1]["input"],
                          CERTIFICATE_CASES[2]["input"]],
     }},
]


def build_manifest(case_input: dict[str, Any]) -> tuple[LicenseManifest, list[Identity]]:
    c = case_input["content"]
    certs = []
    for ci in case_input["certificates"]:
        cert, label = build_certificate(ci)
        certs.append(SignedCertificate.sign(cert, label))
    manifest = LicenseManifest(
        title=case_input["title"], creators=tuple(case_input["creators"]),
        created=datetime.fromtimestamp(case_input["created"], UTC),
        terms=CCTerms(case_input["spdx"]),
        splits=tuple(Split(_identity(s["seed"]).public_key, s["bps"])
                     for s in case_input["splits"]),
        content=Content(c["piece_length"], tuple(
            ContentFile(tuple(f["path"]), f["size"], bytes.fromhex(f["root"]))
            for f in c["files"]), bytes.fromhex(c["v1"])),
        certificates=tuple(certs),
    )
    return manifest, [_identity(s) for s in case_input["signers"]]


def manifest_vectors() -> list[dict[str, Any]]:
    out = []
    for case in MANIFEST_CASES:
        manifest, signers = build_manifest(case["input"])
        signed = SignedManifest.sign(manifest, signers)
        out.append({
            **case,
            "manifest_hex": signed.manifest_bytes.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "sigs_hex": [s.sig.hex() for s in signed.signatures],
            "expected": {
                "certificates_hex": [c.to_bytes().hex() for c in manifest.certificates],
            },
        })
    return out


def main() -> None:
    data = {"certificates": certificate_vectors(), "manifests": manifest_vectors()}
    path = HERE / "certificates.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
