"""Where a request's CPU goes: the kernel's share and the process's own, and the calls behind it.

    python -m bench.syscalls [--peers nginx,floor,contract,gateway] [--seconds 3]
                             [--scenario chat-1|chat-1-rate]

``bench.floor`` gives each proxy's CPU per 1-token request (``chat-1``). This module splits it,
per peer, one peer at a time against one fake upstream, the ``chat-1`` load (32 clients back to
back) running from the load core:

* ``cpu_us``: CPU µs per request, untraced, spent in the process's own code (``user``) and in
  the kernel on its behalf (``system``: the socket calls and the wake-ups), from ``/proc``;
* ``calls``: the system calls per request, by name: ``strace -c -f`` attached to the peer's
  processes during a second run of the load (strace slows every call it sees, so that run's
  times are not used).

A proxy that makes as many calls per request as nginx, and spends as long in the kernel, spends
the rest of its CPU in its own code. The peers are those of ``bench.floor``: nginx, the floor,
the contract floor and the gateway. Needs ``strace`` (Debian's package) and ptrace permission.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.floor import start_floor
from bench.peers import (
    Peer,
    become_load_generator,
    cpu_times,
    start_gateway,
    start_nginx,
    start_upstream,
)
from bench.scenarios import LOADS, Load, run_load

STARTERS: dict[str, Callable[[int], Peer]] = {
    "nginx": start_nginx,
    "floor": start_floor,
    "contract": lambda port: start_floor(port, contract=True),
    "gateway": start_gateway,
}
"""The peers this module can count, by name (each takes the fake upstream's port)."""

ATTACH_SECONDS = 0.5
"""How long strace is given to attach to every process before the load starts."""


def parse_summary(text: str) -> dict[str, int]:
    """The calls per system call of an ``strace -c`` summary table (the ``total`` row left out).

    Rows are ``% time, seconds, usecs/call, calls, [errors,] syscall``: the errors column is
    empty for a call that never failed, so the count is the fourth field and the name the last.
    """
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0][0].isdigit() or fields[-1] == "total":
            continue
        counts[fields[-1]] = counts.get(fields[-1], 0) + int(fields[3])
    return counts


def per_request(counts: dict[str, int], requests: int) -> dict[str, float]:
    """Each call's count per request, most frequent first, with their ``total``."""
    if requests <= 0:
        raise ValueError("no request was answered while strace counted")
    rows = {name: round(n / requests, 2) for name, n in sorted(counts.items(), key=lambda x: -x[1])}
    return {**rows, "total": round(sum(counts.values()) / requests, 2)}


async def cpu_split(peer: Peer, load: Load) -> dict[str, float]:
    """CPU µs per request of ``peer`` under ``load``, untraced: in its own code (``user``) and
    in the kernel on its behalf (``system``), from ``/proc``'s tick counts."""
    pids = peer.pids()
    before = cpu_times(pids)
    result = await run_load(peer, load)
    after = cpu_times(pids)
    requests = _answered(result)
    return {
        "user": round((after[0] - before[0]) / requests * 1e6, 1),
        "system": round((after[1] - before[1]) / requests * 1e6, 1),
    }


async def count(peer: Peer, load: Load, workdir: Path) -> dict[str, float]:
    """System calls per request of ``peer`` under ``load``, traced."""
    out = workdir / f"{peer.name}.strace"
    attach = [arg for pid in peer.pids() for arg in ("-p", str(pid))]
    tracer = await asyncio.create_subprocess_exec(
        "strace", "-c", "-f", "-o", str(out), *attach, stderr=subprocess.DEVNULL
    )
    try:
        await asyncio.sleep(ATTACH_SECONDS)
        result = await run_load(peer, load)
        await asyncio.sleep(0.2)  # the last answers' closing calls
    finally:
        tracer.terminate()  # strace writes its summary when it detaches
        await asyncio.wait_for(tracer.wait(), 10)
    return per_request(parse_summary(out.read_text()), _answered(result))


def _answered(result: dict[str, Any]) -> int:
    """The requests answered during a load: each started a response (the window's count of
    finished streams leaves out the last ones, whose calls are counted too)."""
    return sum(result["statuses"].values())


async def measure_peer(peer: Peer, load: Load, workdir: Path) -> dict[str, Any]:
    """``peer``'s CPU per request split by where it was spent, then its system calls."""
    await run_load(peer, dataclasses.replace(load, name="warm-up", duration=1.0))
    return {"cpu_us": await cpu_split(peer, load), "calls": await count(peer, load, workdir)}


async def measure(
    names: list[str], seconds: float, scenario: str = "chat-1"
) -> dict[str, dict[str, Any]]:
    """CPU and system calls per request of each named peer under ``scenario`` (a 1-token load:
    ``chat-1`` at each peer's saturation, ``chat-1-rate`` at the same traffic), one at a time."""
    load = dataclasses.replace(next(x for x in LOADS if x.name == scenario), duration=seconds)
    upstream, upstream_port = start_upstream()
    rows: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-syscalls-") as workdir:
            for name in names:
                peer = STARTERS[name](upstream_port)
                try:
                    rows[name] = await measure_peer(peer, load, Path(workdir))
                finally:
                    peer.stop()
                print(json.dumps({"peer": name, **rows[name]}), flush=True)
    finally:
        upstream.terminate()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.syscalls", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--peers", default=",".join(STARTERS))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--scenario", default="chat-1", choices=("chat-1", "chat-1-rate"))
    args = parser.parse_args()
    become_load_generator()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = asyncio.run(measure(args.peers.split(","), args.seconds, args.scenario))
    report = {"started": started, "scenario": args.scenario, "per_request": rows}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
