"""gateway/tracing/spans.py, driven directly and checked on a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import time

import pytest

from gateway.tracing import StreamSpan
from gateway.tracing.spans import AttemptSpan
from tests.support.heap import live, new_objects_only
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.tracing.conftest import MakeTracing, flush

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SAMPLED = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "vendor=abc"}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]


def one(spans: list[ReceivedSpan], kind: str) -> ReceivedSpan:
    found = [s for s in spans if s.kind == kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def start(tracing_span: StreamSpan | None) -> StreamSpan:
    assert tracing_span is not None
    return tracing_span


async def test_completed_stream_span_and_attempt(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    tracing = make_tracing(service_name="gw-test")
    t0 = time.monotonic()
    span = start(
        tracing.start_stream({}, "demo", request_model="m-1", provider="anthropic", started=t0)
    )
    attempt = span.attempt(
        "primary", "anthropic", "https://user:pw@up.example:8443/v1/messages?key=s3cret"
    )
    attempt.end(200)
    span.finish(
        outcome="completed",
        ended=t0 + 0.5,
        app="team-a",
        response_model="m-1-2025",
        input_tokens=12,
        output_tokens=34,
        finish_reasons=["stop"],
        first_content=t0 + 0.2,
        attempts=1,
        input_messages=MESSAGES,
        output_text="Hi there",
    )
    await flush(tracing)
    spans = await receiver.wait_for(2)

    server = one(spans, "SERVER")
    assert server.name == "chat m-1"
    assert server.resource["service.name"] == "gw-test"
    assert server.parent_span_id == ""
    assert server.status == "UNSET"
    assert server.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "m-1",
        "gateway.route": "demo",
        "gateway.outcome": "completed",
        "gateway.app": "team-a",
        "gen_ai.response.model": "m-1-2025",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "gen_ai.response.finish_reasons": ("stop",),
        "gateway.attempts": 1,
        "gateway.time_to_first_token_s": server.attributes["gateway.time_to_first_token_s"],
        "gen_ai.response.time_to_first_chunk": server.attributes["gateway.time_to_first_token_s"],
    }
    assert abs(server.attributes["gateway.time_to_first_token_s"] - 0.2) < 1e-6
    # The span covers the recorded times, back-dated to the monotonic readings given.
    assert abs((server.end_ns - server.start_ns) / 1e9 - 0.5) < 1e-3
    [first] = server.events
    assert first.name == "gateway.first_token"
    assert abs((first.time_ns - server.start_ns) / 1e9 - 0.2) < 1e-3

    client = one(spans, "CLIENT")
    assert client.name == "POST"
    assert client.trace_id == server.trace_id
    assert client.parent_span_id == server.span_id
    assert client.status == "UNSET"
    assert client.attributes == {
        "http.request.method": "POST",
        "server.address": "up.example",
        "server.port": 8443,
        "url.full": "https://REDACTED:REDACTED@up.example:8443/v1/messages?key=REDACTED",
        "http.response.status_code": 200,
        "gateway.upstream": "primary",
        "gen_ai.provider.name": "anthropic",
    }
    assert "s3cret" not in repr(spans) and "pw@" not in repr(spans)


async def test_failed_stream_has_error_status_and_code(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    tracing = make_tracing()
    span = start(tracing.start_stream({}, "demo", request_model=None, provider="simulated"))
    attempt = span.attempt("primary", "simulated", "http://127.0.0.1:9/v1")
    attempt.end(None, "upstream_connect")
    span.finish(outcome="upstream_error", error_code="upstream_connect")
    await flush(tracing)
    spans = await receiver.wait_for(2)

    server = one(spans, "SERVER")
    assert server.name == "chat"  # no model known: the operation alone
    assert server.attributes["gen_ai.provider.name"] == "_OTHER"
    assert "gen_ai.request.model" not in server.attributes
    assert (server.status, server.status_message) == ("ERROR", "upstream_connect")
    assert server.attributes["error.type"] == "upstream_connect"
    assert server.attributes["gateway.outcome"] == "upstream_error"
    assert server.events == []  # no first token
    client = one(spans, "CLIENT")
    assert (client.status, client.attributes["error.type"]) == ("ERROR", "upstream_connect")
    assert "http.response.status_code" not in client.attributes
    assert client.attributes["server.port"] == 9


async def test_client_abort_event(make_tracing: MakeTracing, receiver: OTLPReceiver) -> None:
    tracing = make_tracing()
    t0 = time.monotonic()
    span = start(
        tracing.start_stream({}, "demo", request_model="m", provider="simulated", started=t0)
    )
    span.finish(
        outcome="client_abort",
        abort_phase="mid_stream",
        first_content=t0 + 0.1,
        aborted=t0 + 0.3,
        ended=t0 + 0.31,
    )
    await flush(tracing)
    [server] = await receiver.wait_for(1)
    assert server.status == "UNSET"  # the client left: not the gateway's failure
    assert server.attributes["gateway.abort_phase"] == "mid_stream"
    assert [e.name for e in server.events] == ["gateway.first_token", "gateway.client_abort"]
    abort = server.events[1]
    assert abort.attributes == {"gateway.abort_phase": "mid_stream"}
    assert abs((abort.time_ns - server.start_ns) / 1e9 - 0.3) < 1e-3


async def test_fallback_gives_two_attempt_spans(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    tracing = make_tracing()
    span = start(tracing.start_stream({}, "demo", request_model="m", provider="openai-chat"))
    first = span.attempt("primary", "openai-chat", "http://127.0.0.1:7001/v1/chat/completions")
    first.end(503, "upstream_error")
    second = span.attempt("fallback-1", "gemini", "http://127.0.0.1:7002/v1beta/models/x")
    second.end(200)
    span.finish(outcome="completed", attempts=2)
    await flush(tracing)
    spans = await receiver.wait_for(3)

    server = one(spans, "SERVER")
    attempts = sorted((s for s in spans if s.kind == "CLIENT"), key=lambda s: s.start_ns)
    assert [a.attributes["gateway.upstream"] for a in attempts] == ["primary", "fallback-1"]
    assert [a.parent_span_id for a in attempts] == [server.span_id, server.span_id]
    assert [a.attributes["http.response.status_code"] for a in attempts] == [503, 200]
    assert [a.status for a in attempts] == ["ERROR", "UNSET"]
    assert [a.attributes["gen_ai.provider.name"] for a in attempts] == ["openai", "gcp.gemini"]
    assert [a.attributes["server.port"] for a in attempts] == [7001, 7002]
    assert len({a.span_id for a in attempts}) == 2


async def test_content_is_recorded_only_when_asked(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    off = make_tracing()
    on = make_tracing(capture_content=True)
    assert (off.capture_content, on.capture_content) == (False, True)
    for tracing, route in ((off, "off"), (on, "on")):
        span = start(tracing.start_stream({}, route, request_model="m", provider="simulated"))
        span.finish(
            outcome="completed",
            finish_reasons=["stop"],
            input_messages=MESSAGES,
            output_text="Hi there",
        )
        await flush(tracing)
    spans = await receiver.wait_for(2)
    by_route = {s.attributes["gateway.route"]: s for s in spans}
    assert not any(k.endswith("messages") for k in by_route["off"].attributes)
    assert "Hello" not in repr(by_route["off"])
    attrs = by_route["on"].attributes
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hello"}]},
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hi there"}],
            "finish_reason": "stop",
        }
    ]


async def test_finish_is_once_and_ends_open_attempts(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    tracing = make_tracing()
    span = start(tracing.start_stream({}, "demo", request_model="m", provider="simulated"))
    attempt = span.attempt("primary", "simulated", "http://127.0.0.1:1/x")
    span.finish(outcome="internal")
    span.finish(outcome="completed")  # ignored: the span already ended
    attempt.end(200)  # ignored: finish ended it
    await flush(tracing)
    spans = await receiver.wait_for(2)
    server, client = one(spans, "SERVER"), one(spans, "CLIENT")
    assert server.attributes["gateway.outcome"] == "internal"
    assert "http.response.status_code" not in client.attributes
    assert client.end_ns <= server.end_ns
    assert tracing.processor.enqueued == 2


async def test_an_attempt_stays_inside_its_stream_span_when_the_wall_clock_steps(
    make_tracing: MakeTracing, receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stream span maps monotonic readings to wall time once, at its start; an attempt that
    # read the wall clock itself ended after its parent when the two disagreed (by microseconds
    # under load, by seconds after an NTP step).
    tracing = make_tracing()
    span = start(tracing.start_stream({}, "demo", request_model="m", provider="simulated"))
    stepped = time.time_ns() + 5_000_000_000
    monkeypatch.setattr(time, "time_ns", lambda: stepped)  # the wall clock jumps 5 s ahead
    attempt = span.attempt("primary", "simulated", "http://127.0.0.1:1/x")
    attempt.end(200)
    span.finish(outcome="completed", ended=time.monotonic())
    monkeypatch.undo()
    await flush(tracing)
    spans = await receiver.wait_for(2)
    server, client = one(spans, "SERVER"), one(spans, "CLIENT")
    assert server.start_ns <= client.start_ns <= client.end_ns <= server.end_ns
    assert server.end_ns - server.start_ns < 1_000_000_000


def test_a_finished_span_and_its_attempts_are_freed_without_the_collector(
    make_tracing: MakeTracing,
) -> None:
    # The stream path leaves no reference cycle (tests/stream/test_session.py); a traced
    # stream's spans, which share their clock, must not bring one back.
    tracing = make_tracing()
    with new_objects_only():
        span = start(tracing.start_stream({}, "demo", request_model="m", provider="simulated"))
        span.attempt("primary", "simulated", "http://127.0.0.1:1/x")
        span.finish(outcome="completed")
        assert live(StreamSpan, AttemptSpan) == 2
        del span
        assert live(StreamSpan, AttemptSpan) == 0
