"""Loopback transfer benchmark: p2pdist fetch vs aria2c vs cp, on the same data.

    .venv/bin/python bench/transfer.py [--size-mib 512] [--runs 3] [--magnet] [--no-warmup]
    make bench

What it does, all on 127.0.0.1 in the local profile (no DHT, LSD, UPnP, NAT-PMP, PeX,
trackers):

1. Writes one file of random bytes (--size-mib, default 512 MiB) in a temporary folder.
2. Publishes it twice: as a hybrid work (the default format) in seeder home H, and as a
   `--format v1` work in seeder home V (aria2 1.36 only fetches v1 torrents).
3. Per run:
   a.  `p2pdist fetch` of the hybrid work from seeder H (a long-running `seed --local`).
       Timed: the whole fetch command, from process start to its exit (it exits when every
       piece arrived and passed its hash check).
   b.  aria2c fetches the v1 work. aria2c has no "add peer" option, so it listens and a
       fresh seeder V (`seed --local --peer 127.0.0.1:ARIAPORT`) connects to it. Timed: from
       aria2c's start to its exit 0 (--seed-time=0: it exits once the download verified),
       minus the time aria2c sat listening while seeder V's Python process started
       (reported separately; the raw figure is shown too).
   a'. `p2pdist fetch` of the same v1 work from seeder V, timed as in (a): the like-for-like
       comparison with aria2c (same torrent, same piece size, SHA-1 only).
   c.  `cp` of the same file followed by `sync FILE` (an fsync of the copy), timed together.
       cp without the sync only measures a memory copy into the page cache.
   Every copy is checked byte for byte (SHA-256) against the original, outside the timing.

Caveats, printed with the results: the page cache cannot be dropped here, so the source file
is read from memory in every case; p2pdist and aria2c do not fsync what they write (cp is
made to), which favours them; seeders and clients share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PASSPHRASE = "bench passphrase, not a secret"  # noqa: S105 - throw-away homes
CHUNK = 8 * 1024 * 1024
MB = 1_000_000


# -- helpers --------------------------------------------------------------------------------


def env() -> dict[str, str]:
    return {
        **os.environ,
        "P2PDIST_NETWORK": "local",
        "P2PDIST_PASSPHRASE": os.environ.get("P2PDIST_PASSPHRASE", PASSPHRASE),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "p2pdist", "--home", str(home), *args]


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env(),
                        check=False)
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}… exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
    return cp


def json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object in *text*: the CLI pretty-prints its reports over several lines."""
    dec, out, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        obj, i = dec.raw_decode(text, i)
        out.append(obj)
    return out


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:*port*, read from /proc (no connection made)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True
    return any(p[1] == want and p[3] == "0A" for p in (ln.split() for ln in lines))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class Seeder:
    """A `p2pdist seed --local` process; ready once its first JSON report is out."""

    def __init__(self, home: Path, *peers: str, timeout: float = 60) -> None:
        self.port = free_port()
        args = ["seed", "--local", "--listen", f"127.0.0.1:{self.port}", "--json"]
        for p in peers:
            args += ["--peer", p]
        self.log = (home / "seed-stderr.log").open("a")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cli(home, *args), stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env())
        assert self.proc.stdout is not None
        killer = threading.Timer(timeout, self.proc.kill)  # a hung start-up ends too
        killer.start()
        buf = ""
        try:
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    self.stop()
                    raise SystemExit(f"the seeder did not start (see {self.log.name}):\n{buf}")
                buf += line
                with contextlib.suppress(ValueError):
                    self.report: dict[str, object] = json.loads(buf)
                    break
        finally:
            killer.cancel()
        self.ready = time.monotonic()
        self.ready_wall = time.time()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.log.close()


@contextlib.contextmanager
def seeding(home: Path, *peers: str) -> Iterator[Seeder]:
    s = Seeder(home, *peers)
    try:
        yield s
    finally:
        s.stop()


# -- the transfers --------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def add(self, seconds: float, **extra: float) -> None:
        self.seconds.append(seconds)
        for k, v in extra.items():
            self.extra.setdefault(k, []).append(v)

    def median(self) -> float:
        return statistics.median(self.seconds)


def verify(path: Path, digest: str, what: str) -> None:
    got = sha256_file(path)
    if got != digest:
        raise SystemExit(f"{what}: {path} differs from the original")


def fetch_report(source: str, seeder: Seeder, dest: Path, home: Path,
                 timeout: float) -> tuple[float, dict[str, object]]:
    """(wall seconds of the whole fetch command, its `fetch --json` report)."""
    t0 = time.monotonic()
    cp = run(cli(home, "fetch", source, "--dest", str(dest), "--local",
                 "--peer", f"127.0.0.1:{seeder.port}", "--json"), timeout)
    wall = time.monotonic() - t0
    return wall, json_objects(cp.stdout)[-1]


def fetch_p2pdist(source: str, seeder: Seeder, dest: Path, home: Path,
                  timeout: float) -> tuple[float, float]:
    """(wall seconds of the whole fetch command, seconds the fetch itself reported)."""
    wall, report = fetch_report(source, seeder, dest, home, timeout)
    return wall, float(report["seconds"])  # type: ignore[arg-type]


ARIA2_LOCAL = (
    "--no-conf=true", "--interface=127.0.0.1", "--disable-ipv6=true",
    "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
    "--enable-peer-exchange=false", "--bt-tracker=", "--bt-exclude-tracker=*",
    "--follow-torrent=false", "--seed-time=0", "--file-allocation=none",
    "--auto-file-renaming=false", "--allow-overwrite=true", "--summary-interval=0",
    "--console-log-level=warn",
)


def fetch_aria2(aria2c: str, torrent: Path, seed_home: Path, dest: Path,
                timeout: float) -> tuple[dict[str, float], Seeder]:
    """Times (net, raw, data) of one aria2c download, and the still-running seeder.

    raw: aria2c start to exit 0. net: raw less the time aria2c sat listening while the
    seeder's Python process started. data: seeder ready to aria2c's own "download complete"
    log line (its exit follows about 1-2 s later: aria2c's event loop ticks once a second).
    """
    port = free_port()
    log = dest.parent / f"aria2-{port}.log"
    t0 = time.monotonic()
    aria = subprocess.Popen(
        [aria2c, *ARIA2_LOCAL, f"--listen-port={port}", f"--dir={dest}",
         f"--bt-stop-timeout={int(timeout)}", f"--log={log}", "--log-level=notice",
         str(torrent)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seeder: Seeder | None = None
    ok = False
    try:
        while not listening(port) and aria.poll() is None and time.monotonic() - t0 < 10:
            time.sleep(0.005)
        t_listen = time.monotonic()
        if listening(port):
            seeder = Seeder(seed_home, f"127.0.0.1:{port}")
            out, _ = aria.communicate(timeout=timeout)
        else:
            aria.kill()
            out = "aria2c did not listen\n" + aria.communicate()[0]
        raw = time.monotonic() - t0
        ok = aria.returncode == 0 and seeder is not None
    finally:
        if aria.poll() is None:
            aria.kill()
            aria.communicate()
        if seeder is not None and not ok:
            seeder.stop()
    if not ok or seeder is None:
        raise SystemExit(f"aria2c exited {aria.returncode}:\n{out}")
    done = _aria2_log_time(log, "Seeding is over")
    log.unlink(missing_ok=True)
    times = {"net": raw - (seeder.ready - t_listen), "raw": raw,
             "data": done - seeder.ready_wall if done else float("nan")}
    return times, seeder


def _aria2_log_time(log: Path, text: str) -> float | None:
    """The wall-clock time of aria2c's first log line containing *text*."""
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if text in line:
                stamp = " ".join(line.split()[:2])
                with contextlib.suppress(ValueError):
                    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None


def copy_fsync(src: Path, dst: Path, timeout: float) -> float:
    t0 = time.monotonic()
    subprocess.run(["cp", str(src), str(dst)], check=True, timeout=timeout)
    subprocess.run(["sync", str(dst)], check=True, timeout=timeout)
    return time.monotonic() - t0


# -- main -----------------------------------------------------------------------------------


def make_data(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
        # Written back now, not in the middle of a timed run (that slowed runs by ~30%).
        f.flush()
        os.fsync(f.fileno())
    return h.hexdigest()


@contextlib.contextmanager
def workdir(prefix: str, size_mib: int, where: Path | None,
            keep: bool) -> Iterator[tuple[Path, Path, str]]:
    """A temporary folder with src/bench.bin, *size_mib* MiB of random bytes, in it:
    (folder, file, the file's SHA-256). Removed afterwards unless *keep*."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        data = tmp / "src" / "bench.bin"
        data.parent.mkdir()
        print(f"workdir {tmp}; writing {size_mib} MiB of random data…", file=sys.stderr)
        yield tmp, data, make_data(data, size_mib * 1024 * 1024)
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512, help="size of the work (MiB)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each transfer (median shown)")
    ap.add_argument("--magnet", action="store_true", help="p2pdist fetches by magnet link")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where to make the temporary folder (default: the system's, /tmp)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="time the first fetch from a freshly published (seed-mode) seeder too")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    a = ap.parse_args(argv)
    if a.size_mib < 1 or a.runs < 1:
        ap.error("--size-mib and --runs must be at least 1")
    size = a.size_mib * 1024 * 1024
    timeout = 60 + size / (5 * MB)  # anything slower than 5 MB/s is broken, not slow
    aria2c = shutil.which("aria2c")

    with workdir("p2pdist-bench-", a.size_mib, a.dir, a.keep) as (tmp, data, digest):
        # Home H seeds the work twice, as a hybrid and as a v1 torrent, for p2pdist fetch
        # (a, a'). Home V seeds its own v1 torrent for aria2c (b): a fresh seeder process
        # per run, because it has to connect to aria2c once aria2c listens.
        home_h, home_v = tmp / "seed-h", tmp / "seed-v"
        torrents = {}
        for home, fmt, name in ((home_h, "hybrid", "hybrid"), (home_h, "v1", "v1"),
                                (home_v, "v1", "v1-aria2")):
            if not home.exists():
                run(cli(home, "init", "--name", f"bench-{home.name}"), 60)
            pub = json_objects(run(cli(
                home, "publish", str(data), "--title", f"bench {name}", "--license",
                "CC-BY-4.0", "--format", fmt, "--out", str(tmp / f"{name}.torrent"), "--json",
            ), timeout).stdout)[-1]
            torrents[name] = str(pub["magnet"] if a.magnet and name != "v1-aria2"
                                 else pub["torrent"])

        p2p, p2p_v1 = Result("p2pdist fetch (hybrid)"), Result("p2pdist fetch (v1)")
        aria, copy = Result("aria2c (v1)"), Result("cp + sync")

        def p2pdist_run(name: str, seeder: Seeder, tag: str, result: Result | None) -> None:
            dest = tmp / f"p2p-{tag}"
            wall, inner = fetch_p2pdist(torrents[name], seeder, dest, tmp / f"fetch-{tag}",
                                        timeout)
            verify(dest / data.name, digest, f"p2pdist fetch {name}")
            shutil.rmtree(dest)
            if result is not None:
                result.add(wall, inner=inner)
                print(f"{tag:12} p2pdist {name:7} {size / wall / MB:7.1f} MB/s ({wall:.2f} s; "
                      f"in-process {inner:.2f} s)", file=sys.stderr)

        with seeding(home_h) as seeder_h:
            if a.warmup:
                # A freshly published work is seeded in seed mode: the seeder hashes each
                # piece the first time it sends it. Serve every work once, untimed, so the
                # timed runs measure steady-state seeding (--no-warmup to include it).
                print("warm-up: one untimed fetch of each work…", file=sys.stderr)
                p2pdist_run("hybrid", seeder_h, "warm-h", None)
                p2pdist_run("v1", seeder_h, "warm-v1", None)
                if aria2c:
                    with seeding(home_v) as seeder_v:
                        p2pdist_run("v1-aria2", seeder_v, "warm-v", None)
            for i in range(a.runs):
                tag = f"[run {i + 1}/{a.runs}]"
                p2pdist_run("hybrid", seeder_h, tag, p2p)
                p2pdist_run("v1", seeder_h, tag, p2p_v1)
                if aria2c:
                    dest = tmp / f"aria-{i}"
                    dest.mkdir()
                    at, seeder_v = fetch_aria2(aria2c, Path(torrents["v1-aria2"]), home_v,
                                               dest, timeout)
                    seeder_v.stop()
                    verify(dest / data.name, digest, "aria2c")
                    shutil.rmtree(dest)
                    aria.add(at["net"], raw=at["raw"], data=at["data"])
                    print(f"{tag:12} aria2c  v1      {size / at['net'] / MB:7.1f} MB/s "
                          f"({at['net']:.2f} s; {at['raw']:.2f} s with the seeder's "
                          f"start-up; data phase {at['data']:.2f} s)", file=sys.stderr)

                dst = tmp / f"cp-{i}.bin"
                secs = copy_fsync(data, dst, timeout)
                verify(dst, digest, "cp")
                dst.unlink()
                copy.add(secs)
                print(f"{tag:12} cp + sync       {size / secs / MB:7.1f} MB/s ({secs:.2f} s)",
                      file=sys.stderr)
        report(a, size, {"a": p2p, "a1": p2p_v1, "b": aria, "c": copy})
    return 0


def report(a: argparse.Namespace, size: int, results: dict[str, Result]) -> None:
    p2p, p2p_v1, aria, copy = results["a"], results["a1"], results["b"], results["c"]

    def rate(r: Result) -> float | None:
        return size / r.median() / MB if r.seconds else None

    print(f"\n{a.size_mib} MiB ({size / MB:.1f} MB), {a.runs} run(s), median; "
          f"p2pdist fetches by {'magnet' if a.magnet else '.torrent'}; MB = 10^6 bytes")
    rows = [
        ("(a)  p2pdist fetch, hybrid", p2p, "whole command; in-process {inner:.2f} s"),
        ("(a') p2pdist fetch, v1", p2p_v1, "whole command; in-process {inner:.2f} s"),
        ("(b)  aria2c, v1", aria, "start→exit 0, less seeder start-up; raw {raw:.2f} s; "
         "data phase {data:.2f} s"),
        ("(c)  cp + sync FILE", copy, "cp, then fsync of the copy"),
    ]
    for label, r, note in rows:
        if not r.seconds:
            print(f"{label:28} n/a (aria2c is not installed)")
            continue
        extra = {k: statistics.median(v) for k, v in r.extra.items()}
        span = f"{min(r.seconds):.2f}-{max(r.seconds):.2f} s" if len(r.seconds) > 1 else ""
        print(f"{label:28} {rate(r):8.1f} MB/s  {r.median():6.2f} s  {span:13} "
              f"{note.format(**extra)}")
    ra, rb, rc, ra1 = rate(p2p), rate(aria), rate(copy), rate(p2p_v1)
    assert ra is not None and rc is not None
    if rb:
        print(f"ratio a/b  {ra / rb:5.2f}   (goal >= 1.00)")
        if ra1:
            print(f"ratio a'/b {ra1 / rb:5.2f}")
    print(f"ratio a/c  {ra / rc:5.2f}   (goal >= 0.50)")
    print("notes: page cache not dropped (the source is read from memory every time); "
          "p2pdist and aria2c do not fsync, cp does; all processes share this machine's CPUs.")
    if a.json:
        print(json.dumps({
            "size_mib": a.size_mib, "runs": a.runs, "magnet": a.magnet,
            "mb_per_s": {"p2pdist_hybrid": ra, "p2pdist_v1": ra1, "aria2c": rb, "cp_sync": rc},
            "seconds": {"p2pdist_hybrid": p2p.seconds, "p2pdist_v1": p2p_v1.seconds,
                        "aria2c": aria.seconds, "cp_sync": copy.seconds},
            "ratio_a_b": ra / rb if rb else None, "ratio_a_c": ra / rc,
        }))


if __name__ == "__main__":
    raise SystemExit(main())
