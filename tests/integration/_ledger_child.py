"""A child process for the crash test: append forever, acknowledge after each commit.

    python tests/integration/_ledger_child.py DB NODE_HEX

Prints ``ready`` once the ledger is open, then, after every committed batch, one
``<seq> <hash hex>`` line per entry, flushed: a line on stdout is a promise that the entry
is durable. The parent kills this process with SIGKILL at random moments.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from p2pdist.payouts.ledger import Ledger


def main() -> None:
    db, node = Path(sys.argv[1]), bytes.fromhex(sys.argv[2])
    rng = random.Random(os.getpid())
    out = sys.stdout
    with Ledger(db, node=node) as ledger:
        out.write("ready\n")
        out.flush()
        while True:
            batch = [(rng.choice(("receipt.received", "receipt.issued")),
                      rng.randbytes(rng.randrange(100, 400)))
                     for _ in range(rng.randrange(1, 5))]
            entries = ledger.append_many(batch)
            out.write("".join(f"{e.seq} {e.hash.hex()}\n" for e in entries))
            out.flush()


if __name__ == "__main__":
    main()
