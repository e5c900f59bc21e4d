"""How issuances.json was made: signed voucher issuance records and their Merkle trees.
Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_issuance_vectors.py   # rewrite issuances.json

Only rerun it on purpose: the vectors pin today's bytes of the issuance record a seller
signs for each batch of voucher codes (domain ``p2pdist/issuance/v1``) and the Merkle
root it commits to. tests/unit/test_issuance.py rebuilds every record from its ``input``
on its own and compares byte for byte; make_payment_vectors.py embeds these records in
the payment receipts it pins.

Keys are fixed seeds (the seller ``bytes(range(32, 64))``, the second seller
``b"\\x05" * 32``); ed25519 is deterministic, so the signatures are stable.

A batch's code hashes are either real voucher codes (``codes``, hashed with
``vouchers.code_hash``) or, for the 100,000-code batch, ``synthetic`` hashes
``SHA-256(b"p2pdist/test-code" || 0x00 || i as 4 bytes big-endian)``. The root and every
proof below are computed here with the tree restated from issuance.py's docstring
(sorted leaves ``H(0x00 || h)``, nodes ``H(0x01 || l || r)``, an odd node carried up
unchanged), independently of ``merkle_levels``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist.identity import Identity, key_to_text
from p2pdist.payouts.issuance import MAX_ISSUANCE_SIZE, Issuance, SignedIssuance
from p2pdist.payouts.vouchers import code_hash

HERE = Path(__file__).resolve().parent

SELLER_SEED = bytes(range(32, 64))
SELLER2_SEED = b"\x05" * 32
MAX_TS = 253_402_300_799
MAX_PRICE = 10**15
WORK = hashlib.sha256(b"info dict of duet").hexdigest()

# Real codes (check symbols included), made once with the voucher book's generator.
CODES = ["4ZPY-3JFF-MKEA-MJJ9-F", "WP14-EYQY-ZWXQ-5HE6-K", "NBCZ-KQ38-ZXXK-NVG9-H",
         "AEKX-SPBX-W0CK-CK3T-3", "V1AG-NF86-J7BV-WF37-5", "MMHT-XRQB-9888-R0SF-4",
         "9JR0-FPDB-R7D8-DK19-5", "KV26-YJV1-5Q41-M2A6-7"]

ISSUANCE_CASES: list[dict[str, Any]] = [
    # Five codes: the level of five leaves and the level of three carry their last node up.
    {"name": "eur-five-codes",
     "input": {"work": WORK, "collector_seed": SELLER_SEED.hex(), "face": 500,
               "currency": "EUR", "ts": 1_735_689_000, "codes": CODES[:5]}},
    # A gift batch of one code: the root is its leaf, every proof is empty.
    {"name": "gift-one-code",
     "input": {"work": WORK, "collector_seed": SELLER_SEED.hex(), "face": 0,
               "currency": "JPY", "ts": 1_735_689_001, "codes": CODES[5:6]}},
    # Two codes of the second seller, in a currency of three decimals.
    {"name": "bhd-two-codes-second-seller",
     "input": {"work": hashlib.sha256(b"info dict of ada's song").hexdigest(),
               "collector_seed": SELLER2_SEED.hex(), "face": 1, "currency": "BHD",
               "ts": 0, "codes": CODES[6:8]}},
    # The largest record: 100,000 codes (proofs of 17 hashes), every integer at its bound.
    {"name": "largest-batch",
     "input": {"work": "ff" * 32, "collector_seed": SELLER_SEED.hex(), "face": MAX_PRICE,
               "currency": "EUR", "ts": MAX_TS, "synthetic": 100_000}},
]


def code_hashes(case_input: dict[str, Any]) -> list[bytes]:
    """The batch's code hashes, sorted (the order of the leaves)."""
    if "codes" in case_input:
        return sorted(code_hash(c) for c in case_input["codes"])
    return sorted(hashlib.sha256(b"p2pdist/test-code\0" + i.to_bytes(4, "big")).digest()
                  for i in range(case_input["synthetic"]))


def tree(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level, leaves first, restated from issuance.py's docstring."""
    level = [hashlib.sha256(b"\x00" + h).digest() for h in sorted(leaves)]
    levels = [level]
    while len(level) > 1:
        pairs = [level[i:i + 2] for i in range(0, len(level), 2)]
        level = [hashlib.sha256(b"\x01" + p[0] + p[1]).digest() if len(p) == 2 else p[0]
                 for p in pairs]
        levels.append(level)
    return levels


def proof(levels: list[list[bytes]], index: int) -> list[bytes]:
    path = []
    for level in levels[:-1]:
        sibling = index + 1 if index % 2 == 0 else index - 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def collector(case_input: dict[str, Any]) -> Identity:
    return Identity("collector", nacl.signing.SigningKey(
        bytes.fromhex(case_input["collector_seed"])))


def build_issuance(case_input: dict[str, Any]) -> tuple[Issuance, Identity, list[list[bytes]]]:
    who = collector(case_input)
    levels = tree(code_hashes(case_input))
    issuance = Issuance(
        work=bytes.fromhex(case_input["work"]), collector=who.public_key,
        count=len(levels[0]), face=case_input["face"], currency=case_input["currency"],
        root=levels[-1][0], ts=datetime.fromtimestamp(case_input["ts"], UTC))
    return issuance, who, levels


def proofs_of(levels: list[list[bytes]], hashes: list[bytes]) -> list[dict[str, Any]]:
    # Every index of a small batch; the first, a middle and the last of a large one.
    n = len(hashes)
    indexes = range(n) if n <= 8 else sorted({0, n // 2, n - 1})
    return [{"index": i, "code_hex": hashes[i].hex(),
             "path": [h.hex() for h in proof(levels, i)]} for i in indexes]


def issuance_vectors() -> list[dict[str, Any]]:
    out = []
    for case in ISSUANCE_CASES:
        issuance, who, levels = build_issuance(case["input"])
        signed = SignedIssuance.sign(issuance, who)
        assert len(signed.to_bytes()) <= MAX_ISSUANCE_SIZE
        out.append({
            **case,
            "body_hex": signed.body.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "sig_hex": signed.sig.hex(),
            "expected": {
                "collector_pk_text": key_to_text(issuance.collector),
                "count": issuance.count,
                "root_hex": issuance.root.hex(),
                "id_hex": hashlib.sha256(signed.body).hexdigest(),
                "proofs": proofs_of(levels, sorted(code_hashes(case["input"]))),
            },
        })
    return out


def main() -> None:
    path = HERE / "issuances.json"
    path.write_text(json.dumps({"issuances": issuance_vectors()}, indent=2,
                               ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
