"""Google Gemini (``POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse``). Pure.

Request: ``contents`` with roles ``user``/``model``; system/developer text goes to
``systemInstruction``; assistant tool calls become ``functionCall`` parts and tool results
``functionResponse`` parts (the function name is looked up from the earlier call's id);
a tool without arguments is declared without ``parameters`` (Gemini rejects an empty object
schema); ``generationConfig`` carries limits, sampling, stop sequences and ``thinkingConfig``.

Stream: data-only SSE framed with CRLF, each event a whole ``GenerateContentResponse``. Parts
with ``thought: true`` -> ``reasoning``, other text parts -> ``delta``, each ``functionCall`` part
-> one whole ``tool_call`` (arguments serialised to a JSON string, id synthesised when absent).
``usageMetadata`` is cumulative on every chunk: merged count by count (a later count replaces an
earlier one, never summed) and emitted once, at the end; ``cachedContentTokenCount`` is the
cache read. Gemini
has no terminator but EOF: a chunk with ``finishReason`` makes the stream finishable and
:meth:`GeminiTranslator.close` emits ``usage`` + ``end``; EOF without one is
``upstream_truncated`` (also when EOF cuts raw error text short). Errors arrive as
``{"error": {code, message, status}}``, either as a ``data:`` event or as raw pretty-printed
JSON outside SSE framing (framing ``sse+raw``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gateway import events as ev
from gateway.adapters._kit import (
    OptionTable,
    arguments_object,
    boolean,
    effort_budgets,
    function_tool,
    load_object,
    maybe_cut,
    new_call_id,
    present,
    require_model,
    upstream_failure,
)
from gateway.adapters.base import Adapter, Translator, UpstreamRequest
from gateway.errors import InvalidRequest, UpstreamProtocolError
from gateway.events import Event, FinishReason
from gateway.framing import RAW_EVENT, Message
from gateway.jsonutil import dumps_str
from gateway.request import ChatRequest, Tool

_OPTIONS: OptionTable = {
    # thinkingBudget per effort (Gemini 2.5). 0 turns thinking off where the model allows it.
    "thinking_budgets": (
        {"minimal": 0, "low": 1024, "medium": 8192, "high": 24576},
        effort_budgets,
    ),
    # Gemini 3 takes thinkingLevel (the effort name) instead of a budget.
    "thinking_level": (False, boolean),
    # Ask for thought summaries whenever thinking is configured.
    "include_thoughts": (True, boolean),
}

_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
_RETRYABLE_STATUS = frozenset({429, 500, 503, 504})


def _finish_reason(native: str) -> FinishReason:
    if native == "STOP":
        return "stop"  # the guard turns it into tool_calls when a functionCall went out
    if native == "MAX_TOKENS":
        return "length"
    if native in _CONTENT_FILTER:
        return "content_filter"
    return "other"


class GeminiAdapter(Adapter):
    """Gemini API. Options: ``thinking_budgets`` (effort -> thinkingBudget), ``thinking_level``
    (send the effort as thinkingLevel instead), ``include_thoughts``."""

    name = "gemini"
    price_provider = "google"

    genai_provider = "gcp.gemini"
    framing = "sse+raw"
    default_base_url = "https://generativelanguage.googleapis.com"
    option_table = _OPTIONS

    def auth_headers(self) -> dict[str, str]:
        key = self.upstream.api_key
        return {"x-goog-api-key": key} if key else {}

    def _request(self, model: str, body: dict[str, Any]) -> UpstreamRequest:
        model = model.removeprefix("models/")
        path = f"/v1beta/models/{quote(model, safe='')}:streamGenerateContent?alt=sse"
        return self.post_json(path, body)

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The native body for ``request``; raises ``InvalidRequest`` for a tool result whose id
        matches no earlier tool call, or tool arguments that are not a JSON object."""
        model = require_model(self.model_for(request), self.name)
        body: dict[str, Any] = {"contents": _contents(request)}
        if system := request.system_text:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if request.tools:
            body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        config = self._generation_config(request)
        if config:
            body["generationConfig"] = config
        return self._request(model, body)

    def _generation_config(self, request: ChatRequest) -> dict[str, Any]:
        config = present(
            maxOutputTokens=request.max_tokens,
            temperature=request.temperature,
            topP=request.top_p,
            stopSequences=list(request.stop) or None,
        )
        effort = request.reasoning_effort
        if effort is not None:
            thinking: dict[str, Any] = {}
            if self.options["include_thoughts"]:
                thinking["includeThoughts"] = True
            if self.options["thinking_level"]:
                thinking["thinkingLevel"] = effort
            else:
                thinking["thinkingBudget"] = int(self.options["thinking_budgets"].get(effort, 0))
            config["thinkingConfig"] = thinking
        return config

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest:
        """Forward a ``generateContent`` body as is. The model lives in the URL: the route's model
        wins, else a top-level ``model`` field (removed from the body, Gemini would reject it)."""
        native = dict(body)
        body_model = native.pop("model", None)
        model = require_model(self.upstream.model or body_model, self.name)
        return self._request(model, native)

    def new_translator(self) -> Translator:
        return GeminiTranslator()


_NO_ARGUMENT_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "$schema"})


def _declaration(tool: Tool) -> dict[str, Any]:
    """The function declaration: the inner part of the function-tool shape, without
    ``parameters`` for a tool that takes no arguments. Gemini rejects an object schema with no
    properties (400 ``parameters.properties: should be non-empty for OBJECT type``), which is
    what a tool sent without parameters becomes in the common request."""
    declaration: dict[str, Any] = function_tool(tool)["function"]
    schema = tool.parameters
    if (
        not schema.get("properties")
        and not schema.get("required")
        and schema.get("type", "object") == "object"
        and schema.keys() <= _NO_ARGUMENT_KEYS
    ):
        del declaration["parameters"]
    return declaration


def _contents(request: ChatRequest) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool_call_id -> function name, as the conversation goes
    out: list[dict[str, Any]] = []
    results_open = False  # the last content holds tool results: append further ones to it
    for i, m in enumerate(request.messages):
        if m.role in ("system", "developer"):
            continue
        if m.role == "tool":
            name = names.get(m.tool_call_id or "")
            if name is None:
                raise InvalidRequest(
                    f"messages[{i}].tool_call_id: matches no earlier assistant tool call"
                )
            part = {"functionResponse": {"name": name, "response": {"result": m.content}}}
            if results_open:
                out[-1]["parts"].append(part)
            else:
                out.append({"role": "user", "parts": [part]})
                results_open = True
            continue
        results_open = False
        parts: list[dict[str, Any]] = []
        if m.content:
            parts.append({"text": m.content})
        for j, call in enumerate(m.tool_calls):
            names[call.id] = call.name
            args = arguments_object(call.arguments, f"messages[{i}].tool_calls[{j}].arguments")
            parts.append({"functionCall": {"name": call.name, "args": args}})
        if not parts:
            parts.append({"text": ""})
        out.append({"role": "model" if m.role == "assistant" else "user", "parts": parts})
    return out


def _raise_error(err: Any) -> None:
    err = err if isinstance(err, dict) else {"message": str(err)}
    code = err.get("code")
    raise upstream_failure(
        err.get("message"), err.get("status"), retryable=code in _RETRYABLE_STATUS
    )


class GeminiTranslator(Translator):
    """``GenerateContentResponse`` chunks -> token events. See the module docstring."""

    def __init__(self) -> None:
        self._usage: dict[str, Any] | None = None
        self._finish: str | None = None
        self._tools = 0
        self._cut: UpstreamProtocolError | None = None

    def feed(self, message: Message) -> list[Event]:
        if self._cut is not None:
            raise self._cut  # the unparsable raw text was not the stream's last
        if message.event == RAW_EVENT:
            return self._raw(message.data)
        obj = load_object(message.data, "gemini")
        if "error" in obj:
            self.finished = True
            _raise_error(obj["error"])
        out: list[Event] = []
        usage = obj.get("usageMetadata")
        if isinstance(usage, dict):
            # Cumulative: a later count replaces an earlier one (never summed); merged per
            # count because early chunks may omit some (candidatesTokenCount).
            self._usage = {**self._usage, **usage} if self._usage else usage
        candidates = obj.get("candidates")
        if candidates:
            candidate = candidates[0]
            content = candidate.get("content")
            if content:
                self._parts(content.get("parts") or (), out)
            if candidate.get("finishReason"):
                self._finish = candidate["finishReason"]
        else:
            feedback = obj.get("promptFeedback")
            if feedback and feedback.get("blockReason"):
                # The prompt itself was blocked: no candidates will follow.
                self.finished = True
                return [*self._usage_events(), ev.end("content_filter", feedback["blockReason"])]
        return out

    def _parts(self, parts: Any, out: list[Event]) -> None:
        for part in parts:
            text = part.get("text")
            if text:
                out.append(ev.reasoning(text) if part.get("thought") else ev.delta(text))
                continue
            call = part.get("functionCall")
            if call is not None:
                args = call.get("args")
                out.append(
                    ev.tool_call(
                        self._tools,
                        dumps_str(args if args is not None else {}),
                        id=call.get("id") or new_call_id(),
                        name=call.get("name"),
                    )
                )
                self._tools += 1

    def _raw(self, text: str) -> list[Event]:
        """Text outside SSE framing: Gemini's pretty-printed error JSON (nothing else expected).

        An object that does not parse may be that error cut short by EOF (raw text has no framing
        to tell): held back, so EOF right after it is ``upstream_truncated`` (contract rule 5.1),
        while any further message makes it the ``upstream_protocol`` error it is.
        """
        try:
            obj = load_object(text, "gemini")
        except UpstreamProtocolError:
            problem = UpstreamProtocolError("gemini sent text outside SSE framing")
            if maybe_cut(text):
                self._cut = problem
                return []
            self.finished = True
            raise problem from None
        self.finished = True
        if "error" in obj:
            _raise_error(obj["error"])
        raise UpstreamProtocolError("gemini sent JSON outside SSE framing")

    def _usage_events(self) -> list[Event]:
        usage = self._usage
        if not usage:
            return []
        candidates = usage.get("candidatesTokenCount")
        thoughts = usage.get("thoughtsTokenCount")
        # candidatesTokenCount excludes thoughts; the protocol's output counts everything generated.
        output = (
            None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
        )
        prompt = usage.get("promptTokenCount")
        tool_prompt = usage.get("toolUsePromptTokenCount")
        # The tool-use prompt (the results of built-in tools fed back) is input the model read
        # and is billed as input, but promptTokenCount leaves it out (totalTokenCount adds it).
        if tool_prompt and prompt is not None:
            prompt += tool_prompt
        return [
            ev.usage(
                input_tokens=prompt,
                output_tokens=output,
                reasoning_tokens=thoughts,
                cache_read_input_tokens=usage.get("cachedContentTokenCount"),
            )
        ]

    def close(self) -> list[Event]:
        """EOF is Gemini's terminator, valid only after a chunk carried ``finishReason``."""
        if self.finished:
            return []
        if self._finish is None or self._cut is not None:
            return super().close()  # raises upstream_truncated
        self.finished = True
        return [*self._usage_events(), ev.end(_finish_reason(self._finish), self._finish)]
