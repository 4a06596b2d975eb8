"""OpenAI Responses API: the mapping the seed generalises.

Endpoint ``POST {base_url}/responses``. Request: the common request becomes ``{model, input,
max_output_tokens, temperature, top_p, tools, reasoning, stream: true}``. ``input`` holds one
item per message: ``system``/``developer``/``user``/``assistant`` text as message items (role
kept), an assistant's earlier tool calls as ``function_call`` items and ``tool`` messages as
``function_call_output`` items. The common ``stop`` has no Responses equivalent and is ignored.
Function tools are sent with ``strict`` false unless the ``strict_tools`` option is set, because
the Responses API defaults to strict schemas and rejects ordinary JSON schemas that are not
strict-compatible.

Options (route ``options``):

``reasoning_summary``: ``"auto"`` (default), ``"concise"``, ``"detailed"`` or ``null`` (ask for
no summary). Sent as ``reasoning.summary`` only when the request gives a reasoning effort.
``strict_tools``: boolean, default false.

Stream: SSE with named events; every JSON repeats its ``type``, which is what we dispatch on.

=======================================  ==================================================
upstream event                           token events
=======================================  ==================================================
response.created                         none (the edge sends ``created``); model remembered
response.in_progress                     thinking
response.content_part.added              clear (``output_text`` or ``refusal`` part)
response.output_text.delta               delta
response.refusal.delta                   delta; the end reason becomes ``content_filter``
response.reasoning_summary_text.delta,   reasoning
response.reasoning_text.delta
response.reasoning_summary_part.added    reasoning "\\n\\n" when reasoning text came before
                                         (summary parts, each a paragraph with its own
                                         title, are joined as paragraphs, not run together)
response.output_item.added               tool_call {index, id: call_id, name, arguments: ""}
  (function_call item)                   (index in order of appearance)
response.function_call_arguments.delta   tool_call {index, arguments} (looked up by item_id)
response.function_call_arguments.done    the whole arguments, only if none were streamed
response.completed                       usage (cache read/write from input_tokens_details),
                                         end(stop, provider_reason "completed")
response.incomplete                      usage, end(length|content_filter|other, reason)
response.failed                          error(upstream_error), retryable by error code
error (flat or nested shape)             error(upstream_error); the stream is finished
data: [DONE] (appended by some proxies)  ignored
anything else                            ignored
=======================================  ==================================================

EOF without ``response.completed|incomplete|failed`` or ``error`` is ``upstream_truncated``.
Malformed JSON is ``upstream_protocol``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from gateway import events as ev
from gateway.adapters._conversation import (
    check_tool_names,
    check_tool_turns,
)
from gateway.adapters._kit import (
    OptionTable,
    as_object,
    bearer_headers,
    count,
    error_object_event,
    load_object,
    native_stream_body,
    new_call_id,
    present,
    text,
    tool_parameters,
    typed,
)
from gateway.adapters.base import Adapter, Translator, UpstreamRequest
from gateway.errors import UpstreamProtocolError
from gateway.events import DELTA, Event, FinishReason
from gateway.framing import Message
from gateway.jsonutil import loads
from gateway.request import ChatMessage, ChatRequest

_OPTIONS: OptionTable = {
    "reasoning_summary": ("auto", typed(str, "auto", "concise", "detailed", nullable=True)),
    "strict_tools": (False, typed(bool)),
}

_INCOMPLETE_REASONS: Mapping[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}

_VISIBLE_PARTS = frozenset({"output_text", "refusal"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_NAME_RULE = "1 to 64 letters, digits, '_' or '-'"
_NOTHING: list[Event] = []


def _input_items(message: ChatMessage) -> list[dict[str, Any]]:
    """The Responses input items for one common message."""
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id,
                "output": message.content,
            }
        ]
    items: list[dict[str, Any]] = []
    if message.content or not message.tool_calls:
        items.append({"type": "message", "role": message.role, "content": message.content})
    for call in message.tool_calls:
        items.append(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return items


class OpenAIResponsesAdapter(Adapter):
    """The ``openai-responses`` provider. See the module docstring for the full mapping."""

    name: ClassVar[str] = "openai-responses"
    native_api = "responses"
    price_provider = "openai"

    genai_provider = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    option_table = _OPTIONS

    def auth_headers(self) -> dict[str, str]:
        return bearer_headers(self.upstream.api_key)

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The streaming ``/responses`` request for ``request`` (``stop`` is not supported);
        raises ``InvalidRequest`` naming the field for a tool result not paired with its call,
        or a tool name or schema the Responses API refuses."""
        check_tool_turns(request.messages)
        check_tool_names(request.tools, _TOOL_NAME, _TOOL_NAME_RULE, self.name)
        body = present(
            model=self.model_for(request),
            input=[item for m in request.messages for item in _input_items(m)],
            max_output_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
        )
        if request.tools:
            strict = bool(self.options.get("strict_tools", False))
            body["tools"] = [
                {
                    "type": "function",
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool_parameters(tool, i),
                    "strict": strict,
                }
                for i, tool in enumerate(request.tools)
            ]
        if request.reasoning_effort is not None:
            reasoning: dict[str, Any] = {"effort": request.reasoning_effort}
            summary = self.options.get("reasoning_summary", "auto")
            if summary is not None:
                reasoning["summary"] = summary
            body["reasoning"] = reasoning
        body["stream"] = True
        return self.post_json("/responses", body)

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest:
        """Forward the client's own Responses body: streaming forced, the route's model applied."""
        return self.post_json("/responses", native_stream_body(body, self.upstream.model))

    def new_translator(self) -> ResponsesTranslator:
        return ResponsesTranslator()


Handler = Callable[["ResponsesTranslator", dict[str, Any]], list[Event]]


class ResponsesTranslator(Translator):
    """One Responses stream. ``feed`` takes one SSE message; see the module table.

    Raises :class:`UpstreamProtocolError` on malformed JSON or on argument deltas for a function
    call that was never announced. After a terminal event every further message is ignored.
    """

    __slots__ = ("_calls", "_reasoned", "_refused", "finished", "model")

    def __init__(self) -> None:
        self.finished = False
        self.model: str | None = None
        self._refused = False
        self._reasoned = False  # some reasoning text went out (summary parts are separated)
        # item_id -> [index, arguments streamed so far?]
        self._calls: dict[str, list[Any]] = {}

    def feed(self, message: Message) -> list[Event]:
        if self.finished:
            return _NOTHING
        data = message.data
        if data == "[DONE]":
            return _NOTHING
        try:  # load_object written out (it raises the protocol error below): a call less
            parsed = loads(data)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            parsed = load_object(data, "openai-responses")
        doc: dict[str, Any] = parsed  # typed: compiled, ``doc.get`` is a direct dict lookup
        kind = doc.get("type")
        if kind == "response.output_text.delta":  # most events: ``_text`` written out
            piece = doc.get("delta")
            if piece and piece.__class__ is str:
                return [Event(DELTA, {"text": piece})]
            return _NOTHING
        # A non-string type (a list is unhashable) is just an event we do not know.
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        return handler(self, doc) if handler is not None else _NOTHING

    def _created(self, doc: dict[str, Any]) -> list[Event]:
        model = as_object(doc.get("response")).get("model")
        if isinstance(model, str):
            self.model = model
        return _NOTHING

    def _in_progress(self, doc: dict[str, Any]) -> list[Event]:
        return [ev.thinking()]

    def _part_added(self, doc: dict[str, Any]) -> list[Event]:
        kind = as_object(doc.get("part")).get("type")
        if isinstance(kind, str) and kind in _VISIBLE_PARTS:
            return [ev.clear()]
        return _NOTHING

    def _text(self, doc: dict[str, Any]) -> list[Event]:
        piece = text(doc.get("delta"))
        return [ev.delta(piece)] if piece is not None else _NOTHING

    def _refusal(self, doc: dict[str, Any]) -> list[Event]:
        self._refused = True
        return self._text(doc)

    def _reasoning(self, doc: dict[str, Any]) -> list[Event]:
        piece = text(doc.get("delta"))
        if piece is None:
            return _NOTHING
        self._reasoned = True
        return [ev.reasoning(piece)]

    def _summary_part(self, doc: dict[str, Any]) -> list[Event]:
        # A new summary part (the next paragraph, or another reasoning item's summary): a blank
        # line between it and the reasoning before, as the parts would be shown one by one.
        return [ev.reasoning("\n\n")] if self._reasoned else _NOTHING

    def _item_added(self, doc: dict[str, Any]) -> list[Event]:
        item = as_object(doc.get("item"))
        if item.get("type") != "function_call":
            return _NOTHING
        item_id = item.get("id")
        index = len(self._calls)
        arguments = text(item.get("arguments")) or ""
        key = item_id if isinstance(item_id, str) else f"\x00{index}"
        self._calls[key] = [index, bool(arguments)]
        call_id = text(item.get("call_id")) or (item_id if isinstance(item_id, str) else None)
        return [
            ev.tool_call(
                index, arguments, id=call_id or new_call_id(), name=text(item.get("name")) or ""
            )
        ]

    def _call_for(self, doc: dict[str, Any]) -> list[Any]:
        item_id = doc.get("item_id")
        call = self._calls.get(item_id) if isinstance(item_id, str) else None
        if call is None:
            raise UpstreamProtocolError("function call arguments for an item never announced")
        return call

    def _arguments(self, doc: dict[str, Any]) -> list[Event]:
        call = self._call_for(doc)
        piece = text(doc.get("delta"))
        if piece is None:
            return _NOTHING
        call[1] = True
        return [ev.tool_call(call[0], piece)]

    def _arguments_done(self, doc: dict[str, Any]) -> list[Event]:
        # Some servers send no deltas, only the whole arguments here; never send them twice.
        call = self._call_for(doc)
        whole = text(doc.get("arguments"))
        if call[1] or whole is None:
            return _NOTHING
        call[1] = True
        return [ev.tool_call(call[0], whole)]

    def _completed(self, doc: dict[str, Any]) -> list[Event]:
        self.finished = True
        reason: FinishReason = "content_filter" if self._refused else "stop"
        return [*_usage(doc), ev.end(reason, "completed")]

    def _incomplete(self, doc: dict[str, Any]) -> list[Event]:
        self.finished = True
        why = as_object(as_object(doc.get("response")).get("incomplete_details")).get("reason")
        provider_reason = why if isinstance(why, str) else "incomplete"
        reason = _INCOMPLETE_REASONS.get(provider_reason, "other")
        return [*_usage(doc), ev.end(reason, provider_reason)]

    def _failed(self, doc: dict[str, Any]) -> list[Event]:
        self.finished = True
        return [error_object_event(as_object(as_object(doc.get("response")).get("error")))]

    def _error(self, doc: dict[str, Any]) -> list[Event]:
        # Documented flat shape {type: error, code, message}; the live API nests it in "error".
        self.finished = True
        nested = doc.get("error")
        return [error_object_event(nested if isinstance(nested, dict) else doc)]


def _usage(doc: dict[str, Any]) -> list[Event]:
    """The ``usage`` event from a terminal event's ``response.usage`` (none when absent).

    ``input_tokens_details.cached_tokens`` is the cache read, ``.cache_write_tokens`` (newer
    API versions) the cache write; missing counters are unknown, never 0.
    """
    usage = as_object(doc.get("response")).get("usage")
    if not isinstance(usage, dict):
        return _NOTHING
    details = as_object(usage.get("input_tokens_details"))
    return [
        ev.usage(
            input_tokens=count(usage.get("input_tokens")),
            output_tokens=count(usage.get("output_tokens")),
            reasoning_tokens=count(
                as_object(usage.get("output_tokens_details")).get("reasoning_tokens")
            ),
            cache_read_input_tokens=count(details.get("cached_tokens")),
            cache_write_input_tokens=count(details.get("cache_write_tokens")),
        )
    ]


_HANDLERS: dict[str, Handler] = {
    "response.created": ResponsesTranslator._created,
    "response.in_progress": ResponsesTranslator._in_progress,
    "response.content_part.added": ResponsesTranslator._part_added,
    "response.output_text.delta": ResponsesTranslator._text,
    "response.refusal.delta": ResponsesTranslator._refusal,
    "response.reasoning_summary_text.delta": ResponsesTranslator._reasoning,
    "response.reasoning_text.delta": ResponsesTranslator._reasoning,
    "response.reasoning_summary_part.added": ResponsesTranslator._summary_part,
    "response.output_item.added": ResponsesTranslator._item_added,
    "response.function_call_arguments.delta": ResponsesTranslator._arguments,
    "response.function_call_arguments.done": ResponsesTranslator._arguments_done,
    "response.completed": ResponsesTranslator._completed,
    "response.incomplete": ResponsesTranslator._incomplete,
    "response.failed": ResponsesTranslator._failed,
    "error": ResponsesTranslator._error,
}
