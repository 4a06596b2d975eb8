"""gateway/stream/session.py: a short answer whose body came with the upstream's head.

The session reads what the upstream already sent before its first write, so a 1-token answer
(its head and whole body in one upstream read) goes to the client in one write: the response
head, ``created``, the events and the chunked terminator. Bad bytes in that read still fail the
stream after its head, as they would have a read later: a ``200`` with one ``error`` event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.httpserver import Connection
from gateway.stream.session import StreamSession
from tests.faults.kit import (
    DONE,
    chat_chunk,
    chat_error,
    chat_route,
    chat_usage,
    post,
    read_request,
)
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway, wait_for
from tests.support.heap import live, new_objects_only
from tests.support.rawclient import open_raw, read_until

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


async def _one_write_upstream(body: bytes) -> AsyncIterator[str]:
    """A Chat Completions upstream that answers with its head and ``body`` in one write."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def client_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write of the fast server to a client connection."""
    writes: list[bytes] = []
    original = Connection.write

    def counted(self: Connection, data: bytes) -> None:
        writes.append(data)
        original(self, data)

    monkeypatch.setattr(Connection, "write", counted)
    return writes


async def _stream(body: bytes) -> tuple[int, str]:
    async for url in _one_write_upstream(body):
        doc: dict[str, Any] = {
            "server": {"http_server": "raw", "upstream_client": "raw"},
            "routes": [chat_route("r", url)],
        }
        async with (
            running_gateway(doc) as gw,
            aiohttp.ClientSession() as session,
            session.post(f"{gw.url}/v1/stream/r", json=HELLO) as resp,
        ):
            return resp.status, await resp.text()
    raise AssertionError("the upstream did not start")


def _events(text: str) -> list[str]:
    return [line[7:] for line in text.splitlines() if line.startswith("event: ")]


async def test_a_short_answer_goes_out_in_one_write(client_writes: list[bytes]) -> None:
    body = chat_chunk("Hi") + chat_chunk("", "stop") + chat_usage(3, 1) + DONE
    status, text = await _stream(body)
    assert status == 200
    events = _events(text)
    assert events[0] == "created" and "delta" in events and "usage" in events
    assert events[-1] == "end"
    (write,) = client_writes  # head, every event and the chunked terminator together
    assert write.startswith(b"HTTP/1.1 200 ")
    assert b"event: created" in write and b"event: end" in write
    assert write.endswith(b"0\r\n\r\n")


async def test_bad_bytes_with_the_head_still_fail_after_it(client_writes: list[bytes]) -> None:
    status, text = await _stream(chat_chunk("Hi") + b"data: {not json\n\n")
    assert status == 200  # the stream started, as it does when the bad read comes later
    events = _events(text)
    assert events[0] == "created" and events[-1] == "error" and events.count("error") == 1
    error = json.loads(text.rsplit("data: ", 1)[1].split("\n", 1)[0])
    assert error["code"] == "upstream_protocol"


# -- a finished stream is freed by reference counting -------------------------------------------
#
# A stream's session and its parts (failover, deadlines, source, sink, record: some forty objects)
# point at each other while it runs. Left in a cycle when it ends, every stream would wait for the
# cyclic collector, whose walks cost a 1-token request about a tenth of its CPU
# (docs/performance.md, "no reference cycle left by a stream"). With the collector off, no
# session may outlive its stream.


def _live_sessions() -> int:
    return live(StreamSession)


def _script(ending: str) -> Script:
    text = chat_chunk("Hi")
    return {
        "whole": Script(chunks=[(0, text + chat_chunk("", "stop") + chat_usage(3, 1) + DONE)]),
        "status 500": Script(status=500),
        "error event": Script(chunks=[(0, text + chat_error())]),
        "cut off": Script(chunks=[(0, text)], reset_after=True),
        "silent": Script(chunks=[(0, text)], hang_after=True),
        "no answer": Script(delay_before_headers=5, chunks=[(0, text)]),
    }[ending]


RESUMABLE = {"resume": {"enabled": True, "window": "2s", "store": "memory"}}
QUICK = {"timeouts": {"first_event": "200ms", "idle": "200ms"}}  # a deadline interrupts
CHAT_DOOR = {"model": "r", "messages": HELLO["messages"], "stream": True}


@pytest.mark.parametrize(
    ("ending", "route", "path", "body"),
    [
        ("whole", {}, "/v1/stream/r", HELLO),
        ("status 500", {}, "/v1/stream/r", HELLO),
        ("error event", {}, "/v1/stream/r", HELLO),
        ("cut off", {}, "/v1/stream/r", HELLO),
        ("silent", QUICK, "/v1/stream/r", HELLO),  # the idle timeout, after the head
        ("no answer", QUICK, "/v1/stream/r", HELLO),  # the first-event timeout, before it
        ("whole", RESUMABLE, "/v1/stream/r", HELLO),  # the recording sink holds the session
        ("whole", {}, "/v1/chat/completions", CHAT_DOOR),
    ],
    ids=[
        "whole",
        "status-500",
        "error-event",
        "cut-off",
        "idle-timeout",
        "first-event-timeout",
        "resumable",
        "front-door",
    ],
)
async def test_an_ended_stream_leaves_no_cycle(
    ending: str, route: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    fake = await FakeUpstream().start()
    fake.default = _script(ending)
    try:
        async with running_gateway({"routes": [chat_route("r", fake.url, **route)]}) as gw:
            with new_objects_only():
                for _ in range(3):
                    reply = await post(f"{gw.url}{path}", body)
                    status = {"status 500": 502, "no answer": 504}.get(ending, 200)
                    assert reply.status == status
                await wait_for(lambda: not gw.state.sessions)
                assert _live_sessions() == 0
    finally:
        await fake.stop()


LEFT = {
    "cancel": {},
    "drain": {"on_client_abort": "drain", "drain_timeout": "200ms"},
    "detach": {"on_client_abort": "detach", **RESUMABLE},
}


@pytest.mark.parametrize("on_abort", list(LEFT))
async def test_a_stream_its_client_left_leaves_no_cycle(on_abort: str) -> None:
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, chat_chunk("Hi") + chat_chunk("", "stop"))], hang_after=True)
    route = chat_route("r", fake.url, timeouts={"idle": "300ms"}, **LEFT[on_abort])
    try:
        async with running_gateway({"routes": [route]}) as gw:
            with new_objects_only():
                reader, writer = await open_raw(gw.port, "/v1/stream/r")
                await read_until(reader, b"Hi")
                assert _live_sessions() == 1
                writer.transport.abort()
                await wait_for(lambda: not gw.state.sessions)
                await wait_for(lambda: fake.open_connections == 0)
                assert _live_sessions() == 0
    finally:
        await fake.stop()
