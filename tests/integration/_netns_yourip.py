"""Run inside a private network namespace that holds only ``lo`` (see
test_external_address.py): the real `p2pdist seed` in the ``internet`` profile, where
libtorrent's external-address vote used to be signed, and raw peers that vote with BEP
10's ``yourip``. Nothing can leave the namespace. Prints one JSON line: which endpoints
the seller signed at each step.

args: HOME TORRENT
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import libtorrent as lt

from p2pdist.identity import load_identity
from tests.conftest import PASSPHRASE, free_port
from tests.integration.test_external_address import (
    ATTACKER,
    ATTACKER2,
    CONFIGURED,
    _signs,
    _vote,
)


def main() -> None:
    home, torrent = Path(sys.argv[1]), sys.argv[2]
    info_hash = lt.torrent_info(torrent).info_hashes().v1.to_bytes()
    pk = load_identity(home, passphrase=PASSPHRASE).public_key
    port, api = free_port(), free_port()
    env = {**os.environ, "P2PDIST_NETWORK": "internet", "P2PDIST_PASSPHRASE": PASSPHRASE}
    seed = subprocess.Popen(
        [sys.executable, "-m", "p2pdist", "--home", str(home), "seed", "--listen",
         f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{api}", "--external-address",
         CONFIGURED, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    result: dict[str, object] = {}
    try:
        assert seed.stdout is not None
        assert "}" in seed.stdout.readline(), "the seeder did not start"

        def signed() -> list[str]:
            return [h for h in ("127.0.0.1", CONFIGURED, ATTACKER, ATTACKER2)
                    if _signs(api, h, pk)]

        result["before"] = signed()
        with ExitStack() as conns:
            conns.enter_context(_vote(port, info_hash, ATTACKER))
            time.sleep(4)  # the node ticks every 0.5 s; the vote lands in well under 1 s
            result["after_one_vote"] = signed()
            for i in range(2, 32):
                conns.enter_context(_vote(port, info_hash, ATTACKER2, source=f"127.0.0.{i}"))
            time.sleep(4)
            result["after_thirty_votes"] = signed()
    finally:
        seed.terminate()
        try:
            seed.wait(20)
        except subprocess.TimeoutExpired:
            seed.kill()
            seed.wait()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
