"""`--local` binds loopback only: `seed` and `fetch` refuse --listen and --api-listen on
0.0.0.0, :: or a LAN address with a named error (exit 1), before anything is started:
no control file, nothing listening on either port."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port, start_cli

WILD = ["0.0.0.0", "[::]"]  # noqa: S104 - what the test refuses


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    p = start_cli(home, *args)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it started: the bug this test is about
        p.kill()
        out, err = p.communicate(timeout=30)
        return -1, out, err
    return p.returncode, out, err


@pytest.mark.parametrize("wild", WILD)
def test_local_refuses_to_listen_or_serve_the_api_on_every_address(tmp_path: Path,
                                                                   wild: str) -> None:
    from tests.conftest import run_cli

    home = tmp_path / "ada"
    run_cli(home, "init", "--name", "Ada")
    bt, api = free_port(), free_port()
    for args in (("seed", "--local", "--listen", f"{wild}:{bt}", "--json"),
                 ("seed", "--local", "--listen", f"127.0.0.1:{bt}", "--api-listen",
                  f"{wild}:{api}", "--json"),
                 ("fetch", str(tmp_path / "none.torrent"), "--dest", str(tmp_path / "d"),
                  "--local", "--api-listen", f"{wild}:{api}", "--json")):
        rc, out, err = _run(home, *args)
        assert rc == 1, (args, rc, err)
        doc = json.loads(out.splitlines()[-1])
        assert doc["kind"] == "InputError" and "loopback" in doc["error"], doc
        assert "Traceback" not in err
        assert not (home / "control.json").exists()
        assert not _listening(bt) and not _listening(api)
