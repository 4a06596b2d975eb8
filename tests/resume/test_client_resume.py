"""gateway.client with ``resume=True`` against the resume endpoints, on a loopback app whose
POST records into a MemoryStore and then drops the connection mid-stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.client import GatewayHTTPError, StreamTruncated, collect
from gateway.ids import new_request_id
from gateway.jsonutil import dumps
from gateway.resume import Budget, MemoryStore, Recorder
from gateway.resume.endpoints import resume_stream

HEADERS = {"Content-Type": "text/event-stream; charset=utf-8"}


def sse(i: int, kind: str, data: dict[str, object]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (i, kind.encode(), dumps(data))


class Flaky:
    """POST sends ``created`` and one delta, then cuts the connection; the stream goes on into
    the store (as a detached stream would) and ends ``cut_after`` seconds later."""

    def __init__(self, expire_first: bool = False) -> None:
        self.store = MemoryStore(Budget(1 << 20, 10))
        self.expire_first = expire_first
        self.tasks: set[asyncio.Task[None]] = set()

    async def post(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        sid = new_request_id()
        rec, _ = await self.store.open(sid, None, HEADERS, 0.05 if self.expire_first else 60, 100)
        assert rec is not None
        resp = web.StreamResponse(headers=HEADERS)
        await resp.prepare(request)
        for f in (
            sse(1, "created", {"id": sid, "route": "r", "provider": "p", "model": None}),
            sse(2, "delta", {"text": "Hel"}),
        ):
            rec.append(int(f.split(b"\n")[0][4:]), f)
            await resp.write(f)
        task = asyncio.get_running_loop().create_task(self._finish(rec))
        self.tasks.add(task)
        assert request.transport is not None
        request.transport.abort()  # the network fails mid-stream
        return resp

    async def _finish(self, rec: Recorder) -> None:
        await asyncio.sleep(0.05)
        rec.append(3, sse(3, "delta", {"text": "lo"}))
        rec.append(4, sse(4, "end", {"reason": "stop"}))
        await rec.finish()

    async def get(self, request: web.Request) -> web.StreamResponse:
        if self.expire_first:
            await asyncio.sleep(0.3)
        return await resume_stream(request, self.store, request.match_info["id"], None)


@pytest.fixture
async def flaky(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Flaky, str]]:
    f = Flaky(expire_first=getattr(request, "param", False))
    app = web.Application()
    app.router.add_post("/s", f.post)
    app.router.add_get("/s/{id}", f.get)
    server = TestServer(app)
    await server.start_server()
    yield f, str(server.make_url("/s"))
    await server.close()


BODY = {"messages": [{"role": "user", "content": "Hi"}]}


async def test_resume_continues_where_it_stopped(flaky: tuple[Flaky, str]) -> None:
    _, url = flaky
    async with aiohttp.ClientSession() as session:
        events = await collect(session, url, BODY, resume=True)
    assert [(e.id, e.type) for e in events] == [
        ("1", "created"),
        ("2", "delta"),
        ("3", "delta"),
        ("4", "end"),
    ]
    assert "".join(e.data["text"] for e in events if e.type == "delta") == "Hello"


async def test_without_resume_a_cut_is_an_error(flaky: tuple[Flaky, str]) -> None:
    _, url = flaky
    async with aiohttp.ClientSession() as session:
        with pytest.raises((StreamTruncated, aiohttp.ClientError)):
            await collect(session, url, BODY)


@pytest.mark.parametrize("flaky", [True], indirect=True)
async def test_an_expired_stream_raises_404(flaky: tuple[Flaky, str]) -> None:
    _, url = flaky
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayHTTPError) as info:
            await collect(session, url, BODY, resume=True)
    assert info.value.status == 404
