"""A client that never reads: bounded memory, the write deadline ends it, the upstream is cancelled.

The client is a raw socket with a tiny receive buffer that sends its request and never reads;
the upstream is endless and fast. The gateway must stop reading the upstream once the client's
buffer is full (backpressure), keep its own buffer for that client bounded
(``server.max_write_buffer_bytes``), and after ``server.write_timeout`` without progress cut the
client, cancel the upstream, and count it (``gateway_slow_client_disconnects_total``, outcome
``limit_exceeded``).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator

import pytest

from gateway import httpserver
from gateway.runner import drain_and_stop
from tests.faults.kit import SSE, chat_chunk, chat_route
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.rawclient import open_raw

pytestmark = pytest.mark.usefixtures("upstream_client", "http_server")
"""Every test here runs over both upstream clients (``server.upstream_client``) and both servers
(``server.http_server``)."""

BUFFER = 16 * 1024
WRITE_TIMEOUT = 0.5
CHUNK = chat_chunk("x" * 2000)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, chat_chunk("go"))], headers=SSE, endless=(0.0, CHUNK))
    yield fake
    await fake.stop()


async def test_never_reading_client_is_cut_with_bounded_memory(upstream: FakeUpstream) -> None:
    doc = {
        "server": {
            "write_timeout": f"{int(WRITE_TIMEOUT * 1000)}ms",
            "max_write_buffer_bytes": BUFFER,
            "heartbeat_interval": "30s",
        },
        "routes": [chat_route("r", upstream.url)],
    }
    async with running_gateway(doc) as gw:
        rss_before = rss_bytes()
        _, writer = await open_raw(gw.port, "/v1/stream/r", rcvbuf=4096)
        await wait_for(lambda: len(gw.state.sessions) == 1, 2)
        session = next(iter(gw.state.sessions))
        transport = session.sink.transport
        t0 = time.monotonic()
        peak = 0
        while gw.state.sessions and time.monotonic() - t0 < 10:
            if transport is not None and not transport.is_closing():
                peak = max(peak, transport.get_write_buffer_size())
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - t0
        rss_after = rss_bytes()
        try:
            assert not gw.state.sessions, "the slow client was never cut"
            # Cut soon after the client stopped making progress (not after the 10 s bound).
            assert elapsed < WRITE_TIMEOUT + 3
            # The gateway's own buffer toward the client stays bounded: the high-water mark, plus
            # what aiohttp writes between two drains (64 KiB), plus one write.
            assert peak <= BUFFER + 64 * 1024 + 2 * len(CHUNK)
            # And so does the process (the upstream kept offering data the whole time).
            assert rss_after - rss_before < 32 * 1024 * 1024
            seen = upstream.seen[0]
            await wait_for(lambda: seen.closed_at is not None, 2)
            assert not seen.completed
            # Backpressure: the upstream was read no further than the buffers in between.
            assert seen.bytes_sent < 64 * 1024 * 1024
            labels = {"route": "r"}
            assert await metric_value(gw.url, "gateway_slow_client_disconnects_total", labels) == 1
            outcome = {"route": "r", "outcome": "limit_exceeded"}
            assert await metric_value(gw.url, "gateway_requests_total", outcome) == 1
            abort = {"route": "r", "outcome": "client_abort"}
            assert await metric_value(gw.url, "gateway_requests_total", abort) == 0
        finally:
            writer.transport.abort()


async def test_a_reading_client_is_not_cut(upstream: FakeUpstream) -> None:
    """Same deadline and buffer; a client that keeps reading streams on."""
    doc = {
        "server": {"write_timeout": "500ms", "max_write_buffer_bytes": BUFFER},
        "routes": [chat_route("r", upstream.url)],
    }
    async with running_gateway(doc) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r", rcvbuf=4096)
        got = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            chunk = await asyncio.wait_for(reader.read(65536), 2)
            assert chunk
            got += len(chunk)
        assert got > 10 * len(CHUNK)
        assert len(gw.state.sessions) == 1
        writer.transport.abort()
        await wait_for(lambda: not gw.state.sessions, 2)
        labels = {"route": "r"}
        assert await metric_value(gw.url, "gateway_slow_client_disconnects_total", labels) == 0


async def test_a_never_reading_client_cut_at_shutdown_is_not_a_client_abort(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A graceful shutdown ends a stream whose writes block on a client that does not read:
    its terminal event cannot go out, and the stream's task is cancelled as the server stops
    (aiohttp's cleanup cancels its handlers, the loop's teardown every task left). The stream
    ended because of the shutdown (outcome and code ``shutdown``); it used to be counted as a
    client abort (``gateway_client_aborts_total``), sometimes with the code ``shutdown``."""
    doc = {
        "server": {"write_timeout": "30s", "max_write_buffer_bytes": BUFFER},
        "routes": [chat_route("r", upstream.url)],
    }
    caplog.set_level("INFO", logger="gateway")
    async with running_gateway(doc) as gw:
        _, writer = await open_raw(gw.port, "/v1/stream/r", rcvbuf=4096)
        await wait_for(lambda: len(gw.state.sessions) == 1, 2)
        session = next(iter(gw.state.sessions))
        await wait_for(lambda: session.sink.writing, 5)  # blocked on the client
        stopping = asyncio.ensure_future(drain_and_stop(gw.state, 0))
        await wait_for(lambda: session.failure is not None, 2)
        session.task.cancel()  # the server stops with the terminal event still blocked
        await asyncio.wait_for(stopping, 10)
        try:
            labels = {"route": "r", "outcome": "shutdown"}
            assert await metric_value(gw.url, "gateway_requests_total", labels) == 1
            phase = {"route": "r", "phase": "mid_stream"}
            assert await metric_value(gw.url, "gateway_client_aborts_total", phase) == 0
            await wait_for(lambda: upstream.seen[0].closed_at is not None, 2)
            assert not upstream.seen[0].completed
        finally:
            writer.transport.abort()
    (line,) = [r for r in caplog.records if r.getMessage() == "stream"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["outcome"], fields["code"]) == ("shutdown", "shutdown")
    assert not [r for r in caplog.records if r.exc_info is not None]


async def test_a_never_reading_client_is_let_go_of_when_the_server_stops(
    upstream: FakeUpstream,
) -> None:
    """At shutdown the server closes what connections are left: one whose answer is blocked on a
    client that does not read is dropped at once, not closed gracefully behind bytes that will
    never go (which kept it, its protocol and the stream's objects, for as long as the client
    stayed)."""

    def still_open() -> list[httpserver.Connection]:
        return [
            o
            for o in gc.get_objects()
            if isinstance(o, httpserver.Connection) and o.transport is not None
        ]

    doc = {
        "server": {"write_timeout": "30s", "max_write_buffer_bytes": BUFFER},
        "routes": [chat_route("r", upstream.url)],
    }
    async with running_gateway(doc) as gw:
        _, writer = await open_raw(gw.port, "/v1/stream/r", rcvbuf=4096)
        await wait_for(lambda: len(gw.state.sessions) == 1, 2)
        session = next(iter(gw.state.sessions))
        await wait_for(lambda: session.sink.writing, 5)  # blocked on the client
    try:  # the server stopped; the client has still read nothing
        await wait_for(lambda: not still_open(), 2)
    finally:
        writer.transport.abort()
