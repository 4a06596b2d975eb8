"""Two gateway processes spend one app budget through a real redis-server (contract section 13).

Each gateway is ``python -m gateway`` on its own port, both on one ``redis-server`` started on a
free port (skipped without one unless ``GATEWAY_REQUIRE_SYSTEM_TESTS=1``). Requests alternate
between them; the budget admits exactly as many as the arithmetic of ``docs/accounting.md``
allows in total, then both refuse with 429 ``budget_exceeded``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.limits.redis_server import redis_server
from tests.support.gateway import GatewayProcess, gateway_process, metric_value

OUTPUT_PER_MTOK = 1000.0  # $0.001 per output token; input is free
MAX_TOKENS = 5
LIMIT = 0.021
KEY = "replica-key-0123"
BODY = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": MAX_TOKENS}


def config(redis_url: str) -> dict[str, Any]:
    sim = {"text": "one two three", "first_token_delay": 0, "token_interval": 0}
    return {
        "routes": [
            {"name": "r", "provider": "simulated", "upstream": {"model": "sim-1"}, "options": sim}
        ],
        "pricing": [{"model": "sim-1", "input_per_mtok": 0, "output_per_mtok": OUTPUT_PER_MTOK}],
        "auth": {"keys": [{"name": "web", "key": KEY, "budget": {"usd": LIMIT, "per": "1h"}}]},
        "limits": {"backend": "redis", "redis_url": redis_url},
    }


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    left = 3600 - time.time() % 3600
    if left < 20:  # keep the test inside one budget period
        time.sleep(left + 0.1)
    with redis_server(tmp_path) as redis:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with (
            gateway_process(tmp_path / "a", config(redis.url)) as a,
            gateway_process(tmp_path / "b", config(redis.url)) as b,
        ):
            yield a, b


async def post(s: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with s.post(f"{url}/v1/stream/r", json=BODY, headers={"x-api-key": KEY}) as r:
        return r.status, dict(r.headers), await r.read()


def usage_of(raw: bytes) -> dict[str, Any]:
    for block in raw.decode().split("\n\n"):
        if "event: usage" in block:
            data: dict[str, Any] = json.loads(block.split("data: ", 1)[1])
            return data
    raise AssertionError(f"no usage event in {raw!r}")


async def settled(url: str, remaining: float) -> None:
    """Until the replica at ``url`` shows ``remaining`` USD of the budget (its
    ``gateway_budget_remaining_usd``, set from the store's total when a settlement lands)."""
    for _ in range(500):
        shown = await metric_value(url, "gateway_budget_remaining_usd", {"app": "web"})
        if shown == pytest.approx(remaining, abs=1e-9):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{url} shows {shown} USD left, not {remaining}")


async def test_two_gateways_share_one_budget(
    replicas: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = replicas
    cost = 3 * OUTPUT_PER_MTOK / 1e6  # three words of output
    worst = MAX_TOKENS * OUTPUT_PER_MTOK / 1e6
    admitted = 0
    while admitted * cost + worst <= LIMIT:
        admitted += 1
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        for n in range(admitted):
            gateway = (a, b)[n % 2]
            status, _, raw = await post(s, gateway.url)
            assert status == 200, raw
            usage = usage_of(raw)
            assert usage["output_tokens"] == 3
            assert usage["cost_usd"] == pytest.approx(cost, rel=1e-9)
            # Its settlement reaches Redis just after the answer's end (docs/accounting.md):
            # the next request, on the other replica, must find it there, not race it.
            await settled(gateway.url, LIMIT - (n + 1) * cost)
        for gateway in (a, b):  # the budget is used up for both
            status, headers, raw = await post(s, gateway.url)
            assert status == 429, raw
            assert json.loads(raw)["error"]["code"] == "budget_exceeded"
            assert 1 <= int(headers["Retry-After"]) <= 3600
    # Each replica admitted only its share: a per-process budget would have admitted more.
    assert admitted == 6
