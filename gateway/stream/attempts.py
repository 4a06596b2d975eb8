"""Which upstream serves a stream: the route's targets in order, before the first byte.

A stream tries its route's primary, then each fallback, on connect failure, 5xx, 429, a
first-event timeout, or an ``error`` event before any content. Never after a byte reached the
client: an attempt that may still fail over holds its first events back until the first content
or terminal event, and a heartbeat that starts the response ends the fallbacks. The last target
waits out a short upstream ``Retry-After`` (at most :data:`RETRY_AFTER_CAP`) and retries once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from gateway import events as ev
from gateway.adapters.base import Adapter, LocalScript, UpstreamRequest
from gateway.config.model import UpstreamTarget
from gateway.errors import GatewayError, UpstreamError, UpstreamStatusError, UpstreamTimeout
from gateway.events import Event
from gateway.pipeline import Pipeline
from gateway.stream.base import SessionBase
from gateway.stream.base import now as _now
from gateway.upstream import open_upstream

_CONTENT = ev.CONTENT_TYPES
RETRY_AFTER_CAP = 2.0
"""Longest upstream ``Retry-After`` (seconds) the gateway waits out before one retry."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream to try: a route target with its adapter and the request built for it."""

    target: UpstreamTarget
    adapter: Adapter
    request: UpstreamRequest | LocalScript


class Fallbacks(SessionBase):
    """The session's opening phase: connect, hold back, fail over."""

    __slots__ = ()

    async def _open(self) -> None:
        """Try each attempt in order until one serves (fallbacks only before any byte).

        An attempt fails over on connect failure, 5xx, 429, a first-event timeout, or (when
        another target remains) an ``error`` event before any content: its first events are
        held back until the first content or terminal event, so nothing has reached the client.
        Once a heartbeat has started the response, there are no more fallbacks.
        """
        last: GatewayError | None = None
        final = len(self.attempts) - 1
        for index, attempt in enumerate(self.attempts):
            if self.started and last is not None:
                break  # bytes went out (a heartbeat): no more fallbacks
            try:
                await self._connect(attempt, retry_429=index == final)
                if index < final and not self.started:
                    await self._hold_first_events()
            except GatewayError as exc:
                if self.upstream is not None:  # failed while held back: count it here
                    self._count_attempt(attempt, exc)
                last = self._scrub(exc, attempt)
                if self.started or not self._may_fall_back(exc):
                    raise last from None
                self._discard_attempt()
                continue
            if self.held_back:
                self._count_attempt(attempt, None)
            return
        assert last is not None
        raise last

    async def _connect(self, attempt: Attempt, *, retry_429: bool) -> None:
        """Open ``attempt``'s upstream (one capped ``Retry-After`` retry on the last target)."""
        self.served_by = attempt
        retried = False
        while True:
            self.t_request_sent = _now()
            try:
                upstream = await open_upstream(
                    self.state.session, attempt.adapter, attempt.request, attempt.target.timeouts
                )
                break
            except GatewayError as exc:
                status = exc.upstream_status if isinstance(exc, UpstreamStatusError) else None
                self.metrics.upstream_status(status)
                self._count_attempt(attempt, exc)
                wait = retry_wait(exc)
                if not retry_429 or retried or wait is None or self.started:
                    raise
                retried = True
                await asyncio.sleep(wait)  # cancellable: abort, shutdown and deadlines
                if self.started:
                    raise  # a heartbeat went out meanwhile: no retry after the first byte
        self.upstream = upstream
        self.metrics.upstream_status(upstream.status)
        now = _now()
        self.t_headers = self.last_upstream = now
        self.metrics.upstream_headers.observe(now - self.t0)
        pipeline = Pipeline(attempt.adapter, self.state.config.server.max_upstream_event_bytes)
        self.pipeline = pipeline
        self.held = pipeline.accepted()
        self.held_back = not retry_429
        if retry_429:  # the last target: the response starts now (contract 5 rule 6)
            self._count_attempt(attempt, None)
        self._rearm_now()

    async def _hold_first_events(self) -> None:
        """Read until the first content or terminal event (or a heartbeat started the response).

        Raises the upstream's error when the first terminal event is an ``error`` before any
        content, so :meth:`_open` can try the next target.
        """
        upstream, pipeline, held = self.upstream, self.pipeline, self.held
        assert upstream is not None and pipeline is not None
        while not self.started:
            chunk = await upstream.read()
            self.last_upstream = _now()
            produced = pipeline.feed(chunk) if chunk else pipeline.close()
            held.extend(produced)
            if pipeline.done:
                terminal = pipeline.terminal
                early = terminal is not None and terminal.type == ev.ERROR
                if early and not any(e.type in _CONTENT for e in held):
                    assert terminal is not None
                    raise EarlyError(terminal)
                return
            if any(e.type in _CONTENT for e in produced):
                return

    def _may_fall_back(self, exc: GatewayError) -> bool:
        if not should_fall_back(exc) or _now() >= self.deadline_total:
            return False
        # Our own first-event interrupt may fall back; any other interrupt (shutdown) may not.
        return self.failure is None or (self.failure is exc and isinstance(exc, UpstreamTimeout))

    def _discard_attempt(self) -> None:
        """Close a failed attempt's upstream and forget its state before the next target."""
        if self.upstream is not None:
            self.upstream.close()
        self.upstream = None
        self.pipeline = None
        self.held = []
        self.held_back = False
        self.t_headers = None
        self.failure = None
        self._rearm_now()  # the timer stops once a pipeline is done: restart it

    def _count_attempt(self, attempt: Attempt, exc: GatewayError | None) -> None:
        result = "ok" if exc is None else attempt_result(exc)
        self.state.metrics.upstream_attempts.labels(
            self.route.name, attempt.target.label, result
        ).inc()


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


class EarlyError(UpstreamError):
    """An ``error`` event that came before any content: the attempt failed, another may not.

    Reported exactly as the upstream's event said (code, message, retryable) if no other target
    serves.
    """

    def __init__(self, event: Event) -> None:
        data = event.data
        super().__init__(str(data.get("message", "")), retryable=bool(data.get("retryable")))
        self.event = event

    @property
    def error_code(self) -> str:
        return str(self.event.data.get("code", "upstream_error"))

    @property
    def http_status(self) -> int:
        return 504 if self.error_code == "upstream_timeout" else 502

    def to_event_data(self) -> dict[str, Any]:
        return dict(self.event.data)
