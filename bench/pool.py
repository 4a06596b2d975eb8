"""Pool cost per request: CPU µs for ``acquire`` + ``release`` on the memory store (target < 5 µs).

For each strategy, a three-deployment pool (weights 3/2/1, one with a ``max_concurrent``) with its
metrics bound to a fresh registry runs one-shot requests in a loop for a fixed CPU budget:
``acquire`` then ``release`` (``acquire_release``), and the same with ``succeeded`` between
(``with_verdict``: the EWMA, the counter and the TTFT histogram), and what a stream does through
``gateway.stream.choices.Pooled`` (``stream``: ``next``, ``answered``, ``close``). The figure is
process CPU time divided by the requests made, best of 15 rounds. No I/O: this is what choosing
a deployment adds to each request.

    python -m bench.pool              # prints one row per strategy
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from prometheus_client import CollectorRegistry

from gateway.config.model import UpstreamConfig, UpstreamTarget
from gateway.config.pool import STRATEGIES, Cooldown, Deployment, PoolConfig, Strategy
from gateway.metrics import Metrics
from gateway.pool import Pool
from gateway.stream.attempts import Attempt
from gateway.stream.choices import Pooled


def _pool(strategy: Strategy) -> Pool:
    deps = tuple(
        Deployment(
            name, UpstreamTarget("p", UpstreamConfig(f"http://{name}"), deployment=name), w, cap
        )
        for name, w, cap in (("east", 3.0, 1000), ("west", 2.0, None), ("south", 1.0, None))
    )
    config = PoolConfig(deps, strategy, Cooldown())
    recorder = Metrics(CollectorRegistry()).pools.route("bench", config.names)
    return Pool("bench", config, recorder=recorder)


async def _loop(pool: Pool, n: int, verdict: bool) -> None:
    acquire = pool.acquire
    for _ in range(n):
        lease = await acquire(())
        assert lease is not None
        if verdict:
            lease.succeeded(0.05)
        lease.release()


async def _stream_loop(pool: Pool, n: int, verdict: bool) -> None:
    """What a stream does (``gateway.stream.choices.Pooled``): next, a verdict, close."""
    attempts = [Attempt(d.target, cast(Any, None), cast(Any, None)) for d in pool.deployments]
    for _ in range(n):
        choices = Pooled(pool, attempts)
        attempt = await choices.next()
        assert attempt is not None
        if verdict:
            choices.answered(0.05)
        choices.close()


def _per_request(
    strategy: Strategy, verdict: bool, budget: float, rounds: int = 15, run: Any = _loop
) -> float:
    """The best of ``rounds`` rounds of ``budget / rounds`` CPU seconds each (the machine is
    shared: the minimum is the cost, the rest is other processes' interference)."""
    pool = _pool(strategy)
    loop = asyncio.new_event_loop()
    best = float("inf")
    try:
        loop.run_until_complete(run(pool, 2000, verdict))  # warm-up
        for _ in range(rounds):
            done = 0
            start = time.process_time()
            while (used := time.process_time() - start) < budget / rounds:
                loop.run_until_complete(run(pool, 2000, verdict))
                done += 2000
            best = min(best, used / done * 1e6)
    finally:
        loop.close()
    return best


def measure(budget: float = 0.5) -> list[dict[str, Any]]:
    """One row per strategy: CPU µs per request for acquire+release, and with a verdict."""
    return [
        {
            "strategy": s,
            "us_acquire_release": _per_request(s, False, budget),
            "us_with_verdict": _per_request(s, True, budget),
            "us_stream": _per_request(s, True, budget, run=_stream_loop),
        }
        for s in STRATEGIES
    ]


if __name__ == "__main__":
    print("| strategy | acquire+release (µs) | + succeeded (µs) | a stream's choices (µs) |")
    print("|---|---:|---:|---:|")
    for row in measure(1.5):
        a, b, c = row["us_acquire_release"], row["us_with_verdict"], row["us_stream"]
        print(f"| {row['strategy']} | {a:.2f} | {b:.2f} | {c:.2f} |")
