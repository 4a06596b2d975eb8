"""The scenarios, and how one is run against one peer.

Each closed-loop scenario is a stream shape for the fake upstream (tokens, first-token delay,
gap between tokens), a route, a concurrency and a duration. Every run records, for the window
after all clients started: events/s and streams/s seen by the client, the proxy's CPU time per
event and per stream (``/proc/<pid>/stat`` of its process tree), and when timing is on the time
to first token and every gap between tokens.

Two scenarios are not closed loops: ``idle`` (memory per open idle stream on a silent upstream)
and ``abort`` (client close -> the upstream sees the close, one stream at a time, both while
tokens flow and while the model is silent).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench import loadgen
from bench.peers import Peer, cpu_seconds, rss_kib

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Load:
    """A closed-loop scenario."""

    name: str
    route: str
    tokens: int
    first_ms: int
    gap_ms: int
    concurrency: int
    duration: float
    timing: bool = False
    stagger: float = 0.0
    what: str = ""

    @property
    def spec(self) -> str:
        return f"bench:{self.tokens}:{self.first_ms}:{self.gap_ms}:flow"

    def scaled(self, factor: float) -> Load:
        return Load(**{**self.__dict__, "duration": max(1.0, self.duration * factor)})


LOADS = (
    Load("chat-b2b", "chat", 200, 0, 0, 32, 5, what="openai-chat, 200 tokens back to back"),
    Load("responses-b2b", "responses", 200, 0, 0, 32, 5, what="openai-responses, same"),
    Load("chat-paced", "chat", 200, 0, 5, 64, 5, what="openai-chat, 200 tokens 5 ms apart"),
    Load("responses-paced", "responses", 200, 0, 5, 64, 5, what="openai-responses, same"),
    Load("chat-short", "chat", 10, 0, 0, 32, 5, what="openai-chat, 10-token streams"),
    Load("chat-1", "chat", 1, 0, 0, 32, 5, what="openai-chat, 1-token streams (per request)"),
    # Each answer waits 16 ms upstream, so 32 clients ask at most ~2,000 requests/s: the same
    # traffic for every peer that carries it. chat-1 runs each peer at its own saturation, where
    # a fast proxy amortises its wake-ups over many requests and a slow one does not.
    Load("chat-1-rate", "chat", 1, 16, 0, 32, 5, stagger=0.016, what="same, ~2,000/s each"),
    Load("ttft-1", "chat", 5, 10, 10, 1, 6, True, what="1 stream at a time"),
    Load("ttft-64", "chat", 40, 10, 25, 64, 6, True, 1.0, what="64 concurrent, 40 tok/s"),
    Load("ttft-512", "chat", 40, 10, 50, 512, 8, True, 2.0, what="512 concurrent, 20 tok/s"),
)
SCENARIOS = (*(load.name for load in LOADS), "abort", "idle")


def quantile(values: Any, q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``, or ``None`` when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some runnable task waited for a CPU (PSI), in %.

    High values mean other work shared the machine: latency figures are then pessimistic.
    """
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


async def run_load(peer: Peer, load: Load) -> dict[str, Any]:
    """One closed-loop run of ``load`` against ``peer``: the figures of its window."""
    pids = peer.pids()
    cpu: list[float] = []

    def sample() -> None:
        cpu.append(cpu_seconds(pids))

    tally, window = await loadgen.closed_loop(
        HOST,
        peer.port,
        peer.request(load.route, load.spec),
        concurrency=load.concurrency,
        duration=load.duration,
        timing=load.timing,
        stagger=load.stagger,
        on_window=sample,
    )
    out: dict[str, Any] = {
        "window_s": round(window, 3),
        "streams": tally.streams,
        "events": tally.tokens,
        "failed": tally.failed,
        "unfinished": tally.unfinished,
        "statuses": {str(k): v for k, v in tally.statuses.items()},
        "events_per_s": round(tally.tokens / window, 1),
        "streams_per_s": round(tally.streams / window, 1),
    }
    if pids and len(cpu) == 2:
        used = cpu[1] - cpu[0]
        out["cpu_core_share"] = round(used / window, 3)
        if tally.tokens:
            out["cpu_us_per_event"] = round(used / tally.tokens * 1e6, 2)
            # What one whole core would carry: robust where other work shares the core.
            out["events_per_core_s"] = round(tally.tokens / used) if used else None
        if tally.streams:
            out["cpu_us_per_stream"] = round(used / tally.streams * 1e6, 1)
            out["streams_per_core_s"] = round(tally.streams / used) if used else None
    out["cpu_pressure_avg10"] = cpu_pressure()
    if load.timing:
        gaps = tally.gaps
        out["ttft_p50_ms"] = _ms(quantile(tally.ttft, 0.5))
        out["ttft_p99_ms"] = _ms(quantile(tally.ttft, 0.99))
        out["gap_p50_ms"] = _ms(quantile(gaps, 0.5))
        out["gap_p99_ms"] = _ms(quantile(gaps, 0.99))
        p99 = quantile(gaps, 0.99)
        out["jitter_p99_ms"] = None if p99 is None else round(p99 * 1000 - load.gap_ms, 3)
        out["samples"] = len(tally.ttft)
    return out


async def run_abort(peer: Peer, control: tuple[str, int], probes: int) -> dict[str, Any]:
    """Client close -> upstream close, in ms: mid-stream and while the model is silent."""
    out: dict[str, Any] = {}
    flowing = peer.request("chat", "bench:100000:0:10:flow")
    silent = peer.request("chat", "bench:1:0:0:silent")
    for phase, request, wait_first in (("flowing", flowing, True), ("silent", silent, False)):
        got = await loadgen.abort_probes(
            HOST, peer.port, request, probes, control=control, wait_first_token=wait_first
        )
        out[phase] = {
            "p50_ms": _round(quantile(got.delays_ms, 0.5)),
            "max_ms": _round(max(got.delays_ms, default=None)),
            "probes": probes,
            "missing": got.missing,
            "delays_ms": [round(d, 3) for d in got.delays_ms],
        }
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


async def run_idle(peer: Peer, control: tuple[str, int], n: int, budget: float) -> dict[str, Any]:
    """Memory per open idle stream: RSS of the proxy before and with ``n`` silent streams."""
    pids = peer.pids()
    await asyncio.sleep(0.5)
    before = rss_kib(peer.pids())
    started = time.monotonic()
    request = peer.request("chat", "bench:1:0:0:silent")
    conns = await loadgen.hold_idle(HOST, peer.port, request, n, budget=budget)
    deadline = started + budget
    open_upstream, progress = 0, time.monotonic()
    # 10 s without progress before giving up: a SYN dropped in the opening burst is sent again
    # after 1, 3 and 7 s, so a shorter wait miscounts streams that are merely late.
    while time.monotonic() < deadline and time.monotonic() - progress < 10.0:
        now_open = int((await loadgen.get_json(*control, "/_stats"))["open"])
        if now_open >= len(conns):
            open_upstream = now_open
            break
        if now_open > open_upstream:
            open_upstream, progress = now_open, time.monotonic()
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)
    pids = peer.pids()
    after = rss_kib(pids)
    held = min(len(conns), open_upstream)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    await _wait_upstream_idle(control, 30)
    out: dict[str, Any] = {
        "asked": n,
        "opened": len(conns),
        "held_upstream": held,
        "fd_limit": fd_limit(pids[0]) if pids else None,
        "open_s": round(time.monotonic() - started, 1),
        "rss_before_kib": before,
        "rss_after_kib": after,
    }
    if conns and pids:
        # Per client stream the proxy accepted: a proxy that caps its upstream pool (LiteLLM
        # holds 500) still holds every waiting client request in memory.
        out["kib_per_stream"] = round((after - before) / len(conns), 2)
    return out


def fd_limit(pid: int) -> int | None:
    """The process's open-files limit (a proxy needs two per stream: client and upstream)."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


async def _wait_upstream_idle(control: tuple[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int((await loadgen.get_json(*control, "/_stats"))["open"]) == 0:
            return
        await asyncio.sleep(0.25)
