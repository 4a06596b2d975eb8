"""Client sinks: where a stream's events go, encoded for the client.

A sink owns the client response and nothing else: :meth:`Sink.start` sends the headers,
:meth:`Sink.frame` encodes a batch of events (holding the output-size bound per event),
:meth:`Sink.send` writes bytes (timed, for the slow-client deadline), :meth:`Sink.heartbeat`
keeps a silent stream alive, and :meth:`Sink.result` is the response the handler returns.

* :class:`StreamingSink`: every streamed format (token SSE and every registered encoder).
* :class:`BufferedSink`: non-streaming answers (``encoder.buffered``): nothing is sent until the
  terminal event, then one document with the encoder's ``status``; if a heartbeat falls due first
  it commits to 200 and streams the encoder's heartbeat bytes (JSON allows leading whitespace).

A new way to deliver a stream is a new sink: the session calls only the methods above and two
hooks that are no-ops here, :meth:`Sink.detach` (the client left and the route says
``on_client_abort: detach``) and :meth:`Sink.finished`; the recording sink of resumable streams
(:mod:`gateway.stream.recording`) is one.

One token's way out (:meth:`Sink.send`): once the headers went out, a frame is written straight
to the client's transport as one HTTP chunk while the transport is not paused (no coroutine, no
drain); when the transport's buffer is over its high-water mark (``pause_writing``), the write goes
through the response's ``write`` (the fast server's :class:`~gateway.httpexchange.ServerResponse`
or aiohttp's ``StreamResponse``), which waits for ``resume_writing`` (the slow-client deadline
runs meanwhile). The
frame that carries the terminal event goes out with the chunked terminator in one write
(``write_eof``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.encoders.base import Encoder
from gateway.events import ERROR, Event
from gateway.http import ClientRequest, cut_response, direct_transport, start_response
from gateway.httpexchange import Reply
from gateway.stream.source import Source, now

if TYPE_CHECKING:
    from gateway.metrics import StreamRecord


class Sink:
    """A client response fed with encoded events. One per stream."""

    __slots__ = (
        "_cut",
        "_direct",
        "_held",
        "_last",
        "_request",
        "beating",
        "bytes_written",
        "encoder",
        "headers",
        "last_write",
        "max_bytes",
        "max_write_buffer",
        "response",
        "started",
        "write_since",
        "writing",
    )

    def __init__(
        self,
        request: ClientRequest,
        encoder: Encoder,
        headers: dict[str, str],
        *,
        max_bytes: int | None,
        max_write_buffer: int,
        t0: float,
    ) -> None:
        self._request = request
        self.encoder = encoder
        self.headers = headers
        """Response headers (the encoder's content type and extras are added at start)."""
        self.max_bytes = max_bytes
        self.max_write_buffer = max_write_buffer
        self.response: Reply | None = None
        self.started = False
        self.writing = False
        self.write_since = 0.0
        self.last_write = t0
        self.bytes_written = 0
        self._held: list[bytes] = []
        self._direct: asyncio.Transport | None = None
        """The client transport, once writing straight to it is safe (see :meth:`send`)."""
        self._last = False
        """The last framed batch carried the terminal event."""
        self._cut = False
        """That event is an error the format ends cut short (``Encoder.cut_on_error``)."""
        self.beating: asyncio.Future[None] | None = None
        """A heartbeat write in flight: :meth:`send` waits for it so frames stay whole."""

    @property
    def ending(self) -> bool:
        """The last framed batch carried the terminal event: the next :meth:`send` ends the
        body (with the chunked terminator, or cut short: ``Encoder.cut_on_error``)."""
        return self._last

    @property
    def over_limit(self) -> bool:
        """More than ``max_bytes`` went out (``route.max_output_bytes``)."""
        return self.max_bytes is not None and self.bytes_written > self.max_bytes

    async def start(self, *, commit: bool = False) -> bool:
        """Send the response headers; True if they went out now.

        ``commit``: a heartbeat is due (a buffered sink starts only then).
        """
        response = await start_response(self._request, fixed_headers(self.encoder), self.headers)
        transport = self._request.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=self.max_write_buffer)
        self.response = response
        self.started = True
        return True

    def frame(self, events: list[Event]) -> tuple[bytes, int]:
        """The bytes for ``events`` and how many of them those bytes carry.

        All of them, unless the output bound is crossed: then the bytes stop after the event that
        crossed it (at most the bound plus one event goes out; the caller ends the stream).
        """
        parts = self.frame_parts(events)
        return b"".join(parts), len(parts)

    def frame_parts(self, events: list[Event]) -> list[bytes]:
        """:meth:`frame`, one item per event carried: ``parts[i]`` is ``events[i]`` encoded
        (the encoder's closing bytes follow the terminal event's). A sink that records frames
        one by one (resumption) uses this, so the encode-and-limit loop exists once."""
        encoder = self.encoder
        encode = encoder.encode
        limit = self.max_bytes
        if limit is None:
            parts = [encode(event) for event in events]
        else:
            parts = []
            size = self.bytes_written
            for event in events:
                data = encode(event)
                parts.append(data)
                size += len(data)
                if size > limit:
                    break
        terminal = events[len(parts) - 1]
        if terminal.is_terminal:
            tail = encoder.close()
            if tail:
                parts[-1] += tail
            self._last = True  # the terminal frame goes out with the chunked terminator
            self._cut = encoder.cut_on_error and terminal.type == ERROR  # or without it
        return parts

    async def send(self, data: bytes) -> None:
        """Write ``data`` to the client. A closed connection raises ``CancelledError``."""
        response = self.response
        assert response is not None
        beating = self.beating
        if beating is not None and not beating.done() and beating is not asyncio.current_task():
            await beating
        direct = self._direct
        if (
            direct is not None
            and not self._last
            and not self._request.protocol.writing_paused
            and not direct.is_closing()
        ):
            self.write_now(data)  # one HTTP chunk, no coroutine, no drain
            return
        self.writing = True
        self.write_since = now()
        try:
            if self._cut:
                await cut_response(self._request, response, data)  # no terminator: a failure
            elif self._last:
                await response.write_eof(data)  # the last chunk and the terminator, one write
            else:
                await response.write(data)
        except ConnectionResetError:
            # The transport closed before the cancellation landed: the client is gone.
            raise asyncio.CancelledError() from None
        finally:
            self.writing = False
        self.last_write = now()
        self.bytes_written += len(data)
        if self._direct is None:
            self._direct = direct_transport(self._request, response)  # the head is out

    def ready(self) -> bool:
        """Whether a frame could go out now without waiting: straight to the client's transport
        (the headers are out, no write or heartbeat under way, not paused, not the last frame).
        The push path (:mod:`gateway.stream.push`) asks this before framing a read's events."""
        direct = self._direct
        if direct is None or self._last or self.writing or direct.is_closing():
            return False
        beating = self.beating
        if beating is not None and not beating.done():
            return False
        return not self._request.protocol.writing_paused

    def write_now(self, data: bytes) -> None:
        """Write ``data`` as one HTTP chunk, now (only right after :meth:`ready` said so)."""
        direct = self._direct
        assert direct is not None
        direct.write(b"%x\r\n%b\r\n" % (len(data), data))
        self.last_write = now()
        self.bytes_written += len(data)

    async def heartbeat(self) -> bool:
        """Write the encoder's heartbeat unless a write is under way; True if written."""
        data = self.encoder.heartbeat()
        if not data or self.response is None or self.writing:
            return False
        self.writing = True
        self.write_since = now()
        try:
            await self.response.write(data)
        finally:
            self.writing = False
        self.last_write = now()
        return True

    @property
    def transport(self) -> asyncio.Transport | None:
        """The client connection's transport (``None`` once it closed)."""
        return self._request.transport

    def abort(self) -> None:
        """Drop the client's connection now (a client that stopped reading)."""
        transport = self.transport
        if transport is not None:
            transport.abort()

    def result(self) -> Reply | None:
        """The response to return from the handler (``None``: nothing was started)."""
        return self.response

    def client_lost_at(self) -> float | None:
        """When the client went away (``time.monotonic``), where the server says so (the fast
        server's connections do; aiohttp's do not): the start of an abort's cancel time."""
        return getattr(getattr(self._request, "protocol", None), "lost_at", None)

    def detach(
        self,
        source: Source,
        record: StreamRecord,
        request_id: str,
        settle: Callable[[dict[str, int]], None] | None = None,
    ) -> bool:
        """The client left and the route says ``on_client_abort: detach``: take ``source`` over
        and run it to its end without a client? Only a recording sink can (resumable streams,
        ``gateway.stream.recording``); False here: the session cancels it as usual."""
        return False

    def finished(self) -> None:
        """The session is over (its last call on the sink). A no-op here."""


class StreamingSink(Sink):
    """Streamed formats: headers when the upstream answers, each batch as it comes."""

    __slots__ = ()


class BufferedSink(Sink):
    """Non-streaming answers: the document waits for the terminal event (see the module docs)."""

    __slots__ = ()

    async def start(self, *, commit: bool = False) -> bool:
        if not commit:
            return False
        return await super().start()

    def ready(self) -> bool:
        return False  # the document waits for the terminal event: never pushed

    async def send(self, data: bytes) -> None:
        if self.started:
            await super().send(data)
        else:
            self._held.append(data)
            self.bytes_written += len(data)

    def result(self) -> Reply | None:
        """The held document; a failed one (status 400 or more) says in ``x-should-retry``
        whether asking again may succeed, as the front doors' errors before a stream do (the
        official SDKs obey it over their own rules, which retry every 5xx and 429)."""
        if self.started:
            return self.response
        encoder = self.encoder
        headers = self.headers
        if encoder.status >= 400:
            headers = {**headers, "x-should-retry": "true" if encoder.retryable else "false"}
        return web.Response(
            status=encoder.status,
            body=b"".join(self._held),
            content_type=encoder.content_type.split(";")[0],
            headers=headers,
        )


_FIXED: dict[type[Encoder], Mapping[str, str]] = {}


def fixed_headers(encoder: Encoder) -> Mapping[str, str]:
    """The headers of every streamed response in ``encoder``'s format (its content type, no
    caching or proxy buffering, its own extra ones): one read-only mapping per encoder class,
    so the fast server formats them once (:func:`gateway.httpexchange.head`)."""
    kind = type(encoder)
    fixed = _FIXED.get(kind)
    if fixed is None:
        fixed = _FIXED[kind] = MappingProxyType(
            {
                "Content-Type": kind.content_type,
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
                **kind.extra_headers,
            }
        )
    return fixed


def new_sink(
    request: ClientRequest,
    encoder: Encoder,
    headers: dict[str, str],
    *,
    max_bytes: int | None,
    max_write_buffer: int,
    t0: float,
) -> Sink:
    """The sink for ``encoder``: buffered for non-streaming encoders, streaming otherwise."""
    kind = BufferedSink if encoder.buffered else StreamingSink
    return kind(
        request, encoder, headers, max_bytes=max_bytes, max_write_buffer=max_write_buffer, t0=t0
    )
