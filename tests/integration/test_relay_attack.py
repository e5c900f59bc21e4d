"""Issue 20, finding 1: a swarm peer that relays a seller's identity proof steals the
buyer's voucher code and the work. Written as the attacker: a raw libtorrent session
seeds the public ciphertext under the seller's key (its own API port in the client
string), and a small HTTP server forwards GET /identity to the real seller and records
every /purchase and /receipts body. A real fan fetches from it and from the seller with
the real CLI, and buys without --seller.

And finding 5's second half: a proof that fails at first is tried again for as long as
the peer is there, and the receipts go out once it succeeds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist import __version__
from p2pdist._api import NodeApi, post
from p2pdist._proof import SignedProof, verify_proof
from p2pdist.identity import Identity, key_to_text, load_identity, load_public_identity
from p2pdist.payouts.payments import PurchaseRequest, SignedPurchase
from p2pdist.payouts.receipts import SignedReceipt
from tests.conftest import PASSPHRASE, free_port, run_cli, start_cli
from tests.integration._relay import RelayApi
from tests.integration._story import Seeder, make_album


@contextmanager
def raw_seed(torrent: Path, save_path: Path, client: str, *,
             upload_limit: int) -> Iterator[int]:
    """A plain libtorrent session seeding *torrent* from *save_path* on 127.0.0.1, naming
    itself *client* in its BEP 10 handshake (what a modified client may claim), at most
    *upload_limit* bytes a second (so that it stays connected a few seconds: a transfer
    over before the fan's next poll never shows its handshake). Yields its port."""
    import libtorrent as lt

    port = free_port()
    ses = lt.session({
        "listen_interfaces": f"127.0.0.1:{port}", "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False, "enable_incoming_utp": False,
        "enable_outgoing_utp": False, "allow_multiple_connections_per_ip": True,
        "handshake_client_version": client, "alert_mask": 0,
        "upload_rate_limit": upload_limit,
    })
    classes = lt.ip_filter()  # loopback peers are limited too
    classes.add_rule("127.0.0.0", "127.255.255.255", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(classes)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(str(torrent))
    atp.save_path = str(save_path)
    atp.flags = lt.torrent_flags.seed_mode
    h = ses.add_torrent(atp)
    try:
        deadline = time.monotonic() + 20
        while ses.listen_port() != port and time.monotonic() < deadline:
            time.sleep(0.05)
        yield port
    finally:
        ses.remove_torrent(h)
        del ses


def _save_path(home: Path, work: str) -> Path:
    doc = json.loads((home / "library" / f"{work}.json").read_text())
    return Path(doc["save_path"])


def _sellers_seen(home: Path, work: str) -> list[str]:
    seen: list[str] = json.loads(
        (home / "library" / f"{work}.json").read_text())["sellers_seen"]
    return seen


def test_relay_peer_cannot_read_the_voucher_code_or_pass_as_the_seller(
        tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "Night", [1_500_000, 300_000])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    for h, name in ((artist, "Ada"), (fan, "Fan")):
        run_cli(h, "init", "--name", name)
    pub = json.loads(run_cli(artist, "publish", str(album), "--title", "Night", "--price",
                             "5.00", "--currency", "EUR", "--out",
                             str(tmp_path / "night.torrent"), "--json").stdout)
    [code] = json.loads(run_cli(artist, "vouchers", "issue", pub["work"],
                                "--json").stdout)["codes"]
    seller = load_public_identity(artist).key_text
    bt, api = free_port(), free_port()
    # The seller uploads slower than the relay, so the fan takes most of the work from
    # the relay; both stay connected for a few seconds.
    with Seeder(artist, bt, "--api-listen", f"127.0.0.1:{api}", "--upload-limit", "100"), \
            RelayApi(api) as relay, \
            raw_seed(Path(pub["torrent"]), _save_path(artist, pub["work"]),
                     f"p2pdist/{__version__} pk={seller} api={relay.port}",
                     upload_limit=300 * 1024) as relay_bt:
        fetched = json.loads(run_cli(
            fan, "fetch", pub["torrent"], "--dest", str(tmp_path / "music"), "--local",
            "--json", "--stall-timeout", "60", "--peer", f"127.0.0.1:{relay_bt}",
            "--peer", f"127.0.0.1:{bt}").stdout)
        peers = {p["peer"]: p for p in fetched["peers"]}
        # The relay really was a peer that served the fan, and it was asked to prove the
        # key it claims: it failed, so it is a plain BitTorrent peer (no key, no receipt).
        assert peers[f"127.0.0.1:{relay_bt}"]["bytes"] > 0, fetched["peers"]
        assert relay.identity_asks, fetched["peers"]
        assert peers[f"127.0.0.1:{relay_bt}"]["pk"] is None
        assert peers[f"127.0.0.1:{relay_bt}"]["receipt"] is None
        assert peers[f"127.0.0.1:{bt}"]["pk"] == seller
        # Only the seller's own endpoint is remembered for buy, with its signed proof.
        seen = _sellers_seen(fan, pub["work"])
        assert seen and all(str(relay.port) not in s for s in seen), seen
        fan_pk = load_public_identity(fan).public_key
        for s in seen:
            proof = SignedProof.from_bytes(bytes.fromhex(s.rpartition(" ")[2]))
            verify_proof(proof, asker=fan_pk, endpoint=f"127.0.0.1:{api}", challenge=None,
                         keys=(load_public_identity(artist).public_key,))

        # Named as the seller by hand, the relay still cannot prove the key: nothing is
        # posted, and the fan is not told that nothing was charged.
        cp = run_cli(fan, "buy", pub["work"], "--voucher", code, "--seller",
                     f"127.0.0.1:{relay.port}", check=False)
        assert cp.returncode == 3, cp.stderr
        assert "nothing was charged" not in cp.stderr
        assert relay.posts == []

        # Handed the fan's sealed request, the relay reads no code, and cannot redeem the
        # box under its own key at the real seller: refused, the voucher untouched.
        fan_id = load_identity(fan, passphrase=PASSPHRASE)
        req = PurchaseRequest.seal(
            work=bytes.fromhex(pub["work"]), buyer=fan_pk,
            seller=load_public_identity(artist).public_key, method="voucher", payment=code,
            nonce=os.urandom(16), ts=datetime.now(UTC).replace(microsecond=0))
        handed = SignedPurchase.sign(req, fan_id).to_bytes()
        assert code.encode() not in handed and code.encode().hex().encode() not in handed
        mallory = Identity("Mallory", nacl.signing.SigningKey.generate())
        for nonce in (req.nonce, os.urandom(16)):
            lifted = PurchaseRequest(
                work=req.work, buyer=mallory.public_key, seller=req.seller, method="voucher",
                sealed_payment=req.sealed_payment, nonce=nonce, ts=req.ts, receipts=())
            status, doc = post("127.0.0.1", api, "/purchase",
                               SignedPurchase.sign(lifted, mallory).to_bytes())
            assert (status, doc.get("reason")) == (422, "other-request"), doc

        # The fan buys without --seller: at the real seller, which it saw prove its key.
        bought = json.loads(run_cli(fan, "buy", pub["work"], "--voucher", code,
                                    "--json").stdout)
        assert bought["seller"] == seller
        # Nothing the relay received holds the code, and no receipt reached it.
        assert code.encode() not in relay.received()
        assert not [p for p, _ in relay.posts if p == "/receipts"]
        assert relay.posts == []
    rows = json.loads(run_cli(artist, "vouchers", "list", pub["work"], "--json").stdout)
    assert [(r["buyer"], r["redeemed"] is not None) for r in rows] == [
        (key_to_text(fan_pk), True)]
    run_cli(fan, "unlock", pub["work"], "--dest", str(tmp_path / "plain"))
    assert (tmp_path / "plain" / "Night" / "01 track.flac").read_bytes() == \
        (album / "01 track.flac").read_bytes()


def _receipts(body_log: list[bytes]) -> list[Any]:
    return [SignedReceipt.from_bytes(b).receipt for b in body_log]


def test_a_proof_that_fails_at_first_is_retried_and_the_receipts_follow(
        tmp_path: Path) -> None:
    """The uploader's API does not answer for 8 s (the old code gave up after 3 tries in
    3.5 s): the fan keeps asking, with a capped backoff, proves the key once it answers,
    and sends the receipts it owed."""
    album = make_album(tmp_path / "studio" / "Dawn", [600_000])
    ada, fan = tmp_path / "ada", tmp_path / "fan"
    for h, name in ((ada, "Ada"), (fan, "Fan")):
        run_cli(h, "init", "--name", name)
    pub = json.loads(run_cli(ada, "publish", str(album), "--title", "Dawn", "--license",
                             "CC-BY-4.0", "--out", str(tmp_path / "dawn.torrent"),
                             "--json").stdout)
    ada_id = load_identity(ada, passphrase=PASSPHRASE)
    api_port = free_port()
    received: list[bytes] = []
    with raw_seed(Path(pub["torrent"]), _save_path(ada, pub["work"]),
                  f"p2pdist/{__version__} pk={key_to_text(ada_id.public_key)} "
                  f"api={api_port}", upload_limit=100 * 1024) as bt:
        proc = start_cli(fan, "fetch", pub["torrent"], "--dest", str(tmp_path / "music"),
                         "--local", "--seed", "--peer", f"127.0.0.1:{bt}")
        try:
            time.sleep(8)  # the uploader's API is down: every proof so far failed
            api = NodeApi(ada_id, "127.0.0.1", api_port)
            api.route("POST", "/receipts",
                      lambda q, body: (received.append(body), (200, {"ok": True}))[1])
            with api:
                deadline = time.monotonic() + 40
                while not received and time.monotonic() < deadline:
                    time.sleep(0.2)
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    got = _receipts(received)
    assert got, "no receipt after the proof succeeded"
    assert {r.uploader for r in got} == {ada_id.public_key}
    assert max(r.bytes for r in got) == 600_000
