"""One request and its answer on the fast server (``gateway/httpexchange.py``), without sockets."""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any

import pytest

from gateway.errors import BodyTooLarge
from gateway.http import read_body
from gateway.httpexchange import Body, head


class FakeConn:
    """What a :class:`Body` tells its connection: reads paused and resumed."""

    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class FakeRequest:
    def __init__(self, body: Body, length: int | None) -> None:
        self.content = body
        self.content_length = length


def body_of(conn: FakeConn, max_bytes: int = 100) -> Body:
    return Body(conn, max_bytes)  # type: ignore[arg-type]


def test_a_body_that_arrived_whole_is_read_without_waiting() -> None:
    """The usual small POST: body and end came with the head, so reading it never suspends."""
    body = body_of(FakeConn())
    body.feed(b'{"a":')
    body.feed(b"1}")
    body.feed_eof()
    coro = read_body(FakeRequest(body, 7), 100, 5.0)  # type: ignore[arg-type]
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert done.value.value == b'{"a":1}'
    assert body.total_bytes == 7


async def test_a_body_still_arriving_is_read_as_it_comes() -> None:
    body = body_of(FakeConn())
    got: list[Any] = []
    reader = asyncio.create_task(read_body(FakeRequest(body, None), 100, 5.0))  # type: ignore[arg-type]
    for piece in (b"ab", b"cd", b"ef"):
        await asyncio.sleep(0)
        body.feed(piece)
    body.feed_eof()
    got.append(await reader)
    assert got == [b"abcdef"]


async def test_a_body_over_its_bound_pauses_reading_and_is_refused() -> None:
    conn = FakeConn()
    body = body_of(conn, max_bytes=4)
    reader = asyncio.create_task(read_body(FakeRequest(body, None), 4, 5.0))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    body.feed(b"abcdef")
    assert conn.paused  # no more bytes are read into memory
    with pytest.raises(BodyTooLarge):
        await reader


def test_head_has_status_headers_framing_and_date() -> None:
    data = head(
        404, {"Content-Type": "application/json", "X-Request-Id": "r1"}, "Content-Length: 2"
    )
    lines = data.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 404 Not Found"
    assert b"Content-Type: application/json" in lines and b"X-Request-Id: r1" in lines
    assert b"Content-Length: 2" in lines
    assert any(line.startswith(b"Date: ") and line.endswith(b" GMT") for line in lines)
    assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1
    assert head(599, {}, "Content-Length: 0").startswith(b"HTTP/1.1 599 Unknown\r\n")


def test_read_only_headers_make_the_same_head_as_a_dict() -> None:
    fixed = {"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    own = {"X-Request-Id": "r2"}
    expected = head(200, {**fixed, **own}, "Transfer-Encoding: chunked")
    shared = MappingProxyType(fixed)
    for _ in range(2):  # formatted at the first use, then taken as formatted
        assert head(200, shared, "Transfer-Encoding: chunked", own) == expected
