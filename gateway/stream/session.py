"""One client stream, from admission to terminal event: the I/O edge of the hot path.

:meth:`StreamSession.run` reads as the script it is: open an upstream (with failover), pipe its
source into the client sink, finish. The parts, each behind a narrow interface:

* :class:`~gateway.stream.attempts.Failover` chooses and opens the upstream, before any byte;
* :class:`~gateway.stream.source.Source` turns upstream bytes into event batches;
* :class:`~gateway.stream.sinks.Sink` encodes them and writes the client response;
* :class:`~gateway.metrics.StreamRecord` records timings and counts (the only metrics calls);
* :class:`~gateway.stream.deadlines.Deadlines`, one timer for every deadline and heartbeat;
* :class:`~gateway.stream.meter.Meter`, the stream's cost (priced when its usage passes) and its
  settlement (admission released, cost counted) at the end, or after a drain.

Cancellation: either server (``gateway.httpserver``, or aiohttp's with
``handler_cancellation=True``) turns a client disconnect into a cancellation of
the handler task inside :meth:`run`; the ``except CancelledError`` path closes the upstream at once
(or hands it to a drain when the route says ``on_client_abort: drain``), records the abort phase
and the cancel latency, and re-raises. Shutdown, deadline and limit failures never cancel the
task: they interrupt the pending upstream read, so the normal path writes the terminal event.

Endings leave no reference cycle: what points back at the session (the deadlines, the failover,
the task, a recording sink, a raised interruption's traceback) lets go in
:meth:`StreamSession._finish`, so a stream's forty objects are freed by reference counting, not
by the cyclic collector (whose walks were a tenth of a 1-token request: docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiohttp import web

from gateway import events as ev
from gateway.admission import Admission
from gateway.config.model import RouteConfig
from gateway.errors import (
    GatewayError,
    InternalError,
    LimitExceeded,
    ShutdownError,
    UpstreamError,
)
from gateway.events import Event
from gateway.http import ClientRequest
from gateway.httpexchange import Reply
from gateway.logs import log_event, log_fields
from gateway.metrics import StreamRecord
from gateway.pricing import cost_of
from gateway.state import GatewayState
from gateway.stream.attempts import Failover
from gateway.stream.choices import choices_for
from gateway.stream.deadlines import Deadlines
from gateway.stream.drain import drain
from gateway.stream.meter import Meter
from gateway.stream.plan import ErrorShape, StreamPlan
from gateway.stream.push import Push
from gateway.stream.sinks import Sink, new_sink
from gateway.stream.source import Source, now
from gateway.stream.trace import start_trace


class StreamSession:
    """One stream. Created per admitted, validated request by :func:`start_stream`."""

    __slots__ = (
        "_beat",
        "_cancelled",
        "_error_response",
        "_errors",
        "_start_lock",
        "admission",
        "closed",
        "deadlines",
        "failover",
        "failure",
        "meter",
        "model",
        "record",
        "request_id",
        "route",
        "sink",
        "slow_client",
        "source",
        "state",
        "task",
        "trace",
    )

    def __init__(
        self,
        state: GatewayState,
        route: RouteConfig,
        request: ClientRequest,
        plan: StreamPlan,
        request_id: str,
        received: float,
        admission: Admission,
        headers: dict[str, str],
        errors: ErrorShape,
        sink: Sink | None = None,
    ) -> None:
        server = state.config.server
        self.state = state
        self.route = route
        self.request_id = request_id
        self.model = plan.model
        self.admission = admission
        self.trace = start_trace(state, request.headers, route, plan, received)
        self.record: StreamRecord = self.trace.new_record(
            state.route_metrics[route.name], received, admission.app
        )
        self.meter = Meter(
            state.pricer,
            state.metrics.accounting,
            admission,
            route.name,
        )
        self.sink: Sink = sink or new_sink(  # a given sink: resume's recording sink
            request,
            plan.encoder,
            headers,
            max_bytes=route.max_output_bytes,
            max_write_buffer=server.max_write_buffer_bytes,
            t0=received,
        )
        self.failover = Failover(
            self,
            plan.attempts,
            state.session,
            server.max_upstream_event_bytes,
            choices_for(plan.attempts, state.pools.get(route.name)),
            self.meter.hook,
            state.raw_client,
        )
        self.deadlines = Deadlines(  # by position: keywords would cost a dict (``serve.py``)
            self,
            received,
            plan.attempts[0].target.timeouts.total,
            route.max_stream_duration,
            server.heartbeat_interval,
            server.write_timeout,
        )
        self.source: Source | None = None
        self.failure: GatewayError | None = None
        self.closed = False
        self.slow_client = False
        self.task: asyncio.Task[object] | None = None
        self._errors = errors
        self._error_response: web.Response | None = None
        self._start_lock = asyncio.Lock()
        self._beat: asyncio.Future[None] | None = None
        self._cancelled = False
        """The gateway cancelled the task itself (an interruption before the upstream answered),
        as opposed to the client going away."""

    async def run(self) -> Reply:
        """Serve the stream. Returns the response (an error document if nothing was sent)."""
        self.task = asyncio.current_task()
        self.state.sessions.add(self)
        self.record.started()
        self.deadlines.start(self.record.t0)
        try:
            source = await self.failover.open()
            self.record.upstream_chosen()
            await self._pipe(source)
        except asyncio.CancelledError:
            if not self._cancelled:  # the client went away
                self._client_gone()
                raise
            # Our own cancel (shutdown before the upstream answered): report it, do not raise.
            if self.task is not None:
                self.task.uncancel()
            assert self.failure is not None  # set by interrupt() before it cancels
            await self._fail(self.failure)
        except GatewayError as exc:
            await self._fail(exc)
        except Exception:  # a bug: never a traceback to the client
            log_event("internal_error", logging.ERROR, route=self.route.name, id=self.request_id)
            logging.getLogger("gateway").exception("unexpected error in stream")
            await self._fail(InternalError("the gateway failed to serve this stream"))
        finally:
            self._finish()
        response = self._error_response or self.sink.result()
        assert response is not None
        return response

    async def _pipe(self, source: Source) -> None:
        """Upstream event batches into the sink, until the terminal event.

        Each read is pulled here, or pushed (:mod:`gateway.stream.push`) while the stream is in
        its steady state: then this coroutine only waits until the push path hands back."""
        record = self.record
        try:
            early = await source.read_ready()  # a short answer's body came with its head
        except GatewayError:  # bad bytes: the stream fails as if they had come after the head
            await self._open(source.take_held())
            raise
        await self._open(source.take_held())
        if early:
            record.overhead(now() - source.last_read)
        push: Push | None = None  # made at the first read to wait for (a short answer has none)
        while not source.done or source.held:
            if source.held:  # a read the push path handed back (maybe the terminal event)
                await self._deliver(source.take_held(), source.last_read)
                continue
            if push is None:
                push = Push.of(source, self.sink, record)
            if await push.run():  # reads went straight to the client until one needed us
                continue
            events = await source.next_batch()
            if events:
                t_read = source.last_read
                await self._deliver(events, t_read)
                record.overhead(now() - t_read)
        terminal = source.pipeline.terminal
        if terminal is None or terminal.type == ev.END:
            record.completed()
        else:
            record.failed(str(terminal.data.get("code")))

    # -- starting and writing ----------------------------------------------------------------

    async def _open(self, held: list[Event]) -> None:
        """The response head, ``created`` and the ``held`` events, in one write."""
        if not await self._start(first=held):
            await self._deliver(held)

    async def _start(self, *, commit: bool = False, first: list[Event] | None = None) -> bool:
        """Send the response headers and ``created`` (once; a heartbeat may get here first).

        ``first``: events to deliver with ``created``. Returns whether they went (if not, the
        caller delivers them).
        """
        async with self._start_lock:
            if self.sink.started or self.closed:
                return False
            if not await self.sink.start(commit=commit):
                return False  # a buffered answer waits for its end
            self.deadlines.response_started()
            attempt = self.failover.served_by
            model = attempt.model
            created = ev.created(self.request_id, self.route.name, attempt.target.provider, model)
            await self._deliver([created, *(first or ())])
            return True

    async def _deliver(self, events: list[Event], t_read: float | None = None) -> None:
        """Encode ``events`` into one write and record them.

        ``t_read`` is when the events were read (taken once per upstream read). Raises
        :class:`LimitExceeded` once ``max_output_bytes`` went out (after at most one event more).
        """
        if not events:
            return
        if events[-1].type == ev.ERROR:  # once per stream: providers echo keys in errors
            events[-1] = self.failover.served_by.scrub_event(events[-1])
        sink = self.sink
        data, count = sink.frame(events)
        if count < len(events):
            events = events[:count]
        self.record.wrote(events, now() if t_read is None else t_read)
        if data or sink.ending:  # an empty end still goes through the sink, which ends the body
            await sink.send(data)
        if sink.over_limit and not self.record.ended:
            raise LimitExceeded(f"stream output exceeded {sink.max_bytes} bytes")

    # -- what the deadlines and the server call ----------------------------------------------

    def interrupt(self, exc: GatewayError) -> None:
        """End the stream with ``exc`` (deadline, limit, shutdown) from outside the read loop."""
        if self.failure is not None:
            return
        self.failure = exc
        if self.source is not None:
            self.source.interrupt(exc)
        elif self.task is not None:
            self._cancelled = True
            self.task.cancel()  # still waiting for the upstream to answer

    def clear_failure(self) -> None:
        self.failure = None

    def shutdown(self) -> None:
        self.interrupt(ShutdownError("the gateway is shutting down; retry the request"))

    def heartbeat(self) -> None:
        beat = self._beat
        if beat is not None and not beat.done():
            return
        self.sink.last_write = now()
        self._beat = self.sink.beating = asyncio.ensure_future(self._send_heartbeat())

    async def _send_heartbeat(self) -> None:
        try:
            if not self.sink.started:
                await self._start(commit=True)
            if await self.sink.heartbeat():
                self.record.heartbeat()
        except (ConnectionResetError, RuntimeError):
            pass  # the client is gone; the handler's cancellation reports it

    def cut_slow_client(self) -> None:
        self.slow_client = True
        self.record.slow_client()
        self.sink.abort()

    def flush(self) -> None:
        self.record.flush()

    # -- endings -----------------------------------------------------------------------------

    async def _fail(self, exc: GatewayError) -> None:
        self.record.failed(exc.error_code, upstream=isinstance(exc, UpstreamError))
        async with self._start_lock:  # a heartbeat may be starting the response right now
            if not self.sink.started:
                self.closed = True
                self._error_response = self._errors(exc, self.sink.headers)
                return
        source = self.source
        # Held-back events go first; when the pipeline already ended (an early error event that
        # a heartbeat kept from failing over), its terminal event is among them.
        events = source.take_held() + source.fail(exc) if source is not None else []
        if not self.record.ended and not any(e.is_terminal for e in events):
            events.append(Event(ev.ERROR, exc.to_event_data()))
        try:
            await self._deliver(events)
        except asyncio.CancelledError:
            self._client_gone()  # it left while the terminal event was going out
            raise
        except LimitExceeded:
            pass  # the terminal event went out anyway

    def _client_gone(self) -> None:
        """The client disconnected (or a slow client was cut): close or drain the upstream.

        A connection lost while a graceful shutdown is ending the stream (its terminal event
        blocked on a client that does not read, until the server closes the connection) is the
        shutdown's doing: outcome ``shutdown``, not a client abort."""
        shutdown = isinstance(self.failure, ShutdownError)
        if shutdown and not self.slow_client:  # a slow client is counted as cut instead
            self.record.failed(ShutdownError.code, upstream=False)
        elif not self.slow_client:
            self.record.aborted(upstream_open=self.source is not None)
        lost_at = self.sink.client_lost_at()
        source = self.source
        if source is None:  # open_upstream closed its own connection as the cancel went through
            if lost_at is not None:
                self.record.cancelled(now() - lost_at)
            return
        self.source = None
        route = self.route
        release = self.failover.hand_over(self.record.t_first_content)  # a pool's slot
        settle = _settled_then(self.meter.settle, release)

        def start_drain() -> Coroutine[Any, Any, None]:
            self.meter.hand_to_drain()  # the drain settles, with the whole usage
            return drain(source, self.record, route.drain_timeout, self.request_id, settle)

        if route.on_client_abort == "drain" and self.state.try_drain(start_drain):
            return  # the drain owns the upstream now
        if route.on_client_abort == "detach" and self.sink.detach(
            source, self.record, self.request_id, settle
        ):
            self.meter.hand_to_drain()  # the detached pump settles, with the whole usage
            return  # the sink records the rest (resumable streams)
        t = now() if lost_at is None else lost_at
        source.close()
        release()
        self.record.cancelled(now() - t)

    def _finish(self) -> None:
        self.closed = True
        self.task = None  # a cancelled task keeps its CancelledError, whose frames hold us
        if self.failure is not None:  # so does an interruption (the source raised it through us)
            self.failure.__traceback__ = None
        self.deadlines.stop()
        if self.source is not None:
            self.source.close()
        self.failover.close(self.record.t_first_content)  # a pool deployment's slot
        self.state.sessions.discard(self)
        self.sink.finished()
        record = self.record
        duration = record.finished(now())
        self.meter.finished(record.usage, record.attempts)
        self.trace.finish(self)
        usage = record.usage
        fields = {
            "route": self.route.name,
            "id": self.request_id,
            "app": record.app,
            "upstream": self.failover.served_by.target.provider,
            "outcome": record.outcome,
            "code": record.error_code,
            "ttft_ms": _ms(record.t_first_content, record.t0),
            "headers_ms": _ms(record.t_headers, record.t0),
            "duration_ms": round(duration * 1e6) / 1000,
            "events": record.events_written,
            "bytes": self.sink.bytes_written,
            "cost_usd": cost_of(usage),
        }
        for key, value in usage.items():
            if isinstance(value, int):
                fields[key] = value
        log_fields("stream", fields)


def _ms(t: float | None, t0: float) -> float | None:
    return None if t is None else round((t - t0) * 1e6) / 1000  # ms to 3 places, no decimal round


def _settled_then(
    settle: Callable[[Mapping[str, Any]], None], release: Callable[[], None]
) -> Callable[[Mapping[str, Any]], None]:
    """``settle``, then ``release``, whatever ``settle`` does: the end of a drain or a
    detached pump settles the stream's usage and frees its pool deployment's slot."""

    def settle_and_release(usage: Mapping[str, Any]) -> None:
        try:
            settle(usage)
        finally:
            release()

    return settle_and_release
