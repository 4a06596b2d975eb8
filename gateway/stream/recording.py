"""Recording a live stream for resumption: the recording sink and the detached pump.

:func:`open_recording` (``start_stream``, once the request is admitted and valid) gives the
sink of a resumable stream, or ``None`` (then the response says ``X-Resume: unavailable`` when
the route has resume on but this stream cannot be resumed: a non-``tokens`` ``?format=``, or a
per-process cap reached); :func:`attach` binds it to its session.

:class:`RecordingSink` is the client sink of a resumable stream (``tokens`` format). It tees
every frame it encodes into the stream's :class:`~gateway.resume.base.Recorder` *before* the
client write, so a frame the client never got (its connection died during the write) is still
in the record. Heartbeats are not recorded. The session composes it like any sink; the three
hooks it uses are no-ops on the other sinks:

* ``frame(events)``: encode, record ``(id, frame)`` per event; after the terminal frame the
  record is finished (the window starts);
* ``detach(source, record, request_id, settle)``: the client left and the route says
  ``on_client_abort: detach``: this sink takes the upstream over and a :class:`Detached` pump
  reads it into the record, with no client writes, until its terminal event,
  ``resume.window``, or ``DELETE`` (then ``settle`` gets the whole usage);
* ``finished()``: the session ended; without a terminal frame in the record (the client left
  and the upstream was cancelled, or a bug), an ``error{code: shutdown}`` frame ends the record
  so no follower waits forever.

``DELETE`` (``ResumeStore.stop``) calls :meth:`RecordingSink.stop`: the session (or the pump)
is interrupted with :class:`~gateway.errors.StreamStopped`, whose ``error{code: stopped}``
frame is the stream's terminal event, for the client if one is still there and in the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from gateway import events as ev
from gateway.config.model import RouteConfig
from gateway.config.resume import RESUMABLE_FORMATS
from gateway.encoders.base import Encoder
from gateway.errors import (
    GatewayError,
    LimitExceeded,
    ShutdownError,
    StreamStopped,
    UpstreamTimeout,
    scrub_error_data,
)
from gateway.events import Event
from gateway.http import ClientRequest
from gateway.logs import log_event
from gateway.metrics import StreamRecord
from gateway.resume.base import Recorder, stream_owner
from gateway.resume.wiring import store_for
from gateway.state import GatewayState
from gateway.stream.drain import fold_batch, record_after_abort
from gateway.stream.sinks import StreamingSink
from gateway.stream.source import Source, now

log = logging.getLogger("gateway.resume")

UNAVAILABLE = {"X-Resume": "unavailable"}

_TASKS: set[asyncio.Task[Any]] = set()
"""Finish/abandon calls scheduled from synchronous hooks (kept referenced until done)."""


class Interruptible(Protocol):
    """What a stop interrupts: the session while a client is attached."""

    def interrupt(self, exc: GatewayError) -> None: ...


def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.ensure_future(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


class RecordingSink(StreamingSink):
    """A streaming sink that records each frame with its SSE id (see the module docstring)."""

    __slots__ = (
        "detached",
        "ended",
        "last_id",
        "max_duration",
        "on_detach",
        "owner",
        "recorder",
        "window",
    )

    def __init__(
        self,
        request: ClientRequest,
        encoder: Encoder,
        headers: dict[str, str],
        *,
        window: float,
        max_bytes: int | None,
        max_write_buffer: int,
        t0: float,
        max_duration: float | None = None,
    ) -> None:
        super().__init__(
            request,
            encoder,
            headers,
            max_bytes=max_bytes,
            max_write_buffer=max_write_buffer,
            t0=t0,
        )
        self.recorder: Recorder | None = None
        self.window = window
        self.max_duration = max_duration
        """``route.max_stream_duration``: a detached pump keeps the stream's own bounds."""
        self.last_id = 0
        """The SSE id of the last frame encoded (the ``tokens`` encoder counts 1, 2, 3 ...)."""
        self.ended = False
        """The terminal frame is in the record."""
        self.owner: Interruptible | None = None
        self.detached: Detached | None = None
        self.on_detach: Callable[[Detached], None] | None = None
        """Told of the pump when the sink detaches (``wiring.attach`` tracks it)."""

    def frame(self, events: list[Event]) -> tuple[bytes, int]:
        """:meth:`Sink.frame`, and the frames carried go to the record with their SSE ids."""
        parts = self.frame_parts(events)
        count = len(parts)
        first = self.last_id + 1
        self.last_id += count
        if self.recorder is not None and not self.ended:
            self.recorder.extend(first, parts)
            if events[count - 1].is_terminal:
                self.ended = True
                spawn(self.recorder.finish())
        return b"".join(parts), count

    # -- the session's hooks -----------------------------------------------------------------

    def detach(
        self,
        source: Source,
        record: StreamRecord,
        request_id: str,
        settle: Callable[[dict[str, int]], None] | None = None,
    ) -> bool:
        """Take ``source`` over after the client left; False: cancel it as usual.

        ``settle`` is called with the stream's whole usage when the detached pump ends (budgets
        and cost are settled on what the upstream really generated)."""
        if self.recorder is None or self.ended or not self.recorder.detach():
            return False
        pump = self.detached = Detached(self, source, record, request_id, settle)
        if self.on_detach is not None:
            self.on_detach(pump)
        pump.task = spawn(pump.run())
        return True

    def finished(self) -> None:
        """The session ended: end the record unless the terminal frame or a pump will."""
        self.owner = None  # the session holds this sink: no cycle left for the collector
        if self.recorder is None or self.ended or self.detached is not None:
            return
        self.end_with(ShutdownError("the stream ended before its terminal event"))

    def end_with(self, exc: GatewayError) -> None:
        """Record a terminal ``error`` frame for ``exc`` (next id) and finish the record."""
        self.frame([Event(ev.ERROR, exc.to_event_data())])

    def stop(self) -> None:
        """``DELETE``: interrupt whoever runs the stream (called by the store's ``stop``)."""
        exc = StreamStopped("the stream was stopped (DELETE)")
        if self.detached is not None:
            self.detached.interrupt(exc)
        elif self.owner is not None:
            self.owner.interrupt(exc)


class Detached:
    """The upstream of a stream whose client left, read into the record and nowhere else.

    It stands in ``state.sessions`` while it runs (a stream still holds an upstream), so a
    graceful shutdown reaches it (:meth:`shutdown`). Usage after the abort is counted like a
    drain's (``gateway_tokens_after_abort_total``).
    """

    def __init__(
        self,
        sink: RecordingSink,
        source: Source,
        record: StreamRecord,
        request_id: str,
        settle: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.sink = sink
        self._settle_usage = settle
        self.source = source
        self.record = record
        self.request_id = request_id
        self.failure: GatewayError | None = None
        self.task: asyncio.Task[None] | None = None
        self.on_end: list[Callable[[Detached], None]] = []
        self._before = dict(record.usage)
        self._writes_before = record.content_writes
        self._timer: asyncio.TimerHandle | None = None
        timeouts = source.attempt.target.timeouts
        max_duration = sink.max_duration
        self._duration_is_limit = max_duration is not None and max_duration < timeouts.total
        limit = max_duration if max_duration is not None and self._duration_is_limit else None
        self._deadline_total = record.t0 + (timeouts.total if limit is None else limit)
        """The session's own bounds hold after the abort too (``gateway.stream.deadlines``):
        ``max_stream_duration`` / ``timeouts.total`` from when the request came, and the
        upstream's ``idle`` silence, checked by one timer (no work per read)."""

    def interrupt(self, exc: GatewayError) -> None:
        if self.failure is None:
            self.failure = exc
            self.source.interrupt(exc)

    def shutdown(self) -> None:
        self.interrupt(ShutdownError("the gateway is shutting down; retry the request"))

    def _tick(self) -> None:
        """Interrupt the pump past the stream's total deadline or the upstream's silence limit
        (the same errors as an attached stream's), else look again at the next deadline."""
        self._timer = None
        source = self.source
        if self.failure is not None or source.done:
            return
        t = now()
        timeouts = source.attempt.target.timeouts
        if source.got_event:
            limit, what, until = timeouts.idle, "went silent", source.last_read + timeouts.idle
        else:
            limit, what = timeouts.first_event, "sent nothing"
            until = source.t_sent + limit
        if t >= self._deadline_total:
            self.interrupt(self._duration_error())
        elif t >= until:
            self.interrupt(UpstreamTimeout(f"the upstream {what} for {limit:g}s"))
        else:
            nxt = min(until, self._deadline_total)
            if not source.got_event:  # when it comes, a silence after it counts from it
                nxt = min(nxt, t + timeouts.idle)
            self._timer = asyncio.get_running_loop().call_later(nxt - t, self._tick)

    def _duration_error(self) -> GatewayError:
        if self._duration_is_limit:
            return LimitExceeded(
                f"the stream exceeded max_stream_duration ({self.sink.max_duration:g}s)"
            )
        return UpstreamTimeout("the stream exceeded its total timeout")

    async def run(self) -> None:
        sink, source = self.sink, self.source
        usage = dict(self._before)
        reads_after = 0
        outcome = "completed"
        try:
            batch = source.take_held()
            self._tick()
            async with asyncio.timeout(sink.window):
                while True:
                    if batch:
                        reads_after += fold_batch(batch, usage)
                        data, _ = sink.frame(_scrubbed(batch, source))
                        sink.bytes_written += len(data)  # the output bound counts the record
                        if sink.over_limit and not sink.ended:
                            raise LimitExceeded(f"stream output exceeded {sink.max_bytes} bytes")
                    if source.done:
                        break
                    batch = await source.next_batch()
        except TimeoutError:
            outcome = "window"
            self._end(source.fail(LimitExceeded("the resume window ended before the stream")))
        except GatewayError as exc:
            outcome = exc.error_code
            self._end(source.fail(exc))
        except asyncio.CancelledError:
            outcome = "shutdown"
            self._end(source.fail(ShutdownError("the gateway is shutting down")))
            raise
        except Exception:
            log.exception("detached stream failed")
            outcome = "internal"
            self._end([])
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            with contextlib.suppress(Exception):
                source.close()
            self._settle(usage, reads_after)
            log_event(
                "detached", route=self.record.metrics.route, id=self.request_id, outcome=outcome
            )
            for callback in self.on_end:
                callback(self)

    def _end(self, events: list[Event]) -> None:
        sink = self.sink
        if sink.ended:
            return
        if events and any(e.is_terminal for e in events):
            sink.frame(_scrubbed(events, self.source))
        if not sink.ended:
            sink.end_with(self.failure or ShutdownError("the stream ended unexpectedly"))

    def _settle(self, usage: dict[str, int], reads_after: int) -> None:
        record_after_abort(self.record, self._before, usage, self._writes_before, reads_after)
        if self._settle_usage is not None:
            self._settle_usage(usage)


async def open_recording(
    state: GatewayState,
    route: RouteConfig,
    request: ClientRequest,
    encoder: Encoder,
    headers: dict[str, str],
    *,
    stream_id: str,
    app: str | None,
    received: float,
) -> RecordingSink | None:
    """The recording sink for a new stream of ``route``, or ``None`` (not resumable).

    ``stream_id`` is the request id (the ``created`` id). When the route has resume on and this
    stream cannot be recorded, ``X-Resume: unavailable`` is added to ``headers``.
    """
    store = store_for(state, route)
    if store is None:
        return None
    if encoder.name not in RESUMABLE_FORMATS or encoder.buffered:
        headers.update(UNAVAILABLE)
        return None
    server = state.config.server
    sink = RecordingSink(
        request,
        encoder,
        headers,
        window=route.resume.window,
        max_bytes=route.max_output_bytes,
        max_write_buffer=server.max_write_buffer_bytes,
        t0=received,
        max_duration=route.max_stream_duration,
    )
    response_headers = {
        "Content-Type": encoder.content_type,
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",
        **encoder.extra_headers,
        **headers,
    }
    try:
        recorder, reason = await store.open(
            stream_id,
            stream_owner(route.name, app),
            response_headers,
            route.resume.window,
            route.resume.max_events,
            on_stop=sink.stop,
        )
    except Exception as exc:  # the store is down: the stream runs, unrecorded
        log.warning("resume store open failed: %s", type(exc).__name__)
        recorder, reason = None, "store_error"
    if recorder is None:
        headers.update(UNAVAILABLE)
        log.info("stream %s not resumable: %s", stream_id, reason)
        return None
    sink.recorder = recorder
    return sink


def attach(sink: RecordingSink | None, session: Interruptible, state: GatewayState) -> None:
    """Bind a recording sink to its session (a ``DELETE`` interrupts it) and let a detached
    pump stand in ``state.sessions`` (graceful shutdown reaches it) while it runs."""
    if sink is None:
        return
    sink.owner = session
    sink.on_detach = lambda pump: _track(pump, state)


def _track(pump: Detached, state: GatewayState) -> None:
    state.sessions.add(pump)
    pump.on_end.append(state.sessions.discard)


def _scrubbed(events: list[Event], source: Source) -> list[Event]:
    """The batch with the provider credential taken out of a terminal error's message."""
    last = events[-1] if events else None
    if last is None or last.type != ev.ERROR:
        return events
    data = scrub_error_data(last.data, source.attempt.target.upstream.api_key)
    return events if data is last.data else [*events[:-1], Event(ev.ERROR, data)]
