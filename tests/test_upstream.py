"""``gateway/upstream.py``: the one mapping of the upstream clients' exceptions, and one behaviour
over both clients (``server.upstream_client``), through the gateway on real sockets.

The upstream here is a loopback server that writes scripted bytes (a head and body split where
a test needs it, a terminator held back until the test releases it), so each test runs the same
scenario over the raw client and the aiohttp client and expects the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import upstream as upstream_module
from gateway.errors import UpstreamConnectError, UpstreamTimeout, UpstreamTruncated
from gateway.upstream import client_error
from tests.faults.kit import Reply, chat_route, chat_stream, post
from tests.support.gateway import RunningGateway, running_gateway, wait_for
from tests.support.tls import self_signed

both_clients = pytest.mark.usefixtures("upstream_client")
"""The test runs once per upstream client (``tests/conftest.py``)."""

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
WHOLE = chat_stream("Hel", "lo")
Part = bytes | float | asyncio.Event
"""Bytes to write, seconds to wait (for the bytes before to arrive in a read of their own), or an
event to wait for before writing on."""


def test_a_connect_timeout_is_a_connect_error_on_either_client() -> None:
    # aiohttp's connect timeout is a TimeoutError too: it was a 504 "did not answer in time"
    # there, where the fast client says 502 upstream_connect (docs/operations/reliability.md).
    got = client_error(aiohttp.ConnectionTimeoutError("Connection timeout to host"))
    assert isinstance(got, UpstreamConnectError)
    assert got.http_status == 502 and got.error_code == "upstream_connect"


def test_a_read_timeout_is_still_a_timeout() -> None:
    assert isinstance(client_error(aiohttp.SocketTimeoutError("read")), UpstreamTimeout)
    assert isinstance(client_error(TimeoutError()), UpstreamTimeout)


def test_a_broken_connection_mid_stream_is_truncation() -> None:
    got = client_error(aiohttp.ServerDisconnectedError(), mid_stream=True)
    assert isinstance(got, UpstreamTruncated)


class Upstream:
    """Answers the requests, in order, with ``answers`` (then a bare 500); records each
    request as (connection number, request line, headers)."""

    def __init__(self, *answers: Sequence[Part]) -> None:
        self.answers = list(answers)
        self._gates = [part for a in answers for part in a if isinstance(part, asyncio.Event)]
        self.requests: list[tuple[int, str, dict[str, str]]] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, tls: ssl.SSLContext | None = None) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *fields = head.split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (f.partition(":") for f in fields if f)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((number, line, headers))
                answer = self.answers.pop(0) if self.answers else [b"HTTP/1.1 500 x\r\n\r\n"]
                for part in answer:
                    if isinstance(part, asyncio.Event):
                        await part.wait()
                    elif isinstance(part, float):
                        await asyncio.sleep(part)
                    else:
                        writer.write(part)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        """Close every connection and let each answer run out (on a closed connection)."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for event in self._gates:
            event.set()
        await asyncio.gather(*self._tasks)


@contextlib.asynccontextmanager
async def serving(*answers: Sequence[Part]) -> AsyncIterator[Upstream]:
    server = await Upstream(*answers).start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def gateway_to(url: str, **route: Any) -> AsyncIterator[RunningGateway]:
    async with running_gateway({"routes": [chat_route("r", url, **route)]}) as gw:
        yield gw


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def error_of(reply: Reply) -> tuple[int, str, str]:
    doc = reply.json()["error"]
    return reply.status, doc["code"], doc["message"]


@both_clients
async def test_an_error_body_split_across_reads_keeps_its_message() -> None:
    # aiohttp's content.read(n) returned the first read only: half a JSON document, so the
    # provider's message was lost where the raw client read the body to its end.
    doc = b'{"error":{"message":"the model is overloaded"}}'
    head = b"HTTP/1.1 503 x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer: list[Part] = [head + chunk(doc[:15]), 0.05, chunk(doc[15:]) + b"0\r\n\r\n"]
    async with serving(answer) as upstream, gateway_to(upstream.url) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
    assert error_of(reply) == (
        502,
        "upstream_error",
        "upstream answered HTTP 503: the model is overloaded",
    )


@both_clients
async def test_an_error_answer_whose_body_stalls_is_still_that_error() -> None:
    # The status and Retry-After came: the raw client said 504 upstream_timeout (the body read
    # hit the first_event deadline), aiohttp waited the same way. A 429 is a 429.
    head = b"HTTP/1.1 429 x\r\nRetry-After: 7\r\nContent-Length: 100\r\n\r\n"
    never = asyncio.Event()
    async with serving([head, never]) as upstream:
        async with gateway_to(upstream.url, timeouts={"first_event": "300ms"}) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
    assert error_of(reply) == (429, "rate_limited", "upstream answered HTTP 429")
    assert reply.headers["Retry-After"] == "7"


@both_clients
async def test_the_request_asks_for_no_content_coding_and_gzip_still_decodes() -> None:
    # aiohttp asked for "gzip, deflate": a compressing upstream then holds tokens back in its
    # compressor, where the raw client asks for identity (docs/configuration.md).
    packed = gzip.compress(WHOLE)
    answer = [SSE_HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)]
    async with serving([answer[0] + packed]) as upstream, gateway_to(upstream.url) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
    assert reply.status == 200 and reply.text == "Hello" and reply.last[0] == "end"
    assert upstream.requests[0][2]["accept-encoding"] == "identity"


@both_clients
async def test_a_content_coding_not_decoded_is_an_error_before_the_stream() -> None:
    # aiohttp passed the still-encoded bytes to the stream: a 200 and upstream_truncated.
    answer = SSE_HEAD + b"Content-Encoding: compress\r\nContent-Length: 5\r\n\r\nabcde"
    async with serving([answer]) as upstream, gateway_to(upstream.url) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
    assert error_of(reply) == (502, "upstream_error", "upstream sent content-encoding 'compress'")


@both_clients
async def test_a_refused_connection_says_why_and_not_where() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with gateway_to(f"http://127.0.0.1:{port}") as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
    status, code, message = error_of(reply)
    assert (status, code) == (502, "upstream_connect")
    assert message == "could not connect to upstream: Connection refused"


@both_clients
async def test_an_unverified_certificate_is_a_clear_502(tmp_path: Path) -> None:
    # aiohttp said "could not connect to upstream", nothing about TLS.
    answer = SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(WHOLE) + WHOLE
    upstream = await Upstream([answer]).start(await self_signed(tmp_path))
    try:
        async with gateway_to(f"https://127.0.0.1:{upstream.port}") as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
    finally:
        await upstream.stop()
    assert error_of(reply) == (
        502,
        "upstream_connect",
        "could not connect to upstream: its TLS certificate did not verify",
    )


def idle_upstream_connections(gw: RunningGateway) -> int:
    raw = gw.state.raw_client
    if raw is not None:
        return int(raw.idle_connections)
    connector = gw.state.session.connector
    return sum(len(idle) for idle in connector._conns.values())  # aiohttp has no public count


@both_clients
async def test_a_connection_whose_body_ends_after_the_content_is_reused() -> None:
    # The provider's terminator event came, the chunked body's end a write later: aiohttp's
    # stream closed the connection at once, the raw client waits (LINGER) and pools it.
    release = asyncio.Event()
    first = [SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(WHOLE), release, b"0\r\n\r\n"]
    second = [SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(WHOLE) + WHOLE]
    async with serving(first, second) as upstream, gateway_to(upstream.url) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.text == "Hello" and reply.last[0] == "end"
        await wait_for(lambda: not gw.state.sessions)  # the stream is done with its upstream
        release.set()
        await wait_for(lambda: idle_upstream_connections(gw) == 1)
        again = await post(f"{gw.url}/v1/stream/r")
    assert again.text == "Hello"
    assert [number for number, _, _ in upstream.requests] == [1, 1]


@pytest.mark.parametrize("proxied", [True, False], ids=["proxy", "no_proxy"])
async def test_the_aiohttp_client_uses_the_environment_s_http_proxy(
    upstream_client: str, proxied: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/configuration.md: "Choose aiohttp for what raw does not do: HTTP proxies". The
    # session did not read the environment, so no proxy was ever used.
    monkeypatch.setattr(upstream_module, "_PROXIES", {})
    answer = SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(WHOLE) + WHOLE
    async with serving([answer]) as proxy, serving([answer]) as upstream:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "" if proxied else "127.0.0.1")
        async with gateway_to(upstream.url) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
    assert reply.text == "Hello"
    via_proxy = proxied and upstream_client == "aiohttp"  # the raw client has no proxies
    assert len(proxy.requests) == int(via_proxy) and len(upstream.requests) == int(not via_proxy)
    if via_proxy:
        assert proxy.requests[0][1] == f"POST {upstream.url}/chat/completions HTTP/1.1"


@both_clients
async def test_no_cookie_an_upstream_sets_rides_on_another_request() -> None:
    # aiohttp's session kept a cookie jar: a Set-Cookie answered to one route's request went
    # out with every later request to that host, whichever route (whichever tenant) sent it.
    with_cookie = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nSet-Cookie: session=tenant-a; "
        b"Path=/\r\nContent-Length: %d\r\n\r\n%b" % (len(WHOLE), WHOLE)
    )
    plain = SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(WHOLE) + WHOLE
    async with serving([with_cookie], [plain]) as upstream:
        url = f"http://localhost:{upstream.port}"  # a host name: jars keep no cookie for an IP
        routes = [chat_route("a", url), chat_route("b", url)]
        async with running_gateway({"routes": routes}) as gw:
            assert (await post(f"{gw.url}/v1/stream/a")).text == "Hello"
            assert (await post(f"{gw.url}/v1/stream/b")).text == "Hello"
    assert len(upstream.requests) == 2
    assert "cookie" not in upstream.requests[1][2]


@both_clients
async def test_the_connection_cap_holds_on_either_client() -> None:
    # server.upstream_max_connections was the raw client's only: aiohttp's connector had no
    # limit, so a second stream opened a second connection past a cap of 1.
    release = asyncio.Event()
    held = [SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(WHOLE) + WHOLE[:10], release, WHOLE[10:]]
    plain = [SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(WHOLE) + WHOLE]
    async with serving(held, plain) as upstream:
        config = {
            "server": {"upstream_max_connections": 1},
            "routes": [chat_route("r", upstream.url)],
        }
        async with running_gateway(config) as gw:
            first = asyncio.ensure_future(post(f"{gw.url}/v1/stream/r"))
            await wait_for(lambda: len(upstream.requests) == 1)
            second = asyncio.ensure_future(post(f"{gw.url}/v1/stream/r"))
            await wait_for(lambda: len(gw.state.sessions) == 2)
            await asyncio.sleep(0.2)  # room for a second connection, were one allowed
            assert upstream.connections == 1
            release.set()
            assert (await first).text == "Hello" and (await second).text == "Hello"
    assert [number for number, _, _ in upstream.requests] == [1, 1]
