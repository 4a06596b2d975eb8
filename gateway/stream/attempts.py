"""Which upstream serves a stream: the route's targets in order, before the first byte.

A stream tries its route's primary, then each fallback, on connect failure, 5xx, 429, a
first-event timeout, or an ``error`` event before any content. Never after a byte reached the
client: an attempt that may still fail over holds its first events back until the first content
or terminal event, and a heartbeat that starts the response ends the fallbacks. The last target
waits out a short upstream ``Retry-After`` (at most :data:`RETRY_AFTER_CAP`) and retries once.
Never two upstream requests in flight for one client stream.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from gateway.adapters.base import Adapter, LocalScript, UpstreamRequest
from gateway.config.model import UpstreamTarget
from gateway.errors import (
    EarlyError,
    GatewayError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.metrics import StreamRecord
from gateway.rawclient import RawClient
from gateway.stream.deadlines import Deadlines
from gateway.stream.sinks import Sink
from gateway.stream.source import Source, now
from gateway.upstream import open_upstream

RETRY_AFTER_CAP = 2.0
"""Longest upstream ``Retry-After`` (seconds) the gateway waits out before one retry."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream to try: a route target with its adapter and the request built for it."""

    target: UpstreamTarget
    adapter: Adapter
    request: UpstreamRequest | LocalScript


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

    def clear_failure(self) -> None:
        """Forget an interruption that a failover has answered (a first-event timeout)."""


class Failover:
    """Opens a stream's upstream, trying ``attempts`` in order (see the module docs)."""

    __slots__ = ("_client", "_max_event_bytes", "_raw", "_stream", "attempts", "served_by")

    def __init__(
        self,
        stream: Opening,
        attempts: list[Attempt],
        client: aiohttp.ClientSession,
        max_event_bytes: int,
        raw: RawClient | None = None,
    ) -> None:
        self._stream = stream
        self._client = client
        self._raw = raw
        """The fast upstream client (``server.upstream_client``); ``None``: ``client`` sends."""
        self._max_event_bytes = max_event_bytes
        self.attempts = attempts
        self.served_by = attempts[0]
        """The attempt being tried, then the one that serves."""

    @property
    def primary(self) -> bool:
        return self.served_by is self.attempts[0]

    async def open(self) -> Source:
        """The source of the first attempt that serves; raises the last failure otherwise.

        An attempt fails over on connect failure, 5xx, 429, a first-event timeout, or (when
        another target remains) an ``error`` event before any content: its first events are
        held back until the first content or terminal event, so nothing has reached the client.
        Once a heartbeat has started the response, there are no more fallbacks.
        """
        stream = self._stream
        sink = stream.sink
        last: GatewayError | None = None
        final = len(self.attempts) - 1
        for index, attempt in enumerate(self.attempts):
            if sink.started and last is not None:
                break  # bytes went out (a heartbeat): no more fallbacks
            source: Source | None = None
            try:
                source = await self._connect(attempt, retry_429=index == final)
                stream.source = source
                if index < final and not sink.started:
                    await source.hold_until_content(lambda: sink.started)
                    early = source.early_error()
                    if early is not None:
                        raise EarlyError(early.data)
            except GatewayError as exc:
                if source is not None:  # failed while held back: count it here
                    stream.record.attempt(attempt.target.label, attempt_result(exc))
                last = _scrub(exc, attempt)
                if sink.started or not self._may_fall_back(exc):
                    raise last from None
                self._discard(source)
                continue
            if index < final:
                stream.record.attempt(attempt.target.label, "ok")
            return source
        assert last is not None
        raise last

    async def _connect(self, attempt: Attempt, *, retry_429: bool) -> Source:
        """Open ``attempt``'s upstream (one capped ``Retry-After`` retry on the last target)."""
        stream = self._stream
        record = stream.record
        self.served_by = attempt
        retried = False
        while True:
            try:
                upstream = await open_upstream(
                    self._client,
                    attempt.adapter,
                    attempt.request,
                    attempt.target.timeouts,
                    self._raw,
                )
                break
            except GatewayError as exc:
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
        source = Source(attempt, upstream, self._max_event_bytes, answered)
        if retry_429:  # the last target: the response starts now (contract 5 rule 6)
            record.attempt(attempt.target.label, "ok")
        stream.deadlines.rearm_now()
        return source

    def _may_fall_back(self, exc: GatewayError) -> bool:
        stream = self._stream
        if not should_fall_back(exc) or stream.deadlines.total_passed():
            return False
        # Our own first-event interrupt may fall back; any other interrupt (shutdown) may not.
        failure = stream.failure
        return failure is None or (failure is exc and isinstance(exc, UpstreamTimeout))

    def _discard(self, source: Source | None) -> None:
        """Close a failed attempt's upstream and forget it before the next target."""
        stream = self._stream
        if source is not None:
            source.close()
        stream.source = None
        stream.record.upstream_retry()
        stream.clear_failure()
        stream.deadlines.rearm_now()  # the timer stops once a pipeline is done: restart it


def _scrub(exc: GatewayError, attempt: Attempt) -> GatewayError:
    """Remove the provider credential from an upstream error message (defence in depth)."""
    key = attempt.target.upstream.api_key
    if key and len(key) >= 4 and key in exc.message:
        exc.message = exc.message.replace(key, "[redacted]")
        exc.args = (exc.message,)
    return exc


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
