"""Which addresses a node may bind and may be sent to, per network profile.

A publisher writes the collector's address (and a seller-api hint) into a license, and
every fan who fetches the work contacts it: in the internet profile it must not reach
into the fan's own network (a router at 192.168.1.1, a service on 127.0.0.1, a cloud
metadata address). These tables call the decision functions directly: no node is
started and no packet is sent (names resolve through a table, not DNS).
"""

from __future__ import annotations

import pytest

from p2pdist.errors import InputError
from p2pdist.swarm._settings import Profile, check_bind, license_address_allowed

# host -> allowed in (local, internet)
TABLE = {
    "127.0.0.1": (True, False),
    "127.9.8.7": (True, False),
    "localhost": (True, False),
    "::1": (True, False),
    "[::1]": (True, False),
    "::ffff:127.0.0.1": (True, False),
    "0.0.0.0": (False, False),  # noqa: S104 - the table's point
    "::": (False, False),
    "10.0.0.1": (False, False),
    "172.16.5.4": (False, False),
    "192.168.1.1": (False, False),
    "::ffff:192.168.1.1": (False, False),
    "100.64.0.1": (False, False),  # carrier-grade NAT
    "169.254.169.254": (False, False),  # cloud metadata, link-local
    "fe80::1": (False, False),
    "fc00::1": (False, False),
    "fd12:3456::1": (False, False),
    "224.0.0.251": (False, False),  # multicast (mDNS)
    "255.255.255.255": (False, False),
    "192.0.2.1": (False, False),  # documentation range
    "198.18.0.1": (False, False),  # benchmarking range
    "93.184.216.34": (False, True),
    "1.1.1.1": (False, True),
    "2606:4700:4700::1111": (False, True),
    "::ffff:1.1.1.1": (False, True),
    # names, resolved through RESOLVES below
    "collector.example.org": (False, True),
    "rebind.example": (False, False),  # one public and one private address
    "router.lan": (False, False),
    "nowhere.invalid": (False, False),  # resolves to nothing
}
RESOLVES = {
    "collector.example.org": ["93.184.216.34", "2606:2800:220:1::248"],
    "rebind.example": ["93.184.216.34", "192.168.1.1"],
    "router.lan": ["192.168.1.1"],
    "localhost": ["127.0.0.1", "::1"],
    "nowhere.invalid": [],
}


def _resolve(host: str) -> list[str]:
    return RESOLVES[host]


@pytest.mark.parametrize("host", list(TABLE))
@pytest.mark.parametrize("profile", [Profile.LOCAL, Profile.INTERNET])
def test_a_publisher_cannot_point_fans_at_private_addresses(profile: Profile,
                                                            host: str) -> None:
    want = TABLE[host][0 if profile is Profile.LOCAL else 1]
    assert license_address_allowed(profile, host, resolve=_resolve) is want


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_the_local_profile_binds_loopback(host: str) -> None:
    check_bind(Profile.LOCAL, host, option="--listen")
    check_bind(Profile.INTERNET, host, option="--listen")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1",  # noqa: S104
                                  "93.184.216.34", "::ffff:192.168.1.1", "not-an-ip"])
@pytest.mark.parametrize("option", ["--listen", "--api-listen"])
def test_the_local_profile_refuses_to_bind_anything_but_loopback(host: str,
                                                                 option: str) -> None:
    with pytest.raises(InputError, match="loopback") as ei:
        check_bind(Profile.LOCAL, host, option=option)
    assert option in ei.value.message and f"{option} 127.0.0.1:PORT" in ei.value.remedy
    if host != "not-an-ip":
        check_bind(Profile.INTERNET, host, option=option)  # the internet profile may


@pytest.mark.parametrize("host", ["192.168.1.1", "10.0.0.1", "127.0.0.1", "169.254.169.254",
                                  "::1", "fd00::1"])
def test_receipts_never_go_to_a_private_collector_in_the_internet_profile(host: str) -> None:
    """The node's own check, on the collector address a license names (IP literals only:
    nothing is resolved, nothing is sent)."""
    from types import SimpleNamespace

    from p2pdist.node import Node

    node = SimpleNamespace(profile=Profile.INTERNET, _address_verdicts={})
    assert Node._may_send_to(node, host) is False  # type: ignore[arg-type]
    assert Node._may_send_to(node, "93.184.216.34") is True  # type: ignore[arg-type]
    local = SimpleNamespace(profile=Profile.LOCAL, _address_verdicts={})
    assert Node._may_send_to(local, host) is (host in ("127.0.0.1", "::1"))  # type: ignore[arg-type]
