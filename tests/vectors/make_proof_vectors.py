"""How proofs.json was made: identity proofs bound to the endpoint dialed (GET /identity).
Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_proof_vectors.py   # rewrite proofs.json

Only rerun it on purpose: the vectors pin today's bytes of the IdentityProof that every
node signs and every asker checks (domain ``p2pdist/identity/v2``).
tests/unit/test_identity_proof.py rebuilds every proof from its ``input`` on its own and
compares byte for byte.

Keys are fixed seeds (the node ``bytes(range(32, 64))``, the asker ``bytes(range(32))``);
ed25519 is deterministic, so the signatures are stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist._proof import MAX_PROOF_SIZE, IdentityProof, SignedProof
from p2pdist.identity import Identity, key_to_text

HERE = Path(__file__).resolve().parent

NODE_SEED = bytes(range(32, 64))
ASKER_SEED = bytes(range(32))

CASES: list[dict[str, Any]] = [
    {"name": "ipv4-loopback",
     "input": {"node_seed": NODE_SEED.hex(), "asker_seed": ASKER_SEED.hex(),
               "endpoint": "127.0.0.1:7001", "challenge": bytes(range(32)).hex()}},
    {"name": "ipv6-compressed-in-brackets",
     "input": {"node_seed": NODE_SEED.hex(), "asker_seed": ASKER_SEED.hex(),
               "endpoint": "[2001:db8::1]:65535", "challenge": "ff" * 32}},
    # The longest endpoint text there is: a full IPv6 address and a 5-digit port.
    {"name": "longest-endpoint",
     "input": {"node_seed": NODE_SEED.hex(), "asker_seed": ASKER_SEED.hex(),
               "endpoint": "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535",
               "challenge": "00" * 32}},
]


def _identity(seed_hex: str) -> Identity:
    return Identity("v", nacl.signing.SigningKey(bytes.fromhex(seed_hex)))


def build(case_input: dict[str, Any]) -> tuple[IdentityProof, Identity]:
    node = _identity(case_input["node_seed"])
    return IdentityProof(pk=node.public_key,
                         asker=_identity(case_input["asker_seed"]).public_key,
                         endpoint=case_input["endpoint"],
                         challenge=bytes.fromhex(case_input["challenge"])), node


def vectors() -> list[dict[str, Any]]:
    out = []
    for case in CASES:
        proof, node = build(case["input"])
        signed = SignedProof.sign(proof, node)
        assert len(signed.to_bytes()) <= MAX_PROOF_SIZE
        out.append({**case, "body_hex": signed.body.hex(),
                    "envelope_hex": signed.to_bytes().hex(), "sig_hex": signed.sig.hex(),
                    "expected": {"pk_text": key_to_text(proof.pk),
                                 "asker_text": key_to_text(proof.asker)}})
    return out


def main() -> None:
    path = HERE / "proofs.json"
    path.write_text(json.dumps({"proofs": vectors()}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
