"""gateway.client: the Python client yields events in order and never mistakes a dead stream
for success."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import aiohttp
import pytest
from aiohttp import web

from gateway.client import (
    GatewayHTTPError,
    GatewayProtocolError,
    StreamTruncated,
    collect,
    stream_tokens,
)
from tests.support.gateway import running_gateway

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


async def raw_server(
    body: bytes, status: int = 200, ctype: str = "text/event-stream"
) -> web.AppRunner:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=status, headers={"Content-Type": ctype})
        await resp.prepare(request)
        for i in range(0, len(body), 7):  # split frames across reads
            await resp.write(body[i : i + 7])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/s", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner) -> str:
    (address,) = runner.addresses
    return f"http://127.0.0.1:{address[1]}/s"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_collects_a_whole_stream(session: aiohttp.ClientSession) -> None:
    doc = {
        "routes": [
            {
                "name": "demo",
                "provider": "simulated",
                "options": {"text": "Hi there", "first_token_delay": 0, "token_interval": 0},
            }
        ]
    }
    async with running_gateway(doc) as gw:
        events = await collect(session, f"{gw.url}/v1/stream/demo", HELLO)
    assert events[0].type == "created" and events[-1].type == "end"
    assert "".join(e.data["text"] for e in events if e.type == "delta") == "Hi there"
    assert [e.id for e in events] == [str(i) for i in range(1, len(events) + 1)]


async def test_a_json_error_status_raises_with_its_code(session: aiohttp.ClientSession) -> None:
    async with running_gateway({"routes": [{"name": "demo", "provider": "simulated"}]}) as gw:
        with pytest.raises(GatewayHTTPError) as info:
            await collect(session, f"{gw.url}/v1/stream/demo", {"messages": []})
    assert info.value.status == 400 and info.value.code == "invalid_request"


async def test_a_stream_without_terminal_event_raises(session: aiohttp.ClientSession) -> None:
    runner = await raw_server(
        b'event: created\ndata: {"id":"x"}\n\nevent: delta\ndata: {"text":"a"}\n\n'
    )
    try:
        seen = []
        with pytest.raises(StreamTruncated):
            async for event in stream_tokens(session, url_of(runner), HELLO):
                seen.append(event.type)
        assert seen == ["created", "delta"]
    finally:
        await runner.cleanup()


async def test_an_error_event_ends_the_iteration(session: aiohttp.ClientSession) -> None:
    body = (
        b'event: delta\ndata: {"text":"a"}\r\n\r\n: ping\n\n'
        b'event: error\ndata: {"code":"upstream_error","message":"x","retryable":true}\n\n'
        b'event: delta\ndata: {"text":"never"}\n\n'
    )
    runner = await raw_server(body)
    try:
        events = await collect(session, url_of(runner), HELLO)
    finally:
        await runner.cleanup()
    assert [e.type for e in events] == ["delta", "error"]
    assert events[-1].data["retryable"] is True


async def test_a_non_json_error_body_is_reported(session: aiohttp.ClientSession) -> None:
    runner = await raw_server(b"<html>bad gateway</html>", status=502, ctype="text/html")
    try:
        with pytest.raises(GatewayHTTPError) as info:
            await collect(session, url_of(runner), HELLO)
    finally:
        await runner.cleanup()
    assert info.value.status == 502 and info.value.code == "http_error"


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b'{"type":"created","id":"x"}\n{"type":"end","reason":"stop"}\n', "application/x-ndjson"),
        (b"Hello there", "text/plain"),
    ],
)
async def test_a_stream_in_another_format_is_a_protocol_error(
    session: aiohttp.ClientSession, body: bytes, ctype: str
) -> None:
    # A route whose format is not tokens: named as such, not "truncated" after reading it all.
    runner = await raw_server(body, ctype=ctype)
    try:
        with pytest.raises(GatewayProtocolError) as info:
            await collect(session, url_of(runner), HELLO)
    finally:
        await runner.cleanup()
    assert info.value.code == "unexpected_content_type"


async def test_unnamed_frames_are_skipped_and_bad_json_is_a_protocol_error(
    session: aiohttp.ClientSession,
) -> None:
    # The token protocol names every event; an unnamed `data: [DONE]` is not one of its events.
    # A named event whose data is not a JSON object is a protocol error, not a ValueError.
    runner = await raw_server(
        b'id: 1\nevent: created\ndata: {"id":"x"}\n\ndata: [DONE]\n\n'
        b"id: 2\nevent: delta\ndata: [1, 2]\n\n"
    )
    seen: list[str] = []
    try:
        with pytest.raises(GatewayProtocolError) as info:
            async for event in stream_tokens(session, url_of(runner), HELLO):
                seen.append(event.type)
    finally:
        await runner.cleanup()
    assert seen == ["created"]
    assert info.value.code == "client_protocol"


async def test_closing_the_iteration_closes_the_connection(
    session: aiohttp.ClientSession,
) -> None:
    # Leaving early must reach the server at once (that is what cancels the upstream).
    left = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'id: 1\nevent: created\ndata: {"id":"x"}\n\n')
        try:
            await asyncio.Event().wait()  # the model goes silent
        finally:
            left.set()
        return resp

    app = web.Application()
    app.router.add_post("/s", endless)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aclosing(stream_tokens(session, url_of(runner), HELLO)) as events:
            async for event in events:
                assert event.type == "created"
                break
        await asyncio.wait_for(left.wait(), 5)
    finally:
        await runner.cleanup()
