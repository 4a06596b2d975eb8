"""``gateway --workers N``: how SO_REUSEPORT spreads the load, and what N workers carry.

    python -m bench.workers [--workers 1,2] [--scenario chat-b2b] [--seconds 8] [--rounds 3]

For each worker count the gateway runs unpinned (the kernel may use every core) behind the
bench's fake upstream; the closed-loop load (``concurrency`` keep-alive connections, each opened
once) runs for ``--seconds``. Per run it reports the events/s carried, the CPU µs per event of
all workers together, and each worker's share of the gateway's CPU: with SO_REUSEPORT the kernel
assigns each new connection to a worker by a hash of its addresses, so with few long-lived
connections the split is only as even as that hash makes it (the ``balance`` figure is the
least busy worker's CPU over the busiest's).

On a machine with fewer cores than workers plus the load generator and the fake upstream, the
events/s ratio measures the machine, not the gateway: the load and the upstream take a core's
worth of CPU themselves. The CPU per event (does a worker get dearer when there are two?) and
the balance are what such a machine can show.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.fake_upstream import install_uvloop, raise_fd_limit
from bench.peers import (
    ROOT,
    ROUTES,
    Peer,
    _gateway_bodies,
    _spawn,
    _wait_ready,
    cpu_seconds,
    free_port,
    gateway_config,
    process_tree,
    start_upstream,
)
from bench.scenarios import LOADS, run_load


def start_workers(upstream_port: int, workers: int) -> Peer:
    """``python -m gateway --workers N`` on the bench's gateway config, not pinned."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-workers{workers}-"))
    port = free_port()
    (workdir / "gateway.yaml").write_text(gateway_config(port, upstream_port, lambda c: c))
    cmd = [sys.executable, "-m", "gateway", "--config", str(workdir / "gateway.yaml")]
    cmd += ["--workers", str(workers)]
    proc = _spawn(f"gateway-w{workers}", cmd, workdir, {"PYTHONPATH": str(ROOT)}, pin=False)
    paths = {r: f"/v1/stream/{r}" for r in ROUTES}
    peer = Peer(f"gateway-w{workers}", port, proc, workdir, paths, _gateway_bodies())
    _wait_ready(peer, "/healthz", 30)
    return peer


def _worker_pids(peer: Peer) -> list[int]:
    """The serving processes: the parent's children (or the process itself with one worker)."""
    assert peer.proc is not None
    tree = process_tree(peer.proc.pid)
    children = [pid for pid in tree if pid != peer.proc.pid]
    return children or [peer.proc.pid]


async def _run(peer: Peer, load: Any) -> dict[str, Any]:
    pids = _worker_pids(peer)
    before = {pid: cpu_seconds([pid]) for pid in pids}
    figures = await run_load(peer, load)
    used = {pid: cpu_seconds([pid]) - before[pid] for pid in pids}
    total = sum(used.values())
    # the group's helpers (multiprocessing's resource tracker) serve nothing: not workers
    used = {pid: u for pid, u in used.items() if u > 0.01 * total} or used
    shares = [round(u / total, 3) for u in used.values()] if total else []
    return {
        "events_per_s": figures["events_per_s"],
        "cpu_us_per_event": figures.get("cpu_us_per_event"),
        "worker_cpu_shares": shares,
        "balance": round(min(used.values()) / max(used.values()), 3) if total else None,
        "failed": figures["failed"],
    }


def measure(counts: list[int], scenario: str, seconds: float, rounds: int) -> dict[str, Any]:
    load = next(x for x in LOADS if x.name == scenario)
    load = dataclasses.replace(load, duration=seconds)
    upstream, upstream_port = start_upstream()
    rows: list[dict[str, Any]] = []
    try:
        for rnd in range(rounds):
            for n in counts:
                peer = start_workers(upstream_port, n)
                try:
                    asyncio.run(run_load(peer, load.scaled(0.3)))  # warm-up
                    row = {"workers": n, "round": rnd, **asyncio.run(_run(peer, load))}
                finally:
                    peer.stop()
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    finally:
        upstream.terminate()
        upstream.wait(5)
    summary: dict[str, Any] = {"scenario": scenario, "cores": os.cpu_count()}
    for n in counts:
        mine = [r for r in rows if r["workers"] == n]
        summary[f"workers_{n}"] = {
            "events_per_s": statistics.median(r["events_per_s"] for r in mine),
            "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in mine),
            "balance": [r["balance"] for r in mine],
        }
    if len(counts) == 2:
        a, b = (summary[f"workers_{n}"]["events_per_s"] for n in counts)
        summary["events_per_s_ratio"] = round(b / a, 3)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--scenario", default="chat-b2b")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    raise_fd_limit()
    install_uvloop()
    counts = [int(x) for x in args.workers.split(",")]
    print(json.dumps(measure(counts, args.scenario, args.seconds, args.rounds), indent=1))


if __name__ == "__main__":
    main()
