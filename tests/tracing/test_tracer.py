"""gateway/tracing/tracer.py: sampling, W3C trace context, and the resource, on a real OTLP/HTTP
receiver."""

from __future__ import annotations

import logging

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.sdk.resources import Resource

from gateway.tracing.tracer import HashedResource
from tests.support.otlp_receiver import OTLPReceiver
from tests.tracing.conftest import MakeTracing, flush
from tests.tracing.test_spans import CLIENT_SPAN, CLIENT_TRACE, SAMPLED, one, start

SAMPLED_PARENT = ("traceparent", SAMPLED["traceparent"])


def test_hashed_resource_is_the_same_resource_hashed_once() -> None:
    plain = Resource.create({"service.name": "gw"})
    hashed = HashedResource(plain)
    assert hashed == plain and hash(hashed) == hash(plain)
    assert dict(hashed.attributes) == dict(plain.attributes)
    assert {hashed: 1}[hashed] == 1
    assert hashed != HashedResource(Resource.create({"service.name": "other"}))


async def test_traceparent_is_continued_and_injected_upstream(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    tracing = make_tracing(sample_ratio=0.0)  # the client's sampled flag decides
    span = start(tracing.start_stream(SAMPLED, "demo", request_model="m", provider="simulated"))
    attempt = span.attempt("primary", "simulated", "http://127.0.0.1:1/x")
    injected = attempt.inject_headers()
    attempt.end(200)
    span.finish(outcome="completed")
    await flush(tracing)
    spans = await receiver.wait_for(2)

    server, client = one(spans, "SERVER"), one(spans, "CLIENT")
    assert server.trace_id == client.trace_id == CLIENT_TRACE
    assert server.parent_span_id == CLIENT_SPAN
    assert server.trace_state == client.trace_state == "vendor=abc"
    version, trace_id, parent_id, flags = injected["traceparent"].split("-")
    assert (version, trace_id, parent_id, flags) == ("00", CLIENT_TRACE, client.span_id, "01")
    assert injected["tracestate"] == "vendor=abc"


async def test_unsampled_parent_and_ratio_zero_export_nothing(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    tracing = make_tracing(sample_ratio=0.0)
    for _ in range(20):
        assert tracing.start_stream({}, "demo", request_model="m", provider="simulated") is None
    unsampled = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"}
    assert tracing.start_stream(unsampled, "demo", request_model="m", provider="simulated") is None
    # A sampled one goes through the same pipeline: only it arrives.
    span = start(tracing.start_stream(SAMPLED, "demo", request_model="m", provider="simulated"))
    span.finish(outcome="completed")
    await flush(tracing)
    await receiver.wait_for(1)
    assert [s.trace_id for s in receiver.spans] == [CLIENT_TRACE]
    assert tracing.processor.enqueued == 1


async def test_ratio_one_ignores_a_malformed_traceparent(
    make_tracing: MakeTracing, receiver: OTLPReceiver
) -> None:
    tracing = make_tracing()
    bad = {"traceparent": "not-a-traceparent"}
    span = start(tracing.start_stream(bad, "demo", request_model="m", provider="simulated"))
    span.finish(outcome="completed")
    await flush(tracing)
    [server] = await receiver.wait_for(1)
    assert server.parent_span_id == "" and server.trace_id != "0" * 32


async def test_hostile_trace_headers_restart_quietly(
    make_tracing: MakeTracing, receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """W3C Trace Context: a ``traceparent`` sent twice restarts the trace (the first does not
    win); a bad ``tracestate`` is dropped and the parent kept; several ``tracestate`` headers
    are one list. None of it is logged: a client must not be able to write a warning line,
    with its own text in it, per request."""
    tracing = make_tracing()
    twice = CIMultiDictProxy(
        CIMultiDict([SAMPLED_PARENT, ("traceparent", f"00-{'1' * 32}-{CLIENT_SPAN}-01")])
    )
    restarted = start(tracing.start_stream(twice, "d", request_model="m", provider="simulated"))
    assert restarted.parent is None
    assert f"{restarted.context.trace_id:032x}" not in (CLIENT_TRACE, "1" * 32)
    bad_state = CIMultiDictProxy(CIMultiDict([SAMPLED_PARENT, ("tracestate", "x" * 600)]))
    kept = start(tracing.start_stream(bad_state, "d", request_model="m", provider="simulated"))
    assert kept.parent is not None and f"{kept.context.trace_id:032x}" == CLIENT_TRACE
    assert not kept.context.trace_state
    two_states = CIMultiDictProxy(
        CIMultiDict([SAMPLED_PARENT, ("tracestate", "a=1"), ("tracestate", "b=2")])
    )
    joined = start(tracing.start_stream(two_states, "d", request_model="m", provider="simulated"))
    assert joined.context.trace_state.to_header() == "a=1,b=2"
    for span in (restarted, kept, joined):
        span.finish(outcome="completed")
    await flush(tracing)
    assert len(await receiver.wait_for(3)) == 3
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{CLIENT_TRACE.upper()}-{CLIENT_SPAN}-01",
        f"00-{'0' * 32}-{CLIENT_SPAN}-01",
        f"00-{CLIENT_TRACE}-{'0' * 16}-01",
        f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra",
        f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-0g",
        f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01" + "x" * 4000,
    ],
)
def test_an_invalid_traceparent_restarts_the_trace(
    make_tracing: MakeTracing, traceparent: str
) -> None:
    tracing = make_tracing()
    headers = {"traceparent": traceparent}
    span = start(tracing.start_stream(headers, "d", request_model="m", provider="simulated"))
    assert span.parent is None
    assert f"{span.context.trace_id:032x}" != CLIENT_TRACE


def test_a_later_version_is_continued(make_tracing: MakeTracing) -> None:
    tracing = make_tracing(sample_ratio=0.0)
    headers = {"traceparent": f"cc-{CLIENT_TRACE}-{CLIENT_SPAN}-01-what-the-future-holds"}
    span = start(tracing.start_stream(headers, "d", request_model="m", provider="simulated"))
    assert span.parent is not None and span.parent.is_remote
    assert f"{span.parent.span_id:016x}" == CLIENT_SPAN
