"""Tracing series: spans the exporter could not deliver (``gateway/tracing/``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

TRACE_DROP_REASONS = ("queue_full", "export_failed", "shutdown")
"""Why a finished span never reached the collector (closed set).

``queue_full``: the bounded export queue was full (collector slow or down), so the oldest queued
span was dropped; ``export_failed``: the collector refused the batch or could not be reached
after the exporter's retries; ``shutdown``: a span ended after tracing was shut down.
"""


class TraceMetrics:
    """``gateway_trace_spans_dropped_total{reason}``, registered in ``registry`` (the app's
    :attr:`Metrics.registry`; once per registry). Called from the event loop (queue full) and
    from the exporter's thread (failed exports): prometheus_client counters are thread-safe."""

    __slots__ = ("_dropped",)

    def __init__(self, registry: CollectorRegistry) -> None:
        family = Counter(
            "gateway_trace_spans_dropped",
            "Finished trace spans that were never exported, by reason.",
            ["reason"],
            registry=registry,
        )
        self._dropped = {reason: family.labels(reason) for reason in TRACE_DROP_REASONS}

    def spans_dropped(self, reason: str, count: int = 1) -> None:
        """Count ``count`` spans lost for ``reason`` (one of :data:`TRACE_DROP_REASONS`)."""
        self._dropped[reason].inc(count)
