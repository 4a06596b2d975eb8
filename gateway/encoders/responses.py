"""Token events to Responses API answers: the typed event stream, or one ``response``. Pure.

:class:`ResponseState` turns token events into the Responses API's output items and the typed
events that build them, in the order the API emits them; both encoders share it:

* :class:`ResponseEventEncoder` (``stream: true``): each typed event as an SSE frame
  ``event: <type>`` / ``data: {"type", "sequence_number", ...}`` (``sequence_number`` from 0);
  an SSE comment ``: ping`` as keep-alive; no ``[DONE]`` (the API has none).
* :class:`ResponseDocEncoder` (``stream`` false): nothing until the terminal event, then the
  ``response`` object, or an OpenAI-compatible error body with status
  :attr:`ResponseDocEncoder.status`.

Mapping::

    created    -> response.created, response.in_progress (status in_progress, output [])
    reasoning  -> a reasoning item: output_item.added, reasoning_summary_part.added,
                  reasoning_summary_text.delta ...
    delta      -> a message item: output_item.added, content_part.added (output_text),
                  output_text.delta ...
    tool_call  -> a function_call item per index (call_id = the event's id): output_item.added,
                  function_call_arguments.delta ... A call with no argument text gets the
                  delta "{}" as it closes: arguments are always JSON, as the API's.
                  Calls go out one after the other, as the API's: while the open call's
                  arguments are not yet a whole JSON value, pieces of other indexes are held
                  back until they are (or other content, or the end). So interleaved calls
                  never get a "{}" before their arguments, nor a done event half-written.
                  A new item closes the open one first (its *.done events, output_item.done).
    usage      -> remembered for the terminal response's usage
    end        -> close the open item; response.completed (stop, tool_calls, other), or
                  response.incomplete with incomplete_details.reason max_output_tokens (length)
                  or content_filter (content_filter); the open item is then ``incomplete``
    error      -> response.failed with error {code, message, type}: code ``rate_limit_exceeded``
                  or ``server_error`` (the SDK's closed enum), type the gateway's own code
                  (``upstream_truncated`` ...). As the API does, open items get no done events;
                  the response's output holds them as ``incomplete``.
    thinking, clear -> nothing
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway import events as ev
from gateway.config.model import RouteConfig
from gateway.encoders.base import Encoder
from gateway.encoders.chat_completions import error_body, whole_json
from gateway.errors import status_for_code
from gateway.events import Event
from gateway.jsonutil import dumps

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}

Step = dict[str, Any]
"""One typed Responses event: a fresh dict, to which the stream encoder adds ``sequence_number``."""


def usage_doc(usage: dict[str, int]) -> dict[str, Any]:
    """Token-protocol usage as Responses ``usage`` (unknown counts are 0)."""
    given, made = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        "input_tokens": given,
        "input_tokens_details": {
            "cached_tokens": usage.get("cached_input_tokens", 0),
            "cache_write_tokens": usage.get("cache_write_input_tokens", 0),
        },
        "output_tokens": made,
        "output_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
        "total_tokens": given + made,
    }


def failure_doc(code: str, message: str) -> dict[str, Any]:
    """``response.error`` for a gateway error ``code``."""
    public = "rate_limit_exceeded" if code == "rate_limited" else "server_error"
    return {"code": public, "message": message, "type": code}


class _Item:
    """One output item being built: its kind, ids and the text pieces received so far."""

    __slots__ = ("call_id", "id", "index", "kind", "name", "parts", "status")

    def __init__(self, kind: str, item_id: str, index: int) -> None:
        self.kind = kind
        self.id = item_id
        self.index = index
        self.parts: list[str] = []
        self.status = "in_progress"
        self.call_id = ""
        self.name = ""

    def doc(self, *, empty: bool = False) -> dict[str, Any]:
        """The item as the API shows it (``empty``: as first added, with no content yet)."""
        text = "" if empty else "".join(self.parts)
        if self.kind == "message":
            content = [] if empty else [_text_part(text)]
            return {
                "id": self.id,
                "type": "message",
                "status": self.status,
                "content": content,
                "role": "assistant",
            }
        if self.kind == "reasoning":
            summary = [] if empty else [{"type": "summary_text", "text": text}]
            return {"id": self.id, "type": "reasoning", "summary": summary}
        return {
            "id": self.id,
            "type": "function_call",
            "status": self.status,
            "arguments": text,
            "call_id": self.call_id,
            "name": self.name,
        }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


class ResponseState:
    """The response being built from token events; :meth:`feed` returns the typed events."""

    def __init__(
        self,
        request_id: str,
        *,
        model: str,
        created: int,
        echo: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.request_id = request_id
        self.id = "resp_" + request_id
        self.model = model
        self.created = created
        self.echo = echo or {}
        self.clock = clock
        self.items: list[_Item] = []
        self.open: _Item | None = None
        self.calls: dict[int, _Item] = {}
        self.held: list[dict[str, Any]] = []  # other calls' pieces, while the open one is partial
        self.usage: dict[str, int] = {}
        self.started = False
        self.final: dict[str, Any] | None = None

    # -- the response object -----------------------------------------------------------------

    def response(
        self,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        """The ``response`` object with the output so far."""
        echo = self.echo
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "completed_at": int(self.clock()) if status == "completed" else None,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "model": self.model,
            "output": [] if status == "in_progress" else [i.doc() for i in self.items],
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
            "store": False,
            "temperature": echo.get("temperature"),
            "text": {"format": {"type": "text"}},
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": echo.get("tools", []),
            "top_p": echo.get("top_p"),
            "truncation": "disabled",
            "usage": usage_doc(self.usage) if self.usage and status != "in_progress" else None,
            "metadata": echo.get("metadata") or {},
        }

    # -- token events to typed events ---------------------------------------------------------

    def feed(self, event: Event) -> list[Step]:
        """The typed events for one token event (the first event also starts the response)."""
        steps: list[Step] = []
        if not self.started:
            self.started = True
            doc = self.response("in_progress")
            steps.append({"type": "response.created", "response": doc})
            steps.append({"type": "response.in_progress", "response": doc})
        kind, data = event.type, event.data
        if kind == ev.DELTA:
            self._text("message", data["text"], steps)
        elif kind == ev.REASONING:
            self._text("reasoning", data["text"], steps)
        elif kind == ev.TOOL_CALL:
            self._tool(data, steps)
        elif kind == ev.USAGE:
            self.usage.update(data)
        elif kind == ev.END:
            reason = str(data.get("reason"))
            incomplete = _INCOMPLETE.get(reason)
            self._release_all(steps)
            self._close(steps, "incomplete" if incomplete else "completed")
            if incomplete:
                self.final = self.response("incomplete", incomplete=incomplete)
                steps.append({"type": "response.incomplete", "response": self.final})
            else:
                self.final = self.response("completed")
                steps.append({"type": "response.completed", "response": self.final})
        elif kind == ev.ERROR:
            self.held = []
            if self.open is not None:
                self.open.status = "incomplete"
                self.open = None
            error = failure_doc(str(data.get("code", "internal")), str(data.get("message", "")))
            self.final = self.response("failed", error=error)
            steps.append({"type": "response.failed", "response": self.final})
        return steps

    def _start_item(self, kind: str, steps: list[Step]) -> _Item:
        self._close(steps, "completed")
        index = len(self.items)
        prefix = {"message": "msg", "reasoning": "rs", "function_call": "fc"}[kind]
        item = _Item(kind, f"{prefix}_{self.request_id}_{index}", index)
        self.items.append(item)
        self.open = item
        return item

    def _added(self, item: _Item, steps: list[Step]) -> None:
        steps.append(
            {
                "type": "response.output_item.added",
                "output_index": item.index,
                "item": item.doc(empty=True),
            }
        )

    def _text(self, kind: str, text: str, steps: list[Step]) -> None:
        item = self.open
        if item is None or item.kind != kind:
            self._release_all(steps)
            item = self._start_item(kind, steps)
            self._added(item, steps)
            where = self._where(item)
            if kind == "message":
                part = _text_part("")
                steps.append({"type": "response.content_part.added", **where, "part": part})
            else:
                part = {"type": "summary_text", "text": ""}
                steps.append(
                    {"type": "response.reasoning_summary_part.added", **where, "part": part}
                )
        item.parts.append(text)
        if kind == "message":
            steps.append(
                {
                    "type": "response.output_text.delta",
                    **self._where(item),
                    "delta": text,
                    "logprobs": [],
                }
            )
        else:
            steps.append(
                {
                    "type": "response.reasoning_summary_text.delta",
                    **self._where(item),
                    "delta": text,
                }
            )

    def _tool(self, data: dict[str, Any], steps: list[Step]) -> None:
        index = int(data.get("index", 0))
        item = self.calls.get(index)
        open_call = (
            self.open if self.open is not None and self.open.kind == "function_call" else None
        )
        if item is not open_call and self._holds(open_call):
            self.held.append(data)  # another call's piece while the open one is partial
            return
        if item is None:
            item = self._start_item("function_call", steps)
            item.call_id = data.get("id") or f"call_{self.request_id[:16]}_{index}"
            item.name = data.get("name") or ""
            self.calls[index] = item
            self._added(item, steps)
        arguments = data.get("arguments", "")
        if arguments:
            # A piece for a call closed by other content still streams on that call's
            # output_index, so the SDK's accumulated arguments stay whole.
            self._arguments(item, arguments, steps)
            if item is open_call and self.held and whole_json(item.parts):
                held, self.held = self.held, []
                for piece in held:
                    self._tool(piece, steps)

    def _holds(self, open_call: _Item | None) -> bool:
        """Whether another call's piece waits: pieces already wait, or the open call's
        arguments are not yet whole (see the module docs)."""
        return bool(self.held) or (open_call is not None and not whole_json(open_call.parts))

    def _release_all(self, steps: list[Step]) -> None:
        """Send every held piece, each open call without argument text closing with "{}"."""
        while self.held:
            held, self.held = self.held, []
            self._close(steps, "completed")
            for piece in held:
                self._tool(piece, steps)

    @staticmethod
    def _arguments(item: _Item, arguments: str, steps: list[Step]) -> None:
        item.parts.append(arguments)
        steps.append(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": item.id,
                "output_index": item.index,
                "delta": arguments,
            }
        )

    @staticmethod
    def _where(item: _Item) -> dict[str, Any]:
        key = "content_index" if item.kind == "message" else "summary_index"
        return {"item_id": item.id, "output_index": item.index, key: 0}

    def _close(self, steps: list[Step], status: str) -> None:
        """Finish the open item: its text/arguments done events, then output_item.done."""
        item = self.open
        if item is None:
            return
        self.open = None
        item.status = status
        text = "".join(item.parts)
        if item.kind == "message":
            where = self._where(item)
            steps.append(
                {"type": "response.output_text.done", **where, "text": text, "logprobs": []}
            )
            steps.append({"type": "response.content_part.done", **where, "part": _text_part(text)})
        elif item.kind == "reasoning":
            where = self._where(item)
            part = {"type": "summary_text", "text": text}
            steps.append({"type": "response.reasoning_summary_text.done", **where, "text": text})
            steps.append({"type": "response.reasoning_summary_part.done", **where, "part": part})
        else:
            if not text:  # no arguments: "{}", as the API says it (the SDK parses them)
                text = "{}"
                self._arguments(item, text, steps)
            steps.append(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item.id,
                    "output_index": item.index,
                    "arguments": text,
                }
            )
        steps.append(
            {"type": "response.output_item.done", "output_index": item.index, "item": item.doc()}
        )


def _default_state(route: RouteConfig, request_id: str) -> ResponseState:
    """The answer's identity when the registry builds the encoder from a route alone."""
    return ResponseState(request_id, model=route.name, created=int(time.time()))


class ResponseEventEncoder(Encoder):
    """``stream: true``: typed Responses events as named SSE frames with ``sequence_number``."""

    name = "responses"
    content_type = "text/event-stream; charset=utf-8"

    def __init__(
        self, route: RouteConfig, request_id: str, state: ResponseState | None = None
    ) -> None:
        super().__init__(route, request_id)
        self.state = state or _default_state(route, request_id)
        self.sequence = 0

    def encode(self, event: Event) -> bytes:
        out = []
        for step in self.state.feed(event):  # fresh dicts, this encoder's own: set in place
            step["sequence_number"] = self.sequence
            self.sequence += 1
            out.append(b"event: " + step["type"].encode() + b"\ndata: " + dumps(step) + b"\n\n")
        return b"".join(out)

    def heartbeat(self) -> bytes:
        return b": ping\n\n"


class ResponseDocEncoder(Encoder):
    """``stream`` false: nothing until the terminal event, then the ``response`` JSON.

    :attr:`status` is the HTTP status of that document: 200, or an error's status for a failed
    response (whose body is then the OpenAI-compatible error shape). Heartbeats are newlines,
    which JSON allows before a value.
    """

    name = "responses-json"
    content_type = "application/json"
    buffered = True

    def __init__(
        self, route: RouteConfig, request_id: str, state: ResponseState | None = None
    ) -> None:
        super().__init__(route, request_id)
        self.state = state or _default_state(route, request_id)
        self.status = 200

    def encode(self, event: Event) -> bytes:
        self.state.feed(event)
        if event.type == ev.END and self.state.final is not None:
            return dumps(self.state.final)
        if event.type == ev.ERROR:
            code = str(event.data.get("code", "internal"))
            self.status = status_for_code(code)
            self.retryable = event.data.get("retryable") is True
            return dumps(error_body(code, str(event.data.get("message", "")), self.status))
        return b""

    def heartbeat(self) -> bytes:
        return b"\n"
