"""Bounds not covered by the fault matrix: overall concurrent streams, output bytes overshoot.

(Body and header size: tests/badinput; stream duration, output bytes, upstream event size: the
fault matrix; write buffer and write deadline: tests/server/test_slow_client.py.)
"""

from __future__ import annotations

import asyncio

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


async def test_max_output_bytes_overshoots_by_at_most_one_write() -> None:
    fake = await FakeUpstream().start()
    chunk = chat_chunk("y" * 100)
    fake.default = Script(chunks=[(0, chunk)], headers=SSE, endless=(0.001, chunk))
    doc = {"routes": [chat_route("r", fake.url, max_output_bytes=5000)]}
    try:
        async with running_gateway(doc) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
            assert reply.last[0] == "error" and reply.last[1]["code"] == "limit_exceeded"
            # The limit is checked after each write: one write of events plus the error.
            assert len(reply.raw) < 5000 + 4 * len(chunk) + 300
            await wait_for(lambda: fake.seen[0].closed_at is not None, 2)
    finally:
        await fake.stop()
