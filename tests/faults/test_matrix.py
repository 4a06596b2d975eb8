"""The fault matrix (issue 5 item 8): one row per way an upstream can fail.

Each row scripts the fake upstream, sends one request through the gateway (production runner,
real sockets) and asserts three things: what the client sees (a JSON status before the stream,
or the stream's single terminal event), what the upstream saw (closed early by the gateway, or
read to its end), and the metric deltas (outcome, upstream status class, error events). Every
row runs on a fresh gateway, so each absolute value is the delta of that one request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.faults.kit import SSE, Reply, chat_chunk, chat_route, chat_stream, post
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for

pytestmark = pytest.mark.usefixtures("upstream_client")
"""Every test here runs over both upstream clients (``server.upstream_client``)."""

JSON = {"Content-Type": "application/json"}
HEAD = chat_chunk("Hel") + chat_chunk("lo")
WHOLE = chat_stream("Hel", "lo")


@dataclass
class Row:
    script: Script
    status: int = 200
    code: str | None = None
    """The JSON error code (status != 200) or the terminal error event's code (None: ``end``)."""
    outcome: str = "completed"
    status_class: str = "2xx"
    completed: bool | None = False
    """Whether the fake finished its response: False when the gateway closed the upstream early
    (the default), True when read to the end, None when the fake ends it itself (RST, no body)."""
    text: str | None = None
    route: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    pings: bool = False


FAST = {"timeouts": {"first_event": "300ms", "idle": "300ms"}}
ROWS: dict[str, Row] = {
    "delay_before_headers_past_first_event": Row(
        Script(delay_before_headers=3, chunks=[(0, WHOLE)], headers=SSE),
        504,
        "upstream_timeout",
        "upstream_timeout",
        "error",
        route=FAST,
    ),
    "delay_before_headers_within_limits": Row(
        Script(delay_before_headers=0.2, chunks=[(0, WHOLE)], headers=SSE),
        completed=True,
        text="Hello",
        route=FAST,
    ),
    "delay_before_first_event": Row(
        Script(chunks=[(0.8, WHOLE)], headers=SSE),
        code="upstream_timeout",
        outcome="upstream_timeout",
        route=FAST,
    ),
    "gap_past_idle": Row(
        Script(chunks=[(0, HEAD), (0.8, WHOLE)], headers=SSE),
        code="upstream_timeout",
        outcome="upstream_timeout",
        text="Hello",
        route=FAST,
    ),
    "gaps_within_idle_get_heartbeats": Row(
        Script(chunks=[(0, HEAD), (0.35, chat_stream(" world"))], headers=SSE),
        completed=True,
        text="Hello world",
        server={"heartbeat_interval": "100ms"},
        pings=True,
    ),
    "truncated_after_n_bytes": Row(
        Script(chunks=[(0, WHOLE[: len(HEAD) + 7])], headers=SSE),
        code="upstream_truncated",
        outcome="upstream_truncated",
        completed=True,
        text="Hello",
    ),
    "rst_after_n_bytes": Row(
        Script(chunks=[(0, WHOLE)], headers=SSE, rst_after_bytes=len(HEAD) + 7),
        code="upstream_truncated",
        outcome="upstream_truncated",
        completed=None,
        text="Hello",
    ),
    "endless_stream_max_stream_duration": Row(
        Script(chunks=[(0, HEAD)], headers=SSE, endless=(0.01, chat_chunk("."))),
        code="limit_exceeded",
        outcome="limit_exceeded",
        route={"max_stream_duration": "400ms"},
    ),
    "endless_stream_max_output_bytes": Row(
        Script(chunks=[(0, HEAD)], headers=SSE, endless=(0.0, chat_chunk("x" * 500))),
        code="limit_exceeded",
        outcome="limit_exceeded",
        route={"max_output_bytes": "20KiB"},
    ),
    "huge_event": Row(
        # (apart from HEAD: good events in the same read as a bad one are lost, see the docs)
        Script(
            chunks=[(0, HEAD), (0.05, b"data: " + b"x" * 100_000 + b"\n\n")],
            headers=SSE,
            hang_after=True,
        ),
        code="upstream_protocol",
        outcome="upstream_error",
        text="Hello",
        server={"max_upstream_event_bytes": "64KiB"},
    ),
    "malformed_sse_never_ends_well": Row(
        Script(chunks=[(0, HEAD + b"dta: {}\nevent\n: c\n\x00\xff\xfe\n\n")], headers=SSE),
        code="upstream_truncated",
        outcome="upstream_truncated",
        completed=True,
        text="Hello",
    ),
    "invalid_json_event": Row(
        Script(chunks=[(0, HEAD + b"data: {not json\n\n")], headers=SSE, hang_after=True),
        code="upstream_protocol",
        outcome="upstream_error",
        text="Hello",
    ),
    "500_with_json_body": Row(
        Script(status=500, headers=JSON, chunks=[(0, b'{"error":{"message":"boom"}}')]),
        502,
        "upstream_error",
        "upstream_error",
        "5xx",
        completed=True,
    ),
    "503_without_body": Row(
        Script(status=503, headers={}),
        502,
        "upstream_error",
        "upstream_error",
        "5xx",
        completed=None,
    ),
    "400_with_json_body": Row(
        Script(status=400, headers=JSON, chunks=[(0, b'{"error":{"message":"bad"}}')]),
        502,
        "upstream_error",
        "upstream_error",
        "4xx",
        completed=True,
    ),
    "429_with_retry_after": Row(
        Script(status=429, headers={"Retry-After": "60"}),
        429,
        "rate_limited",
        "upstream_error",
        "4xx",
        completed=None,
    ),
}


@pytest.mark.parametrize("name", list(ROWS))
async def test_fault(upstream: FakeUpstream, name: str) -> None:
    row = ROWS[name]
    upstream.push(row.script)
    doc = {"server": row.server, "routes": [chat_route("r", upstream.url, **row.route)]}
    async with running_gateway(doc) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        check_client(reply, row)
        await wait_for(lambda: upstream.seen and upstream.seen[0].closed_at is not None, 3)
        if row.completed is not None:
            assert upstream.seen[0].completed is row.completed
        await wait_for(lambda: not gw.state.sessions, 2)
        await check_metrics(gw.url, row)


def check_client(reply: Reply, row: Row) -> None:
    assert reply.status == row.status, reply.raw[:300]
    if row.status != 200:
        assert reply.json()["error"]["code"] == row.code
        if row.status == 429:
            assert reply.headers["Retry-After"] == "60"
        return
    assert reply.types[0] == "created"
    terminals = [t for t in reply.types if t in ("end", "error")]
    assert len(terminals) == 1 and reply.types[-1] == terminals[0]
    if row.code is None:
        assert reply.last[0] == "end"
    else:
        assert reply.last == ("error", {**reply.last[1], "code": row.code})
        assert isinstance(reply.last[1]["retryable"], bool)
    if row.text is not None:
        assert reply.text == row.text
    assert (reply.comments > 0) is row.pings


async def check_metrics(url: str, row: Row) -> None:
    async def value(name: str, **labels: str) -> float:
        return await metric_value(url, name, {"route": "r", **labels})

    assert await value("gateway_requests_total", outcome=row.outcome) == 1
    assert await value("gateway_upstream_responses_total", status_class=row.status_class) == 1
    assert await value("gateway_active_streams") == 0
    mid_stream_error = row.status == 200 and row.code is not None
    assert await value("gateway_events_total", type="error") == (1 if mid_stream_error else 0)
    if row.status == 200:
        assert await value("gateway_events_total", type="created") == 1
