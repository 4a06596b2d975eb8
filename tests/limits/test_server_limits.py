"""Limits through the real server (memory backend, production runner): 429s, slots, tokens."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from gateway.limits import MemoryBackend
from tests.faults.kit import SSE, chat_route, chat_stream
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.system import free_port

KEY = "gk-app-0123456789"
FAST = {"first_token_delay": 0, "token_interval": 0, "text": "one two three"}
SLOW = {"first_token_delay": "30s", "token_interval": 0, "text": "late"}


def route(name: str, limits: dict[str, int] | None = None, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "simulated",
        "options": {**FAST, **options},
        "limits": limits or {},
    }


async def post(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    body = body or {"messages": [{"role": "user", "content": "Hello"}]}
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, r.headers.copy(), await r.read()


def backend_of(gw: Any) -> MemoryBackend:
    backend = gw.state.extras["limiter"].backend
    assert isinstance(backend, MemoryBackend)
    return backend


def assert_429(status: int, headers: Any, body: bytes, limit: str) -> int:
    assert status == 429
    error = json.loads(body)["error"]
    assert error["code"] == "rate_limited" and limit in error["message"]
    retry = int(headers["Retry-After"])
    assert retry >= 1
    return retry


async def test_requests_per_minute_gives_429_with_retry_after() -> None:
    async with running_gateway({"routes": [route("r", {"requests_per_minute": 2})]}) as gw:
        url = f"{gw.url}/v1/stream/r"
        assert [(await post(url))[0] for _ in range(2)] == [200, 200]
        retry = assert_429(*await post(url), "requests_per_minute")
        rejected = await metric_value(
            gw.url, "gateway_rejections_total", {"route": "r", "code": "rate_limited"}
        )
    assert 1 <= retry <= 120
    assert rejected == 1


async def test_an_invalid_request_spends_no_budget() -> None:
    async with running_gateway({"routes": [route("r", {"requests_per_minute": 1})]}) as gw:
        url = f"{gw.url}/v1/stream/r"
        assert (await post(url, {"messages": []}))[0] == 400
        assert (await post(url))[0] == 200


async def test_app_limits_follow_the_key_across_routes() -> None:
    doc = {
        "routes": [route("a"), route("b")],
        "auth": {"keys": [{"name": "app1", "key": KEY, "limits": {"requests_per_minute": 1}}]},
    }
    async with running_gateway(doc) as gw:
        headers = {"x-api-key": KEY}
        assert (await post(f"{gw.url}/v1/stream/a", headers=headers))[0] == 200
        assert_429(*await post(f"{gw.url}/v1/stream/b", headers=headers), "app:app1")
        rejected = await metric_value(
            gw.url,
            "gateway_app_requests_total",
            {"app": "app1", "route": "b", "outcome": "rejected"},
        )
    assert rejected == 1


async def test_concurrent_slot_is_released_after_a_client_abort() -> None:
    doc = {"routes": [route("slow", {"concurrent_streams": 1}, **SLOW)]}
    async with running_gateway(doc) as gw:
        url = f"{gw.url}/v1/stream/slow"
        backend = backend_of(gw)
        session = aiohttp.ClientSession()
        try:
            holder = asyncio.ensure_future(post(url))
            await wait_for(lambda: backend.streams.get("route:slow") == 1, timeout=5)
            status, headers, body = await post(url)
            assert assert_429(status, headers, body, "concurrent_streams") == 1
            holder.cancel()  # the client goes away mid-stream
            with pytest.raises(asyncio.CancelledError):
                await holder
            await wait_for(lambda: backend.streams.get("route:slow") == 0, timeout=5)
            second = asyncio.ensure_future(post(url))
            await wait_for(lambda: backend.streams.get("route:slow") == 1, timeout=5)
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            await wait_for(lambda: backend.streams.get("route:slow") == 0, timeout=5)
        finally:
            await session.close()


async def test_concurrent_slot_is_released_after_an_upstream_error() -> None:
    doc = {"routes": [route("bad", {"concurrent_streams": 1}, fail_after=1)]}
    async with running_gateway(doc) as gw:
        url = f"{gw.url}/v1/stream/bad"
        for _ in range(3):
            status, _, body = await post(url)
            assert status == 200 and b"event: error" in body
        assert backend_of(gw).streams["route:bad"] == 0


def usage_of(body: bytes) -> dict[str, int]:
    for block in body.decode().split("\n\n"):
        if "event: usage" in block:
            data = block.split("data: ", 1)[1]
            usage: dict[str, int] = json.loads(data)
            return usage
    raise AssertionError("no usage event")


async def test_tokens_are_reserved_then_reconciled_with_usage() -> None:
    doc = {"routes": [route("t", {"tokens_per_minute": 100})], "limits": {"token_estimate": 80}}
    async with running_gateway(doc) as gw:
        url = f"{gw.url}/v1/stream/t"
        backend = backend_of(gw)
        status, _, body = await post(url)  # reserves the estimate: 80
        assert status == 200
        usage = usage_of(body)
        used = usage["input_tokens"] + usage["output_tokens"]
        assert 0 < used < 20
        await wait_for(lambda: backend.windows[("route:t", "tpm")].cur == used)

        # Exactly ``used`` counts now: a reservation of 100 - used + 1 does not fit, and
        # 100 - used does (without reconciliation, 80 + 80 would not have).
        def asking(n: int) -> dict[str, Any]:
            return {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": n}

        assert_429(*await post(url, asking(100 - used + 1)), "tokens_per_minute")
        assert (await post(url, asking(100 - used)))[0] == 200


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_unreachable_redis_fails_open_or_closed(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    doc = {
        "routes": [route("r", {"requests_per_minute": 100})],
        "limits": {
            "backend": "redis",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "on_backend_error": mode,
        },
    }
    caplog.set_level(logging.WARNING, logger="gateway")
    async with running_gateway(doc) as gw:
        status, headers, body = await post(f"{gw.url}/v1/stream/r")
        errors = gw.state.metrics.registry.get_sample_value("gateway_limit_backend_errors_total")
    if mode == "open":
        assert status == 200 and b"event: end" in body
    else:
        assert status == 503 and json.loads(body)["error"]["code"] == "unavailable"
        assert headers["Retry-After"] == "1"
    assert errors >= 1
    assert any(r.getMessage() == "limits_backend_error" for r in caplog.records)


async def test_reload_keeps_counts_and_the_backend(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGHUP re-runs install_features on a started (frozen) app: no new cleanup_ctx, the
    same backend (counts survive), the new limits apply."""
    import yaml

    from gateway.reload import reload_config

    async with running_gateway({"routes": [route("r")]}) as gw:
        url = f"{gw.url}/v1/stream/r"
        assert "limiter" not in gw.state.extras
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump({"routes": [route("r", {"requests_per_minute": 2})]}))
        assert reload_config(gw.app, str(path))
        backend = backend_of(gw)
        assert [(await post(url))[0] for _ in range(3)] == [200, 200, 429]
        path.write_text(yaml.safe_dump({"routes": [route("r", {"requests_per_minute": 3})]}))
        assert reload_config(gw.app, str(path))
        assert backend_of(gw) is backend
        assert [(await post(url))[0] for _ in range(2)] == [200, 429]  # 2 already counted


async def test_a_budget_refusal_spends_no_route_limit() -> None:
    # An app whose budget is used up is refused after the route's limits admitted it: those
    # must not keep the request, or it would spend every other app's share of the route.
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, chat_stream("ok"))], headers=SSE)
    limits = {"requests_per_minute": 2, "tokens_per_minute": 5000, "concurrent_streams": 1}
    doc = {
        "routes": [chat_route("r", fake.url, limits=limits)],
        "pricing": [{"model": "m-1", "input_per_mtok": 1e6, "output_per_mtok": 1e6}],
        "auth": {
            "keys": [
                {"name": "poor", "key": "k-poor-0123", "budget": {"usd": 0.5, "per": "1d"}},
                {"name": "rich", "key": "k-rich-0123"},
            ]
        },
    }
    try:
        async with running_gateway(doc) as gw:
            url = f"{gw.url}/v1/stream/r"
            for _ in range(3):
                status, _, body = await post(url, headers={"x-api-key": "k-poor-0123"})
                assert status == 429 and b"budget" in body
            assert backend_of(gw).streams["route:r"] == 0
            for _ in range(2):
                assert (await post(url, headers={"x-api-key": "k-rich-0123"}))[0] == 200
    finally:
        await fake.stop()
