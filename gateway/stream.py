"""One client stream, from upstream answer to terminal event: the I/O edge of the hot path.

:class:`StreamSession` owns a stream's lifetime once the request is validated: it opens the
upstream (trying fallbacks before the first byte), starts the client response, pumps
``upstream bytes -> Pipeline -> Encoder -> response.write``, and records the outcome in
``finally``. One lazily re-armed timer per stream (:meth:`_tick`) enforces every deadline with no
per-event timer work: upstream ``first_event`` / ``idle`` / ``total`` silence, heartbeats toward the
client, and the slow-client write deadline.

Cancellation: the server runs with ``handler_cancellation=True``, so a client disconnect cancels
the handler task inside :meth:`run`; the ``except CancelledError`` path closes the upstream at once
(or hands it to a drain task when the route says ``on_client_abort: drain``), records the abort
phase and the cancel latency, and re-raises. Shutdown and deadline failures never cancel the
task: they interrupt the pending upstream read, so the normal path writes the terminal event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import events as ev
from gateway.adapters.base import Adapter, LocalScript, UpstreamRequest
from gateway.config.model import RouteConfig, UpstreamTarget
from gateway.encoders.base import Encoder
from gateway.errors import (
    GatewayError,
    LimitExceeded,
    ShutdownError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.events import Event
from gateway.logs import log_event
from gateway.pipeline import Pipeline
from gateway.upstream import UpstreamStream, open_upstream

_now = time.monotonic

if TYPE_CHECKING:
    from gateway.state import GatewayState

_CONTENT = ev.CONTENT_TYPES
RETRY_AFTER_CAP = 2.0
"""Longest upstream ``Retry-After`` (seconds) the gateway waits out before one retry."""
_OUTCOME_BY_CODE = {
    "upstream_timeout": "upstream_timeout",
    "upstream_truncated": "upstream_truncated",
    "shutdown": "shutdown",
    "limit_exceeded": "limit_exceeded",
    "internal": "internal",
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream to try: a route target with its adapter and the request built for it."""

    target: UpstreamTarget
    adapter: Adapter
    request: UpstreamRequest | LocalScript


class StreamSession:
    """The state of one stream. Created per request by the route handler, then :meth:`run`."""

    def __init__(
        self,
        state: GatewayState,
        route: RouteConfig,
        http_request: web.Request,
        encoder: Encoder,
        attempts: list[Attempt],
        *,
        request_id: str,
        received: float,
        app: str | None,
        model: str | None,
        extra_headers: dict[str, str],
        on_finish: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.state = state
        self.route = route
        self.http_request = http_request
        self.encoder = encoder
        self.attempts = attempts
        self.request_id = request_id
        self.app = app
        self.model = model
        self.extra_headers = extra_headers
        self.on_finish = on_finish
        self.metrics = state.route_metrics[route.name]
        self.loop = asyncio.get_running_loop()
        self.t0 = received
        self.task: asyncio.Task[Any] | None = None

        self.response: web.StreamResponse | None = None
        self.upstream: UpstreamStream | None = None
        self.pipeline: Pipeline | None = None
        self.served_by: Attempt = attempts[0]
        self.outcome = "internal"
        self.error_code: str | None = None
        self.usage: dict[str, int] = {}
        self.events_written = 0
        self.bytes_written = 0

        self.started = False
        self.writing = False
        self.write_since = 0.0
        self.last_write = received
        self.t_request_sent = received
        self.last_upstream = 0.0
        self.t_headers: float | None = None
        self.t_first_content: float | None = None
        self.last_content = 0.0
        self.max_gap = 0.0
        self.content_writes = 0  # writes carrying content: drain mode's tokens-after-abort share
        self.failure: GatewayError | None = None
        self.slow_client = False
        self._timer: asyncio.TimerHandle | None = None
        self._side_task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self.held: list[Event] = []
        """Events read but not yet written: the first events of an attempt that may fail over."""
        self.held_back = False
        self.closed = False

        server = state.config.server
        self.heartbeat_interval = server.heartbeat_interval
        self.write_timeout = server.write_timeout
        total = self.served_by.target.timeouts.total
        limit = route.max_stream_duration
        self.duration_is_limit = limit is not None and limit < total
        self.deadline_total = received + (limit if limit is not None and limit < total else total)

    # -- the main path -----------------------------------------------------------------------

    async def run(self) -> web.StreamResponse:
        """Serve the stream. Returns the response (a JSON error response if nothing was sent)."""
        self.task = asyncio.current_task()
        self.state.sessions.add(self)
        self.metrics.active.inc()
        self._arm(self.t0 + self.heartbeat_interval)
        try:
            await self._open()
            await self._pump()
        except asyncio.CancelledError:
            if self.failure is None:
                self._client_gone()
                raise
            # Our own cancel (shutdown before the upstream answered): report it, do not raise.
            if self.task is not None:
                self.task.uncancel()
            await self._fail(self.failure)
        except GatewayError as exc:
            await self._fail(exc)
        except Exception as exc:  # a bug: never a traceback to the client
            log_event("internal_error", logging.ERROR, route=self.route.name, id=self.request_id)
            logging.getLogger("gateway").exception("unexpected error in stream")
            await self._fail(_internal(exc))
        finally:
            self._finish()
        assert self.response is not None
        return self.response

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
                wait = _retry_wait(exc)
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
        if not _should_fall_back(exc) or _now() >= self.deadline_total:
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
        result = "ok" if exc is None else _attempt_result(exc)
        self.state.metrics.upstream_attempts.labels(
            self.route.name, attempt.target.label, result
        ).inc()

    async def _pump(self) -> None:
        assert self.upstream is not None and self.pipeline is not None
        pipeline, upstream = self.pipeline, self.upstream
        await self._start()
        held, self.held = self.held, []
        await self._write(held)
        read = upstream.read
        overhead = self.metrics.overhead.observe
        while not pipeline.done:
            chunk = await read()
            self.last_upstream = t_read = _now()
            produced = pipeline.feed(chunk) if chunk else pipeline.close()
            if produced:
                await self._write(produced)
                overhead(_now() - t_read)
            if self.failure is not None and not pipeline.done:
                await self._write(pipeline.fail(self.failure))
        self._set_outcome(pipeline.terminal)

    # -- starting and writing ----------------------------------------------------------------

    async def _start(self) -> None:
        """Send the response headers and ``created`` (once; a heartbeat may get here first)."""
        async with self._start_lock:
            if self.started or self.closed:
                return
            headers = {
                "Content-Type": self.encoder.content_type,
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
                "X-Request-Id": self.request_id,
                **self.encoder.extra_headers,
                **self.extra_headers,
            }
            response = web.StreamResponse(status=200, headers=headers)
            await response.prepare(self.http_request)
            transport = self.http_request.transport
            if transport is not None:
                transport.set_write_buffer_limits(
                    high=self.state.config.server.max_write_buffer_bytes
                )
            self.response = response
            self.started = True
            target = self.served_by.target
            primary = self.served_by is self.attempts[0]
            model = (self.model if primary else None) or self.served_by.adapter.model_for(None)
            await self._write(
                [ev.created(self.request_id, self.route.name, target.provider, model)]
            )

    async def _write(self, events: list[Event]) -> None:
        """Encode ``events`` into one write; record first-token and gap metrics."""
        if not events:
            return
        if events[-1].type == ev.ERROR:  # once per stream: providers echo keys in errors
            events[-1] = self._scrub_event(events[-1])
        encode = self.encoder.encode
        counters = self.metrics.events
        content = False
        parts = []
        for event in events:
            parts.append(encode(event))
            counters[event.type].inc()
            kind = event.type
            if kind in _CONTENT:
                content = True
            elif kind == ev.USAGE:
                self.usage.update(event.data)
        if events[-1].is_terminal:
            parts.append(self.encoder.close())
        data = b"".join(parts)
        self.events_written += len(events)
        if content:
            now = _now()
            if self.t_first_content is None:
                self.t_first_content = now
                self.metrics.ttft.observe(now - self.t0)
            else:
                gap = now - self.last_content
                self.metrics.inter_token.observe(gap)
                if gap > self.max_gap:
                    self.max_gap = gap
            self.last_content = now
            self.content_writes += 1
        if data:
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        response = self.response
        assert response is not None
        side = self._side_task
        if side is not None and not side.done() and side is not asyncio.current_task():
            await side  # a heartbeat write is in flight: keep frames whole and in order
        self.writing = True
        self.write_since = _now()
        try:
            await response.write(data)
        except ConnectionResetError:
            # The transport closed before the cancellation landed: the client is gone.
            raise asyncio.CancelledError() from None
        finally:
            self.writing = False
        self.last_write = _now()
        self.bytes_written += len(data)
        limit = self.route.max_output_bytes
        if limit is not None and self.bytes_written > limit and self.failure is None:
            self.interrupt(LimitExceeded(f"stream output exceeded {limit} bytes"))

    # -- deadlines, heartbeats, shutdown -----------------------------------------------------

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(max(0.0, when - _now()), self._tick)

    def _rearm_now(self) -> None:
        self._arm(_now())

    def _tick(self) -> None:
        """Check every deadline; act on those passed; re-arm at the nearest next one.

        A write that blocks on the client is noticed by the next tick, so while the response is
        open the timer never sleeps longer than half the write timeout: a stalled client is cut
        between 1 and 1.5 ``write_timeout`` after its last progress (also on the final write).
        """
        self._timer = None
        if self.closed:
            return
        now = _now()
        if self.writing:  # blocked on the client: the upstream is silent because we stopped reading
            stall_deadline = self.write_since + self.write_timeout
            if now >= stall_deadline:
                self._cut_slow_client()
                return
            self._arm(stall_deadline)
            return
        nxt = now + self.write_timeout / 2 if self.started else self.deadline_total
        if self.pipeline is not None and self.pipeline.done:
            self._arm(nxt)  # only the last write is left
            return
        if now >= self.deadline_total and self.failure is None:
            self.interrupt(self._duration_error())
            return
        nxt = min(nxt, self.deadline_total)
        if self.upstream is not None:
            timeouts = self.served_by.target.timeouts
            got_event = self.last_upstream > (self.t_headers or 0.0)
            limit = timeouts.idle if got_event else timeouts.first_event
            upstream_deadline = self.last_upstream + limit
            if now >= upstream_deadline and self.failure is None:
                what = "sent nothing" if not got_event else "went silent"
                self.interrupt(UpstreamTimeout(f"the upstream {what} for {limit:g}s"))
                return
            nxt = min(nxt, upstream_deadline)
        beat = self.last_write + self.heartbeat_interval
        if now >= beat:
            self._heartbeat()
            beat = now + self.heartbeat_interval
        self._arm(min(nxt, beat))

    def _duration_error(self) -> GatewayError:
        if self.duration_is_limit:
            limit = self.route.max_stream_duration
            return LimitExceeded(f"the stream exceeded max_stream_duration ({limit:g}s)")
        return UpstreamTimeout("the stream exceeded its total timeout")

    def _heartbeat(self) -> None:
        side = self._side_task
        if side is not None and not side.done():
            return
        self.last_write = _now()
        self._side_task = asyncio.ensure_future(self._send_heartbeat())

    async def _send_heartbeat(self) -> None:
        try:
            if not self.started:
                await self._start()
            data = self.encoder.heartbeat()
            if data and self.response is not None and not self.writing:
                self.writing = True
                self.write_since = _now()
                try:
                    await self.response.write(data)
                finally:
                    self.writing = False
                self.last_write = _now()
                self.metrics.heartbeats.inc()
        except (ConnectionResetError, RuntimeError):
            pass  # the client is gone; the handler's cancellation reports it

    def _cut_slow_client(self) -> None:
        self.slow_client = True
        self.state.metrics.slow_clients.labels(self.route.name).inc()
        transport = self.http_request.transport
        if transport is not None:
            transport.abort()

    def interrupt(self, exc: GatewayError) -> None:
        """End the stream with ``exc`` (deadline, limit, shutdown) from outside the read loop."""
        if self.failure is not None:
            return
        self.failure = exc
        if self.upstream is not None:
            self.upstream.interrupt(exc)
        elif self.task is not None:
            self.task.cancel()  # still waiting for the upstream to answer

    def shutdown(self) -> None:
        self.interrupt(ShutdownError("the gateway is shutting down; retry the request"))

    # -- endings -----------------------------------------------------------------------------

    async def _fail(self, exc: GatewayError) -> None:
        self.error_code = exc.error_code
        self.outcome = _outcome_for(exc)
        async with self._start_lock:  # a heartbeat may be starting the response right now
            if not self.started:
                from gateway.http import json_error

                self.closed = True
                self.response = json_error(exc, self.extra_headers)
                return
        pipeline = self.pipeline
        # Held-back events go first; when the pipeline already ended (an early error event that
        # a heartbeat kept from failing over), its terminal event is among them.
        held, self.held = self.held, []
        events = held + (
            pipeline.fail(exc) if pipeline is not None else [Event(ev.ERROR, exc.to_event_data())]
        )
        try:
            await self._write(events)
        except (asyncio.CancelledError, ConnectionResetError):
            self.outcome = "client_abort"

    def _set_outcome(self, terminal: Event | None) -> None:
        if terminal is None or terminal.type == ev.END:
            self.outcome = "completed"
            return
        code = str(terminal.data.get("code"))
        self.error_code = code
        self.outcome = _OUTCOME_BY_CODE.get(code, "upstream_error")

    def _client_gone(self) -> None:
        """The client disconnected (or a slow client was cut): close or drain the upstream."""
        if self.slow_client:
            self.outcome = "limit_exceeded"
            self.error_code = "slow_client"
        else:
            self.outcome = "client_abort"
            if self.upstream is None:
                phase = "before_upstream_headers"
            elif self.t_first_content is None:
                phase = "before_first_token"
            else:
                phase = "mid_stream"
            self.metrics.abort(phase)
        upstream = self.upstream
        if upstream is None:
            return  # open_upstream closes its own connection when cancelled
        if self.route.on_client_abort == "drain" and self.state.try_drain(self):
            self.upstream = None  # the drainer owns it now
            return
        t = _now()
        upstream.close()
        self.metrics.cancel.observe(_now() - t)
        self.upstream = None

    def _finish(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.upstream is not None:
            self.upstream.close()
        self.metrics.active.dec()
        self.state.sessions.discard(self)
        now = _now()
        if self.t_first_content is not None:
            self.metrics.max_gap.observe(self.max_gap)
        if self.usage:
            self.metrics.tokens(self.usage)
        self.metrics.finish(self.outcome, now - self.t0, self.app)
        if self.on_finish is not None:
            self.on_finish(self.usage)
        log_event(
            "stream",
            route=self.route.name,
            id=self.request_id,
            app=self.app,
            upstream=self.served_by.target.provider,
            outcome=self.outcome,
            code=self.error_code,
            ttft_ms=_ms(self.t_first_content, self.t0),
            headers_ms=_ms(self.t_headers, self.t0),
            duration_ms=round((now - self.t0) * 1000, 3),
            events=self.events_written,
            bytes=self.bytes_written,
            **{k: v for k, v in self.usage.items() if isinstance(v, int)},
        )

    def _scrub_event(self, event: Event) -> Event:
        """An ``error`` event without the provider credential in its message."""
        key = self.served_by.target.upstream.api_key
        message = event.data.get("message")
        if key and len(key) >= 4 and isinstance(message, str) and key in message:
            return Event(ev.ERROR, {**event.data, "message": message.replace(key, "[redacted]")})
        return event

    def _scrub(self, exc: GatewayError, attempt: Attempt) -> GatewayError:
        """Remove the provider credential from an upstream error message (defence in depth)."""
        key = attempt.target.upstream.api_key
        if key and len(key) >= 4 and key in exc.message:
            exc.message = exc.message.replace(key, "[redacted]")
            exc.args = (exc.message,)
        return exc


def _ms(t: float | None, t0: float) -> float | None:
    return None if t is None else round((t - t0) * 1000, 3)


def _outcome_for(exc: GatewayError) -> str:
    if isinstance(exc, UpstreamError):
        return _OUTCOME_BY_CODE.get(exc.error_code, "upstream_error")
    return _OUTCOME_BY_CODE.get(exc.error_code, "rejected")


def _attempt_result(exc: GatewayError) -> str:
    if isinstance(exc, EarlyError):
        return "early_error"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamStatusError):
        return "status_error"
    return "connect_error"


def _should_fall_back(exc: GatewayError) -> bool:
    """Fallbacks and retries only for failures another upstream may not have."""
    if isinstance(exc, EarlyError):
        return True
    if isinstance(exc, UpstreamStatusError):
        return exc.upstream_status == 429 or exc.upstream_status >= 500
    return isinstance(exc, UpstreamError) and exc.retryable


def _internal(exc: BaseException) -> GatewayError:
    from gateway.errors import InternalError

    return InternalError("the gateway failed to serve this stream")


def _retry_wait(exc: GatewayError) -> float | None:
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
