"""Two gateway processes share one pool's state through a real redis-server; then Redis dies.

Each gateway is ``python -m gateway`` on its own port; the deployments are fake upstreams on
loopback. ``max_concurrent`` and rests hold across both processes; with Redis gone, gateway A
(``on_backend_error: open``) balances on its own memory and B (``closed``) answers 503.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults.kit import post
from tests.limits.redis_server import RedisServer, redis_server
from tests.pool.server_kit import counts, deployments, held, pooled_route
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import GatewayProcess, gateway_process, wait_for

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def config(fakes: dict[str, FakeUpstream], redis_url: str, on_error: str) -> dict[str, Any]:
    route = pooled_route(fakes, strategy="round_robin", caps={"x": 1, "y": 1})
    return {
        "routes": [route],
        "limits": {"backend": "redis", "redis_url": redis_url, "on_backend_error": on_error},
    }


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[RedisServer, dict[str, FakeUpstream], GatewayProcess, GatewayProcess]]:
    async with deployments("x", "y") as fakes:
        with redis_server(tmp_path) as redis:
            (tmp_path / "a").mkdir()
            (tmp_path / "b").mkdir()
            with (
                gateway_process(tmp_path / "a", config(fakes, redis.url, "open")) as a,
                gateway_process(tmp_path / "b", config(fakes, redis.url, "closed")) as b,
            ):
                yield redis, fakes, a, b


async def test_caps_and_rests_hold_across_two_gateways_and_redis_dying(
    setup: tuple[RedisServer, dict[str, FakeUpstream], GatewayProcess, GatewayProcess],
) -> None:
    redis, fakes, a, b = setup
    for fake in fakes.values():
        fake.push(held())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        # max_concurrent 1 each: one stream held through A, one through B, then both are full.
        first = await s.post(f"{a.url}/v1/stream/r", json=HELLO)
        await first.content.readuntil(b"event: delta")
        second = await s.post(f"{b.url}/v1/stream/r", json=HELLO)
        await second.content.readuntil(b"event: delta")
        assert counts(fakes) == {"x": 1, "y": 1}  # B did not pick A's deployment
        for gw in (a, b):
            full = await post(f"{gw.url}/v1/stream/r")
            assert full.status == 503, full.raw
        first.close()
        second.close()
        await wait_for(lambda: all(f.open_connections == 0 for f in fakes.values()))

        # A 429 seen through A rests x for B as well.
        fakes["x"].push(Script(status=429, headers={"Retry-After": "30"}))

        async def served(url: str) -> bool:
            await asyncio.sleep(0.1)  # a lease's release reaches Redis in the background
            reply = await post(url)
            return reply.status == 200 and reply.types[-1] == "end"

        before = counts(fakes)
        for _ in range(2):  # one of these two meets x's 429 and fails over to y
            assert await served(f"{a.url}/v1/stream/r")
        assert counts(fakes)["x"] == before["x"] + 1
        x_seen = counts(fakes)["x"]
        for _ in range(4):
            assert await served(f"{b.url}/v1/stream/r")
        assert counts(fakes)["x"] == x_seen  # resting in Redis: B never offers it

        redis.kill()
        opened = await post(f"{a.url}/v1/stream/r")
        assert opened.status == 200 and opened.types[-1] == "end"  # open: memory fallback
        closed = await post(f"{b.url}/v1/stream/r")
        assert closed.status == 503
        assert json.loads(closed.raw)["error"]["code"] == "unavailable"
    assert "limits_backend_error" in a.log()
