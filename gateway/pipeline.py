"""Upstream bytes to token-protocol events: framing decoder + adapter translator + protocol guard.

Pure and incremental: ``feed(bytes)`` may be called with any split of the upstream byte stream
and yields the same events. The :class:`Pipeline` is what makes contract section 5 rule 1 hold for
every adapter, whatever it emits:

* ``thinking`` at most once (the edge calls :meth:`Pipeline.accepted` when the upstream answers),
* ``clear`` exactly once, right before the first ``delta`` or ``tool_call``,
* ``end.reason`` is ``tool_calls`` whenever a ``tool_call`` went out,
* exactly one terminal event, last; anything after it is dropped; a stream that ends without one
  gets ``error{code: upstream_truncated}``,
* an :class:`~gateway.errors.GatewayError` raised by decoder or translator becomes the terminal
  ``error`` event instead of escaping; so does a ``TypeError``/``KeyError``/... from a translator
  fed an event of an unexpected shape (``upstream_protocol``).

``created`` is written by the edge before anything else (it knows the request id and route).

``on_usage`` (optional) sees each ``usage`` event as it passes the guard and returns the event
to emit in its place: the stream's cost is added there (``gateway/stream/meter.py``), once per
usage event (one per stream), never per content event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from gateway import events as ev
from gateway.adapters.base import Adapter, Translator
from gateway.errors import GatewayError, UpstreamProtocolError, UpstreamTruncated
from gateway.events import Event
from gateway.framing import DEFAULT_MAX_MESSAGE_BYTES, Decoder, Message, new_decoder
from gateway.values import mypyc_attr

UsageHook = Callable[[Event], Event]
"""Called with each ``usage`` event; returns the event to emit instead (see the module docs)."""

_VISIBLE = frozenset({ev.DELTA, ev.TOOL_CALL})
_SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError)
"""What a translator raises when a provider sends a well-formed JSON value of an unexpected type
(a list where an object was documented...). One place turns them all into ``upstream_protocol``
instead of every adapter type-checking every field of every event."""


def _malformed() -> Event:
    return Event(
        ev.ERROR,
        UpstreamProtocolError("the upstream sent an event of an unexpected shape").to_event_data(),
    )


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed by modules not compiled
class Pipeline:
    """One stream's translation state. Not thread-safe; one per stream.

    After a terminal event has been returned, :attr:`done` is true and further input is ignored.
    """

    __slots__ = (
        "_decoder",
        "_translator",
        "cleared",
        "done",
        "on_usage",
        "terminal",
        "thought",
        "tool_called",
    )

    hooked: ClassVar[bool] = False
    """The class overrides :meth:`_message` (``feed`` calls it only then; set by itself)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.hooked = cls._message is not Pipeline._message

    def __init__(
        self,
        adapter: Adapter,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_usage: UsageHook | None = None,
    ) -> None:
        self._decoder: Decoder = new_decoder(adapter.framing, max_message_bytes)
        self._translator: Translator = adapter.new_translator()
        self.thought = False
        self.cleared = False
        self.tool_called = False
        self.done = False
        self.terminal: Event | None = None
        self.on_usage = on_usage

    def accepted(self) -> list[Event]:
        """The upstream answered 2xx: the model is working (``thinking``, once)."""
        if self.thought or self.done:
            return []
        self.thought = True
        return [ev.thinking()]

    def feed(self, data: bytes) -> list[Event]:
        """Translate a chunk of upstream bytes. Never raises a :class:`GatewayError`."""
        if self.done:
            return []
        out: list[Event] = []
        try:
            messages = self._decoder.feed(data)
            if self.hooked:
                for message in messages:
                    self._message(message, out)
                    if self.done:
                        break
            else:  # ``_message`` written out: one call less per message on the hot path
                # Called through ``self``, not bound to locals: compiled (gateway.native), a
                # method called on its typed attribute is a direct C call, where a bound method
                # in a local is a generic call that parses its arguments again (2.6 % of a paced
                # token's instructions, counted).
                translator = self._translator
                for message in messages:
                    produced = translator.feed(message)
                    if produced:  # most chunks of a short stream make no event (role, usage)
                        self._guard(produced, out)
                        if self.done:
                            break
        except GatewayError as exc:
            self._guard([Event(ev.ERROR, exc.to_event_data())], out)
        except _SHAPE_ERRORS:
            self._guard([_malformed()], out)
        return out

    def close(self) -> list[Event]:
        """Upstream EOF: flush, and guarantee a terminal event."""
        if self.done:
            return []
        out: list[Event] = []
        try:
            for message in self._decoder.close():
                self._message(message, out)
                if self.done:
                    return out
            self._guard(self._translator.close(), out)
            if not self.done:
                raise UpstreamTruncated("the upstream stream ended before its terminator")
        except GatewayError as exc:
            self._guard([Event(ev.ERROR, exc.to_event_data())], out)
        except _SHAPE_ERRORS:
            self._guard([_malformed()], out)
        return out

    def _message(self, message: Message, out: list[Event]) -> None:
        """Translate one framed message into ``out`` (a subclass may keep the frame too)."""
        self._guard(self._translator.feed(message), out)

    def fail(self, exc: GatewayError) -> list[Event]:
        """End the stream with ``exc`` (timeouts, limits, shutdown) unless it already ended."""
        if self.done:
            return []
        out: list[Event] = []
        self._guard([Event(ev.ERROR, exc.to_event_data())], out)
        return out

    def _guard(self, produced: list[Event], out: list[Event]) -> None:
        for event in produced:
            if self.done:
                return
            kind = event.type
            if kind in _VISIBLE:
                if not self.cleared:
                    self.cleared = True
                    out.append(ev.clear())
                if kind == ev.TOOL_CALL:
                    self.tool_called = True
            elif kind == ev.CLEAR:
                if self.cleared:
                    continue
                self.cleared = True
            elif kind == ev.THINKING:
                if self.thought:
                    continue
                self.thought = True
            elif kind == ev.END:
                self.done = True
                if self.tool_called and event.data.get("reason") == "stop":
                    event = Event(ev.END, {**event.data, "reason": "tool_calls"})
                self.terminal = event
            elif kind == ev.ERROR:
                self.done = True
                self.terminal = event
            elif kind == ev.USAGE:
                if self.on_usage is not None:
                    event = self.on_usage(event)
            elif kind == ev.CREATED:
                continue  # the edge owns created
            out.append(event)
