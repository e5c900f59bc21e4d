"""A fetch holds a work in a staging folder of the node home until its checks pass
(p2pdist._staging): private like the home, and not left behind by a fetch that died.

The refusals themselves (nothing created in --dest, nothing left in the staging folder)
are in test_hostile_paths.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from p2pdist._staging import HELD, Staging
from tests.conftest import run_cli

# A fetch killed while its work was held: what libtorrent had made in the staging folder
# (a hostile torrent's empty file, a link leading out of the home) is still there.
_KILLED_FETCH = """
import sys, time
from pathlib import Path
from p2pdist._staging import Staging
s = Staging(Path(sys.argv[1]), "cafe" * 10)
(s.path / "evil" / "sub").mkdir(parents=True)
(s.path / "evil" / "sub" / "pwned.txt").write_bytes(b"")
(s.path / "evil" / "out").symlink_to(sys.argv[2])
print(s.path, flush=True)
time.sleep(600)
"""


def test_a_staging_folder_is_private_and_leaves_no_trace(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = Staging(home, "0123456789abcdef0123")
    assert s.path.parent == home / HELD and s.path.name.startswith("0123456789abcdef-")
    for p in (home, home / HELD, s.path):
        assert p.stat().st_mode & 0o777 == 0o700, p
    (s.path / "x").write_bytes(b"")
    s.remove()
    assert not (home / HELD).exists()


def _start_node(home: Path, dest: Path) -> None:
    """Any command that starts a node in *home*: a fetch of a work nobody has."""
    cp = run_cli(home, "fetch", "no-such-work", "--dest", str(dest), "--local", "--json",
                 check=False, timeout=60)
    doc = json.loads(cp.stdout.splitlines()[-1])
    assert doc.get("kind") == "SourceError", (cp.stdout, cp.stderr)


def test_a_staging_folder_a_killed_fetch_left_is_removed_at_the_next_start(
        tmp_path: Path) -> None:
    home, dest, outside = tmp_path / "home", tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched\n")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_FETCH, str(home), str(outside)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        held = Path(proc.stdout.readline().strip())
        assert (held / "evil" / "sub" / "pwned.txt").exists()
        # While that fetch runs, a node starting beside it leaves its folder alone ...
        _start_node(home, dest)
        assert (held / "evil" / "sub" / "pwned.txt").exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    # ... and once it died, the next node to start removes the folder, link and all,
    # never following the link.
    _start_node(home, dest)
    assert not (home / HELD).exists()
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "untouched\n"
    assert not dest.exists()
