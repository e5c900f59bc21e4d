"""A libtorrent session behind a small, snapshot-returning interface."""

from __future__ import annotations

import contextlib
import enum
import errno
import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import libtorrent as lt

from p2pdist.errors import InputError, NetworkError, SourceError, StorageError
from p2pdist.swarm._accounting import BLOCK, VerifiedBytes
from p2pdist.swarm._settings import Profile, settings_for
from p2pdist.swarm._torrents import MAX_TORRENT_SIZE, Layout, layout_of, magnet_info

__all__ = ["PeerConnection", "PeerSnapshot", "Swarm", "TorrentState", "WorkStatus",
           "parse_endpoint"]


# A magnet held off the disk: this many files at priority 0 (see Swarm._add). A torrent
# with more files than this passes no verification (licensing's MAX_FILES, twice for a
# hybrid); libtorrent creates the ones past it, but in the staging folder (see _add).
_HOLD_FILES = 200_001
# How long move() and the removal of a staged work wait for libtorrent's disk thread.
DISK_WAIT = 120.0
# Connections (their client strings) kept for peers that are gone without trading payload,
# at most (those that traded some are kept for their receipts): past it, the gone ones are
# forgotten.
MAX_IDLE_CLIENTS = 4096
# A connection's late reports (a block written after it closed) are told from a later
# connection's at the same IP:PORT by the peer id: this many connections are kept per
# endpoint and work.
_CONNECTIONS_PER_ENDPOINT = 4
_DEFAULT_PRIORITY = 4


class TorrentState(enum.Enum):
    METADATA = "metadata"
    CHECKING = "checking"  # hashing files on disk
    RESUMING = "resuming"  # reading resume data: no hashing
    DOWNLOADING = "downloading"
    SEEDING = "seeding"
    PAUSED = "paused"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class PeerConnection:
    """One connection of a peer to this session: its IP:PORT, and a number no other
    connection of the session has.

    What the session knows of a peer (its client string, the bytes it sent and was sent)
    and the key a node sees it prove belong to one connection, never to the IP:PORT: a
    later connection from the same IP:PORT is another peer (loopback and a NAT reuse
    source ports once a connection closed). A connection at an endpoint is new when its
    peer id differs from the last one's there, or when the last one was seen gone."""

    endpoint: str
    serial: int


@dataclass(frozen=True, slots=True)
class PeerSnapshot:
    endpoint: str
    client: str
    downloaded: int  # payload bytes this peer sent us over the connection
    uploaded: int
    down_rate: int
    up_rate: int
    is_seed: bool
    connection: PeerConnection


@dataclass(frozen=True, slots=True)
class WorkStatus:
    key: str
    name: str
    state: TorrentState
    progress: float
    total_wanted: int
    total_done: int
    down_rate: int
    up_rate: int
    total_payload_download: int
    total_payload_upload: int
    all_time_upload: int
    all_time_download: int
    num_peers: int
    error: str
    has_metadata: bool
    upload_mode: bool
    finished: bool = False  # every wanted piece passed its hash check
    # A write or read of the work's files failed (libtorrent then stops downloading it):
    # what failed, in words, and whether it was a full disk.
    disk_error: str = ""
    disk_full: bool = False

    @property
    def uploaded(self) -> int:
        """Payload bytes uploaded over all sessions (libtorrent updates the total lazily)."""
        return max(self.all_time_upload, self.total_payload_upload)

    @property
    def complete(self) -> bool:
        # Not total_done >= total_wanted: libtorrent counts the blocks of pieces still
        # waiting for (or about to fail) their hash check in total_done.
        return self.has_metadata and self.total_wanted > 0 and self.finished


def parse_endpoint(text: str, *, option: str = "--peer", allow_zero: bool = False
                   ) -> tuple[str, int]:
    """Parse IP:PORT, [V6]:PORT or localhost:PORT; InputError when it is not one."""
    t = text.strip()
    host, sep, port = t.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    low = 0 if allow_zero else 1
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if not sep or ip is None or not (port.isascii() and port.isdigit()) or not (
        low <= int(port) <= 65535
    ):
        raise InputError(f"{option} wants IP:PORT, not {text!r}",
                         remedy=f"e.g. {option} 127.0.0.1:6881")
    return str(ip), int(port)


def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_STATES = {
    lt.torrent_status.checking_files: TorrentState.CHECKING,
    lt.torrent_status.checking_resume_data: TorrentState.RESUMING,
    lt.torrent_status.downloading_metadata: TorrentState.METADATA,
    lt.torrent_status.downloading: TorrentState.DOWNLOADING,
    lt.torrent_status.finished: TorrentState.SEEDING,
    lt.torrent_status.seeding: TorrentState.SEEDING,
}


class Swarm:
    """One libtorrent session. Works are named by a caller-chosen key."""

    def __init__(
        self,
        *,
        profile: Profile,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        client_version: str = "p2pdist/0.1",
        upload_limit: int = 0,
        download_limit: int = 0,
    ) -> None:
        """*upload_limit* and *download_limit* are bytes per second; 0 means none."""
        self.profile = profile
        host, port = listen
        if profile is Profile.LOCAL and not ipaddress.ip_address(host).is_loopback:
            raise InputError(
                f"the local profile listens on loopback only, not {host}",
                remedy="use --listen 127.0.0.1:PORT",
            )
        params = lt.session_params()
        settings = settings_for(
            profile, listen_host=host, listen_port=port, client_version=client_version
        )
        # Only the alerts this class reads: a chatty mask overflows the queue and drops
        # the block alerts that verified-byte accounting depends on.
        cat = lt.alert.category_t
        settings["alert_mask"] = (
            cat.error_notification | cat.status_notification | cat.storage_notification
            | cat.block_progress_notification | cat.piece_progress_notification
            | cat.performance_warning | cat.upload_notification
        )
        settings["alert_queue_size"] = 200_000
        # A port the user named is that port or an error, never the next free one.
        settings["max_retry_port_bind"] = 0
        # Keep a finished peer's connection a while: its handshake names the node that
        # served us, and a fast transfer can end before the next status poll reads it.
        settings["close_redundant_connections"] = False
        settings["upload_rate_limit"] = max(0, upload_limit)
        settings["download_rate_limit"] = max(0, download_limit)
        # session_params.settings hands back a copy: assign the finished dict once.
        params.settings = settings  # type: ignore[assignment]  # the bindings take a dict
        self._ses: Any = lt.session(params)
        if profile is Profile.LOCAL:
            f = lt.ip_filter()
            f.add_rule("0.0.0.0", "255.255.255.255", 1)  # noqa: S104 - a filter, not a bind
            f.add_rule("127.0.0.0", "127.255.255.255", 0)
            f.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1)
            f.add_rule("::1", "::1", 0)
            self._ses.set_ip_filter(f)
        if upload_limit or download_limit:
            # By default loopback and LAN peers are in an unlimited class; a limit the user
            # asked for applies to every peer.
            pcf = lt.ip_filter()
            pcf.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)  # noqa: S104
            pcf.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                         1 << lt.session.global_peer_class_id)
            self._ses.set_peer_class_filter(pcf)
        self._handles: dict[str, lt.torrent_handle] = {}
        self._off_disk: list[lt.torrent_handle] = []  # held at priority 0 until release()
        # Added off the disk and still in the caller's staging folder (no move() asked).
        self._staged: list[lt.torrent_handle] = []
        self._moves: dict[str, str] = {}  # key -> "" once moved, else what failed
        self._deleting: list[lt.torrent_handle] = []  # removed, files being deleted
        # Verified-byte accounting: blocks are attributed to the peer that sent them and
        # credited only when their piece passes the hash check.
        self._verified: dict[str, VerifiedBytes[PeerConnection]] = {}
        # Upload accounting: payload bytes sent per peer connection, kept after it leaves.
        self._uploaded: dict[str, dict[PeerConnection, _Sent]] = {}
        # Payload bytes received per peer connection, libtorrent's exact count (as of the
        # last look while it was connected): settle() tells by it who sent a block whose
        # delivery report never came.
        self._received: dict[str, dict[PeerConnection, int]] = {}
        self._clients: dict[PeerConnection, str] = {}
        self._clients_cap = MAX_IDLE_CLIENTS
        # Per work, the connections seen at each endpoint (newest last), and the endpoints
        # connected at the last look at the peer list.
        self._connections: dict[str, dict[str, list[_Seen]]] = {}
        self._live: dict[str, set[str]] = {}
        self._serial = 0
        self.external_hosts: set[str] = set()  # our address as peers outside see it
        self._resume: dict[str, bytes] = {}
        self._errors: list[str] = []
        self._disk: dict[str, tuple[str, bool]] = {}  # key -> (what failed, disk full)
        deadline = time.monotonic() + 5
        while self._ses.listen_port() == 0 and time.monotonic() < deadline:
            self._drain()
            time.sleep(0.02)
        if port and self._ses.listen_port() not in (0, port):
            self._errors.append(f"port {port} is taken")
        if self._ses.listen_port() == 0 or self._errors:
            detail = "; ".join(self._errors) or "no listening socket"
            self._ses = None
            raise NetworkError(
                f"cannot listen on {host}:{port}: {detail}",
                remedy="pick a free port with --listen HOST:PORT",
            )

    # -- adding ---------------------------------------------------------------------------

    @property
    def listen_port(self) -> int:
        return int(self._ses.listen_port())

    def _filter_trackers(self, atp: Any) -> None:
        if self.profile is Profile.LOCAL:
            atp.trackers = [t for t in atp.trackers if _is_loopback_url(t)]
            atp.url_seeds = [u for u in atp.url_seeds if _is_loopback_url(u)]

    def _add(self, key: str, atp: Any, peers: Sequence[tuple[str, int]], hold: bool,
             off_disk: bool = False) -> None:
        if key in self._handles:
            raise ValueError(f"work {key} is already in this session")
        atp.flags &= ~lt.torrent_flags.paused
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.duplicate_is_error
        # Resume data remembers super seeding; only super_seed() turns it on, per session.
        atp.flags &= ~lt.torrent_flags.super_seeding
        if hold:
            atp.flags |= lt.torrent_flags.upload_mode
        if off_disk:
            # Upload mode alone does not keep libtorrent off the disk: once it knows the
            # file list it makes the folders, the empty files and any symlinks, and it
            # reads the files already there. So the save path of a work not checked yet
            # is a staging folder of its own (the caller's), moved to its real place
            # only once checked (move()). Priority 0 keeps libtorrent from creating
            # even there: for a magnet, as many files as any verifiable work has
            # (libtorrent cuts the list to the file count, and gives files past it the
            # default priority: those it creates, in the staging folder).
            # Not for a work already verified: it would skip checking the files there.
            n = atp.ti.num_files() if atp.ti is not None else _HOLD_FILES
            atp.file_priorities = [0] * n
        if self.profile is Profile.LOCAL:
            atp.flags |= (
                lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
                | lt.torrent_flags.disable_pex
            )
        atp.peers = list(peers)
        self._filter_trackers(atp)
        try:
            h = self._ses.add_torrent(atp)
        except RuntimeError as e:
            raise SourceError(f"libtorrent refused the torrent: {e}") from None
        self._handles[key] = h
        if off_disk:
            self._off_disk.append(h)
            self._staged.append(h)
        self._verified[key] = VerifiedBytes()
        self._uploaded[key] = {}
        self._received[key] = {}
        self._connections[key] = {}
        self._live[key] = set()
        for p in peers:
            h.connect_peer(p)

    def add_torrent(
        self,
        key: str,
        torrent: bytes,
        save_path: Path,
        *,
        peers: Sequence[tuple[str, int]] = (),
        seed_mode: bool = False,
        hold: bool = False,
        off_disk: bool = False,
    ) -> None:
        """Add a torrent file's bytes. *hold* keeps it from downloading until release().
        *off_disk* (with *hold*, for a torrent whose names are not checked yet): then
        *save_path* is a private staging folder for this work alone, libtorrent creates
        as little as it can there until release(), and move() takes the work to its
        real place once checked; removed before that, what libtorrent made in the
        staging folder is deleted."""
        if len(torrent) > MAX_TORRENT_SIZE:
            raise SourceError("the torrent is too large")
        try:
            ti = lt.torrent_info(lt.bdecode(torrent))  # type: ignore[arg-type]
        except (RuntimeError, TypeError, ValueError) as e:
            raise SourceError(f"not a valid torrent: {e}") from None
        atp = lt.add_torrent_params()
        atp.ti = ti
        atp.save_path = str(save_path)
        if seed_mode:
            atp.flags |= lt.torrent_flags.seed_mode
        self._add(key, atp, peers, hold, off_disk and hold)

    def add_resume(
        self,
        key: str,
        resume: bytes,
        save_path: Path,
        *,
        peers: Sequence[tuple[str, int]] = (),
        hold: bool = False,
    ) -> None:
        """Add a work from its saved resume data: no recheck, no re-download."""
        try:
            atp = lt.read_resume_data(resume)
        except (RuntimeError, ValueError) as e:
            raise StorageError(f"the resume data of {key} is damaged: {e}") from None
        atp.save_path = str(save_path)
        self._add(key, atp, peers, hold)

    def add_magnet(
        self,
        key: str,
        uri: str,
        save_path: Path,
        *,
        peers: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Add a magnet link held and off the disk (see add_torrent's *off_disk*: the
        *save_path* is a staging folder): metadata comes (BEP 9), nothing is downloaded
        until release()."""
        magnet_info(uri)
        atp = lt.parse_magnet_uri(uri)
        atp.save_path = str(save_path)
        self._add(key, atp, peers, hold=True, off_disk=True)

    def super_seed(self, key: str) -> None:
        """Seed *key* as its initial seeder (BEP 16 super seeding): offer each peer one rare
        piece at a time, so that each piece leaves this node about once and the peers
        trade the rest. A lone downloader fetches several times slower from such a seed."""
        self._handles[key].set_flags(lt.torrent_flags.super_seeding)

    def set_client_version(self, text: str) -> None:
        """The BEP 10 client string new connections will see."""
        self._ses.apply_settings({"handshake_client_version": text})

    def trackers(self, key: str) -> list[str]:
        """The announce URLs this session will use for *key* (after profile filtering)."""
        return [str(t["url"]) for t in self._handles[key].trackers()]

    def release(self, key: str) -> None:
        """Let a held work start downloading."""
        h = self._handles[key]
        ti = h.torrent_file()
        if h in self._off_disk and ti is not None:
            h.prioritize_files([_DEFAULT_PRIORITY] * ti.num_files())
            self._off_disk.remove(h)
        h.unset_flags(lt.torrent_flags.upload_mode)

    def move(self, key: str, save_path: Path, *, timeout: float = DISK_WAIT) -> None:
        """Move a work added off the disk from its staging folder to *save_path*, once it
        is checked, and wait until libtorrent has. A file already where the work's
        goes in *save_path* is kept, never replaced, and the work rechecked (libtorrent's
        dont_replace). StorageError when the move fails."""
        h = self._handles[key]
        if h in self._staged:  # from now on remove() leaves its files alone
            self._staged.remove(h)
        self._moves.pop(key, None)
        h.move_storage(str(save_path), lt.move_flags_t.dont_replace)
        deadline = time.monotonic() + timeout
        while key not in self._moves:
            if time.monotonic() > deadline:
                raise StorageError(f"libtorrent did not move the work to {save_path} within "
                                   f"{timeout:.0f} s", remedy="run the same fetch again")
            self._ses.wait_for_alert(100)
            self._drain()
        problem = self._moves.pop(key)
        if problem:
            raise StorageError(f"cannot move the work to {save_path}: {problem}",
                               remedy="check the folder's permissions and free space")

    def rekey(self, old: str, new: str) -> None:
        """Name a work by *new* from now on (its id is known once the metadata is)."""
        if new in self._handles:
            raise ValueError(f"work {new} is already in this session")
        self._handles[new] = self._handles.pop(old)
        self._verified[new] = self._verified.pop(old)
        self._uploaded[new] = self._uploaded.pop(old, {})
        self._received[new] = self._received.pop(old, {})
        self._connections[new] = self._connections.pop(old, {})
        self._live[new] = self._live.pop(old, set())
        if old in self._moves:
            self._moves[new] = self._moves.pop(old)
        if old in self._disk:
            self._disk[new] = self._disk.pop(old)

    def connect(self, key: str, peers: Iterable[tuple[str, int]]) -> None:
        h = self._handles[key]
        for p in peers:
            h.connect_peer(p)

    def remove(self, key: str, *, timeout: float = DISK_WAIT) -> None:
        """Take *key* out of the session. A work still in its staging folder (added off
        the disk, never moved) goes with what libtorrent made there, and this waits
        until libtorrent is done with that folder (its deletion comes after every disk
        job of the work, such as the one creating its empty files and links), so that
        the caller can remove the folder for good."""
        h = self._handles.pop(key, None)
        self._verified.pop(key, None)
        self._uploaded.pop(key, None)
        self._received.pop(key, None)
        self._connections.pop(key, None)
        self._live.pop(key, None)
        self._disk.pop(key, None)
        self._moves.pop(key, None)
        if h is None:
            return
        if h in self._off_disk:
            self._off_disk.remove(h)
        if h not in self._staged:
            self._ses.remove_torrent(h)
            return
        self._staged.remove(h)
        self._deleting.append(h)
        self._ses.remove_torrent(h, lt.session.delete_files)
        deadline = time.monotonic() + timeout
        while h in self._deleting and time.monotonic() < deadline:
            self._ses.wait_for_alert(100)
            self._drain()
        if h in self._deleting:  # the caller removes the folder anyway; sweep the rest
            self._deleting.remove(h)

    # -- reading --------------------------------------------------------------------------

    def works(self) -> list[str]:
        return list(self._handles)

    def info_section(self, key: str) -> bytes | None:
        """The raw info dict, once the metadata is there."""
        ti = self._handles[key].torrent_file()
        if ti is None:
            return None
        return bytes(ti.info_section())

    def layout(self, key: str) -> Layout | None:
        """The files libtorrent will write for *key*, and where, once the metadata is
        there: its own view, from the torrent it holds (see Layout)."""
        ti = self._handles[key].torrent_file()
        if ti is None:
            return None
        return layout_of(ti)

    def torrent_bytes(self, key: str) -> bytes | None:
        """A .torrent file for the work (info dict, plus piece layers when known)."""
        ti = self._handles[key].torrent_file()
        if ti is None:
            return None
        info = bytes(ti.info_section())
        return b"d4:info" + info + b"e"

    def status(self, key: str) -> WorkStatus:
        h = self._handles[key]
        s = h.status()
        state = _STATES.get(s.state, TorrentState.DOWNLOADING)
        if s.errc.value():
            state = TorrentState.ERROR
        upload_mode = bool(h.flags() & lt.torrent_flags.upload_mode)
        if key in self._disk and not (upload_mode or s.errc.value()):
            del self._disk[key]  # libtorrent retried the disk, and it worked
        disk_error, disk_full = self._disk.get(key, ("", False))
        return WorkStatus(
            key=key,
            name=str(s.name),
            state=state,
            progress=float(s.progress),
            total_wanted=int(s.total_wanted),
            total_done=int(s.total_wanted_done),
            down_rate=int(s.download_payload_rate),
            up_rate=int(s.upload_payload_rate),
            total_payload_download=int(s.total_payload_download),
            total_payload_upload=int(s.total_payload_upload),
            all_time_upload=int(s.all_time_upload),
            all_time_download=int(s.all_time_download),
            num_peers=int(s.num_peers),
            error=str(s.errc.message()) if s.errc.value() else "",
            has_metadata=bool(s.has_metadata),
            upload_mode=upload_mode,
            finished=bool(s.is_finished),
            disk_error=disk_error,
            disk_full=disk_full,
        )

    def verified_bytes(self, key: str) -> dict[PeerConnection, int]:
        """Payload bytes per peer connection whose pieces passed the hash check."""
        v = self._verified.get(key)
        if v is None:
            return {}
        if not v.settled and self._handles[key].status().is_seeding:
            # Complete: libtorrent reports no more deliveries once it holds every piece.
            # Take in the last pieces and the reports that came before, and what each
            # connected peer sent, then settle the blocks still waiting.
            self._drain()
            self.peers(key)
            v.settle(self._received.get(key, {}))
        return v.totals()

    def uploaded_bytes(self, key: str) -> dict[PeerConnection, int]:
        """Payload bytes this session sent per peer connection in *key*, kept after the
        peer left (see _Sent: exact while it is connected, then estimated for the last
        moments)."""
        return {c: s.total() for c, s in self._uploaded.get(key, {}).items()}

    def live_clients(self, key: str) -> list[str]:
        """The client strings of the peers connected to *key* right now. Safe to call
        from another thread than the one that ticks (it asks libtorrent directly and
        touches nothing of this object's state but a lookup)."""
        h = self._handles.get(key)
        if h is None:
            return []
        try:
            return [_client_text(p.client) for p in h.get_peer_info()]
        except RuntimeError:  # removed meanwhile
            return []

    def peer_client(self, connection: PeerConnection) -> str:
        """The client string a peer sent in the handshake of *connection*, if seen."""
        return self._clients.get(connection, "")

    def _connection(self, key: str, ep: str, pid: bytes, *, connected: bool = False
                    ) -> PeerConnection:
        """The connection at *ep* with peer id *pid* in *key*: the newest one there with
        that peer id, or a new one. *connected*: the peer list shows it connected now, so
        one seen gone is not it (the same peer came back on the same port), and the
        others at *ep* are gone (one connection per endpoint and work). Otherwise a block
        report, which may come from a connection that closed since (libtorrent reports a
        block once it is written)."""
        seen = self._connections.setdefault(key, {}).setdefault(ep, [])
        for s in reversed(seen):
            if s.pid == pid:
                if not (connected and s.gone):
                    if connected:
                        for other in seen:
                            other.gone = other is not s
                    return s.connection
                break
        if connected:
            for other in seen:
                other.gone = True
        self._serial += 1
        new = _Seen(PeerConnection(ep, self._serial), pid)
        seen.append(new)
        del seen[:-_CONNECTIONS_PER_ENDPOINT]
        return new.connection

    def _prune_clients(self) -> None:
        """Forget the connections (and client strings) of peers that are gone and traded
        no payload with this session, once there are over MAX_IDLE_CLIENTS: every
        connection, even one that says nothing but its handshake, leaves one behind."""
        size = max(len(self._clients), sum(len(c) for c in self._connections.values()))
        if size <= self._clients_cap:
            return
        keep: set[PeerConnection] = set()
        live: set[str] = set()
        for k, h in self._handles.items():
            keep.update(self._verified[k].totals() if k in self._verified else ())
            keep.update(self._uploaded.get(k, {}))
            with contextlib.suppress(RuntimeError):  # removed meanwhile
                live.update(f"{p.ip[0]}:{p.ip[1]}" for p in h.get_peer_info())
        self._clients = {c: t for c, t in self._clients.items()
                         if c in keep or c.endpoint in live}
        for k, got in self._received.items():
            self._received[k] = {c: n for c, n in got.items()
                                 if c in keep or c.endpoint in live}
        for k, at in self._connections.items():
            self._connections[k] = {
                ep: seen for ep, seen in at.items()
                if ep in live or any(s.connection in keep for s in seen)}
        # What must be kept (payload was traded) may itself be many: prune again only
        # once as many more have come.
        self._clients_cap = max(MAX_IDLE_CLIENTS, 2 * len(self._clients),
                                2 * sum(len(c) for c in self._connections.values()))

    def peers(self, key: str) -> list[PeerSnapshot]:
        self._prune_clients()
        out = []
        sent = self._uploaded.setdefault(key, {})
        now = time.monotonic()
        live: set[str] = set()
        for p in self._handles[key].get_peer_info():
            ip, port = p.ip
            ep = f"{ip}:{port}"
            live.add(ep)
            conn = self._connection(key, ep, p.pid.to_bytes(), connected=True)
            client = _client_text(p.client)
            if client:
                self._clients[conn] = client
            if p.total_download:
                got = self._received.setdefault(key, {})
                got[conn] = max(got.get(conn, 0), int(p.total_download))
            if p.total_upload:
                s = sent.get(conn)
                if s is None:
                    s = sent[conn] = _Sent()
                s.polled(int(p.total_upload), int(p.payload_up_speed), now)
            out.append(
                PeerSnapshot(
                    endpoint=ep,
                    client=client,
                    downloaded=int(p.total_download),
                    uploaded=int(p.total_upload),
                    down_rate=int(p.payload_down_speed),
                    up_rate=int(p.payload_up_speed),
                    is_seed=bool(p.flags & lt.peer_info.seed),
                    connection=conn,
                )
            )
        # A connection not in the list is gone: one that comes to its endpoint next is new.
        at = self._connections.get(key, {})
        for ep in self._live.get(key, set()) - live:
            for seen in at.get(ep, ()):
                seen.gone = True
        self._live[key] = live
        return out

    # -- alerts and resume data -----------------------------------------------------------

    def _key_of(self, handle: Any) -> str | None:
        for k, h in self._handles.items():
            if h == handle:
                return k
        return None

    def _piece_data(self, key: str, piece: int) -> int:
        """Bytes of real file data in *piece*: its size less BEP 47 pad files."""
        ti = self._handles[key].torrent_file()
        if ti is None:
            return 0
        size = int(ti.piece_size(piece))
        layout = ti.layout()
        pad = sum(
            int(sl.size) for sl in ti.map_block(piece, 0, size)
            if layout.file_flags(sl.file_index) & lt.file_storage.flag_pad_file
        )
        return size - pad

    def _drain(self) -> None:
        for a in self._ses.pop_alerts():
            if isinstance(a, lt.block_finished_alert | lt.block_downloading_alert):
                k = self._key_of(a.handle)
                if k is not None:
                    pid = a.pid.to_bytes()
                    conn = self._connection(k, f"{a.endpoint[0]}:{a.endpoint[1]}", pid)
                    piece, block = int(a.piece_index), int(a.block_index)
                    if isinstance(a, lt.block_downloading_alert):
                        self._verified[k].requested(piece, block, conn)
                    else:
                        if conn not in self._clients:
                            self.peers(k)  # learn its client string while it is connected
                        if conn not in self._clients:
                            # Gone already: a transfer that ends between two polls ends
                            # with libtorrent closing the seed-to-seed link. Name the peer
                            # by its peer id (until its handshake's string is seen).
                            self._clients[conn] = _client_from_peer_id(pid)
                        self._verified[k].delivered(piece, block, conn)
            elif isinstance(a, lt.block_uploaded_alert):
                k = self._key_of(a.handle)
                if k is not None:
                    conn = self._connection(k, f"{a.endpoint[0]}:{a.endpoint[1]}",
                                            a.pid.to_bytes())
                    s = self._uploaded.setdefault(k, {}).get(conn)
                    if s is None:
                        s = self._uploaded[k][conn] = _Sent()
                        if conn not in self._clients:
                            self.peers(k)  # learn its client string while it is connected
                    s.block_sent(time.monotonic())
            elif isinstance(a, lt.piece_finished_alert):
                k = self._key_of(a.handle)
                if k is not None:
                    piece = int(a.piece_index)
                    self._verified[k].piece_passed(piece, self._piece_data(k, piece))
            elif isinstance(a, lt.hash_failed_alert):
                k = self._key_of(a.handle)
                if k is not None:
                    self._verified[k].piece_failed(int(a.piece_index))
            elif isinstance(a, lt.save_resume_data_alert):
                k = self._key_of(a.handle)
                if k is not None:
                    self._resume[k] = bytes(lt.write_resume_data_buf(a.params))
            elif isinstance(a, lt.save_resume_data_failed_alert):
                k = self._key_of(a.handle)
                if k is not None:
                    self._resume.setdefault(k, b"")
            elif isinstance(a, lt.storage_moved_alert | lt.storage_moved_failed_alert):
                k = self._key_of(a.handle)
                if k is not None:
                    failed = isinstance(a, lt.storage_moved_failed_alert)
                    self._moves[k] = str(a.message()) if failed else ""
            elif isinstance(a, lt.torrent_deleted_alert | lt.torrent_delete_failed_alert):
                self._deleting = [h for h in self._deleting if h != a.handle]
            elif isinstance(a, lt.file_error_alert):
                # On a write error libtorrent puts the work in upload mode and goes on
                # quietly: remember the first error, or a fetch waits for data in vain.
                k = self._key_of(a.handle)
                if k is not None and k not in self._disk:
                    self._disk[k] = _disk_problem(a)
                self._errors.append(str(a.message()))
            elif isinstance(a, lt.listen_failed_alert):
                self._errors.append(str(a.message()))
            elif isinstance(a, lt.external_ip_alert):
                # The address peers say they see (libtorrent's vote over trackers, DHT
                # and peers' BEP 10 yourip): a hint only. One peer can cast it, so it is
                # never signed (identity proofs vouch for --external-address instead).
                self.external_hosts = (self.external_hosts | {str(a.external_address)})
                if len(self.external_hosts) > 4:
                    self.external_hosts = {str(a.external_address)}

    def poll(self) -> list[str]:
        """Process pending events; return (and clear) error messages seen since last poll."""
        self._drain()
        errs, self._errors = self._errors, []
        return errs

    def save_resume(
        self, keys: Iterable[str] | None = None, timeout: float = 10.0
    ) -> dict[str, bytes]:
        """Ask for resume data of *keys* (default: all with metadata) and wait for it."""
        want = []
        for k in list(keys if keys is not None else self._handles):
            h = self._handles[k]
            if h.is_valid() and h.status().has_metadata:
                self._resume.pop(k, None)
                h.save_resume_data(lt.torrent_handle.save_info_dict)
                want.append(k)
        deadline = time.monotonic() + timeout
        while any(k not in self._resume for k in want) and time.monotonic() < deadline:
            self._ses.wait_for_alert(100)
            self._drain()
        return {k: self._resume[k] for k in want if self._resume.get(k)}

    def close(self) -> None:
        """Stop the session; callers save resume data first."""
        if self._ses is None:
            return
        for h in list(self._handles.values()):
            with contextlib.suppress(RuntimeError):
                self._ses.remove_torrent(h)
        self._handles.clear()
        self._ses = None

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Seen:
    """A connection seen at an endpoint: its peer id, and whether it was seen gone."""

    __slots__ = ("connection", "gone", "pid")

    def __init__(self, connection: PeerConnection, pid: bytes) -> None:
        self.connection, self.pid, self.gone = connection, pid, False


class _Sent:
    """Payload bytes sent over one peer connection.

    libtorrent counts a connection's payload bytes exactly, as they are written
    (peer_info.total_upload), but only while the peer is connected; its per-torrent total
    follows a second later. So the last exact figure is kept, and each block placed in the
    send buffer since (block_uploaded_alert) adds one block (16 KiB) on top, for a peer
    that leaves between two polls. A peer asking for a byte at a time would make the
    blocks overcount, so they add at most what the rate seen at the last poll could carry
    by then, plus two blocks."""

    __slots__ = ("_at", "_exact", "_rate", "_tail")

    def __init__(self) -> None:
        self._exact = self._rate = self._tail = 0
        self._at = time.monotonic()

    def polled(self, total: int, rate: int, now: float) -> None:
        self._exact = max(self._exact, total)
        self._rate, self._at, self._tail = rate, now, 0

    def block_sent(self, now: float) -> None:
        cap = 2 * BLOCK + int(self._rate * (now - self._at + 1.0))
        self._tail = min(self._tail + BLOCK, cap)

    def total(self) -> int:
        return self._exact + self._tail


def _disk_problem(a: Any) -> tuple[str, bool]:
    """A file_error_alert in words: (what failed, whether the disk is full)."""
    code = a.error
    full = code.category().name() in ("system", "generic") and code.value() in (
        errno.ENOSPC, errno.EDQUOT)
    name = str(a.filename() or "") or "the work's files"
    return f"{name}: {code.message()}", full


# Peer-id prefixes (BEP 20 "-XXvvvv-" style, and aria2's own) of the clients people run.
_PEER_ID_NAMES = {
    "A2": "aria2", "TR": "Transmission", "qB": "qBittorrent", "LT": "libtorrent",
    "lt": "rTorrent", "DE": "Deluge", "UT": "µTorrent", "BI": "BiglyBT", "AZ": "Vuze",
}


def _client_from_peer_id(pid: bytes) -> str:
    """A display name from a peer id, e.g. "aria2 (peer id A2-1-36-0-)". Never a p2pdist
    claim: those come only from the BEP 10 handshake."""
    if pid[:1] == b"-" and pid[7:8] == b"-":
        prefix = pid[:8]  # -TR3000-
        code = prefix[1:3]
    else:
        prefix = pid[:10] if pid[:3] == b"A2-" else pid[:8]
        code = prefix[:2]
    text = "".join(chr(c) if 0x21 <= c < 0x7F else "?" for c in prefix)
    name = _PEER_ID_NAMES.get(code.decode("ascii", "replace"))
    return f"{name} (peer id {text})" if name else f"peer id {text}"


# A p2pdist client string is under 100 characters; a peer's is kept to this many (it is
# held per peer and shown in status), and shown escaped (p2pdist._text.shown).
MAX_CLIENT_TEXT = 256


def _client_text(raw: object) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text[:MAX_CLIENT_TEXT]


