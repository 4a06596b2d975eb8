"""Getting finished spans to the collector without ever holding up a stream.

::

    span.end() (event loop) ──> DropCountingProcessor.on_end ──> BatchSpanProcessor queue (bounded)
                                  │ full: counts queue_full          │ worker thread, batches
                                  │ after shutdown: counts shutdown  ▼
                                  └──────────────────────> CountingExporter ──> OTLP/HTTP protobuf
                                                              failed batch: counts export_failed

The SDK's :class:`BatchSpanProcessor` does the batching in its own thread; ``on_end`` only appends
to a bounded deque, so a slow or dead collector costs the event loop nothing. The SDK reports
its own drops only through OpenTelemetry metrics, so the two wrappers here count them for
Prometheus: the exporter counts what it hands on and what fails, and the processor knows the
queue length as ``enqueued - dropped - handed`` (each counter written by one thread only). A
batch popped by the worker between that check and the append can make one drop count that did
not happen; the count errs high, never hides a loss.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["CountingExporter", "DropCountingProcessor", "DropSink", "traces_url"]

log = logging.getLogger("gateway.tracing")


class DropSink(Protocol):
    """Where drops are counted (:class:`gateway.metrics.TraceMetrics`)."""

    def spans_dropped(self, reason: str, count: int = 1) -> None: ...


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: ``endpoint`` + ``/v1/traces`` when it has no path, else as is."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, "/v1/traces", parts.query, ""))
    return endpoint


class CountingExporter(SpanExporter):
    """Wraps the real exporter: counts spans handed on (``handed``) and failed batches.

    Called only from the batch worker thread (and from ``force_flush``/``shutdown``).
    """

    def __init__(self, inner: SpanExporter, drops: DropSink | None) -> None:
        self._inner = inner
        self._drops = drops
        self.handed = 0
        self.failed = 0
        self.settled = 0
        """Spans whose export returned (sent or failed)."""
        self._lock = threading.Lock()
        self._abandoned = False
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        count = len(spans)
        self.handed += count
        try:
            result = self._inner.export(spans)
        except Exception:  # the SDK would log and lose the batch: count it instead
            log.warning("trace export raised; %d spans lost", count, exc_info=True)
            result = SpanExportResult.FAILURE
        with self._lock:  # once per batch, in the export thread
            self.settled += count
            if result is not SpanExportResult.SUCCESS:
                self.failed += count
                if self._drops is not None and not self._abandoned:
                    self._drops.spans_dropped("export_failed", count)
        return result

    def abandon(self, accepted: int) -> int:
        """Give up on what is still unsent of the ``accepted`` spans (queued or in an export
        that outlived the shutdown's bound) and return how many that is. An export that
        returns later counts nothing: its spans are among these."""
        with self._lock:
            self._abandoned = True
            return max(accepted - self.settled, 0)

    def abort(self) -> None:
        """Stop the inner exporter now: its retries and waits end, later exports fail fast."""
        if not self._closed:
            self._closed = True
            self._inner.shutdown()

    def shutdown(self) -> None:
        self.abort()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class DropCountingProcessor(SpanProcessor):
    """A :class:`BatchSpanProcessor` whose lost spans are counted in ``drops``.

    ``shutdown(timeout)`` flushes what is queued for at most ``timeout`` seconds, then stops the
    exporter; whatever could not be sent is counted as ``export_failed``.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        drops: DropSink | None,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
    ) -> None:
        self.exporter = CountingExporter(exporter, drops)
        self._drops = drops
        self._max = max_queue_size
        self._batch = BatchSpanProcessor(
            self.exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(max_export_batch_size, max_queue_size),
            schedule_delay_millis=schedule_delay * 1000,
        )
        self.enqueued = 0
        self.dropped = 0
        self._shut = False

    def queued(self) -> int:
        """Spans waiting in the queue now (see the module docstring for the accounting)."""
        return self.enqueued - self.dropped - self.exporter.handed

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        if self._shut:
            if self._drops is not None:
                self._drops.spans_dropped("shutdown")
            return
        if self.queued() >= self._max:  # the deque drops its oldest span to take this one
            self.dropped += 1
            if self._drops is not None:
                self._drops.spans_dropped("queue_full")
        self.enqueued += 1
        self._batch.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush for at most ``timeout`` seconds (blocking; run it off the event loop), then stop.

        Idempotent. The SDK's own shutdown can wait 30 s on a dead collector, and an export in
        flight to a collector that never answers cannot be interrupted: when the time is up this
        one stops the exporter's retries, counts every span not yet exported as
        ``export_failed`` and returns, leaving the export thread (a daemon) behind.
        """
        if self._shut:
            return
        self._shut = True
        worker = threading.Thread(target=self._batch.shutdown, name="trace-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            lost = self.exporter.abandon(self.enqueued - self.dropped)
            if lost and self._drops is not None:
                self._drops.spans_dropped("export_failed", lost)
            self.exporter.abort()
