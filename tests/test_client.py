"""gateway.client: the Python client yields events in order and never mistakes a dead stream
for success."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.client import GatewayHTTPError, StreamTruncated, collect, stream_tokens
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
    (site,) = runner.sites
    server = site._server  # type: ignore[attr-defined]
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/s"


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
