"""gateway/http.py: reading a request body, bounded in size and time, whichever way it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.errors import BodyTooLarge, InvalidRequest
from gateway.http import read_body

MAX = 1000


async def handler(request: web.Request) -> web.Response:
    try:
        body = await read_body(request, MAX, read_timeout=0.3)
    except (BodyTooLarge, InvalidRequest) as exc:
        return web.Response(status=400, text=type(exc).__name__)
    return web.Response(body=body)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_post("/", handler)
    srv = TestServer(app)
    await srv.start_server()
    yield srv
    await srv.close()


async def exchange(
    server: TestServer, parts: list[bytes], gap: float = 0.0, until: bytes | None = None
) -> bytes:
    """Send ``parts`` on one connection (``gap`` seconds apart); the response, to its close or
    to ``until`` (a refused body is not read: the server would linger for it)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    for part in parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(gap)
    async with asyncio.timeout(5):
        response = await (reader.readuntil(until) if until else reader.read())
    writer.close()
    return response


def head(length: int | None, chunked: bool = False) -> bytes:
    lines = [b"POST / HTTP/1.1", b"Host: x", b"Connection: close"]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def test_a_body_that_came_with_the_head(server: TestServer) -> None:
    body = b'{"messages": []}'
    response = await exchange(server, [head(len(body)) + body])
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"\r\n\r\n" + body)


async def test_a_body_that_comes_later_in_pieces(server: TestServer) -> None:
    body = b"x" * 600
    response = await exchange(server, [head(len(body)), body[:300], body[300:]], gap=0.05)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(body)


async def test_a_chunked_body_without_length(server: TestServer) -> None:
    chunks = [b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"]
    response = await exchange(server, [head(None, chunked=True), *chunks], gap=0.02)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"hello world")


@pytest.mark.parametrize("late", [False, True], ids=["with the head", "later"])
async def test_too_large_without_a_length_is_refused_either_way(
    server: TestServer, late: bool
) -> None:
    big = b"%x\r\n%s\r\n0\r\n\r\n" % (MAX + 1, b"y" * (MAX + 1))
    parts = [head(None, chunked=True), big] if late else [head(None, chunked=True) + big]
    response = await exchange(server, parts, gap=0.05)
    assert response.startswith(b"HTTP/1.1 400") and response.endswith(b"BodyTooLarge")


async def test_a_declared_length_over_the_bound_is_refused_before_reading(
    server: TestServer,
) -> None:
    response = await exchange(server, [head(MAX + 1)], until=b"BodyTooLarge")  # no body sent
    assert response.startswith(b"HTTP/1.1 400") and response.endswith(b"BodyTooLarge")


async def test_a_body_that_never_finishes_times_out(server: TestServer) -> None:
    response = await exchange(server, [head(100) + b"x" * 10], until=b"InvalidRequest")
    assert response.startswith(b"HTTP/1.1 400") and response.endswith(b"InvalidRequest")
