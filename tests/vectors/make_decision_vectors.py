"""How copy_decisions.json was made: the label's signed word on which work copies which.
Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_decision_vectors.py   # rewrite copy_decisions.json

Only rerun it on purpose: the vectors pin today's bytes of the CopyDecision a label signs
(domain ``p2pdist/copy-decision/v1``). tests/unit/test_copies.py rebuilds every decision
from its ``input`` on its own and compares byte for byte.

The label's key is a fixed seed (``bytes(range(64, 96))``); ed25519 is deterministic, so
the signatures are stable.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist.identity import Identity, key_to_text
from p2pdist.payouts.copies import MAX_COPIES, MAX_DECISION_SIZE, CopyDecision, SignedCopyDecision

HERE = Path(__file__).resolve().parent

LABEL_SEED = bytes(range(64, 96))

CASES: list[dict[str, Any]] = [
    {"name": "one-copy",
     "input": {"label_seed": LABEL_SEED.hex(), "original": "11" * 32, "copies": ["22" * 32],
               "ts": 1_767_225_600}},
    # Given out of order: the signed list is in byte order.
    {"name": "three-copies-sorted",
     "input": {"label_seed": LABEL_SEED.hex(), "original": "00" * 32,
               "copies": ["ff" * 32, "01" * 32, "80" * 32], "ts": 1_767_225_601}},
    # No copy: the label says the original is a work of its own.
    {"name": "no-copy-a-work-of-its-own",
     "input": {"label_seed": LABEL_SEED.hex(), "original": "33" * 32, "copies": [],
               "ts": 0}},
    {"name": "most-copies",
     "input": {"label_seed": LABEL_SEED.hex(), "original": "44" * 32,
               "copies": [bytes([i // 256, i % 256]).hex() + "55" * 30
                          for i in range(MAX_COPIES)],
               "ts": 253_402_300_799}},
]


def label(seed_hex: str) -> Identity:
    return Identity("label", nacl.signing.SigningKey(bytes.fromhex(seed_hex)))


def build(case_input: dict[str, Any]) -> tuple[CopyDecision, Identity]:
    who = label(case_input["label_seed"])
    return CopyDecision(label=who.public_key, original=bytes.fromhex(case_input["original"]),
                        copies=tuple(bytes.fromhex(c) for c in case_input["copies"]),
                        ts=datetime.fromtimestamp(case_input["ts"], UTC)), who


def vectors() -> list[dict[str, Any]]:
    out = []
    for case in CASES:
        decision, who = build(case["input"])
        signed = SignedCopyDecision.sign(decision, who)
        assert len(signed.to_bytes()) <= MAX_DECISION_SIZE
        out.append({**case, "body_hex": signed.body.hex(), "sig_hex": signed.sig.hex(),
                    "envelope_hex": signed.to_bytes().hex(),
                    "expected": {"label_text": key_to_text(who.public_key),
                                 "copies": sorted(case["input"]["copies"])}})
    return out


def main() -> None:
    path = HERE / "copy_decisions.json"
    path.write_text(json.dumps({"decisions": vectors()}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
