"""Same-API pass-through (contract section 10, last paragraph): the upstream's own frames. Pure.

When a front door's public API is the upstream's own wire format (an adapter whose
:attr:`~gateway.adapters.base.Adapter.native_api` names the front door's API), the client gets
the upstream's event frames themselves, data byte for byte, instead of a re-encoding of the token
events: every field the token protocol does not carry (thinking signatures, citations, provider
usage details ...) reaches the client.

The gateway still translates every frame, so its own rules hold unchanged: the terminal state,
truncation (an upstream that stops early still ends in the API's own error, never in success),
usage, metrics and limits all come from the token events, as on every other path.

* :class:`FrameTap` is the channel between the two ends of one stream: the source's pipeline
  appends the frames it translated, the front door's pass-through encoder
  (:mod:`gateway.encoders.passthrough`) takes them when it encodes the events they produced.
  One per stream; each upstream attempt :meth:`FrameTap.open`\\ s it again (a failover discards
  what an earlier attempt held back), live only when that attempt speaks the front door's API.
* :class:`TappedPipeline` is the :class:`~gateway.pipeline.Pipeline` of such an attempt: the same
  translation, plus each frame appended to the tap once translated. The frame that ended the
  stream with the provider's own error report is kept (and marked), so the client gets the
  upstream's error frame; a frame that could not be translated (malformed) is not.

The cost per frame is one list append; the plain pipeline is not touched.
"""

from __future__ import annotations

from gateway import events as ev
from gateway.adapters.base import Adapter
from gateway.errors import GatewayError, UpstreamTruncated
from gateway.events import Event
from gateway.framing import DEFAULT_MAX_MESSAGE_BYTES, Message
from gateway.pipeline import _SHAPE_ERRORS, Pipeline, _malformed

OWN_ERROR_CODE = "upstream_error"
"""The error code of a failure the provider reported itself (its frame is the API's own error)."""
REDACTED = "[redacted]"


class FrameTap:
    """The upstream frames of one stream not yet written to the client (see the module docs).

    ``live``: the attempt being read speaks the front door's API (its frames are passed through).
    ``own_terminal``: the last frame is the upstream's own terminal error frame.
    ``used``: some attempt was opened (the encoder decides between raw and translated only then).
    """

    __slots__ = ("api", "frames", "live", "own_terminal", "used")

    def __init__(self, api: str) -> None:
        self.api = api
        """The front door's API (an adapter's :attr:`~gateway.adapters.base.Adapter.native_api`)."""
        self.frames: list[Message] = []
        self.live = False
        self.own_terminal = False
        self.used = False

    def open(self, live: bool) -> None:
        """A new upstream attempt answered: forget the frames of an earlier one."""
        self.frames = []
        self.live = live
        self.own_terminal = False
        self.used = True

    def take(self) -> list[Message]:
        """The frames appended since the last call."""
        frames, self.frames = self.frames, []
        return frames


class TappedPipeline(Pipeline):
    """A :class:`Pipeline` that appends each translated frame to a live :class:`FrameTap`."""

    __slots__ = ("_key", "_tap")

    def __init__(
        self,
        adapter: Adapter,
        tap: FrameTap,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(adapter, max_message_bytes)
        tap.open(live=True)
        self._tap = tap
        key = adapter.upstream.api_key
        self._key = key if key and len(key) >= 4 else None

    def feed(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        out: list[Event] = []
        try:
            for message in self._decoder.feed(data):
                self._frame(message, out)
                if self.done:
                    break
        except GatewayError as exc:  # the decoder's (an oversized frame): no frame to keep
            self._guard([Event(ev.ERROR, exc.to_event_data())], out)
        return out

    def close(self) -> list[Event]:
        if self.done:
            return []
        out: list[Event] = []
        try:
            for message in self._decoder.close():
                self._frame(message, out)
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

    def _frame(self, message: Message, out: list[Event]) -> None:
        """Translate one frame; keep it unless it could not be translated."""
        try:
            produced = self._translator.feed(message)
        except GatewayError as exc:
            produced = [Event(ev.ERROR, exc.to_event_data())]
        except _SHAPE_ERRORS:
            self._guard([_malformed()], out)
            return
        self._guard(produced, out)
        terminal = self.terminal
        if terminal is not None and terminal.type == ev.ERROR:
            if terminal.data.get("code") != OWN_ERROR_CODE:
                return  # the gateway writes the API's error frame for this one
            self._tap.own_terminal = True
            key = self._key
            if key is not None and key in message.data:  # providers echo keys in errors
                message = message._replace(data=message.data.replace(key, REDACTED))
        self._tap.frames.append(message)


def new_pipeline(adapter: Adapter, tap: FrameTap | None, max_message_bytes: int) -> Pipeline:
    """The pipeline of one attempt: tapped when the adapter speaks the tap's API.

    ``tap`` is ``None`` outside a pass-through plan (the plain pipeline, nothing else). An attempt
    of another API opens the tap as not live, so the front door re-encodes its events.
    """
    if tap is None:
        return Pipeline(adapter, max_message_bytes)
    if adapter.native_api == tap.api:
        return TappedPipeline(adapter, tap, max_message_bytes)
    tap.open(live=False)
    return Pipeline(adapter, max_message_bytes)
