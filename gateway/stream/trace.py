"""One stream's trace (contract section 14): the session's hooks into ``gateway.tracing``.

::

    StreamSession.__init__   trace = start_trace(...)        NO_TRACE when off or not sampled
                             record = trace.new_record(...)  collects output text only when
                                                             capture_content is on
    Failover._connect        request = trace.request_for(attempt)   CLIENT span, traceparent
                             trace.answered(status) | trace.attempt_failed(exc)
    Failover.open            trace.attempt_failed(exc)       an answered attempt failed over
    StreamSession._finish    trace.finish(session)           the SERVER span from the record

Nothing is called per event: :meth:`SpanTrace.finish` builds the span from what the
:class:`~gateway.metrics.StreamRecord` holds (outcome, usage, first-token time, abort phase) and
the pipeline's terminal event (finish reason). :data:`NO_TRACE` does nothing at every hook, so the
stream's code has no ``if``; it costs one call per attempt and one per stream.

The upstream request gets the attempt span's ``traceparent`` (and the client's ``tracestate``):
:class:`UpstreamRequest` is frozen, so a copy with the merged headers is sent (any
``traceparent``/``tracestate`` already there is replaced). Keys are never recorded: the URL is
written without credentials or query values, headers not at all.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from gateway.adapters.base import LocalScript, UpstreamRequest
from gateway.config.model import RouteConfig
from gateway.errors import GatewayError, UpstreamStatusError
from gateway.events import DELTA, END, Event
from gateway.metrics import RouteMetrics, StreamRecord
from gateway.request import ChatRequest
from gateway.state import GatewayState
from gateway.tracing.app import tracing_of
from gateway.tracing.content import (
    MAX_PART_CHARS,
    parse_traceparent,
    parse_tracestate,
    trace_headers,
)

if TYPE_CHECKING:
    from gateway.stream.attempts import Attempt, Failover
    from gateway.stream.plan import StreamPlan
    from gateway.stream.source import Source
    from gateway.tracing.spans import AttemptSpan, StreamSpan

__all__ = ["NO_TRACE", "SpanTrace", "StreamTrace", "TextRecord", "Traced", "start_trace"]

log = logging.getLogger("gateway.tracing")

UPSTREAM_OUTCOMES = frozenset({"upstream_error", "upstream_timeout", "upstream_truncated"})
"""Stream outcomes that are the serving upstream's failure (its attempt span gets error status)."""
_PROPAGATED = ("traceparent", "tracestate")


class Traced(Protocol):
    """What :meth:`StreamTrace.finish` reads of a finished stream (a stream session)."""

    @property
    def record(self) -> StreamRecord: ...

    @property
    def failover(self) -> Failover: ...

    @property
    def model(self) -> str | None: ...

    @property
    def source(self) -> Source | None: ...

    @property
    def request_id(self) -> str: ...


class StreamTrace:
    """No trace: every hook does nothing (the shared :data:`NO_TRACE`)."""

    __slots__ = ()

    def new_record(self, metrics: RouteMetrics, t0: float, app: str | None) -> StreamRecord:
        """The stream's record (one that keeps the output text when content is captured)."""
        return StreamRecord(metrics, t0, app)

    def request_for(self, attempt: Attempt) -> UpstreamRequest | LocalScript:
        """The request to send for ``attempt`` (opens its span when traced)."""
        return attempt.request

    def answered(self, status: int) -> None:
        """The current attempt's upstream answered 2xx with ``status``."""

    def attempt_failed(self, exc: GatewayError) -> None:
        """The current attempt failed with ``exc`` (before or after its upstream answered)."""

    def finish(self, stream: Traced) -> None:
        """The stream ended: close its span (after ``record.finished``)."""


NO_TRACE = StreamTrace()


class ContextTrace(StreamTrace):
    """No span of the gateway's (the stream is not sampled), but the client's trace context
    goes upstream as it came, so the upstream's spans join the client's trace and its sampling
    decision (an unsampled flag) holds there too (W3C Trace Context; OpenTelemetry's
    parent-based sampling)."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, str]) -> None:
        self._context = context

    def request_for(self, attempt: Attempt) -> UpstreamRequest | LocalScript:
        request = attempt.request
        if not isinstance(request, UpstreamRequest):
            return request
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _PROPAGATED}
        headers.update(self._context)
        return dataclasses.replace(request, headers=headers)


def client_context(headers: Mapping[str, str]) -> StreamTrace:
    """:class:`ContextTrace` for the client's ``traceparent`` (and ``tracestate``) when it is
    valid by W3C Trace Context level 1 (:func:`~gateway.tracing.content.parse_traceparent`;
    sent once), else :data:`NO_TRACE`. What goes on is rebuilt from the parsed values, as
    version ``00`` (a later version's extra fields are not ours to forward); the
    ``tracestate`` (every such header, as one list) only when it is valid."""
    traceparent, tracestate = trace_headers(headers)
    parsed = parse_traceparent(traceparent) if traceparent is not None else None
    if parsed is None:
        return NO_TRACE
    trace_id, span_id, flags = parsed
    context = {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}
    pairs = parse_tracestate(tracestate) if tracestate is not None else None
    if pairs:
        context["tracestate"] = ",".join(f"{key}={value}" for key, value in pairs)
    return ContextTrace(context)


class TextRecord(StreamRecord):
    """A :class:`StreamRecord` that also keeps the output text (``capture_content`` only).

    Keeps at most :data:`~gateway.tracing.content.MAX_PART_CHARS` characters (plus one delta);
    the span's content helper cuts the rest.
    """

    __slots__ = ("_chars", "_parts")

    def __init__(self, metrics: RouteMetrics, t0: float, app: str | None) -> None:
        super().__init__(metrics, t0, app)
        self._parts: list[str] = []
        self._chars = 0

    def wrote(self, events: list[Event], now: float) -> None:
        if self._chars <= MAX_PART_CHARS:
            for event in events:
                if event.type == DELTA:
                    text = event.data.get("text")
                    if isinstance(text, str):
                        self._parts.append(text)
                        self._chars += len(text)
        super().wrote(events, now)

    @property
    def text(self) -> str:
        return "".join(self._parts)


class SpanTrace(StreamTrace):
    """A sampled stream: its SERVER span and the CLIENT span of the attempt under way."""

    __slots__ = ("_attempt", "_attempts", "_messages", "_span", "_status", "capture")

    def __init__(self, span: StreamSpan, *, capture: bool, chat: ChatRequest | None) -> None:
        self._span = span
        self.capture = capture
        self._messages: list[Mapping[str, Any]] | None = None
        if capture and chat is not None:
            self._messages = [{"role": m.role, "content": m.content} for m in chat.messages]
        self._attempt: AttemptSpan | None = None
        self._status: int | None = None
        self._attempts = 0

    def new_record(self, metrics: RouteMetrics, t0: float, app: str | None) -> StreamRecord:
        if self.capture:
            return TextRecord(metrics, t0, app)
        return StreamRecord(metrics, t0, app)

    def request_for(self, attempt: Attempt) -> UpstreamRequest | LocalScript:
        self._end_attempt(None)  # a retry of the same target is a new attempt
        target = attempt.target
        request = attempt.request
        if not isinstance(request, UpstreamRequest):  # a built-in source: no HTTP, no headers
            self._open(self._span.attempt(target.label, target.provider, ""))
            return request
        span = self._span.attempt(target.label, target.provider, request.url, request.method)
        self._open(span)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _PROPAGATED}
        headers.update(span.inject_headers())
        return dataclasses.replace(request, headers=headers)

    def _open(self, span: AttemptSpan) -> None:
        self._attempt = span
        self._status = None
        self._attempts += 1

    def answered(self, status: int) -> None:
        self._status = status

    def attempt_failed(self, exc: GatewayError) -> None:
        status = exc.upstream_status if isinstance(exc, UpstreamStatusError) else self._status
        self._end_attempt(exc.error_code, status)

    def _end_attempt(self, error_code: str | None, status: int | None = None) -> None:
        attempt = self._attempt
        if attempt is not None:
            self._attempt = None
            attempt.end(status if status is not None else self._status, error_code)

    def finish(self, stream: Traced) -> None:
        try:
            self._finish(stream)
        except Exception:  # a tracing bug must never fail a stream
            log.exception("could not finish the stream's trace span")

    def _finish(self, stream: Traced) -> None:
        record = stream.record
        outcome = record.outcome
        self._end_attempt(record.error_code if outcome in UPSTREAM_OUTCOMES else None)
        source = stream.source
        terminal = source.pipeline.terminal if source is not None else None
        reasons = (str(terminal.data.get("reason")),) if terminal and terminal.type == END else ()
        served = stream.failover.served_by
        response_model = None
        if record.t_headers is not None:  # an upstream served this stream
            response_model = served.model
        usage = record.usage
        ended = time.monotonic()  # _finish runs right after an abort: the abort's time too
        self._span.finish(
            outcome=outcome,
            ended=ended,
            request_id=stream.request_id,
            aborted=ended if record.abort_phase is not None else None,
            app=record.app,
            response_model=response_model,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            finish_reasons=reasons,
            first_content=record.t_first_content,
            abort_phase=record.abort_phase,
            error_code=record.error_code,
            attempts=self._attempts,
            input_messages=self._messages,
            output_text=record.text if isinstance(record, TextRecord) else None,
        )


def start_trace(
    state: GatewayState,
    headers: Mapping[str, str],
    route: RouteConfig,
    plan: StreamPlan,
    received: float,
) -> StreamTrace:
    """The stream's trace: a SERVER span continuing the client's ``traceparent`` when tracing
    is on and the stream is sampled; when it is on and the stream is not, the client's context
    sent on upstream (:func:`client_context`); else :data:`NO_TRACE`."""
    tracing = tracing_of(state)
    if tracing is None:
        return NO_TRACE
    first = plan.attempts[0]
    try:
        span = tracing.start_stream(
            headers,
            route.name,
            request_model=plan.model or first.model,
            provider=first.target.provider,
            started=received,
        )
    except Exception:  # a tracing bug must never fail a stream
        log.exception("could not start the stream's trace span")
        return NO_TRACE
    if span is None:  # not sampled: the client's context still goes upstream
        return client_context(headers)
    capture = tracing.capture_content
    return SpanTrace(span, capture=capture, chat=plan.chat if capture else None)
