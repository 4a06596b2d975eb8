"""Budgets end to end (contract section 13): a fake provider, the gateway on loopback, a set clock.

A key spends up to its budget, the next request gets 429 ``budget_exceeded`` with ``Retry-After``
until the period's end (in every front door's own error shape), other keys are unaffected, the
period rolls; an aborted stream is settled with its real usage after a drain, and with its
worst case when cancelled before the usage.

The worst case and the cost are computed here from ``docs/accounting.md``, not by the gateway's
code: worst case = ``max_tokens`` at the output price + body bytes / 4 tokens at the dearer of
the input and cache-write prices.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.reload import reload_config
from tests.adapters.harness import fixture_bytes, fixture_expected
from tests.server.test_accounting import PRICE, expected_cost, pricing, route
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for

FIXTURE = "openai_chat_cache_usage.sse"
USAGE = fixture_expected(FIXTURE)["usage_normalized"]
COST = expected_cost(USAGE)
SSE = {"Content-Type": "text/event-stream"}
HOUR = 3600
T0 = 500_000 * HOUR  # the start of an hour (UTC)
LIMIT = 0.01
MAX_TOKENS = 100
BODY = json.dumps({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": MAX_TOKENS})
KEYS = {"web": "key-web-0123", "cli": "key-cli-4567", "free": "key-free-89ab"}


def worst_case(body_bytes: int, max_tokens: int = MAX_TOKENS) -> float:
    tokens_in = math.ceil(body_bytes / 4)
    return (max_tokens * PRICE["output"] + tokens_in * max(PRICE["input"], PRICE["write"])) / 1e6


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, fixture_bytes(FIXTURE))], headers=SSE)
    yield fake
    await fake.stop()


def config(upstream: FakeUpstream, **route_extra: Any) -> dict[str, Any]:
    budget = {"usd": LIMIT, "per": "1h"}
    return {
        "routes": [route("openai-chat", upstream.url, "priced-model", **route_extra)],
        "pricing": [pricing("priced-model")],
        "auth": {
            "keys": [
                {"name": "web", "key": KEYS["web"], "budget": budget},
                {"name": "cli", "key": KEYS["cli"], "budget": budget},
                {"name": "free", "key": KEYS["free"]},
            ]
        },
    }


async def post(url: str, app: str, body: str = BODY) -> tuple[int, dict[str, str], bytes]:
    headers = {"x-api-key": KEYS[app], "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def remaining(url: str, app: str) -> float:
    return await metric_value(url, "gateway_budget_remaining_usd", {"app": app})


async def test_spend_up_to_the_budget_then_429_until_the_period_rolls(
    upstream: FakeUpstream,
) -> None:
    worst = worst_case(len(BODY))
    admitted = 0  # requests run one at a time: admitted while spent + worst case <= limit
    while admitted * COST + worst <= LIMIT:
        admitted += 1
    assert admitted >= 3 and admitted * COST + worst > LIMIT * 1.01, "not at an edge"
    clock = Clock(T0 + 1000)
    async with running_gateway(config(upstream)) as gw:
        gw.state.extras["budgets"].clock = clock
        stream = f"{gw.url}/v1/stream/r"
        for n in range(admitted):
            status, _, raw = await post(stream, "web")
            assert status == 200, (n, raw)
            assert b'"cost_usd"' in raw
        assert await remaining(gw.url, "web") == pytest.approx(LIMIT - admitted * COST, abs=1e-8)
        status, headers, raw = await post(stream, "web")
        assert status == 429
        assert json.loads(raw)["error"]["code"] == "budget_exceeded"
        assert headers["Retry-After"] == str(HOUR - 1000)
        assert len(upstream.seen) == admitted  # the refused request never reached the provider
        # Other keys are unaffected: another budget, and a key without one.
        assert (await post(stream, "cli"))[0] == 200
        assert (await post(stream, "free"))[0] == 200
        spent = await metric_value(gw.url, "gateway_cost_usd_total", {"route": "r", "app": "web"})
        assert spent == pytest.approx(admitted * COST, rel=1e-9)
        clock.now = T0 + 3599
        status, headers, _ = await post(stream, "web")
        assert (status, headers["Retry-After"]) == (429, "1")
        clock.now = T0 + HOUR  # the next period: the whole budget again
        assert (await post(stream, "web"))[0] == 200
        assert await remaining(gw.url, "web") == pytest.approx(LIMIT - COST, abs=1e-8)


async def test_a_large_max_tokens_is_refused_by_its_worst_case_alone(
    upstream: FakeUpstream,
) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000})
    assert worst_case(len(body), 1000) > LIMIT
    async with running_gateway(config(upstream)) as gw:
        status, headers, raw = await post(f"{gw.url}/v1/stream/r", "web", body)
        assert status == 429 and json.loads(raw)["error"]["code"] == "budget_exceeded"
        assert int(headers["Retry-After"]) >= 1
        assert upstream.seen == []
        # Nothing was reserved by the refusal: a small request still fits.
        assert (await post(f"{gw.url}/v1/stream/r", "web"))[0] == 200


async def test_over_budget_in_each_front_doors_error_shape(upstream: FakeUpstream) -> None:
    clock = Clock(T0 + 600)
    messages = [{"role": "user", "content": "Hello"}]
    async with running_gateway(config(upstream)) as gw:
        gw.state.extras["budgets"].clock = clock
        while (await post(f"{gw.url}/v1/stream/r", "web"))[0] == 200:
            pass
        chat = {"model": "r", "messages": messages, "max_tokens": MAX_TOKENS, "stream": True}
        status, headers, raw = await post(f"{gw.url}/v1/chat/completions", "web", json.dumps(chat))
        assert (status, headers["Retry-After"]) == (429, "3000")
        error = json.loads(raw)["error"]
        assert (error["code"], error["type"]) == ("budget_exceeded", "rate_limit_error")
        resp = {"model": "r", "input": "Hello", "max_output_tokens": MAX_TOKENS, "stream": True}
        status, headers, raw = await post(f"{gw.url}/v1/responses", "web", json.dumps(resp))
        assert (status, headers["Retry-After"]) == (429, "3000")
        assert json.loads(raw)["error"]["code"] == "budget_exceeded"
        anthropic = {"model": "r", "messages": messages, "max_tokens": MAX_TOKENS, "stream": True}
        status, headers, raw = await post(f"{gw.url}/v1/messages", "web", json.dumps(anthropic))
        assert (status, headers["Retry-After"]) == (429, "3000")
        doc = json.loads(raw)
        assert doc["type"] == "error" and doc["error"]["type"] == "rate_limit_error"


async def abort_after_first_delta(port: int, app: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /v1/stream/r HTTP/1.1\r\nHost: x\r\nx-api-key: {KEYS[app]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}".encode()
    )
    await writer.drain()
    buf = b""
    async with asyncio.timeout(5):
        while b"event: delta" not in buf:
            chunk = await reader.read(65536)
            assert chunk, buf
            buf += chunk
    writer.transport.abort()


def slow_fixture() -> Script:
    """The fixture's first two chunks, then the rest (with the usage) half a second later."""
    data = fixture_bytes(FIXTURE)
    cut = data.index(b"\n\n", data.index(b"\n\n") + 2) + 2
    return Script(chunks=[(0, data[:cut]), (0.5, data[cut:])], headers=SSE)


@pytest.mark.parametrize("policy", ["drain", "detach", "cancel"])
async def test_an_aborted_stream_is_settled(upstream: FakeUpstream, policy: str) -> None:
    """Drained or detached (resumable): with its real usage, when the upstream ends. Cancelled
    before the usage: the worst case."""
    upstream.push(slow_fixture())
    extra: dict[str, Any] = {"resume": {"enabled": True}} if policy == "detach" else {}
    doc = config(upstream, on_client_abort=policy, drain_timeout="10s", **extra)
    async with running_gateway(doc) as gw:
        budgets = gw.state.extras["budgets"]
        web = next(k for k in gw.state.config.auth.keys if k.name == "web")
        await abort_after_first_delta(gw.port, "web")
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 5)
        await wait_for(lambda: not gw.state.drain_tasks and not gw.state.sessions, 5)
        await asyncio.sleep(0.05)  # the handler task's done-callbacks
        left = await budgets.remaining(web)
        spent = await metric_value(gw.url, "gateway_cost_usd_total", {"route": "r", "app": "web"})
    if policy in ("drain", "detach"):
        assert upstream.seen[0].completed
        assert left == pytest.approx(LIMIT - COST, abs=1e-8)
        assert spent == pytest.approx(COST, rel=1e-9)
    else:
        assert not upstream.seen[0].completed
        assert left == pytest.approx(LIMIT - worst_case(len(BODY)), abs=1e-8)
        assert spent == 0


async def test_a_reload_prices_with_the_new_pricing_and_keeps_the_budget(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    doc = config(upstream)
    async with running_gateway(doc) as gw:
        first = usage_of((await post(f"{gw.url}/v1/stream/r", "web"))[2])
        dearer = {**pricing("priced-model"), "output_per_mtok": 2 * PRICE["output"]}
        path = tmp_path / "reloaded.yaml"
        path.write_text(yaml.safe_dump({**doc, "pricing": [dearer]}))
        old = gw.state
        assert reload_config(gw.app, str(path))
        assert gw.state is not old and gw.state.pricer is not old.pricer
        second = usage_of((await post(f"{gw.url}/v1/stream/r", "web"))[2])
        web = next(k for k in gw.state.config.auth.keys if k.name == "web")
        left = await gw.state.extras["budgets"].remaining(web)
    extra = USAGE["output_tokens"] * PRICE["output"] / 1e6
    assert first["cost_usd"] == pytest.approx(COST, rel=1e-9)
    assert second["cost_usd"] == pytest.approx(COST + extra, rel=1e-9)
    # The budget lives in the shared limits backend: the reload kept what was spent.
    assert left == pytest.approx(LIMIT - 2 * COST - extra, abs=1e-8)


def usage_of(raw: bytes) -> dict[str, Any]:
    (usage,) = [
        json.loads(block.split("data: ", 1)[1])
        for block in raw.decode().split("\n\n")
        if "event: usage" in block
    ]
    assert isinstance(usage, dict)
    return usage


async def test_a_request_every_upstream_refused_costs_nothing(upstream: FakeUpstream) -> None:
    # A 500 or a 429 before any stream: the provider billed nothing, so the budget is whole
    # again after it (it was charged the worst case each time: an outage spent the budget).
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    refused = [Script(status=s, chunks=[(0, json.dumps(error).encode())]) for s in (500, 429)]
    upstream.push(*refused)
    async with running_gateway(config(upstream)) as gw:
        stream = f"{gw.url}/v1/stream/r"
        assert (await post(stream, "web"))[0] == 502
        assert await remaining(gw.url, "web") == pytest.approx(LIMIT, abs=1e-12)
        assert (await post(stream, "web"))[0] == 429
        assert await remaining(gw.url, "web") == pytest.approx(LIMIT, abs=1e-12)
        assert (await post(stream, "web"))[0] == 200  # the next is served and charged
        assert await remaining(gw.url, "web") == pytest.approx(LIMIT - COST, abs=1e-8)
