"""CPU per event of the front doors beside the token protocol path, through the gateway.

``python -m bench.frontdoors [--seconds 5] [--repeat 3] [--concurrency 32] [--tokens 200]``

One gateway (``python -m gateway``, pinned to core 0) with three routes on the bench's fake
upstream (core 1, with the load client): ``chat`` (``openai-chat``), ``responses``
(``openai-responses``) and ``messages`` (``anthropic``). Each case is a closed loop of
``--concurrency`` clients, each stream ``--tokens`` tokens written back to back (one upstream
write per token), and the figure is the gateway's CPU (``utime + stime`` of its process tree)
per token event the clients received in the window (streams x tokens: re-encoded Responses
repeats the text in its ``done`` events, so the bench's ``~`` count would not do).

Cases, grouped by upstream so each front door is compared with the token path over the same
upstream parsing:

* ``chat``: the token path (``/v1/stream/chat``), Responses and Messages re-encoded;
* ``responses``: the token path, Responses passed through (same-API pass-through);
* ``messages``: the token path, Messages passed through.

Cases run interleaved, ``--repeat`` rounds, medians reported; the ratio is the front door's
median over the token path's on the same upstream (the target: at most 1.3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import closed_loop, post
from bench.peers import (
    ROOT,
    Peer,
    _spawn,
    _wait_ready,
    cpu_seconds,
    free_port,
    start_upstream,
)

TARGET = 1.3
CONF = """
server: {{host: 127.0.0.1, port: {port}, heartbeat_interval: 60s}}
limits: {{max_concurrent_streams: 100000}}
routes:
  - name: chat
    provider: openai-chat
    upstream: {{base_url: "http://127.0.0.1:{upstream}/v1", api_key: sk-bench, model: bench}}
  - name: responses
    provider: openai-responses
    upstream: {{base_url: "http://127.0.0.1:{upstream}/v1", api_key: sk-bench, model: bench}}
  - name: messages
    provider: anthropic
    upstream: {{base_url: "http://127.0.0.1:{upstream}", api_key: sk-bench, model: bench}}
"""
CASES: list[tuple[str, str, str]] = [  # (upstream route, client path, how the events get there)
    ("chat", "tokens", "token path"),
    ("chat", "responses", "re-encoded"),
    ("chat", "messages", "re-encoded"),
    ("responses", "tokens", "token path"),
    ("responses", "responses", "passed through"),
    ("messages", "tokens", "token path"),
    ("messages", "messages", "passed through"),
]


def request(route: str, door: str, spec: str) -> tuple[str, bytes]:
    """The path and body of one stream on ``route`` through ``door``."""
    user = [{"role": "user", "content": spec}]
    if door == "tokens":
        return f"/v1/stream/{route}", json.dumps({"messages": user}).encode()
    if door == "responses":
        body: dict[str, Any] = {"model": route, "input": spec, "stream": True}
        return "/v1/responses", json.dumps(body).encode()
    body = {"model": route, "max_tokens": 4096, "messages": user, "stream": True}
    return "/v1/messages", json.dumps(body).encode()


def start_gateway(upstream_port: int) -> Peer:
    workdir = Path(tempfile.mkdtemp(prefix="bench-frontdoors-"))
    port = free_port()
    (workdir / "gateway.yaml").write_text(CONF.format(port=port, upstream=upstream_port))
    cmd = [sys.executable, "-m", "gateway", "--config", str(workdir / "gateway.yaml")]
    proc = _spawn("gateway", cmd, workdir, {"PYTHONPATH": str(ROOT)})
    peer = Peer("gateway", port, proc, workdir)
    _wait_ready(peer, "/healthz", 30)
    return peer


async def measure(
    peer: Peer, route: str, door: str, *, tokens: int, concurrency: int, seconds: float
) -> dict[str, float]:
    """One closed-loop window: CPU µs per event and streams per second."""
    path, body = request(route, door, f"bench:{tokens}:0:0:flow")
    raw = post(path, peer.host, body)
    marks: list[float] = []
    tally, window = await closed_loop(
        peer.host,
        peer.port,
        raw,
        concurrency=concurrency,
        duration=seconds,
        on_window=lambda: marks.append(cpu_seconds(peer.pids())),
    )
    if tally.failed or not tally.streams or set(tally.statuses) != {200}:
        raise SystemExit(f"{route}/{door}: {tally.failed} failed, statuses {tally.statuses}")
    events = tally.streams * tokens
    return {
        "cpu_us_per_event": (marks[1] - marks[0]) / events * 1e6,
        "streams_per_s": tally.streams / window,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    upstream, upstream_port = start_upstream()
    samples: dict[tuple[str, str], list[float]] = {(r, d): [] for r, d, _ in CASES}
    peer: Peer | None = None
    try:
        peer = start_gateway(upstream_port)
        for route, door, _ in CASES:  # warm-up: imports, caches, connections
            await measure(peer, route, door, tokens=args.tokens, concurrency=4, seconds=0.5)
        for _ in range(args.repeat):
            for route, door, _ in CASES:
                got = await measure(
                    peer,
                    route,
                    door,
                    tokens=args.tokens,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                )
                samples[route, door].append(got["cpu_us_per_event"])
    finally:
        if peer is not None:
            peer.stop()
        upstream.terminate()
        upstream.wait(5)
    rows = []
    for route, door, how in CASES:
        median = statistics.median(samples[route, door])
        base = statistics.median(samples[route, "tokens"])
        rows.append(
            {
                "upstream": route,
                "client": door,
                "how": how,
                "cpu_us_per_event": round(median, 2),
                "samples": [round(s, 2) for s in samples[route, door]],
                "ratio": round(median / base, 2),
            }
        )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| upstream | client API | events | CPU µs/event | x token path | target ≤ 1.3 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "" if r["client"] == "tokens" else ("met" if r["ratio"] <= TARGET else "missed")
        client = "token protocol" if r["client"] == "tokens" else r["client"].capitalize()
        lines.append(
            f"| {r['upstream']} | {client} | {r['how']} | {r['cpu_us_per_event']} "
            f"| {r['ratio']} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.frontdoors", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per case")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (cases interleaved)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args))
    print(report(rows))
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
