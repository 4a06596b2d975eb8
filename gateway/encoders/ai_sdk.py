"""``ai-sdk``: the Vercel AI SDK UI message stream protocol v1, so ``useChat`` apps work unchanged.

Wire shape (the SDK's ``JsonToSseTransformStream``): data-only SSE frames ``data: {json}\\n\\n``,
ending with ``data: [DONE]\\n\\n``; header ``x-vercel-ai-ui-message-stream: v1``. Heartbeats are
SSE comments, which the SDK's event-stream parser skips.

Event mapping (one stream is one assistant message with one step)::

    created    -> start {messageId}, start-step
    thinking   -> (nothing: the SDK has no "working" part; ``useChat`` shows status "submitted")
    clear      -> (nothing)
    reasoning  -> reasoning-start (when a reasoning part opens), reasoning-delta
    delta      -> text-start (when a text part opens), text-delta
    tool_call  -> tool-input-start (first piece of an index), tool-input-delta;
                  tool-input-available with the parsed arguments when the call is complete
                  (another kind of content starts and its arguments are whole JSON, or the
                  stream ends): a call whose arguments go on after some text keeps its part
    usage      -> (nothing: only ``messageMetadata`` could carry it, whose schema is the app's)
    end        -> close open parts, finish-step, finish, [DONE]
    error      -> error {errorText}, finish-step, finish, [DONE]   (what the SDK's own
                  ``toUIMessageStream`` does; open parts stay unclosed, as there)

``finish.finishReason`` exists only from ai@5.0.92; ai@5.0.0 validates chunks with a strict
schema and rejects the whole stream on it. So ``ai-sdk`` never sends it, and the format
``ai-sdk-finish-reason`` (same class) adds it for clients that accept it (ai >= 5.0.92).

The request side (the SDK's ``DefaultChatTransport`` body) is :mod:`gateway.frontdoor.ui_messages`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway import events as ev
from gateway.config.model import RouteConfig
from gateway.encoders.base import Encoder
from gateway.encoders.chat_completions import whole_json
from gateway.events import Event
from gateway.jsonutil import dumps, loads

_PING = b": ping\n\n"
_DONE = b"data: [DONE]\n\n"
_START_STEP = b'data: {"type":"start-step"}\n\n'
_FINISH_STEP = b'data: {"type":"finish-step"}\n\n'
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
    "other": "other",
}


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


class _ToolCall:
    __slots__ = ("args", "done", "id", "name")

    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name
        self.args: list[str] = []
        self.done = False


class AISDKEncoder(Encoder):
    """Token events to UI message stream chunks. Keeps the open text / reasoning / tool parts."""

    name = "ai-sdk"
    content_type = "text/event-stream; charset=utf-8"
    extra_headers: ClassVar[dict[str, str]] = {"x-vercel-ai-ui-message-stream": "v1"}
    send_finish_reason: ClassVar[bool] = False

    def __init__(self, route: RouteConfig, request_id: str) -> None:
        super().__init__(route, request_id)
        self._parts = 0  # counter for part ids, unique within the message
        self._text: str | None = None  # id of the open text part
        self._reasoning: str | None = None  # id of the open reasoning part
        self._tools: dict[int, _ToolCall] = {}
        self._pending = False  # a tool call's input may still be streaming

    def encode(self, event: Event) -> bytes:
        kind = event.type
        if kind == ev.DELTA:
            return self._text_delta(event.data["text"])
        if kind == ev.REASONING:
            return self._reasoning_delta(event.data["text"])
        if kind == ev.TOOL_CALL:
            return self._tool_piece(event.data)
        if kind == ev.CREATED:
            start = _frame({"type": "start", "messageId": "msg_" + self.request_id})
            return start + _START_STEP
        if kind == ev.END:
            return (
                self._close_parts(final=True)
                + _FINISH_STEP
                + self._finish(event.data.get("reason"))
            )
        if kind == ev.ERROR:
            error = _frame({"type": "error", "errorText": str(event.data.get("message", ""))})
            return error + _FINISH_STEP + self._finish("error")
        return b""  # thinking, clear, usage

    def heartbeat(self) -> bytes:
        return _PING

    def close(self) -> bytes:
        return _DONE

    # -- parts -------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        self._parts += 1
        return f"{prefix}_{self._parts}"

    def _text_delta(self, text: str) -> bytes:
        out = b""
        part = self._text
        if part is None:
            out = self._close_parts()
            part = self._text = self._new_id("text")
            out += _frame({"type": "text-start", "id": part})
        return out + _frame({"type": "text-delta", "id": part, "delta": text})

    def _reasoning_delta(self, text: str) -> bytes:
        out = b""
        part = self._reasoning
        if part is None:
            out = self._close_parts()
            part = self._reasoning = self._new_id("reasoning")
            out += _frame({"type": "reasoning-start", "id": part})
        return out + _frame({"type": "reasoning-delta", "id": part, "delta": text})

    def _tool_piece(self, data: dict[str, Any]) -> bytes:
        out = b""
        if self._text is not None or self._reasoning is not None:
            out = self._close_parts()
        index = int(data.get("index", 0))
        call = self._tools.get(index)
        if call is None or call.done:
            call_id = data.get("id") or f"call_{self.request_id[:12]}_{index}"
            call = self._tools[index] = _ToolCall(str(call_id), str(data.get("name") or ""))
            out += _frame(
                {"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name}
            )
        self._pending = True
        piece = data.get("arguments") or ""
        if piece:
            call.args.append(piece)
            out += _frame(
                {"type": "tool-input-delta", "toolCallId": call.id, "inputTextDelta": piece}
            )
        return out

    def _close_parts(self, *, final: bool = False) -> bytes:
        """End the open text and reasoning parts, and complete the streamed tool inputs whose
        arguments are whole JSON (every one when ``final``)."""
        out = b""
        if self._text is not None:
            out += _frame({"type": "text-end", "id": self._text})
            self._text = None
        if self._reasoning is not None:
            out += _frame({"type": "reasoning-end", "id": self._reasoning})
            self._reasoning = None
        if self._pending:
            self._pending = False
            for index in sorted(self._tools):
                call = self._tools[index]
                if not call.done and not final and not whole_json(call.args):
                    self._pending = True  # more of it may follow the new content
                elif not call.done:
                    call.done = True
                    out += _frame(
                        {
                            "type": "tool-input-available",
                            "toolCallId": call.id,
                            "toolName": call.name,
                            "input": _parse_input("".join(call.args)),
                        }
                    )
        return out

    def _finish(self, reason: object) -> bytes:
        if not self.send_finish_reason:
            return b'data: {"type":"finish"}\n\n'
        wire = "error" if reason == "error" else _FINISH_REASONS.get(str(reason), "other")
        return _frame({"type": "finish", "finishReason": wire})


class AISDKFinishReasonEncoder(AISDKEncoder):
    """``ai-sdk-finish-reason``: as ``ai-sdk`` plus ``finish.finishReason`` (ai >= 5.0.92)."""

    name = "ai-sdk-finish-reason"
    send_finish_reason = True


def _parse_input(arguments: str) -> Any:
    """The tool input as JSON; the raw text when it is not JSON (5.0.0 has no tool-input-error)."""
    if not arguments.strip():
        return {}
    try:
        return loads(arguments)
    except ValueError:
        return arguments
