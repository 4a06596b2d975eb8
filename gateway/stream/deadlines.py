"""One lazily re-armed timer per stream enforces every deadline, with no per-event timer work.

The timer fires at the nearest deadline, checks them all against timestamps the hot path only
assigns (the source's last read, the sink's last write), acts on those passed and re-arms:
upstream ``first_event`` / ``idle`` / ``total`` silence and ``max_stream_duration`` (interrupt the
pending upstream read, so the normal path writes the terminal event), heartbeats toward a silent
client, and the slow-client write deadline (cut the transport).

:class:`Deadlines` holds a narrow handle on what it watches and interrupts (:class:`Watched`), not
the session's state.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.errors import GatewayError, LimitExceeded, UpstreamTimeout
from gateway.stream.sinks import Sink
from gateway.stream.source import Source, now


class Watched(Protocol):
    """What the deadlines read and act on (a stream session)."""

    @property
    def source(self) -> Source | None:
        """The upstream being read, once one answered."""

    @property
    def sink(self) -> Sink: ...

    @property
    def failure(self) -> GatewayError | None:
        """Set once the stream was interrupted."""

    @property
    def closed(self) -> bool: ...

    def interrupt(self, exc: GatewayError) -> None:
        """End the stream with ``exc`` from outside the read loop."""

    def heartbeat(self) -> None:
        """Send a heartbeat now (starting the response if needed), without blocking."""

    def cut_slow_client(self) -> None:
        """The client accepted no bytes for ``write_timeout``: drop its connection."""

    def flush(self) -> None:
        """Push the stream's batched metrics out."""


class Deadlines:
    """The timer of one stream. :meth:`arm` it once; it re-arms itself until :meth:`stop`."""

    __slots__ = (
        "_loop",
        "_stream",
        "_timer",
        "_when",
        "deadline_total",
        "duration_is_limit",
        "heartbeat_interval",
        "max_duration",
        "write_timeout",
    )

    def __init__(
        self,
        stream: Watched,
        received: float,
        total: float,
        max_duration: float | None,
        heartbeat_interval: float,
        write_timeout: float,
    ) -> None:
        self._stream: Watched | None = stream
        """Until :meth:`stop`: the stream holds this timer, so holding it back is a cycle."""
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0
        """When the armed timer fires (``now()`` clock)."""
        self.heartbeat_interval = heartbeat_interval
        self.write_timeout = write_timeout
        self.max_duration = max_duration
        self.duration_is_limit = max_duration is not None and max_duration < total
        self.deadline_total = received + (
            max_duration if max_duration is not None and max_duration < total else total
        )

    def start(self, t0: float) -> None:
        """The stream opened at ``t0``: the first heartbeat, or the stream's end, whichever is
        first (an upstream that answers and a response that starts add theirs:
        :meth:`upstream_answered`, :meth:`response_started`)."""
        self.arm(min(t0 + self.heartbeat_interval, self.deadline_total))

    def arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._when = when
        self._timer = self._loop.call_later(max(0.0, when - now()), self._tick)

    def wake_by(self, when: float) -> None:
        """Make sure the timer fires by ``when`` (a new deadline: an upstream answered, so its
        first event is due by then). The armed timer already covers every other deadline, so it
        is moved only if it would fire later."""
        if self._timer is None or when < self._when:
            self.arm(when)

    def upstream_answered(self, sent: float, at: float, first_event: float, idle: float) -> None:
        """An upstream whose request was sent at ``sent`` answered at ``at``: its first event is
        due within ``first_event`` of ``sent`` (the wait for the headers counts), each later one
        within ``idle`` of the last read. The first event turns one limit into the other at a
        read the timer is not told of, so the timer looks again by ``at + idle`` as well (and
        every ``idle`` while the first event is awaited: :meth:`_tick`)."""
        self.wake_by(min(sent + first_event, at + idle))

    def response_started(self) -> None:
        """The response head went out: from now on the timer checks for a stalled client at
        least every ``write_timeout / 2``."""
        self.wake_by(now() + self.write_timeout / 2)

    def rearm_now(self) -> None:
        """Check now (the timer had stopped)."""
        self.arm(now())

    def stop(self) -> None:
        """For good: cancel the timer and let go of the stream, so that the stream and its parts
        are freed by reference counting as it ends, not left to the cyclic collector."""
        self._stream = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def total_passed(self) -> bool:
        return now() >= self.deadline_total

    def _tick(self) -> None:
        """Check every deadline; act on those passed; re-arm at the nearest next one.

        A write that blocks on the client is noticed by the next tick, so while the response is
        open the timer never sleeps longer than half the write timeout: a stalled client is cut
        between 1 and 1.5 ``write_timeout`` after its last progress (also on the final write).
        """
        self._timer = None
        stream = self._stream
        if stream is None or stream.closed:
            return
        stream.flush()  # the stream's batched metrics reach /metrics at least this often
        sink = stream.sink
        t = now()
        if sink.writing:  # blocked on the client: the upstream is silent because we stopped reading
            stall_deadline = sink.write_since + self.write_timeout
            if t >= stall_deadline:
                stream.cut_slow_client()
                return
            # The write may end any moment, and nothing else wakes the timer when it does: look
            # again within a heartbeat interval (and the upstream's idle limit), not only at the
            # stall deadline, or a silence after the write goes without heartbeats (and its
            # deadlines unchecked) for up to ``write_timeout``.
            poll = self.heartbeat_interval
            source = stream.source
            if source is not None:
                poll = min(poll, source.attempt.target.timeouts.idle)
            self.arm(min(stall_deadline, t + poll))
            return
        nxt = t + self.write_timeout / 2 if sink.started else self.deadline_total
        source = stream.source
        if source is not None and source.done:
            self.arm(nxt)  # only the last write is left
            return
        if t >= self.deadline_total and stream.failure is None:
            stream.interrupt(self._duration_error())
            self.arm(t + self.write_timeout / 2)  # the terminal write keeps its stall guard
            return
        nxt = min(nxt, self.deadline_total)
        if source is not None:
            timeouts = source.attempt.target.timeouts
            got_event = source.got_event
            if got_event:
                limit = timeouts.idle
                upstream_deadline = source.last_read + limit
            else:  # request sent -> first event (contract section 2), headers' wait included
                limit = timeouts.first_event
                upstream_deadline = source.t_sent + limit
            if t >= upstream_deadline and stream.failure is None:
                what = "sent nothing" if not got_event else "went silent"
                stream.interrupt(UpstreamTimeout(f"the upstream {what} for {limit:g}s"))
                self.arm(t + self.write_timeout / 2)  # the terminal write keeps its stall guard
                return
            if not got_event:  # when it comes, a silence after it is due within ``idle``
                upstream_deadline = min(upstream_deadline, t + timeouts.idle)
            nxt = min(nxt, upstream_deadline)
        beat = sink.last_write + self.heartbeat_interval
        if t >= beat:
            stream.heartbeat()
            beat = t + self.heartbeat_interval
        self.arm(min(nxt, beat))

    def _duration_error(self) -> GatewayError:
        if self.duration_is_limit:
            return LimitExceeded(
                f"the stream exceeded max_stream_duration ({self.max_duration:g}s)"
            )
        return UpstreamTimeout("the stream exceeded its total timeout")
