"""CPU per stream of the tracing part: ``start_stream`` + one attempt + ``finish``.

``python -m bench.tracing [--streams N] [--collector dead|local|both]``
``python -m bench.tracing --gateway [--seconds S] [--reps N]``

Drives :class:`gateway.tracing.Tracing` exactly as a stream would (one SERVER span, one CLIENT
attempt span with its injected ``traceparent``, ``finish`` with usage, finish reason and a
first-token event) at ``sample_ratio`` 1.0 and 0.0, and reports microseconds of CPU per stream:

* ``loop_us``: CPU of the calling thread (what the event loop pays per stream);
* ``process_us``: CPU of the whole process, so it includes the batch worker thread that encodes
  and sends spans (the part that is off the event loop's critical path).

The collector is either a dead loopback port (exports fail, the bounded queue drops) or a local
OTLP/HTTP sink in a child process (its CPU is not counted). Compare with a 200-token stream,
about 200 x 30 µs = 6 ms of gateway CPU.

``--gateway`` measures the whole thing instead: ``python -m gateway`` (pinned to core 0) serving
200-token ``openai-chat`` streams back to back from the bench's fake upstream (32 clients, closed
loop), once without a ``tracing`` section and once with ``sample_ratio: 1.0`` exporting to the
local sink; CPU of the gateway's process tree (``/proc``, event loop and export thread) per
stream, alternating off/on for ``--reps`` rounds. Target: under 10% more with tracing on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from bench.peers import LOAD_CORE, Peer, pinned, start_gateway_variant, start_upstream
from bench.scenarios import Load, run_load
from gateway.config.model import TracingConfig
from gateway.tracing import Tracing

SINK = """
import http.server, sys
posts = [0]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # how many export batches arrived
        body = str(posts[0]).encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0)))
        posts[0] += 1
        self.send_response(200)
        self.send_header('content-type', 'application/x-protobuf')
        self.send_header('content-length', '0')
        self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _one_stream(tracing: Tracing, i: int) -> None:
    started = time.monotonic()
    span = tracing.start_stream(
        {}, "bench", request_model="m-1", provider="simulated", started=started
    )
    if span is None:
        return
    attempt = span.attempt("primary", "simulated", "http://127.0.0.1:9/v1/chat/completions")
    attempt.inject_headers()
    attempt.end(200)
    span.finish(
        outcome="completed",
        response_model="m-1",
        input_tokens=20,
        output_tokens=200,
        finish_reasons=("stop",),
        first_content=started + 0.001,
        attempts=1,
    )


def measure(endpoint: str, ratio: float, streams: int) -> dict[str, Any]:
    """Per-stream CPU (µs) of ``streams`` traced streams against ``endpoint``."""
    config = TracingConfig(otlp_endpoint=endpoint, sample_ratio=ratio)
    tracing = Tracing.from_config(config)
    assert tracing is not None
    for i in range(200):  # warm-up: imports, caches, first connection
        _one_stream(tracing, i)
    tracing.force_flush()
    cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    for i in range(streams):
        _one_stream(tracing, i)
    loop = time.thread_time() - thread0
    tracing.force_flush()  # the worker's share: encode + send what these streams queued
    process = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    queued, dropped = tracing.processor.enqueued, tracing.processor.dropped
    tracing.shutdown(1.0)
    return {
        "endpoint": endpoint,
        "sample_ratio": ratio,
        "streams": streams,
        "loop_us": round(loop / streams * 1e6, 1),
        "process_us": round(process / streams * 1e6, 1),
        "wall_s": round(wall, 3),
        "spans_enqueued": queued,
        "spans_dropped_queue_full": dropped,
    }


def start_sink() -> tuple[subprocess.Popen[str], int]:
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(LOAD_CORE),
    )
    assert sink.stdout is not None
    return sink, int(sink.stdout.readline())


def _batches(port: int) -> int:
    """Export batches the sink received so far (proves the traced runs really export)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return int(r.read())


def with_tracing(collector: int) -> Callable[[str], str]:
    """A config edit: export every stream's spans (ratio 1.0) to the sink on ``collector``."""

    def traced(conf: str) -> str:
        return conf + (
            f"tracing:\n  otlp_endpoint: http://127.0.0.1:{collector}\n  sample_ratio: 1.0\n"
        )

    return traced


def _start_gateway(upstream: int, collector: int | None) -> Peer:
    edit = (lambda conf: conf) if collector is None else with_tracing(collector)
    return start_gateway_variant("gateway", upstream, edit)


def measure_gateway(seconds: float, reps: int) -> list[dict[str, Any]]:
    """CPU µs per 200-token stream through the gateway, tracing off vs on (ratio 1.0)."""
    load = Load("chat-b2b", "chat", 200, 0, 0, 32, seconds)
    upstream, upstream_port = start_upstream()
    sink, sink_port = start_sink()
    rows: list[dict[str, Any]] = []
    try:
        for rep in range(reps):
            for mode, collector in (("off", None), ("on", sink_port)):
                peer = _start_gateway(upstream_port, collector)
                try:
                    asyncio.run(run_load(peer, load.scaled(0.2)))  # warm-up
                    figures = asyncio.run(run_load(peer, load))
                finally:
                    peer.stop()
                rows.append(
                    {"rep": rep, "tracing": mode, **figures, "batches": _batches(sink_port)}
                )
    finally:
        for proc in (upstream, sink):
            proc.terminate()
            proc.wait(5)
    return rows


def _gateway_report(rows: list[dict[str, Any]]) -> None:
    print("| tracing | rep | streams | CPU µs/stream | CPU µs/event | failed | sink batches |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['tracing']} | {r['rep']} | {r['streams']} | {r.get('cpu_us_per_stream')} "
            f"| {r.get('cpu_us_per_event')} | {r['failed']} | {r['batches']} |"
        )
    off = [r["cpu_us_per_stream"] for r in rows if r["tracing"] == "off"]
    on = [r["cpu_us_per_stream"] for r in rows if r["tracing"] == "on"]
    if off and on:
        a, b = statistics.median(off), statistics.median(on)
        print(f"\nmedian CPU per stream: off {a:.0f} µs, on {b:.0f} µs: {100 * (b - a) / a:+.1f}%")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--collector", choices=("dead", "local", "both"), default="both")
    parser.add_argument("--gateway", action="store_true", help="whole streams through a gateway")
    parser.add_argument("--seconds", type=float, default=5.0, help="--gateway: window per run")
    parser.add_argument("--reps", type=int, default=3, help="--gateway: off/on rounds")
    args = parser.parse_args(argv)
    if args.gateway:
        rows = measure_gateway(args.seconds, args.reps)
        _gateway_report(rows)
        print(json.dumps(rows), file=sys.stderr)
        return
    results = []
    if args.collector in ("dead", "both"):
        dead = f"http://127.0.0.1:{_free_port()}"
        results.append({"collector": "dead", **measure(dead, 1.0, args.streams)})
        results.append({"collector": "dead", **measure(dead, 0.0, args.streams)})
    if args.collector in ("local", "both"):
        sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
        try:
            assert sink.stdout is not None
            port = int(sink.stdout.readline())
            results.append(
                {"collector": "local", **measure(f"http://127.0.0.1:{port}", 1.0, args.streams)}
            )
        finally:
            sink.terminate()
            sink.wait(5)
    print("| collector | ratio | loop µs/stream | process µs/stream | dropped |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['collector']} | {r['sample_ratio']} | {r['loop_us']} | {r['process_us']} "
            f"| {r['spans_dropped_queue_full']} |"
        )
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main()
