"""gateway/tracing/tracer.py: sampling, W3C trace context, and the resource, on a real OTLP/HTTP
receiver."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource

from gateway.tracing.tracer import HashedResource
from tests.support.otlp_receiver import OTLPReceiver
from tests.tracing.conftest import MakeTracing, flush
from tests.tracing.test_spans import CLIENT_SPAN, CLIENT_TRACE, SAMPLED, one, start


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
