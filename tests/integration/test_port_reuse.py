"""Two peers take turns on one source endpoint (IP:PORT) against a fan.

On loopback, and behind one NAT or CGNAT address, a peer that connects after another one
left may come from the very IP:PORT the first one used. A node that keyed what it knows
of a peer (client string, verified bytes, proven key) by that endpoint string credited
the second peer's bytes to the first one's key, in the receipts the first one keeps (the
slow swarm test saw the artist credited 6 blocks more than it uploaded). Written with
two raw libtorrent sessions pinned to one source port (outgoing_port), each naming its
own key and API in its handshake, and each API answering /identity and recording the
receipts it gets.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nacl.signing

from p2pdist import __version__
from p2pdist._api import NodeApi
from p2pdist.identity import Identity, key_to_text
from p2pdist.payouts.receipts import SignedReceipt
from tests.conftest import free_port, run_cli, start_cli
from tests.integration._story import make_album
from tests.integration.test_relay_attack import _save_path

SIZE = 2_000_000


class _Peer:
    """A key holder: its API proves the key and records the receipts it is sent."""

    def __init__(self, name: str) -> None:
        self.identity = Identity(name, nacl.signing.SigningKey.generate())
        self.received: list[bytes] = []
        self.api = NodeApi(self.identity, "127.0.0.1", 0)
        self.api.route("POST", "/receipts",
                       lambda q, body: (self.received.append(body), (200, {"ok": True}))[1])
        self.api.start()

    def client(self) -> str:
        return f"p2pdist/{__version__} pk={key_to_text(self.identity.public_key)} " \
               f"api={self.api.port}"

    def receipted(self) -> int:
        """The bytes of the latest receipt this peer got (0: none)."""
        got = [SignedReceipt.from_bytes(b).receipt for b in self.received]
        assert all(r.uploader == self.identity.public_key for r in got)
        return max((r.bytes for r in got), default=0)


@contextmanager
def pinned_seed(torrent: Path, save_path: Path, client: str, *, source_port: int,
                fan_port: int, upload_limit: int) -> Iterator[Any]:
    """A raw libtorrent session seeding *torrent* that connects to the fan from
    127.0.0.1:*source_port*, at most *upload_limit* bytes a second. Yields its handle."""
    import libtorrent as lt

    ses = lt.session({
        "listen_interfaces": f"127.0.0.1:{free_port()}", "enable_dht": False,
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        "outgoing_interfaces": "127.0.0.1", "outgoing_port": source_port,
        "num_outgoing_ports": 1, "allow_multiple_connections_per_ip": True,
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
    h.connect_peer(("127.0.0.1", fan_port))
    try:
        yield h
    finally:
        ses.remove_torrent(h)
        del ses


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_peer_on_a_gone_peers_source_port_is_receipted_under_its_own_key(
        tmp_path: Path) -> None:
    album = make_album(tmp_path / "studio" / "Dusk", [SIZE])
    artist, fan = tmp_path / "ada", tmp_path / "fan"
    for h, name in ((artist, "Ada"), (fan, "Fan")):
        run_cli(h, "init", "--name", name)
    pub = json.loads(run_cli(artist, "publish", str(album), "--title", "Dusk", "--license",
                             "CC-BY-4.0", "--out", str(tmp_path / "dusk.torrent"),
                             "--json").stdout)
    torrent, save = Path(pub["torrent"]), _save_path(artist, pub["work"])
    first, second = _Peer("First"), _Peer("Second")
    fan_port, source, nobody = free_port(), free_port(), free_port()
    # The fan dials nobody (a fetch needs a way to find peers): the peers dial it.
    proc = start_cli(fan, "fetch", str(torrent), "--dest", str(tmp_path / "music"),
                     "--local", "--seed", "--listen", f"127.0.0.1:{fan_port}",
                     "--peer", f"127.0.0.1:{nobody}")
    try:
        assert _wait(lambda: _listening(fan_port), 30), "the fan does not listen"
        # The first peer serves part of the work, slowly, until the fan proved its key and
        # sent it a receipt; then it leaves.
        with pinned_seed(torrent, save, first.client(), source_port=source,
                         fan_port=fan_port, upload_limit=100 * 1024) as h:
            assert _wait(first.receipted, 60), "no receipt reached the first peer"
            ports = {p.local_endpoint()[1] for p in h.get_peer_info()}
            h.pause()  # disconnects: what it sent is final
            time.sleep(1)
            sent_first = int(h.status().total_payload_upload)
        time.sleep(1.5)  # the fan sees it gone
        # The second peer comes from the same 127.0.0.1:PORT and serves the rest.
        with pinned_seed(torrent, save, second.client(), source_port=source,
                         fan_port=fan_port, upload_limit=400 * 1024) as h2:
            # Every byte receipted (the old code: never, the second key went unasked).
            _wait(lambda: first.receipted() + second.receipted() >= SIZE
                  or bool(ports.update(p.local_endpoint()[1] for p in h2.get_peer_info())), 60)
            sent_second = int(h2.status().total_payload_upload)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        first.api.close()
        second.api.close()
    assert ports == {source}, ports  # both peers came from the one 127.0.0.1:PORT
    a, b = first.receipted(), second.receipted()
    print(f"first sent {sent_first}, receipted {a}; second sent {sent_second}, "
          f"receipted {b}")
    # Each key is credited the bytes it sent, no more: none of the second peer's went to
    # the first peer's key, and together they are the work.
    assert 0 < a <= sent_first, (a, sent_first)
    assert 0 < b <= sent_second, (b, sent_second)
    assert a + b == SIZE, (a, b)
