"""How payments.json was made: purchase requests, payment receipts (v2) and license
grants. Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_payment_vectors.py   # rewrite payments.json

A payment receipt embeds a purchase request pinned here and an issuance record pinned in
issuances.json (make_issuance_vectors.py, imported from this folder): change those first.

Only rerun it on purpose: the vectors pin today's bytes of three signed formats that a
buyer's and a seller's node must agree on. tests/unit/test_payments.py rebuilds every
object from its ``input`` section on its own and compares byte for byte.

Keys are fixed seeds (the buyer ``bytes(range(32))``, the seller ``bytes(range(32, 64))``,
a second buyer ``bytes(range(64, 96))``, uploaders ``bytes([i]) * 32``); ed25519 is
deterministic, so the signatures are stable. The embedded transfer receipts are real
SignedReceipt envelopes, signed by the buyer as their downloader.

A sealed box is randomized (an ephemeral X25519 key), so a grant's ``sealed_key`` and a
purchase request's ``sealed_payment`` are *inputs*: made once with
``seal_key(CONTENT_KEY, buyer)`` and ``seal_payment(payment, work=, buyer=, seller=,
nonce=)`` and hard-coded below. The test checks that the buyer's secret key opens the
first to CONTENT_KEY, and the seller's opens the second to the case's ``payment``, bound
to the case's request.

The expected ``served_by`` of each purchase is computed here with exact fractions and the
largest-remainder rule, independently of ``served_by_from_receipts``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import nacl.signing

# Run as a script: this folder is on sys.path.
from make_issuance_vectors import ISSUANCE_CASES, build_issuance, code_hashes, proof

from p2pdist.identity import Identity, key_to_text
from p2pdist.licensing._grant import LicenseGrant, SignedGrant
from p2pdist.payouts.issuance import MerkleProof, SignedIssuance
from p2pdist.payouts.payments import (
    MAX_PAYMENT_SIZE,
    MAX_PURCHASE_SIZE,
    PaymentReceipt,
    PurchaseRequest,
    SignedPayment,
    SignedPurchase,
)
from p2pdist.payouts.receipts import SignedReceipt, TransferReceipt
from p2pdist.payouts.vouchers import payment_ref

HERE = Path(__file__).resolve().parent

BUYER_SEED = bytes(range(32))
SELLER_SEED = bytes(range(32, 64))
BUYER2_SEED = bytes(range(64, 96))
CONTENT_KEY = bytes(range(128, 160))
MAX_COUNT = 2**63 - 1
MAX_TS = 253_402_300_799


def _h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _uploader(i: int) -> str:
    return (bytes([i]) * 32).hex()


def _pk(seed_hex: str) -> bytes:
    return bytes(nacl.signing.SigningKey(bytes.fromhex(seed_hex)).verify_key)


def _key_id(content_key: bytes) -> str:
    # The manifest's commitment to the key (licensing/_encryption.py's key_id), restated.
    return hashlib.blake2b(b"p2pdist/key-id/v1\0" + content_key, digest_size=32).hexdigest()


WORK = _h("info dict of duet")
PIECE = 262_144

# sealed_payment: seal_payment(payment, work, buyer, seller, nonce) of each case, made once
# (sealed boxes are random); the test opens each with the seller's key.
SEALED_PAYMENTS: dict[str, str] = {
    "voucher-no-receipts": (
        "6eb9a8f05a66100b003c882f65b1db5bcc66da3283a26726e6962a9fd5f9de38"
        "17903b6cd0203461c5cad3c6553664c827c5c649b6dc4dc466a54c4f4aa28f43"
        "693489bedeea05eb4cf9e35035a6592b921fe65ee71732594c7cd9ed981372cc"
        "04c5b58d160684aa77cf25f24a0c47bc3956c9d6957091d17655ee5f937f9c87"
        "7ab0f7aeeb893d0030c438f44124b98c93159991886ebd9146d5e927f49edd42"
        "01f6625673d4829fd2238fefaf1fe587dc8ccd1ff2fb2c8060e121733c12b453"
        "b8a0747ee126e23ff5e8a386810e6db89422ca136641cc278591e1f31f3577ae"
        "12c73963eb3df7c61d91ca6c2e23c80eb44a2ab2e87053c48b9ede833c455109"
        "ddf8f7045f035ee53b6f99ee21439500a2c419a5"
    ),
    "one-receipt-one-piece-plus-one": (
        "f415873756a0bb236f756f30ed09d75ff5a4cd4d4994661c9a26aa65f7f3df2c"
        "9396b1bb14ef9531fb873130bdfe8b70713f10a3f93ebf22b5f69ae8161b570b"
        "a881c27aa770eb8047e04e06e56665b8e81a84f7882cd601700b9ab54c23f5c6"
        "5dd762d74f343ab0c094b906d16e5126522f29411f7b77bacf1c7f1f18a887ac"
        "af00c025db7ac12c3b1b1c46c911c05b17e8e5622e9d531c24fc7e0736fc1519"
        "dbc3575236f005b980ef77ddfa185540a5fd3cf822996b319092ff4bae6faba4"
        "0cedf43af971c8a4827b2a895e3903cfec8ebc808c2fde541c3d2c6038d82f47"
        "94a1d75e3746cb8acc3b7c1ef25289704cce7701acd50279b74e38ca4d630c17"
        "c79869c6df134d971fb30ba8a0e9f617d04fe675"
    ),
    "several-receipts-latest-per-uploader": (
        "596b6c775c46792c3e549667ebd3405dea529f3ae07d8963154de087feac6c17"
        "a13a07cb185f76b564321837555161c1544ae88a8debaf0b9e24694043ecbd04"
        "c9079f09ffc384d89c75a323973ee3aba30d5f140c6b95e98ce67c223d855b08"
        "69f1ffb755fe24988a2bf28ac0bcf146f6f0d46aab8087bc8afdfced08f5805a"
        "78937df9924160ace7569c5b39d23d44cddab01b4b77bd3ef22d9fdd0b620e45"
        "320631ba7b906d11b0e587b23679b7544c1cb4fad3d75573ac7cf564090b07c6"
        "8fa2af34826599a8bd52ef4f60aa5671766c273a77523ae32a814927d5f980d0"
        "a2c6a34c82e0d10fca0358096979c234c75c1663be69cb61acdc309755e935c3"
        "9b98f08c"
    ),
    "receipts-over-size-scaled-by-largest-remainder": (
        "60025b21dfb182408b0b4b5f3e535a22151afc16a3b66c1bfe34f12307cffc72"
        "9b1251158c837a8f1474867aea90c1b62be8bda59e48e2e9ab745df64ecaaf5c"
        "dff9814aef4d100a6d005d505079f076f031b1311b7d5ee8fe90cd355627de9d"
        "1f44729a759373c528bb7164edd36e80b526b2edae247cc7fc8e0a63b393128b"
        "86a0250b80ba09028ba7ed1e8bdefb0d3b6cc7b6b196b9786d4471b73681b219"
        "729d8c4fe0c657a3dc862507b5b198e2dc6b533f65d661a7825d0bb98831a29a"
        "722c3f34e7ccb9e5e4f71962b4c41f12460d021b87c14d9e1d494fde187d84cb"
        "f09c572e6a11b6f76306fb6059f448e5141c8ee9b298f99eeb62e0aca0d60ece"
        "522e93ca"
    ),
    "largest-valid": (
        "17cd7c953d6e18ff4d54473096cd0469fb598d1f45df19d258276fe4870b1a77"
        "4009947d6679e582a0ffc438611896f75697f6d42d1608eab787732fb3b5c85e"
        "66d8c37340312c8d6d527589b985ff7c8b7fe2e90ec72ea482838086a03e4f52"
        "2e02ad29614dcf16f974f7887bec2ab33235518a125401ad8cb6edd3e15ac9ad"
        "32520716f42fa1f435cc5942e53b720a0c24110ac4a455419589cf38b84a3170"
        "b60db42b1a605f03625245516ddddeb1b6c8066fe73cd4215e976d5bd71e4ca1"
        "728bfec32f341b42c3ca4fa70ef47dee5fef5c01cda5234beb63f6b7bf017556"
        "76dd1c51e08f46c6d612677c3f62f4065d879249b3afb5f0bda347e62e931f59"
        "aaab31dfc9da136f39ede9a5e349f4e78239a79275f2edb958f7f8057ac3c4d3"
        "706f77b02194db517bfdf200ae3af018e8b43f6f5b3246f9fb49c1a6dd2b4e5d"
        "e01f722b73636a6b739005b621de94f7adf44c04e7abe6662c7248957611d31c"
        "7e1bc47aa134e31e12460eb0a940f7cd48f15c07732d2a029e40e7321ac7b8f0"
    ),
}

# Receipts in a request: each is signed by the buyer for WORK; the seller keeps the
# latest (highest seq) per uploader and scales the bytes down to the work's size.
PURCHASE_CASES: list[dict[str, Any]] = [
    {"name": "voucher-no-receipts",
     "input": {"work": WORK, "buyer_seed": BUYER_SEED.hex(), "seller_seed": SELLER_SEED.hex(),
               "method": "voucher", "payment": "7K3Q-M9XR-2HTP-VW4C-X",
               "nonce": bytes(range(16)).hex(), "ts": 1_735_689_600,
               "size": 8 * PIECE, "receipts": []}},
    {"name": "one-receipt-one-piece-plus-one",
     "input": {"work": WORK, "buyer_seed": BUYER_SEED.hex(), "seller_seed": SELLER_SEED.hex(),
               "method": "voucher", "payment": "7K3Q-M9XR-2HTP-VW4C-X",
               "nonce": bytes(range(16, 32)).hex(), "ts": 1_735_689_601,
               "size": 8 * PIECE,
               "receipts": [{"uploader_seed": _uploader(1), "seq": 3, "bytes": PIECE + 1,
                             "ts": 1_735_689_000}]}},
    # Three uploaders, one of them twice (the later seq wins whatever the order), one
    # with zero bytes (left out); the sum stays under the size, so nothing is scaled.
    {"name": "several-receipts-latest-per-uploader",
     "input": {"work": WORK, "buyer_seed": BUYER_SEED.hex(), "seller_seed": SELLER_SEED.hex(),
               "method": "voucher", "payment": "CODE-2",
               "nonce": "ff" * 16, "ts": 1_735_689_602, "size": 8 * PIECE,
               "receipts": [
                   {"uploader_seed": _uploader(2), "seq": 9, "bytes": 4 * PIECE,
                    "ts": 1_735_689_100},
                   {"uploader_seed": _uploader(1), "seq": 1, "bytes": 16_384,
                    "ts": 1_735_689_000},
                   {"uploader_seed": _uploader(2), "seq": 8, "bytes": 4 * PIECE - 1,
                    "ts": 1_735_689_050},
                   {"uploader_seed": _uploader(3), "seq": 1, "bytes": 0,
                    "ts": 1_735_689_000},
                   {"uploader_seed": _uploader(1), "seq": 2, "bytes": PIECE - 1,
                    "ts": 1_735_689_200},
               ]}},
    # 50 + 30 + 40 = 120 bytes of a 100-byte work: exact shares 41 2/3, 25, 33 1/3; the
    # floors sum to 99 and the one byte left goes to the largest remainder (2/3).
    {"name": "receipts-over-size-scaled-by-largest-remainder",
     "input": {"work": WORK, "buyer_seed": BUYER_SEED.hex(), "seller_seed": SELLER_SEED.hex(),
               "method": "voucher", "payment": "CODE-3",
               "nonce": "00" * 16, "ts": 1_735_689_603, "size": 100,
               "receipts": [
                   {"uploader_seed": _uploader(4), "seq": 1, "bytes": 50, "ts": 1_735_689_000},
                   {"uploader_seed": _uploader(5), "seq": 1, "bytes": 30, "ts": 1_735_689_000},
                   {"uploader_seed": _uploader(6), "seq": 1, "bytes": 40, "ts": 1_735_689_000},
               ]}},
    # The largest request: 64 receipts (the bound), every integer at its maximum, the
    # longest method and credential; the work is one byte over a piece boundary.
    {"name": "largest-valid",
     "input": {"work": "ff" * 32, "buyer_seed": BUYER_SEED.hex(),
               "seller_seed": SELLER_SEED.hex(), "method": "m" * 31 + "-",
               "payment": "~" * 128, "nonce": "ff" * 16, "ts": MAX_TS, "size": 64 * PIECE + 1,
               "receipts": [{"uploader_seed": _uploader(i), "seq": MAX_COUNT,
                             "bytes": MAX_COUNT, "ts": MAX_TS} for i in range(1, 65)]}},
]


def build_receipt(case_input: dict[str, Any], r: dict[str, Any]) -> SignedReceipt:
    """One embedded receipt of a purchase case, signed by the case's buyer."""
    buyer = Identity("buyer", nacl.signing.SigningKey(bytes.fromhex(case_input["buyer_seed"])))
    return SignedReceipt.sign(TransferReceipt(
        work=bytes.fromhex(case_input["work"]), uploader=_pk(r["uploader_seed"]),
        downloader=buyer.public_key, seq=r["seq"], bytes=r["bytes"],
        ts=datetime.fromtimestamp(r["ts"], UTC)), buyer)


def build_purchase(case_input: dict[str, Any]) -> tuple[PurchaseRequest, Identity]:
    buyer = Identity("buyer", nacl.signing.SigningKey(bytes.fromhex(case_input["buyer_seed"])))
    request = PurchaseRequest(
        work=bytes.fromhex(case_input["work"]), buyer=buyer.public_key,
        seller=_pk(case_input["seller_seed"]), method=case_input["method"],
        sealed_payment=bytes.fromhex(case_input["sealed_payment"]),
        nonce=bytes.fromhex(case_input["nonce"]),
        ts=datetime.fromtimestamp(case_input["ts"], UTC),
        receipts=tuple(build_receipt(case_input, r).to_bytes()
                       for r in case_input["receipts"]))
    return request, buyer


def expected_served_by(case_input: dict[str, Any]) -> list[dict[str, Any]]:
    """Latest receipt per uploader, each capped at the size; scaled by largest remainder."""
    size = case_input["size"]
    latest: dict[bytes, tuple[int, int]] = {}
    for r in case_input["receipts"]:
        pk = _pk(r["uploader_seed"])
        if r["seq"] > latest.get(pk, (0, 0))[0]:
            latest[pk] = (r["seq"], min(r["bytes"], size))
    rows = sorted((pk, n) for pk, (_, n) in latest.items() if n)
    total = sum(n for _, n in rows)
    if total > size:
        exact = [(pk, Fraction(n * size, total)) for pk, n in rows]
        floors = {pk: int(x) for pk, x in exact}
        by_remainder = sorted(exact, key=lambda e: (-(e[1] - int(e[1])), e[0]))
        for pk, _ in by_remainder[:size - sum(floors.values())]:
            floors[pk] += 1
        rows = sorted(floors.items())
    return [{"pk_hex": pk.hex(), "bytes": n} for pk, n in rows if n]


def purchase_vectors() -> list[dict[str, Any]]:
    out = []
    for case in PURCHASE_CASES:
        case["input"]["sealed_payment"] = SEALED_PAYMENTS[case["name"]]
        request, buyer = build_purchase(case["input"])
        signed = SignedPurchase.sign(request, buyer)
        assert len(signed.to_bytes()) <= MAX_PURCHASE_SIZE
        out.append({
            **case,
            "body_hex": signed.body.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "sig_hex": signed.sig.hex(),
            "expected": {
                "buyer_pk_text": key_to_text(request.buyer),
                "seller_pk_text": key_to_text(request.seller),
                "receipts": len(request.receipts),
                "served_by": expected_served_by(case["input"]),
            },
        })
    hand = {s["bytes"] for s in out[3]["expected"]["served_by"]}
    assert hand == {42, 25, 33}, hand  # the worked example in the case's comment
    return out


# A v2 payment receipt answers a purchase request above (by name: its envelope is
# embedded as pinned there) and spends a code of an issuance batch of
# make_issuance_vectors.py (by name and leaf index: the record's envelope, the code's
# hash and its proof are embedded). The amount is the batch's face value.
PAYMENT_CASES: list[dict[str, Any]] = [
    {"name": "voucher-eur-no-receipts",
     "input": {"request": "voucher-no-receipts", "issuance": "eur-five-codes", "index": 4,
               "seller_seed": SELLER_SEED.hex(), "amount": 500, "currency": "EUR",
               "payment_ref": "voucher:from-the-code", "ts": 1_735_689_600}},
    # A gift code (face 0) of a batch of one: an empty proof.
    {"name": "gift-code-one-receipt",
     "input": {"request": "one-receipt-one-piece-plus-one", "issuance": "gift-one-code",
               "index": 0, "seller_seed": SELLER_SEED.hex(), "amount": 0, "currency": "JPY",
               "payment_ref": "voucher:from-the-code", "ts": 1_735_689_601}},
    # The largest envelope: the largest request (64 receipts), a code of the 100,000-code
    # batch with a proof of 17 hashes, every field at its longest.
    {"name": "largest-envelope",
     "input": {"request": "largest-valid", "issuance": "largest-batch", "index": 0,
               "seller_seed": SELLER_SEED.hex(), "amount": 10**15, "currency": "EUR",
               "payment_ref": "~" * 128, "ts": MAX_TS}},
]

_ISSUANCES = {c["name"]: c for c in ISSUANCE_CASES}


def build_payment(case_input: dict[str, Any], purchases: dict[str, dict[str, Any]]
                  ) -> tuple[PaymentReceipt, Identity, list[str]]:
    """The receipt of a case, its seller, and the code's proof path (hex), computed with
    make_issuance_vectors' restated tree."""
    seller = Identity("seller", nacl.signing.SigningKey(bytes.fromhex(case_input["seller_seed"])))
    req = SignedPurchase.from_bytes(bytes.fromhex(purchases[case_input["request"]]["envelope_hex"]))
    inp = _ISSUANCES[case_input["issuance"]]["input"]
    issuance, collector, levels = build_issuance(inp)
    signed_issuance = SignedIssuance.sign(issuance, collector)
    index = case_input["index"]
    code = code_hashes(inp)[index]
    path = proof(levels, index)
    ref = case_input["payment_ref"]
    r = req.request
    payment = PaymentReceipt(
        work=r.work, buyer=r.buyer, seller=seller.public_key, amount=case_input["amount"],
        currency=case_input["currency"], method=r.method,
        payment_ref=payment_ref(code) if ref == "voucher:from-the-code" else ref,
        nonce=r.nonce, ts=datetime.fromtimestamp(case_input["ts"], UTC), request=req,
        issuance=signed_issuance, code=code, proof=MerkleProof(index, tuple(path)))
    return payment, seller, [h.hex() for h in path]


def payment_vectors(purchases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {c["name"]: c for c in purchases}
    out = []
    for case in PAYMENT_CASES:
        payment, seller, path = build_payment(case["input"], by_name)
        signed = SignedPayment.sign(payment, seller)
        assert len(signed.to_bytes()) <= MAX_PAYMENT_SIZE
        out.append({
            **case,
            "body_hex": signed.body.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "sig_hex": signed.sig.hex(),
            "expected": {
                "buyer_pk_text": key_to_text(payment.buyer),
                "seller_pk_text": key_to_text(payment.seller),
                "payment_ref": payment.payment_ref,
                "request_id_hex": hashlib.sha256(payment.request.body).hexdigest(),
                "issuance_id_hex": hashlib.sha256(payment.issuance.body).hexdigest(),
                "code_hex": payment.code.hex(),
                "proof": {"index": payment.proof.index, "path": path},
            },
        })
    return out


# sealed_key: seal_key(CONTENT_KEY, the buyer's key), made once (sealed boxes are random).
GRANT_CASES: list[dict[str, Any]] = [
    {"name": "grant-to-buyer",
     "input": {"work": WORK, "buyer_seed": BUYER_SEED.hex(), "seller_seed": SELLER_SEED.hex(),
               "content_key": CONTENT_KEY.hex(), "key_id": _key_id(CONTENT_KEY),
               "sealed_key": "02f75b8d1b80d81c8eb1c55c3063a553e4cf5e1f822975f787b5b1a023cea529"
                             "0cbd436b043fe0c7231c703a928d69ab7d173150d131cdbfed90ddfbaa493bb2"
                             "ae5e2e4943f20fec7ce2be40ad5f892e",
               "ts": 1_735_689_600}},
    {"name": "grant-to-second-buyer-at-max-ts",
     "input": {"work": "ff" * 32, "buyer_seed": BUYER2_SEED.hex(),
               "seller_seed": SELLER_SEED.hex(), "content_key": CONTENT_KEY.hex(),
               "key_id": _key_id(CONTENT_KEY),
               "sealed_key": "b6a990352a01ec238aeff42da959d414b2379c415df656e8b965c34d2f04010a"
                             "9f5e25b70630245a496b0d9caa704545085aa5ea0b4503173efdc35406ed7e54"
                             "2161d1da519e0d02ef8d09f5a045af02",
               "ts": MAX_TS}},
]


def build_grant(case_input: dict[str, Any]) -> tuple[LicenseGrant, Identity]:
    seller = Identity("seller", nacl.signing.SigningKey(bytes.fromhex(case_input["seller_seed"])))
    grant = LicenseGrant(
        work=bytes.fromhex(case_input["work"]), buyer=_pk(case_input["buyer_seed"]),
        seller=seller.public_key, key_id=bytes.fromhex(case_input["key_id"]),
        sealed_key=bytes.fromhex(case_input["sealed_key"]),
        ts=datetime.fromtimestamp(case_input["ts"], UTC))
    return grant, seller


def grant_vectors() -> list[dict[str, Any]]:
    out = []
    for case in GRANT_CASES:
        grant, seller = build_grant(case["input"])
        signed = SignedGrant.sign(grant, seller)
        out.append({
            **case,
            "body_hex": signed.body.hex(),
            "envelope_hex": signed.to_bytes().hex(),
            "sig_hex": signed.sig.hex(),
            "expected": {
                "buyer_pk_text": key_to_text(grant.buyer),
                "seller_pk_text": key_to_text(grant.seller),
            },
        })
    return out


def main() -> None:
    purchases = purchase_vectors()
    data = {"purchases": purchases, "payments": payment_vectors(purchases),
            "grants": grant_vectors()}
    path = HERE / "payments.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
