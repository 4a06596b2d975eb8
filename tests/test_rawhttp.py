"""The fast upstream client (gateway.rawhttp) against a hand-written HTTP/1.1 server.

The gateway-level behaviour (streams, aborts, fallbacks, faults) runs over both upstream clients
in tests/server and tests/faults; here are what only this client does: the keep-alive pool, the
keep-alive race retry, the connection cap, the body framings, gzip, TLS verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from gateway import rawclient
from gateway.errors import UpstreamConnectError, UpstreamError, UpstreamTruncated
from gateway.rawclient import RawClient, use_raw
from gateway.rawhttp import AVAILABLE, MAX_HEAD, RawResponse, _Conn
from gateway.upstream import _error_body
from tests.support.gateway import wait_for

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
    gc.collect()
    gc.disable()
    try:
        client = RawClient()
        server = await serve(lambda _: chunked(b"a"))
        for _ in range(2):
            stream = await post(client, server.port)
            assert await body_of(stream) == b"a"
            stream.close()
        del stream
        assert client.idle_connections == 1
        await server.stop()  # the upstream closes the pooled connection
        await wait_for(lambda: not any(isinstance(o, _Conn) for o in gc.get_objects()))
        assert client.idle_connections == 0
        await client.close()
    finally:
        gc.enable()


async def test_connection_close_is_not_pooled(client: RawClient) -> None:
    server = await serve(lambda _: chunked(b"a", close=True))
    for _ in range(2):
        assert await body_of(await post(client, server.port)) == b"a"
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
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = await asyncio.create_subprocess_exec(
        *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await made.wait():
        pytest.skip("openssl could not make a certificate")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
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


def test_the_config_choice() -> None:
    assert use_raw("auto") is AVAILABLE
    assert use_raw("raw") is True
    assert use_raw("aiohttp") is False
