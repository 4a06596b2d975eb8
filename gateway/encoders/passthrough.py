"""The front doors' same-API pass-through encoders: the upstream's own frames. Pure.

A front door whose API is the serving upstream's own (see :mod:`gateway.passthrough`) wraps its
usual encoder (the *delegate*) in one of these. While the attempt being read is live (its frames
are tapped), every event's bytes are the frames that produced it (and the frames before them
that produced no event), framed again as SSE with their ``event`` name and their data byte for
byte, so ``max_output_bytes`` cuts after one event as on every path; the token events themselves
produce nothing but the gateway's own endings:

* ``end`` ends with the upstream's own terminal frame (``message_stop``, ``response.completed``,
  ``data: [DONE]`` ...); Chat Completions gets ``data: [DONE]`` if the upstream closed without it.
* ``error`` ends with the upstream's own error frame when the provider reported the failure
  itself; otherwise (truncation, a timeout, a limit, a malformed frame) with the API's own error
  event written by the gateway (:meth:`Wire.error`), so a stream cut short never looks complete.

An attempt of another API (a fallback to another provider) is not live: the delegate encodes its
token events as usual. So is a stream no upstream answered (the delegate writes the error).
``created`` waits until that is known (a heartbeat can start the response before an upstream
answered): it is dropped when the frames are live (the upstream's own first frame says it) and
handed to the delegate otherwise.

Non-streaming answers (:class:`PassThroughDocEncoder`) are built from the frames too: Responses
takes the ``response`` of its terminal frame, Messages applies the stream's frames to its
``message_start`` message (signatures, citations and every other field kept). Chat Completions
has no such wrapper: its whole answer stays the delegate's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from gateway import events as ev
from gateway.encoders.base import Encoder
from gateway.encoders.messages import tool_input
from gateway.encoders.responses import failure_doc
from gateway.events import Event
from gateway.framing import RAW_EVENT, Message
from gateway.jsonutil import dumps, loads
from gateway.passthrough import FrameTap

_UNNAMED = frozenset({"message", RAW_EVENT})


def sse_frame(message: Message) -> bytes:
    """``message`` as one SSE frame: its ``event`` name (unless the default), its data as is."""
    head = b"" if message.event in _UNNAMED else b"event: " + message.event.encode() + b"\n"
    data = message.data.encode()
    if b"\n" in data:
        lines = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    else:
        lines = b"data: " + data + b"\n"
    return head + lines + b"\n"


class Wire:
    """What a pass-through stream of one API needs beyond its frames: the gateway's endings."""

    keep: Callable[[Message], bool] | None = None
    """A filter over the frames passed to the client (``None``: every frame, the usual case)."""

    def __init__(self, delegate: Encoder) -> None:
        self.delegate = delegate
        self.first: Message | None = None
        self.last: Message | None = None

    def error(self, event: Event) -> bytes:
        """The API's error event for a gateway ``error`` (after the frames passed so far)."""
        return self.delegate.encode(event)

    def close(self, terminal: Event | None) -> bytes:
        """Bytes after the terminal event's own (``terminal`` is ``None`` if none was seen)."""
        return b""


def _not_usage_only(message: Message) -> bool:
    """False for a Chat Completions usage chunk (``choices`` empty, ``usage`` set)."""
    data = message.data
    if '"usage"' not in data or '"usage":null' in data:
        return True
    try:
        chunk = loads(data)
    except ValueError:
        return True
    return not (isinstance(chunk, dict) and chunk.get("usage") and not chunk.get("choices"))


class ChatWire(Wire):
    """Chat Completions: a stream that ended well ends with ``data: [DONE]``. The upstream is
    always asked for usage (the gateway counts it); a client that did not ask
    (``stream_options.include_usage``) does not get the usage chunk."""

    def __init__(self, delegate: Encoder) -> None:
        super().__init__(delegate)
        if not getattr(delegate, "include_usage", False):
            self.keep = _not_usage_only

    def close(self, terminal: Event | None) -> bytes:
        last = self.last
        if terminal is None or terminal.type != ev.END or (last and last.data == "[DONE]"):
            return b""
        return b"data: [DONE]\n\n"


class ResponsesWire(Wire):
    """Responses: a failure the gateway reports is ``response.failed`` continuing the upstream's
    ``sequence_number`` and its response (id, model ...), status ``failed``."""

    def error(self, event: Event) -> bytes:
        first, last = self.first, self.last
        if first is None or last is None:
            return self.delegate.encode(event)  # the client has seen nothing: a whole answer
        try:
            response = loads(first.data).get("response")
            sequence = loads(last.data).get("sequence_number")
        except ValueError:
            response = sequence = None
        if not isinstance(response, dict):
            response = {"object": "response", "output": []}
        code = str(event.data.get("code", "internal"))
        failed = {
            **response,
            "status": "failed",
            "error": failure_doc(code, str(event.data.get("message", ""))),
        }
        doc = {
            "type": "response.failed",
            "sequence_number": sequence + 1 if isinstance(sequence, int) else 0,
            "response": failed,
        }
        return b"event: response.failed\ndata: " + dumps(doc) + b"\n\n"


WIRES: dict[str, type[Wire]] = {
    "chat_completions": ChatWire,
    "responses": ResponsesWire,
    "messages": Wire,
}
"""Front-door API -> its pass-through endings (the delegate's error event unless overridden)."""


class PassThroughEncoder(Encoder):
    """A streamed front door's encoder over a :class:`FrameTap` (see the module docs)."""

    name = "passthrough"
    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, delegate: Encoder, tap: FrameTap) -> None:
        super().__init__(delegate.route, delegate.request_id)
        self.delegate = delegate
        self.tap = tap
        self.wire = WIRES[tap.api](delegate)
        self.terminal: Event | None = None
        self._created: Event | None = None

    def encode(self, event: Event) -> bytes:
        tap = self.tap
        kind = event.type
        if event.is_terminal:
            self.terminal = event
        if not (tap.live and tap.used):
            if kind == ev.CREATED and not tap.used:
                self._created = event  # no upstream answered yet: raw or re-encoded is unknown
                return b""
            return self._delegated(event)
        frames = tap.take_for(event) if tap.anchors else None
        if frames:
            wire = self.wire
            if wire.first is None:
                wire.first = frames[0]
            wire.last = frames[-1]
            keep = wire.keep
            if keep is not None:
                frames = [m for m in frames if keep(m)]
            out = b"".join([sse_frame(m) for m in frames])
        else:
            out = b""
        if kind == ev.ERROR and not tap.own_terminal:
            out += self.wire.error(event)
        return out

    def _delegated(self, event: Event) -> bytes:
        created, self._created = self._created, None
        if created is not None:
            return self.delegate.encode(created) + self.delegate.encode(event)
        return self.delegate.encode(event)

    def heartbeat(self) -> bytes:
        return self.delegate.heartbeat()

    def close(self) -> bytes:
        if self.tap.live:
            return self.wire.close(self.terminal)
        return self.delegate.close()


class PassThroughDocEncoder(Encoder):
    """A non-streaming front door's encoder over a :class:`FrameTap`: one document built from
    the upstream's frames (Responses, Messages), or the delegate's when not live."""

    name = "passthrough-json"
    content_type = "application/json"
    buffered = True
    builders: ClassVar[dict[str, type[_Doc]]]

    def __init__(self, delegate: Encoder, tap: FrameTap) -> None:
        super().__init__(delegate.route, delegate.request_id)
        self.delegate = delegate
        self.tap = tap
        self.doc = self.builders[tap.api]()
        self.status = 200

    def encode(self, event: Event) -> bytes:
        tap = self.tap
        if not (tap.live and tap.used):
            data = self.delegate.encode(event)
            self.status = self.delegate.status
            self.retryable = self.delegate.retryable
            return data
        doc = self.doc
        for message in tap.take():
            doc.feed(message)
        if event.type == ev.END:
            return dumps(doc.result())
        if event.type == ev.ERROR:
            data = self.delegate.encode(event)  # the API's error body with its status
            self.status = self.delegate.status
            self.retryable = self.delegate.retryable
            return data
        return b""

    def heartbeat(self) -> bytes:
        return self.delegate.heartbeat()


class _Doc:
    """A whole answer built from one API's stream frames."""

    def feed(self, message: Message) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, Any]:
        raise NotImplementedError


_RESPONSE_TERMINALS = ("response.completed", "response.incomplete")


def _type_of(data: str) -> str:
    """The ``type`` of a data-only frame's JSON object (``""`` if it has none)."""
    try:
        doc = loads(data)
    except ValueError:
        return ""
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else ""


class _ResponseDoc(_Doc):
    """Responses: the ``response`` object of the terminal frame (completed or incomplete)."""

    def __init__(self) -> None:
        self.response: dict[str, Any] = {}

    def feed(self, message: Message) -> None:
        kind = message.event
        if kind in _UNNAMED:  # a data-only stream: the frame's ``type`` names it
            if '"response.' not in message.data:
                return
            kind = _type_of(message.data)
        if kind in _RESPONSE_TERMINALS:
            doc = loads(message.data)
            response = doc.get("response") if isinstance(doc, dict) else None
            if isinstance(response, dict):
                self.response = response

    def result(self) -> dict[str, Any]:
        return self.response


class _MessageDoc(_Doc):
    """Messages: ``message_start``'s message with every content block applied, as the SDK's
    accumulator does (text, thinking and its signature, tool input JSON, citations ...)."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {"content": []}
        self.json: dict[int, str] = {}

    def feed(self, message: Message) -> None:
        kind = message.event
        if kind == "ping":
            return
        obj = loads(message.data)
        if kind == "message":
            kind = obj.get("type", "")
        if kind == "message_start":
            self.message = dict(obj.get("message") or {})
            self.message["content"] = list(self.message.get("content") or [])
        elif kind == "content_block_start":
            blocks = self.message["content"]
            blocks.append(dict(obj.get("content_block") or {}))
        elif kind == "content_block_delta":
            self._delta(int(obj.get("index", 0)), obj.get("delta") or {})
        elif kind == "content_block_stop":
            index = int(obj.get("index", 0))
            if index in self.json:
                self._block(index)["input"] = tool_input(self.json.pop(index))
        elif kind == "message_delta":
            self.message.update(obj.get("delta") or {})
            usage = self.message.setdefault("usage", {})
            usage.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})

    def _block(self, index: int) -> dict[str, Any]:
        """The block ``index`` (the last one past the end); a detached one before any
        ``content_block_start``, so a malformed upstream's stray delta is dropped rather than
        failing the whole answer."""
        blocks: list[dict[str, Any]] = self.message["content"]
        return blocks[min(index, len(blocks) - 1)] if blocks else {}

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._block(index)
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "input_json_delta":
            self.json[index] = self.json.get(index, "") + delta.get("partial_json", "")
        elif kind == "citations_delta":
            citations = block.get("citations")
            if isinstance(citations, list):  # absent or null until the first one (as the SDK)
                citations.append(delta.get("citation"))
            else:
                block["citations"] = [delta.get("citation")]

    def result(self) -> dict[str, Any]:
        return self.message


PassThroughDocEncoder.builders = {"responses": _ResponseDoc, "messages": _MessageDoc}
