"""One client stream, from upstream answer to terminal event: the I/O edge of the hot path.

:class:`StreamSession` owns a stream's lifetime once the request is validated: it opens the
upstream (trying fallbacks before the first byte), starts the client response, pumps
``upstream bytes -> Pipeline -> Encoder -> response.write``, and records the outcome in
``finally``. Its parts: :mod:`gateway.stream.attempts` (which upstream serves, fallbacks before
the first byte) and :mod:`gateway.stream.deadlines` (one lazily re-armed timer per stream for
every deadline and heartbeat, with no per-event timer work). Per-event metrics go to a per-stream
:class:`~gateway.metrics.StreamRecorder`, flushed by that timer and at the end.

Cancellation: the server runs with ``handler_cancellation=True``, so a client disconnect cancels
the handler task inside :meth:`run`; the ``except CancelledError`` path closes the upstream at once
(or hands it to a drain task when the route says ``on_client_abort: drain``), records the abort
phase and the cancel latency, and re-raises. Shutdown and deadline failures never cancel the
task: they interrupt the pending upstream read, so the normal path writes the terminal event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import events as ev
from gateway.config.model import RouteConfig
from gateway.encoders.base import Encoder
from gateway.errors import GatewayError, LimitExceeded, UpstreamError
from gateway.events import Event
from gateway.logs import log_event
from gateway.metrics import StreamRecorder
from gateway.stream.attempts import Attempt, Fallbacks
from gateway.stream.base import now as _now
from gateway.stream.deadlines import Deadlines

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline
    from gateway.state import GatewayState
    from gateway.upstream import UpstreamStream

_CONTENT = ev.CONTENT_TYPES
_OUTCOME_BY_CODE = {
    "upstream_timeout": "upstream_timeout",
    "upstream_truncated": "upstream_truncated",
    "shutdown": "shutdown",
    "limit_exceeded": "limit_exceeded",
    "internal": "internal",
}


class StreamSession(Fallbacks, Deadlines):
    """The state of one stream. Created per request by the route handler, then :meth:`run`."""

    __slots__ = ()  # every field is declared in SessionBase

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
        self.rec = StreamRecorder(self.metrics)
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

    async def _pump(self) -> None:
        assert self.upstream is not None and self.pipeline is not None
        pipeline, upstream = self.pipeline, self.upstream
        await self._start()
        held, self.held = self.held, []
        await self._write(held)
        read = upstream.read
        overhead = self.rec.overhead.observe
        while not pipeline.done:
            chunk = await read()
            self.last_upstream = t_read = _now()
            produced = pipeline.feed(chunk) if chunk else pipeline.close()
            if produced:
                await self._write(produced, t_read)
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

    async def _write(self, events: list[Event], now: float | None = None) -> None:
        """Encode ``events`` into one write; record first-token and gap metrics.

        ``now`` is the time the events were read (taken once per upstream read by the pump).
        """
        if not events:
            return
        if events[-1].type == ev.ERROR:  # once per stream: providers echo keys in errors
            events[-1] = self._scrub_event(events[-1])
        encode = self.encoder.encode
        counts = self.rec.counts
        content = False
        parts = []
        for event in events:
            parts.append(encode(event))
            kind = event.type
            counts[kind] = counts.get(kind, 0) + 1
            if kind in _CONTENT:
                content = True
            elif kind == ev.USAGE:
                self.usage.update(event.data)
        if events[-1].is_terminal:
            parts.append(self.encoder.close())
        data = b"".join(parts)
        self.events_written += len(events)
        if content:
            if now is None:
                now = _now()
            if self.t_first_content is None:
                self.t_first_content = now
                self.metrics.ttft.observe(now - self.t0)
            else:
                gap = now - self.last_content
                self.rec.inter_token.observe(gap)
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
        self.rec.flush()
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


def _internal(exc: BaseException) -> GatewayError:
    from gateway.errors import InternalError

    return InternalError("the gateway failed to serve this stream")
