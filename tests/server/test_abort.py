"""Client aborts reach the upstream within 100 ms, at every phase (contract section 6).

The gateway runs on the production runner (``start_app``) on a real socket; the client is a raw
TCP socket closed at a precise moment; the fake upstream records when the gateway closed its
connection. Also checks that the abort is counted by phase and outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.rawclient import open_raw, read_until

pytestmark = pytest.mark.usefixtures("upstream_client", "http_server")
"""Every test here runs over both upstream clients (``server.upstream_client``) and both servers
(``server.http_server``)."""

SSE = {"Content-Type": "text/event-stream"}
LIMIT = 0.1


def chat_chunk(text: str) -> bytes:
    doc = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def gateway_doc(upstream: FakeUpstream, **route: Any) -> dict[str, Any]:
    return {
        "routes": [
            {
                "name": "r",
                "provider": "openai-chat",
                "upstream": {"base_url": upstream.url, "model": "m"},
                **route,
            }
        ]
    }


async def abort_and_measure(writer: asyncio.StreamWriter, upstream: FakeUpstream) -> float:
    seen = upstream.seen[-1]
    t_close = time.monotonic()
    writer.transport.abort()
    await asyncio.wait_for(seen.closed.wait(), 2)
    assert seen.closed_at is not None and not seen.completed
    return seen.closed_at - t_close


HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


async def test_abort_while_waiting_for_upstream_headers(
    upstream: FakeUpstream, http_server: str
) -> None:
    upstream.push(Script(delay_before_headers=30, headers=SSE))
    async with running_gateway(gateway_doc(upstream)) as gw:
        _, writer = await open_raw(gw.port, "/v1/stream/r", HELLO)
        await wait_for(lambda: len(upstream.seen) == 1)
        await asyncio.sleep(0.05)
        elapsed = await abort_and_measure(writer, upstream)
        assert elapsed < LIMIT
        await wait_for(lambda: not gw.state.sessions)
        labels = {"route": "r", "phase": "before_upstream_headers"}
        assert await metric_value(gw.url, "gateway_client_aborts_total", labels) == 1
        assert (
            await metric_value(
                gw.url, "gateway_requests_total", {"route": "r", "outcome": "client_abort"}
            )
            == 1
        )
        assert await metric_value(gw.url, "gateway_active_streams", {"route": "r"}) == 0
        # Timed from the client's disconnect on the fast server (aiohttp's does not say when).
        cancel = await metric_value(gw.url, "gateway_upstream_cancel_seconds_count", {"route": "r"})
        assert cancel == (1 if http_server == "raw" else 0)


async def test_abort_while_model_is_silent(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0, b": keepalive\n\n")], headers=SSE, hang_after=True))
    async with running_gateway(gateway_doc(upstream)) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r", HELLO)
        await read_until(reader, b"event: thinking")
        elapsed = await abort_and_measure(writer, upstream)
        assert elapsed < LIMIT
        await wait_for(lambda: not gw.state.sessions)
        labels = {"route": "r", "phase": "before_first_token"}
        assert await metric_value(gw.url, "gateway_client_aborts_total", labels) == 1


async def test_abort_mid_stream(upstream: FakeUpstream) -> None:
    endless = [(0.02, chat_chunk(f"tok{i} ")) for i in range(2000)]
    upstream.push(Script(chunks=endless, headers=SSE))
    async with running_gateway(gateway_doc(upstream)) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r", HELLO)
        await read_until(reader, b"tok5")
        elapsed = await abort_and_measure(writer, upstream)
        assert elapsed < LIMIT
        await wait_for(lambda: not gw.state.sessions)
        labels = {"route": "r", "phase": "mid_stream"}
        assert await metric_value(gw.url, "gateway_client_aborts_total", labels) == 1
        cancel = await metric_value(gw.url, "gateway_upstream_cancel_seconds_count", {"route": "r"})
        assert cancel == 1


async def test_abort_mid_stream_of_the_simulated_provider() -> None:
    doc = {
        "routes": [
            {
                "name": "demo",
                "provider": "simulated",
                "options": {"words": 5000, "first_token_delay": 0, "token_interval": "10ms"},
            }
        ]
    }
    async with running_gateway(doc) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/demo", HELLO)
        await read_until(reader, b"event: delta")
        writer.transport.abort()
        await wait_for(lambda: not gw.state.sessions, timeout=1)
        labels = {"route": "demo", "outcome": "client_abort"}
        assert await metric_value(gw.url, "gateway_requests_total", labels) == 1
