"""The ``gateway`` command's entry point (``gateway/command.py``): a SIGHUP while it imports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.gateway import REPO
from tests.support.system import free_port


def hangup_blocked(pid: int) -> bool:
    """Whether the process ``pid`` blocks SIGHUP now (its ``SigBlk`` mask in ``/proc``)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    return bool(int(mask.split()[1], 16) & (1 << (signal.SIGHUP - 1)))


COMMANDS = {
    "python -m gateway": [sys.executable, "-m", "gateway"],
    "the installed script": [str(Path(sys.executable).parent / "gateway")],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_sighup_while_the_command_imports_does_not_end_it(tmp_path: Path, command: str) -> None:
    """Importing the gateway takes about a second, and SIGHUP's default action ended the
    process meanwhile (exit 129; under systemd a clean exit, which ``Restart=on-failure`` does
    not restart: a ``systemctl reload`` right after a start left the gateway down)."""
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"routes": [{"name": "demo", "provider": "simulated"}]}))
    port = free_port()
    log = tmp_path / "out.log"
    argv = [*COMMANDS[command], "--config", str(config), "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        while not hangup_blocked(proc.pid):  # the command blocks it before the long import
            assert proc.poll() is None, log.read_text()
            assert "gateway listening on" not in log.read_text(), "SIGHUP was never blocked"
            time.sleep(0.002)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "gateway listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            assert reply.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        proc.kill()
        proc.wait()
