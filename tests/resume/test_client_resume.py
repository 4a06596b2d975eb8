"""gateway.client with ``resume=True`` against the resume endpoints, on a loopback app whose
POST records into a MemoryStore and then drops the connection mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import gateway.client
from gateway.client import GatewayHTTPError, StreamTruncated, collect, stream_tokens
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

    def __init__(self, expire_first: bool = False, answer_first: int = 0) -> None:
        self.store = MemoryStore(Budget(1 << 20, 10))
        self.expire_first = expire_first
        self.answer_first = answer_first  # a status the first GET gets instead (0: none)
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
        if self.answer_first:
            status, self.answer_first = self.answer_first, 0
            if status == 204:
                return web.Response(status=204)
            code = {404: "not_found", 503: "unavailable"}.get(status, "error")
            error = {"error": {"code": code, "message": "refused"}}
            return web.json_response(error, status=status)
        if self.expire_first:
            await asyncio.sleep(0.3)
        return await resume_stream(request, self.store, request.match_info["id"], None)


@pytest.fixture
async def flaky(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Flaky, str]]:
    param = getattr(request, "param", False)
    f = Flaky(**param) if isinstance(param, dict) else Flaky(expire_first=param)
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


async def test_without_resume_a_cut_is_stream_truncated(flaky: tuple[Flaky, str]) -> None:
    # The documented exception, not the session's own: an app catches one type for a dead stream.
    _, url = flaky
    seen: list[str] = []
    async with aiohttp.ClientSession() as session:
        with pytest.raises(StreamTruncated) as info:
            async for event in stream_tokens(session, url, BODY):
                seen.append(event.type)
    assert seen == ["created", "delta"]
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


async def test_resume_keeps_the_query_string(flaky: tuple[Flaky, str]) -> None:
    _, url = flaky
    async with aiohttp.ClientSession() as session:
        events = await collect(session, f"{url}?format=tokens", BODY, resume=True)
    assert [e.id for e in events] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("flaky", [{"answer_first": 503}], indirect=True)
async def test_a_transient_status_on_a_resume_is_tried_again(flaky: tuple[Flaky, str]) -> None:
    # A proxy answers 502/503 while the gateway restarts: exactly when a resume is needed.
    _, url = flaky
    async with aiohttp.ClientSession() as session:
        events = await collect(session, url, BODY, resume=True, resume_delay=0.01)
    assert [(e.id, e.type) for e in events][-1] == ("4", "end")
    assert "".join(e.data["text"] for e in events if e.type == "delta") == "Hello"


@pytest.mark.parametrize("flaky", [{"answer_first": 204}], indirect=True)
async def test_a_resume_answered_204_is_truncated_not_success(flaky: tuple[Flaky, str]) -> None:
    # 204: the gateway says the stream had ended; this client never saw its terminal event.
    _, url = flaky
    seen: list[str] = []
    async with aiohttp.ClientSession() as session:
        with pytest.raises(StreamTruncated):
            async for event in stream_tokens(session, url, BODY, resume=True, resume_delay=0.01):
                seen.append(event.type)
    assert seen == ["created", "delta"]


FRAMES = [
    sse(1, "created", {"id": "c1", "route": "r", "provider": "p", "model": None}),
    *(sse(i, "delta", {"text": str(i)}) for i in range(2, 10)),
    sse(10, "end", {"reason": "stop"}),
]


async def choppy(request: web.Request) -> web.StreamResponse:
    """Every connection (the POST, then each resume) replays the event at ``Last-Event-ID``
    again, sends the next two, and is cut; the last one ends the stream."""
    await request.read()
    last = int(request.headers.get("Last-Event-ID", "0"))
    resp = web.StreamResponse(headers=HEADERS)
    await resp.prepare(request)
    await resp.write(b"".join(FRAMES[max(last - 1, 0) : last + 2]))
    if last + 2 < len(FRAMES):
        assert request.transport is not None
        request.transport.abort()
    else:
        await resp.write_eof()
    return resp


def choppy_app() -> web.Application:
    """:func:`choppy` at ``POST /s`` and its resumes at ``GET /s/<id>``."""
    app = web.Application()
    app.router.add_post("/s", choppy)
    app.router.add_get("/s/{id}", choppy)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestServer]:
    """``app`` on a local port for the block."""
    server = TestServer(app)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_every_resume_that_made_progress_starts_the_backoff_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A long stream over a bad network breaks many times: each break is a new stall, with the
    # first delay again, not one doubled by every earlier break (it would outgrow the window).
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)
        await asyncio.sleep(0)

    monkeypatch.setattr(gateway.client, "asyncio", SimpleNamespace(sleep=sleep))
    async with serving(choppy_app()) as server, aiohttp.ClientSession() as session:
        events = await collect(session, str(server.make_url("/s")), BODY, resume=True)
    assert [e.id for e in events] == [str(i) for i in range(1, 11)]  # each once, none lost
    assert waits == [0.5] * 4


@pytest.mark.parametrize("flaky", [True], indirect=True)
async def test_an_expired_stream_raises_404(flaky: tuple[Flaky, str]) -> None:
    _, url = flaky
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayHTTPError) as info:
            await collect(session, url, BODY, resume=True)
    assert info.value.status == 404
