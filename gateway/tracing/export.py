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

The collector's answers are read by :class:`BoundedSession`: within the export's time and up to
:data:`MAX_ANSWER_BYTES`, so a collector that streams an endless body or trickles it byte by
byte costs neither unbounded memory nor a stuck export thread. :class:`SecretFilter` keeps the
exporter's secrets (query values and user info of the endpoint, the values of
``OTEL_EXPORTER_OTLP_*HEADERS``) out of the log lines the SDK and ``urllib3`` write about it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import requests
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = [
    "MAX_ANSWER_BYTES",
    "SECRET_FILTER",
    "BoundedSession",
    "CountingExporter",
    "DropCountingProcessor",
    "DropSink",
    "QueueFullFilter",
    "SecretFilter",
    "protect_logs",
    "traces_url",
]

log = logging.getLogger("gateway.tracing")

MAX_ANSWER_BYTES = 64 * 1024
"""Bytes of a collector's answer body read at most (an OTLP answer is a few bytes)."""
_CHUNK = 16 * 1024
_HEADER_VARS = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
_MIN_SECRET = 4
"""Shorter values are not scrubbed: replacing every ``a`` of a log line hides nothing."""
SCRUBBED_LOGGERS = (
    "opentelemetry.util.re",  # a malformed OTEL_EXPORTER_OTLP_HEADERS entry, printed whole
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",  # failed exports: the URL
    "opentelemetry.exporter.otlp.common.http",
    "urllib3.connectionpool",  # debug lines with the request's path and query
)


class BoundedSession(requests.Session):
    """The OTLP exporter's HTTP session: reads each answer's body within the request's
    ``timeout`` (counted from the request's start, not per read) and up to
    :data:`MAX_ANSWER_BYTES`; past either it closes the connection and returns the answer
    with what it read. A body that fails to read (broken framing, a reset) is cut the same
    way: the status line already said whether the spans were accepted."""

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        timeout = kwargs.get("timeout")
        began = time.monotonic()
        kwargs["stream"] = True
        response = super().request(method, url, *args, **kwargs)
        deadline = began + timeout if isinstance(timeout, (int, float)) else None
        response._content = _read_bounded(response, deadline)
        return response


def _read_bounded(response: requests.Response, deadline: float | None) -> bytes:
    body = bytearray()
    whole = False
    try:
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES or (
                deadline is not None and time.monotonic() > deadline
            ):
                break
        else:
            whole = True
    except (requests.RequestException, OSError):
        pass
    finally:
        if not whole:
            response.close()  # the connection is not reused: its rest is never read
    return bytes(body[:MAX_ANSWER_BYTES])


class SecretFilter(logging.Filter):
    """Replaces known secrets in the records of the loggers it is on with ``REDACTED``."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str]) -> None:
        """Scrub ``secrets`` too (longest first, so a secret containing another goes whole)."""
        known = set(self._secrets) | {s for s in secrets if len(s) >= _MIN_SECRET}
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "REDACTED")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        rewrite = record.exc_info is not None
        if record.exc_info is not None:  # a traceback's messages can hold the URL too
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        scrubbed = self.scrub(message)
        if rewrite or scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


SECRET_FILTER = SecretFilter()


class QueueFullFilter(logging.Filter):
    """Drops the batch processor's per-span "Queue full" warning: it is written on the event
    loop for every span dropped (thousands a second under load with a dead collector), and
    ``gateway_trace_spans_dropped_total{reason="queue_full"}`` already counts each one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Queue full"))


_QUEUE_FULL = QueueFullFilter()
_BATCH_LOGGER = "opentelemetry.sdk._shared_internal"


def _url_secrets(url: str) -> set[str]:
    parts = urlsplit(url)
    found = {v for _, v in parse_qsl(parts.query, keep_blank_values=True)}
    found.update(v for v in parts.query.split("&"))
    found.update(unquote(s) for s in (parts.username, parts.password) if s)
    found.update(s for s in (parts.username, parts.password) if s)
    return found


def endpoint_secrets(endpoint: str, environ: dict[str, str] | os._Environ[str]) -> set[str]:
    """What must never be logged of the exporter's set-up: the endpoint's user info and query
    values (as written and as ``requests`` sends them) and the values of the OTLP headers
    variables (an entry the SDK cannot parse, which it logs whole, included)."""
    found = _url_secrets(endpoint)
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(endpoint, None)
    except requests.RequestException:
        pass
    else:
        found |= _url_secrets(prepared.url or "")
    for name in _HEADER_VARS:
        for entry in environ.get(name, "").split(","):
            entry = entry.strip()
            _, sep, value = entry.partition("=")
            if not sep:
                _, _, value = entry.partition(":")
                found.add(entry)
            found.update((value.strip(), unquote(value).strip()))
    return found


def protect_logs(endpoint: str) -> None:
    """Keep the secrets of ``endpoint`` and the OTLP headers variables out of the logs (call it
    before the exporter is built: the SDK logs a malformed headers variable as it reads it)."""
    SECRET_FILTER.add(endpoint_secrets(endpoint, os.environ))
    for name in SCRUBBED_LOGGERS:
        logger = logging.getLogger(name)
        if SECRET_FILTER not in logger.filters:
            logger.addFilter(SECRET_FILTER)


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
        except Exception as exc:  # the SDK would log and lose the batch: count it instead
            # The type only: the message of an HTTP error can hold the endpoint's query.
            log.warning("trace export raised %s; %d spans lost", type(exc).__name__, count)
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
        batch_logger = logging.getLogger(_BATCH_LOGGER)
        if _QUEUE_FULL not in batch_logger.filters:
            batch_logger.addFilter(_QUEUE_FULL)

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
