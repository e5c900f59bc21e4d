"""Fuzzing .torrent files and magnet links along the path `fetch` and `license` take.

A torrent is read from a file (`_resolve_source`), added held to a real libtorrent
session on 127.0.0.1, its info dict read back, its license verified (an unlicensed one
accepted as with --allow-unlicensed), its file names checked against --dest, then
removed. A magnet link is parsed and added held to the same session. Each input must
pass or end in a P2PDistError within 10 s.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given

from p2pdist import _canonical, node
from p2pdist.errors import NotLicensed, P2PDistError
from p2pdist.library import Library
from p2pdist.licensing import license_of_info
from p2pdist.swarm import Profile, Swarm, info_section, magnet_info, torrent_name
from tests.fuzz._harness import FUZZ, clean
from tests.fuzz._mutate import mutants, text_mutants
from tests.fuzz._seeds import ADA, seeds

_keys = itertools.count()


@pytest.fixture(scope="module")
def swarm() -> Iterator[Swarm]:
    with Swarm(profile=Profile.LOCAL, listen=("127.0.0.1", 0)) as s:
        yield s


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    p = Path(tempfile.mkdtemp(prefix="p2pdist-fuzz-"))
    (p / "home").mkdir()
    (p / "dest").mkdir()
    yield p
    shutil.rmtree(p, ignore_errors=True)


def _manifest_of(torrent: bytes) -> bytes:
    return license_of_info(info_section(torrent))[1].manifest_bytes


def _resign_torrent(torrent: bytes, manifest: bytes) -> bytes:
    """The torrent with *manifest* in its license, signed by its holder Ada."""
    from p2pdist.licensing import DOMAIN

    t = _canonical.decode(torrent, max_size=len(torrent))
    t["info"]["p2pdist"]["manifest"] = manifest
    t["info"]["p2pdist"]["signatures"] = [
        {"pk": ADA.public_key, "sig": ADA.sign(domain=DOMAIN, message=manifest)}]
    return _canonical.encode(t)


def _fetch_path(data: bytes, swarm: Swarm, scratch: Path) -> None:
    """What `fetch FILE --dest DIR --allow-unlicensed` does with the file's bytes before
    any payload flows (reading the file itself: test_hostile_inputs.py)."""
    info_section(data)  # _resolve_source: the work's ids
    torrent_name(data)
    key = f"t{next(_keys)}"
    dest = scratch / "dest"
    swarm.add_torrent(key, data, dest, hold=True)
    try:
        info = swarm.info_section(key)
        assert info is not None
        layout = swarm.layout(key)
        assert layout is not None
        with contextlib.suppress(NotLicensed):  # as with --allow-unlicensed
            node.verify_work(info, layout)
        node._check_paths(info, layout, dest, overwrite=False)
        swarm.status(key)
    finally:
        swarm.remove(key)


@FUZZ
@given(data=mutants(lambda: seeds().torrents, body_of=_manifest_of, resign=_resign_torrent))
def test_fuzzed_torrent_fetch_ends_in_a_clean_error(data: bytes, swarm: Swarm,
                                                   scratch: Path) -> None:
    clean("torrent", lambda: _fetch_path(data, swarm, scratch))


def _magnet_path(uri: str, swarm: Swarm, scratch: Path) -> None:
    """What `fetch MAGNET --peer ...` does before it waits for the metadata."""
    src = node._resolve_source(uri, Library(scratch / "home"))
    assert src.magnet == uri
    key = f"m{next(_keys)}"
    swarm.add_magnet(key, uri, scratch / "dest", peers=[("127.0.0.1", 9)])
    try:
        swarm.status(key)
        swarm.trackers(key)
    finally:
        swarm.remove(key)


@FUZZ
@given(uri=text_mutants(lambda: seeds().magnets))
def test_fuzzed_magnet_link_ends_in_a_clean_error(uri: str, swarm: Swarm,
                                                 scratch: Path) -> None:
    if not uri.startswith("magnet:"):
        # Not a magnet: SOURCE is then a path or a work id; magnet_info must still refuse.
        err = clean("magnet", lambda: magnet_info(uri))
        assert isinstance(err, P2PDistError)
        return
    clean("magnet", lambda: _magnet_path(uri, swarm, scratch))
