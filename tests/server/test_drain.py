"""``on_client_abort: drain``: after the client left, the upstream is read to its end for billing.

The fake upstream shows completion (not an early close), the usage lands in
``gateway_tokens_total`` and ``gateway_tokens_after_abort_total``; the number of draining
streams is capped (``limits.max_draining_streams``) and each drain by ``drain_timeout``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.faults.kit import SSE, chat_chunk, chat_route, chat_stream
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.rawclient import open_raw, read_until


def drain_doc(upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    limits = extra.pop("limits", {})
    route = chat_route("r", upstream.url, on_client_abort="drain", **extra)
    return {"routes": [route], "limits": limits}


def slow_stream(n: int = 10, gap: float = 0.05) -> Script:
    """``n`` tokens ``gap`` apart, then usage (42 in, 17 out) and the terminator."""
    body = [(0.0, chat_chunk("first "))]
    body += [(gap, chat_chunk(f"t{i} ")) for i in range(n)]
    body += [(gap, chat_stream(usage=(42, 17)))]
    return Script(chunks=body, headers=SSE)


async def tokens(url: str, kind: str) -> float:
    return await metric_value(url, "gateway_tokens_total", {"route": "r", "kind": kind})


async def test_drain_reads_the_upstream_to_the_end_and_records_usage(
    upstream: FakeUpstream,
) -> None:
    upstream.push(slow_stream())
    async with running_gateway(drain_doc(upstream, drain_timeout="10s")) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r")
        await read_until(reader, b"first ")
        writer.transport.abort()
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 5)
        assert upstream.seen[0].completed  # read to the end, not cut
        await wait_for(lambda: not gw.state.drain_tasks, 2)
        assert await tokens(gw.url, "output") == 17
        assert await tokens(gw.url, "input") == 42
        after = await metric_value(gw.url, "gateway_tokens_after_abort_total", {"route": "r"})
        # An estimate (drain.py): the share of content read after the abort, most of it here.
        assert 17 / 2 < after < 17
        outcome = {"route": "r", "outcome": "client_abort"}
        assert await metric_value(gw.url, "gateway_requests_total", outcome) == 1
        assert await metric_value(gw.url, "gateway_active_streams", {"route": "r"}) == 0


async def test_cancel_is_the_default(upstream: FakeUpstream) -> None:
    upstream.push(slow_stream())
    async with running_gateway({"routes": [chat_route("r", upstream.url)]}) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r")
        await read_until(reader, b"first ")
        writer.transport.abort()
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 2)
        assert not upstream.seen[0].completed
        assert await tokens(gw.url, "output") == 0


async def test_past_max_draining_streams_aborts_are_cancelled(upstream: FakeUpstream) -> None:
    upstream.push(slow_stream(n=40), slow_stream(n=40))
    doc = drain_doc(upstream, drain_timeout="10s", limits={"max_draining_streams": 1})
    async with running_gateway(doc) as gw:
        clients = [await open_raw(gw.port, "/v1/stream/r") for _ in range(2)]
        for reader, _ in clients:
            await read_until(reader, b"first ")
        for _, writer in clients:
            writer.transport.abort()
        # One drains (reads to the end), the other is cancelled at once.
        await wait_for(lambda: any(s.closed_at is not None for s in upstream.seen), 2)
        cancelled = [s for s in upstream.seen if s.closed_at is not None]
        assert len(cancelled) == 1 and not cancelled[0].completed
        assert len(gw.state.drain_tasks) == 1
        await wait_for(lambda: all(s.closed_at is not None for s in upstream.seen), 5)
        assert sum(s.completed for s in upstream.seen) == 1
        await wait_for(lambda: not gw.state.drain_tasks, 2)
        assert await tokens(gw.url, "output") == 17


async def test_drain_timeout_bounds_a_drain(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0, chat_chunk("first "))], headers=SSE, endless=(0.01, b"")))
    upstream.push()
    doc = drain_doc(upstream, drain_timeout="300ms")
    async with running_gateway(doc) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r")
        await read_until(reader, b"first ")
        t0 = asyncio.get_running_loop().time()
        writer.transport.abort()
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 3)
        elapsed = asyncio.get_running_loop().time() - t0
        assert not upstream.seen[0].completed
        assert 0.25 <= elapsed < 1.5
        await wait_for(lambda: not gw.state.drain_tasks, 2)
