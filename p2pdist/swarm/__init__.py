"""BitTorrent through libtorrent. The only package that imports libtorrent.

Status comes back as frozen snapshots with our own enums, never libtorrent objects.
"""

from p2pdist.swarm._session import (
    PeerConnection,
    PeerSnapshot,
    Swarm,
    TorrentState,
    WorkStatus,
    parse_endpoint,
)
from p2pdist.swarm._settings import Profile, profile_from_env
from p2pdist.swarm._torrents import (
    MAX_TORRENT_SIZE,
    Layout,
    LayoutFile,
    info_section,
    magnet_info,
    make_magnet,
    make_torrent,
    torrent_layout,
    torrent_name,
)

__all__ = [
    "MAX_TORRENT_SIZE",
    "Layout",
    "LayoutFile",
    "PeerConnection",
    "PeerSnapshot",
    "Profile",
    "Swarm",
    "TorrentState",
    "WorkStatus",
    "info_section",
    "magnet_info",
    "make_magnet",
    "make_torrent",
    "parse_endpoint",
    "profile_from_env",
    "torrent_layout",
    "torrent_name",
]
