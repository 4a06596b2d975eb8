"""Tracing: OpenTelemetry spans for streams and their upstream attempts (contract section 14).

The part is optional: it needs the ``[otel]`` extra, and this package imports OpenTelemetry only
when tracing is configured, so the gateway runs without it. Use::

    tracing = gateway.tracing.from_config(config.tracing, TraceMetrics(metrics.registry))
    span = tracing.start_stream(request.headers, route.name, ...) if tracing else None

The pieces: ``tracer.py`` (:class:`Tracing`: sampling, ids, the exporter), ``spans.py``
(:class:`StreamSpan`, :class:`AttemptSpan`, built finished from what the stream recorded),
``export.py`` (batching, bounded queue, drop counting), ``content.py`` (safe attribute values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.model import TracingConfig
    from gateway.tracing.export import DropSink
    from gateway.tracing.spans import AttemptSpan, StreamSpan
    from gateway.tracing.tracer import Tracing

__all__ = ["AttemptSpan", "StreamSpan", "Tracing", "from_config"]


def from_config(config: TracingConfig | None, drops: DropSink | None = None) -> Tracing | None:
    """The app's tracing part, or None when ``config`` is None (tracing off; imports nothing).

    ``drops`` counts lost spans (``gateway.metrics.TraceMetrics``). The config loader already
    refused a tracing section without the ``[otel]`` extra installed.
    """
    if config is None or config.otlp_endpoint is None:
        return None
    from gateway.tracing.tracer import Tracing

    return Tracing.from_config(config, drops)


def __getattr__(name: str) -> object:
    """``gateway.tracing.Tracing`` and friends, imported on first use (they need the extra)."""
    if name in ("AttemptSpan", "StreamSpan"):
        from gateway.tracing import spans

        return getattr(spans, name)
    if name == "Tracing":
        from gateway.tracing import tracer

        return tracer.Tracing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
