"""How many open streams one gateway process holds, when its open-files limit allows them.

    python -m bench.hold [--streams 10000] [--budget 120]

The ``idle`` scenario of ``python -m bench`` holds silent streams from the fake upstream: every
stream costs the gateway two descriptors (the client's socket and the upstream's), so under a
hard open-files limit of 20,000 (this sandbox's, which ``setrlimit`` cannot raise) one process
holds at most about 9,990. Here the route's upstream is built in (``provider: simulated`` with a
one-hour ``first_token_delay``: a silent model that needs no socket), so each stream costs one
descriptor and the limit is no longer what stops it. Everything else is the same stream: the
admission, the session with its deadlines timer, the source waiting for its first event, the
client connection held open.

Reports the streams held (``gateway_active_streams`` from ``/metrics``, so the gateway itself
says how many it holds), how long the connect burst took, and the gateway's resident memory per
held stream (without an upstream connection and its parser: lower than the ``idle`` figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.loadgen import post
from bench.peers import (
    ROOT,
    Peer,
    _spawn,
    _wait_ready,
    become_load_generator,
    free_port,
    rss_kib,
)
from bench.scenarios import fd_limit

CONF = """\
server:
  host: 127.0.0.1
  port: {port}
  heartbeat_interval: 1h
limits:
  max_concurrent_streams: 1000000
routes:
  - name: silent
    provider: simulated
    options: {{first_token_delay: 1h, text: "ok"}}
"""
BODY = json.dumps({"messages": [{"role": "user", "content": "hold"}]}).encode()
ACTIVE = re.compile(rb'^gateway_active_streams\{route="silent"\} ([0-9.e+]+)$', re.MULTILINE)


async def active(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    found = ACTIVE.search(data)
    return int(float(found.group(1))) if found else 0


async def hold(peer: Peer, n: int, budget: float) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    before = rss_kib(peer.pids())
    started = time.monotonic()
    request = post("/v1/stream/silent", "127.0.0.1", BODY, {})
    conns = await loadgen.hold_idle("127.0.0.1", peer.port, request, n, budget=budget)
    held, progress = 0, time.monotonic()
    while time.monotonic() - progress < 10.0 and time.monotonic() - started < budget:
        now_held = await active(peer.port)
        if now_held > held:
            held, progress = now_held, time.monotonic()
        if held >= len(conns):
            break
        await asyncio.sleep(0.25)
    opened_s = time.monotonic() - started
    await asyncio.sleep(1.0)
    after = rss_kib(peer.pids())
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return {
        "asked": n,
        "opened": len(conns),
        "held": held,
        "open_s": round(opened_s, 1),
        "gateway_fd_limit": fd_limit(peer.pids()[0]) if peer.pids() else None,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": round((after - before) / held, 2) if held else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--budget", type=float, default=120.0)
    args = parser.parse_args()
    become_load_generator()
    workdir = Path(tempfile.mkdtemp(prefix="bench-hold-"))
    port = free_port()
    (workdir / "gateway.yaml").write_text(CONF.format(port=port))
    cmd = [sys.executable, "-m", "gateway", "--config", str(workdir / "gateway.yaml")]
    proc = _spawn("gateway", cmd, workdir, {"PYTHONPATH": str(ROOT)})
    peer = Peer("gateway", port, proc, workdir, {})
    try:
        _wait_ready(peer, "/healthz", 30)
        result = asyncio.run(hold(peer, args.streams, args.budget))
    finally:
        peer.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
