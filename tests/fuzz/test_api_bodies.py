"""Fuzzing the node API of a real `seed` process with Hypothesis, 1,000 requests an endpoint.

The seeds are real requests made with p2pdist's own code (a signed receipt, a signed
purchase with a real voucher, a fresh identity challenge, the control token); Hypothesis
mutates them and their framing (content types, missing, short, huge, negative or doubled
Content-Length, chunked encoding) and mixes in random bytes, non-UTF-8, deep nesting and
huge numbers. The promise: every answer is the right 200 or a 4xx with a JSON reason,
within 10 s, and the node stays up without a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import nacl.signing
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from p2pdist._api import MAX_BODY, prove_identity
from p2pdist._proof import CHALLENGE_LEN, SignedProof, verify_proof
from p2pdist.identity import (
    Identity,
    key_from_text,
    key_to_text,
    load_identity,
    load_public_identity,
)
from p2pdist.payouts.payments import PurchaseRequest, SignedPurchase
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt, next_receipt
from tests.conftest import PASSPHRASE, free_port, run_cli
from tests.integration._rawhttp import assert_clean_refusal, exchange
from tests.integration._story import Seeder, make_album

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


@dataclass
class Node:
    seeder: Seeder
    api: int
    control: int
    token: str
    pk: bytes
    receipts: list[bytes]
    purchases: list[bytes]

    def alive(self) -> None:
        assert self.seeder.proc is not None and self.seeder.proc.poll() is None
        assert prove_identity("127.0.0.1", self.api, pk=self.pk, timeout=10) == "Ada"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A seller seeding a paid work, and valid requests to it made by p2pdist's code."""
    root = tmp_path_factory.mktemp("fuzz-api")
    album = make_album(root / "studio" / "Night", [70_000])
    artist = root / "ada"
    run_cli(artist, "init", "--name", "Ada")
    pub = json.loads(run_cli(artist, "publish", str(album), "--title", "Night", "--price",
                             "5.00", "--currency", "EUR", "--out", str(root / "n.torrent"),
                             "--json").stdout)
    codes = json.loads(run_cli(artist, "vouchers", "issue", pub["work"], "--count", "3",
                               "--json").stdout)["codes"]
    pk = load_public_identity(artist).public_key
    work, now, size = bytes.fromhex(pub["work"]), datetime.now(UTC), int(pub["size"])
    purchases = []
    for i, code in enumerate(codes):
        fan = Identity(f"fan{i}", nacl.signing.SigningKey.generate())
        r = SignedReceipt.sign(next_receipt(None, work=work, uploader=pk,
                                            downloader=fan.public_key,
                                            total_bytes=1000 * i, now=now), fan).to_bytes()
        purchases.append(SignedPurchase.sign(PurchaseRequest.seal(
            work=work, buyer=fan.public_key, seller=pk, method="voucher", payment=code,
            nonce=os.urandom(16), ts=now.replace(microsecond=0), receipts=(r,)), fan
        ).to_bytes())
    api, bt = free_port(), free_port()
    with Seeder(artist, bt, "--api-listen", f"127.0.0.1:{api}") as seeder:
        # The node keeps receipts only from keys it sent the work to: the receipts to
        # mutate are those of a fan it served (seq 1 came with the fetch).
        fan_home = root / "fan"
        run_cli(fan_home, "init", "--name", "fan")
        run_cli(fan_home, "fetch", pub["magnet"], "--dest", str(root / "copy"), "--local",
                "--peer", f"127.0.0.1:{bt}")
        fan = load_identity(fan_home, passphrase=PASSPHRASE)
        receipts = [SignedReceipt.sign(TransferReceipt(
            work=work, uploader=pk, downloader=fan.public_key, seq=seq, bytes=size,
            ts=now.replace(microsecond=0)), fan).to_bytes() for seq in (2, 3, 4)]
        control = json.loads((artist / "control.json").read_text())
        n = Node(seeder, api, control["port"], control["token"], pk, receipts, purchases)
        n.alive()
        yield n
        n.alive()
        err = seeder.stop()
        assert "Traceback" not in err, err


# -- what to send ------------------------------------------------------------------------

@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with 0 to 4 byte-level mutations."""
    b = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        i = draw(st.integers(0, len(b)))
        if op == "flip" and i < len(b):
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del b[i:i + draw(st.integers(1, 16))]
        elif op == "truncate":
            del b[i:]
        else:
            b[i:i] = b[i:i + draw(st.integers(1, 64))] * draw(st.integers(1, 50))
    return bytes(b)


def _nested(n: int, open_: bytes, close: bytes) -> bytes:
    return open_ * n + close * n


HOSTILE = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(lambda t: t.encode("utf-16")),  # not UTF-8
    st.integers(1, 30_000).map(lambda n: _nested(n, b"[", b"]")),  # deep JSON
    st.integers(1, 6_000).map(lambda n: _nested(n, b'{"a":', b"}")[:-n] + b"1" + b"}" * n),
    st.integers(1, 30_000).map(lambda n: _nested(n, b"l", b"e")),  # deep bencode
    st.integers(1, 6_000).map(lambda n: b"d1:a" * n + b"i0e" + b"e" * n),
    st.integers(1, 60_000).map(lambda n: b"i" + b"9" * n + b"e"),  # huge numbers
    st.integers(1, 60_000).map(lambda n: b'{"bytes": ' + b"9" * n + b"}"),
    st.integers(1, 60_000).map(lambda n: b"-" + b"1" * n + b"e400"),
    st.integers(1, 5_000).map(lambda n: b"%d:" % (10 ** 12) + b"x" * n),  # lying length
    st.integers(MAX_BODY + 1, MAX_BODY + 4096).map(lambda n: b"x" * n),  # over the cap
)

CONTENT_TYPES = st.sampled_from([
    None, b"application/octet-stream", b"application/json", b"text/plain; charset=utf-8",
    b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded", b"",
    b"\xff\xfe\x00garbage", b"application/json; charset=utf-16",
])

FRAMINGS = st.sampled_from([
    "exact", "exact", "exact", "missing", "short", "long", "huge", "giant", "negative",
    "not-a-number", "spaces", "twice-same", "twice-different", "chunked", "chunked-and-length",
])


def frame(method: bytes, target: bytes, body: bytes, framing: str,
          content_type: bytes | None, extra: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The request on the wire, and the body the server should take from it."""
    headers = [(b"Host", b"127.0.0.1")]
    if content_type is not None:
        headers.append((b"Content-Type", content_type))
    n, read = len(body), body
    lengths = {"exact": [b"%d" % n], "missing": [], "short": [b"%d" % (n // 2)],
               "long": [b"%d" % (n + 100)], "huge": [b"%d" % (10 ** 15)],
               "giant": [b"9" * 5000], "negative": [b"-%d" % n], "not-a-number": [b"0x10"],
               "spaces": [b"  %d  " % n], "twice-same": [b"%d" % n] * 2,
               "twice-different": [b"%d" % n, b"%d" % (n + 1)],
               "chunked": [], "chunked-and-length": [b"%d" % n]}[framing]
    headers += [(b"Content-Length", v) for v in lengths]
    if framing.startswith("chunked"):
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (n, body) if n else b"0\r\n\r\n"
    if framing == "short":
        read = body[:n // 2]
    elif framing == "missing":
        read = b""
    head = b"%s %s HTTP/1.1\r\n" % (method, target)
    head += b"".join(b"%s: %s\r\n" % kv for kv in headers + extra)
    return head + b"\r\n" + body, read


EXTRA = st.lists(st.tuples(
    st.sampled_from([b"X-Junk", b"Accept", b"Connection", b"Expect", b"Cookie", b"Range"]),
    st.one_of(st.binary(max_size=64).filter(lambda v: b"\r" not in v and b"\n" not in v),
              st.sampled_from([b"keep-alive", b"100-continue", b"close", b"bytes=0-1"]))),
    max_size=3)


def check_body_endpoint(node: Node, path: bytes, valid: list[bytes], body: bytes,
                        framing: str, content_type: bytes | None,
                        extra: list[tuple[bytes, bytes]]) -> None:
    wire, read = frame(b"POST", path, body, framing, content_type, extra)
    a = exchange(node.api, wire)
    event(f"HTTP {a.status} {(a.doc or {}).get('reason', '')}")
    if a.status == 200:
        # Only a request that is one of the real ones, framed so that it arrives whole.
        assert read in valid and framing in ("exact", "spaces", "twice-same"), wire[:300]
        assert isinstance(a.doc, dict) and a.doc.get("ok") is True, a.raw[:300]
    else:
        assert_clean_refusal(a, request=wire)


# -- the endpoints -----------------------------------------------------------------------

@FUZZ
@given(data=st.data(), framing=FRAMINGS, content_type=CONTENT_TYPES, extra=EXTRA)
def test_receipts_fuzzed_bodies_get_a_4xx_and_the_node_stays_up(
        node: Node, data: st.DataObject, framing: str, content_type: bytes | None,
        extra: list[tuple[bytes, bytes]]) -> None:
    body = data.draw(st.one_of(mutated(node.receipts), HOSTILE))
    check_body_endpoint(node, b"/receipts", node.receipts, body, framing, content_type, extra)


def test_receipts_fuzzing_left_the_node_answering(node: Node) -> None:
    node.alive()


@FUZZ
@given(data=st.data(), framing=FRAMINGS, content_type=CONTENT_TYPES, extra=EXTRA)
def test_purchase_fuzzed_bodies_get_a_4xx_and_the_node_stays_up(
        node: Node, data: st.DataObject, framing: str, content_type: bytes | None,
        extra: list[tuple[bytes, bytes]]) -> None:
    body = data.draw(st.one_of(mutated(node.purchases), HOSTILE))
    check_body_endpoint(node, b"/purchase", node.purchases, body, framing, content_type, extra)


@FUZZ
@given(data=st.data(), framing=FRAMINGS, extra=EXTRA)
def test_identity_fuzzed_challenges_get_a_4xx_or_a_true_proof(
        node: Node, data: st.DataObject, framing: str, extra: list[tuple[bytes, bytes]]
) -> None:
    asker = os.urandom(32)
    valid = (f"/identity?challenge={os.urandom(CHALLENGE_LEN).hex()}"
             f"&asker={key_to_text(asker)}&endpoint=127.0.0.1%3A{node.api}").encode()
    target = data.draw(st.one_of(
        mutated([valid]),
        st.binary(max_size=300).map(lambda b: b"/identity?challenge=" + b),
        st.text(max_size=200).map(lambda t: ("/identity?" + t).encode("utf-8")),
        st.integers(0, 40).map(lambda n: b"/identity?" + b"&".join(b"a=%d" % i
                                                                     for i in range(n))),
        st.integers(1, 12_000).map(lambda n: valid + b"&x=" + b"y" * n),
    ))
    method = data.draw(st.sampled_from([b"GET", b"GET", b"POST"]))
    body = data.draw(st.one_of(st.just(b""), st.binary(max_size=256)))
    wire, _ = frame(method, target, body, framing, None, extra)
    a = exchange(node.api, wire)
    event(f"HTTP {a.status} {(a.doc or {}).get('reason', '')}")
    if a.status != 200:
        assert_clean_refusal(a, request=wire)
        return
    # A 200 is a true proof of the node's key over the challenge it names, for the
    # endpoint dialed and never another.
    doc = a.doc
    assert isinstance(doc, dict) and key_from_text(doc["pk"]) == node.pk, a.raw[:300]
    signed = SignedProof.from_bytes(bytes.fromhex(doc["proof"]))
    verify_proof(signed, asker=signed.proof.asker, endpoint=f"127.0.0.1:{node.api}",
                 challenge=None, keys=(node.pk,))
    assert signed.proof.challenge.hex().encode() in wire.lower()
    assert key_to_text(signed.proof.asker).encode() in wire.lower()


def test_identity_fuzzing_left_the_node_answering(node: Node) -> None:
    node.alive()


@FUZZ
@given(data=st.data())
def test_control_status_fuzzed_headers_need_the_exact_token(
        node: Node, data: st.DataObject) -> None:
    good = b"Bearer " + node.token.encode()
    auth = data.draw(st.one_of(st.just(good), mutated([good]), st.binary(max_size=200),
                               st.sampled_from([b"", b"Bearer", b"Bearer ", b"Basic x",
                                                good.lower(), good + b" ", b" " + good])))
    name = data.draw(st.sampled_from([b"Authorization", b"authorization", b"AUTHORIZATION",
                                      b"Authorisation", b"Authorization ", b"X-Token"]))
    headers = [(name, auth)] * data.draw(st.integers(0, 3))
    headers += data.draw(st.lists(st.tuples(
        st.binary(min_size=1, max_size=40), st.binary(max_size=200)), max_size=4))
    headers += [(b"X-Pad", b"p" * data.draw(st.sampled_from([0, 100, 9000])))] \
        * data.draw(st.integers(0, 3))
    headers = [(k, v.replace(b"\r", b"").replace(b"\n", b"")) for k, v in headers]
    headers = [(k.replace(b"\r", b"").replace(b"\n", b""), v) for k, v in headers]
    target = data.draw(st.sampled_from([b"/status", b"/status?x=1", b"/../status",
                                        b"/status/", b"//status", b"/STATUS"]))
    method = data.draw(st.sampled_from([b"GET", b"GET", b"POST", b"HEAD"]))
    wire = b"%s %s HTTP/1.1\r\n" % (method, target)
    wire += b"".join(b"%s: %s\r\n" % kv for kv in headers) + b"\r\n"
    a = exchange(node.control, wire)
    event(f"HTTP {a.status} {(a.doc or {}).get('reason', '')}")
    if a.status == 200:
        assert node.token.encode() in wire and method == b"GET", wire[:300]
        assert isinstance(a.doc, dict) and a.doc.get("running") is True
    else:
        assert_clean_refusal(a, request=wire)
