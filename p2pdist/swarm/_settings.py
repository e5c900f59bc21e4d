"""Network profiles as libtorrent settings packs."""

from __future__ import annotations

import enum
import os
from typing import Any

from p2pdist.errors import InputError

__all__ = ["Profile", "profile_from_env", "settings_for"]

_DHT_ROUTERS = "router.bittorrent.com:6881,dht.libtorrent.org:25401"


class Profile(enum.Enum):
    LOCAL = "local"
    INTERNET = "internet"


def profile_from_env(local_flag: bool) -> Profile:
    """`--local` or P2PDIST_NETWORK=local select LOCAL; the environment always wins."""
    env = os.environ.get("P2PDIST_NETWORK", "").strip().lower()
    if local_flag or env == "local":
        return Profile.LOCAL
    if env not in ("", "internet"):
        raise InputError(f"P2PDIST_NETWORK must be 'local' or 'internet', not {env!r}")
    return Profile.INTERNET


def settings_for(
    profile: Profile, *, listen_host: str, listen_port: int, client_version: str
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "listen_interfaces": f"{_bracket(listen_host)}:{listen_port}",
        "handshake_client_version": client_version,
        "user_agent": client_version.split(" ", maxsplit=1)[0],
        # Reconnect quickly to a peer that went away and came back (a restarted seeder).
        "min_reconnect_time": 2,
        "peer_connect_timeout": 5,
        # A seeder with many works should serve all of them, not queue most.
        "active_downloads": -1,
        "active_seeds": -1,
        "active_limit": -1,
        "dont_count_slow_torrents": False,
        # Throughput: bigger send buffers keep a fast link busy (measured in bench/).
        "send_buffer_watermark": 8 * 1024 * 1024,
        "send_buffer_low_watermark": 1024 * 1024,
        "send_buffer_watermark_factor": 150,
        "max_queued_disk_bytes": 16 * 1024 * 1024,
        "request_queue_time": 3,
        "max_out_request_queue": 1500,
        "max_allowed_in_request_queue": 2000,
        "unchoke_slots_limit": 32,
        # libtorrent opens outgoing connections (--peer, reconnects) on its internal tick:
        # at the default 500 ms a fetch waited ~0.5 s for its first byte. 100 ms brought
        # that to ~0.1 s, cut a 512 MiB loopback fetch from ~1.4 s to ~0.95 s of transfer,
        # and costs an idle seeder about 0.1% of a core (bench/transfer.py).
        "tick_interval": 100,
    }
    if profile is Profile.LOCAL:
        s.update(
            {
                "enable_dht": False,
                "enable_lsd": False,
                "enable_upnp": False,
                "enable_natpmp": False,
                # uTP on loopback is >10x slower than TCP (see INTEROP.md).
                "enable_outgoing_utp": False,
                "enable_incoming_utp": False,
                "outgoing_interfaces": listen_host,
                # Many nodes share 127.0.0.1; without this a self-connection bans it.
                "allow_multiple_connections_per_ip": True,
                "announce_to_all_trackers": True,
            }
        )
    else:
        s.update(
            {
                "enable_dht": True,
                "enable_lsd": True,
                "enable_upnp": True,
                "enable_natpmp": True,
                "dht_bootstrap_nodes": _DHT_ROUTERS,
            }
        )
    return s


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
