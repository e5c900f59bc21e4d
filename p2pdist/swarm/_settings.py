"""Network profiles as libtorrent settings packs."""

from __future__ import annotations

import enum
import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from p2pdist.errors import InputError

__all__ = ["Profile", "check_bind", "license_address_allowed", "profile_from_env",
           "settings_for"]

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


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:192.168.1.1 is 192.168.1.1
    return ip


def check_bind(profile: Profile, host: str, *, option: str) -> None:
    """The local profile binds loopback addresses only (127.0.0.0/8, ::1): InputError,
    before anything is started, for 0.0.0.0, :: or any other address."""
    ip = _ip(host)
    if profile is Profile.LOCAL and (ip is None or not ip.is_loopback):
        raise InputError(f"the local profile binds loopback addresses only, not {host} "
                         f"({option})", remedy=f"use {option} 127.0.0.1:PORT, or leave "
                         "the local profile to listen on other addresses")


Resolver = Callable[[str], Sequence[str]]


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def license_address_allowed(profile: Profile, host: str, *,
                            resolve: Resolver = _resolve) -> bool:
    """May this node contact *host*, an address a signed license or a peer's hint gave
    (a collector, a seller's API), not the user?

    A publisher names that address, and every fan who fetches the work contacts it; so
    it must not reach into the fan's own network (their router at 192.168.1.1, a service
    on 127.0.0.1, a cloud metadata address). In ``local``: loopback only. In
    ``internet``: globally routable unicast addresses only; a name counts only if every
    address it resolves to does (and at least one does).
    """
    ip = _ip(host)
    if profile is Profile.LOCAL:
        return host == "localhost" or (ip is not None and ip.is_loopback)
    addresses = [ip] if ip is not None else [_ip(a) for a in resolve(host)]
    return bool(addresses) and all(
        a is not None and a.is_global and not a.is_multicast for a in addresses)


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
