"""One span per stream, one child per upstream attempt (OpenTelemetry GenAI conventions).

::

    Tracing.from_config(cfg, drops)          once per app (its own sampler and processor; no global)
      .start_stream(headers, route, ...)     SERVER span "chat <model>", continuing the client's
        │                                    W3C traceparent; None when not sampled
        ├─ .attempt(target, provider, url)   CLIENT span "POST" per upstream attempt
        │     .inject_headers()              traceparent/tracestate to send upstream
        │     .end(status, error_code)
        └─ .finish(outcome=..., ...)         everything the stream recorded, set once at the end
      .shutdown(timeout)                     flush (blocking, bounded): run it off the event loop

Nothing here is called per event: the stream keeps its own record (timings, counts) and hands it
to :meth:`StreamSpan.finish`, which back-dates the first-token and abort events to the recorded
monotonic times.

The spans are built finished. The SDK's live ``Span`` (a lock, attribute validation on every
``set_attribute``, processor ``on_start`` calls) was half of a traced stream's event-loop cost
(``python -m bench.tracing``); a stream's span never changes while it runs and its attributes
are ours and typed, so :meth:`StreamSpan.finish` and :meth:`AttemptSpan.end` make the SDK's
``ReadableSpan`` (what exporters read) once, at the end, and hand it to the app's
:class:`~gateway.tracing.tracer.Tracing` (:class:`Emitter`), whose SDK sampler, id generator,
batch processor and official OTLP/HTTP exporter take it from there.

Times are ``time.monotonic()`` seconds, converted to wall-clock nanoseconds against a pair of
clock readings taken when the stream span starts.

Content (prompts, output text) is recorded only with ``capture_content: true``; request headers,
keys and query values never are.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from opentelemetry.sdk.trace import Event
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from gateway.adapters import GENAI_PROVIDERS
from gateway.tracing import content

__all__ = ["OK_OUTCOMES", "SAMPLED", "UNSET", "AttemptSpan", "Emitter", "StreamSpan"]

OK_OUTCOMES = frozenset({"completed", "client_abort"})
"""Outcomes that leave the stream span's status unset; every other one is an error."""
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status(StatusCode.UNSET)


class Emitter(Protocol):
    """Where finished spans go (:class:`gateway.tracing.tracer.Tracing`)."""

    capture_content: bool

    def new_span_id(self) -> int: ...

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
    ) -> None: ...


@functools.lru_cache(maxsize=256)
def _url_attributes(url: str) -> Mapping[str, Any]:
    """An attempt's URL attributes (``""``: a built-in source, none), parsed once per URL."""
    if not url:
        return {}
    host, port = content.server_of(url)
    attributes: dict[str, Any] = {"url.full": content.safe_url(url)}
    if host:
        attributes["server.address"] = host
    if port is not None:
        attributes["server.port"] = port
    return MappingProxyType(attributes)


class SpanClock:
    """A stream's clock: ``time.monotonic()`` readings as wall-clock nanoseconds, against the
    pair of readings (``wall``, ``mono``) taken when its span started. The stream span and its
    attempts share it, so that no child ends after its parent (``time.time_ns()`` and a mapped
    monotonic reading can disagree by microseconds, by seconds after an NTP step)."""

    __slots__ = ("mono", "wall")

    def __init__(self, wall: int, mono: float) -> None:
        self.wall = wall
        self.mono = mono

    def ns(self, t: float) -> int:
        """Wall-clock nanoseconds of the ``time.monotonic()`` reading ``t``."""
        return self.wall + int((t - self.mono) * 1e9)

    def now(self) -> int:
        """Now, in wall-clock nanoseconds."""
        return self.ns(time.monotonic())


class StreamSpan:
    """One sampled stream's span. ``finish`` ends it (once; later calls do nothing)."""

    __slots__ = (
        "_attempts",
        "_attributes",
        "_clock",
        "_ended",
        "_start",
        "_started",
        "_tracing",
        "context",
        "name",
        "parent",
    )

    def __init__(
        self,
        tracing: Emitter,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        start: int,
        wall: int,
        mono: float,
        started: float,
    ) -> None:
        self._tracing = tracing
        self.name = name
        self.context = context
        self.parent = parent
        self._attributes = attributes
        self._start = start
        self._clock = SpanClock(wall, mono)
        self._started = started
        self._attempts: list[AttemptSpan] = []
        self._ended = False

    def ns(self, t: float) -> int:
        """Wall-clock nanoseconds of the ``time.monotonic()`` reading ``t`` (:class:`SpanClock`)."""
        return self._clock.ns(t)

    def attempt(self, target: str, provider: str, url: str, method: str = "POST") -> AttemptSpan:
        """Open a CLIENT child span for one upstream attempt (``target``: the bounded label of
        the deployment or fallback; ``provider``: its adapter registry name; ``url``: the
        upstream URL, recorded without credentials or query values; ``""``: none)."""
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "gateway.upstream": target,
            "gen_ai.provider.name": GENAI_PROVIDERS.get(provider, "_OTHER"),
            **_url_attributes(url),
        }
        parent = self.context
        context = SpanContext(
            parent.trace_id,
            self._tracing.new_span_id(),
            is_remote=False,
            trace_flags=SAMPLED,
            trace_state=parent.trace_state,
        )
        attempt = AttemptSpan(self._tracing, method, context, parent, attributes, self._clock)
        self._attempts.append(attempt)
        return attempt

    def finish(
        self,
        *,
        outcome: str,
        ended: float | None = None,
        request_id: str | None = None,
        app: str | None = None,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reasons: Sequence[str] = (),
        first_content: float | None = None,
        abort_phase: str | None = None,
        aborted: float | None = None,
        error_code: str | None = None,
        attempts: int | None = None,
        input_messages: Iterable[Mapping[str, Any]] | None = None,
        output_text: str | None = None,
    ) -> None:
        """Set what the stream recorded and end the span (and any attempt left open).

        Times (``ended``, ``first_content``, ``aborted``) are ``time.monotonic()`` readings;
        ``ended`` defaults to now. ``outcome`` is one of ``gateway.metrics.OUTCOMES``: outside
        :data:`OK_OUTCOMES` the span gets error status with ``error_code`` (default: the
        outcome) as description and ``error.type``. ``input_messages`` and ``output_text`` are
        recorded only when ``capture_content`` is on.
        """
        if self._ended:
            return
        self._ended = True
        for open_attempt in self._attempts:
            open_attempt.end(None)
        attributes = self._attributes
        attributes["gateway.outcome"] = outcome
        if request_id is not None:  # the X-Request-Id and the log line's id: joins them
            attributes["gateway.request_id"] = request_id
        if app is not None:
            attributes["gateway.app"] = app
        if response_model:
            attributes["gen_ai.response.model"] = response_model
        if input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = input_tokens
        if output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = output_tokens
        if finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = tuple(finish_reasons)
        if attempts is not None:
            attributes["gateway.attempts"] = attempts
        events: list[Event] = []
        if first_content is not None:
            ttft = max(first_content - self._started, 0.0)
            attributes["gateway.time_to_first_token_s"] = ttft
            attributes["gen_ai.response.time_to_first_chunk"] = ttft
            events.append(Event("gateway.first_token", timestamp=self.ns(first_content)))
        if abort_phase is not None:
            attributes["gateway.abort_phase"] = abort_phase
        if outcome == "client_abort" or aborted is not None:
            when = self.ns(aborted) if aborted is not None else self._clock.now()
            phase = {"gateway.abort_phase": abort_phase} if abort_phase else None
            events.append(Event("gateway.client_abort", attributes=phase, timestamp=when))
        if self._tracing.capture_content:
            if input_messages is not None:
                attributes["gen_ai.input.messages"] = content.input_messages(input_messages)
            if output_text is not None:
                out = content.output_messages(output_text, finish_reasons)
                attributes["gen_ai.output.messages"] = out
        status = UNSET
        if outcome not in OK_OUTCOMES:
            code = error_code or outcome
            attributes["error.type"] = code
            status = Status(StatusCode.ERROR, code)
        end = self.ns(ended) if ended is not None else self._clock.now()
        self._tracing.emit(
            self.name,
            self.context,
            self.parent,
            SpanKind.SERVER,
            attributes,
            self._start,
            end,
            events,
            status,
        )


class AttemptSpan:
    """One upstream attempt's CLIENT span. ``end`` ends it (once; later calls do nothing)."""

    __slots__ = (
        "_attributes",
        "_clock",
        "_ended",
        "_start",
        "_tracing",
        "context",
        "name",
        "parent",
    )

    def __init__(
        self,
        tracing: Emitter,
        name: str,
        context: SpanContext,
        parent: SpanContext,
        attributes: dict[str, Any],
        clock: SpanClock,
    ) -> None:
        self._tracing = tracing
        self.name = name
        self.context = context
        self.parent = parent
        self._attributes = attributes
        self._clock = clock
        """Its stream span's clock."""
        self._start = clock.now()
        self._ended = False

    def inject_headers(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate`` when the client sent one) to send upstream.

        Written here as W3C Trace Context level 1 spells it (what the SDK's propagator writes
        for a sampled span; the tests parse it back with that propagator), without building a
        context object per attempt."""
        context = self.context
        headers = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-01"}
        if context.trace_state:
            headers["tracestate"] = context.trace_state.to_header()
        return headers

    def end(self, status: int | None, error_code: str | None = None) -> None:
        """End the attempt: ``status`` is the upstream's HTTP status (None: no response came);
        ``error_code`` the gateway error code when the attempt failed. An error code or a
        status of 400 and above sets error status (``error.type``: the code, else the status).
        """
        if self._ended:
            return
        self._ended = True
        attributes = self._attributes
        span_status = UNSET
        if status is not None:
            attributes["http.response.status_code"] = status
        if error_code is not None or (status is not None and status >= 400):
            code = error_code or str(status)
            attributes["error.type"] = code
            span_status = Status(StatusCode.ERROR, code)
        self._tracing.emit(
            self.name,
            self.context,
            self.parent,
            SpanKind.CLIENT,
            attributes,
            self._start,
            self._clock.now(),
            status=span_status,
        )
