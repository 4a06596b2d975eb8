"""Bounds not covered by the fault matrix: overall concurrent streams, output bytes overshoot.

(Body and header size: tests/badinput; stream duration, output bytes, upstream event size: the
fault matrix; write buffer and write deadline: tests/server/test_slow_client.py.)
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.kit import SSE, chat_chunk, chat_route, post
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.rawclient import open_raw, read_until


async def test_max_concurrent_streams_answers_503_unavailable() -> None:
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, chat_chunk("hi"))], headers=SSE, hang_after=True)
    doc = {"limits": {"max_concurrent_streams": 2}, "routes": [chat_route("r", fake.url)]}
    try:
        async with running_gateway(doc) as gw:
            clients = [await open_raw(gw.port, "/v1/stream/r") for _ in range(2)]
            for reader, _ in clients:
                await read_until(reader, b"hi")
            reply = await post(f"{gw.url}/v1/stream/r")
            assert reply.status == 503
            assert reply.json()["error"]["code"] == "unavailable"
            assert reply.headers.get("Retry-After") == "1"
            assert len(fake.seen) == 2  # the refused one never reached the upstream
            labels = {"route": "r", "code": "unavailable"}
            assert await metric_value(gw.url, "gateway_rejections_total", labels) == 1
            clients[0][1].transport.abort()
            await wait_for(lambda: len(gw.state.sessions) == 1, 2)
            fake.default = Script(chunks=[(0, b"data: [DONE]\n\n")], headers=SSE)
            again = await post(f"{gw.url}/v1/stream/r")
            assert again.status == 200  # a slot freed up
            clients[1][1].transport.abort()
            await asyncio.sleep(0)
    finally:
        await fake.stop()


LIMIT = 4096
TEXT = "y" * 100


@pytest.mark.parametrize(
    "per_read",
    [1, 40, 400],
    ids=["one-event-per-read", "40-events-per-read", "400-events-per-read"],
)
async def test_max_output_bytes_holds_per_event_whatever_the_read_sizes(per_read: int) -> None:
    """The bound is at most the limit plus one event of text, however the network split the
    upstream bytes (it used to be checked per write: 13 KiB got through a 4 KiB limit)."""
    fake = await FakeUpstream().start()
    burst = chat_chunk(TEXT) * per_read
    fake.default = Script(chunks=[(0, burst)], headers=SSE, endless=(0.001, burst))
    doc = {"routes": [chat_route("r", fake.url, max_output_bytes=LIMIT)]}
    try:
        async with running_gateway(doc) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
            await wait_for(lambda: fake.seen[0].closed_at is not None, 2)
    finally:
        await fake.stop()
    assert reply.last[0] == "error" and reply.last[1]["code"] == "limit_exceeded"
    assert reply.types.count("error") == 1 and reply.types.count("end") == 0
    one_delta_frame = len(b'id: 999\nevent: delta\ndata: {"text":""}\n\n') + len(TEXT)
    before_error = reply.raw[: reply.raw.rindex(b"event: error")]
    assert len(before_error) <= LIMIT + one_delta_frame
    assert len(before_error) > LIMIT  # it streamed up to the bound, then one event more
