"""Issue 20, review of finding 1: a swarm peer made the seller vouch for the attacker's
address. libtorrent takes "our external address" from a peer's BEP 10 ``yourip`` (one
vote from one connection on a fresh node; thirty from distinct addresses on a node that
knew its address), and the node signed identity proofs for that address: a relay there
passed as the seller. Now a node signs its API port only on the address a request
arrived on and on the addresses its user gave with --external-address.

Written as the attacker: raw BitTorrent connections to the seller's real node on
127.0.0.1 that send ``yourip`` = the attacker's address in their extended handshake.
The session stays in the local profile (nothing leaves loopback), where libtorrent still
counts the vote; the node's profile is read as ``internet`` for the part that decides
what to sign, which is where the old code took the vote (it skipped it in ``local``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import libtorrent as lt
import nacl.signing
import pytest

from p2pdist._proof import SignedProof, verify_proof
from p2pdist.identity import key_to_text, load_identity
from p2pdist.node import Node
from p2pdist.swarm import Profile
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._story import Seeder, make_album, publish

ATTACKER = "203.0.113.7"  # TEST-NET-3: only ever asked to be signed, never dialed
ATTACKER2 = "203.0.113.8"
CONFIGURED = "198.51.100.1"  # TEST-NET-2: the seller's public address, as its user says


def _vote(port: int, info_hash: bytes, yourip: str, *, source: str = "127.0.0.1"
          ) -> socket.socket:
    """A raw peer: BitTorrent handshake (extension bit set), then a BEP 10 extended
    handshake whose ``yourip`` tells the node its address is *yourip*."""
    s = socket.socket()
    try:
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        reserved = bytearray(8)
        reserved[5] |= 0x10
        s.sendall(b"\x13BitTorrent protocol" + bytes(reserved) + info_hash
                  + b"-AT0001-" + os.urandom(12))
        got = b""
        while len(got) < 68:
            chunk = s.recv(68 - len(got))
            assert chunk, "the node closed the connection during the handshake"
            got += chunk
        fields: Any = {b"m": {}, b"v": b"evil", b"yourip": ipaddress.ip_address(yourip).packed}
        payload = b"\x00" + lt.bencode(fields)
        s.sendall(struct.pack(">IB", len(payload) + 1, 20) + payload)
    except BaseException:
        s.close()
        raise
    return s


def _ask(api: int, endpoint: str) -> tuple[int, dict[str, Any], bytes, bytes]:
    """GET /identity on 127.0.0.1:*api*, asking it to sign *endpoint*: (status, answer,
    asker, challenge)."""
    asker = bytes(nacl.signing.SigningKey.generate().verify_key)
    challenge = os.urandom(32)
    url = (f"http://127.0.0.1:{api}/identity?challenge={challenge.hex()}"
           f"&asker={key_to_text(asker)}&endpoint={endpoint}")
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read()), asker, challenge
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), asker, challenge


def _signs(api: int, host: str, pk: bytes) -> bool:
    """Does the node at *api* sign a proof of *pk* for host:api? (a relay at host:api
    would pass as it if so)."""
    status, doc, asker, challenge = _ask(api, f"{host}:{api}")
    if status != 200:
        assert (status, doc.get("reason")) == (421, "other-endpoint"), doc
        assert "proof" not in doc
        return False
    signed = SignedProof.from_bytes(bytes.fromhex(doc["proof"]))
    verify_proof(signed, asker=asker, endpoint=f"{host}:{api}", challenge=challenge,
                 keys=(pk,))
    return True


@pytest.fixture
def seller(tmp_path: Path) -> Iterator[tuple[Node, bytes]]:
    """The seller's real node (in this process, so the test sees what its swarm learnt),
    its user having configured its public address; and a work's v1 info-hash."""
    home = tmp_path / "seller"
    pub = publish(home, make_album(tmp_path / "studio" / "album", [200_000]))
    info_hash = lt.torrent_info(pub["torrent"]).info_hashes().v1.to_bytes()
    node = Node(home, profile=Profile.LOCAL, listen=("127.0.0.1", 0),
                identity=load_identity(home, passphrase=PASSPHRASE),
                external_addresses=(CONFIGURED,))
    try:
        assert node.seed_library()
        yield node, info_hash
    finally:
        node.close()


def _learn(node: Node, address: str, timeout: float = 30) -> None:
    """Tick the node until its swarm has taken *address* as its own (the vote arrived)."""
    deadline = time.monotonic() + timeout
    while address not in node.swarm.external_hosts:
        assert time.monotonic() < deadline, f"the vote for {address} never arrived"
        node.tick()
        time.sleep(0.1)
    for _ in range(3):
        node.tick()


def test_swarm_peer_yourip_vote_cannot_make_the_seller_sign_its_address(
        seller: tuple[Node, bytes]) -> None:
    node, info_hash = seller
    assert node.api is not None and node.identity is not None
    api, pk = node.api.port, node.identity.public_key
    node.profile = Profile.INTERNET  # what decides signing; the session stays local
    assert _signs(api, "127.0.0.1", pk) and _signs(api, CONFIGURED, pk)
    assert not _signs(api, ATTACKER, pk)
    with ExitStack() as conns:
        # One vote on a fresh node: libtorrent takes it as the node's address...
        conns.enter_context(_vote(node.listen_port, info_hash, ATTACKER))
        _learn(node, ATTACKER)
        # ...and the node still does not vouch for it.
        assert not _signs(api, ATTACKER, pk)
        # A node that knows its address: thirty voters from distinct addresses move
        # libtorrent to a second one. Not signed either, nor the first, nor a voter's.
        for i in range(2, 32):
            conns.enter_context(_vote(node.listen_port, info_hash, ATTACKER2,
                                      source=f"127.0.0.{i}"))
        _learn(node, ATTACKER2)
        for host in (ATTACKER, ATTACKER2, "127.0.0.2"):
            assert not _signs(api, host, pk), host
    # The honest party's proofs are unchanged: its own and its configured address.
    assert _signs(api, "127.0.0.1", pk) and _signs(api, CONFIGURED, pk)


def test_seed_external_address_is_signed_and_a_name_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "seller"
    run_cli(home, "init", "--name", "Ada")
    pk = load_identity(home, passphrase=PASSPHRASE).public_key
    api = free_port()
    with Seeder(home, free_port(), "--api-listen", f"127.0.0.1:{api}",
                "--external-address", CONFIGURED, "--external-address", "[2001:db8::7]"):
        assert _signs(api, CONFIGURED, pk)
        assert _signs(api, "[2001:db8::7]", pk)
        assert not _signs(api, ATTACKER, pk)
    for bad in ("seller.example.org", "0.0.0.0", "224.0.0.1"):  # noqa: S104
        cp = run_cli(home, "seed", "--local", "--external-address", bad, check=False)
        assert cp.returncode == 1, cp.stderr
        assert "--external-address" in cp.stderr and "Traceback" not in cp.stderr
    assert "--external-address" in run_cli(home, "fetch", "--help").stdout


def _private_netns() -> list[str] | None:
    """A command prefix that runs its command in a new network namespace holding only a
    loopback that is up, or None where this machine cannot make one (not root, no
    unshare or ip)."""
    prefix = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if ok.returncode == 0 else None


def test_seed_in_the_internet_profile_never_signs_a_yourip_vote(tmp_path: Path) -> None:
    """The reviewer's attack end to end: the real `seed` in the internet profile (where
    the old code signed libtorrent's vote), inside a network namespace with only a
    loopback, so nothing can leave the machine."""
    prefix = _private_netns()
    if prefix is None:
        pytest.skip("needs a private network namespace (root, unshare, ip): the "
                    "in-process test above covers the same seam")
    home = tmp_path / "seller"
    pub = publish(home, make_album(tmp_path / "studio" / "album", [200_000]))
    cp = subprocess.run([*prefix, sys.executable, "-m", "tests.integration._netns_yourip",
                         str(home), pub["torrent"]], capture_output=True, text=True,
                        timeout=150, check=False, cwd=Path(__file__).parents[2])
    assert cp.returncode == 0, cp.stderr[-3000:]
    signed = json.loads(cp.stdout.strip().splitlines()[-1])
    for step in ("before", "after_one_vote", "after_thirty_votes"):
        assert signed[step] == ["127.0.0.1", CONFIGURED], (step, signed)
