"""gateway/stream/trace.py end to end: a real gateway on loopback, a fake upstream, and a real
OTLP/HTTP receiver decoding what the gateway's exporter sends (contract section 14)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from multidict import CIMultiDict

from gateway.reload import reload_config
from gateway.tracing.app import tracing_of
from tests.adapters.harness import assemble, fixture_bytes, fixture_expected, replay
from tests.faults.kit import (
    HELLO,
    NDJSON,
    OLLAMA_OK,
    SECRET,
    SSE,
    chat_chunk,
    chat_error,
    chat_route,
    post,
)
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import RunningGateway, metric_value, running_gateway, wait_for
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.rawclient import open_raw, read_until
from tests.support.system import free_port

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
BEDROCK = {
    "region": "us-east-1",
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
MAPPED = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "adapters/data/mapped_openai_chat.yaml").read_text()
)


def traced(doc: dict[str, Any], endpoint: str, **tracing: Any) -> dict[str, Any]:
    return {**doc, "tracing": {"otlp_endpoint": endpoint, **tracing}}


@contextlib.asynccontextmanager
async def gateway(
    doc: dict[str, Any], receiver: OTLPReceiver, **tracing: Any
) -> AsyncIterator[RunningGateway]:
    async with running_gateway(traced(doc, receiver.url, **tracing)) as gw:
        yield gw


async def exported(gw: RunningGateway, receiver: OTLPReceiver, count: int) -> list[ReceivedSpan]:
    """The spans once ``count`` arrived (streams end just after their response: wait for them)."""
    await wait_for(lambda: not gw.state.sessions, 5)
    tracing = tracing_of(gw.state)
    assert tracing is not None
    assert await asyncio.to_thread(tracing.force_flush)
    return await receiver.wait_for(count)


def context_of(traceparent: str) -> tuple[str, str]:
    """Trace id and parent span id of a sampled W3C ``traceparent`` (flags may add ``random``)."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1, traceparent
    return trace_id, span_id


def kind(spans: list[ReceivedSpan], which: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.kind == which]


def the_server_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    found = kind(spans, "SERVER")
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def no_secret_in(spans: list[ReceivedSpan], *secrets: str) -> None:
    for span in spans:
        text = repr(span.attributes) + repr([e.attributes for e in span.events])
        for secret in secrets:
            assert secret not in text, (span.name, secret)


# -- attributes per provider fixture -----------------------------------------------------------

# (provider, fixture, gen_ai.provider.name, options); one at least per adapter.
CASES = [
    ("openai-chat", "openai_chat_usage.sse", "openai", None),
    ("openai-responses", "openai_responses_basic.sse", "openai", None),
    ("anthropic", "anthropic_basic.sse", "anthropic", None),
    ("gemini", "gemini_basic.sse", "gcp.gemini", None),
    ("ollama", "ollama_chat.ndjson", "ollama", None),
    ("cohere", "cohere_v2_chat_thinking.sse", "cohere", None),
    ("bedrock", "bedrock_converse_stream.bin", "aws.bedrock", BEDROCK),
    ("mapped", "openai_chat_usage.sse", "_OTHER", MAPPED),
    ("anthropic", "anthropic_max_tokens.sse", "anthropic", None),
]


@pytest.mark.parametrize(
    ("provider", "fixture", "genai", "options"),
    CASES,
    ids=[f"{c[0]}:{c[1].split('.')[0]}" for c in CASES],
)
async def test_span_attributes_per_provider_fixture(
    upstream: FakeUpstream,
    receiver: OTLPReceiver,
    provider: str,
    fixture: str,
    genai: str,
    options: dict[str, Any] | None,
) -> None:
    data = fixture_bytes(fixture)
    upstream.push(
        Script(
            chunks=[(0, data)], headers={"Content-Type": fixture_expected(fixture)["content_type"]}
        )
    )
    route: dict[str, Any] = {
        "name": "r",
        "provider": provider,
        "upstream": {"base_url": upstream.url, "api_key": SECRET, "model": "up-model"},
    }
    if options is not None:
        route["options"] = options
    async with gateway({"routes": [route]}, receiver, service_name="gw-e2e") as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.status == 200
        want = assemble(replay(gw.state.routes["r"].targets[0][1], [data]))
        spans = await exported(gw, receiver, 2)

    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    a = server.attributes
    assert server.name == "chat up-model"
    assert server.resource["service.name"] == "gw-e2e"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == genai
    assert a["gen_ai.request.model"] == "up-model"
    assert a["gen_ai.response.model"] == "up-model"
    assert want.usage is not None and want.terminal is not None
    assert a["gen_ai.usage.input_tokens"] == want.usage["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == want.usage["output_tokens"]
    assert a["gen_ai.response.finish_reasons"] == (want.terminal.data["reason"],)
    assert a["gateway.route"] == "r"
    request_id = {k.lower(): v for k, v in reply.headers.items()}["x-request-id"]
    assert a["gateway.request_id"] == request_id  # joins the trace and the stream's log line
    assert a["gateway.outcome"] == "completed"
    assert a["gateway.attempts"] == 1
    assert server.status == "UNSET"
    assert "gateway.app" not in a  # no auth: no app
    # The first-token event, at the recorded time, inside the span.
    [first] = [e for e in server.events if e.name == "gateway.first_token"]
    assert server.start_ns < first.time_ns < server.end_ns
    ttft = a["gateway.time_to_first_token_s"]
    assert ttft == pytest.approx((first.time_ns - server.start_ns) / 1e9, abs=0.002)
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    # The attempt: a child of the stream span with the HTTP attributes.
    assert client.trace_id == server.trace_id and client.parent_span_id == server.span_id
    c = client.attributes
    assert c["http.request.method"] == "POST"
    assert c["http.response.status_code"] == 200
    assert c["server.address"] == "127.0.0.1" and c["server.port"] == upstream.port
    assert c["url.full"].startswith(upstream.url + "/")
    assert c["gateway.upstream"] == provider
    assert c["gen_ai.provider.name"] == genai
    assert client.status == "UNSET"
    assert server.start_ns <= client.start_ns <= client.end_ns <= server.end_ns
    no_secret_in(spans, SECRET, BEDROCK["secret_access_key"])
    # The upstream got the attempt span's context.
    sent = upstream.seen[0].headers
    assert context_of(sent["traceparent"]) == (client.trace_id, client.span_id)


async def test_simulated_stream_has_an_attempt_span_without_http(receiver: OTLPReceiver) -> None:
    route = {"name": "demo", "provider": "simulated", "options": {"token_interval": 0}}
    async with gateway({"routes": [route]}, receiver) as gw:
        reply = await post(f"{gw.url}/v1/stream/demo")
        assert reply.status == 200
        spans = await exported(gw, receiver, 2)
    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    assert server.attributes["gateway.outcome"] == "completed"
    assert server.attributes["gen_ai.provider.name"] == "_OTHER"
    assert "url.full" not in client.attributes and "server.address" not in client.attributes


# -- failures ------------------------------------------------------------------------------------


async def test_upstream_refusal_is_an_error_on_both_spans(
    upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    upstream.push(Script(status=500, headers={"Content-Type": "application/json"}))
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.status == 502
        code = reply.json()["error"]["code"]
        spans = await exported(gw, receiver, 2)
    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    assert server.status == "ERROR"
    assert server.status_message == code
    assert server.attributes["error.type"] == code
    assert server.attributes["gateway.outcome"] == "upstream_error"
    assert "gen_ai.response.model" not in server.attributes  # nobody served it
    assert client.status == "ERROR"
    assert client.attributes["http.response.status_code"] == 500
    assert client.attributes["error.type"] == code


async def test_mid_stream_error_event_is_an_error_span(
    upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    data = fixture_bytes("openai_chat_error_midstream.sse")
    upstream.push(Script(chunks=[(0, data)], headers=SSE))
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        assert reply.last[0] == "error"
        code = reply.last[1]["code"]
        spans = await exported(gw, receiver, 2)
    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    assert server.status == "ERROR" and server.attributes["error.type"] == code
    assert [e.name for e in server.events] == ["gateway.first_token"]
    assert "gen_ai.response.finish_reasons" not in server.attributes
    # The upstream answered 200, then failed: the attempt is an error too.
    assert client.attributes["http.response.status_code"] == 200
    assert client.status == "ERROR" and client.attributes["error.type"] == code


async def test_client_abort_event(upstream: FakeUpstream, receiver: OTLPReceiver) -> None:
    upstream.push(Script(chunks=[(0, chat_chunk("Hi"))], headers=SSE, endless=(0.02, b": x\n\n")))
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver) as gw:
        reader, writer = await open_raw(gw.port, "/v1/stream/r", HELLO)
        await read_until(reader, b"event: delta")
        writer.transport.abort()
        spans = await exported(gw, receiver, 2)
    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    a = server.attributes
    assert a["gateway.outcome"] == "client_abort"
    assert a["gateway.abort_phase"] == "mid_stream"
    assert server.status == "UNSET"  # a client leaving is not the gateway's failure
    names = [e.name for e in server.events]
    assert names == ["gateway.first_token", "gateway.client_abort"]
    abort = server.events[1]
    assert abort.attributes == {"gateway.abort_phase": "mid_stream"}
    assert server.events[0].time_ns <= abort.time_ns <= server.end_ns
    assert client.status == "UNSET" and client.attributes["http.response.status_code"] == 200


# -- attempts ------------------------------------------------------------------------------------


PRIMARY_FAILURES = {
    "500": (Script(status=500, headers={"Content-Type": "application/json"}), 500),
    # Answered 200, then an error event before any content (held back): still a failed attempt.
    "early_error": (Script(chunks=[(0, chat_error())], headers=SSE, hang_after=True), 200),
}


@pytest.mark.parametrize("failure", sorted(PRIMARY_FAILURES))
async def test_fallback_gives_two_attempt_spans(
    upstream: FakeUpstream, receiver: OTLPReceiver, failure: str
) -> None:
    script, status = PRIMARY_FAILURES[failure]
    fallback = await FakeUpstream().start()
    try:
        upstream.push(script)
        fallback.push(Script(chunks=[(0, OLLAMA_OK)], headers=NDJSON))
        route = chat_route("r", upstream.url)
        route["fallbacks"] = [
            {"provider": "ollama", "upstream": {"base_url": fallback.url, "model": "qwen3:8b"}}
        ]
        async with gateway({"routes": [route]}, receiver) as gw:
            reply = await post(f"{gw.url}/v1/stream/r", headers={"traceparent": TRACEPARENT})
            assert reply.status == 200 and reply.frames[0][1]["provider"] == "ollama"
            spans = await exported(gw, receiver, 3)
    finally:
        await fallback.stop()
    server = the_server_span(spans)
    first, second = sorted(kind(spans, "CLIENT"), key=lambda s: s.start_ns)
    assert server.attributes["gateway.attempts"] == 2
    assert server.attributes["gen_ai.response.model"] == "qwen3:8b"
    assert server.attributes["gen_ai.provider.name"] == "openai"  # the route's primary
    assert server.status == "UNSET"
    for span in (first, second):
        assert span.parent_span_id == server.span_id and span.trace_id == CLIENT_TRACE
    assert first.attributes["gateway.upstream"] == "openai-chat"
    assert first.status == "ERROR" and first.attributes["http.response.status_code"] == status
    assert second.attributes["gateway.upstream"] == "ollama"
    assert second.attributes["gen_ai.provider.name"] == "ollama"
    assert second.status == "UNSET" and second.attributes["http.response.status_code"] == 200
    assert first.end_ns <= second.start_ns
    # Each upstream saw its own attempt's span id, in the client's trace.
    assert context_of(upstream.seen[0].headers["traceparent"]) == (CLIENT_TRACE, first.span_id)
    assert context_of(fallback.seen[0].headers["traceparent"]) == (CLIENT_TRACE, second.span_id)


async def test_traceparent_continues_the_clients_trace(
    upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    upstream.push(Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))], headers=SSE))
    # A stale traceparent in the route's own upstream headers is replaced, not sent twice.
    route = chat_route("r", upstream.url)
    route["upstream"]["headers"] = {"TraceParent": f"00-{'1' * 32}-{'2' * 16}-01"}
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    async with gateway({"routes": [route]}, receiver) as gw:
        reply = await post(f"{gw.url}/v1/stream/r", headers=headers)
        assert reply.status == 200
        spans = await exported(gw, receiver, 2)
    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    assert server.trace_id == CLIENT_TRACE and server.parent_span_id == CLIENT_SPAN
    seen = upstream.seen[0]
    assert context_of(seen.headers["traceparent"]) == (CLIENT_TRACE, client.span_id)
    assert seen.headers["tracestate"] == "vendor=abc"
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"  # the request is otherwise intact


# -- content, sampling, collector ----------------------------------------------------------------


@pytest.mark.parametrize("capture", [False, True])
async def test_content_only_when_captured(
    upstream: FakeUpstream, receiver: OTLPReceiver, capture: bool
) -> None:
    data = fixture_bytes("openai_chat_basic.sse")
    upstream.push(Script(chunks=[(0, data)], headers=SSE))
    body = {"messages": [{"role": "system", "content": "Be brief."}, *HELLO["messages"]]}
    async with gateway(
        {"routes": [chat_route("r", upstream.url)]}, receiver, capture_content=capture
    ) as gw:
        reply = await post(f"{gw.url}/v1/stream/r", body)
        assert reply.status == 200
        spans = await exported(gw, receiver, 2)
    a = the_server_span(spans).attributes
    no_secret_in(spans, SECRET)
    if not capture:
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
        return
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hello"}]},
    ]
    [out] = json.loads(a["gen_ai.output.messages"])
    assert out["role"] == "assistant" and out["finish_reason"] == "stop"
    assert out["parts"] == [{"type": "text", "content": reply.text}]
    assert reply.text


async def test_sample_ratio_zero_exports_nothing(
    upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    upstream.default = Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))], headers=SSE)
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver, sample_ratio=0) as gw:
        for _ in range(3):
            assert (await post(f"{gw.url}/v1/stream/r")).status == 200
        await exported(gw, receiver, 0)
        assert receiver.spans == [] and receiver.requests == 0
        assert "traceparent" not in upstream.seen[0].headers
        # A client's sampled traceparent still decides (parent-based sampling).
        await post(f"{gw.url}/v1/stream/r", headers={"traceparent": TRACEPARENT})
        spans = await exported(gw, receiver, 2)
    assert {s.trace_id for s in spans} == {CLIENT_TRACE}


async def test_an_unsampled_clients_context_still_goes_upstream(
    upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    """W3C Trace Context: the upstream continues the client's trace with its unsampled flag,
    rather than starting a trace of its own that it might sample."""
    upstream.default = Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))], headers=SSE)
    unsampled = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"
    doc = {"routes": [chat_route("r", upstream.url)]}
    async with gateway(doc, receiver, sample_ratio=0) as gw:
        headers = {"traceparent": unsampled, "tracestate": "vendor=abc"}
        assert (await post(f"{gw.url}/v1/stream/r", headers=headers)).status == 200
        bad = {"traceparent": unsampled + "-extra"}  # malformed: not sent on
        assert (await post(f"{gw.url}/v1/stream/r", headers=bad)).status == 200
        # Well shaped but invalid (W3C: an all-zero trace id or parent id, version ff): ignored.
        for invalid in (
            f"00-{'0' * 32}-{CLIENT_SPAN}-01",
            f"00-{CLIENT_TRACE}-{'0' * 16}-00",
            f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        ):
            headers = {"traceparent": invalid, "tracestate": "vendor=abc"}
            assert (await post(f"{gw.url}/v1/stream/r", headers=headers)).status == 200
        await exported(gw, receiver, 0)
    assert receiver.spans == []
    first, *others = (seen.headers for seen in upstream.seen)
    assert (first["traceparent"], first["tracestate"]) == (unsampled, "vendor=abc")
    assert len(others) == 4
    for headers in others:
        assert "traceparent" not in headers and "tracestate" not in headers


async def test_collector_down_streams_unaffected_drops_counted(upstream: FakeUpstream) -> None:
    upstream.default = Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))], headers=SSE)
    dead = f"http://127.0.0.1:{free_port()}"
    doc = traced({"routes": [chat_route("r", upstream.url)]}, dead)
    async with running_gateway(doc) as gw:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        replies = await asyncio.gather(*(post(f"{gw.url}/v1/stream/r") for _ in range(5)))
        assert loop.time() - t0 < 2.0
        assert all(r.status == 200 and r.last[0] == "end" for r in replies)
        await wait_for(lambda: not gw.state.sessions)
        tracing = tracing_of(gw.state)
        assert tracing is not None
        await asyncio.to_thread(tracing.force_flush, 15.0)
        labels = {"reason": "export_failed"}
        name = "gateway_trace_spans_dropped_total"
        assert await metric_value(gw.url, name, labels) == 10  # 5 streams x (stream + attempt)
        # Still serving normally after the failed exports.
        assert (await post(f"{gw.url}/v1/stream/r")).status == 200


# -- front doors, rejections, lifetime -----------------------------------------------------------

FRONT_DOORS = {
    "/v1/chat/completions": {"model": "r", "stream": True, "messages": HELLO["messages"]},
    "/v1/responses": {"model": "r", "stream": True, "input": "Hello"},
    "/v1/messages": {"model": "r", "stream": True, "max_tokens": 64, "messages": HELLO["messages"]},
}


@pytest.mark.parametrize("path", sorted(FRONT_DOORS))
async def test_front_doors_are_traced(
    upstream: FakeUpstream, receiver: OTLPReceiver, path: str
) -> None:
    upstream.push(Script(chunks=[(0, fixture_bytes("openai_chat_usage.sse"))], headers=SSE))
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver) as gw:
        headers = {"traceparent": TRACEPARENT, "x-api-key": "x", "Authorization": "Bearer x"}
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{gw.url}{path}", json=FRONT_DOORS[path], headers=headers) as r,
        ):
            assert r.status == 200
            await r.read()
        spans = await exported(gw, receiver, 2)
    server = the_server_span(spans)
    assert server.trace_id == CLIENT_TRACE
    assert server.attributes["gateway.route"] == "r"
    assert server.attributes["gateway.outcome"] == "completed"
    assert server.attributes["gen_ai.usage.output_tokens"] > 0
    assert upstream.seen[0].headers["traceparent"].split("-")[1] == CLIENT_TRACE


async def test_rejections_before_the_stream_get_no_span(receiver: OTLPReceiver) -> None:
    route = {"name": "demo", "provider": "simulated"}
    async with gateway({"routes": [route]}, receiver) as gw:
        reply = await post(f"{gw.url}/v1/stream/demo", {"messages": "nope"})
        assert reply.status == 400
        await exported(gw, receiver, 0)
        assert receiver.spans == []


async def test_spans_queued_at_shutdown_are_flushed(
    upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    upstream.push(Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))], headers=SSE))
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver) as gw:
        assert (await post(f"{gw.url}/v1/stream/r")).status == 200
        await wait_for(lambda: not gw.state.sessions)
        tracing = tracing_of(gw.state)
        assert tracing is not None
    # The app's cleanup flushed the queue (off the event loop) and stopped tracing.
    assert len(await receiver.wait_for(2)) == 2
    assert tracing_of(gw.state) is None
    late = tracing.start_stream({}, "r", request_model="m", provider="openai-chat")
    assert late is not None
    late.finish(outcome="completed")
    registry = gw.state.metrics.registry
    dropped = registry.get_sample_value("gateway_trace_spans_dropped_total", {"reason": "shutdown"})
    assert dropped == 1


async def test_reload_keeps_the_running_tracing(
    tmp_path: Path, upstream: FakeUpstream, receiver: OTLPReceiver, caplog: Any
) -> None:
    doc = {"routes": [chat_route("r", upstream.url)]}
    async with gateway(doc, receiver) as gw:
        running = tracing_of(gw.state)
        assert running is not None
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(traced(doc, receiver.url, sample_ratio=0.5)))
        assert reload_config(gw.app, str(path))
        assert tracing_of(gw.state) is running  # a tracing change needs a restart
        assert "tracing_change_needs_restart" in caplog.text
        upstream.push(Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))], headers=SSE))
        assert (await post(f"{gw.url}/v1/stream/r")).status == 200
        assert len(await exported(gw, receiver, 2)) == 2


# -- hostile trace headers, failing streams ------------------------------------------------------


async def test_hostile_trace_headers_through_the_gateway(
    upstream: FakeUpstream, receiver: OTLPReceiver, caplog: Any
) -> None:
    """Two ``traceparent`` headers restart the trace (W3C); several ``tracestate`` headers are
    one list; an invalid ``tracestate`` is dropped. Nothing of it reaches a log line."""
    upstream.default = Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))], headers=SSE)
    twice = CIMultiDict(
        [("traceparent", TRACEPARENT), ("traceparent", f"00-{'1' * 32}-{CLIENT_SPAN}-01")]
    )
    states = CIMultiDict(
        [("traceparent", TRACEPARENT), ("tracestate", "a=1"), ("tracestate", "b=2")]
    )
    bad = CIMultiDict([("traceparent", TRACEPARENT), ("tracestate", "BAD=<" + "x" * 600)])
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver) as gw:
        for headers in (twice, states, bad):
            assert (await post(f"{gw.url}/v1/stream/r", headers=headers)).status == 200
        spans = await exported(gw, receiver, 6)
    restarted, joined, dropped = sorted(kind(spans, "SERVER"), key=lambda s: s.start_ns)
    assert restarted.trace_id not in (CLIENT_TRACE, "1" * 32)
    assert restarted.parent_span_id == ""
    assert (joined.trace_id, joined.trace_state) == (CLIENT_TRACE, "a=1,b=2")
    assert (dropped.trace_id, dropped.trace_state) == (CLIENT_TRACE, "")
    first, second, third = (seen.headers for seen in upstream.seen)
    assert context_of(first["traceparent"])[0] == restarted.trace_id
    assert second["tracestate"] == "a=1,b=2" and "tracestate" not in third
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warned if r.name.startswith("opentelemetry")] == []
    assert not any("x" * 100 in r.getMessage() for r in warned)


FAILURES: dict[str, tuple[Script | None, dict[str, Any], str, str, int | None]] = {
    # name: (upstream script or None for a refused connection, route extras,
    #        stream outcome, error.type, the attempt's HTTP status)
    "connect_refused": (None, {}, "upstream_error", "upstream_connect", None),
    "first_event_before_headers": (
        Script(chunks=[(0, chat_chunk("Hi"))], headers=SSE, delay_before_headers=30),
        {"timeouts": {"first_event": "0.3s"}},
        "upstream_timeout",
        "upstream_timeout",
        None,
    ),
    "first_event_after_headers": (
        Script(headers=SSE, hang_after=True),
        {"timeouts": {"first_event": "0.3s"}},
        "upstream_timeout",
        "upstream_timeout",
        200,
    ),
    "reset_mid_stream": (
        Script(chunks=[(0, chat_chunk("Hi"))], headers=SSE, reset_after=True),
        {},
        "upstream_truncated",
        "upstream_truncated",
        200,
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_a_failing_stream_ends_each_span_once_with_its_error(
    upstream: FakeUpstream, receiver: OTLPReceiver, failure: str
) -> None:
    script, extra, outcome, code, status = FAILURES[failure]
    base = upstream.url
    if script is None:
        base = f"http://127.0.0.1:{free_port()}"
    else:
        upstream.push(script)
    route = chat_route("r", base, **extra)
    async with gateway({"routes": [route]}, receiver) as gw:
        reply = await post(f"{gw.url}/v1/stream/r")
        spans = await exported(gw, receiver, 2)
        tracing = tracing_of(gw.state)
        assert tracing is not None
        assert await asyncio.to_thread(tracing.force_flush)
    assert len(receiver.spans) == 2  # each ended once
    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    a = server.attributes
    assert (a["gateway.outcome"], a["error.type"], server.status) == (outcome, code, "ERROR")
    assert a["gateway.attempts"] == 1
    assert (client.attributes["error.type"], client.status) == (code, "ERROR")
    assert client.attributes.get("http.response.status_code") == status
    assert client.parent_span_id == server.span_id
    assert ("gen_ai.response.model" in a) is (status is not None)  # an upstream answered
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    no_secret_in(spans, SECRET, "Hello", "Hi")
    assert reply.status in (200, 502, 504)


async def test_abort_before_upstream_headers_is_not_an_error(
    upstream: FakeUpstream, receiver: OTLPReceiver
) -> None:
    upstream.push(Script(chunks=[(0, chat_chunk("Hi"))], headers=SSE, delay_before_headers=30))
    async with gateway({"routes": [chat_route("r", upstream.url)]}, receiver) as gw:
        _, writer = await open_raw(gw.port, "/v1/stream/r", HELLO)
        await wait_for(lambda: bool(upstream.seen))
        writer.transport.abort()
        spans = await exported(gw, receiver, 2)
    server = the_server_span(spans)
    [client] = kind(spans, "CLIENT")
    assert server.attributes["gateway.outcome"] == "client_abort"
    assert server.attributes["gateway.abort_phase"] == "before_upstream_headers"
    assert [e.name for e in server.events] == ["gateway.client_abort"]
    assert server.status == client.status == "UNSET"
    assert "http.response.status_code" not in client.attributes
