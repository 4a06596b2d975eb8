"""Deadlines the fault matrix does not reach: when ``first_event`` starts counting, and the
stream's timer after a write that blocked on the client.

Production runner, real sockets, over both upstream clients.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.stream.session import StreamSession
from tests.faults.kit import (
    NDJSON,
    OLLAMA_OK,
    OLLAMA_TEXT,
    SSE,
    HandUpstream,
    chat_chunk,
    chat_route,
    chat_stream,
    dechunked,
    parse_frames,
    post,
)
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.rawclient import open_raw, read_until

pytestmark = pytest.mark.usefixtures("upstream_client")
"""Every test here runs over both upstream clients (``server.upstream_client``); the races
also over both servers (``server.http_server``)."""

SLOW_HEAD_THEN_SLOW_EVENT = Script(
    delay_before_headers=0.5, chunks=[(0.5, chat_stream("late"))], headers=SSE
)
"""Headers after 0.5 s, the first event 0.5 s later: 1 s after the request was sent."""


async def test_first_event_counts_from_the_request_not_from_the_headers(
    upstream: FakeUpstream,
) -> None:
    """``first_event`` is "request sent -> first upstream event" (contract section 2): headers
    within it do not restart it (a 0.7 s limit let a first event come 1 s after the request)."""
    upstream.push(SLOW_HEAD_THEN_SLOW_EVENT)
    route = chat_route("r", upstream.url, timeouts={"first_event": "700ms"})
    async with running_gateway({"routes": [route]}) as gw:
        t0 = time.monotonic()
        reply = await post(f"{gw.url}/v1/stream/r")
        elapsed = time.monotonic() - t0
    assert reply.status == 200  # the headers went out when the upstream answered 2xx
    assert reply.types[0] == "created" and "delta" not in reply.types
    assert reply.last[0] == "error" and reply.last[1]["code"] == "upstream_timeout"
    assert reply.last[1]["retryable"] is True
    assert 0.6 < elapsed < 0.95


async def test_first_event_counted_from_the_request_fails_over(upstream: FakeUpstream) -> None:
    """The same on a target with a fallback: the fallback serves, and nothing of the slow
    primary reaches the client."""
    fallback = await FakeUpstream().start()
    fallback.default = Script(chunks=[(0, OLLAMA_OK)], headers=NDJSON)
    upstream.push(SLOW_HEAD_THEN_SLOW_EVENT)
    route = chat_route("r", upstream.url, timeouts={"first_event": "700ms"})
    route["fallbacks"] = [
        {"provider": "ollama", "upstream": {"base_url": fallback.url, "model": "qwen3:8b"}}
    ]
    try:
        async with running_gateway({"routes": [route]}) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
    finally:
        await fallback.stop()
    assert reply.status == 200
    assert reply.types.count("created") == 1 and reply.frames[0][1]["provider"] == "ollama"
    assert reply.text == OLLAMA_TEXT and reply.last[0] == "end"
    assert len(fallback.seen) == 1


async def test_heartbeats_resume_after_a_write_that_blocked_on_the_client(
    upstream: FakeUpstream,
) -> None:
    """A timer tick that finds a write blocked on the client used to sleep until that write's
    stall deadline (``write_timeout``): a silence right after it got no ``: ping`` at all."""
    flood = chat_chunk("x" * 1000) * 6000  # about 6 MB: far more than the socket buffers hold
    silence = 1.5
    upstream.push(Script(chunks=[(0, flood), (silence, chat_stream("y"))], headers=SSE))
    server = {"heartbeat_interval": "200ms", "write_timeout": "5s", "max_write_buffer_bytes": 16384}
    route = chat_route("r", upstream.url)
    async with running_gateway({"server": server, "routes": [route]}) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r", rcvbuf=4096)
        await asyncio.sleep(0.6)  # not reading: the gateway's writes block meanwhile
        received = bytearray()
        async with asyncio.timeout(10):
            while b"event: end" not in received[-300:]:
                chunk = await reader.read(1 << 20)
                assert chunk, "the stream ended early"
                received += chunk
        writer.close()
    assert received.count(b"event: end") == 1
    after_flood = received[received.rindex(b"x" * 50) :]
    # The silence is 1.5 s and the interval 0.2 s: about 7 pings, none before the fix (the
    # timer slept until the 5 s write_timeout). At least one, so a loaded machine still passes.
    assert after_flood.count(b": ping") >= 1


DEADLINES: dict[str, dict[str, Any]] = {
    "idle": {"timeouts": {"idle": "200ms"}},
    "max_stream_duration": {"max_stream_duration": "300ms"},
    "total": {"timeouts": {"total": "300ms"}},
}
OUTCOME = {None: "completed", "upstream_timeout": "upstream_timeout"}
OUTCOME["limit_exceeded"] = "limit_exceeded"


@pytest.mark.parametrize("first", ["terminator", "deadline"])
@pytest.mark.parametrize("deadline", list(DEADLINES))
async def test_a_terminator_that_comes_as_a_deadline_fires_ends_the_stream_once(
    deadline: str,
    first: str,
    http_server: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The upstream sends its terminator in the very turn the deadline interrupts the stream
    (just before, or just after): whichever wins, the client gets exactly one terminal event,
    last, and the log line, the metrics and the upstream connection agree with it."""
    up = await HandUpstream().start()
    interrupt = StreamSession.interrupt
    armed: list[asyncio.StreamWriter] = []

    def racing(self: StreamSession, exc: GatewayError) -> None:
        if armed and first == "terminator":
            HandUpstream.send(armed.pop(), chat_stream("Z"), last=True)
        interrupt(self, exc)
        if armed:
            HandUpstream.send(armed.pop(), chat_stream("Z"), last=True)

    monkeypatch.setattr(StreamSession, "interrupt", racing)
    caplog.set_level("INFO", logger="gateway")
    route = chat_route("r", up.url, **DEADLINES[deadline])
    try:
        async with running_gateway({"routes": [route]}) as gw:
            reader, writer = await open_raw(gw.port, "/v1/stream/r")
            upstream = await up.answered.get()
            HandUpstream.send(upstream, chat_chunk("A"))
            head = await read_until(reader, b'"A"')
            armed.append(upstream)
            body = head + await read_until(reader, b"\r\n0\r\n\r\n")
            writer.close()
            await asyncio.wait_for(up.closed.wait(), 2)
            await wait_for(lambda: not gw.state.sessions, 2)
            frames, _ = parse_frames(dechunked(body))
            kind, data = frames[-1]
            outcome = OUTCOME[data.get("code")]
            labels = {"route": "r", "outcome": outcome}
            assert await metric_value(gw.url, "gateway_requests_total", labels) == 1
    finally:
        await up.stop()
    assert [k for k, _ in frames].count("end") + [k for k, _ in frames].count("error") == 1
    assert kind in ("end", "error") and not armed
    (line,) = [r for r in caplog.records if r.getMessage() == "stream"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["outcome"], fields["code"]) == (outcome, data.get("code"))
    assert not [r for r in caplog.records if r.exc_info is not None]
