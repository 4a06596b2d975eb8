"""System calls per request: what each proxy asks of the kernel for one 1-token stream.

    python -m bench.syscalls [--peers nginx,floor,contract,gateway] [--seconds 2]

The CPU per request of ``bench.floor`` is the kernel's work (the socket calls) plus the
process's own. This module separates the two by counting: ``strace -c -f`` is attached to each
peer's processes while the ``chat-1`` load (1-token streams, 32 clients back to back) runs from
the load core, and each system call's count is divided by the requests answered meanwhile. A
proxy that makes as many calls per request as nginx spends the rest of its CPU in user space.

strace slows every call it sees, so this module reports counts only, never times; the peers are
started as in ``bench.floor`` (nginx, the floor, the contract floor, the gateway) against one fake
upstream, one after the other. Needs ``strace`` (Debian's package) and ptrace permission.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.fake_upstream import install_uvloop, raise_fd_limit
from bench.floor import start_floor
from bench.peers import LOAD_CORE, Peer, start_gateway, start_nginx, start_upstream
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


async def count(peer: Peer, load: Load, workdir: Path) -> dict[str, float]:
    """System calls per request of ``peer`` under ``load`` (after a short warm-up)."""
    await run_load(peer, dataclasses.replace(load, name="warm-up", duration=1.0))
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
    requests = sum(result["statuses"].values())  # every request answered while counted
    return per_request(parse_summary(out.read_text()), requests)


async def measure(names: list[str], seconds: float) -> dict[str, dict[str, float]]:
    """System calls per ``chat-1`` request of each named peer, one peer at a time."""
    load = dataclasses.replace(next(x for x in LOADS if x.name == "chat-1"), duration=seconds)
    upstream, upstream_port = start_upstream()
    workdir = Path(tempfile.mkdtemp(prefix="bench-syscalls-"))
    rows: dict[str, dict[str, float]] = {}
    try:
        for name in names:
            peer = STARTERS[name](upstream_port)
            try:
                rows[name] = await count(peer, load, workdir)
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
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    install_uvloop()
    raise_fd_limit()
    os.sched_setaffinity(0, {LOAD_CORE})
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = asyncio.run(measure(args.peers.split(","), args.seconds))
    print(json.dumps({"started": started, "per_request": rows}, indent=1))


if __name__ == "__main__":
    main()
