"""The app's tracer: sampling, ids, and the hand-off of finished spans to the exporter.

:class:`Tracing` (one per app, made by :func:`gateway.tracing.from_config`) opens a stream's
:class:`~gateway.tracing.spans.StreamSpan` when the stream is sampled and receives every finished
span (:meth:`Tracing.emit`) for the batch processor. It uses the SDK's ``ParentBased
(TraceIdRatioBased)`` sampler, its random id generator, its batch processor (wrapped to count
drops, ``export.py``) and the official OTLP/HTTP exporter; it keeps no global state (no global
tracer provider), so two apps in one process trace independently.

Sampling: a client ``traceparent`` decides (its sampled flag is followed, as OpenTelemetry's
``parentbased`` samplers do); without one, ``sample_ratio`` of the trace ids are kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, TraceFlags, TraceState

from gateway.adapters import GENAI_PROVIDERS
from gateway.config.model import TracingConfig
from gateway.tracing import content
from gateway.tracing.export import (
    BoundedSession,
    DropCountingProcessor,
    DropSink,
    protect_logs,
    traces_url,
)
from gateway.tracing.spans import SAMPLED, UNSET, StreamSpan

__all__ = ["EXPORT_TIMEOUT", "HashedResource", "Tracing", "otlp_exporter", "remote_parent"]

EXPORT_TIMEOUT = 5.0
"""Seconds one OTLP export (with its retries) may take in the exporter's thread."""
_CREDENTIAL_VARS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


def remote_parent(traceparent: str, tracestate: str | None) -> SpanContext | None:
    """The client's span context, or None when its ``traceparent`` is invalid (W3C rules:
    :func:`gateway.tracing.content.parse_traceparent`). Parsed here rather than by the SDK's
    propagator, which logs a warning with the header's text for each bad ``tracestate``."""
    parsed = content.parse_traceparent(traceparent)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    pairs = content.parse_tracestate(tracestate) if tracestate else None
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState(pairs) if pairs else None,
    )


def otlp_exporter(url: str, timeout: float = EXPORT_TIMEOUT) -> OTLPSpanExporter:
    """The official OTLP/HTTP exporter for the traces ``url``: one export (retries included)
    takes at most ``timeout`` s once the collector's answer head arrived, and reads at most
    a bounded answer (:class:`BoundedSession`); its secrets stay out of the logs
    (:func:`protect_logs`). A credential-provider session named by the OpenTelemetry variables
    is left to the SDK."""
    protect_logs(url)
    session = None if any(os.environ.get(v) for v in _CREDENTIAL_VARS) else BoundedSession()
    return OTLPSpanExporter(endpoint=url, timeout=timeout, session=session)


class HashedResource(Resource):
    """A :class:`Resource` that computes its hash once.

    The OTLP encoder groups every span of a batch by resource (a dict keyed by it), and the SDK's
    ``Resource.__hash__`` serialises the attributes to JSON on each call: about a tenth of the
    export thread's time per span (``python -m bench.tracing``). A resource never changes.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(dict(resource.attributes), resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


class Tracing:
    """The tracing part of one app: a tracer, its sampler and the batching exporter."""

    def __init__(
        self,
        config: TracingConfig,
        exporter: SpanExporter,
        drops: DropSink | None = None,
        *,
        max_queue_size: int = 2048,
        schedule_delay: float = 1.0,
    ) -> None:
        self.config = config
        self.capture_content = config.capture_content
        """True: the stream should keep its output text for :meth:`StreamSpan.finish`."""
        self._roots = config.sample_ratio > 0.0
        """False: only streams with a sampled client traceparent are traced."""
        self.processor = DropCountingProcessor(
            exporter, drops, max_queue_size=max_queue_size, schedule_delay=schedule_delay
        )
        self._sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
        self._ids = RandomIdGenerator()
        self.resource = HashedResource(Resource.create({"service.name": config.service_name}))
        self.scope = InstrumentationScope("gateway")

    @classmethod
    def from_config(
        cls, config: TracingConfig | None, drops: DropSink | None = None
    ) -> Tracing | None:
        """The tracing part for ``config`` exporting over OTLP/HTTP, or None when it is off."""
        if config is None or config.otlp_endpoint is None:
            return None
        return cls(config, otlp_exporter(traces_url(config.otlp_endpoint)), drops)

    def start_stream(
        self,
        headers: Mapping[str, str],
        route: str,
        *,
        operation: str = "chat",
        request_model: str | None,
        provider: str,
        started: float | None = None,
    ) -> StreamSpan | None:
        """Open the stream's SERVER span; None (nothing more to do) when it is not sampled.

        ``headers``: the client's request headers, a case-insensitive mapping (aiohttp's
        ``request.headers``) or one with lower-case keys; only ``traceparent`` and
        ``tracestate`` are read (:func:`gateway.tracing.content.trace_headers`: one
        ``traceparent`` only, every ``tracestate``); an invalid ``traceparent`` is ignored, an
        invalid ``tracestate`` dropped, neither logged. ``provider``: the adapter registry name.
        ``started``: the stream's ``time.monotonic()`` start (default: now).
        """
        traceparent, tracestate = content.trace_headers(headers)
        if traceparent is None and not self._roots:
            return None  # ratio 0 and nothing to continue: skip the SDK's sampler entirely
        wall, mono = time.time_ns(), time.monotonic()
        parent = remote_parent(traceparent, tracestate) if traceparent else None
        parent_context = None
        if parent is not None:
            parent_context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        trace_id = parent.trace_id if parent is not None else self._ids.generate_trace_id()
        name = f"{operation} {request_model}" if request_model else operation
        sampled = self._sampler.should_sample(parent_context, trace_id, name, SpanKind.SERVER)
        if sampled.decision is not Decision.RECORD_AND_SAMPLE:
            return None
        genai_provider = GENAI_PROVIDERS.get(provider, "_OTHER")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": genai_provider,
            "gateway.route": route,
        }
        if request_model:
            attributes["gen_ai.request.model"] = request_model
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=SAMPLED,
            trace_state=sampled.trace_state,
        )
        start = wall if started is None else wall + int((started - mono) * 1e9)
        return StreamSpan(
            self,
            name,
            context,
            parent,
            attributes,
            start,
            wall,
            mono,
            mono if started is None else started,
        )

    def new_span_id(self) -> int:
        return self._ids.generate_span_id()

    def emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start: int,
        end: int,
        events: Sequence[Event] = (),
        status: Status = UNSET,
    ) -> None:
        """Hand one finished span to the batch processor (which never blocks)."""
        span = ReadableSpan(
            name,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=attributes,
            events=events,
            kind=kind,
            status=status,
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope,
        )
        self.processor.on_end(span)

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export what is queued now (blocking; for tests and tools). The SDK exports in the
        calling thread and does not enforce ``timeout``: each export is bounded by the
        exporter's own (:data:`EXPORT_TIMEOUT`, :class:`BoundedSession`)."""
        return self.processor.force_flush(int(timeout * 1000))

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush queued spans for at most ``timeout`` s and stop. Blocking: from async code use
        ``await asyncio.to_thread(tracing.shutdown)``. Idempotent; spans ended later are
        counted as dropped (``shutdown``)."""
        self.processor.shutdown(timeout)
