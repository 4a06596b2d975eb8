"""Usage and cost end to end (contract section 13): a fake provider, the gateway on loopback.

Every provider fixture with cache counts, whole and split: the ``usage`` event carries the
fixture's normalised figures and ``cost_usd`` from the ``pricing:`` override (computed here with
the arithmetic of ``docs/accounting.md``, to 1e-9 relative), the log line and
``gateway_cost_usd_total`` carry the same cost; front doors carry the figures in their own
fields and no cost field; a model without a price gets no ``cost_usd``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from gateway.client import collect
from tests.adapters.harness import fixture_bytes, fixture_expected, splits
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}
BEDROCK = {
    "region": "us-east-1",
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
CACHE_FIXTURES = [
    ("openai-chat", "openai_chat_cache_usage.sse"),
    ("openai-responses", "openai_responses_cache_usage.sse"),
    ("anthropic", "anthropic_cache_usage.sse"),
    ("gemini", "gemini_cache_usage.sse"),
    ("bedrock", "bedrock_cache_usage.bin"),
]
PRICE = {"input": 3.0, "output": 15.0, "read": 0.3, "write": 3.75}
"""USD per million tokens, distinct so that a mixed-up count changes the cost."""


def pricing(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "input_per_mtok": PRICE["input"],
        "output_per_mtok": PRICE["output"],
        "cached_input_per_mtok": PRICE["read"],
        "cache_write_per_mtok": PRICE["write"],
    }


def route(provider: str, base_url: str, model: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "r",
        "provider": provider,
        "upstream": {"base_url": base_url, "api_key": "sk-test", "model": model},
        **extra,
    }
    if provider == "bedrock":
        doc["options"] = BEDROCK
    return doc


def expected_cost(usage: dict[str, Any]) -> float:
    """``docs/accounting.md``: input includes cache reads and writes, each at its own price."""
    read = usage.get("cache_read_input_tokens") or 0
    write = usage.get("cache_write_input_tokens") or 0
    uncached = usage["input_tokens"] - read - write
    total = (
        uncached * PRICE["input"]
        + read * PRICE["read"]
        + write * PRICE["write"]
        + usage["output_tokens"] * PRICE["output"]
    )
    return total / 1e6


def push(upstream: FakeUpstream, fixture: str, pieces: list[bytes]) -> None:
    headers = {"Content-Type": fixture_expected(fixture)["content_type"]}
    upstream.push(Script(chunks=[(0, p) for p in pieces], headers=headers))


@pytest.mark.parametrize(
    ("provider", "fixture"), CACHE_FIXTURES, ids=[f for _, f in CACHE_FIXTURES]
)
async def test_cache_usage_is_complete_and_priced_at_every_split(
    upstream: FakeUpstream, provider: str, fixture: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = fixture_bytes(fixture)
    want = {k: v for k, v in fixture_expected(fixture)["usage_normalized"].items() if v is not None}
    want.pop("total_tokens")
    cost = expected_cost(want)
    cases = [(label, pieces) for label, pieces in splits(data) if label != "random2"]
    doc = {
        "routes": [route(provider, upstream.url, "priced-model")],
        "pricing": [pricing("priced-model")],
    }
    caplog.set_level(logging.INFO, logger="gateway")
    async with running_gateway(doc) as gw:
        for label, pieces in cases:
            push(upstream, fixture, pieces)
            async with aiohttp.ClientSession() as s:
                events = await collect(s, f"{gw.url}/v1/stream/r", HELLO)
            usage = [e.data for e in events if e.type == "usage"]
            assert len(usage) == 1, label
            got = dict(usage[0])
            assert got.pop("cost_usd") == pytest.approx(cost, rel=1e-9, abs=0), label
            assert {k: got.get(k) for k in want} == want, label
            assert events[-1].type == "end", label
        total = await metric_value(gw.url, "gateway_cost_usd_total", {"route": "r", "app": ""})
    assert total == pytest.approx(cost * len(cases), rel=1e-9)
    lines = [r for r in caplog.records if r.getMessage() == "stream"]
    assert len(lines) == len(cases)
    for line in lines:
        assert line.fields["cost_usd"] == pytest.approx(cost, rel=1e-9)  # type: ignore[attr-defined]


async def test_an_unpriced_model_has_no_cost_and_warns_once(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    fixture = "openai_chat_cache_usage.sse"
    caplog.set_level(logging.INFO, logger="gateway")
    doc = {"routes": [route("openai-chat", upstream.url, "no-such-model-xyz")]}
    async with running_gateway(doc) as gw:
        for _ in range(2):
            push(upstream, fixture, [fixture_bytes(fixture)])
            async with aiohttp.ClientSession() as s:
                events = await collect(s, f"{gw.url}/v1/stream/r", HELLO)
            (usage,) = [e.data for e in events if e.type == "usage"]
            assert "cost_usd" not in usage and usage["input_tokens"] == 2006
        total = await metric_value(gw.url, "gateway_cost_usd_total", {"route": "r", "app": ""})
    assert total == 0
    warned = [r for r in caplog.records if r.getMessage() == "price_unknown"]
    assert len(warned) == 1
    assert [r.fields.get("cost_usd") for r in caplog.records if r.getMessage() == "stream"] == [  # type: ignore[attr-defined]
        None,
        None,
    ]


async def test_the_requested_model_is_priced_on_the_primary(upstream: FakeUpstream) -> None:
    """With ``allow_model_override``, the served model (the request's) is the one priced."""
    fixture = "openai_chat_cache_usage.sse"
    cheap = {**pricing("asked"), "output_per_mtok": 0.0, "input_per_mtok": 0.0}
    cheap.update(cached_input_per_mtok=0.0, cache_write_per_mtok=0.0)
    doc = {
        "routes": [route("openai-chat", upstream.url, "configured", allow_model_override=True)],
        "pricing": [pricing("configured"), cheap],
    }
    async with running_gateway(doc) as gw:
        push(upstream, fixture, [fixture_bytes(fixture)])
        async with aiohttp.ClientSession() as s:
            events = await collect(s, f"{gw.url}/v1/stream/r", {**HELLO, "model": "asked"})
    (usage,) = [e.data for e in events if e.type == "usage"]
    assert usage["cost_usd"] == 0.0
    assert upstream.seen[0].body["model"] == "asked"


async def test_front_doors_carry_usage_in_their_own_fields_without_a_cost(
    upstream: FakeUpstream,
) -> None:
    fixture = "anthropic_cache_usage.sse"
    want = fixture_expected(fixture)["usage_normalized"]
    doc = {
        "routes": [route("anthropic", upstream.url, "priced-model")],
        "pricing": [pricing("priced-model")],
    }
    async with running_gateway(doc) as gw:
        push(upstream, fixture, [fixture_bytes(fixture)])
        body = {**HELLO, "model": "r", "stream": True, "stream_options": {"include_usage": True}}
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{gw.url}/v1/chat/completions", json=body) as r,
        ):
            raw = (await r.read()).decode()
        push(upstream, fixture, [fixture_bytes(fixture)])
        body = {"model": "r", "max_tokens": 100, "messages": HELLO["messages"], "stream": True}
        async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/messages", json=body) as r:
            messages_raw = (await r.read()).decode()
        total = await metric_value(gw.url, "gateway_cost_usd_total", {"route": "r", "app": ""})
    assert "cost" not in raw and "cost" not in messages_raw
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    assert usage["prompt_tokens"] == want["input_tokens"]
    assert usage["completion_tokens"] == want["output_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == want["cache_read_input_tokens"]
    assert '"cache_read_input_tokens":4096' in messages_raw.replace(" ", "")
    # Both streams were priced all the same (the cost is the gateway's, not the API's).
    assert total == pytest.approx(2 * expected_cost(want), rel=1e-9)


async def test_an_abort_while_a_fallback_is_answering_keeps_the_reservation(
    upstream: FakeUpstream,
) -> None:
    """The primary refused (503), the fallback answered 200 and the model is working when the
    client leaves: the fallback took the request, so the budget keeps the worst case reserved
    (``docs/accounting.md``, Settlement), as for any abort before the usage; only a stream that
    *every* upstream refused settles at zero."""
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    upstream.push(
        Script(status=503, chunks=[(0, json.dumps(error).encode())]),
        Script(chunks=[(0, b": working\n\n")], hang_after=True),
    )
    primary = route("openai-chat", upstream.url, "priced-model")
    fallback = {"provider": "openai-chat", "upstream": dict(primary["upstream"])}
    primary["fallbacks"] = [fallback, fallback]  # the first is held back: another may follow
    key = {"name": "web", "key": "key-web-0123", "budget": {"usd": 1, "per": "1h"}}
    doc = {"routes": [primary], "pricing": [pricing("priced-model")], "auth": {"keys": [key]}}
    body = {**HELLO, "max_tokens": 1000}
    async with running_gateway(doc) as gw:
        budgets, web = gw.state.extras["budgets"], gw.state.config.auth.keys[0]
        headers = {"x-api-key": key["key"]}

        async def request() -> None:
            async with aiohttp.ClientSession() as s:
                await s.post(f"{gw.url}/v1/stream/r", json=body, headers=headers)

        task = asyncio.create_task(request())
        await wait_for(lambda: any(s.source is not None for s in gw.state.sessions))
        reserved = 1 - await budgets.remaining(web)
        task.cancel()
        await wait_for(lambda: upstream.seen[1].closed_at is not None)
        await wait_for(lambda: not gw.state.sessions)
        left = await budgets.remaining(web)
    assert len(upstream.seen) == 2 and reserved > 0
    assert left == pytest.approx(1 - reserved, abs=1e-9)
