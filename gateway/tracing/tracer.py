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
from opentelemetry.trace import SpanContext, SpanKind, Status
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.adapters import GENAI_PROVIDERS
from gateway.config.model import TracingConfig
from gateway.tracing.export import DropCountingProcessor, DropSink, traces_url
from gateway.tracing.spans import SAMPLED, UNSET, StreamSpan

__all__ = ["EXPORT_TIMEOUT", "HashedResource", "Tracing"]

EXPORT_TIMEOUT = 5.0
"""Seconds one OTLP export (with its retries) may take in the exporter's thread."""
_PROPAGATOR = TraceContextTextMapPropagator()


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
        self._roots = config.sample_ratio > 0.0
        """False: only streams with a sampled client traceparent are traced."""
        """True: the stream should keep its output text for :meth:`StreamSpan.finish`."""
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
        exporter = OTLPSpanExporter(
            endpoint=traces_url(config.otlp_endpoint), timeout=EXPORT_TIMEOUT
        )
        return cls(config, exporter, drops)

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
        ``tracestate`` are read. ``provider``: the adapter registry name. ``started``: the
        stream's ``time.monotonic()`` start (default: now).
        """
        traceparent = headers.get("traceparent")
        if not traceparent and not self._roots:
            return None  # ratio 0 and nothing to continue: skip the SDK's sampler entirely
        wall, mono = time.time_ns(), time.monotonic()
        parent_context = None
        parent: SpanContext | None = None
        if traceparent:
            carrier = {"traceparent": traceparent, "tracestate": headers.get("tracestate") or ""}
            parent_context = _PROPAGATOR.extract(carrier)
            parent = trace.get_current_span(parent_context).get_span_context()
            if not parent.is_valid:
                parent, parent_context = None, None
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
        """Export what is queued now (blocking; for tests and tools)."""
        return self.processor.force_flush(int(timeout * 1000))

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush queued spans for at most ``timeout`` s and stop. Blocking: from async code use
        ``await asyncio.to_thread(tracing.shutdown)``. Idempotent; spans ended later are
        counted as dropped (``shutdown``)."""
        self.processor.shutdown(timeout)
