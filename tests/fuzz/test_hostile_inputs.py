"""Inputs built to exhaust a parser: 100,000-deep nesting, 10 million bencode items,
files far over every size cap, /dev/zero, JSON nested 100,000 deep from a hostile peer.

Each is refused with a named P2PDistError in well under 10 s, and a file over its cap is
refused before it is read (the CLI tests in test_cli_hostile.py measure the memory).
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2pdist import _json, node
from p2pdist._api import identify, post, prove_identity
from p2pdist._control import _read_handle
from p2pdist.errors import (
    InputError,
    KeyFileError,
    LibraryError,
    MalformedObject,
    P2PDistError,
    SourceError,
    StorageError,
)
from p2pdist.identity import load_public_identity
from p2pdist.label import load_works, verify_statement_file
from p2pdist.library import Library
from p2pdist.licensing import (
    LicenseManifest,
    SignedCertificate,
    SignedManifest,
    license_of_info,
    verify_info,
)
from p2pdist.licensing._grant import SignedGrant
from p2pdist.payouts.audit import audit
from p2pdist.payouts.ledger import MAX_BUNDLE_SIZE, SignedCheckpoint, verify_bundle
from p2pdist.payouts.payments import SignedPayment, SignedPurchase
from p2pdist.payouts.receipts import SignedReceipt
from p2pdist.payouts.statement import MAX_STATEMENT_SIZE, SignedStatement
from p2pdist.swarm import MAX_TORRENT_SIZE, info_section, magnet_info
from p2pdist.trust import TrustStore
from tests.fuzz._harness import LIMIT
from tests.fuzz._seeds import seeds

DEEP = 100_000
DEEP_LIST = b"l" * DEEP + b"e" * DEEP
DEEP_DICT = b"d1:a" * DEEP + b"i0e" + b"e" * DEEP
DEEP_JSON = b"[" * DEEP + b"]" * DEEP


def _refused(fn: Callable[[], object],
             error: type[P2PDistError] | tuple[type[P2PDistError], ...] = P2PDistError,
             limit: float = LIMIT) -> P2PDistError:
    start = time.monotonic()
    with pytest.raises(error) as e:
        fn()
    took = time.monotonic() - start
    assert took < limit, f"refused, but after {took:.1f} s"
    assert e.value.message
    return e.value


def _draft(tmp: Path, data: bytes) -> Callable[[], object]:
    def read() -> object:
        p = tmp / "x.p2pm"
        p.write_bytes(data)
        return node.read_draft(p)
    return read


READERS: dict[str, Callable[[bytes], object]] = {
    "torrent": info_section,
    "info dict": license_of_info,
    "signed license": SignedManifest.from_bytes,
    "license manifest": LicenseManifest.from_bytes,
    "certificate": SignedCertificate.from_bytes,
    "transfer receipt": SignedReceipt.from_bytes,
    "payment receipt": SignedPayment.from_bytes,
    "purchase request": SignedPurchase.from_bytes,
    "grant": SignedGrant.from_bytes,
    "statement": SignedStatement.from_bytes,
    "checkpoint": SignedCheckpoint.from_bytes,
    "bundle": verify_bundle,
}


@pytest.mark.parametrize("shape", ["list", "dict"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_bencode_nested_100000_deep_is_refused_by_every_reader(reader: str, shape: str
                                                               ) -> None:
    data = DEEP_LIST if shape == "list" else DEEP_DICT
    _refused(lambda: READERS[reader](data), (MalformedObject, SourceError))


def test_bencode_nested_100000_deep_in_a_draft_or_an_audit_is_refused(tmp_path: Path) -> None:
    _refused(_draft(tmp_path, DEEP_LIST), MalformedObject)
    report = audit([DEEP_LIST, DEEP_DICT], seeds().works)  # a finding, never an exception
    assert [f.kind for f in report.findings] == ["bad-bundle", "bad-bundle"]


def test_torrent_of_10_million_items_is_refused_in_seconds() -> None:
    data = b"d4:infol" + b"i0e" * 10_000_000 + b"ee"
    assert len(data) < MAX_TORRENT_SIZE  # under the size cap: the item cap must hold
    e = _refused(lambda: info_section(data), SourceError)
    assert "item count limit" in e.message


def test_bundle_of_10_million_items_is_refused_in_seconds() -> None:
    data = (b"d10:checkpointd10:checkpoint0:3:sig0:4:type0:1:vi1ee7:entriesl"
            + b"i0e" * 10_000_000 + b"e4:node0:4:type0:1:vi1ee")
    _refused(lambda: verify_bundle(data), MalformedObject)
    report = audit([data], seeds().works)
    assert [f.kind for f in report.findings] == ["bad-bundle"]


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_100_mb_torrent_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = _sparse(tmp_path / "big.torrent", 100 * 1024 * 1024)
    e = _refused(lambda: node._resolve_source(str(big), Library(tmp_path / "home")),
                 SourceError)
    assert "too large" in e.message
    e = _refused(lambda: load_works(tmp_path, [big]), InputError)  # audit --works
    assert "too large" in e.message


def test_object_far_over_its_cap_is_refused_before_it_is_parsed() -> None:
    # 300 MB of one long string: over every cap, bundles' 256 MiB included. A parser
    # that looked before measuring would walk it; the size check answers at once.
    data = b"300000000:" + bytes(300_000_000)
    for reader in sorted(READERS):
        e = _refused(lambda r=reader: READERS[r](data), (MalformedObject, SourceError),
                     limit=2.0)
        assert "too large" in e.message, reader


def test_license_over_its_cap_inside_a_torrent_is_refused(tmp_path: Path) -> None:
    from p2pdist import _canonical

    t = _canonical.decode(seeds().torrents[0], max_size=1 << 20)
    t["info"]["p2pdist"]["manifest"] = b"d" + b"0" * 2 * 1024 * 1024
    e = _refused(lambda: verify_info(info_section(_canonical.encode(t))),
                 MalformedObject)
    assert "too large" in e.message


@pytest.mark.parametrize(("what", "limit"), [("bundle", MAX_BUNDLE_SIZE),
                                             ("statement", MAX_STATEMENT_SIZE)])
def test_file_over_its_cap_is_refused_before_it_is_read(tmp_path: Path, what: str,
                                                        limit: int) -> None:
    big = _sparse(tmp_path / f"big.{what}", limit + 1)
    if what == "bundle":
        e = _refused(lambda: node.import_receipts(tmp_path / "home", [big]), InputError,
                     limit=2.0)
    else:
        e = _refused(lambda: verify_statement_file(big, home=tmp_path / "home"), InputError,
                     limit=2.0)
    assert "too large" in e.message


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_file_is_read_no_further_than_its_cap(tmp_path: Path) -> None:
    # /dev/zero says it is empty and never ends: only a bounded read stops.
    e = _refused(lambda: verify_statement_file(Path("/dev/zero"), home=tmp_path / "home"),
                 InputError)
    assert "too large" in e.message


def test_json_nested_100000_deep_is_a_clean_error_in_every_reader(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        _json.loads(DEEP_JSON)
    home = tmp_path / "home"
    (home / "library").mkdir(parents=True)
    record = home / "library" / ("ab" * 32 + ".json")
    record.write_bytes(DEEP_JSON)
    _refused(lambda: Library(home).all(), LibraryError)
    key = home / "identity.key"
    key.write_bytes(DEEP_JSON)
    key.chmod(0o600)
    _refused(lambda: load_public_identity(home), KeyFileError)
    store = TrustStore(home)
    store.path.write_bytes(DEEP_JSON)
    _refused(store.all, StorageError)
    from p2pdist._control import CONTROL_FILE

    (home / CONTROL_FILE).write_bytes(DEEP_JSON[:4000])
    assert _read_handle(home) is None  # no control file to trust: "no node running"


class _Hostile(http.server.BaseHTTPRequestHandler):
    """A peer whose API answers every request with 64 KiB of '[[[[…'."""

    body = b"[" * (64 * 1024)

    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_peer() -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()
    t.join(5)


def test_peer_answering_json_nested_64k_deep_gets_a_clean_refusal(
        hostile_peer: tuple[str, int]) -> None:
    host, port = hostile_peer
    _refused(lambda: identify(host, port, timeout=5))
    _refused(lambda: prove_identity(host, port, pk=bytes(32), timeout=5))
    assert post(host, port, "/receipts", b"x", timeout=5) == (200, {})


def test_magnet_with_a_name_that_is_not_utf8_is_refused() -> None:
    for field in ("dn=%ff%fe", "ws=%ff", "dn=%E2"):
        e = _refused(lambda f=field: magnet_info(f"magnet:?xt=urn:btih:{'a' * 40}&{f}"),
                     SourceError)
        assert "UTF-8" in e.message
    assert os.environ["P2PDIST_NETWORK"] == "local"
