"""A swarm at scale: one artist and N fans, as separate `p2pdist` processes, via opentracker.

    .venv/bin/python bench/swarm.py [--fans 16] [--size-mib 64] [--stagger 1.0] [--json]

Everything runs on 127.0.0.1 in the local profile, with Debian's `opentracker` as the
only way peers find each other (no --peer anywhere):

1. One file of random bytes (--size-mib, default 64 MiB). The artist publishes it with
   `publish --tracker http://127.0.0.1:PORT/announce` and seeds it as its initial seeder
   (`seed --local --super-seed`; --plain seeds without --super-seed); the tracker
   whitelists the work.
2. The reference, in the same run: one fresh fan fetches the work alone from the artist
   (`fetch TORRENT --dest D --local --json`, found through the tracker), timed from its
   process start to its exit. It then leaves the swarm.
3. The swarm: N fresh fans start one after the other, --stagger seconds apart, each with
   `fetch TORRENT --dest D --local --json --seed` (a fan reseeds once it completes). A fan
   finds the artist and the fans before it through the tracker; earlier fans learn of it
   when it connects to them.
4. Once every fan completed, each copy is checked byte for byte (SHA-256), every node is
   stopped with SIGINT (as Ctrl-C would), and the receipts are counted: for each fan, the
   latest receipts its uploaders hold (`receipts list --json` in each uploader's home)
   must sum to exactly the work's size.

Figures:
- the time until the last fan completes, from the first fan's start, against the
  reference (one fan alone); also each fan's own fetch time;
- the artist's upload ratio: payload bytes its node says it uploaded during the swarm
  (`status --json`, `works[].uploaded`, after less before) over the work's size, and
  the bytes the fans acknowledged to it in receipts;
- every node's peak RSS (VmHWM from /proc/PID/status, sampled): max and median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer import MB, cli, env, json_objects, run, sha256_file, workdir

from p2pdist.identity import load_public_identity

MiB = 1024 * 1024
SPREAD_LIMIT = 3.0  # the artist uploads at most this many times the work's size


def peak_rss(pid: int) -> int | None:
    """VmHWM of *pid* in bytes (the peak resident set so far), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Node:
    """A long-running `p2pdist` process whose JSON lines are read (and timed) as they come."""

    def __init__(self, name: str, home: Path, *args: str) -> None:
        self.name, self.home = name, home
        self.started = time.monotonic()
        self.err = (home / f"{name}-stderr.log").open("w")
        self.proc = subprocess.Popen(cli(home, *args), stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, env=env())
        self.lines: list[tuple[float, dict[str, object]]] = []
        self.rss = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"read-{name}")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                with self._cond:
                    self.lines.append((time.monotonic(), obj))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def sample(self) -> None:
        rss = peak_rss(self.proc.pid)
        if rss is not None:
            self.rss = max(self.rss, rss)

    def first(self, timeout: float) -> tuple[float, dict[str, object]]:
        """The first JSON line and when it came; SystemExit if none came in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.lines:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.5))
            if self.lines:
                return self.lines[0]
        self.stop()
        raise SystemExit(f"{self.name} reported nothing within {timeout:.0f} s (exit "
                         f"{self.proc.returncode}); see {self.err.name}:\n"
                         f"{Path(self.err.name).read_text(errors='replace')[-2000:]}")

    def stop(self) -> int:
        self.sample()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self.err.close()
        return self.proc.returncode


class Sampler:
    """Samples every node's VmHWM twice a second (a node's last sample is taken at stop)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for n in list(self.nodes):
                n.sample()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Figures:
    fans: int
    size: int
    stagger: float
    alone: float = 0.0  # s: one fan alone, process start to exit
    makespan: float = 0.0  # s: first fan's start to the last fan's completion
    per_fan: list[float] = field(default_factory=list)  # s: each fan's start to completion
    artist_uploaded: int = 0  # bytes, artist's status during the swarm
    artist_credit: int = 0  # bytes the swarm's fans acknowledged to the artist
    rss: dict[str, int] = field(default_factory=dict)  # node -> peak RSS bytes
    tally_exact: bool = False

    @property
    def upload_ratio(self) -> float:
        return self.artist_uploaded / self.size


def status(home: Path, timeout: float) -> dict[str, object]:
    return json_objects(run(cli(home, "status", "--json"), timeout).stdout)[-1]


def uploaded(st: dict[str, object], work: str) -> int:
    works = st["works"]
    assert isinstance(works, list)
    return sum(int(w["uploaded"]) for w in works if w["work"] == work)


def received(home: Path, work: str, timeout: float) -> dict[str, int]:
    """Downloader key -> bytes of the latest receipt *home* holds as the uploader."""
    rows = json.loads(run(cli(home, "receipts", "list", "--work", work, "--json"),
                          timeout).stdout)
    return {r["downloader"]: int(r["bytes"]) for r in rows if r["direction"] == "received"}


@contextlib.contextmanager
def tracker(workdir_: Path) -> Iterator[Any]:
    """tests/opentracker.py's opentracker on 127.0.0.1 (one way to run it, for tests and here)."""
    if shutil.which("opentracker") is None:
        raise SystemExit("opentracker is not installed (apt-get install opentracker)")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.opentracker import opentracker

    with opentracker(workdir_) as t:
        yield t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fans", type=int, default=16, help="fans in the swarm")
    ap.add_argument("--size-mib", type=int, default=64, help="size of the work (MiB)")
    ap.add_argument("--stagger", type=float, default=1.0,
                    help="seconds between one fan's start and the next")
    ap.add_argument("--plain", action="store_true",
                    help="the artist seeds without --super-seed (BEP 16 initial seeding)")
    ap.add_argument("--timeout", type=float, default=600,
                    help="give up when the swarm has not completed after this many seconds")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where to make the temporary folder (default: the system's, /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    a = ap.parse_args(argv)
    if a.fans < 1 or a.size_mib < 1 or a.stagger < 0:
        ap.error("--fans and --size-mib must be at least 1, --stagger at least 0")
    size = a.size_mib * MiB
    timeout = 60 + size / (5 * MB)
    fig = Figures(a.fans, size, a.stagger)

    with workdir("p2pdist-bench-swarm-", a.size_mib, a.dir, a.keep) as (tmp, data, digest), \
            tracker(tmp / "tracker") as t:
        artist = tmp / "artist"
        run(cli(artist, "init", "--name", "artist"), 60)
        torrent = tmp / "work.torrent"
        pub = json_objects(run(cli(
            artist, "publish", str(data), "--title", "bench swarm", "--license", "CC-BY-4.0",
            "--tracker", t.announce, "--out", str(torrent), "--json"), timeout).stdout)[-1]
        work = str(pub["work"])
        t.allow_torrent(torrent)
        homes = [tmp / f"fan{i:02d}" for i in range(a.fans + 1)]  # homes[0]: the reference
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda h: run(cli(h, "init", "--name", h.name), 60), homes))
        keys = {h.name: load_public_identity(h).key_text for h in [artist, *homes]}
        print(f"workdir {tmp}: {a.fans} fans, {a.size_mib} MiB, stagger {a.stagger} s, "
              f"tracker {t.announce}", file=sys.stderr)

        sampler = Sampler()
        nodes: list[Node] = []
        try:
            seeder = Node("artist", artist, "seed", "--local", "--json",
                          *(() if a.plain else ("--super-seed",)))
            sampler.nodes.append(seeder)
            nodes.append(seeder)
            seeder.first(60)

            # The reference: one fan alone, fetching from the artist through the tracker.
            ref = Node("alone", homes[0], "fetch", str(torrent), "--dest", str(tmp / "d-alone"),
                       "--local", "--json")
            sampler.nodes.append(ref)
            ref.first(timeout)
            ref.proc.wait(timeout)  # a fetch without --seed exits once it completed
            fig.alone = time.monotonic() - ref.started
            ref.stop()
            fig.rss["alone"] = ref.rss
            check(tmp / "d-alone" / data.name, digest, "the reference fan")
            print(f"reference: one fan alone {fig.alone:.2f} s", file=sys.stderr)
            before = uploaded(status(artist, 60), work)

            fans: list[Node] = []
            t0 = time.monotonic()
            for i, home in enumerate(homes[1:]):
                wait = t0 + i * a.stagger - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                f = Node(home.name, home, "fetch", str(torrent), "--dest",
                         str(tmp / f"d-{home.name}"), "--local", "--json", "--seed")
                fans.append(f)
                nodes.append(f)
                sampler.nodes.append(f)
            deadline = t0 + a.timeout
            done = []
            for f in fans:
                at, got = f.first(max(1.0, deadline - time.monotonic()))
                if got.get("ok") is False:
                    raise SystemExit(f"{f.name}: {got}")
                done.append(at)
                fig.per_fan.append(at - f.started)
                print(f"{f.name} complete after {at - f.started:6.2f} s "
                      f"({at - t0:6.2f} s into the swarm)", file=sys.stderr)
            fig.makespan = max(done) - t0
            fig.artist_uploaded = uploaded(status(artist, 60), work) - before
        finally:
            for n in reversed(nodes):
                n.stop()
                fig.rss[n.name] = n.rss
            sampler.close()
        for home in homes[1:]:
            check(tmp / f"d-{home.name}" / data.name, digest, home.name)
        fig.artist_credit = sum(v for k, v in received(artist, work, 60).items()
                                if k != keys["fan00"])
        fig.tally_exact = tally(work, size, artist, homes, keys)
        report(a, fig)
    return 0


def check(path: Path, digest: str, who: str) -> None:
    if sha256_file(path) != digest:
        raise SystemExit(f"{who}: {path} differs from the original")


def tally(work: str, size: int, artist: Path, homes: list[Path], keys: dict[str, str]) -> bool:
    """Whether, for each swarm fan, its uploaders' latest receipts sum to exactly *size*."""
    per_down: dict[str, int] = {}
    for up in [artist, *homes[1:]]:
        for down, n in received(up, work, 60).items():
            per_down[down] = per_down.get(down, 0) + n
    exact = True
    for h in homes[1:]:
        got = per_down.get(keys[h.name], 0)
        if got != size:
            exact = False
            print(f"tally: {h.name}'s uploaders hold receipts for {got} bytes, not {size}",
                  file=sys.stderr)
    return exact


def report(a: argparse.Namespace, fig: Figures) -> None:
    rss = sorted(fig.rss.values())
    mode = "seed" if a.plain else "seed --super-seed"
    print(f"\n{fig.fans} fans + artist (`{mode}`), {a.size_mib} MiB, stagger {fig.stagger} s, "
          f"peers found through opentracker; MB = 10^6 bytes, MiB = 2^20")
    print(f"{'':44} {'seconds':>9} {'ratio':>7}")
    print(f"{'one fan alone (reference)':44} {fig.alone:9.2f} {1:7.2f}")
    print(f"{'swarm: first start to last fan complete':44} {fig.makespan:9.2f} "
          f"{fig.makespan / fig.alone:7.2f}")
    print(f"{'swarm: one fan start to complete, median':44} {statistics.median(fig.per_fan):9.2f} "
          f"{statistics.median(fig.per_fan) / fig.alone:7.2f}")
    print(f"{'swarm: one fan start to complete, max':44} {max(fig.per_fan):9.2f} "
          f"{max(fig.per_fan) / fig.alone:7.2f}")
    verdict = "met" if fig.upload_ratio <= SPREAD_LIMIT else "NOT met"
    print(f"artist upload during the swarm: {fig.artist_uploaded / MiB:.1f} MiB = "
          f"{fig.upload_ratio:.2f}x the work (limit {SPREAD_LIMIT:.0f}x: {verdict}); "
          f"acknowledged in receipts {fig.artist_credit / MiB:.1f} MiB")
    print(f"peak RSS (VmHWM) over {len(rss)} nodes: max {max(rss) / MiB:.1f} MiB, median "
          f"{statistics.median(rss) / MiB:.1f} MiB (artist {fig.rss['artist'] / MiB:.1f} MiB)")
    print(f"receipts: per fan, the uploaders' latest receipts sum to the work's size: "
          f"{'exact' if fig.tally_exact else 'NOT exact'}")
    if a.json:
        print(json.dumps({
            "fans": fig.fans, "size_mib": a.size_mib, "stagger": fig.stagger,
            "super_seed": not a.plain,
            "alone_s": fig.alone, "makespan_s": fig.makespan, "per_fan_s": fig.per_fan,
            "makespan_ratio": fig.makespan / fig.alone,
            "artist_uploaded": fig.artist_uploaded, "artist_credit": fig.artist_credit,
            "artist_upload_ratio": fig.upload_ratio, "rss": fig.rss,
            "rss_max": max(rss), "rss_median": statistics.median(rss),
            "tally_exact": fig.tally_exact,
        }))


if __name__ == "__main__":
    raise SystemExit(main())
