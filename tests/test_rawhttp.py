"""The fast upstream client (gateway.rawhttp) against a hand-written HTTP/1.1 server.

The gateway-level behaviour (streams, aborts, fallbacks, faults) runs over both upstream clients
in tests/server and tests/faults; here are what only this client does: the keep-alive pool, the
keep-alive race retry, the connection cap, the body framings, gzip, TLS verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest

from gateway import rawclient, rawhttp
from gateway.errors import UpstreamConnectError, UpstreamError, UpstreamTruncated
from gateway.rawclient import RawClient, use_raw
from gateway.rawhttp import AVAILABLE, HIGH_WATER, MAX_HEAD, RawResponse, _Conn
from gateway.upstream import _error_body
from tests.support.gateway import running_gateway, wait_for
from tests.support.heap import live, new_objects_only
from tests.support.tls import self_signed

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="httptools is not installed")

Reply = Callable[[bytes], bytes]


def chunked(*parts: bytes, close: bool = False) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    if close:
        head += b"Connection: close\r\n"
    body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts)
    return head + b"\r\n" + body + b"0\r\n\r\n"


class Server:
    """Answers every request on a connection with ``reply(request)``; records connections."""

    def __init__(self, reply: Reply, *, hold: bool = False) -> None:
        self.reply = reply
        self.hold = hold
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, tls: ssl.SSLContext | None = None) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                writer.write(self.reply(request))
                await writer.drain()
                if self.hold:
                    await reader.read()  # until the client closes
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[RawClient]:
    raw = RawClient()
    yield raw
    await raw.close()


async def serve(reply: Reply, **kwargs: bool) -> Server:
    return await Server(reply, **kwargs).start()


async def body_of(stream: RawResponse) -> bytes:
    parts = []
    while chunk := await stream.read():
        parts.append(chunk)
    return b"".join(parts)


async def post(client: RawClient, port: int, body: bytes = b"{}") -> RawResponse:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    return await client.request("POST", url, {"Content-Type": "application/json"}, body, 5)


async def test_request_line_headers_and_body_are_sent(client: RawClient) -> None:
    server = await serve(lambda _: chunked(b"data: 1\n\n"))
    stream = await post(client, server.port, b'{"a":1}')
    assert stream.status == 200
    assert stream.header(b"content-type") is None  # a 2xx stream keeps no headers
    assert await body_of(stream) == b"data: 1\n\n"
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in request
    assert b"Content-Type: application/json\r\n" in request
    assert request.endswith(b'Content-Length: 7\r\n\r\n{"a":1}')
    await server.stop()


async def test_an_error_answer_keeps_its_headers(client: RawClient) -> None:
    answer = b"HTTP/1.1 429 Too Many\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nslow"
    server = await serve(lambda _: answer)
    stream = await post(client, server.port)
    assert (stream.status, stream.header(b"retry-after")) == (429, "1")
    assert await body_of(stream) == b"slow"
    await server.stop()


async def test_an_error_body_is_read_up_to_its_cap(client: RawClient) -> None:
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\n0123456789"
    server = await serve(lambda _: answer)
    assert await _error_body(await post(client, server.port), 4) == b"0123"
    assert await _error_body(await post(client, server.port), 64) == b"0123456789"
    await server.stop()


async def test_a_response_read_to_its_end_reuses_the_connection(client: RawClient) -> None:
    server = await serve(lambda _: chunked(b"a", b"b"))
    for _ in range(3):
        stream = await post(client, server.port)
        assert await body_of(stream) == b"ab"
        stream.close()
    assert server.connections == 1
    assert client.idle_connections == 1
    await server.stop()


async def test_a_pooled_connection_closes_after_the_idle_keep_alive(
    client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rawclient, "IDLE_KEEPALIVE", 0.3)
    server = await serve(lambda _: chunked(b"a"))
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < 0.7:  # reused more often than the timeout: kept
        stream = await post(client, server.port)
        assert await body_of(stream) == b"a"
        stream.close()
        await asyncio.sleep(0.1)
    assert server.connections == 1 and client.idle_connections == 1
    await asyncio.wait_for(server.closed.wait(), 2)  # then unused for 0.3 s: closed
    assert client.open_connections == 0 and client.idle_connections == 0
    await server.stop()


async def test_a_closed_connection_is_freed() -> None:
    """The pool's idle and head deadlines hold its connections; a closed connection is let go
    of, and freed without the cyclic collector."""
    with new_objects_only():
        client = RawClient()
        server = await serve(lambda _: chunked(b"a"))
        for _ in range(2):
            stream = await post(client, server.port)
            assert await body_of(stream) == b"a"
            stream.close()
        del stream
        assert client.idle_connections == 1
        await server.stop()  # the upstream closes the pooled connection
        await wait_for(lambda: live(_Conn) == 0)
        assert client.idle_connections == 0
        await client.close()


NOT_KEPT = {
    "connection close": chunked(b"a", close=True),
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",
}


@pytest.mark.parametrize("answer", NOT_KEPT.values(), ids=NOT_KEPT.keys())
async def test_an_answer_without_keep_alive_is_not_pooled(client: RawClient, answer: bytes) -> None:
    server = await serve(lambda _: answer)
    for _ in range(2):
        assert await body_of(await post(client, server.port)) == b"a"
        assert client.open_connections == 0
    assert server.connections == 2
    await server.stop()


async def test_finish_pools_the_connection_when_the_response_ends_soon(client: RawClient) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"

    server = await serve(lambda _: head, hold=False)
    stream = await post(client, server.port)
    assert await stream.read() == b"a"
    stream.finish()  # the content ended; the chunk terminator has not come yet
    assert client.idle_connections == 0
    server.writers[0].write(b"0\r\n\r\n")
    await asyncio.sleep(0.05)
    assert client.idle_connections == 1
    await server.stop()


async def test_close_before_the_end_closes_the_upstream_at_once(client: RawClient) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
    server = await serve(lambda _: head, hold=True)
    stream = await post(client, server.port)
    assert await stream.read() == b"a"
    stream.close()
    await asyncio.wait_for(server.closed.wait(), 1)
    assert client.open_connections == 0
    await server.stop()


async def test_a_pooled_connection_the_upstream_closed_is_replaced(client: RawClient) -> None:
    server = await serve(lambda _: chunked(b"a"))
    assert await body_of(await post(client, server.port)) == b"a"
    for writer in server.writers:  # the upstream drops its idle keep-alive connection
        writer.transport.abort()
    await asyncio.sleep(0.05)
    assert await body_of(await post(client, server.port)) == b"a"
    assert server.connections == 2
    await server.stop()


async def test_stale_pooled_connections_are_retried_on_a_fresh_one(client: RawClient) -> None:
    """Every idle connection was dropped by the upstream unseen (a restart, a load balancer's
    idle cut): the request is sent once more on a new connection, not on the next stale one."""

    writers: list[asyncio.StreamWriter] = []

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n{}")
            writer.write(chunked(b"a"))
            await reader.readuntil(b"\r\n\r\n{}")  # the next request: closed unanswered
        writer.close()

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    streams = await asyncio.gather(*(post(client, port) for _ in range(3)))
    for stream in streams:
        assert await body_of(stream) == b"a"
        stream.close()
    assert client.idle_connections == 3
    assert await body_of(await post(client, port)) == b"a"
    assert len(writers) == 4  # the three pooled ones tried once between them, then a new one
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_408_on_a_pooled_connection_is_retried_on_a_new_one(client: RawClient) -> None:
    timed_out = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    replies = iter([chunked(b"a"), timed_out, chunked(b"b")])
    server = await serve(lambda _: next(replies))
    assert await body_of(await post(client, server.port)) == b"a"
    assert await body_of(await post(client, server.port)) == b"b"
    assert server.connections == 2
    await server.stop()
    server = await serve(lambda _: timed_out)
    stream = await post(client, server.port)  # on a new connection a 408 is the answer
    assert stream.status == 408
    assert server.connections == 1
    await server.stop()


async def test_interim_answers_are_skipped(client: RawClient) -> None:
    """A 1xx answer (100 Continue, 103 Early Hints) is not the response (RFC 9110 15.2): the
    request waits for the final head, and the connection stays in step for the next request."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    replies = iter([interim, chunked(b"second")])
    server = await serve(lambda _: next(replies))
    first = asyncio.ensure_future(post(client, server.port))
    await wait_for(lambda: server.requests)
    await asyncio.sleep(0.05)
    assert not first.done()  # only the interim answers came: the response is still awaited
    server.writers[0].write(chunked(b"first"))
    stream = await asyncio.wait_for(first, 1)
    assert stream.status == 200
    assert await body_of(stream) == b"first"
    stream.close()
    assert await body_of(await post(client, server.port)) == b"second"
    assert server.connections == 1
    await server.stop()


async def test_an_interim_answer_does_not_meet_the_head_deadline(client: RawClient) -> None:
    server = await serve(lambda _: b"HTTP/1.1 100 Continue\r\n\r\n", hold=True)
    url = f"http://127.0.0.1:{server.port}/v1"
    deadline = asyncio.get_running_loop().time() + 0.1
    with pytest.raises(TimeoutError):
        await client.request("POST", url, {}, b"", 5, deadline)
    await server.stop()


async def test_content_length_read_to_close_and_gzip_bodies(client: RawClient) -> None:
    replies = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
        ]
    )
    server = await serve(lambda _: next(replies))
    assert await body_of(await post(client, server.port)) == b"hello"
    stream = await post(client, server.port)
    server.writers[-1].close()
    assert await body_of(stream) == b"until close"
    await server.stop()
    packed = gzip.compress(b"data: zipped\n\n")
    zipped = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%b"
    server = await serve(lambda _: zipped % (len(packed), packed))
    assert await body_of(await post(client, server.port)) == b"data: zipped\n\n"
    await server.stop()


async def test_a_coded_body_that_inflates_past_the_bound_is_refused(
    client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deflate bomb (never asked for: requests say ``identity``): one read may not inflate
    past ``MAX_INFLATED``, where it would have been a thousand times its size in memory."""
    monkeypatch.setattr(rawhttp, "MAX_INFLATED", 64 * 1024)
    packed = gzip.compress(b"\0" * (1024 * 1024))  # 1 MiB of zeros in about 1 KiB
    zipped = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%b"
    server = await serve(lambda _: zipped % (len(packed), packed))
    stream = await post(client, server.port)
    with pytest.raises(UpstreamError, match="inflates past 65536 bytes"):
        await body_of(stream)
    assert client.open_connections == 0
    await server.stop()


async def test_a_request_asks_for_no_content_coding(client: RawClient) -> None:
    server = await serve(lambda _: chunked(b"a"))
    url = f"http://127.0.0.1:{server.port}/v1"
    await client.request("POST", url, {}, b"", 5)
    await client.request("POST", url, {"Accept-Encoding": "gzip"}, b"", 5)  # an adapter's own
    first, second = server.requests
    assert b"\r\nAccept-Encoding: identity\r\n" in first
    assert b"\r\nAccept-Encoding: gzip\r\n" in second and b"identity" not in second
    await server.stop()


@pytest.mark.parametrize("coding", [b"br", b"zstd", b"gzip, br"])
async def test_a_content_coding_not_decoded_is_an_error(client: RawClient, coding: bytes) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: %b\r\nContent-Length: 3\r\n\r\nxyz"
    server = await serve(lambda _: answer % coding)
    with pytest.raises(UpstreamError, match="content-encoding"):
        await post(client, server.port)
    assert client.open_connections == 0
    await server.stop()


async def test_a_response_head_is_capped(client: RawClient) -> None:
    filler = b"X-Filler: " + b"f" * 1000 + b"\r\n"
    answer = b"HTTP/1.1 200 OK\r\n" + filler * (MAX_HEAD // len(filler) + 1)
    server = await serve(lambda _: answer, hold=True)  # the head never ends
    with pytest.raises(UpstreamError, match="response head over"):
        await post(client, server.port)
    await asyncio.wait_for(server.closed.wait(), 1)
    await server.stop()
    lines = b"HTTP/1.1 200 OK\r\n" + filler * 20 + b"Content-Length: 1\r\n\r\na"
    server = await serve(lambda _: lines)  # 20 KiB of headers: read
    assert await body_of(await post(client, server.port)) == b"a"
    await server.stop()


async def test_a_cut_chunked_body_is_truncated(client: RawClient) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
    server = await serve(lambda _: head, hold=True)
    stream = await post(client, server.port)
    assert await stream.read() == b"a"
    server.writers[0].transport.abort()
    with pytest.raises(UpstreamTruncated):
        await stream.read()
    await server.stop()


async def test_refused_connection_is_a_connect_error(client: RawClient) -> None:
    server = await serve(lambda _: b"")
    port = server.port
    await server.stop()
    with pytest.raises(UpstreamConnectError):
        await post(client, port)


async def test_the_connection_cap_makes_a_request_wait() -> None:
    client = RawClient(max_connections=1)
    server = await serve(lambda _: chunked(b"a"))
    first = await post(client, server.port)
    second = asyncio.ensure_future(post(client, server.port))
    await asyncio.sleep(0.05)
    assert not second.done()
    assert await body_of(first) == b"a"
    assert await body_of(await asyncio.wait_for(second, 1)) == b"a"
    await client.close()
    await server.stop()


async def test_tls_verifies_the_certificate(tmp_path: Path, client: RawClient) -> None:
    tls = await self_signed(tmp_path)
    server = await Server(lambda _: chunked(b"a")).start(tls)
    url = f"https://127.0.0.1:{server.port}/v1"
    with pytest.raises(UpstreamConnectError, match="certificate"):
        await client.request("POST", url, {}, b"", 5)
    await server.stop()


async def test_a_head_later_than_the_deadline_is_a_timeout(client: RawClient) -> None:
    server = await serve(lambda _: b"", hold=True)  # reads the request, never answers
    url = f"http://127.0.0.1:{server.port}/v1"
    deadline = asyncio.get_running_loop().time() + 0.1
    with pytest.raises(TimeoutError):
        await client.request("POST", url, {}, b"", 5, deadline)
    await asyncio.wait_for(server.closed.wait(), 1)  # the connection was dropped
    assert client.open_connections == 0
    await server.stop()


async def test_a_pooled_connection_keeps_each_request_s_own_head_deadline(
    client: RawClient,
) -> None:
    replies = iter([chunked(b"a"), b""])  # the second request is never answered
    server = await serve(lambda _: next(replies))
    url = f"http://127.0.0.1:{server.port}/v1"
    loop = asyncio.get_running_loop()
    stream = await client.request("POST", url, {}, b"", 5, loop.time() + 30)
    assert await body_of(stream) == b"a"  # its deadline's timer is still armed, for 30 s
    stream.close()
    start = loop.time()
    with pytest.raises(TimeoutError):  # an earlier deadline on the same connection
        await client.request("POST", url, {}, b"", 5, loop.time() + 0.1)
    assert 0.1 - 0.01 <= loop.time() - start < 5
    assert server.connections == 1
    await server.stop()


async def test_a_head_in_time_disarms_the_deadline(client: RawClient) -> None:
    server = await serve(lambda _: chunked(b"a"))
    url = f"http://127.0.0.1:{server.port}/v1"
    deadline = asyncio.get_running_loop().time() + 0.05
    stream = await client.request("POST", url, {}, b"", 5, deadline)
    await asyncio.sleep(0.1)  # past the deadline: the answer stands
    assert await body_of(stream) == b"a"
    await server.stop()


async def test_a_slot_not_free_by_the_deadline_is_a_timeout() -> None:
    client = RawClient(max_connections=1)
    server = await serve(lambda _: chunked(b"a"))
    first = await post(client, server.port)
    url = f"http://127.0.0.1:{server.port}/v1"
    deadline = asyncio.get_running_loop().time() + 0.05
    with pytest.raises(TimeoutError):
        await client.request("POST", url, {}, b"", 5, deadline)
    assert await body_of(first) == b"a"  # the slot came back: the next request gets it
    assert await body_of(await post(client, server.port)) == b"a"
    await client.close()
    await server.stop()


async def test_read_only_headers_are_encoded_once(client: RawClient) -> None:
    server = await serve(lambda _: chunked(b"a"))
    url = f"http://127.0.0.1:{server.port}/v1"
    shared = MappingProxyType({"x-route": "one"})
    for body in (b"{}", b'{"a":2}'):
        assert await body_of(await client.request("POST", url, shared, body, 5)) == b"a"
    assert len(client._heads) == 1
    await client.request("POST", url, {"x-own": "dict"}, b"", 5)  # a request's own: not kept
    assert len(client._heads) == 1
    first, second, third = server.requests
    assert first.endswith(
        b"x-route: one\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + b"Accept-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert second.endswith(b"Content-Length: 7\r\n\r\n" + b'{"a":2}')
    assert b"x-own: dict\r\n" in third and b"x-route" not in third
    await server.stop()


FRAMINGS = {
    "content-length then transfer-encoding": (
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "Transfer-Encoding can't be present with Content-Length",
    ),
    "transfer-encoding then content-length": (
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "Content-Length can't be present with Transfer-Encoding",
    ),
    "two content-lengths": (b"Content-Length: 3\r\nContent-Length: 5\r\n\r\nhello", "Duplicate"),
    "a bad chunk size": (
        b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        "chunk size",
    ),
    "a bad chunk extension": (
        b'Transfer-Encoding: chunked\r\n\r\n5;a="b\r\nhello\r\n0\r\n\r\n',
        "chunk extensions",
    ),
    "a chunk longer than its size": (
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        "after chunk data",
    ),
    "a transfer coding not decoded": (
        b"Transfer-Encoding: gzip\r\n\r\nhello",
        "transfer-encoding 'gzip'",
    ),
}


@pytest.mark.parametrize("framing", FRAMINGS.values(), ids=FRAMINGS.keys())
async def test_an_ambiguous_or_broken_framing_is_an_error(
    client: RawClient, framing: tuple[bytes, str]
) -> None:
    """A response whose body's end is in doubt is an error, never a guess (the guess is how a
    response is split into two), and its connection is closed, not pooled."""
    rest, error = framing
    replies = iter([b"HTTP/1.1 200 OK\r\n" + rest])
    server = await serve(lambda _: next(replies, chunked(b"next")))
    with pytest.raises(UpstreamError, match=error):
        await asyncio.wait_for(body_of(await post(client, server.port)), 5)
    assert client.open_connections == 0
    assert await body_of(await post(client, server.port)) == b"next"
    assert server.connections == 2
    await server.stop()


AFTER_THE_END = {
    "a body longer than its length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhelHTTP/1.1 200 OK\r\nContent-Length: 4"
        b"\r\n\r\nevil",
        (200, b"hel"),
    ),
    "a head after the body": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhelHTTP/1.1 200 OK\r\nContent-Le",
        (200, b"hel"),
    ),
    "a response after a 304": (
        b"HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        (304, b""),
    ),
    "a 204 with a body": (
        b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nevil",
        (204, b""),
    ),
}


@pytest.mark.parametrize("sent", AFTER_THE_END.values(), ids=AFTER_THE_END.keys())
async def test_bytes_after_the_response_are_no_answer(
    client: RawClient, sent: tuple[bytes, tuple[int, bytes]]
) -> None:
    """Bytes after a response's end (past its Content-Length, a body on a 204/304) are neither
    part of it nor the next request's answer: the connection is closed, the next request gets
    its own answer on a new one."""
    answer, expected = sent
    replies = iter([answer])
    server = await serve(lambda _: next(replies, chunked(b"next")))
    stream = await post(client, server.port)
    assert (stream.status, await body_of(stream)) == expected
    assert client.open_connections == 0
    assert await body_of(await post(client, server.port)) == b"next"
    assert server.connections == 2
    await server.stop()


async def test_bytes_after_the_response_in_a_later_read_close_the_connection(
    client: RawClient,
) -> None:
    replies = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhel"])
    server = await serve(lambda _: next(replies, chunked(b"next")))
    stream = await post(client, server.port)
    await wait_for(lambda: stream._conn.complete)  # the response ended; it is not read yet
    server.writers[0].write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
    await wait_for(lambda: client.open_connections == 0)
    assert await body_of(stream) == b"hel"
    assert await body_of(await post(client, server.port)) == b"next"
    assert server.connections == 2
    await server.stop()


async def test_an_answer_before_the_request_was_sent_whole_is_not_pooled(
    client: RawClient,
) -> None:
    """An upstream that answers before reading the request's body (a 413) and keeps the
    connection may read the rest of the body as the next request: the connection is closed."""
    heads: list[bytes] = []
    closed = asyncio.Event()

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig!")
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 16):  # the rest of the body, after answering
                pass
        writer.close()
        closed.set()

    server = await asyncio.start_server(early, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    body = b"x" * (16 << 20)  # more than the sockets' buffers hold: the answer comes first
    stream = await client.request("POST", url, {}, body, 5)
    assert (stream.status, await body_of(stream)) == (413, b"big!")
    assert client.open_connections == 0 and client.idle_connections == 0
    await asyncio.wait_for(closed.wait(), 5)  # the upstream saw the connection end
    assert len(heads) == 1
    server.close()
    await server.wait_closed()


async def test_trailers_are_capped(client: RawClient) -> None:
    trailers = b"X-Trailer: 0123456789\r\n" * (MAX_HEAD // 10)
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
    server = await serve(lambda _: answer + trailers + b"\r\n")
    stream = await post(client, server.port)
    with pytest.raises(UpstreamError, match="trailers over"):
        await body_of(stream)
    assert client.open_connections == 0
    await server.stop()


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    """A waiter cancelled (a client abort, its deadline) just as a slot was handed to it
    passes the slot on: the cap stays what it is."""
    client = RawClient(max_connections=1)
    server = await serve(lambda _: chunked(b"a"))
    first = await post(client, server.port)
    second = asyncio.ensure_future(post(client, server.port))
    await wait_for(lambda: client._slots)
    assert await body_of(first) == b"a"  # the end of the body hands the slot to ``second``
    second.cancel()  # ... before it runs
    with pytest.raises(asyncio.CancelledError):
        await second
    assert client._busy == 0
    third = await post(client, server.port)
    fourth = asyncio.ensure_future(post(client, server.port))
    await wait_for(lambda: client._slots)  # the cap holds: it waits for ``third``
    assert await body_of(third) == b"a"
    assert await body_of(await fourth) == b"a"
    assert client._busy == 0
    await client.close()
    await server.stop()


async def test_a_response_left_unread_pools_a_connection_that_reads(client: RawClient) -> None:
    """A response that ended while its reader was not reading (backpressure paused the
    connection) and was then closed leaves a pooled connection that reads again."""
    big = b"x" * (HIGH_WATER + 1)  # the pause comes with the body's last byte
    server = await serve(
        lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(big), big)
    )
    stream = await post(client, server.port)
    await wait_for(lambda: stream._conn.complete)
    assert stream._conn.paused
    stream.close()  # a client abort: the response was whole, the connection is pooled
    assert client.idle_connections == 1
    url = f"http://127.0.0.1:{server.port}/v1"
    deadline = asyncio.get_running_loop().time() + 5
    assert await body_of(await client.request("POST", url, {}, b"", 5, deadline)) == big
    assert server.connections == 1
    await server.stop()


def fake_dns(monkeypatch: pytest.MonkeyPatch, addresses: list[str]) -> list[str]:
    """``upstream.test`` resolves to ``addresses`` (in that order); the lookups are counted."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    lookups: list[str] = []

    async def getaddrinfo(host: str, port: int, **kwargs: int) -> Sequence[tuple[object, ...]]:
        if host != "upstream.test":
            return await real(host, port, **kwargs)
        lookups.append(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return lookups


async def test_each_address_of_a_host_is_tried_in_turn(
    client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host name with several addresses, the first one down (``localhost`` as ``::1`` and
    ``127.0.0.1``, the upstream listening on the second only): the next one is tried."""
    lookups = fake_dns(monkeypatch, ["::1", "127.0.0.1"])
    server = await serve(lambda _: chunked(b"a"))
    url = f"http://upstream.test:{server.port}/v1"
    assert await body_of(await client.request("POST", url, {}, b"", 5)) == b"a"
    assert f"Host: upstream.test:{server.port}\r\n".encode() in server.requests[0]
    assert lookups == ["upstream.test"]
    await server.stop()


async def test_the_dns_cache_expires_and_an_unreachable_host_is_looked_up_again(
    client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = fake_dns(monkeypatch, ["127.0.0.1"])
    server = await serve(lambda _: chunked(b"a", close=True))  # a connection per request
    url = f"http://upstream.test:{server.port}/v1"
    monkeypatch.setattr(rawclient, "DNS_TTL", 0.0)
    for _ in range(2):
        assert await body_of(await client.request("POST", url, {}, b"", 5)) == b"a"
    assert len(lookups) == 2  # expired at once: looked up for each connection
    monkeypatch.setattr(rawclient, "DNS_TTL", 300.0)
    for _ in range(2):
        assert await body_of(await client.request("POST", url, {}, b"", 5)) == b"a"
    assert len(lookups) == 3  # then cached
    await server.stop()  # the host went away (or moved): its cached address is forgotten
    for _ in range(2):
        with pytest.raises(UpstreamConnectError):
            await client.request("POST", url, {}, b"", 5)
    assert len(lookups) == 4


async def tls_files(tmp_path: Path, *names: str) -> None:
    """A CA (``ca.pem``) and a certificate signed by it for each name (``<name>.pem/.key``)."""

    async def openssl(*args: str) -> None:
        made = await asyncio.create_subprocess_exec(
            "openssl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        if await made.wait():
            pytest.skip("openssl could not make a certificate")

    ca, ca_key = str(tmp_path / "ca.pem"), str(tmp_path / "ca.key")
    await openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test ca"),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-keyout", ca_key, "-out", ca),
    )
    for name in names:
        base = str(tmp_path / name)
        await openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}"),
            *("-keyout", f"{base}.key", "-out", f"{base}.csr"),
        )
        (tmp_path / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
        await openssl(
            *("x509", "-req", "-in", f"{base}.csr", "-CA", ca, "-CAkey", ca_key),
            *("-CAcreateserial", "-days", "1", "-extfile", f"{base}.ext", "-out", f"{base}.pem"),
        )


@pytest.mark.parametrize(
    ("certified", "asked", "ok"),
    [
        ("localhost", "localhost", True),
        ("other.example", "localhost", False),
        ("localhost", "127.0.0.1", False),
    ],
)
async def test_tls_checks_the_host_name_it_sends(
    tmp_path: Path, client: RawClient, certified: str, asked: str, ok: bool
) -> None:
    """The host name goes in SNI and must match the certificate (here signed by a CA the
    client trusts): a certificate for another name, or asked for by address, fails."""
    await tls_files(tmp_path, certified)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / f"{certified}.pem", tmp_path / f"{certified}.key")
    sni: list[str | None] = []
    tls.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    client._ssl = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    server = await Server(lambda _: chunked(b"a")).start(tls)
    url = f"https://{asked}:{server.port}/v1"
    if ok:
        assert await body_of(await client.request("POST", url, {}, b"", 5)) == b"a"
    else:
        with pytest.raises(UpstreamConnectError, match="certificate did not verify"):
            await client.request("POST", url, {}, b"", 5)
    assert sni == [None if asked[0].isdigit() else asked]
    assert client.open_connections == 0 or ok
    await server.stop()


async def test_a_cancelled_tls_handshake_closes_the_socket_at_once() -> None:
    """A client abort while connecting (the upstream accepted, its TLS handshake never came)
    closes the socket and frees the slot."""
    accepted, closed = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the client closes
        closed.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    client = RawClient(max_connections=1)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    pending = asyncio.ensure_future(client.request("POST", url, {}, b"", 30))
    await asyncio.wait_for(accepted.wait(), 5)  # the TCP connection is up, the handshake pending
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await asyncio.wait_for(closed.wait(), 1)
    assert client._busy == 0 and client.open_connections == 0
    await client.close()
    server.close()
    await server.wait_closed()


async def test_a_response_after_a_204_is_not_streamed_through_the_gateway() -> None:
    """Through the gateway: an upstream that answers 204 and then, on the same write, a 200
    with text, streams none of that text (the 204 is the answer: an empty stream, an error)."""
    sse = b'data: {"choices":[{"index":0,"delta":{"content":"evil"}}]}\n\ndata: [DONE]\n\n'
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%b"
    server = await serve(lambda _: b"HTTP/1.1 204 No Content\r\n\r\n" + smuggled % (len(sse), sse))
    route: dict[str, Any] = {"name": "r", "provider": "openai-chat"}
    route["upstream"] = {"base_url": f"http://127.0.0.1:{server.port}/v1", "model": "m"}
    doc = {"server": {"upstream_client": "raw"}, "routes": [route]}
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as session:
        hello = {"messages": [{"role": "user", "content": "Hello"}]}
        async with session.post(f"{gw.url}/v1/stream/r", json=hello) as resp:
            text = await resp.text()
    assert len(server.requests) == 1
    assert "evil" not in text
    assert "event: error" in text
    await server.stop()


def test_the_config_choice() -> None:
    assert use_raw("auto") is AVAILABLE
    assert use_raw("raw") is True
    assert use_raw("aiohttp") is False
