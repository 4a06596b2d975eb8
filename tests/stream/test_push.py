"""gateway/stream/push.py: a steady stream's reads go to the client from ``data_received``.

Through the running gateway on the fast upstream client, with a fake upstream that sends each
token in its own write: the client gets every token in order and exactly one terminal event,
while the session's pull loop reads only at the edges (before the first write, and the terminal
event's hand-back); and every reason to hand back (the output bound, a bug, an interruption, a
heartbeat under way) still ends the stream as the pull loop would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from gateway import events as ev
from gateway.errors import InternalError, LimitExceeded
from gateway.events import Event
from gateway.stream import push as push_module
from gateway.stream.push import Push
from gateway.stream.sinks import StreamingSink
from gateway.stream.source import Source
from tests.faults.kit import DONE, SSE, chat_chunk, chat_route
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway

TOKENS = [f"t{i} " for i in range(40)]


def paced(gap: float = 0.005, tokens: list[str] = TOKENS) -> Script:
    chunks = [(gap, chat_chunk(t)) for t in tokens]
    return Script(chunks=[*chunks, (gap, chat_chunk("", "stop")), (0.0, DONE)], headers=SSE)


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(x.split(": ", 1) for x in block.split("\n") if x and not x.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


@pytest.fixture
def pulls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many reads the pull loop made (``Source.next_batch`` calls)."""
    calls: list[int] = []
    original = Source.next_batch

    async def counted(self: Source) -> Any:
        calls.append(1)
        return await original(self)

    monkeypatch.setattr(Source, "next_batch", counted)
    return calls


async def post(url: str, route: str = "/v1/stream/r") -> bytes:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s, s.post(url + route, json=body) as r:
        assert r.status == 200
        return await r.read()


async def test_steady_reads_are_pushed_and_arrive_whole(
    upstream: FakeUpstream, pulls: list[int]
) -> None:
    upstream.push(paced())
    doc = {"routes": [chat_route("r", upstream.url)], "server": {"upstream_client": "raw"}}
    async with running_gateway(doc) as gw:
        got = frames(await post(gw.url))
    kinds = [k for k, _ in got]
    assert "".join(d["text"] for k, d in got if k == "delta") == "".join(TOKENS)
    assert kinds[-1] == "end" and sum(k in ("end", "error") for k in kinds) == 1
    # 42 upstream writes (40 tokens, the finish, [DONE]); without the push path each is a pull
    assert len(pulls) <= 4, f"{len(pulls)} pulls for {len(TOKENS) + 2} reads"


async def test_the_aiohttp_client_always_pulls(upstream: FakeUpstream, pulls: list[int]) -> None:
    upstream.push(paced(tokens=TOKENS[:10]))
    doc = {"routes": [chat_route("r", upstream.url)], "server": {"upstream_client": "aiohttp"}}
    async with running_gateway(doc) as gw:
        got = frames(await post(gw.url))
    assert "".join(d["text"] for k, d in got if k == "delta") == "".join(TOKENS[:10])
    assert len(pulls) >= 10


async def test_the_output_bound_ends_a_pushed_stream(upstream: FakeUpstream) -> None:
    upstream.push(paced())
    route = chat_route("r", upstream.url, max_output_bytes=600)
    doc = {"routes": [route], "server": {"upstream_client": "raw"}}
    async with running_gateway(doc) as gw:
        raw = await post(gw.url)
    got = frames(raw)
    assert got[-1][0] == "error" and got[-1][1]["code"] == "limit_exceeded"
    assert sum(k in ("end", "error") for k, _ in got) == 1
    assert len(raw) < 600 + 400  # the bound plus one event, and the terminal error


async def test_a_bug_in_the_push_path_ends_the_stream_with_internal(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.push(paced())
    calls = 0
    original = push_module.Push.consume
    frame = StreamingSink.frame

    def broken(self: StreamingSink, events: list[Event]) -> tuple[bytes, int]:
        monkeypatch.setattr(StreamingSink, "frame", frame)  # once: the error frame must go out
        raise AttributeError("a bug")

    def failing(self: push_module.Push, chunk: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:  # mid-stream, from data_received
            monkeypatch.setattr(StreamingSink, "frame", broken)
        original(self, chunk)

    monkeypatch.setattr(push_module.Push, "consume", failing)
    doc = {"routes": [chat_route("r", upstream.url)], "server": {"upstream_client": "raw"}}
    async with running_gateway(doc) as gw:
        raw = await post(gw.url)
    got = frames(raw)
    assert got[-1][0] == "error" and got[-1][1]["code"] == "internal"
    assert "Traceback" not in raw.decode() and "a bug" not in raw.decode()
    assert calls >= 5
    assert sum(k in ("end", "error") for k, _ in got) == 1


async def test_a_deadline_interrupts_a_pushed_stream(upstream: FakeUpstream) -> None:
    upstream.push(paced(gap=0.02, tokens=TOKENS * 5))  # about 4 s of tokens
    route = chat_route("r", upstream.url, max_stream_duration="400ms")
    doc = {"routes": [route], "server": {"upstream_client": "raw"}}
    async with running_gateway(doc) as gw:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got = frames(await post(gw.url))
        took = loop.time() - t0
    assert got[-1][0] == "error" and got[-1][1]["code"] == "limit_exceeded"
    assert any(k == "delta" for k, _ in got)
    assert took < 2.0
    await asyncio.sleep(0.1)
    assert upstream.seen[0].closed_at is not None  # the upstream was cancelled


# -- Push.consume on its own: what goes out now, and what is handed back ----------------------


class FakeUpstream_:
    def __init__(self) -> None:
        self.consumer: object = "unset"
        self.woken = 0

    def push_to(self, consumer: Any) -> bool:
        self.consumer = consumer
        return True

    async def wait(self) -> None:  # pragma: no cover - not awaited here
        pass

    def wake(self) -> None:
        self.woken += 1


class FakePipeline:
    def __init__(self, events: list[Event]) -> None:
        self.events = events

    def feed(self, chunk: bytes) -> list[Event]:
        return self.events


class FakeSource:
    def __init__(self, events: list[Event], interrupted: bool = False) -> None:
        self.pipeline = FakePipeline(events)
        self.held: list[Event] = []
        self.last_read = 0.0
        self.interrupted = interrupted


class FakeSink:
    max_bytes: int | None = None

    def __init__(self, ready: bool = True, limit: int | None = None) -> None:
        self._ready = ready
        self.max_bytes = limit
        self.written: list[bytes] = []

    def ready(self) -> bool:
        return self._ready

    def frame(self, events: list[Event]) -> tuple[bytes, int]:
        parts = [e.type.encode() + b";" for e in events]
        if self.max_bytes is not None:
            parts = parts[: self.max_bytes]
        return b"".join(parts), len(parts)

    def write_now(self, data: bytes) -> None:
        self.written.append(data)

    @property
    def over_limit(self) -> bool:
        return False


class FakeRecord:
    def __init__(self) -> None:
        self.wrote_events: list[Event] = []
        self.overheads = 0

    def wrote(self, events: list[Event], t_read: float) -> None:
        self.wrote_events += events

    def overhead(self, seconds: float) -> None:
        self.overheads += 1


def make(
    events: list[Event], *, ready: bool = True, interrupted: bool = False, limit: int | None = None
) -> tuple[Push, FakeSource, FakeSink, FakeRecord, FakeUpstream_]:
    source, sink, record, up = (
        FakeSource(events, interrupted),
        FakeSink(ready, limit),
        FakeRecord(),
        FakeUpstream_(),
    )
    return Push(source, sink, record, up), source, sink, record, up  # type: ignore[arg-type]


DELTAS = [ev.delta("a"), ev.delta("b")]


def test_a_ready_client_gets_the_read_now() -> None:
    push, source, sink, record, up = make(DELTAS)
    push.consume(b"...")
    assert sink.written == [b"delta;delta;"]
    assert record.wrote_events == DELTAS and record.overheads == 1
    assert source.held == [] and up.woken == 0 and up.consumer == "unset"
    assert push.failure is None


@pytest.mark.parametrize(
    "why",
    ["terminal event", "client not ready", "interrupted"],
)
def test_reads_that_need_the_pull_loop_are_handed_back_whole(why: str) -> None:
    events = [*DELTAS, ev.end("stop")] if why == "terminal event" else DELTAS
    push, source, sink, record, up = make(
        events, ready=why != "client not ready", interrupted=why == "interrupted"
    )
    push.consume(b"...")
    assert sink.written == [] and record.wrote_events == []
    assert source.held == events  # undelivered: the pull loop delivers them first
    assert up.consumer is None and up.woken == 1  # unhooked, and the session woken
    assert push.failure is None


def test_a_read_with_no_event_does_nothing() -> None:
    push, source, sink, _record, up = make([])
    push.consume(b"data: {")
    assert (sink.written, source.held, up.woken, up.consumer) == ([], [], 0, "unset")


def test_the_output_bound_writes_up_to_it_then_hands_back_with_the_failure() -> None:
    push, source, sink, record, up = make([*DELTAS, ev.delta("c")], limit=2)
    push.consume(b"...")
    assert sink.written == [b"delta;delta;"] and record.wrote_events == DELTAS
    assert isinstance(push.failure, LimitExceeded)
    assert source.held == [] and up.consumer is None and up.woken == 1


def test_a_bug_is_caught_and_handed_back_as_internal() -> None:
    push, _source, sink, _record, up = make(DELTAS)
    sink.frame = None  # type: ignore[assignment,method-assign]
    push.consume(b"...")  # must not raise into data_received
    assert isinstance(push.failure, InternalError)
    assert up.consumer is None and up.woken == 1
