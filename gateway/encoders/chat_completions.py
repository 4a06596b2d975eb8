"""Token events to OpenAI-compatible Chat Completions answers: streamed chunks, or one JSON. Pure.

:class:`ChatChunkEncoder` (``stream: true``) writes ``chat.completion.chunk`` SSE frames::

    created    -> a role chunk: delta {"role": "assistant", "content": ""}
    reasoning  -> delta {"reasoning_content": text}   (the field most compatible servers use)
    delta      -> delta {"content": text}
    tool_call  -> delta {"tool_calls": [{index, id, type, function: {name, arguments}}]}
                  (id, type and name on the first piece of an index, as upstream). A call with
                  no argument text gets the piece "{}" as it closes (the next index, or end):
                  arguments are always JSON, as the API's, and the SDK parses them. Calls
                  go out one after the other, as the API's: while the open call's arguments
                  are not yet a whole JSON value, pieces of other indexes are held back until
                  they are (or the end). So interleaved calls never get a "{}" in front of
                  their real arguments, and the SDK's helper never closes a call half-written
    usage      -> remembered; sent as a final ``choices: []`` chunk when the client asked for
                  ``stream_options.include_usage``
    end        -> a chunk with ``finish_reason``, the usage chunk, then ``data: [DONE]``
    error      -> ``data: {"error": {message, type, param, code}}`` and the stream ends (no
                  ``[DONE]``: the OpenAI SDK raises on an ``error`` frame)
    thinking, clear -> nothing

:class:`CompletionEncoder` (``stream`` false) collects the same events and writes one
``chat.completion`` JSON at ``end`` (or an error body at ``error``, with :attr:`status`).
``finish_reason`` ``other`` becomes ``stop``: the OpenAI SDK's enum has no ``other``.
A tool call without argument text has the arguments ``"{}"`` there too.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from gateway import events as ev
from gateway.config.model import RouteConfig
from gateway.encoders.base import Encoder
from gateway.errors import status_for_code
from gateway.events import Event
from gateway.jsonutil import dumps, loads

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


status_for = status_for_code
"""The HTTP status for an error ``code`` reported by a held (non-streaming) answer."""


def error_body(code: str, message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """The OpenAI-compatible error document ``{"error": {message, type, param, code}}``."""
    kind = _TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage_doc(usage: dict[str, int]) -> dict[str, Any]:
    """Token-protocol usage as Chat Completions ``usage`` (unknown counts are 0).

    Cache figures go to the API's own ``prompt_tokens_details``: ``cached_tokens`` (the cache
    read) and ``cache_write_tokens``, each only when the provider reported it.
    """
    prompt = usage.get("input_tokens", 0)
    completion = usage.get("output_tokens", 0)
    doc: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if "reasoning_tokens" in usage:
        doc["completion_tokens_details"] = {"reasoning_tokens": usage["reasoning_tokens"]}
    details: dict[str, int] = {}
    read = usage.get("cache_read_input_tokens", usage.get("cached_input_tokens"))
    if read is not None:
        details["cached_tokens"] = read
    if "cache_write_input_tokens" in usage:
        details["cache_write_tokens"] = usage["cache_write_input_tokens"]
    if details:
        doc["prompt_tokens_details"] = details
    return doc


def whole_json(pieces: list[str] | None) -> bool:
    """Whether the argument ``pieces`` of a tool call make one whole JSON object or array:
    more text could only make it invalid, so the model has finished writing it."""
    if not pieces:
        return False
    tail = next((piece.rstrip() for piece in reversed(pieces) if piece.strip()), "")
    if not tail.endswith(("}", "]")):  # cheap: most pieces cannot end a whole value
        return False
    try:
        loads("".join(pieces))
    except ValueError:
        return False
    return True


def finish_reason(reason: object) -> str:
    return _FINISH.get(str(reason), "stop")


class _Base(Encoder):
    """Shared: identity of the answer (id, created, model) and the collected usage.

    ``model`` defaults to the route's name (the model name clients use at the front door) and
    ``created`` to now, so the registry can build them from a route alone.
    """

    def __init__(
        self,
        route: RouteConfig,
        request_id: str,
        *,
        model: str | None = None,
        created: int | None = None,
    ) -> None:
        super().__init__(route, request_id)
        self.model = route.name if model is None else model
        self.created = int(time.time()) if created is None else created
        self.usage: dict[str, int] = {}


class ChatChunkEncoder(_Base):
    """``stream: true``: ``data: {chunk}\\n\\n`` frames, then ``data: [DONE]``."""

    name = "chat-completions"
    content_type = "text/event-stream; charset=utf-8"
    extra_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        route: RouteConfig,
        request_id: str,
        *,
        model: str | None = None,
        created: int | None = None,
        include_usage: bool = False,
    ) -> None:
        super().__init__(route, request_id, model=model, created=created)
        self.include_usage = include_usage
        self._seen_tools: set[int] = set()
        self._open_call: int | None = None  # the index of the last tool call piece
        self._arguments: dict[int, list[str]] = {}  # each call's argument text so far
        self._held: list[dict[str, Any]] = []  # other calls' pieces, while the open one is partial
        self._failed = False
        # The envelope around each delta is the same for the whole stream: build it once.
        head = dumps(
            {
                "id": "chatcmpl-" + request_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
            }
        )
        self._head = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'
        self._tail = b',"finish_reason":null}]}\n\n'
        self._envelope = head[:-1]

    def _chunk(self, delta: dict[str, Any]) -> bytes:
        return self._head + dumps(delta) + self._tail

    def encode(self, event: Event) -> bytes:
        kind = event.type
        data = event.data
        if kind == ev.DELTA:
            return self._chunk({"content": data["text"]})
        if kind == ev.REASONING:
            return self._chunk({"reasoning_content": data["text"]})
        if kind == ev.TOOL_CALL:
            return self._tool_call(data)
        if kind == ev.CREATED:
            return self._chunk({"role": "assistant", "content": ""})
        if kind == ev.USAGE:
            self.usage.update(data)
            return b""
        if kind == ev.END:
            reason = dumps(finish_reason(data.get("reason")))
            out = self._close_calls()
            out += self._head + b"{}" + b',"finish_reason":' + reason + b"}]}\n\n"
            if self.include_usage:
                usage = dumps(usage_doc(self.usage))
                out += b"data: " + self._envelope + b',"choices":[],"usage":' + usage + b"}\n\n"
            return out
        if kind == ev.ERROR:
            self._failed = True
            self._held = []
            code = str(data.get("code", "internal"))
            body = error_body(code, str(data.get("message", "")), status_for(code))
            return b"data: " + dumps(body) + b"\n\n"
        return b""

    def _tool_call(self, data: dict[str, Any]) -> bytes:
        """The chunks for one ``tool_call`` event: none while it is held (see the module docs),
        the held pieces after it once it completes the open call's arguments."""
        index = data.get("index", 0)
        if index == self._open_call:
            out = self._chunk({"tool_calls": [self._tool_piece(index, data)]})
            if self._held and whole_json(self._arguments.get(index)):
                held, self._held = self._held, []
                out += b"".join([self._tool_call(piece) for piece in held])
            return out
        open_call = self._open_call
        if self._held or (open_call is not None and not whole_json(self._arguments.get(open_call))):
            self._held.append(data)
            return b""
        return self._close_call() + self._chunk({"tool_calls": [self._tool_piece(index, data)]})

    def _close_calls(self) -> bytes:
        """Close every call at the end: held pieces go out after the open call's ``"{}"``."""
        out = b""
        while self._held:
            held, self._held = self._held, []
            out += self._close_call()
            out += b"".join([self._tool_call(piece) for piece in held])
        return out + self._close_call()

    def _tool_piece(self, index: int, data: dict[str, Any]) -> dict[str, Any]:
        arguments = data.get("arguments", "")
        self._open_call = index
        if arguments:
            self._arguments.setdefault(index, []).append(arguments)
        if index in self._seen_tools:
            return {"index": index, "function": {"arguments": arguments}}
        self._seen_tools.add(index)
        return {
            "index": index,
            "id": data.get("id") or f"call_{self.request_id[:16]}_{index}",
            "type": "function",
            "function": {"name": data.get("name", ""), "arguments": arguments},
        }

    def _close_call(self) -> bytes:
        """The piece ``"{}"`` for the open call if it had no argument text, else nothing.

        The SDK's stream helper takes a call as whole (and parses it) when the next index
        starts or the choice finishes: that is when the call is closed here too.
        """
        index, self._open_call = self._open_call, None
        if index is None or index in self._arguments:
            return b""
        self._arguments[index] = ["{}"]
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]})

    def heartbeat(self) -> bytes:
        return b": ping\n\n"

    def close(self) -> bytes:
        return b"" if self._failed else b"data: [DONE]\n\n"


class CompletionEncoder(_Base):
    """``stream`` false: nothing until the terminal event, then one JSON document.

    :attr:`status` is the HTTP status for that document (200, or the error's status) for a
    response still held back; heartbeats are newlines, which JSON allows before a value.
    """

    name = "chat-completions-json"
    content_type = "application/json"
    buffered = True

    def __init__(
        self,
        route: RouteConfig,
        request_id: str,
        *,
        model: str | None = None,
        created: int | None = None,
    ) -> None:
        super().__init__(route, request_id, model=model, created=created)
        self.status = 200
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}

    def encode(self, event: Event) -> bytes:
        kind = event.type
        data = event.data
        if kind == ev.DELTA:
            self._text.append(data["text"])
        elif kind == ev.REASONING:
            self._reasoning.append(data["text"])
        elif kind == ev.TOOL_CALL:
            self._tool_piece(data)
        elif kind == ev.USAGE:
            self.usage.update(data)
        elif kind == ev.END:
            return dumps(self.completion(finish_reason(data.get("reason"))))
        elif kind == ev.ERROR:
            code = str(data.get("code", "internal"))
            self.status = status_for(code)
            self.retryable = data.get("retryable") is True
            return dumps(error_body(code, str(data.get("message", "")), self.status))
        return b""

    def _tool_piece(self, data: dict[str, Any]) -> None:
        index = int(data.get("index", 0))
        call = self._tools.get(index)
        if call is None:
            call_id = data.get("id") or f"call_{self.request_id[:16]}_{index}"
            call = self._tools[index] = {"id": call_id, "name": data.get("name", ""), "args": []}
        call["args"].append(data.get("arguments", ""))

    def completion(self, reason: str) -> dict[str, Any]:
        """The ``chat.completion`` document from what was collected."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self._text) if self._text or not self._tools else None,
            "refusal": None,
        }
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._tools:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": "".join(call["args"]) or "{}"},
                }
                for _, call in sorted(self._tools.items())
            ]
        doc: dict[str, Any] = {
            "id": "chatcmpl-" + self.request_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}
            ],
        }
        if self.usage:
            doc["usage"] = usage_doc(self.usage)
        return doc

    def heartbeat(self) -> bytes:
        return b"\n"
