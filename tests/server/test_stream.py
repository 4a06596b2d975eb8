"""The server end to end on loopback: a fake upstream, the gateway on the production runner.

Contract section 5 rules 1-4 and 6 over real HTTP, for every OpenAI fixture at several splits.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from gateway.client import collect
from tests.adapters.harness import FIXTURES, assemble, fixture_bytes, fixture_expected, splits
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway

pytestmark = pytest.mark.usefixtures("upstream_client", "http_server")
"""Every test here runs over both upstream clients (``server.upstream_client``) and both servers
(``server.http_server``)."""

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}
SSE = {"Content-Type": "text/event-stream"}


def route(name: str, provider: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": provider,
        "upstream": {"base_url": base_url, "api_key": "sk-test-secret", "model": "m-1"},
        **extra,
    }


def as_events(raw: bytes) -> list[tuple[str, str, dict[str, Any]]]:
    """Parse an SSE body strictly: (id, event, data) per frame; comments collected apart."""
    frames = []
    for block in raw.decode().split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        frames.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return frames


async def post(url: str, body: Any = HELLO, **kw: Any) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, **kw) as r:
        return r.status, r.headers.copy(), await r.read()


async def test_demo_route_streams_the_token_protocol() -> None:
    doc = {
        "routes": [
            {
                "name": "demo",
                "provider": "simulated",
                "options": {
                    "text": "Hello there, world!",
                    "reasoning": "Think.",
                    "first_token_delay": 0,
                    "token_interval": 0,
                },
            }
        ]
    }
    async with running_gateway(doc) as gw:
        status, headers, raw = await post(f"{gw.url}/v1/stream/demo")
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache, no-transform"
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["X-Token-Protocol"] == "1"
    assert len(headers["X-Request-Id"]) >= 16
    frames = as_events(raw)
    assert [int(f[0]) for f in frames] == list(range(1, len(frames) + 1))
    types = [f[1] for f in frames]
    assert types[:3] == ["created", "thinking", "reasoning"]
    assert types[-2:] == ["usage", "end"]
    assert types.index("clear") < types.index("delta")
    assert frames[0][2] == {
        "id": headers["X-Request-Id"],
        "route": "demo",
        "provider": "simulated",
        "model": None,
    }
    assert "".join(f[2]["text"] for f in frames if f[1] == "delta") == "Hello there, world!"
    assert "".join(f[2]["text"] for f in frames if f[1] == "reasoning") == "Think."
    assert frames[-1][2]["reason"] == "stop"


OPENAI_FIXTURES = sorted(
    p.name
    for p in FIXTURES.iterdir()
    if p.name.startswith(("openai_chat", "openai_compat", "openai_responses"))
    and p.suffix == ".sse"
)


@pytest.mark.parametrize("fixture", OPENAI_FIXTURES)
async def test_openai_fixtures_through_the_server(upstream: FakeUpstream, fixture: str) -> None:
    provider = "openai-responses" if fixture.startswith("openai_responses") else "openai-chat"
    data = fixture_bytes(fixture)
    expected = fixture_expected(fixture)
    cases = [c for c in splits(data) if c[0] != "bytewise" or len(data) < 20000]
    async with running_gateway({"routes": [route("r", provider, upstream.url)]}) as gw:
        results = []
        for _, pieces in cases:
            upstream.push(Script(chunks=[(0, p) for p in pieces], headers=SSE))
            async with aiohttp.ClientSession() as s:
                results.append(await collect(s, f"{gw.url}/v1/stream/r", HELLO))
    from gateway.events import Event

    def comparable(events: list[Any]) -> list[tuple[str, Any]]:
        return [(e.type, e.data) for e in events if e.type != "created"]

    first = comparable(results[0])
    for events in results:
        assert comparable(events) == first, "any split gives the same events"
        assert [int(e.id) for e in events] == list(range(1, len(events) + 1))
        assert events[0].type == "created"
        assert sum(e.type in ("end", "error") for e in events) == 1
        assembled = assemble([Event(e.type, e.data) for e in events])
        assert assembled.text == expected["text"] + expected.get("refusal", "")
        assert assembled.reasoning == expected["reasoning"]
        assert [c["arguments"] for c in assembled.tool_calls] == [
            c["arguments"] for c in expected["tool_calls"]
        ]
    if expected.get("error"):
        assert results[0][-1].type == "error"
    # The request really went to the provider's path with the configured credentials.
    assert upstream.seen[0].path.endswith(
        "/responses" if provider == "openai-responses" else "/chat/completions"
    )
    assert upstream.seen[0].headers["Authorization"] == "Bearer sk-test-secret"


async def test_truncated_upstream_is_an_error_never_an_end(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_chat_basic.sse")
    cut = data[: data.index(b"[DONE]") - 10]
    upstream.push(Script(chunks=[(0, cut)], headers=SSE))
    async with running_gateway({"routes": [route("r", "openai-chat", upstream.url)]}) as gw:
        async with aiohttp.ClientSession() as s:
            events = await collect(s, f"{gw.url}/v1/stream/r", HELLO)
        assert events[-1].type == "error"
        assert events[-1].data["code"] == "upstream_truncated"
        assert events[-1].data["retryable"] is True
        assert not any(e.type == "end" for e in events)
        assert (
            await metric_value(
                gw.url, "gateway_requests_total", {"route": "r", "outcome": "upstream_truncated"}
            )
            == 1
        )


async def test_connection_reset_midstream_is_truncated(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_chat_basic.sse")
    upstream.push(Script(chunks=[(0, data[:300])], headers=SSE, reset_after=True))
    async with running_gateway({"routes": [route("r", "openai-chat", upstream.url)]}) as gw:
        async with aiohttp.ClientSession() as s:
            events = await collect(s, f"{gw.url}/v1/stream/r", HELLO)
    assert events[-1].type == "error"
    assert events[-1].data["code"] in ("upstream_truncated", "upstream_error", "upstream_connect")
    assert not any(e.type == "end" for e in events)


async def test_heartbeats_during_silence(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_chat_basic.sse")
    head, tail = data[:400], data[400:]
    upstream.push(Script(chunks=[(0, head), (0.7, tail)], headers=SSE))
    doc = {
        "server": {"heartbeat_interval": "100ms"},
        "routes": [route("r", "openai-chat", upstream.url)],
    }
    async with running_gateway(doc) as gw:
        status, _, raw = await post(f"{gw.url}/v1/stream/r")
    assert status == 200
    pings = raw.count(b": ping\n\n")
    assert 4 <= pings <= 8, raw
    assert as_events(raw)[-1][1] == "end"


async def test_headers_go_out_at_first_heartbeat_then_timeout_is_an_event(
    upstream: FakeUpstream,
) -> None:
    upstream.push(Script(delay_before_headers=5, headers=SSE))
    doc = {
        "server": {"heartbeat_interval": "100ms"},
        "routes": [route("r", "openai-chat", upstream.url, timeouts={"first_event": "400ms"})],
    }
    async with running_gateway(doc) as gw:
        status, _, raw = await post(f"{gw.url}/v1/stream/r")
    assert status == 200
    assert b": ping" in raw
    frames = as_events(raw)
    assert frames[0][1] == "created" and frames[-1][1] == "error"
    assert frames[-1][2]["code"] == "upstream_timeout"


async def test_first_event_timeout_before_heartbeat_is_504(upstream: FakeUpstream) -> None:
    upstream.push(Script(delay_before_headers=5, headers=SSE))
    doc = {"routes": [route("r", "openai-chat", upstream.url, timeouts={"first_event": "200ms"})]}
    async with running_gateway(doc) as gw:
        status, headers, raw = await post(f"{gw.url}/v1/stream/r")
    assert status == 504
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(raw)["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("first_after", [0.0, 1.0], ids=["first-at-once", "first-after-1s"])
async def test_idle_timeout_midstream_is_an_error_event(
    upstream: FakeUpstream, first_after: float
) -> None:
    """``idle`` shorter than ``first_event``: a first event later than ``idle`` is waited for,
    and the silence after it ends the stream once ``idle`` passed, not at the next timer tick
    the stream had anyway (a heartbeat's, 15 s later)."""
    data = fixture_bytes("openai_chat_basic.sse")
    two_events = data[: data.index(b"\n\n", data.index(b"\n\n") + 2) + 2]  # role, then text
    upstream.push(Script(chunks=[(first_after, two_events)], headers=SSE, hang_after=True))
    timeouts = {"first_event": "30s", "idle": "300ms"}
    doc = {"routes": [route("r", "openai-chat", upstream.url, timeouts=timeouts)]}
    async with running_gateway(doc) as gw:
        async with aiohttp.ClientSession() as s:
            started = time.monotonic()
            events = await collect(s, f"{gw.url}/v1/stream/r", HELLO)
            elapsed = time.monotonic() - started
        await asyncio.wait_for(upstream.seen[0].closed.wait(), 2)
    assert any(e.type == "delta" for e in events)  # the late first event was waited for
    assert events[-1].type == "error" and events[-1].data["code"] == "upstream_timeout"
    assert "went silent for 0.3s" in events[-1].data["message"]
    assert elapsed < first_after + 5  # the silence's 0.3 s, far from the heartbeat's 15 s


@pytest.mark.parametrize(
    ("script", "status", "code"),
    [
        (
            Script(
                status=500,
                chunks=[(0, b'{"error":{"message":"boom","type":"server_error"}}')],
                headers={"Content-Type": "application/json"},
            ),
            502,
            "upstream_error",
        ),
        (
            Script(
                status=429,
                chunks=[(0, b'{"error":{"message":"slow down"}}')],
                headers={"Content-Type": "application/json", "Retry-After": "7"},
            ),
            429,
            "rate_limited",
        ),
        (
            Script(
                status=401,
                chunks=[(0, b'{"error":{"message":"Incorrect API key provided: sk-test-secret"}}')],
                headers={"Content-Type": "application/json"},
            ),
            502,
            "upstream_error",
        ),
    ],
)
async def test_upstream_non_2xx_before_streaming(
    upstream: FakeUpstream, script: Script, status: int, code: str
) -> None:
    upstream.push(script)
    async with running_gateway({"routes": [route("r", "openai-chat", upstream.url)]}) as gw:
        got, headers, raw = await post(f"{gw.url}/v1/stream/r")
    assert got == status
    body = json.loads(raw)
    assert body["error"]["code"] == code
    assert "sk-test-secret" not in raw.decode()
    if status == 429:
        assert headers["Retry-After"] == "7"


async def test_upstream_refused_is_502_upstream_connect() -> None:
    from tests.support.system import free_port

    port = free_port()
    dead = f"http://127.0.0.1:{port}"
    async with running_gateway({"routes": [route("r", "openai-chat", dead)]}) as gw:
        status, _, raw = await post(f"{gw.url}/v1/stream/r")
    assert status == 502
    error = json.loads(raw)["error"]
    assert error["code"] == "upstream_connect"
    assert str(port) not in error["message"]  # the OS's message named the upstream's address


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
            None,
        ),
        ({"json": {"messages": []}}, 400, "invalid_request", "messages"),
        ({"json": {"nomessages": 1}}, 400, "invalid_request", "messages"),
        (
            {"json": {"messages": [{"role": "wizard", "content": "x"}]}},
            400,
            "invalid_request",
            "role",
        ),
        (
            {"json": {"messages": [{"role": "user", "content": 5}]}},
            400,
            "invalid_request",
            "content",
        ),
        (
            {"json": {"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}},
            400,
            "invalid_request",
            "max_tokens",
        ),
        (
            {"json": {"messages": [{"role": "user", "content": "x"}], "model": "other"}},
            400,
            "invalid_request",
            "model",
        ),
        ({"json": [1, 2]}, 400, "invalid_request", "body"),
        (
            {"data": b'{"messages":[]}', "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
            None,
        ),
        (
            {
                "data": b'{"messages":[]}',
                "headers": {"Content-Type": "application/json; charset=utf-8"},
            },
            400,
            "invalid_request",
            "messages",
        ),
        (
            {"data": b"x" * 3000, "headers": {"Content-Type": "application/json"}},
            413,
            "body_too_large",
            None,
        ),
    ],
)
async def test_bad_input_is_a_json_error(
    kwargs: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    doc = {
        "server": {"max_body_bytes": 2048},
        "routes": [{"name": "demo", "provider": "simulated"}],
    }
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/v1/stream/demo", **kwargs) as r:
            assert r.status == status
            assert r.headers["Content-Type"].startswith("application/json")
            body = await r.json()
    assert body["error"]["code"] == code
    if field:
        assert field in body["error"]["message"]


async def test_not_found_and_method_not_allowed() -> None:
    doc = {"routes": [{"name": "demo", "provider": "simulated"}]}
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/v1/stream/nope", json=HELLO) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
        async with s.post(f"{gw.url}/v1/stream/..%2Fdemo", json=HELLO) as r:
            assert r.status == 404
        async with s.get(f"{gw.url}/v1/stream/demo") as r:
            assert r.status == 405
            assert r.headers["Allow"] == "POST"
            assert (await r.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("fmt", ["ndjson", "text"])
async def test_other_formats(fmt: str) -> None:
    doc = {
        "routes": [
            {
                "name": "demo",
                "provider": "simulated",
                "text_markers": {"end": "[END]"},
                "options": {
                    "text": "Line one\nline two",
                    "first_token_delay": 0,
                    "token_interval": 0,
                },
            }
        ]
    }
    async with running_gateway(doc) as gw:
        status, headers, raw = await post(f"{gw.url}/v1/stream/demo?format={fmt}")
    assert status == 200
    if fmt == "text":
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert raw == b"Line one\nline two[END]"
    else:
        assert headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(x) for x in raw.splitlines()]
        assert lines[0]["type"] == "created" and lines[-1] == {
            "type": "end",
            "reason": "stop",
            "provider_reason": "stop",
        }
        assert "".join(x["text"] for x in lines if x["type"] == "delta") == "Line one\nline two"


async def test_unknown_format_is_400() -> None:
    async with running_gateway({"routes": [{"name": "demo", "provider": "simulated"}]}) as gw:
        status, _, raw = await post(f"{gw.url}/v1/stream/demo?format=xml")
    assert status == 400 and "format" in json.loads(raw)["error"]["message"]
