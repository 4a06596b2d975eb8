"""One lazily re-armed timer per stream enforces every deadline, with no per-event timer work.

The timer fires at the nearest deadline, checks them all against the session's timestamps
(which the hot path only assigns), acts on those passed and re-arms: upstream ``first_event`` /
``idle`` / ``total`` silence and ``max_stream_duration`` (interrupt the pending upstream read, so
the normal path writes the terminal event), heartbeats toward a silent client, and the
slow-client write deadline (cut the transport).
"""

from __future__ import annotations

import asyncio

from gateway.errors import GatewayError, LimitExceeded, ShutdownError, UpstreamTimeout
from gateway.stream.base import SessionBase
from gateway.stream.base import now as _now


class Deadlines(SessionBase):
    """Deadlines, heartbeats and interruptions of a stream session."""

    __slots__ = ()

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
        self.rec.flush()  # the stream's batched metrics reach /metrics at least this often
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
