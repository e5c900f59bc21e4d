"""How tests/vectors/ledger.json was made. Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_ledger_vectors.py   # rewrite ledger.json

Only rerun it on purpose: the vectors pin the entry hash, the checkpoint and the bundle
bytes, which every node and label must agree on. tests/unit/test_ledger.py rebuilds them
from the ``input`` section on its own and compares byte for byte.

The node key is the fixed seed ``bytes(range(32))``; ed25519 is deterministic, so the
checkpoint signature is stable too.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist.identity import Identity, key_to_text
from p2pdist.payouts.ledger import Ledger

HERE = Path(__file__).resolve().parent
SEED = bytes(range(32))

INPUT: dict[str, Any] = {
    "seed": SEED.hex(),
    "ts": 1_700_000_000,
    "entries": [
        {"kind": "receipt.received", "payload": b"first receipt".hex()},
        {"kind": "receipt.issued", "payload": ""},
        {"kind": "payment", "payload": bytes(range(256)).hex()},
    ],
}


def build(inp: dict[str, Any], db: Path) -> dict[str, Any]:
    identity = Identity("vector", nacl.signing.SigningKey(bytes.fromhex(inp["seed"])))
    now = datetime.fromtimestamp(inp["ts"], UTC)
    with Ledger(db, node=identity.public_key) as ledger:
        entries = ledger.append_many(
            [(e["kind"], bytes.fromhex(e["payload"])) for e in inp["entries"]])
        bundle = ledger.export_bundle(identity, now=now)
        signed = ledger.checkpoints()[-1]
    return {
        "node": key_to_text(identity.public_key),
        "entry_hashes": [e.hash.hex() for e in entries],
        "root": signed.checkpoint.root.hex(),
        "checkpoint": signed.checkpoint_bytes.hex(),
        "checkpoint_sig": signed.sig.hex(),
        "bundle": bundle.hex(),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        out = {"input": INPUT, "output": build(INPUT, Path(d) / "ledger.db")}
    (HERE / "ledger.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
