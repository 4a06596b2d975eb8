"""OpenAI Chat Completions and compatible servers (``POST {base_url}/chat/completions``, streaming).

Compatible servers: vLLM, llama.cpp, Ollama's ``/v1``, Groq, Mistral, DeepSeek, OpenRouter ...

Request: ``{model, messages, max_tokens|max_completion_tokens, temperature, top_p, stop, tools,
reasoning_effort, stream: true, stream_options: {include_usage: true}}``. Assistant tool calls
go out in the Chat shape ``{id, type: function, function: {name, arguments}}`` (content ``null``
when the assistant said nothing), tool results as ``{role: tool, tool_call_id, content}``.

Options (route ``options``):

``max_tokens_field``: ``"max_tokens"`` (default) or ``"max_completion_tokens"``. The default is
the field every compatible server understands; OpenAI's own reasoning models (o-series, gpt-5)
reject it and need ``max_completion_tokens``.
``include_usage``: boolean, default true: send ``stream_options.include_usage`` so the stream
ends with token counts. Turn it off for servers that reject ``stream_options``.
``eof_after_finish``: boolean, default false. Off, the stream is complete only at
``data: [DONE]`` (contract rule 5.1): EOF after a ``finish_reason`` but before ``[DONE]`` is
``upstream_truncated``, because with ``include_usage`` the usage chunk comes *after* the finish
chunk and would be lost silently. On, EOF after a ``finish_reason`` ends normally (for a server
known to close without ``[DONE]``); the usage it reported so far is sent before ``end``.

Stream: data-only SSE, one ``chat.completion.chunk`` per message, ``data: [DONE]`` at the end.
Only ``choices[0]`` is read (the gateway never asks for ``n > 1``).

=====================================  =====================================================
upstream                               token events
=====================================  =====================================================
delta.content                          delta (a list of typed chunks, Mistral's reasoning
                                       models: ``text`` -> delta, ``thinking`` -> reasoning)
delta.reasoning / delta.reasoning_     reasoning (vLLM >= late 2025 / DeepSeek, older vLLM;
content                                one of them per chunk, ``reasoning`` preferred, since
                                       transitional vLLM sent both with the same text)
delta.refusal                          delta; the end reason becomes ``content_filter``
delta.tool_calls[] (keyed by index)    tool_call {index, id and name on the first piece,
                                       arguments piece}; an id is synthesised when missing
usage (``choices: []`` chunk, or on    merged field by field (a later count replaces an
the finish chunk for DeepSeek)         earlier one); one ``usage`` event right before ``end``:
                                       prompt_tokens, completion_tokens, reasoning_tokens,
                                       prompt_tokens_details.cached_tokens (DeepSeek:
                                       prompt_cache_hit_tokens) and .cache_write_tokens
finish_reason                          remembered: stop, length, tool_calls (function_call),
                                       content_filter; anything else is ``other``
data: [DONE]                           usage, end(reason seen; if none, ``tool_calls``
                                       after a tool call, else ``other``)
{"error": {...}} / {"object":          error(upstream_error, message, type); also a chunk
"error", ...} (vLLM)                   with finish_reason ``error``
=====================================  =====================================================

EOF before ``[DONE]`` is ``upstream_truncated`` (unless ``eof_after_finish``, above). Malformed
JSON is ``upstream_protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway import events as ev
from gateway.adapters._conversation import (
    check_tool_turns,
)
from gateway.adapters._kit import (
    IndexedToolCalls,
    OptionTable,
    UsageTally,
    as_object,
    bearer_headers,
    count,
    error_object_event,
    function_tool,
    load_object,
    native_stream_body,
    new_call_id,
    text,
    typed,
)
from gateway.adapters.base import Adapter, Translator, UpstreamRequest
from gateway.events import DELTA, REASONING, Event, FinishReason
from gateway.framing import Message
from gateway.jsonutil import dumps_str, loads
from gateway.request import ChatMessage, ChatRequest

_OPTIONS: OptionTable = {
    "max_tokens_field": ("max_tokens", typed(str, "max_tokens", "max_completion_tokens")),
    "include_usage": (True, typed(bool)),
    "eof_after_finish": (False, typed(bool)),
}

_FINISH_REASONS: Mapping[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

_NOTHING: list[Event] = []


def _message(message: ChatMessage) -> dict[str, Any]:
    """The Chat Completions message for one common message."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if not message.tool_calls:
        return {"role": message.role, "content": message.content}
    return {
        "role": "assistant",
        "content": message.content or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ],
    }


class OpenAIChatAdapter(Adapter):
    """The ``openai-chat`` provider. See the module docstring for the full mapping."""

    name: ClassVar[str] = "openai-chat"
    native_api = "chat_completions"
    price_provider = "openai"

    genai_provider = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    option_table = _OPTIONS

    def auth_headers(self) -> dict[str, str]:
        return bearer_headers(self.upstream.api_key)

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The streaming ``/chat/completions`` request for ``request``; raises
        ``InvalidRequest`` naming the field for a tool result not paired with its call or a tool
        schema that is not an object (which OpenAI and the compatible servers refuse)."""
        check_tool_turns(request.messages)
        # Built key by key, not with ``present(**...)``: every request of the commonest route
        # comes here, and a call with a keyword dict and a comprehension cost 1.9 % of a 1-token
        # request (docs/performance.md). The keys keep ``present``'s order.
        model = self.model_for(request)
        body: dict[str, Any] = {} if model is None else {"model": model}
        body["messages"] = [_message(m) for m in request.messages]
        if request.max_tokens is not None:
            body[self.options.get("max_tokens_field", "max_tokens")] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = [function_tool(tool, i) for i, tool in enumerate(request.tools)]
        if request.reasoning_effort is not None:
            body["reasoning_effort"] = request.reasoning_effort
        body["stream"] = True
        if self.options.get("include_usage", True):
            body["stream_options"] = {"include_usage": True}
        return self.post_json("/chat/completions", body)

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest:
        """Forward the client's own Chat body: streaming forced, the route's model applied.

        ``stream_options.include_usage`` is added (when the option is on) unless the client set it.
        With ``max_tokens_field: max_completion_tokens``, a client's ``max_tokens`` is sent under
        that name (unless it sent both), as on the route's own path: the upstream that needs the
        option refuses ``max_tokens``.
        """
        native = native_stream_body(body, self.upstream.model)
        field = self.options.get("max_tokens_field", "max_tokens")
        if field != "max_tokens" and "max_tokens" in native and field not in native:
            native[field] = native.pop("max_tokens")
        if self.options.get("include_usage", True):
            client = native.get("stream_options")
            stream_options = dict(client) if isinstance(client, dict) else {}
            stream_options.setdefault("include_usage", True)
            native["stream_options"] = stream_options
        return self.post_json("/chat/completions", native)

    def new_translator(self) -> ChatTranslator:
        return ChatTranslator(bool(self.options.get("eof_after_finish")))


class ChatTranslator(Translator):
    """One Chat Completions stream. ``feed`` takes one SSE message; see the module table.

    ``close`` (EOF) raises ``UpstreamTruncated`` unless ``[DONE]`` was seen, or, with
    ``eof_after_finish``, a ``finish_reason`` was. ``feed`` raises ``UpstreamProtocolError`` on
    malformed JSON. After a terminal event every further message is ignored.
    """

    __slots__ = ("_calls", "_eof_ok", "_finish", "_refused", "_usage", "finished", "model")

    def __init__(self, eof_after_finish: bool = False) -> None:
        self.finished = False
        self.model: str | None = None
        self._finish: str | None = None
        self._eof_ok = eof_after_finish
        # Servers repeat usage on several chunks (cumulative) or split it: merged per count.
        self._usage = UsageTally()
        self._refused = False
        self._calls: IndexedToolCalls | None = None  # made by the first tool call's piece

    def feed(self, message: Message) -> list[Event]:
        # The hot path of every compatible server, once per chunk: written out rather than
        # through the kit's helpers (``load_object``, ``as_object``, ``text``, ``ev.delta``),
        # which cost a call each per chunk. The JSON objects are held in ``dict``-typed locals
        # after an ``isinstance`` check: compiled (gateway.native), ``obj.get(key)`` is then a
        # direct dict lookup, where ``get = obj.get`` or an untyped ``obj`` makes each a generic
        # method call (a third of the translator's own time per chunk, measured). Truthiness and
        # ``x.__class__ is str``: a non-empty string (JSON strings are exact ``str``).
        if self.finished:
            return _NOTHING
        data = message.data
        if data == "[DONE]":
            return self._end()
        try:
            parsed = loads(data)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            parsed = load_object(data, "openai-chat")  # raises the protocol error
        doc: dict[str, Any] = parsed
        err = doc.get("error")
        if err or doc.get("object") == "error":
            self.finished = True
            return [error_object_event(_error_object(err, doc))]
        if self.model is None:
            model = doc.get("model")
            if model.__class__ is str:
                self.model = model
        usage = doc.get("usage")
        if isinstance(usage, dict):
            _take_usage(self._usage, usage)
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices:
            return _NOTHING
        first = choices[0]
        if not isinstance(first, dict):
            return _NOTHING  # as an empty choice would
        choice: dict[str, Any] = first
        out: list[Event] = []
        found = choice.get("delta")
        if isinstance(found, dict) and found:
            delta: dict[str, Any] = found
            piece = delta.get("reasoning")
            if not (piece and piece.__class__ is str):
                piece = delta.get("reasoning_content")
            if piece and piece.__class__ is str:
                out.append(Event(REASONING, {"text": piece}))
            piece = delta.get("content")
            if piece and piece.__class__ is str:
                out.append(Event(DELTA, {"text": piece}))
            elif piece and piece.__class__ is list:
                _content_parts(piece, out)  # Mistral's reasoning models: typed chunks
            piece = delta.get("refusal")
            if piece and piece.__class__ is str:
                self._refused = True
                out.append(Event(DELTA, {"text": piece}))
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._tool_piece(call, out)
        finish = choice.get("finish_reason")
        if finish and finish.__class__ is str:
            if finish == "error":
                self.finished = True
                out.append(error_object_event({}, "error"))
            else:
                self._finish = finish
        return out

    def close(self) -> list[Event]:
        if not self.finished and self._eof_ok and self._finish is not None:
            return self._end()
        return super().close()

    def _tool_piece(self, call: Mapping[str, Any], out: list[Event]) -> None:
        function = as_object(call.get("function"))
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # some servers send the arguments whole, as an object
            arguments = dumps_str(arguments)
        elif not isinstance(arguments, str):
            arguments = ""
        call_id = text(call.get("id"))
        calls = self._calls
        if calls is None:
            calls = self._calls = IndexedToolCalls()
        ordinal = calls.fragment(count(call.get("index")), call_id, arguments, out)
        if ordinal is None:
            return
        name = text(function.get("name")) or ""
        out.append(ev.tool_call(ordinal, arguments, id=call_id or new_call_id(), name=name))

    def _end(self) -> list[Event]:
        self.finished = True
        finish = self._finish
        if finish:
            reason: FinishReason = _FINISH_REASONS.get(finish, "other")
        else:  # no finish_reason at all: a tool call still makes it tool_calls (contract 5)
            reason = "other" if self._calls is None else "tool_calls"
        if self._refused and reason == "stop":
            reason = "content_filter"
        return [*self._usage.events(), ev.end(reason, finish)]


def _content_parts(parts: list[Any], out: list[Event]) -> None:
    """``delta.content`` as a list of typed chunks (Mistral's reasoning models, Magistral):
    ``{"type": "text", "text"}`` is visible text, ``{"type": "thinking", "thinking": [{"type":
    "text", "text"}]}`` reasoning; other chunk types (references ...) carry no text of ours."""
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            piece = text(part.get("text"))
            if piece is not None:
                out.append(Event(DELTA, {"text": piece}))
        elif kind == "thinking":
            thinking = part.get("thinking")
            if isinstance(thinking, str):
                thinking = [{"type": "text", "text": thinking}]
            if isinstance(thinking, list):
                for chunk in thinking:
                    piece = text(as_object(chunk).get("text"))
                    if piece is not None:
                        out.append(Event(REASONING, {"text": piece}))


def _error_object(err: Any, doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The error object of an in-stream error payload, whatever its shape."""
    if isinstance(err, dict):
        return err
    if isinstance(err, str):
        return {"message": err}
    return doc  # vLLM: {"object": "error", "message", "type", "code"} at the top level


def _take_usage(tally: UsageTally, usage: Mapping[str, Any]) -> None:
    prompt = as_object(usage.get("prompt_tokens_details"))
    cached = prompt.get("cached_tokens")
    if cached is None:
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek
    tally.take(
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        reasoning_tokens=as_object(usage.get("completion_tokens_details")).get("reasoning_tokens"),
        cache_read_input_tokens=cached,
        cache_write_input_tokens=prompt.get("cache_write_tokens"),
    )
