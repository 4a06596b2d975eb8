"""Cohere v2 chat (``POST {base_url}/v2/chat``, SSE with hyphenated named events). Pure.

Request: ``messages`` (system/developer -> system; assistant tool calls with JSON-string
arguments; tool results as role ``tool`` with ``tool_call_id``), ``tools`` in the function shape,
``max_tokens``, ``temperature``, ``p`` (kept in Cohere's 0.01..0.99), ``stop_sequences``,
``thinking`` for a reasoning effort, ``stream: true``; Bearer auth.

Stream: ``content-delta`` text -> ``delta``, thinking -> ``reasoning``; ``tool-plan-delta``
(the model's plan before calling tools) -> ``reasoning``; ``tool-call-start`` / ``-delta`` ->
``tool_call`` pieces (``"{}"`` at ``tool-call-end`` when a call streamed no arguments);
``message-end`` -> ``usage`` + ``end`` (finish reason ``ERROR`` / ``TIMEOUT`` -> terminal error
instead). A ``data: [DONE]`` line is ignored. EOF before ``message-end`` is
``upstream_truncated``.
"""

from __future__ import annotations

from typing import Any

from gateway import events as ev
from gateway.adapters._conversation import (
    check_stop_count,
    check_tool_turns,
)
from gateway.adapters._kit import (
    BlockToolCalls,
    OptionTable,
    as_object,
    bearer_headers,
    effort_budgets,
    function_tool,
    load_object,
    native_stream_body,
    present,
    require_model,
    upstream_failure,
)
from gateway.adapters.base import Adapter, Translator, UpstreamRequest
from gateway.events import Event, FinishReason
from gateway.framing import Message
from gateway.request import ChatRequest

_OPTIONS: OptionTable = {
    # thinking.token_budget per effort; 0 sends thinking {type: disabled}.
    "thinking_budgets": (
        {"minimal": 0, "low": 1024, "medium": 4096, "high": 16384},
        effort_budgets,
    ),
}
_FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
_FAILED = frozenset({"ERROR", "TIMEOUT"})
# Cohere's documented range for ``p`` (the common request's top_p allows 0..1).
_MIN_P = 0.01
_MAX_P = 0.99
_SKIP = frozenset({"message-start", "content-start", "content-end"})
_MAX_STOP = 5


class CohereAdapter(Adapter):
    """Cohere v2 chat. Options: ``thinking_budgets`` (effort -> thinking.token_budget)."""

    name = "cohere"
    price_provider = "cohere"

    genai_provider = "cohere"
    framing = "sse"
    default_base_url = "https://api.cohere.com"
    option_table = _OPTIONS

    def auth_headers(self) -> dict[str, str]:
        return bearer_headers(self.upstream.api_key)

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The native streaming body for ``request``; raises ``InvalidRequest`` naming the field
        for a tool result not paired with its call, a tool schema that is not an object, or
        more stop sequences than Cohere takes (5)."""
        check_tool_turns(request.messages)
        check_stop_count(request.stop, _MAX_STOP, self.name)
        body: dict[str, Any] = {
            "model": require_model(self.model_for(request), self.name),
            "messages": _messages(request),
        }
        if request.tools:
            body["tools"] = [function_tool(t, i) for i, t in enumerate(request.tools)]
        body.update(
            present(
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                p=None if request.top_p is None else min(max(request.top_p, _MIN_P), _MAX_P),
                stop_sequences=list(request.stop) or None,
            )
        )
        effort = request.reasoning_effort
        if effort is not None:
            budget = int(self.options["thinking_budgets"].get(effort, 0))
            body["thinking"] = (
                {"type": "enabled", "token_budget": budget} if budget else {"type": "disabled"}
            )
        body["stream"] = True
        return self.post_json("/v2/chat", body)

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest:
        """Forward a v2 chat body: ``stream`` forced true, the route's model (if set) wins."""
        model = require_model(self.upstream.model or body.get("model"), self.name)
        return self.post_json("/v2/chat", native_stream_body(body, model))

    def new_translator(self) -> Translator:
        return CohereTranslator()


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role in ("system", "developer"):
            out.append({"role": "system", "content": m.content})
        elif m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.role == "assistant" and m.tool_calls:
            message: dict[str, Any] = {"role": "assistant"}
            if m.content:
                # Text said before calling tools is Cohere's tool plan.
                message["tool_plan"] = m.content
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments or "{}"},
                }
                for call in m.tool_calls
            ]
            out.append(message)
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _inner(obj: dict[str, Any], key: str) -> Any:
    """``obj.delta.message[key]`` or ``None``."""
    delta = obj.get("delta")
    message = delta.get("message") if isinstance(delta, dict) else None
    return message.get(key) if isinstance(message, dict) else None


class CohereTranslator(Translator):
    """v2 chat stream events -> token events. See the module docstring."""

    def __init__(self) -> None:
        self._tools = BlockToolCalls()  # keyed by Cohere's tool-call index

    def feed(self, message: Message) -> list[Event]:
        kind = message.event
        if kind in _SKIP or (kind == "tool-call-end" and not self._tools.waiting):
            return []  # a call's end matters only to a call without arguments so far
        data = message.data
        if data == "[DONE]":
            return []  # the SDK tolerates it after message-end; it carries nothing
        obj = load_object(data, "cohere")
        if kind == "message":  # no event: line; the payload's type says the same thing
            kind = obj.get("type", "")
        if kind == "content-delta":
            content = _inner(obj, "content")
            if not isinstance(content, dict):
                return []
            text = content.get("text")
            if text:
                return [ev.delta(text)]
            thinking = content.get("thinking")
            return [ev.reasoning(thinking)] if thinking else []
        if kind == "tool-call-delta":
            return self._tool_piece(obj, start=False)
        if kind == "tool-plan-delta":
            plan = _inner(obj, "tool_plan")
            return [ev.reasoning(plan)] if plan else []
        if kind == "tool-call-start":
            return self._tool_piece(obj, start=True)
        if kind == "tool-call-end":
            return self._tools.stop(obj.get("index"))
        if kind == "message-end":
            return self._end(obj)
        return []  # citations, debug, and event types added later

    def _tool_piece(self, obj: dict[str, Any], *, start: bool) -> list[Event]:
        call = _inner(obj, "tool_calls")
        if isinstance(call, list):  # documented as one object; tolerate a one-item list
            call = call[0] if call else None
        if not isinstance(call, dict):
            return []
        index = obj.get("index")
        function = as_object(call.get("function"))
        arguments = function.get("arguments")
        if start:
            whole = arguments if isinstance(arguments, str) else ""
            return [self._tools.start(index, call.get("id"), function.get("name"), whole)]
        return self._tools.piece(index, arguments)

    def _end(self, obj: dict[str, Any]) -> list[Event]:
        self.finished = True
        delta = as_object(obj.get("delta"))
        native = delta.get("finish_reason")
        if native in _FAILED:
            message = delta.get("error") or f"the upstream generation failed ({native})"
            raise upstream_failure(message, native, retryable=native == "TIMEOUT")
        out: list[Event] = []
        usage = delta.get("usage")
        if isinstance(usage, dict):
            out.append(_usage(usage))
        out.append(ev.end(_FINISH.get(native or "", "other"), native))
        return out


def _usage(usage: dict[str, Any]) -> Event:
    # ``tokens`` counts what the model processed; ``billed_units`` what was charged (often less).
    counts = usage.get("tokens") or usage.get("billed_units") or {}
    cached = usage.get("cached_tokens")
    return ev.usage(
        input_tokens=counts.get("input_tokens"),
        output_tokens=counts.get("output_tokens"),
        cache_read_input_tokens=int(cached) if isinstance(cached, int | float) else None,
    )
