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

The cost per frame is two list appends; the plain pipeline is not touched. A drain after the
client left (``on_client_abort: drain``) :meth:`FrameTap.stop`\\ s the tap: nothing is kept for
the rest of the drain.
"""

from __future__ import annotations

from gateway import events as ev
from gateway.adapters.base import Adapter
from gateway.errors import GatewayError, redact
from gateway.events import Event
from gateway.framing import DEFAULT_MAX_MESSAGE_BYTES, Message
from gateway.pipeline import _SHAPE_ERRORS, Pipeline, _malformed

OWN_ERROR_CODE = "upstream_error"
"""The error code of a failure the provider reported itself (its frame is the API's own error)."""


class FrameTap:
    """The upstream frames of one stream not yet written to the client (see the module docs).

    ``frames`` and ``anchors`` run in parallel: each frame's anchor is the first event it produced
    (``None`` for a frame that produced none, a ``ping`` say), so the encoder writes a frame with
    the event it belongs to (:meth:`take_for`) and the output bound holds per event.
    ``live``: the attempt being read speaks the front door's API (its frames are passed through).
    ``own_terminal``: the last frame is the upstream's own terminal error frame.
    ``used``: some attempt was opened (the encoder decides between raw and translated only then).
    ``stopped``: nobody will read the frames again (a drain after the client left): not kept.
    """

    __slots__ = ("_read", "anchors", "api", "frames", "live", "own_terminal", "stopped", "used")

    def __init__(self, api: str) -> None:
        self.api = api
        """The front door's API (an adapter's :attr:`~gateway.adapters.base.Adapter.native_api`)."""
        self.frames: list[Message] = []
        self.anchors: list[Event | None] = []
        self._read = 0  # frames[:_read] were taken; the lists are emptied once all are
        self.live = False
        self.own_terminal = False
        self.used = False
        self.stopped = False

    def open(self, live: bool) -> None:
        """A new upstream attempt answered: forget the frames of an earlier one."""
        self._clear()
        self.live = live
        self.own_terminal = False
        self.used = True

    def stop(self) -> None:
        """The client is gone for good (a drain reads on): drop the frames, keep no more."""
        self.stopped = True
        self._clear()

    def _clear(self) -> None:
        self.frames = []
        self.anchors = []
        self._read = 0

    def take(self) -> list[Message]:
        """Every frame appended since the last call."""
        frames, start = self.frames, self._read
        self._clear()
        return frames[start:] if start else frames

    def take_for(self, event: Event) -> list[Message]:
        """The frames to write with ``event``, in order.

        A non-terminal event takes the frames up to its own (those anchored to it and the frames
        before them that produced nothing). A terminal event takes what is left, except the
        frames of events never written (the output bound cut the batch short): those, and what
        came after them short of the terminal event's own frame, are dropped.

        Linear in the frames taken: a read index moves on, and the lists are emptied once every
        frame was taken (or compacted when the taken part is most of them).
        """
        anchors = self.anchors
        n = len(anchors)
        start = self._read
        if start >= n:
            return []
        frames = self.frames
        if event.is_terminal:
            kept: list[Message] = []
            skipping = False
            for j in range(start, n):
                anchor = anchors[j]
                if anchor is None:
                    if not skipping:
                        kept.append(frames[j])
                elif anchor is event or anchor.is_terminal:
                    kept.append(frames[j])
                else:
                    skipping = True  # an event the client never got
            self._clear()
            return kept
        i = start
        while i < n:
            anchor = anchors[i]
            if anchor is not None and anchor is not event:
                break
            i += 1
        if i == n:
            self._clear()
            return frames[start:] if start else frames
        taken = frames[start:i]
        if i >= _COMPACT_AT and 2 * i >= n:  # frames that never drain fully stay bounded
            del frames[:i]
            del anchors[:i]
            i = 0
        self._read = i
        return taken


_COMPACT_AT = 64
"""Taken frames kept before :meth:`FrameTap.take_for` drops them (if they are most of the list)."""


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
        self._key = adapter.upstream.api_key

    def _message(self, message: Message, out: list[Event]) -> None:
        """Translate one frame; keep it unless it could not be translated."""
        try:
            produced = self._translator.feed(message)
        except GatewayError as exc:
            produced = [Event(ev.ERROR, exc.to_event_data())]
        except _SHAPE_ERRORS:
            self._guard([_malformed()], out)
            return
        before = len(out)
        self._guard(produced, out)
        tap = self._tap
        if tap.stopped:
            return
        terminal = self.terminal
        if terminal is not None and terminal.type == ev.ERROR:
            if terminal.data.get("code") != OWN_ERROR_CODE:
                return  # the gateway writes the API's error frame for this one
            tap.own_terminal = True
            data = redact(message.data, self._key)  # providers echo keys in errors
            if data is not message.data:
                message = message._replace(data=data)
        tap.frames.append(message)
        tap.anchors.append(out[before] if len(out) > before else None)


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
