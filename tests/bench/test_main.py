"""``python -m bench``'s per-peer loop: a peer that dies loses its scenarios, not the run."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from bench.__main__ import machine, run_peer
from bench.peers import free_port, start_direct


async def test_a_peer_that_refuses_connections_loses_its_scenarios_not_the_run() -> None:
    dead = start_direct(free_port())  # nothing listens there
    args = argparse.Namespace(upstream_port=dead.port, quick=True, probes=1, idle=10)
    figures, lost = await run_peer(dead, args, ["chat-1", "abort"], 0)
    # A closed loop counts its failed connections; the abort probes cannot run at all.
    assert figures["chat-1"]["streams"] == 0 and figures["chat-1"]["failed"] > 0
    assert list(lost) == ["abort"]
    assert lost["abort"].startswith("ConnectionRefusedError")


def test_the_results_file_records_which_interpreter_build_ran() -> None:
    # The interpreter's build moves every CPU figure by 11-13 % (docs/performance.md), so a
    # results file must say which one ran; the dynamic loader is the independent witness of
    # whether libpython is a shared library.
    linked = subprocess.run(["ldd", sys.executable], capture_output=True, text=True, check=False)
    build = machine()["python_build"]
    assert build.startswith(os.path.realpath(sys.executable) + ": ")
    expected = "shared" if "libpython3" in linked.stdout else "static"
    assert f"libpython {expected};" in build
