"""The one event source: an opened upstream read through its pipeline, as batches of events.

``upstream bytes -> Pipeline -> [events]`` is written here once; the session's pump, holding
first events before a failover decision (:mod:`~gateway.stream.attempts`) and the drain of an
aborted stream (:mod:`~gateway.stream.drain`) all consume a :class:`Source`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from gateway import events as ev
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.passthrough import new_pipeline
from gateway.pipeline import UsageHook
from gateway.upstream import UpstreamStream

if TYPE_CHECKING:
    from gateway.stream.attempts import Attempt

now = time.monotonic
"""The one clock for stream timing (nanosecond resolution; uvloop's loop.time() has ms)."""


class Source:
    """An upstream that answered 2xx, with its pipeline and its read times.

    ``held`` are events produced but not yet delivered: ``thinking`` from :meth:`accepted`, then
    whatever :meth:`hold_until_content` read. ``last_read`` is when the last read returned;
    ``t_headers`` when the upstream answered (no read yet while ``last_read == t_headers``);
    ``t_sent`` when its request was sent (the ``first_event`` timeout counts from it: contract
    section 2, "request sent -> first upstream event").
    """

    __slots__ = (
        "_failure",
        "attempt",
        "held",
        "last_read",
        "pipeline",
        "t_headers",
        "t_sent",
        "upstream",
    )

    def __init__(
        self,
        attempt: Attempt,
        upstream: UpstreamStream,
        max_event_bytes: int,
        answered: float,
        on_usage: UsageHook | None = None,
        sent: float | None = None,
    ) -> None:
        self.attempt = attempt
        self.upstream = upstream
        self.pipeline = new_pipeline(attempt.adapter, attempt.tap, max_event_bytes)
        self.pipeline.on_usage = on_usage
        self.t_headers = self.last_read = answered
        self.t_sent = answered if sent is None else sent
        self.held: list[Event] = self.pipeline.accepted()
        self._failure: GatewayError | None = None

    @property
    def done(self) -> bool:
        """The pipeline produced its terminal event."""
        return self.pipeline.done

    @property
    def interrupted(self) -> bool:
        """:meth:`interrupt` was called (the next read raises, or ends the batch, with it)."""
        return self._failure is not None

    @property
    def got_event(self) -> bool:
        """A read returned since the upstream answered (``idle`` rather than ``first_event``)."""
        return self.last_read > self.t_headers

    async def next_batch(self) -> list[Event]:
        """Read once and translate: the events of that read (possibly none).

        At EOF the pipeline is closed (a missing terminator becomes ``upstream_truncated``). An
        interruption (:meth:`interrupt`) raises its error from the pending read; if the read
        returned anyway, the error ends the batch instead. Raises other upstream errors as
        :class:`GatewayError`; cancellation propagates.
        """
        chunk = await self.upstream.read()
        self.last_read = now()
        pipeline = self.pipeline
        events = pipeline.feed(chunk) if chunk else pipeline.close()
        if self._failure is not None and not pipeline.done:
            events += pipeline.fail(self._failure)
        return events

    async def read_ready(self) -> bool:
        """Translate into :attr:`held` what the upstream already sent, without waiting (the
        body bytes that came with its head, as a short answer's do). True if there were any.
        The response's first write then carries their events with ``created``."""
        if not self.upstream.ready():
            return False
        self.held += await self.next_batch()
        return True

    async def batches(self) -> AsyncIterator[list[Event]]:
        """Every batch until the terminal event (the last batch ends with it)."""
        while not self.pipeline.done:
            yield await self.next_batch()

    async def hold_until_content(self, stop: Callable[[], bool]) -> None:
        """Read into :attr:`held` until the first content or terminal event, or ``stop()``.

        The caller then asks :meth:`early_error` whether the stream failed before any content.
        """
        held = self.held
        while not self.pipeline.done and not stop():
            produced = await self.next_batch()
            held += produced
            if any(e.type in ev.CONTENT_TYPES for e in produced):
                return

    def early_error(self) -> Event | None:
        """The terminal ``error`` among the held events when no content came before it."""
        terminal = self.pipeline.terminal
        if terminal is None or terminal.type != ev.ERROR:
            return None
        if any(e.type in ev.CONTENT_TYPES for e in self.held):
            return None
        return terminal

    def take_held(self) -> list[Event]:
        held, self.held = self.held, []
        return held

    def fail(self, exc: GatewayError) -> list[Event]:
        """The terminal ``error`` for ``exc`` unless the stream already ended."""
        return self.pipeline.fail(exc)

    def interrupt(self, exc: GatewayError) -> None:
        """Make the pending (or next) read raise ``exc`` (deadlines, limits, shutdown)."""
        self._failure = exc
        self.upstream.interrupt(exc)

    def close(self) -> None:
        """Close the upstream connection now (idempotent).

        After a normal end (the terminal ``end``), the connection may instead go back to a pool
        once its HTTP response ends (:meth:`UpstreamStream.finish`); nothing is waiting on it.
        """
        terminal = self.pipeline.terminal
        if terminal is not None and terminal.type == ev.END:
            self.upstream.finish()
        else:
            self.upstream.close()
