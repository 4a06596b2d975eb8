"""Which upstream serves a stream: its choices (``choices.py``) in turn, before the first byte.

A stream tries its route's primary (or a pool's deployments), then each fallback, on connect
failure, 5xx, 429, a first-event timeout, or an ``error`` event before any content. Never after
a byte reached the client: an attempt that may still fail over holds its first events back until
the first content or terminal event, and a heartbeat that starts the response ends the
fallbacks. The last plain target waits out a short upstream ``Retry-After`` (at most
:data:`RETRY_AFTER_CAP`) and retries once (a pool deployment rests instead).
Never two upstream requests in flight for one client stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import aiohttp

from gateway.adapters.base import Adapter, LocalScript, UpstreamRequest
from gateway.config.model import UpstreamTarget
from gateway.errors import (
    EarlyError,
    GatewayError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
    scrub_error,
    scrub_error_data,
)
from gateway.events import ERROR, Event
from gateway.metrics import StreamRecord
from gateway.passthrough import FrameTap
from gateway.pipeline import UsageHook
from gateway.rawclient import RawClient
from gateway.stream.deadlines import Deadlines
from gateway.stream.sinks import Sink
from gateway.stream.source import Source, now
from gateway.stream.trace import StreamTrace
from gateway.upstream import open_upstream
from gateway.values import value

if TYPE_CHECKING:
    from gateway.stream.choices import Choices

RETRY_AFTER_CAP = 2.0
"""Longest upstream ``Retry-After`` (seconds) the gateway waits out before one retry."""


@value
class Attempt:
    """One upstream to try: a route target with its adapter and the request built for it."""

    target: UpstreamTarget
    adapter: Adapter
    request: UpstreamRequest | LocalScript
    model: str | None = None
    """The model this attempt calls (what ``created``, the price and the trace report)."""
    tap: FrameTap | None = None
    """A front door's same-API pass-through channel (:mod:`gateway.passthrough`), or none."""

    def scrub(self, exc: GatewayError) -> GatewayError:
        """``exc`` without this attempt's provider credential (defence in depth)."""
        return scrub_error(exc, self.target.upstream.api_key)

    def scrub_event(self, event: Event) -> Event:
        """An ``error`` event without this attempt's provider credential in its message
        (providers echo keys in errors)."""
        data = scrub_error_data(event.data, self.target.upstream.api_key)
        return event if data is event.data else Event(ERROR, data)


class Opening(Protocol):
    """What failover needs of the stream it opens (a stream session)."""

    source: Source | None
    """Set as soon as an upstream answered, so the deadlines watch it."""

    @property
    def sink(self) -> Sink: ...

    @property
    def record(self) -> StreamRecord: ...

    @property
    def deadlines(self) -> Deadlines: ...

    @property
    def failure(self) -> GatewayError | None: ...

    @property
    def trace(self) -> StreamTrace:
        """The stream's trace (``gateway.stream.trace.NO_TRACE`` when not traced)."""

    def clear_failure(self) -> None:
        """Forget an interruption that a failover has answered (a first-event timeout)."""


class Failover:
    """Opens a stream's upstream, trying ``attempts`` in order (see the module docs)."""

    __slots__ = (
        "_client",
        "_handed_over",
        "_max_event_bytes",
        "_on_usage",
        "_raw",
        "_stream",
        "_unjudged",
        "attempts",
        "choices",
        "served_by",
    )

    def __init__(
        self,
        stream: Opening,
        attempts: list[Attempt],
        client: aiohttp.ClientSession,
        max_event_bytes: int,
        choices: Choices,
        on_usage: Callable[[Attempt], UsageHook | None] | None = None,
        raw: RawClient | None = None,
    ) -> None:
        self._stream = stream
        self._on_usage = on_usage
        """Each opened attempt's pipeline usage hook (the stream's cost: ``meter.py``)."""
        self._client = client
        self._raw = raw
        """The fast upstream client (``server.upstream_client``); ``None``: ``client`` sends."""
        self._max_event_bytes = max_event_bytes
        self.attempts = attempts
        self.choices = choices
        """Which attempt comes next (``gateway/stream/choices.py``: in order, or a pool's)."""
        self.served_by = attempts[0]
        """The attempt being tried, then the one that serves."""
        self._unjudged: float | None = None
        """When the serving pool deployment's request was sent, if it has no verdict yet."""
        self._handed_over = False

    @property
    def primary(self) -> bool:
        """Served by the route's primary (any deployment of a pool), not a fallback."""
        served = self.served_by
        return served is self.attempts[0] or served.target.deployment is not None

    async def open(self) -> Source:
        """The source of the first attempt that serves; raises the last failure otherwise.

        The attempts come from :attr:`choices` (the route's targets in order, or a pool's
        choices then the fallbacks: ``gateway/stream/choices.py``). An attempt fails over on
        connect failure, 5xx, 429, a first-event timeout, or (when another attempt may follow)
        an ``error`` event before any content: its first events are held back until the first
        content or terminal event, so nothing has reached the client. Once a heartbeat has
        started the response, there are no more fallbacks.
        """
        stream = self._stream
        sink = stream.sink
        choices = self.choices
        last: GatewayError | None = None
        try:
            while not (sink.started and last is not None):  # bytes went out: no more fallbacks
                attempt = await choices.next()
                if attempt is None:
                    break
                final, leased = choices.final, choices.leased
                retry_429 = final and not leased  # a pool rests a 429 deployment instead
                source: Source | None = None
                try:
                    sent = now()
                    source = await self._connect(attempt, retry_429=retry_429)
                    stream.source = source
                    early = None
                    if (leased or not final) and not sink.started:
                        await source.hold_until_content(lambda: sink.started)
                        early = source.early_error()
                        if early is not None and not final:
                            raise EarlyError(early.data)
                    if leased:  # the last deployment: an early error event streams out as it is
                        if early is not None:
                            choices.failed(EarlyError(early.data), source)
                        elif source.got_event:
                            choices.answered(source.last_read - sent)
                        else:  # a heartbeat started the response first: judged at the end
                            self._unjudged = sent
                except GatewayError as exc:
                    if source is not None:  # failed while held back: count it here
                        stream.record.attempt(attempt.target.label, attempt_result(exc))
                        stream.trace.attempt_failed(exc)
                    last = attempt.scrub(exc)
                    if leased and self._upstream_fault(exc):
                        choices.failed(exc, source)
                    if sink.started or not self._may_fall_back(exc):
                        raise last from None
                    self._discard(source)
                    continue
                if not retry_429:
                    stream.record.attempt(attempt.target.label, "ok")
                return source
            raise choices.error(last)
        finally:
            last = None  # a raised failure's traceback holds this frame: no cycle left behind

    async def _connect(self, attempt: Attempt, *, retry_429: bool) -> Source:
        """Open ``attempt``'s upstream (one capped ``Retry-After`` retry on the last target)."""
        stream = self._stream
        record = stream.record
        self.served_by = attempt
        retried = False
        while True:
            request = stream.trace.request_for(attempt)  # each try is one traced attempt
            sent = now()  # ``first_event`` counts from here, the headers' wait included
            try:
                upstream = await open_upstream(
                    self._client,
                    attempt.adapter,
                    request,
                    attempt.target.timeouts,
                    self._raw,
                )
                break
            except GatewayError as exc:
                stream.trace.attempt_failed(exc)
                status = exc.upstream_status if isinstance(exc, UpstreamStatusError) else None
                record.upstream_refused(status)
                record.attempt(attempt.target.label, attempt_result(exc))
                wait = retry_wait(exc)
                if not retry_429 or retried or wait is None or stream.sink.started:
                    raise
                retried = True
                await asyncio.sleep(wait)  # cancellable: abort, shutdown and deadlines
                if stream.sink.started:
                    raise  # a heartbeat went out meanwhile: no retry after the first byte
        answered = now()
        record.upstream_answered(upstream.status, answered)
        stream.trace.answered(upstream.status)
        hook = self._on_usage(attempt) if self._on_usage is not None else None
        source = Source(attempt, upstream, self._max_event_bytes, answered, hook, sent)
        if retry_429:  # the last target: the response starts now (contract 5 rule 6)
            record.attempt(attempt.target.label, "ok")
        timeouts = attempt.target.timeouts
        stream.deadlines.upstream_answered(sent, answered, timeouts.first_event, timeouts.idle)
        return source

    def _may_fall_back(self, exc: GatewayError) -> bool:
        return self._upstream_fault(exc) and not self._stream.deadlines.total_passed()

    def _upstream_fault(self, exc: GatewayError) -> bool:
        """``exc`` is a failure another upstream may not have, and not an interruption from
        outside (our own first-event interrupt is the upstream's fault; a shutdown is not)."""
        if not should_fall_back(exc):
            return False
        failure = self._stream.failure
        return failure is None or (failure is exc and isinstance(exc, UpstreamTimeout))

    def close(self, first_content: float | None) -> None:
        """The stream ended: release what the serving attempt holds (a pool deployment),
        unless :meth:`hand_over` gave that to the upstream's new reader.

        A deployment the stream could not judge while opening (a heartbeat started the response
        before its first event) is judged now by when its first content came, if it came.
        """
        self._judge(first_content)
        if not self._handed_over:
            self.choices.close()
        del self._stream  # the stream holds this failover: no cycle left for the collector

    def hand_over(self, first_content: float | None) -> Callable[[], None]:
        """The client left and the upstream may outlive the stream (a drain, a detached pump
        reads it on): the serving deployment is judged now, and its slot is released by the
        returned function (idempotent), which whoever reads the upstream last calls when it
        closes it; :meth:`close` leaves the slot alone. A pool's ``max_concurrent`` and
        ``least_busy`` count the streams a deployment really serves, and a drained one is one
        (released at the client's leaving, a third stream went to a deployment with
        ``max_concurrent: 1`` still draining one)."""
        self._judge(first_content)
        self._handed_over = True
        return self.choices.close

    def _judge(self, first_content: float | None) -> None:
        if self._unjudged is not None and first_content is not None:
            self.choices.answered(first_content - self._unjudged)
        self._unjudged = None

    def _discard(self, source: Source | None) -> None:
        """Close a failed attempt's upstream and forget it before the next target."""
        stream = self._stream
        if source is not None:
            source.close()
        stream.source = None
        stream.record.upstream_retry()
        stream.clear_failure()
        stream.deadlines.rearm_now()  # the timer stops once a pipeline is done: restart it


def attempt_result(exc: GatewayError) -> str:
    if isinstance(exc, EarlyError):
        return "early_error"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamStatusError):
        return "status_error"
    return "connect_error"


def should_fall_back(exc: GatewayError) -> bool:
    """Fallbacks and retries only for failures another upstream may not have."""
    if isinstance(exc, EarlyError):
        return True
    if isinstance(exc, UpstreamStatusError):
        return exc.upstream_status == 429 or exc.upstream_status >= 500
    return isinstance(exc, UpstreamError) and exc.retryable


def retry_wait(exc: GatewayError) -> float | None:
    """Seconds to wait before retrying the same upstream after a 429, or None: do not retry.

    Only a ``Retry-After`` (either form) of at most :data:`RETRY_AFTER_CAP` is waited for; a
    longer one is passed on to the client with the 429.
    """
    if isinstance(exc, UpstreamStatusError) and exc.upstream_status == 429:
        wait = exc.retry_after
        if wait is not None and wait <= RETRY_AFTER_CAP:
            return wait
    return None
