"""How the golden vectors in this folder were made. Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_vectors.py          # rewrite the JSON files

Only rerun it on purpose: the vectors pin today's bytes, and a change to them is a change
to the wire format that every deployed node must agree on. The tests in tests/unit rebuild
the objects from the ``input`` sections on their own and compare byte for byte.

Keys are fixed seeds (``bytes(range(32))`` and ``bytes(range(32, 64))``); ed25519 is
deterministic, so the signatures are stable too. Content is hand-built with made-up hashes
(SHA-256 of short labels), not hashed from real files.

The canonical-encoding vectors in canonical.json are written by hand from BEP 3, not
produced by p2pdist: they check the encoder against the spec, not against itself.
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
    CCTerms,
    Collector,
    Content,
    ContentFile,
    LicenseManifest,
    SignedManifest,
    Split,
)
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt

HERE = Path(__file__).resolve().parent

SEED_A = bytes(range(32))
SEED_B = bytes(range(32, 64))


def _h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


# Each case: what goes in. The output sections are computed below.
CASES: list[dict[str, Any]] = [
    {
        "name": "cc-by-sa-single-holder-hybrid",
        "input": {
            "title": "Ada's Song",
            "creators": ["Ada"],
            "created": 1_700_000_000,
            "spdx": "CC-BY-SA-4.0",
            "splits": [{"seed": SEED_A.hex(), "bps": 10_000}],
            "signers": [SEED_A.hex()],
            "content": {
                "piece_length": 262_144,
                "v1": _h("v1 pieces of ada's song"),
                "files": [
                    {"path": ["Ada's Song", "01 intro.flac"], "size": 1_000_000,
                     "root": _h("root 1")},
                    {"path": ["Ada's Song", "cover.jpg"], "size": 16_384, "root": _h("root 2")},
                    {"path": ["Ada's Song", "empty.txt"], "size": 0, "root": None},
                ],
            },
        },
    },
    {
        "name": "cc0-single-holder-v1-only",
        "input": {
            "title": "Field Recording \u2116 7 \u2014 R\u00e9sum\u00e9",
            "creators": ["Grace Hopper", "\u00c9mile"],
            "created": 0,
            "spdx": "CC0-1.0",
            "splits": [{"seed": SEED_B.hex(), "bps": 10_000}],
            "signers": [SEED_B.hex()],
            "content": {
                "piece_length": 16_384,
                "v1": _h("v1 pieces of the field recording"),
                "files": [
                    {"path": ["field.wav"], "size": 16_385, "root": None},
                ],
            },
        },
    },
    {
        "name": "two-holder-split-v2-only",
        "input": {
            "title": "Duet",
            "creators": ["Ada", "Grace"],
            "created": 1_735_689_600,
            "spdx": "CC-BY-NC-SA-4.0",
            "splits": [
                {"seed": SEED_A.hex(), "bps": 6_000},
                {"seed": SEED_B.hex(), "bps": 4_000},
            ],
            "signers": [SEED_A.hex(), SEED_B.hex()],
            "content": {
                "piece_length": 4_194_304,
                "v1": None,
                "files": [
                    {"path": ["Duet", "a.flac"], "size": 4_194_303, "root": _h("duet a")},
                    {"path": ["Duet", "b.flac"], "size": 4_194_305, "root": _h("duet b")},
                ],
            },
        },
    },
    {
        "name": "cc-by-with-collector",
        "input": {
            "title": "Live at the Roundhouse",
            "creators": ["Ada"],
            "created": 1_763_856_000,
            "spdx": "CC-BY-4.0",
            "splits": [{"seed": SEED_A.hex(), "bps": 10_000}],
            "signers": [SEED_A.hex()],
            "collector": {"seed": SEED_B.hex(), "api": "collector.label.example:7001"},
            "content": {
                "piece_length": 262_144,
                "v1": _h("v1 pieces of the live set"),
                "files": [
                    {"path": ["live.flac"], "size": 5_000_000, "root": _h("live root")},
                ],
            },
        },
    },
]


def _collector(c: dict[str, str] | None) -> Collector | None:
    if c is None:
        return None
    pk = bytes(nacl.signing.SigningKey(bytes.fromhex(c["seed"])).verify_key)
    return Collector.parse_endpoint(pk, c["api"])


def build(case_input: dict[str, Any]) -> tuple[LicenseManifest, list[Identity]]:
    """The manifest and signers that a case's ``input`` describes."""
    c = case_input["content"]
    content = Content(
        piece_length=c["piece_length"],
        files=tuple(
            ContentFile(tuple(f["path"]), f["size"],
                        bytes.fromhex(f["root"]) if f["root"] else None)
            for f in c["files"]
        ),
        v1_pieces_sha256=bytes.fromhex(c["v1"]) if c["v1"] else None,
    )
    manifest = LicenseManifest(
        title=case_input["title"],
        creators=tuple(case_input["creators"]),
        created=datetime.fromtimestamp(case_input["created"], UTC),
        terms=CCTerms(case_input["spdx"]),
        splits=tuple(
            Split(bytes(nacl.signing.SigningKey(bytes.fromhex(s["seed"])).verify_key), s["bps"])
            for s in case_input["splits"]
        ),
        content=content,
        collector=_collector(case_input.get("collector")),
    )
    signers = [Identity("signer", nacl.signing.SigningKey(bytes.fromhex(s)))
               for s in case_input["signers"]]
    return manifest, signers


def manifest_vectors() -> list[dict[str, Any]]:
    out = []
    for case in CASES:
        manifest, signers = build(case["input"])
        signed = SignedManifest.sign(manifest, signers)
        out.append({
            **case,
            "manifest_hex": signed.manifest_bytes.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "signatures": [
                {"pk_text": key_to_text(s.pk), "fingerprint": fingerprint(s.pk),
                 "sig_hex": s.sig.hex()}
                for s in signed.signatures
            ],
        })
    return out


# Receipts: the downloader signs with SEED_A, the uploader is SEED_B's key. Sizes sit at
# the 16 KiB block and 4 MiB boundaries; the last case holds every field at its maximum.
RECEIPT_CASES: list[dict[str, Any]] = [
    {"name": "first-receipt-one-block",
     "input": {"work": _h("info dict of ada's song"), "uploader_seed": SEED_B.hex(),
               "downloader_seed": SEED_A.hex(), "seq": 1, "bytes": 16_384,
               "ts": 1_700_000_000}},
    {"name": "cumulative-4mib-plus-one",
     "input": {"work": _h("info dict of duet"), "uploader_seed": SEED_B.hex(),
               "downloader_seed": SEED_A.hex(), "seq": 7, "bytes": 4_194_305,
               "ts": 1_735_689_600}},
    {"name": "zero-bytes-at-epoch",
     "input": {"work": _h("info dict of duet"), "uploader_seed": SEED_B.hex(),
               "downloader_seed": SEED_A.hex(), "seq": 1, "bytes": 0, "ts": 0}},
    {"name": "largest-valid",
     "input": {"work": "ff" * 32, "uploader_seed": SEED_B.hex(),
               "downloader_seed": SEED_A.hex(), "seq": 2**63 - 1, "bytes": 2**63 - 1,
               "ts": 253_402_300_799}},
]


def build_receipt(case_input: dict[str, Any]) -> tuple[TransferReceipt, Identity]:
    """The receipt and its signing downloader that a receipt case's ``input`` describes."""
    downloader = Identity("downloader",
                          nacl.signing.SigningKey(bytes.fromhex(case_input["downloader_seed"])))
    uploader = bytes(nacl.signing.SigningKey(bytes.fromhex(case_input["uploader_seed"]))
                     .verify_key)
    receipt = TransferReceipt(
        work=bytes.fromhex(case_input["work"]),
        uploader=uploader,
        downloader=downloader.public_key,
        seq=case_input["seq"],
        bytes=case_input["bytes"],
        ts=datetime.fromtimestamp(case_input["ts"], UTC),
    )
    return receipt, downloader


def receipt_vectors() -> list[dict[str, Any]]:
    out = []
    for case in RECEIPT_CASES:
        receipt, downloader = build_receipt(case["input"])
        signed = SignedReceipt.sign(receipt, downloader)
        out.append({
            **case,
            "receipt_hex": signed.receipt_bytes.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "sig_hex": signed.sig.hex(),
            "uploader_pk_text": key_to_text(receipt.uploader),
            "downloader_pk_text": key_to_text(receipt.downloader),
        })
    return out


def key_vectors() -> list[dict[str, str]]:
    out = []
    for seed in (SEED_A, SEED_B, bytes(32), b"\xff" * 32):
        pk = bytes(nacl.signing.SigningKey(seed).verify_key)
        out.append({"seed_hex": seed.hex(), "pk_hex": pk.hex(), "pk_text": key_to_text(pk),
                    "fingerprint": fingerprint(pk)})
    # Raw 32-byte strings that are not keys of any seed, to pin the text form's edges.
    for raw in (bytes(32), b"\xff" * 32):
        out.append({"seed_hex": "", "pk_hex": raw.hex(), "pk_text": key_to_text(raw),
                    "fingerprint": fingerprint(raw)})
    return out


def main() -> None:
    for name, data in (("license_manifests.json", manifest_vectors()),
                       ("keys.json", key_vectors()),
                       ("receipts.json", receipt_vectors())):
        (HERE / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
