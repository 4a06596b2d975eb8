"""Two gateway processes share one budget through a real redis-server; then Redis dies.

Each gateway is ``python -m gateway`` on its own port (the way replicas run), both pointing at
one ``redis-server`` started on a free port and stopped by PID.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.limits.redis_server import RedisServer, redis_server
from tests.support.gateway import GatewayProcess, gateway_process

FAST = {"first_token_delay": 0, "token_interval": 0, "text": "one two"}
SLOW = {"first_token_delay": "30s", "token_interval": 0, "text": "late"}
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def config(redis_url: str, on_error: str) -> dict[str, Any]:
    return {
        "server": {"heartbeat_interval": "100ms"},
        "routes": [
            {
                "name": "counted",
                "provider": "simulated",
                "options": FAST,
                "limits": {"requests_per_minute": 5},
            },
            {
                "name": "slow",
                "provider": "simulated",
                "options": SLOW,
                "limits": {"concurrent_streams": 1},
            },
        ],
        "limits": {"backend": "redis", "redis_url": redis_url, "on_backend_error": on_error},
    }


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[RedisServer, GatewayProcess, GatewayProcess]]:
    """Redis, then gateway A (fails open) and gateway B (fails closed) sharing it."""
    with redis_server(tmp_path) as redis:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with (
            gateway_process(tmp_path / "a", config(redis.url, "open")) as a,
            gateway_process(tmp_path / "b", config(redis.url, "closed")) as b,
        ):
            yield redis, a, b


async def post(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, bytes]:
    async with session.post(url, json=HELLO) as r:
        return r.status, r.headers.copy(), await r.read()


async def backend_errors(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith("gateway_limit_backend_errors_total "):
            return float(line.split()[1])
    raise AssertionError("gateway_limit_backend_errors_total is not exported")


async def test_two_replicas_share_one_budget_and_survive_redis_dying(
    replicas: tuple[RedisServer, GatewayProcess, GatewayProcess],
) -> None:
    redis, a, b = replicas
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        # requests_per_minute: 5 across both replicas.
        statuses = []
        for i in range(6):
            gw = a if i % 2 == 0 else b
            statuses.append(await post(s, f"{gw.url}/v1/stream/counted"))
        assert [st for st, _, _ in statuses] == [200] * 5 + [429]
        assert int(statuses[5][1]["Retry-After"]) >= 1
        assert (await post(s, f"{a.url}/v1/stream/counted"))[0] == 429  # either replica

        # concurrent_streams: 1 across both: a stream open on A blocks B until it ends.
        async with s.post(f"{a.url}/v1/stream/slow", json=HELLO) as held:
            assert held.status == 200  # headers went out with the first heartbeat
            refused = await post(s, f"{b.url}/v1/stream/slow")
            assert refused[0] == 429 and refused[1]["Retry-After"] == "1"
            assert "concurrent_streams" in json.loads(refused[2])["error"]["message"]
        # The client left: A releases the lease in Redis (asynchronously), then B admits.
        async with asyncio.timeout(5):
            while True:
                async with s.post(f"{b.url}/v1/stream/slow", json=HELLO) as r:
                    if r.status == 200:
                        break
                    assert r.status == 429
                await asyncio.sleep(0.05)

        assert await backend_errors(s, a.url) == 0
        redis.kill()
        # A fails open: served, counted in metrics and logged.
        opened = await post(s, f"{a.url}/v1/stream/counted")
        assert opened[0] == 200 and b"event: end" in opened[2]
        assert await backend_errors(s, a.url) >= 1
        # B fails closed: 503 unavailable.
        closed = await post(s, f"{b.url}/v1/stream/counted")
        assert closed[0] == 503
        assert json.loads(closed[2])["error"]["code"] == "unavailable"
    assert "limits_backend_error" in a.log()
    assert "limits_backend_error" in b.log()
