"""Fallbacks and retries: only before the first byte reaches the client (issue 5 item 3).

Two fake upstreams: the primary (chat-completions compatible, ``openai-chat``) fails in each way
the gateway fails over on, and the fallback (``ollama``, so the ``created`` event and the
attempt metrics can tell them apart) serves. Then the cases where it must not fail over: after
content, and after a heartbeat started the response.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.faults.kit import (
    NDJSON,
    OLLAMA_OK,
    OLLAMA_TEXT,
    SSE,
    chat_chunk,
    chat_error,
    chat_route,
    chat_stream,
    post,
)
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.system import free_port

pytestmark = pytest.mark.usefixtures("upstream_client")
"""Every test here runs over both upstream clients (``server.upstream_client``)."""


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    primary, fallback = await FakeUpstream().start(), await FakeUpstream().start()
    fallback.default = Script(chunks=[(0, OLLAMA_OK)], headers=NDJSON)
    yield primary, fallback
    await primary.stop()
    await fallback.stop()


def doc(primary_url: str, fallback_url: str, **server: Any) -> dict[str, Any]:
    route = chat_route("r", primary_url, timeouts={"first_event": "400ms"})
    route["fallbacks"] = [
        {"provider": "ollama", "upstream": {"base_url": fallback_url, "model": "qwen3:8b"}}
    ]
    return {"server": server, "routes": [route]}


async def attempts(url: str, upstream: str, result: str) -> float:
    labels = {"route": "r", "upstream": upstream, "result": result}
    return await metric_value(url, "gateway_upstream_attempts_total", labels)


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


FAILURES = {
    "500": (Script(status=500, headers={"Content-Type": "application/json"}), "status_error"),
    "429_seconds": (Script(status=429, headers={"Retry-After": "30"}), "status_error"),
    "429_http_date": (Script(status=429, headers={"Retry-After": http_date(30)}), "status_error"),
    "timeout_before_headers": (Script(delay_before_headers=5, headers=SSE), "timeout"),
    "timeout_after_headers": (Script(chunks=[(0, b"")], headers=SSE, hang_after=True), "timeout"),
    "early_error_event": (
        Script(chunks=[(0, b": processing\n\n" + chat_error())], headers=SSE, hang_after=True),
        "early_error",
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_primary_fails_before_any_byte_fallback_serves(
    fakes: tuple[FakeUpstream, FakeUpstream], failure: str
) -> None:
    primary, fallback = fakes
    script, result = FAILURES[failure]
    primary.push(script)
    async with running_gateway(doc(primary.url, fallback.url)) as gw:
        t0 = time.monotonic()
        reply = await post(f"{gw.url}/v1/stream/r")
        elapsed = time.monotonic() - t0
        assert reply.status == 200, reply.raw
        kind, created = reply.frames[0]
        assert kind == "created" and created["provider"] == "ollama"
        assert reply.text == OLLAMA_TEXT
        assert reply.last[0] == "end" and reply.last[1]["reason"] == "stop"
        assert "error" not in reply.types
        # A 429 with a long Retry-After moves to the next target at once, never waits 30 s.
        assert elapsed < 2.0
        # The primary's connection is closed, not read to the end.
        await wait_for(lambda: primary.seen[0].closed_at is not None, 2)
        assert not (failure.startswith("timeout") or failure.startswith("early")) or not (
            primary.seen[0].completed
        )
        assert len(fallback.seen) == 1
        assert await attempts(gw.url, "openai-chat", result) == 1
        assert await attempts(gw.url, "openai-chat", "ok") == 0
        assert await attempts(gw.url, "ollama", "ok") == 1
        completed = {"route": "r", "outcome": "completed"}
        assert await metric_value(gw.url, "gateway_requests_total", completed) == 1


async def test_primary_connect_refused_fallback_serves(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    _, fallback = fakes
    async with running_gateway(doc(f"http://127.0.0.1:{free_port()}", fallback.url)) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.status == 200
        assert reply.frames[0][1]["provider"] == "ollama"
        assert reply.text == OLLAMA_TEXT
        assert await attempts(gw.url, "openai-chat", "connect_error") == 1
        assert await attempts(gw.url, "ollama", "ok") == 1


async def test_primary_serves_without_touching_the_fallback(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    primary, fallback = fakes
    primary.push(Script(chunks=[(0, chat_stream("Hel", "lo"))], headers=SSE))
    async with running_gateway(doc(primary.url, fallback.url)) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.frames[0][1]["provider"] == "openai-chat"
        assert reply.types == ["created", "thinking", "clear", "delta", "delta", "end"]
        assert reply.text == "Hello"
        assert fallback.seen == []
        assert await attempts(gw.url, "openai-chat", "ok") == 1


async def test_never_after_content_mid_stream_error_is_an_event(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    primary, fallback = fakes
    primary.push(Script(chunks=[(0, chat_chunk("Hi")), (0.05, chat_error())], headers=SSE))
    async with running_gateway(doc(primary.url, fallback.url)) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.status == 200
        assert reply.text == "Hi"
        kind, data = reply.last
        assert kind == "error" and data["code"] == "upstream_error"
        assert fallback.seen == []
        assert await attempts(gw.url, "openai-chat", "ok") == 1


async def test_never_after_content_connection_reset(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    primary, fallback = fakes
    body = chat_chunk("Hi") + chat_chunk(" there")
    primary.push(Script(chunks=[(0, body)], headers=SSE, rst_after_bytes=len(body) - 5))
    async with running_gateway(doc(primary.url, fallback.url)) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.text == "Hi"
        assert reply.last[0] == "error"
        assert reply.last[1]["code"] == "upstream_truncated"
        assert fallback.seen == []


async def test_heartbeat_started_response_stops_fallbacks(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    primary, fallback = fakes
    # Silent for longer than the heartbeat interval, then an error before any content.
    primary.push(Script(chunks=[(0.5, chat_error())], headers=SSE, hang_after=True))
    route_doc = doc(primary.url, fallback.url, heartbeat_interval="150ms")
    route_doc["routes"][0]["timeouts"] = {"first_event": "5s"}
    async with running_gateway(route_doc) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.status == 200
        assert reply.comments >= 1  # the heartbeat went out first
        assert reply.frames[0][1]["provider"] == "openai-chat"
        assert reply.last[0] == "error" and reply.last[1]["code"] == "upstream_error"
        assert fallback.seen == []


async def test_every_target_fails_the_last_error_is_returned(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    primary, fallback = fakes
    primary.push(Script(status=500))
    fallback.push(Script(status=503))
    async with running_gateway(doc(primary.url, fallback.url)) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.status == 502
        assert reply.json()["error"]["code"] == "upstream_error"
        assert await attempts(gw.url, "openai-chat", "status_error") == 1
        assert await attempts(gw.url, "ollama", "status_error") == 1


@pytest.mark.parametrize("form", ["seconds", "http_date"])
async def test_last_target_429_short_retry_after_is_waited_then_retried(form: str) -> None:
    fake = await FakeUpstream().start()
    try:
        retry_after = "1" if form == "seconds" else http_date(1.2)
        fake.push(Script(status=429, headers={"Retry-After": retry_after}))
        fake.push(Script(chunks=[(0, chat_stream("ok"))], headers=SSE))
        async with running_gateway({"routes": [chat_route("r", fake.url)]}) as gw:
            t0 = time.monotonic()
            reply = await post(f"{gw.url}/v1/stream/r")
            elapsed = time.monotonic() - t0
            assert reply.status == 200 and reply.text == "ok"
            assert len(fake.seen) == 2
            assert 0.1 <= elapsed < 2.5  # waited (an HTTP date has whole-second precision)
            assert await attempts(gw.url, "openai-chat", "status_error") == 1
            assert await attempts(gw.url, "openai-chat", "ok") == 1
    finally:
        await fake.stop()


async def test_last_target_429_long_retry_after_is_passed_on() -> None:
    fake = await FakeUpstream().start()
    try:
        fake.push(Script(status=429, headers={"Retry-After": "120"}))
        async with running_gateway({"routes": [chat_route("r", fake.url)]}) as gw:
            t0 = time.monotonic()
            reply = await post(f"{gw.url}/v1/stream/r")
            assert time.monotonic() - t0 < 1.0
            assert reply.status == 429
            assert reply.headers["Retry-After"] == "120"
            assert reply.json()["error"]["code"] == "rate_limited"
            assert len(fake.seen) == 1
    finally:
        await fake.stop()
