"""A peer that left before its handshake string was read is named by its peer id, and
that name never passes for a p2pdist claim."""

from __future__ import annotations

import pytest

from p2pdist._api import parse_client_string
from p2pdist.swarm._session import _client_from_peer_id


@pytest.mark.parametrize(("pid", "name"), [
    (b"A2-1-36-0-\x8f\x01abcdefgh", "aria2 (peer id A2-1-36-0-)"),
    (b"-TR3000-abcdefghijkl", "Transmission (peer id -TR3000-)"),
    (b"-qB4520-abcdefghijkl", "qBittorrent (peer id -qB4520-)"),
    (b"-LT2110-abcdefghijkl", "libtorrent (peer id -LT2110-)"),
    (b"-ZZ0001-abcdefghijkl", "peer id -ZZ0001-"),
    (b"\x00\xff" * 10, "peer id ????????"),
])
def test_peer_seen_only_by_its_peer_id_gets_a_display_name(pid: bytes, name: str) -> None:
    assert _client_from_peer_id(pid) == name
    assert parse_client_string(_client_from_peer_id(pid)) is None


def test_peer_id_cannot_smuggle_a_p2pdist_claim() -> None:
    text = _client_from_peer_id(b"p2pdist/0.1 pk=aaaaa")
    assert text == "peer id p2pdist/"
    assert parse_client_string(text) is None


def test_a_megabyte_client_string_is_kept_to_its_cap() -> None:
    from p2pdist.swarm._session import MAX_CLIENT_TEXT, _client_text

    assert len(_client_text(b"evil/1.0 " + b"\x1b]52;c;" * 200_000)) == MAX_CLIENT_TEXT
    assert _client_text(b"p2pdist/0.1.0 pk=abc api=7001") == "p2pdist/0.1.0 pk=abc api=7001"
    assert _client_text(b"bad \xff utf-8") == "bad \ufffd utf-8"
