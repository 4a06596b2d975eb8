"""The push path: one upstream read decoded, encoded and written to the client inside the
upstream connection's ``data_received``, with no coroutine in between.

The pull loop (:meth:`StreamSession._pipe`) resumes the stream's coroutine once per upstream
read: the connection wakes a future, the loop schedules the task, the task steps through
``RawResponse.read``, ``Source.next_batch``, ``_pipe``, ``_deliver`` and ``Sink.send``. For a
stream in its steady state none of that waiting is needed, so while the session waits in
:meth:`Push.run` every read takes this way instead::

    uvloop: recv()
      └─ _Conn.data_received (gateway/rawhttp.py)        httptools strips the HTTP chunking
           └─ Push.consume (here)
                ├─ Pipeline.feed (gateway/pipeline.py)   SSE/NDJSON framing, the provider's
                │                                        translator, the protocol's guard
                ├─ Sink.frame (gateway/stream/sinks.py)  the client format's encoder, the output
                │                                        bound
                ├─ Sink.write_now                        one HTTP chunk: transport.write()
                └─ StreamRecord.wrote                    counts and content timing

Whatever needs to wait goes back to the pull loop, which is the one place that knows how: the
terminal event (written with the chunked terminator, then the session finishes), a client that
is not ready (a heartbeat under way, the transport paused: the slow-client deadline applies),
the output bound crossed (the stream ends with ``limit_exceeded``), the end of the body, an
error, an interruption (deadline, ``DELETE``, shutdown), or a bug. Then :meth:`consume` keeps the
read's events in ``source.held`` (undelivered: the loop delivers them first) and wakes the
session; the connection's reads wake the coroutine again as before. A client that goes away
cancels the session while it waits here; the ``finally`` unhooks the consumer before the
session's abort path closes the upstream.

Only the fast upstream client (:mod:`gateway.rawhttp`) can push; a stream on the aiohttp client
(``server.upstream_client: aiohttp``), a buffered answer and a drain always pull.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gateway.errors import GatewayError, InternalError, LimitExceeded
from gateway.events import Event
from gateway.rawhttp import RawResponse
from gateway.stream.source import Source, now

if TYPE_CHECKING:
    from gateway.metrics import StreamRecord
    from gateway.stream.sinks import Sink

log = logging.getLogger("gateway")


class Pushable(Protocol):
    """What the push path needs of an upstream (:class:`gateway.rawhttp.RawResponse`)."""

    def push_to(self, consumer: Callable[[bytes], None] | None) -> bool: ...

    async def wait(self) -> None: ...

    def wake(self) -> None: ...


class Push:
    """A session's push path: see the module docstring. :meth:`of` makes one for a session."""

    __slots__ = ("failure", "record", "sink", "source", "upstream")

    def __init__(
        self, source: Source, sink: Sink, record: StreamRecord, upstream: Pushable | None
    ) -> None:
        self.source = source
        self.sink = sink
        self.record = record
        self.upstream = upstream
        """``None``: this stream cannot be pushed (:meth:`run` always declines)."""
        self.failure: GatewayError | None = None
        """Why the last run handed back, when the stream must end with an error."""

    @classmethod
    def of(cls, source: Source, sink: Sink, record: StreamRecord) -> Push:
        """The push path of a stream reading ``source`` (only the fast client's can push)."""
        upstream = source.upstream
        return cls(source, sink, record, upstream if isinstance(upstream, RawResponse) else None)

    async def run(self) -> bool:
        """Push reads until one needs the pull loop; False (nothing done) when the stream cannot
        be pushed now. Raises the failure that ended it (limit, bug) after the hand-back."""
        upstream = self.upstream
        if upstream is None or self.source.held or not self.sink.ready():
            return False
        if not upstream.push_to(self.consume):
            return False
        try:
            await upstream.wait()
        finally:
            upstream.push_to(None)
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure
        return True

    def consume(self, chunk: bytes) -> None:
        """One upstream read, from ``data_received``: to the client now, or handed back."""
        source = self.source
        try:
            t_read = source.last_read = now()
            events = source.pipeline.feed(chunk)
            if not events:
                return
            sink = self.sink
            if events[-1].is_terminal or source.interrupted or not sink.ready():
                self._hand_back(events)
                return
            data, count = sink.frame(events)
            if count < len(events):  # the output bound: this much goes out, then the stream ends
                events = events[:count]
                self.failure = LimitExceeded(f"stream output exceeded {sink.max_bytes} bytes")
            self.record.wrote(events, t_read)
            if data:
                sink.write_now(data)
            if self.failure is None and sink.over_limit:
                self.failure = LimitExceeded(f"stream output exceeded {sink.max_bytes} bytes")
            self.record.overhead(now() - t_read)
            if self.failure is not None:
                self._hand_back([])
        except Exception:  # a bug must not reach the event loop's protocol callback
            log.exception("push path failed")
            self.failure = InternalError("the gateway failed to serve this stream")
            self._hand_back([])

    def _hand_back(self, events: list[Event]) -> None:
        """Stop pushing; the session's pull loop delivers ``events`` first."""
        self.source.held += events
        upstream = self.upstream
        assert upstream is not None
        upstream.push_to(None)
        upstream.wake()
