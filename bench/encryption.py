"""Paid-work encryption speed: encrypt_file against a bare ChaCha20-Poly1305 loop, and
unlock (decrypt_tree) against ``cp``.

    .venv/bin/python bench/encryption.py [--size-mib 512] [--repeat 3] [--dir DIR]

One random file of --size-mib MiB is written to a temp folder (under --dir, by default
the system's), and each figure is the best of --repeat runs, the contenders taking turns
so that they share the machine's state. Every contender reads the same file from the
page cache and ends with its output fsynced, so the disk costs the same on both sides:

- encrypt: ``encrypt_file`` (64 KiB chunks, temp file, fsync, os.replace) against a bare
  loop that reads 64 KiB, seals it with ``cryptography``'s ChaCha20Poly1305 under the
  STREAM nonce and writes it, then fsyncs. The bare loop without any I/O is shown too.
- unlock: ``decrypt_tree`` of the one-file work into a fresh folder (size check, staging
  folder, temp file, fsync, os.replace) against ``cp`` of the ciphertext into a fresh
  folder followed by an fsync of the copy, and against a bare decrypt loop with the same
  I/O as the bare encrypt loop.

The ratio is p2pdist's rate over the other's: 1.0 means the module costs nothing over the
bare loop; against cp it is the price of decrypting at all. The target is >= 0.8 against
the bare loops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pdist.licensing import CHUNK, PlainFile, decrypt_tree, encrypt_file, encrypted_path
from p2pdist.licensing._encryption import _file_aead

KEY = bytes(range(32))
NAME = ("bench.bin",)
MB = 1_000_000


def _nonce(i: int, last: bool) -> bytes:
    return i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _bare_encrypt(aead: ChaCha20Poly1305, src: Path, dst: Path, size: int) -> None:
    n = max(1, -(-size // CHUNK))
    with open(src, "rb", buffering=0) as fin, open(dst, "wb") as fout:
        for i in range(n):
            fout.write(aead.encrypt(_nonce(i, i == n - 1), fin.read(CHUNK), None))
        fout.flush()
        os.fsync(fout.fileno())


def _bare_decrypt(aead: ChaCha20Poly1305, src: Path, dst: Path, size: int) -> None:
    n = max(1, -(-size // CHUNK))
    with open(src, "rb", buffering=0) as fin, open(dst, "wb") as fout:
        for i in range(n):
            fout.write(aead.decrypt(_nonce(i, i == n - 1), fin.read(CHUNK + 16), None))
        fout.flush()
        os.fsync(fout.fileno())


def _bare_in_memory(aead: ChaCha20Poly1305, data: memoryview) -> None:
    n = max(1, -(-len(data) // CHUNK))
    for i in range(n):
        aead.encrypt(_nonce(i, i == n - 1), data[i * CHUNK : (i + 1) * CHUNK], None)


def _cp(src: Path, dst: Path) -> None:
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _best(runs: dict[str, Callable[[], None]], repeat: int,
          reset: Callable[[], None]) -> dict[str, float]:
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, fn in runs.items():
            reset()
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    reset()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="p2pdist-bench-") as d:
        tmp = Path(d)
        src = tmp / NAME[0]
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1024 * 1024))
            # Written back now, so that no run shares the disk with this file's writeback.
            f.flush()
            os.fsync(f.fileno())
        data = memoryview(src.read_bytes())
        aead = _file_aead(KEY, NAME, size)
        work = tmp / "work"
        cipher = work.joinpath(*encrypted_path(NAME))
        cipher.parent.mkdir()
        encrypt_file(KEY, NAME, src, cipher)
        out = tmp / "out"

        def reset() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

        enc = _best({
            "encrypt_file": lambda: encrypt_file(KEY, NAME, src, out / "c"),
            "bare loop, same I/O": lambda: _bare_encrypt(aead, src, out / "c", size),
            "bare loop, no I/O": lambda: _bare_in_memory(aead, data),
        }, args.repeat, reset)
        files = [PlainFile(NAME, size)]
        dec = _best({
            "decrypt_tree (unlock)": lambda: decrypt_tree(KEY, files, work, out / "u"),
            "bare loop, same I/O": lambda: _bare_decrypt(aead, cipher, out / "p", size),
            "cp + fsync": lambda: _cp(cipher, out / "p"),
        }, args.repeat, reset)

    rate = {k: size / v / MB for k, v in enc.items()}
    print(f"{args.size_mib} MiB, chunk {CHUNK // 1024} KiB, best of {args.repeat}; "
          "every output fsynced")
    print(f"{'encrypt':24} {'MB/s':>8}   ratio (encrypt_file / this)")
    for k, r in rate.items():
        print(f"{k:24} {r:>8,.0f}   {rate['encrypt_file'] / r:>5.2f}")
    rate = {k: size / v / MB for k, v in dec.items()}
    print(f"{'unlock':24} {'MB/s':>8}   ratio (decrypt_tree / this)")
    for k, r in rate.items():
        print(f"{k:24} {r:>8,.0f}   {rate['decrypt_tree (unlock)'] / r:>5.2f}")


if __name__ == "__main__":
    main()
