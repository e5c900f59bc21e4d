"""How statements.json was made: the settlement a label signs (payout statement v2).
Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_statement_vectors.py   # rewrite statements.json

Only rerun it on purpose: the vectors pin today's bytes of the statement an artist checks
(domain ``p2pdist/statement/v2``) and today's apportionment of its money.
tests/unit/test_statement.py rebuilds every statement from its ``input`` on its own
(compute_statement, then sign) and compares byte for byte, and reads each stored envelope
back.

Keys are fixed seeds (``bytes([seed]) * 32``; the label is seed 1); ed25519 is
deterministic, so the signatures are stable. Work ids and sale refs are the SHA-256 of a
name. ``expected.parties`` is the settlement, worked by hand in test_statement.py for the
first case: per party and currency, what it collected, what it is owed and the net.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing import CCTerms, PaidTerms
from p2pdist.payouts.receipts import TransferReceipt
from p2pdist.payouts.statement import (
    MAX_STATEMENT_SIZE,
    Period,
    Pool,
    Sale,
    SignedStatement,
    Statement,
    StatementWork,
    compute_statement,
)

HERE = Path(__file__).resolve().parent
LABEL_SEED = 1
T0 = 1_740_787_200  # 2025-03-01T00:00:00Z

# Seeds: 1 the label, 3 and 4 the holders, 5 and 6 fans, 7 a thief, 10.. buyers.
GOLDEN_WORKS = [
    {"name": "song", "title": "Song", "paid": [500, "EUR", 1500], "splits": [[3, 6000], [4, 4000]],
     "size": 1000},
    {"name": "album", "title": "Album", "paid": [1001, "JPY", 1000],
     "splits": [[3, 5000], [4, 5000]], "size": 4000},
]
GOLDEN_SALES = [
    # served 3:1 by two fans; the artist (seed 3) collected it
    {"work": "song", "buyer": 10, "collector": 3, "amount": 500, "currency": "EUR", "ts": T0,
     "ref": "sale 1", "carriers": [[5, 750], [6, 250]]},
    # no p2pdist carrier: the carriers' share returns to the holders
    {"work": "song", "buyer": 11, "collector": 3, "amount": 500, "currency": "EUR", "ts": T0,
     "ref": "sale 2", "carriers": []},
    # a gift code: books nothing
    {"work": "song", "buyer": 12, "collector": 3, "amount": 0, "currency": "EUR", "ts": T0,
     "ref": "sale 3", "carriers": [[5, 1000]]},
    # collected by the other holder, in yen (no minor unit)
    {"work": "album", "buyer": 13, "collector": 4, "amount": 1001, "currency": "JPY",
     "ts": T0, "ref": "sale 4", "carriers": [[5, 4000]]},
]

CASES: list[dict[str, Any]] = [
    {"name": "golden-settlement",
     "input": {"works": GOLDEN_WORKS, "sales": GOLDEN_SALES}},
    {"name": "pool-period-issued",
     "input": {"works": [*GOLDEN_WORKS,
                         {"name": "free", "title": "Free song", "cc": "CC-BY-4.0",
                          "splits": [[3, 10_000]], "size": 1000}],
               "sales": GOLDEN_SALES,
               "transfers": [{"work": "free", "up": 5, "down": 20, "seq": 1, "bytes": 1000,
                              "ts": T0},
                             {"work": "free", "up": 6, "down": 21, "seq": 1, "bytes": 10,
                              "ts": T0 + 86_400},
                             {"work": "song", "up": 5, "down": 11, "seq": 1, "bytes": 750,
                              "ts": T0}],
               "pool": [999, "EUR", 1000], "period": [T0, T0 + 30 * 86_400],
               "issued": T0 + 31 * 86_400}},
    {"name": "disputed-and-decided-copy",
     "input": {"works": [*GOLDEN_WORKS,
                         {"name": "copy", "title": "Song (my version)", "paid": [400, "EUR", 1500],
                          "splits": [[7, 10_000]], "size": 1000},
                         {"name": "free", "title": "Free song", "cc": "CC-BY-4.0",
                          "splits": [[3, 10_000]], "size": 1000},
                         {"name": "freecopy", "title": "Free song (mine)", "cc": "CC0-1.0",
                          "splits": [[7, 10_000]], "size": 1000}],
               "sales": [*GOLDEN_SALES[:2],
                         {"work": "copy", "buyer": 14, "collector": 7, "amount": 400,
                          "currency": "EUR", "ts": T0, "ref": "sale 5",
                          "carriers": [[6, 500]]}],
               "transfers": [{"work": "free", "up": 5, "down": 20, "seq": 1, "bytes": 1000,
                              "ts": T0},
                             {"work": "freecopy", "up": 6, "down": 21, "seq": 1,
                              "bytes": 1000, "ts": T0}],
               "pool": [10_000, "EUR", 1000],
               "disputed": ["free", "freecopy"], "original_of": {"copy": "song"}}},
    {"name": "empty", "input": {"works": [], "sales": []}},
]


def key(seed: int) -> bytes:
    return identity(seed).public_key


def identity(seed: int) -> Identity:
    return Identity(f"seed {seed}", nacl.signing.SigningKey(bytes([seed]) * 32))


def h(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def _ts(n: int) -> datetime:
    return datetime.fromtimestamp(n, UTC)


def build(case_input: dict[str, Any]) -> tuple[Statement, Identity]:
    """The statement of a case's input, computed by today's compute_statement."""
    label = identity(LABEL_SEED)
    works = {}
    for w in case_input["works"]:
        terms = (PaidTerms(*w["paid"], (label.public_key,)) if "paid" in w
                 else CCTerms(w["cc"]))
        works[h(w["name"])] = StatementWork(w["title"], terms,
                                            tuple((key(s), b) for s, b in w["splits"]),
                                            w["size"])
    sales = [Sale(h(s["work"]), key(s["buyer"]), key(s["collector"]), s["amount"],
                  s["currency"], _ts(s["ts"]), h(s["ref"]),
                  tuple((key(c), n) for c, n in s["carriers"]))
             for s in case_input["sales"]]
    transfers = [TransferReceipt(h(r["work"]), key(r["up"]), key(r["down"]), r["seq"],
                                 r["bytes"], _ts(r["ts"]))
                 for r in case_input.get("transfers", [])]
    pool = Pool(*case_input["pool"]) if "pool" in case_input else None
    period = Period(*map(_ts, case_input["period"])) if "period" in case_input else None
    issued = _ts(case_input["issued"]) if "issued" in case_input else None
    st = compute_statement(label=label.public_key, works=works, sales=sales,
                           transfers=transfers, pool=pool, period=period, issued=issued,
                           disputed={h(w) for w in case_input.get("disputed", [])},
                           original_of={h(c): h(o) for c, o in
                                        case_input.get("original_of", {}).items()})
    return st, label


def vectors() -> list[dict[str, Any]]:
    out = []
    for case in CASES:
        st, label = build(case["input"])
        assert st.sums_exactly
        signed = SignedStatement.sign(st, label)
        assert len(signed.to_bytes()) <= MAX_STATEMENT_SIZE
        out.append({**case, "body_hex": signed.body.hex(), "sig_hex": signed.sig.hex(),
                    "envelope_hex": signed.to_bytes().hex(),
                    "expected": {
                        "label_text": key_to_text(label.public_key),
                        "totals": [[c, a] for c, a in st.totals_in],
                        "parties": [[key_to_text(p.party), p.currency, p.collected, p.owed,
                                     p.net] for p in st.parties],
                        "held": [[ln.work.hex(), ln.ref, ln.currency, ln.amount]
                                 for ln in st.lines if ln.role == "held"]}})
    return out


def main() -> None:
    path = HERE / "statements.json"
    path.write_text(json.dumps({"statements": vectors()}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
