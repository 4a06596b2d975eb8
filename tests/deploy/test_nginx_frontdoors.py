"""Aborts through the shipped nginx on the front doors: the official SDKs close their stream.

As ``test_nginx.py`` does for the route path, with the real ``openai`` client on
``/v1/responses`` (``responses.create(stream=True)``) and the real ``anthropic`` client on
``/v1/messages`` (``messages.stream()``): closing the SDK stream (cancelling the call while it
waits for headers) disconnects the provider within 100 ms in each phase, re-encoded (an
``openai-chat`` upstream) and passed through (the front door's own API upstream).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from tests.deploy.nginx import running_nginx
from tests.deploy.test_nginx import ABORT_LIMIT, ENDLESS, SSE
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for

pytestmark = pytest.mark.system

USER = [{"role": "user", "content": "Hello"}]
Opened = tuple[AsyncIterator[Any], Callable[[], Awaitable[None]]]


def sse(event: str, doc: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps({'type': event, **doc})}\n\n".encode()


MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": []}
ANTHROPIC_ENDLESS = [
    (0, sse("message_start", {"message": {**MESSAGE, "usage": {"input_tokens": 1}}})),
    (0, sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})),
    *[
        (
            0.02,
            sse(
                "content_block_delta",
                {"index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}},
            ),
        )
        for i in range(2000)
    ],
]
RESPONSE = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
ITEM = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
RESPONSES_ENDLESS = [
    (0, sse("response.created", {"sequence_number": 0, "response": RESPONSE})),
    (0, sse("response.output_item.added", {"sequence_number": 1, "output_index": 0, "item": ITEM})),
    *[
        (
            0.02,
            sse(
                "response.output_text.delta",
                {
                    "sequence_number": 2 + i,
                    "item_id": "msg_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": f"tok{i} ",
                    "logprobs": [],
                },
            ),
        )
        for i in range(2000)
    ],
]
UPSTREAMS = {  # (front door, upstream provider) -> what the provider streams mid-stream
    ("responses", "openai-chat"): ENDLESS,
    ("messages", "openai-chat"): ENDLESS,
    ("responses", "openai-responses"): RESPONSES_ENDLESS,
    ("messages", "anthropic"): ANTHROPIC_ENDLESS,
}
PHASES = ("before_upstream_headers", "before_first_token", "mid_stream")


def script(phase: str, chunks: list[tuple[float, bytes]]) -> Script:
    if phase == "before_upstream_headers":
        return Script(delay_before_headers=30, headers=SSE)
    if phase == "before_first_token":
        return Script(chunks=[(0, b": keepalive\n\n")], headers=SSE, hang_after=True)
    return Script(chunks=chunks, headers=SSE)


async def open_sdk_stream(door: str, base_url: str) -> Opened:
    """The SDK's stream (headers received) and how the app closes it."""
    if door == "responses":
        openai = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0)
        stream = await openai.responses.create(model="r", input="Hello", stream=True)
        return stream, stream.close
    anthropic = AsyncAnthropic(base_url=base_url, api_key="x", max_retries=0)
    manager = anthropic.messages.stream(model="r", max_tokens=64, messages=USER)  # type: ignore[arg-type]
    messages = await manager.__aenter__()

    async def close() -> None:
        await manager.__aexit__(None, None, None)

    return messages, close


def text_of(event: Any) -> str:
    delta = getattr(event, "delta", None)
    return delta if isinstance(delta, str) else str(getattr(delta, "text", ""))


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(("door", "provider"), list(UPSTREAMS), ids="-".join)
async def test_closing_the_sdk_stream_through_nginx_reaches_the_provider_within_100ms(
    tmp_path: Path, door: str, provider: str, phase: str
) -> None:
    upstream = await FakeUpstream().start()
    upstream.push(script(phase, UPSTREAMS[door, provider]))
    route = {
        "name": "r",
        "provider": provider,
        "upstream": {"base_url": upstream.url, "model": "m"},
    }
    # A front door sends its headers with the first event, or with the first heartbeat when the
    # model is silent: the SDK's call returns only then (before_first_token waits for it).
    server = {"heartbeat_interval": "500ms"}
    try:
        async with (
            running_gateway({"server": server, "routes": [route]}) as gw,
            running_nginx(tmp_path, gw.port) as nginx,
        ):
            opening = asyncio.ensure_future(open_sdk_stream(door, nginx.url))
            await wait_for(lambda: len(upstream.seen) == 1)
            if phase == "before_upstream_headers":
                await asyncio.sleep(0.05)
                seen, t_close = upstream.seen[-1], time.monotonic()
                opening.cancel()  # the app gives up while the SDK waits for the headers
                await asyncio.gather(opening, return_exceptions=True)
            else:
                events, close = await opening
                if phase == "mid_stream":
                    async for event in events:
                        if "tok5" in text_of(event):
                            break
                else:
                    await asyncio.sleep(0.05)  # headers are in; the model says nothing
                seen, t_close = upstream.seen[-1], time.monotonic()
                await close()
            await asyncio.wait_for(seen.closed.wait(), 2)
            assert seen.closed_at is not None and not seen.completed
            elapsed = seen.closed_at - t_close
            assert elapsed < ABORT_LIMIT, (
                f"provider closed {elapsed * 1000:.1f} ms after the client"
            )
            await wait_for(lambda: not gw.state.sessions)
            labels = {"route": "r", "phase": phase}
            assert await metric_value(gw.url, "gateway_client_aborts_total", labels) == 1
    finally:
        await upstream.stop()
