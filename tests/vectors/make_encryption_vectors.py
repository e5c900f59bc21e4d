"""How tests/vectors/encryption.json was made. Not a test; pytest does not run it.

    .venv/bin/python tests/vectors/make_encryption_vectors.py   # rewrite encryption.json

Only rerun it on purpose: the vectors pin the paid-work file format (the per-file key
derivation, the STREAM nonces and the chunking) that every published ciphertext and
every unlocking node must agree on. tests/unit/test_encryption.py rebuilds them from the
``input`` section, through p2pdist and by hand with ``cryptography`` alone, and compares
byte for byte.

The content key is the fixed ``bytes(range(32))``; ChaCha20-Poly1305 and HKDF are
deterministic, so the ciphertexts are stable. Each file's plaintext is
``bytes(i % 251 for i in range(size))``. Ciphertexts of up to 64 bytes are stored whole
in hex; larger ones as their SHA-256 with their first and last 32 bytes.

Each file's key is computed here by hand (bencode written out, HKDF from
``cryptography``), and the script checks that p2pdist's ciphertext opens under it with the
STREAM nonces, so a vector can only be written when the library and the spec agree.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2pdist.licensing import CHUNK, encrypt_file, key_id

HERE = Path(__file__).resolve().parent
KEY = bytes(range(32))
WHOLE_UP_TO = 64

INPUT: dict[str, Any] = {
    "key": KEY.hex(),
    "chunk": CHUNK,
    "plaintext": "bytes(i % 251 for i in range(size))",
    "files": [
        {"name": "empty", "path": ["First Light", "00 silence.flac"], "size": 0},
        {"name": "one-byte", "path": ["First Light", "liner notes.txt"], "size": 1},
        {"name": "chunk-minus-one", "path": ["First Light", "cd1", "01 Dawn.flac"],
         "size": CHUNK - 1},
        {"name": "one-chunk", "path": ["First Light", "cd1", "02 Café.flac"], "size": CHUNK},
        {"name": "chunk-plus-one", "path": ["First Light", "cd2", "03 Noon.flac"],
         "size": CHUNK + 1},
        {"name": "two-chunks-plus-one", "path": ["single.flac"], "size": 2 * CHUNK + 1},
    ],
    # Keys whose ids are pinned too: the work key above, all zeros, all 0xff.
    "key_ids": [KEY.hex(), bytes(32).hex(), (b"\xff" * 32).hex()],
}


def plaintext(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def bencode_path_size(path: list[str], size: int) -> bytes:
    """``{"path": [...], "size": n}`` in canonical bencode, written out by hand."""
    parts = b"".join(b"%d:%s" % (len(p.encode()), p.encode()) for p in path)
    return b"d4:pathl" + parts + b"e4:sizei%dee" % size


def hkdf_info(path: list[str], size: int) -> bytes:
    return b"p2pdist/file-key/v1\x00" + bencode_path_size(path, size)


def file_key(key: bytes, path: list[str], size: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=hkdf_info(path, size)).derive(key)


def open_by_hand(key: bytes, path: list[str], size: int, ciphertext: bytes,
                 chunk: int) -> bytes:
    """STREAM decryption with nothing of p2pdist: nonce = index (11 bytes) || last flag."""
    aead = ChaCha20Poly1305(file_key(key, path, size))
    n = max(1, -(-size // chunk))
    out, pos = [], 0
    for i in range(n):
        m = min(chunk, size - i * chunk) + 16
        nonce = i.to_bytes(11, "big") + (b"\x01" if i == n - 1 else b"\x00")
        out.append(aead.decrypt(nonce, ciphertext[pos : pos + m], None))
        pos += m
    assert pos == len(ciphertext), "trailing bytes"
    return b"".join(out)


def build(inp: dict[str, Any], tmp: Path) -> dict[str, Any]:
    key = bytes.fromhex(inp["key"])
    files = []
    for f in inp["files"]:
        src, dst = tmp / "plain", tmp / "cipher"
        data = plaintext(f["size"])
        src.write_bytes(data)
        encrypt_file(key, tuple(f["path"]), src, dst)
        ct = dst.read_bytes()
        assert open_by_hand(key, f["path"], f["size"], ct, inp["chunk"]) == data
        out: dict[str, Any] = {
            "name": f["name"],
            "info": hkdf_info(f["path"], f["size"]).hex(),
            "file_key": file_key(key, f["path"], f["size"]).hex(),
            "ciphertext_size": len(ct),
            "ciphertext_sha256": hashlib.sha256(ct).hexdigest(),
        }
        if len(ct) <= WHOLE_UP_TO:
            out["ciphertext"] = ct.hex()
        else:
            out["ciphertext_head"] = ct[:32].hex()
            out["ciphertext_tail"] = ct[-32:].hex()
        files.append(out)
    return {
        "files": files,
        "key_ids": [{"key": k, "key_id": key_id(bytes.fromhex(k)).hex()}
                    for k in inp["key_ids"]],
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        out = {"input": INPUT, "output": build(INPUT, Path(d))}
    (HERE / "encryption.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
