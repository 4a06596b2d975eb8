"""``python -m bench``'s per-peer loop: a peer that dies loses its scenarios, not the run."""

from __future__ import annotations

import argparse

from bench.__main__ import run_peer
from bench.peers import free_port, start_direct


async def test_a_peer_that_refuses_connections_loses_its_scenarios_not_the_run() -> None:
    dead = start_direct(free_port())  # nothing listens there
    args = argparse.Namespace(upstream_port=dead.port, quick=True, probes=1, idle=10)
    figures, lost = await run_peer(dead, args, ["chat-1", "abort"], 0)
    # A closed loop counts its failed connections; the abort probes cannot run at all.
    assert figures["chat-1"]["streams"] == 0 and figures["chat-1"]["failed"] > 0
    assert list(lost) == ["abort"]
    assert lost["abort"].startswith("ConnectionRefusedError")
