"""The shipped nginx config (deploy/nginx/) with a real nginx in front of the real gateway.

nginx runs the shipped files (rendered by ``tests/deploy/nginx.py``: only addresses and paths
change, one worker process so ``worker_connections`` is tested per worker); the gateway runs
in-process on the production runner; providers are the fake upstream or the simulated one.
Checks: the first event arrives unbuffered (also with gzip on at the http level), aborts reach the
provider within 100 ms at every phase, the body limit is enforced at the edge with the same bound
as the gateway, heartbeats pass, and 600 concurrent streams each end exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.client import collect
from gateway.config.units import parse_duration, parse_size
from tests.deploy.nginx import NGINX_DIR, Nginx, running_nginx
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import REPO, RunningGateway, metric_value, running_gateway, wait_for
from tests.support.rawclient import open_raw, read_until

pytestmark = pytest.mark.system

SSE = {"Content-Type": "text/event-stream"}
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}
ABORT_LIMIT = 0.1


def chat_chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    doc = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def chat_route(upstream: FakeUpstream, name: str = "r") -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai-chat",
        "upstream": {"base_url": upstream.url, "model": "m"},
    }


@contextlib.asynccontextmanager
async def behind_nginx(
    tmp_path: Path, doc: dict[str, Any]
) -> AsyncIterator[tuple[RunningGateway, Nginx]]:
    async with running_gateway(doc) as gw, running_nginx(tmp_path, gw.port) as nginx:
        yield gw, nginx


async def timed_read(
    url: str, body: Any = HELLO, timeout: float = 10
) -> tuple[aiohttp.ClientResponse, list[tuple[float, bytes]]]:
    """POST and record (seconds since the request, bytes) for every chunk until EOF."""
    chunks: list[tuple[float, bytes]] = []
    async with (
        aiohttp.ClientSession(auto_decompress=False) as s,
        asyncio.timeout(timeout),
    ):
        t0 = time.monotonic()
        headers = {"Accept-Encoding": "gzip, deflate"}
        async with s.post(url, json=body, headers=headers) as resp:
            async for chunk in resp.content.iter_any():
                chunks.append((time.monotonic() - t0, chunk))
    return resp, chunks


def first_time(chunks: list[tuple[float, bytes]], marker: bytes) -> float:
    seen = b""
    for t, chunk in chunks:
        seen += chunk
        if marker in seen:
            return t
    raise AssertionError(f"{marker!r} never arrived: {seen[:500]!r}")


def terminal_events(raw: bytes) -> list[str]:
    return re.findall(rb"^event: (end|error)$", raw, flags=re.MULTILINE)  # type: ignore[return-value]


# -- unbuffered --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "first", "last"),
    [
        ("tokens", b'"text":"Hel"', b"event: end"),
        ("text", b"Hel", b"lo"),
        ("ndjson", b"Hel", b"end"),
    ],
)
async def test_first_delta_arrives_while_the_model_is_still_generating(
    tmp_path: Path, upstream: FakeUpstream, fmt: str, first: bytes, last: bytes
) -> None:
    hold = 1.0
    chunks = [(0, chat_chunk("Hel")), (hold, chat_chunk("lo")), (0, chat_chunk(finish="stop"))]
    upstream.push(Script(chunks=[*chunks, (0, DONE)], headers=SSE))
    async with behind_nginx(tmp_path, {"routes": [chat_route(upstream)]}) as (_, nginx):
        resp, got = await timed_read(f"{nginx.url}/v1/stream/r?format={fmt}")
    assert resp.status == 200
    # gzip is on at the http level for these types: the server block must keep streams plain.
    assert "Content-Encoding" not in resp.headers
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert len(resp.headers["X-Request-Id"]) >= 16
    t_first, t_end = first_time(got, first), got[-1][0]
    assert t_first < hold / 2, f"first delta after {t_first:.3f}s: nginx buffered the stream"
    assert t_end >= hold
    assert last in b"".join(c for _, c in got)


async def test_a_client_that_stops_reading_pushes_back_on_the_gateway(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """Unbuffered, nginx holds a few buffers, not the stream: the gateway sees the stalled client
    and cuts it after ``write_timeout`` (buffered, nginx would spool ~64 MB to a temp file)."""
    big = [(0.0, chat_chunk("x" * 16384)) for _ in range(4000)]
    upstream.push(Script(chunks=[*big, (0, chat_chunk(finish="stop")), (0, DONE)], headers=SSE))
    doc = {"server": {"write_timeout": 0.5}, "routes": [chat_route(upstream)]}
    async with behind_nginx(tmp_path, doc) as (gw, nginx):
        _, writer = await open_raw(nginx.port, "/v1/stream/r")
        try:
            await wait_for(lambda: len(upstream.seen) == 1)
            await asyncio.wait_for(upstream.seen[0].closed.wait(), 5)
            assert not upstream.seen[0].completed
            labels = {"route": "r"}
            assert await metric_value(gw.url, "gateway_slow_client_disconnects_total", labels) == 1
        finally:
            writer.transport.abort()


# -- aborts ------------------------------------------------------------------------------------


ENDLESS = [(0.02, chat_chunk(f"tok{i} ")) for i in range(2000)]
PHASES = {
    "before_upstream_headers": (Script(delay_before_headers=30, headers=SSE), None),
    "before_first_token": (
        Script(chunks=[(0, b": keepalive\n\n")], headers=SSE, hang_after=True),
        b"event: thinking",
    ),
    "mid_stream": (Script(chunks=ENDLESS, headers=SSE), b"tok5"),
}


@pytest.mark.parametrize("phase", list(PHASES))
async def test_client_abort_through_nginx_reaches_the_provider_within_100ms(
    tmp_path: Path, upstream: FakeUpstream, phase: str
) -> None:
    script, marker = PHASES[phase]
    upstream.push(script)
    async with behind_nginx(tmp_path, {"routes": [chat_route(upstream)]}) as (gw, nginx):
        reader, writer = await open_raw(nginx.port, "/v1/stream/r")
        await wait_for(lambda: len(upstream.seen) == 1)
        if marker is None:
            await asyncio.sleep(0.05)
        else:
            await read_until(reader, marker)
        seen = upstream.seen[-1]
        t_close = time.monotonic()
        writer.transport.abort()
        await asyncio.wait_for(seen.closed.wait(), 2)
        assert seen.closed_at is not None and not seen.completed
        elapsed = seen.closed_at - t_close
        assert elapsed < ABORT_LIMIT, f"provider closed {elapsed * 1000:.1f} ms after the client"
        await wait_for(lambda: not gw.state.sessions)
        labels = {"route": "r", "phase": phase}
        assert await metric_value(gw.url, "gateway_client_aborts_total", labels) == 1


# -- body limit at the edge ---------------------------------------------------------------------


def body_of_size(size: int) -> bytes:
    """A valid request body of exactly ``size`` bytes."""
    empty = json.dumps({"messages": [{"role": "user", "content": ""}]}).encode()
    body = json.dumps({"messages": [{"role": "user", "content": "x" * (size - len(empty))}]})
    assert len(body) == size
    return body.encode()


async def post_raw(port: int, body: bytes) -> tuple[int, bytes]:
    """POST on a raw socket; the server may answer before the whole body was sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/stream/demo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        with contextlib.suppress(ConnectionError):
            writer.write(body)
            await writer.drain()
        async with asyncio.timeout(10):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


async def test_oversize_body_is_refused_at_the_edge_with_the_gateways_bound(
    tmp_path: Path,
) -> None:
    limit = parse_size(
        yaml.safe_load((REPO / "config.yaml").read_text())["server"]["max_body_bytes"]
    )
    doc = {
        "server": {"max_body_bytes": limit},
        "routes": [
            {
                "name": "demo",
                "provider": "simulated",
                "options": {"text": "ok", "reasoning": False, "first_token_delay": 0},
            }
        ],
    }
    async with behind_nginx(tmp_path, doc) as (gw, nginx):
        status, rest = await post_raw(nginx.port, body_of_size(limit + 1))
        assert status == 413
        assert b'"code":"body_too_large"' in rest
        rejected = {"route": "demo", "outcome": "rejected"}
        assert await metric_value(gw.url, "gateway_requests_total", rejected) == 0
        # The largest body the gateway accepts passes nginx too: the two bounds are equal.
        status, rest = await post_raw(nginx.port, body_of_size(limit))
        assert status == 200
        assert b"event: end" in rest
        completed = {"route": "demo", "outcome": "completed"}
        assert await metric_value(gw.url, "gateway_requests_total", completed) == 1


# -- heartbeats --------------------------------------------------------------------------------


async def test_heartbeats_pass_through_nginx_while_the_provider_is_silent(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    interval, silence = 0.2, 1.2
    chunks = [(0, chat_chunk("hi")), (0, chat_chunk(finish="stop")), (0, DONE)]
    upstream.push(Script(delay_before_headers=silence, chunks=chunks, headers=SSE))
    doc = {"server": {"heartbeat_interval": interval}, "routes": [chat_route(upstream)]}
    async with behind_nginx(tmp_path, doc) as (_, nginx):
        resp, got = await timed_read(f"{nginx.url}/v1/stream/r")
    assert resp.status == 200
    pings = [t for t, c in got for _ in range(c.count(b": ping"))]
    assert pings and pings[0] < 2 * interval + 0.15, pings
    assert len([t for t in pings if t < silence]) >= 3, pings
    raw = b"".join(c for _, c in got)
    assert terminal_events(raw) == [b"end"]


# -- many concurrent streams -------------------------------------------------------------------


async def test_600_concurrent_streams_through_one_nginx_worker_all_end_once(
    tmp_path: Path,
) -> None:
    """600 open streams need 1200+ connections in one nginx worker: 1024 would reset some."""
    n = 600
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * n + 256  # client and gateway sockets both live in this process
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    options = {"text": "one two three", "reasoning": False, "first_token_delay": "1s"}
    doc = {
        "limits": {"max_concurrent_streams": 10000},
        "routes": [{"name": "demo", "provider": "simulated", "options": options}],
    }
    try:
        async with behind_nginx(tmp_path, doc) as (gw, nginx):
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, len(gw.state.sessions))
                    await asyncio.sleep(0.01)

            watcher = asyncio.ensure_future(watch())
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as s, asyncio.timeout(20):
                url = f"{nginx.url}/v1/stream/demo"
                results = await asyncio.gather(
                    *(collect(s, url, HELLO) for _ in range(n)), return_exceptions=True
                )
            watcher.cancel()
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, f"{len(failures)} failed, e.g. {failures[0]!r}"
            for events in results:
                assert isinstance(events, list)
                kinds = [e.type for e in events]
                assert kinds[0] == "created" and kinds[-1] == "end"
                assert kinds.count("end") + kinds.count("error") == 1
                assert (
                    "".join(e.data["text"] for e in events if e.type == "delta") == "one two three"
                )
            assert peak == n, f"only {peak} streams were open at once"
            assert "worker_connections are not enough" not in nginx.error_log()
            completed = {"route": "demo", "outcome": "completed"}
            assert await metric_value(gw.url, "gateway_requests_total", completed) == n
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the shipped values agree with the gateway's config -----------------------------------------


def directive(text: str, name: str) -> str:
    values = re.findall(rf"^\s*{name}\s+([^;]+);", text, flags=re.MULTILINE)
    assert len(values) == 1, f"{name}: {values}"
    return str(values[0]).strip()


def nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    if value[-1].lower() in units:
        return int(value[:-1]) * units[value[-1].lower()]
    return int(value)


def test_shipped_values_match_the_gateway_config() -> None:
    conf = (NGINX_DIR / "gateway.conf").read_text()
    main = (NGINX_DIR / "nginx.conf").read_text()
    server = yaml.safe_load((REPO / "config.yaml").read_text())["server"]
    assert nginx_size(directive(conf, "client_max_body_size")) == parse_size(
        server["max_body_bytes"]
    )
    read_timeout = parse_duration(directive(conf, "proxy_read_timeout"))
    assert read_timeout > 4 * parse_duration(server["heartbeat_interval"])
    for name, value in [
        ("proxy_http_version", "1.1"),
        ("proxy_buffering", "off"),
        ("gzip", "off"),
        ("proxy_ignore_client_abort", "off"),
        ("proxy_request_buffering", "on"),
        ("proxy_set_header Connection", '""'),
    ]:
        assert directive(conf, name) == value, name
    assert int(directive(main, "worker_connections")) >= 4096
    assert int(directive(main, "worker_rlimit_nofile")) > int(directive(main, "worker_connections"))
    # Every directive says why: each paragraph (lines between blank lines) with a directive in
    # it carries a comment.
    for paragraph in re.split(r"\n\s*\n", conf):
        rows = [r.strip() for r in paragraph.splitlines() if r.strip()]
        if any(r.endswith(";") and not r.startswith("#") for r in rows):
            assert any(r.startswith("#") for r in rows), f"no comment for: {paragraph}"
