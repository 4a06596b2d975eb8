"""Soak: thousands of concurrent streams with random client aborts, for minutes (not a test).

::

    .venv/bin/python -m bench.soak --quick                 # ~20 s, 500 streams
    .venv/bin/python -m bench.soak                         # ~2 min, 2000 streams
    .venv/bin/python -m bench.soak --streams 4000 --duration 600 --json out.json

The gateway runs as its own process (``python -m bench.soak --serve``: the production app and
runner, plus one extra middleware answering ``GET /_soak/tasks`` with the live asyncio tasks, so
leaked tasks can be counted from outside). This process runs a fake upstream (a chat-completions
compatible SSE stream that counts every connection it opens and sees closed) and the clients:
``--streams`` concurrent streams, half on a ``simulated`` route and half through the fake
upstream, each replaced when it ends; ``--abort`` of them are cut at a random moment (before the
answer, while waiting, or mid-stream). The load runs in ``--phases`` identical phases (2 by
default): the RSS after the first phase holds the allocator's arenas, so a leak shows as growth
from the end of the first phase to the end of the last. Before and after, it measures the
gateway's RSS, its open file descriptors and its asyncio tasks, and at the end checks that every
upstream connection was closed, no stream is still counted active, every stream read to its end
had exactly one terminal event, and the RSS stayed flat after the first phase.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
BODY = {"messages": [{"role": "user", "content": "soak"}]}
RSS_FLAT_BYTES = 8 * 1024 * 1024
"""How much the RSS may grow between the end of the first and of the last load phase."""


# -- the gateway process -------------------------------------------------------------------------


def serve(config_path: str, port: int) -> int:
    """``--serve``: the production app plus a task-count endpoint, until SIGTERM."""
    from gateway.config.parse import load_config_file
    from gateway.logs import setup_logging
    from gateway.runner import drain_and_stop, start_app
    from gateway.server import build_app
    from gateway.state import STATE

    _raise_fd_limit()
    setup_logging("warning")

    @web.middleware
    async def tasks_endpoint(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != "/_soak/tasks":
            return await handler(request)
        gc.collect()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        kinds = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)
        return web.json_response({"tasks": len(tasks), "kinds": dict(kinds.most_common(8))})

    async def main() -> int:
        import signal

        app = build_app(load_config_file(config_path))
        app.middlewares.insert(0, tasks_endpoint)
        runner, _ = await start_app(app, "127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        state = app[STATE].current
        await drain_and_stop(state, 1.0)
        await runner.cleanup()
        return 0

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    return asyncio.run(main())


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_stats(pid: int) -> dict[str, int]:
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return {"rss_bytes": rss, "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


# -- the fake upstream ---------------------------------------------------------------------------


class Upstream:
    """Streams ``tokens`` chat chunks ``interval`` apart; counts connections opened and closed."""

    def __init__(self, tokens: int, interval: float) -> None:
        self.tokens, self.interval = tokens, interval
        self.opened = self.closed = self.completed = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.opened += 1
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for i in range(self.tokens):
                await asyncio.sleep(self.interval * random.uniform(0.5, 1.5))
                doc: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
                await resp.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
            usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 50}}
            stop = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            for doc in (stop, usage):
                await resp.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            self.completed += 1
            return resp
        finally:
            self.closed += 1


# -- clients -------------------------------------------------------------------------------------


@dataclass
class Tally:
    started: int = 0
    completed: int = 0
    aborted: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    bad_terminal: int = 0


async def one_stream(http: aiohttp.ClientSession, url: str, abort: float | None, t: Tally) -> None:
    t.started += 1
    deadline = None if abort is None else time.monotonic() + abort
    try:
        async with asyncio.timeout(abort), http.post(url, json=BODY) as resp:
            if resp.status != 200:
                t.errors[f"http_{resp.status}"] += 1
                await resp.read()
                return
            tail = b""
            async for chunk in resp.content.iter_any():
                tail = (tail + chunk)[-512:]
            terminals = tail.count(b"event: end") + tail.count(b"event: error")
            if terminals != 1 or not (tail.rstrip().endswith(b"}")):
                t.bad_terminal += 1
            elif b"event: error" in tail:
                t.errors["error_event"] += 1
            t.completed += 1
    except TimeoutError:
        if deadline is None:
            raise
        t.aborted += 1  # leaving the context closes the connection: the client is gone
    except aiohttp.ClientError as exc:
        t.errors[type(exc).__name__] += 1


async def client_slot(
    http: aiohttp.ClientSession, urls: list[str], until: float, abort_p: float, t: Tally
) -> None:
    while time.monotonic() < until:
        abort = random.uniform(0.0, 4.0) if random.random() < abort_p else None
        await one_stream(http, random.choice(urls), abort, t)


async def gateway_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        return await r.json()


async def active_streams(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_active_streams{")
    )


# -- the scenario --------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    _raise_fd_limit()
    upstream = Upstream(tokens=args.tokens, interval=args.interval)
    await upstream.start()
    interval_ms = f"{int(args.interval * 1000)}ms"
    sim = {"words": args.tokens, "token_interval": interval_ms, "first_token_delay": "100ms"}
    config = {
        "server": {"heartbeat_interval": "5s", "shutdown_timeout": "5s"},
        "limits": {"max_concurrent_streams": args.streams * 2},
        "routes": [
            {"name": "sim", "provider": "simulated", "options": sim},
            {
                "name": "fake",
                "provider": "openai-chat",
                "upstream": {"base_url": f"http://127.0.0.1:{upstream.port}", "model": "m"},
            },
        ],
    }
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
    port = _free_port()
    proc = start_gateway(tmp, port)
    assert proc.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
    if b"ready" not in line:
        raise RuntimeError(f"gateway did not start: {(tmp / 'gateway.log').read_text()}")
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    result: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.sleep(0.5)
            before = {**proc_stats(proc.pid), **await gateway_json(http, f"{base}/_soak/tasks")}
            tally = Tally()
            urls = [f"{base}/v1/stream/sim", f"{base}/v1/stream/fake"]
            peak: dict[str, int] = {"rss_bytes": 0, "open_fds": 0}
            phases: list[dict[str, Any]] = []
            elapsed = 0.0
            for _ in range(args.phases):
                t0 = time.monotonic()
                until = t0 + args.duration

                async def sample(until: float = until) -> None:
                    while time.monotonic() < until:
                        for k, v in proc_stats(proc.pid).items():
                            peak[k] = max(peak[k], v)
                        await asyncio.sleep(1.0)

                sampler = asyncio.ensure_future(sample())
                slots = [
                    client_slot(http, urls, until, args.abort, tally) for _ in range(args.streams)
                ]
                await asyncio.gather(*slots)
                await sampler
                elapsed += time.monotonic() - t0
                settle_until = time.monotonic() + 15
                while time.monotonic() < settle_until:  # let the last cancellations land
                    if upstream.opened == upstream.closed and await active_streams(http, base) == 0:
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.0)
                phases.append({"rss_bytes_after": proc_stats(proc.pid)["rss_bytes"]})
            after = {**proc_stats(proc.pid), **await gateway_json(http, f"{base}/_soak/tasks")}
            # Idle keep-alive connections (the upstream pool, 15 s; aiohttp's server side, 75 s)
            # are not leaks: wait for them to expire before counting descriptors again.
            idle_until = time.monotonic() + 90
            while time.monotonic() < idle_until:
                after["open_fds_after_keepalive"] = proc_stats(proc.pid)["open_fds"]
                if after["open_fds_after_keepalive"] <= before["open_fds"]:
                    break
                await asyncio.sleep(1.0)
            active = await active_streams(http, base)
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}",
            "command": " ".join(sys.argv),
            "streams": args.streams,
            "duration_s": round(elapsed, 1),
            "abort_fraction": args.abort,
            "tally": {**asdict(tally), "errors": dict(tally.errors)},
            "gateway_before": before,
            "gateway_peak": peak,
            "gateway_after": after,
            "rss_growth_bytes": after["rss_bytes"] - before["rss_bytes"],
            "phases": phases,
            # The allocator keeps the arenas of the first phase; a leak shows as growth after
            # the later phases, which hold the same load.
            "rss_growth_after_first_phase_bytes": (
                phases[-1]["rss_bytes_after"] - phases[0]["rss_bytes_after"]
            ),
            "leaked_tasks": after["tasks"] - before["tasks"],
            "leaked_fds": after["open_fds_after_keepalive"] - before["open_fds"],
            "active_streams_after": active,
            "upstream": {
                "opened": upstream.opened,
                "closed": upstream.closed,
                "completed": upstream.completed,
                "still_open": upstream.opened - upstream.closed,
            },
        }
        result["ok"] = (
            result["leaked_tasks"] <= 0
            and result["upstream"]["still_open"] == 0
            and active == 0
            and tally.bad_terminal == 0
            and result["leaked_fds"] <= 2
            and result["rss_growth_after_first_phase_bytes"] <= RSS_FLAT_BYTES
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if upstream.runner is not None:
            await upstream.runner.cleanup()
    return result


def start_gateway(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    """The gateway process (``--serve``); its log goes to ``tmp/gateway.log``."""
    with open(tmp / "gateway.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.soak", "--serve", str(tmp / "gateway.yaml"), str(port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
        )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # upstream cancels: expected
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve(argv[1], int(argv[2]))
    parser = argparse.ArgumentParser(description="Soak the gateway (see the module docstring).")
    parser.add_argument("--streams", type=int, default=2000, help="concurrent streams")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of each phase")
    parser.add_argument(
        "--phases", type=int, default=2, help="load phases (memory must stay flat after the first)"
    )
    parser.add_argument("--abort", type=float, default=0.3, help="fraction of clients that abort")
    parser.add_argument("--tokens", type=int, default=40, help="tokens per stream")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between tokens")
    parser.add_argument("--quick", action="store_true", help="~20 s with 500 streams")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.duration = min(args.streams, 500), 20.0
    result = asyncio.run(soak(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
