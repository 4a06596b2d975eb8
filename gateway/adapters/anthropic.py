"""Anthropic Messages (``POST {base_url}/v1/messages``, SSE with named events). Pure.

Request: system/developer messages go to ``system``; assistant tool calls become ``tool_use``
blocks; tool results become ``tool_result`` blocks in one user message per run of results;
reasoning effort becomes ``thinking.budget_tokens`` (option ``thinking_budgets``), except
inside an assistant turn (see :func:`_inside_assistant_turn`).

Stream: ``message_start`` (input usage) -> content blocks (``text_delta`` -> ``delta``,
``thinking_delta`` -> ``reasoning``, ``tool_use`` start + ``input_json_delta`` -> ``tool_call``,
``"{}"`` at the stop of a call that streamed no input)
-> ``message_delta`` (stop reason, cumulative output usage) -> ``message_stop`` (``usage`` then
``end``). Usage is merged count by count over ``message_start`` and every ``message_delta`` (a
later report of a count replaces an earlier one): ``input_tokens`` is all the input
(``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``), the two cache counts
go to ``cache_read_input_tokens`` / ``cache_write_input_tokens`` when Anthropic reports them.
``event: error`` is a terminal error with the provider's error type. EOF before
``message_stop`` is ``upstream_truncated`` (the base :meth:`Translator.close`).
"""

from __future__ import annotations

import re
from typing import Any

from gateway import events as ev
from gateway.adapters._conversation import (
    blank,
    check_tool_names,
    check_tool_turns,
    provider_call_id,
)
from gateway.adapters._kit import (
    BlockToolCalls,
    OptionTable,
    UsageTally,
    arguments_object,
    as_object,
    effort_budgets,
    load_object,
    native_stream_body,
    non_empty_str,
    positive_int,
    require_model,
    tool_parameters,
    upstream_failure,
)
from gateway.adapters.base import Adapter, Translator, UpstreamRequest
from gateway.errors import InvalidRequest
from gateway.events import Event, FinishReason
from gateway.framing import Message
from gateway.request import ChatRequest, Tool

_OPTIONS: OptionTable = {
    "anthropic_version": ("2023-06-01", non_empty_str),
    "max_tokens": (4096, positive_int),
    # Anthropic's minimum budget is 1024; "minimal" (0) means "do not enable thinking".
    "thinking_budgets": (
        {"minimal": 0, "low": 1024, "medium": 4096, "high": 16384},
        effort_budgets,
    ),
}
_MIN_THINKING_BUDGET = 1024
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_NAME_RULE = "1 to 128 letters, digits, '_' or '-'"
_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_ID_LIMIT = 128  # no documented limit; a longer id is shortened (with its hash) all the same

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_RETRYABLE = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
# Events whose payload carries nothing for the token protocol: skip them without parsing JSON.
_SKIP = frozenset({"ping"})


class AnthropicAdapter(Adapter):
    """Anthropic Messages API. Options: ``anthropic_version``, ``max_tokens`` (default when the
    request gives none; Anthropic requires one), ``thinking_budgets`` (effort -> budget_tokens)."""

    name = "anthropic"
    native_api = "messages"
    price_provider = "anthropic"

    genai_provider = "anthropic"
    framing = "sse"
    default_base_url = "https://api.anthropic.com"
    option_table = _OPTIONS

    def auth_headers(self) -> dict[str, str]:
        key = self.upstream.api_key
        return {"x-api-key": key} if key else {}

    def common_headers(self) -> dict[str, str]:
        return {"anthropic-version": self.options["anthropic_version"], **super().common_headers()}

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The native streaming body; raises ``InvalidRequest`` naming the field for what
        Anthropic would refuse: tool arguments that are not an object, a blank user message, a
        tool result without its call, a tool name or schema or stop sequence it does not take."""
        _check(request)
        max_tokens = request.max_tokens or self.options["max_tokens"]
        body: dict[str, Any] = {
            "model": require_model(self.model_for(request), self.name),
            "max_tokens": max_tokens,
        }
        system = request.system_text
        if not blank(system):  # Anthropic refuses a blank system text; it says nothing anyway
            body["system"] = system
        messages = _messages(request)
        body["messages"] = messages
        budget = self._thinking_budget(request.reasoning_effort, max_tokens)
        if budget and not _inside_assistant_turn(messages):
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        else:
            # Anthropic rejects temperature/top_p changes while thinking, so send them only here.
            if request.temperature is not None:
                body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0..1
            if request.top_p is not None:
                body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.tools:
            body["tools"] = [_tool(t, i) for i, t in enumerate(request.tools)]
        body["stream"] = True
        return self.post_json("/v1/messages", body)

    def _thinking_budget(self, effort: str | None, max_tokens: int) -> int:
        """The budget for ``effort``, capped below ``max_tokens`` (which includes thinking);
        0 (no thinking) when no effort was asked or the cap falls under Anthropic's minimum."""
        if effort is None:
            return 0
        budget = min(int(self.options["thinking_budgets"].get(effort, 0)), max_tokens - 1)
        return budget if budget >= _MIN_THINKING_BUDGET else 0

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest:
        """Forward a Messages body: streaming on, the route's model (if set) wins, and the default
        ``max_tokens`` fills in when absent. Other fields pass through untouched."""
        model = require_model(self.upstream.model or body.get("model"), self.name)
        native = native_stream_body(body, model)
        native.setdefault("max_tokens", self.options["max_tokens"])
        return self.post_json("/v1/messages", native)

    def new_translator(self) -> Translator:
        return AnthropicTranslator()


def _inside_assistant_turn(messages: list[dict[str, Any]]) -> bool:
    """The conversation ends inside an assistant turn: on an assistant message (a prefill), or
    on tool results that only follow an assistant message with ``tool_use`` (a tool loop).

    With thinking on, Anthropic wants that turn to start with its own thinking block (with its
    signature), which the token protocol does not carry: such a request is sent without
    thinking. A later user message starts a new turn, which needs none.
    """
    if messages and messages[-1]["role"] == "assistant":
        return True
    return (
        len(messages) > 1
        and _block_types(messages[-1]) == {"tool_result"}
        and "tool_use" in _block_types(messages[-2])
    )


def _block_types(message: dict[str, Any]) -> set[str]:
    content = message["content"]
    return {block["type"] for block in content} if isinstance(content, list) else set()


def _tool(tool: Tool, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = tool_parameters(tool, index)
    return out


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The Messages conversation; raises ``InvalidRequest`` naming the field for what Anthropic
    would refuse (see :func:`_check`, :func:`_text_message`)."""
    check_tool_turns(request.messages, system_apart=True)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(request.messages):
        if m.role in ("system", "developer"):
            continue
        if m.role == "tool":
            block = _tool_result(m.tool_call_id or "", m.content)
            last = out[-1] if out else None
            # Anthropic wants every result for one assistant turn in a single user message.
            if last is not None and last.get("_results"):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block], "_results": True})
        elif m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = []
            if not blank(m.content):
                blocks.append({"type": "text", "text": m.content})
            for j, call in enumerate(m.tool_calls):
                path = f"messages[{i}].tool_calls[{j}].arguments"
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": _call_id(call.id),
                        "name": call.name,
                        "input": arguments_object(call.arguments, path),
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        elif (message := _text_message(m.role, m.content, i)) is not None:
            out.append(message)
    for message in out:
        message.pop("_results", None)
    return _final_prefill(out)


def _tool_result(call_id: str, content: str) -> dict[str, Any]:
    """A ``tool_result`` block; a blank result goes without ``content`` (optional in the API,
    which refuses a blank text)."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _call_id(call_id)}
    if not blank(content):
        block["content"] = content
    return block


def _text_message(role: str, content: str, index: int) -> dict[str, Any] | None:
    """A user or assistant text message. Anthropic refuses blank text (empty or whitespace):
    a blank assistant message says nothing and is left out (``None``); a blank user message is
    the client's 400 naming its ``content`` (leaving it out could turn the turn around)."""
    if not blank(content):
        return {"role": role, "content": content}
    if role == "user":
        raise InvalidRequest(
            f"messages[{index}].content: is blank; provider 'anthropic' needs text"
            " (not only whitespace) in every user message"
        )
    return None


def _final_prefill(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation that ends on an assistant text (a prefill) without its trailing
    whitespace, which Anthropic refuses there. Raises ``InvalidRequest`` when nothing but
    system text is left (Anthropic needs a message)."""
    if not out:
        raise InvalidRequest(
            "messages: provider 'anthropic' needs a user message besides the system ones"
        )
    last = out[-1]
    if last["role"] == "assistant" and isinstance(last["content"], str):
        last["content"] = last["content"].rstrip()  # not blank: _text_message left those out
    return out


def _call_id(call_id: str) -> str:
    """A tool call id in Anthropic's alphabet (``^[a-zA-Z0-9_-]+$``): ids from other providers
    (``functions.get_weather:0``) are rewritten the same way for the call and its result."""
    return provider_call_id(call_id, _BAD_ID_CHARS, _ID_LIMIT)


def _check(request: ChatRequest) -> None:
    """Tool names and stop sequences Anthropic would refuse: a 400 naming the field."""
    check_tool_names(request.tools, _TOOL_NAME, _TOOL_NAME_RULE, "anthropic")
    for i, stop in enumerate(request.stop):
        if blank(stop):
            raise InvalidRequest(
                f"stop[{i}]: provider 'anthropic' refuses a stop sequence that is empty or"
                " only whitespace"
            )


_USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class AnthropicTranslator(Translator):
    """Messages stream events -> token events. See the module docstring for the mapping."""

    __slots__ = ("_stop_reason", "_tools", "_usage")

    def __init__(self) -> None:
        # Anthropic's own counts, merged over message_start and message_delta(s).
        self._usage = UsageTally()
        self._stop_reason: str | None = None
        self._tools = BlockToolCalls()  # keyed by content block index

    def feed(self, message: Message) -> list[Event]:
        kind = message.event
        if kind in _SKIP or (kind == "content_block_stop" and not self._tools.waiting):
            return []  # a block's stop matters only to a tool call without input so far
        obj = load_object(message.data, "anthropic")
        if kind == "message":  # no event: line; the payload's type says the same thing
            kind = obj.get("type", "")
        if kind == "content_block_delta":
            return self._delta(obj)
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "content_block_stop":
            return self._tools.stop(obj.get("index"))
        if kind == "message_start":
            self._take_usage(as_object(obj.get("message")).get("usage"))
            return []
        if kind == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            self._take_usage(obj.get("usage"))
            return []
        if kind == "message_stop":
            return self._finish()
        if kind == "error":
            self._raise_error(obj)
        return []  # unknown event types are to be ignored (Anthropic docs)

    def _delta(self, obj: dict[str, Any]) -> list[Event]:
        delta = as_object(obj.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [ev.delta(text)] if text else []
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return [ev.reasoning(text)] if text else []
        if kind == "input_json_delta":
            # A server tool's input (no tool_use start) and the usual empty first piece: nothing.
            return self._tools.piece(obj.get("index"), delta.get("partial_json"))
        return []  # signature_delta, citations_delta: nothing for the token protocol

    def _block_start(self, obj: dict[str, Any]) -> list[Event]:
        block = as_object(obj.get("content_block"))
        if block.get("type") != "tool_use":
            return []
        # input:{} here is a placeholder; the real input streams as input_json_delta.
        return [self._tools.start(obj.get("index"), block.get("id"), block.get("name"))]

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.take(**{k: usage.get(k) for k in _USAGE_KEYS})

    def _finish(self) -> list[Event]:
        self.finished = True
        out: list[Event] = []
        counts = self._usage.counts
        if counts:
            given = counts.get("input_tokens")
            read = counts.get("cache_read_input_tokens")
            written = counts.get("cache_creation_input_tokens")
            out.append(
                ev.usage(
                    # Anthropic counts cached and cache-written input apart; ours is all of it.
                    input_tokens=None if given is None else given + (read or 0) + (written or 0),
                    output_tokens=counts.get("output_tokens"),
                    cache_read_input_tokens=read,
                    cache_write_input_tokens=written,
                )
            )
        native = self._stop_reason
        out.append(ev.end(_STOP_REASONS.get(native or "", "other"), native))
        return out

    def _raise_error(self, obj: dict[str, Any]) -> None:
        self.finished = True
        err = as_object(obj.get("error"))
        kind = err.get("type")
        raise upstream_failure(err.get("message"), kind, retryable=kind in _RETRYABLE)
