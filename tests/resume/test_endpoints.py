"""The GET/DELETE endpoint functions, mounted on a small aiohttp app on loopback, then a
follower's write deadline through the running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from gateway.ids import new_request_id
from gateway.metrics import ResumeMetrics
from gateway.resume import Budget, MemoryStore, Replay, ResumeStore
from gateway.resume.endpoints import resume_stream, stop_stream
from tests.faults.kit import chat_chunk, chat_route, chat_stream
from tests.resume.conftest import StoreFactory
from tests.resume.test_store import HEADERS, frame, opened, recorded
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway
from tests.support.rawclient import HELLO

PATH = "/v1/stream/demo"
Client = Callable[..., Any]


def mount(store: ResumeStore, metrics: ResumeMetrics | None = None) -> web.Application:
    """As the server would: the app name comes from auth (here a test header)."""

    async def get(request: web.Request) -> web.StreamResponse:
        app = request.headers.get("X-Test-App")
        return await resume_stream(
            request, store, request.match_info["id"], app, heartbeat=0.05, metrics=metrics
        )

    async def delete(request: web.Request) -> web.StreamResponse:
        app = request.headers.get("X-Test-App")
        return await stop_stream(store, request.match_info["id"], app, metrics=metrics)

    application = web.Application()
    application.router.add_get(PATH + "/{id}", get)
    application.router.add_delete(PATH + "/{id}", delete)
    return application


@pytest.fixture
async def served(
    store: ResumeStore,
) -> AsyncIterator[tuple[ResumeStore, str, aiohttp.ClientSession]]:
    server = TestServer(mount(store))
    await server.start_server()
    async with aiohttp.ClientSession(headers={"X-Test-App": "app"}) as session:
        yield store, str(server.make_url(PATH)), session
    await server.close()


Served = tuple[ResumeStore, str, aiohttp.ClientSession]


async def test_resume_replays_with_original_headers(served: Served) -> None:
    store, base, session = served
    rec = await recorded(store, 4)
    async with session.get(f"{base}/{rec.stream_id}", headers={"Last-Event-ID": "2"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == HEADERS["Content-Type"]
        assert resp.headers["X-Request-Id"] == "abc"
        assert await resp.read() == frame(3) + frame(4, "end")


async def test_query_parameter_and_header_precedence(served: Served) -> None:
    store, base, session = served
    rec = await recorded(store, 4)
    async with session.get(f"{base}/{rec.stream_id}?last_event_id=1") as resp:
        assert await resp.read() == frame(2) + frame(3) + frame(4, "end")
    url = f"{base}/{rec.stream_id}?last_event_id=1"
    async with session.get(url, headers={"Last-Event-ID": "3"}) as resp:
        assert await resp.read() == frame(4, "end")
    async with session.get(f"{base}/{rec.stream_id}") as resp:
        assert await resp.read() == b"".join([frame(1), frame(2), frame(3), frame(4, "end")])


async def test_follows_live_with_pings(served: Served) -> None:
    store, base, session = served
    rec = await opened(store)
    rec.append(1, frame(1))
    async with session.get(f"{base}/{rec.stream_id}") as resp:
        assert resp.status == 200
        assert await resp.content.readuntil(b"\n\n") == frame(1)
        async with asyncio.timeout(3):
            assert await resp.content.readuntil(b"\n\n") == b": ping\n\n"
        rec.append(2, frame(2, "end"))
        await rec.finish()
        rest = await resp.read()
    assert rest.replace(b": ping\n\n", b"") == frame(2, "end")


async def test_resume_after_the_terminal_event_is_204(served: Served) -> None:
    """EventSource reconnects after every end; a 204 stops it for good."""
    store, base, session = served
    rec = await recorded(store, 3)
    async with session.get(f"{base}/{rec.stream_id}", headers={"Last-Event-ID": "3"}) as resp:
        assert resp.status == 204
        assert resp.headers["X-Request-Id"] == "abc"


@pytest.mark.parametrize(
    ("last", "app", "status", "code"),
    [
        ("x1", "app", 400, "invalid_request"),
        ("-1", "app", 400, "invalid_request"),
        ("9", "app", 400, "invalid_request"),
        ("0", "other", 403, "forbidden"),
        ("0", None, 403, "forbidden"),
    ],
)
async def test_errors_are_json(
    served: Served, last: str, app: str | None, status: int, code: str
) -> None:
    store, base, session = served
    rec = await recorded(store, 3)
    headers = {"Last-Event-ID": last, "X-Test-App": app or ""}
    if app is None:
        async with aiohttp.ClientSession() as anonymous:
            resp = await anonymous.get(f"{base}/{rec.stream_id}", headers={"Last-Event-ID": last})
    else:
        resp = await session.get(f"{base}/{rec.stream_id}", headers=headers)
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == code
    resp.release()


async def test_unknown_is_404_and_dropped_is_410(served: Served) -> None:
    store, base, session = served
    async with session.get(f"{base}/{new_request_id()}") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    rec = await recorded(store, 300, max_events=5)
    async with session.get(f"{base}/{rec.stream_id}", headers={"Last-Event-ID": "10"}) as resp:
        assert resp.status == 410
        assert (await resp.json())["error"]["code"] == "gone"


async def test_delete_stops_the_owner(served: Served) -> None:
    store, base, session = served
    stopped = asyncio.Event()
    rec = await opened(store, on_stop=stopped.set)
    async with session.delete(f"{base}/{rec.stream_id}") as resp:
        assert resp.status == 204
    async with asyncio.timeout(0.1):
        await stopped.wait()
    async with session.delete(f"{base}/{new_request_id()}") as resp:
        assert resp.status == 404
    async with session.delete(f"{base}/{rec.stream_id}", headers={"X-Test-App": "b"}) as resp:
        assert resp.status == 403


class BrokenStore(MemoryStore):
    """A store whose backend is down (as a Redis outage raises ConnectionError)."""

    async def replay(self, *args: Any, **kwargs: Any) -> Replay:
        raise ConnectionError("down")

    async def stop(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("down")


async def test_store_failure_is_503_and_counted() -> None:
    metrics = ResumeMetrics(CollectorRegistry())
    server = TestServer(mount(BrokenStore(Budget(1000, 1)), metrics))
    await server.start_server()
    url = str(server.make_url(f"{PATH}/{new_request_id()}"))
    async with aiohttp.ClientSession() as session:
        for method in ("GET", "DELETE"):
            async with session.request(method, url) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"]["code"] == "unavailable"
    await server.close()
    assert metrics.resumes.labels("unavailable")._value.get() == 2


async def test_outcomes_are_counted(make_store: StoreFactory) -> None:
    registry = CollectorRegistry()
    metrics = ResumeMetrics(registry)
    budget = Budget(1 << 20, 10)
    metrics.watch(budget)
    store = make_store(budget)
    server = TestServer(mount(store, metrics))
    await server.start_server()
    rec = await recorded(store, 2)
    base = str(server.make_url(PATH))
    async with aiohttp.ClientSession(headers={"X-Test-App": "app"}) as session:
        for last in ("0", "2", "7"):
            async with session.get(f"{base}/{rec.stream_id}", headers={"Last-Event-ID": last}):
                pass
    await server.close()

    def value(name: str, labels: dict[str, str] | None = None) -> float | None:
        return registry.get_sample_value(name, labels)

    for outcome, n in (("resumed", 1), ("ended", 1), ("invalid_request", 1), ("gone", 0)):
        assert value("gateway_resumes_total", {"outcome": outcome}) == n
    metrics.refresh()
    assert value("gateway_resume_buffered_bytes") == budget.bytes


def test_buffer_gauges_are_read_from_the_budget() -> None:
    registry = CollectorRegistry()
    metrics = ResumeMetrics(registry)
    budget = Budget(1 << 20, 10)
    metrics.watch(budget)
    budget.add(1234)
    assert budget.detach()

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    # the hot path only does arithmetic: nothing reaches the gauges until a refresh
    assert (value("gateway_resume_buffered_bytes"), value("gateway_resume_detached_streams")) == (
        0,
        0,
    )
    metrics.refresh()
    assert (value("gateway_resume_buffered_bytes"), value("gateway_resume_detached_streams")) == (
        1234,
        1,
    )
    budget.add(-1234)
    budget.undetach()
    metrics.refresh()
    assert (value("gateway_resume_buffered_bytes"), value("gateway_resume_detached_streams")) == (
        0,
        0,
    )


# -- through the running gateway ---------------------------------------------------------------

BIG = chat_chunk("x" * 16000)
"""One 16 kB delta: 500 of them make a finished record larger than the kernel's socket buffers
(loopback's send buffer grows to 4 MB), so a follower that never reads blocks a write."""


async def test_a_follower_that_stops_reading_is_cut_as_a_slow_client() -> None:
    """``GET <route path>/<id>`` keeps the stream's own slow-client guard: no progress for
    ``server.write_timeout`` drops the connection, counted in
    ``gateway_slow_client_disconnects_total`` (the follower would otherwise hold its socket and
    the replay for as long as it likes)."""
    upstream = await FakeUpstream().start()
    upstream.default = Script(chunks=[(0, BIG)] * 500 + [(0, chat_stream())])
    doc = {
        "server": {"write_timeout": "300ms"},
        "routes": [chat_route("r", upstream.url, resume={"enabled": True, "window": "1m"})],
    }
    try:
        async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:
            async with s.post(f"{gw.url}/v1/stream/r", json=HELLO) as r:
                stream_id = r.headers["X-Request-Id"]
                whole = await r.read()
            assert b"event: end" in whole
            reader, writer = await open_get(gw.port, f"/v1/stream/r/{stream_id}", rcvbuf=4096)
            labels = {"route": "r"}
            try:
                cut = 0.0
                for _ in range(100):  # 5 s: the cut is due within 1.5 write_timeout
                    cut = await metric_value(
                        gw.url, "gateway_slow_client_disconnects_total", labels
                    )
                    if cut:
                        break
                    await asyncio.sleep(0.05)
                assert cut == 1, "the follower was never cut"
                got = b""
                with contextlib.suppress(ConnectionResetError):
                    async with asyncio.timeout(5):
                        while chunk := await reader.read(1 << 20):
                            got += chunk
            finally:
                writer.transport.abort()
            assert got.startswith(b"HTTP/1.1 200")
            assert b"event: end" not in got and not got.endswith(b"0\r\n\r\n")  # cut short
    finally:
        await upstream.stop()


async def open_get(
    port: int, path: str, *, rcvbuf: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw ``GET`` on a socket with a ``rcvbuf``-byte receive buffer, not read from."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer
