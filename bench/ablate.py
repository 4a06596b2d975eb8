"""What each always-on part of a request costs where it runs: the gateway with that part stubbed.

    python -m bench.ablate [--parts metrics,log,pricing,first-event-timeout,request-id]
                           [--scenario chat-1] [--rounds 5] [--seconds 4]

A microbenchmark prices a part alone, its code and data in a warm cache. On the gateway's
request path each part runs between all the others (about 800 Python calls per 1-token
request), and costs more there. This module measures that: the gateway runs once per variant,
each with one part replaced by a stub (:data:`STUBS`), plus two untouched ones (``base`` and
``base-again``: their difference is the noise), and each variant's CPU µs per request under
the same closed-loop load, one variant after the other, for ``--rounds`` rounds (the order
reversed every other round). A part's cost is the median over the rounds of ``base`` minus its
variant in the same round.

A stub breaks what the part does (no metrics, no log line, no cost, no first-event deadline,
predictable request ids): a variant is a measurement, never a configuration. The stubs replace
module attributes in the gateway's process before it starts (``--serve PARTS``: this module's
entry applies them, then runs the gateway's command line), so the gateway's code is not touched.
Every variant runs the gateway's Python sources (``GATEWAY_NATIVE=0``): a compiled module calls
its neighbours directly, past any attribute a stub replaces (``gateway.native``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bench.peers import (
    ROOT,
    ROUTES,
    Peer,
    _gateway_bodies,
    _spawn,
    _wait_ready,
    become_load_generator,
    free_port,
    gateway_config,
    start_upstream,
)
from bench.scenarios import LOADS, Load, run_load


def _replace(owner: object, name: str, value: object) -> None:
    """Replace ``owner.name`` (a module's global, a class's method) with ``value``."""
    setattr(owner, name, value)


def _no_metrics() -> None:
    """Every Prometheus value update becomes a no-op (the families' own code still runs)."""
    from prometheus_client import metrics, values

    def nothing(*_: Any, **__: Any) -> None:
        return None

    for cls, names in (
        (values.MutexValue, ("inc", "set")),
        (metrics.Counter, ("inc",)),
        (metrics.Gauge, ("inc", "dec", "set")),
        (metrics.Histogram, ("observe",)),
    ):
        for name in names:
            _replace(cls, name, nothing)


def _no_tally() -> None:
    """The metric updates of a stream are not even batched: the tally's ``inc``, ``add`` and
    ``observe`` do nothing (the records and the families still run; the per-write histograms'
    batches too)."""
    from gateway.metrics.tally import Tally

    for name in ("inc", "add", "observe"):
        _replace(Tally, name, lambda *_, **__: None)


def _no_log() -> None:
    """The stream's log line (and a rejection's) is not written."""
    from gateway.stream import serve, session

    for module in (serve, session):
        _replace(module, "log_event", lambda *_, **__: None)
    _replace(session, "log_fields", lambda *_, **__: None)  # the stream's line


def _no_pricing() -> None:
    """No usage hook: the ``usage`` event passes unpriced."""
    from gateway.stream.meter import Meter

    _replace(Meter, "hook", lambda self, attempt: None)


@contextlib.asynccontextmanager
async def _no_deadline(_: float) -> AsyncIterator[None]:
    yield


def _no_first_event_timeout() -> None:
    """The upstream request is sent and its head awaited without ``asyncio.timeout``."""
    from gateway import upstream

    class Asyncio:  # the module as ``gateway.upstream`` sees it, less its timeout
        timeout = staticmethod(_no_deadline)

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

    _replace(upstream, "asyncio", Asyncio())


def _counted_request_ids() -> None:
    """Request ids from a counter, not from ``os.urandom`` (one system call each)."""
    from gateway.stream import serve

    counter = itertools.count()
    _replace(serve, "new_request_id", lambda: f"{next(counter):032x}")


STUBS: dict[str, Callable[[], None]] = {
    "metrics": _no_metrics,
    "tally": _no_tally,
    "log": _no_log,
    "pricing": _no_pricing,
    "first-event-timeout": _no_first_event_timeout,
    "request-id": _counted_request_ids,
}
"""The parts this module can take out, by name: each function stubs its part in the gateway's
process."""

BASES = ("base", "base-again")


def serve(parts: list[str], gateway_args: list[str]) -> int:
    """Stub ``parts``, then run the gateway's command line (the variant's process)."""
    for part in parts:
        STUBS[part]()
    from gateway.cli import main

    return main(gateway_args)


def start_variant(name: str, parts: list[str], upstream_port: int) -> Peer:
    """The bench's ``gateway`` peer with ``parts`` stubbed."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-ablate-{name}-"))
    port = free_port()
    config = workdir / "gateway.yaml"
    config.write_text(gateway_config(port, upstream_port, lambda conf: conf))
    cmd = [
        sys.executable,
        "-m",
        "bench.ablate",
        "--serve",
        ",".join(parts),
        "--config",
        str(config),
    ]
    proc = _spawn(name, cmd, workdir, {"PYTHONPATH": str(ROOT), "GATEWAY_NATIVE": "0"})
    peer = Peer(
        name, port, proc, workdir, {r: f"/v1/stream/{r}" for r in ROUTES}, _gateway_bodies()
    )
    _wait_ready(peer, "/healthz", 30)
    return peer


async def measure(parts: list[str], load: Load, rounds: int) -> dict[str, Any]:
    """Each variant's CPU µs per request over ``rounds``, and each part's cost."""
    upstream, upstream_port = start_upstream()
    variants: dict[str, list[str]] = {name: [] for name in BASES} | {p: [p] for p in parts}
    peers = [start_variant(name, stubbed, upstream_port) for name, stubbed in variants.items()]
    got: dict[str, list[float]] = {peer.name: [] for peer in peers}
    try:
        for peer in peers:  # warm each up alike
            await run_load(peer, dataclasses.replace(load, duration=1.0))
        for r in range(rounds):
            for peer in peers if r % 2 == 0 else peers[::-1]:
                result = await run_load(peer, load)
                got[peer.name].append(result["cpu_us_per_stream"])
            print(json.dumps({"round": r, **{k: v[-1] for k, v in got.items()}}), flush=True)
    finally:
        for peer in peers:
            peer.stop()
        upstream.terminate()
    return summarise(got)


def summarise(got: dict[str, list[float]]) -> dict[str, Any]:
    """Medians per variant; each part's cost, the median over rounds of ``base`` minus the
    variant in the same round (paired: a round the machine was busy moves both); the noise, the
    same for ``base-again``."""
    median = {name: round(statistics.median(values), 1) for name, values in got.items()}

    def paired(name: str) -> float:
        return round(
            statistics.median(b - v for b, v in zip(got["base"], got[name], strict=True)), 1
        )

    return {
        "us_per_request": median,
        "noise_us": paired("base-again"),
        "cost_us": {name: paired(name) for name in got if name not in BASES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ablate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--parts", default=",".join(STUBS))
    parser.add_argument("--scenario", default="chat-1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve is not None:
        raise SystemExit(serve(list(filter(None, args.serve.split(","))), rest))
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in STUBS]
    if unknown:
        parser.error(f"unknown parts {unknown} (known: {', '.join(STUBS)})")
    become_load_generator()
    base = next(x for x in LOADS if x.name == args.scenario)
    load = dataclasses.replace(base, duration=args.seconds)
    print(json.dumps(asyncio.run(measure(parts, load, args.rounds)), indent=1))


if __name__ == "__main__":
    main()
