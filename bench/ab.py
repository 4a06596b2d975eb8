"""One feature's CPU cost, A/B side by side: the plain gateway and the gateway with the feature on.

    python -m bench.ab --feature resume|resume-redis|tracing|pool [--scenarios ...]
    python -m bench.ab --base ../old-checkout [--scenarios ...]     # this code against another
    python -m bench.ab --python /other/venv/bin/python [...]       # this code on another CPython
                       [--rounds 5] [--seconds 5]

Both gateways run at the same time, pinned to the same core (the proxy core), and get the same
closed-loop load at the same time from one load generator on the other core. Whatever else the
machine does during a round (another tenant, a frequency change) hits both alike, so the ratio
of their CPU per event within a round is steady where back-to-back runs (``python -m bench``)
swing by ±15% on a shared machine. What it cannot remove: the two processes share the core's
caches, so each runs a little slower than alone; the ratio is what this measures.

With ``--base PATH`` the two sides are the same plain config, the "off" side run from the
checkout at ``PATH`` (another commit: ``git worktree add PATH <commit>``) and the "on" side from
this one: a code change's cost or gain, measured the same way. With ``--python PATH`` the "on"
side runs on that interpreter (another build of CPython, in an environment with the gateway's
dependencies) and the "off" side on this one: what the interpreter's build costs or buys.

Per round and scenario it prints each variant's CPU µs per event (and per stream), then the
median over rounds of the per-round ratio. The order of the two loads is swapped every round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peers import (
    LOAD_CORE,
    ROOT,
    Peer,
    become_load_generator,
    free_port,
    pinned,
    start_gateway_variant,
    start_upstream,
    with_pool,
    with_redis_resume,
    with_resume,
)
from bench.scenarios import LOADS, run_load
from bench.tracing import start_sink, with_tracing

FEATURES = ("none", "resume", "resume-redis", "tracing", "pool")


def _edit(feature: str, collector: int | None, redis_url: str | None) -> Callable[[str], str]:
    if feature == "none":
        return lambda conf: conf
    if feature == "resume":
        return with_resume
    if feature == "resume-redis":
        assert redis_url is not None
        return with_redis_resume(redis_url)
    if feature == "pool":
        return with_pool
    assert collector is not None
    return with_tracing(collector)


def _start_redis() -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server (no persistence) on a free port, pinned to the load core."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("resume-redis needs redis-server (apt-get install redis-server)")
    port = free_port()
    cmd = [binary, "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, preexec_fn=pinned(LOAD_CORE))
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


async def _both(a: Peer, b: Peer, load: Any, swap: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    first, second = (b, a) if swap else (a, b)
    got = await asyncio.gather(run_load(first, load), run_load(second, load))
    return (got[1], got[0]) if swap else (got[0], got[1])


def measure(
    feature: str,
    scenarios: list[str],
    rounds: int,
    seconds: float,
    base: Path | None = None,
    python: str = sys.executable,
) -> dict[str, Any]:
    loads = {load.name: load for load in LOADS}
    upstream, upstream_port = start_upstream()
    sink, collector = start_sink() if feature == "tracing" else (None, None)
    redis, redis_url = _start_redis() if feature == "resume-redis" else (None, None)
    plain = start_gateway_variant("gateway", upstream_port, lambda c: c, tree=base or ROOT)
    edit = _edit(feature, collector, redis_url)
    other = start_gateway_variant(f"gateway-{feature}", upstream_port, edit, python=python)
    rows: list[dict[str, Any]] = []
    try:
        for name in scenarios:
            load = loads[name]
            load = dataclasses.replace(load, duration=seconds)
            asyncio.run(_both(plain, other, load.scaled(0.3), False))  # warm-up
            for rnd in range(rounds):
                off, on = asyncio.run(_both(plain, other, load, swap=bool(rnd % 2)))
                row = {
                    "scenario": name,
                    "round": rnd,
                    "off_us_per_event": off.get("cpu_us_per_event"),
                    "on_us_per_event": on.get("cpu_us_per_event"),
                    "off_us_per_stream": off.get("cpu_us_per_stream"),
                    "on_us_per_stream": on.get("cpu_us_per_stream"),
                    "failed": off["failed"] + on["failed"],
                    "cpu_pressure_avg10": on.get("cpu_pressure_avg10"),
                }
                if row["off_us_per_event"] and row["on_us_per_event"]:
                    row["ratio"] = round(row["on_us_per_event"] / row["off_us_per_event"], 3)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    finally:
        for peer in (plain, other):
            peer.stop()
        for proc in (upstream, sink, redis):
            if proc is not None:
                proc.terminate()
                proc.wait(5)
    summary = {}
    for name in scenarios:
        mine = [r for r in rows if r["scenario"] == name and "ratio" in r]
        if mine:
            summary[name] = {
                "median_ratio": round(statistics.median(r["ratio"] for r in mine), 3),
                "ratios": [r["ratio"] for r in mine],
                "off_median_us": statistics.median(r["off_us_per_event"] for r in mine),
                "on_median_us": statistics.median(r["on_us_per_event"] for r in mine),
            }
    return {"feature": feature, "rounds": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature", choices=FEATURES, default="none")
    parser.add_argument("--base", type=Path, help="run the plain side from this checkout")
    parser.add_argument("--python", default=sys.executable, help="run the other side on this")
    parser.add_argument("--scenarios", default="chat-b2b,chat-paced")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    become_load_generator()
    if args.feature == "none" and args.base is None and args.python == sys.executable:
        parser.error("give --feature, --base or --python to compare with another gateway")
    scenarios = args.scenarios.split(",")
    result = measure(args.feature, scenarios, args.rounds, args.seconds, args.base, args.python)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
