"""Token events to Anthropic Messages answers: a streamed event sequence, or one JSON. Pure.

Both encoders share :class:`_Blocks`, which turns token events into content-block operations
(start, delta, stop) with the Messages API's block indices:

    reasoning  -> a ``thinking`` block (``thinking_delta``; ``signature_delta`` if the event
                  carries a ``signature``, which the token protocol does not yet)
    delta      -> a ``text`` block (``text_delta``)
    tool_call  -> a ``tool_use`` block per tool index (``id``, ``name``, ``input: {}``), then
                  ``input_json_delta`` with the arguments piece byte for byte. Tool blocks stay
                  open until other content or the end, so interleaved pieces of parallel calls
                  still land in their own block (the SDK accumulates deltas by ``index``).
    a change of kind closes the open text/thinking block; ``end`` closes every open block.

:class:`MessagesStreamEncoder` (``stream: true``) writes ``event: <type>`` SSE frames::

    created -> message_start (id ``msg_<request id>``, model = route name, empty content,
               usage {input_tokens: 0, output_tokens: 0}: the token protocol reports usage last)
    end     -> content_block_stop(s), message_delta {stop_reason, stop_sequence, usage},
               message_stop
    error   -> event: error {"type": "error", "error": {type, message}} and nothing after it:
               never message_stop, so a failed or truncated stream cannot look complete
    heartbeat -> event: ping

:class:`MessageEncoder` (``stream`` false) writes one ``message`` JSON at ``end`` or an error
document at ``error`` (its HTTP status in :attr:`MessageEncoder.status`).

Stop reasons: stop -> ``end_turn`` (``stop_sequence`` when the upstream said so), length ->
``max_tokens``, tool_calls -> ``tool_use``, content_filter -> ``refusal``, other -> ``end_turn``.
Usage: ``input_tokens`` is the uncached part (the Messages API counts cache reads apart),
``cache_read_input_tokens`` / ``cache_creation_input_tokens`` where the upstream reported them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway import events as ev
from gateway.config.model import RouteConfig
from gateway.encoders.base import Encoder
from gateway.errors import status_for_code
from gateway.events import Event
from gateway.jsonutil import dumps, loads

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
# The Messages API's own error types (the Anthropic SDK's ErrorType); an upstream error whose type
# is one of them keeps it.
ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
        "request_too_large",
    }
)
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_TYPE_BY_CODE = {
    "rate_limited": "rate_limit_error",
    "upstream_timeout": "timeout_error",
    "shutdown": "overloaded_error",
    "unavailable": "overloaded_error",
}


def error_type_for_status(status: int) -> str:
    """The Messages API's error ``type`` for an HTTP status (``api_error`` for other 5xx)."""
    return _TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_doc(kind: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """The Messages API's error document ``{"type": "error", "error": {type, message}}``."""
    doc: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id is not None:
        doc["request_id"] = request_id
    return doc


def event_error_type(data: dict[str, Any]) -> str:
    """The Messages API error type for a terminal ``error`` event's data.

    The upstream's own type when it is one of the Messages API's; else by gateway code: a retryable
    upstream error is ``overloaded_error``, truncation and malformed data ``api_error``.
    """
    kind = data.get("type")
    if isinstance(kind, str) and kind in ERROR_TYPES:
        return kind
    code = str(data.get("code", "internal"))
    if code in _TYPE_BY_CODE:
        return _TYPE_BY_CODE[code]
    if code in ("upstream_error", "upstream_connect") and data.get("retryable"):
        return "overloaded_error"
    return "api_error"


def tool_input(raw: str) -> dict[str, Any]:
    """A whole ``tool_use`` block's ``input`` from its streamed JSON text: the object it parses
    to (``{}`` for no text), else ``{"_raw": raw}``: a model's malformed or non-object arguments
    are kept for the client rather than lost or failing the answer."""
    if not raw:
        return {}
    try:
        parsed = loads(raw)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw": raw}


def stop_reason(data: dict[str, Any]) -> str:
    """The Messages API's ``stop_reason`` for an ``end`` event's data."""
    reason = _STOP.get(str(data.get("reason")), "end_turn")
    if reason == "end_turn" and data.get("provider_reason") == "stop_sequence":
        return "stop_sequence"
    return reason


def usage_doc(usage: dict[str, Any]) -> dict[str, Any]:
    """Token-protocol usage as Messages ``usage`` (unknown input: 0; see the module docs)."""
    cached = usage.get("cache_read_input_tokens", usage.get("cached_input_tokens"))
    written = usage.get("cache_write_input_tokens")
    doc: dict[str, Any] = {"input_tokens": 0}
    if "input_tokens" in usage:
        doc["input_tokens"] = max(0, int(usage["input_tokens"]) - (cached or 0) - (written or 0))
    if written is not None:
        doc["cache_creation_input_tokens"] = int(written)
    if cached is not None:
        doc["cache_read_input_tokens"] = int(cached)
    doc["output_tokens"] = int(usage.get("output_tokens", 0))
    return doc


Op = tuple[str, int, dict[str, Any]]
"""A block operation: ``("start", index, content_block)``, ``("delta", index, delta)`` or
``("stop", index, {})``."""


class _Blocks:
    """Token events -> content-block operations with Messages block indices (see module docs)."""

    __slots__ = ("_next", "_open", "_tools", "_tools_open", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self._next = 0
        self._open: tuple[str, int] | None = None  # the open text or thinking block
        self._tools: dict[int, int] = {}  # tool index -> block index
        self._tools_open: list[int] = []

    def _start(self, ops: list[Op], block: dict[str, Any]) -> int:
        index = self._next
        self._next += 1
        ops.append(("start", index, block))
        return index

    def _close_open(self, ops: list[Op]) -> None:
        if self._open is not None:
            ops.append(("stop", self._open[1], {}))
            self._open = None

    def close_all(self) -> list[Op]:
        """Stop every open block (at ``end``)."""
        ops: list[Op] = []
        self._close_open(ops)
        ops.extend(("stop", index, {}) for index in self._tools_open)
        self._tools_open = []
        return ops

    def _content(self, kind: str, block: dict[str, Any]) -> tuple[list[Op], int]:
        ops: list[Op] = []
        if self._open is not None and self._open[0] == kind:
            return ops, self._open[1]
        self._close_open(ops)
        ops.extend(("stop", index, {}) for index in self._tools_open)
        self._tools_open = []
        index = self._start(ops, block)
        self._open = (kind, index)
        return ops, index

    def text(self, text: str) -> list[Op]:
        ops, index = self._content("text", {"type": "text", "text": ""})
        ops.append(("delta", index, {"type": "text_delta", "text": text}))
        return ops

    def thinking(self, data: dict[str, Any]) -> list[Op]:
        ops, index = self._content(
            "thinking", {"type": "thinking", "thinking": "", "signature": ""}
        )
        if data.get("text"):
            ops.append(("delta", index, {"type": "thinking_delta", "thinking": data["text"]}))
        if isinstance(data.get("signature"), str):
            ops.append(
                ("delta", index, {"type": "signature_delta", "signature": data["signature"]})
            )
        return ops

    def tool(self, data: dict[str, Any]) -> list[Op]:
        ops: list[Op] = []
        tool_index = int(data.get("index", 0))
        index = self._tools.get(tool_index)
        if index is None:
            self._close_open(ops)
            call_id = data.get("id") or f"toolu_{self.request_id[:16]}_{tool_index}"
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call_id,
                "name": data.get("name") or "",
                "input": {},
            }
            index = self._tools[tool_index] = self._start(ops, block)
            self._tools_open.append(index)
        piece = data.get("arguments", "")
        if piece:
            ops.append(("delta", index, {"type": "input_json_delta", "partial_json": piece}))
        return ops

    def ops(self, event: Event) -> list[Op]:
        kind = event.type
        if kind == ev.DELTA:
            return self.text(event.data["text"])
        if kind == ev.REASONING:
            return self.thinking(event.data)
        if kind == ev.TOOL_CALL:
            return self.tool(event.data)
        return []


class MessagesStreamEncoder(Encoder):
    """``stream: true``: the Messages API's named SSE events (see the module docs)."""

    name = "messages"
    content_type = "text/event-stream; charset=utf-8"
    extra_headers: ClassVar[dict[str, str]] = {}

    def __init__(self, route: RouteConfig, request_id: str, *, model: str | None = None) -> None:
        super().__init__(route, request_id)
        self.model = route.name if model is None else model
        self.usage: dict[str, Any] = {}
        self._blocks = _Blocks(request_id)

    @staticmethod
    def frame(kind: str, payload: dict[str, Any]) -> bytes:
        """One SSE frame ``event: <kind>`` whose data is ``{"type": kind, **payload}``."""
        data = dumps({"type": kind, **payload})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _ops(self, ops: list[Op]) -> bytes:
        out = []
        for op, index, doc in ops:
            if op == "delta":
                out.append(self.frame("content_block_delta", {"index": index, "delta": doc}))
            elif op == "start":
                out.append(
                    self.frame("content_block_start", {"index": index, "content_block": doc})
                )
            else:
                out.append(self.frame("content_block_stop", {"index": index}))
        return b"".join(out)

    def encode(self, event: Event) -> bytes:
        kind = event.type
        if kind in ev.CONTENT_TYPES:
            return self._ops(self._blocks.ops(event))
        if kind == ev.CREATED:
            message: dict[str, Any] = {
                "id": "msg_" + self.request_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
            return self.frame("message_start", {"message": message})
        if kind == ev.USAGE:
            self.usage.update(event.data)
            return b""
        if kind == ev.END:
            delta = {"stop_reason": stop_reason(event.data), "stop_sequence": None}
            return (
                self._ops(self._blocks.close_all())
                + self.frame("message_delta", {"delta": delta, "usage": usage_doc(self.usage)})
                + self.frame("message_stop", {})
            )
        if kind == ev.ERROR:
            doc = error_doc(event_error_type(event.data), str(event.data.get("message", "")))
            return self.frame("error", {"error": doc["error"]})
        return b""  # thinking, clear

    def heartbeat(self) -> bytes:
        return b'event: ping\ndata: {"type":"ping"}\n\n'


class MessageEncoder(Encoder):
    """``stream`` false: nothing until the terminal event, then one JSON document.

    :attr:`status` is the HTTP status for that document (200, or the error's status) while the
    response is still held back; heartbeats are newlines, which JSON allows before a value.
    """

    name = "messages-json"
    content_type = "application/json"
    buffered = True

    def __init__(self, route: RouteConfig, request_id: str, *, model: str | None = None) -> None:
        super().__init__(route, request_id)
        self.model = route.name if model is None else model
        self.status = 200
        self.usage: dict[str, Any] = {}
        self.content: list[dict[str, Any]] = []
        self._blocks = _Blocks(request_id)
        self._json: dict[int, list[str]] = {}

    def _apply(self, ops: list[Op]) -> None:
        for op, index, doc in ops:
            if op == "start":
                self.content.append(dict(doc))
            elif op == "delta":
                block = self.content[index]
                kind = doc["type"]
                if kind == "text_delta":
                    block["text"] += doc["text"]
                elif kind == "thinking_delta":
                    block["thinking"] += doc["thinking"]
                elif kind == "signature_delta":
                    block["signature"] = doc["signature"]
                else:
                    self._json.setdefault(index, []).append(doc["partial_json"])

    def encode(self, event: Event) -> bytes:
        kind = event.type
        if kind in ev.CONTENT_TYPES:
            self._apply(self._blocks.ops(event))
        elif kind == ev.USAGE:
            self.usage.update(event.data)
        elif kind == ev.END:
            return dumps(self.message(stop_reason(event.data)))
        elif kind == ev.ERROR:
            code = str(event.data.get("code", "internal"))
            self.status = status_for_code(code)
            self.retryable = event.data.get("retryable") is True
            message = str(event.data.get("message", ""))
            return dumps(error_doc(event_error_type(event.data), message, self.request_id))
        return b""

    def message(self, reason: str) -> dict[str, Any]:
        """The ``message`` document from what was collected.

        A tool's ``input`` is its arguments parsed; arguments that are not a JSON object (a
        model's malformed output) are kept as ``{"_raw": "<text>"}`` rather than lost.
        """
        for index, pieces in self._json.items():
            self.content[index]["input"] = tool_input("".join(pieces))
        return {
            "id": "msg_" + self.request_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content,
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": usage_doc(self.usage),
        }

    def heartbeat(self) -> bytes:
        return b"\n"
