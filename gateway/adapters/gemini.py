"""Google Gemini (``POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse``). Pure.

Request: ``contents`` with roles ``user``/``model``; system/developer text goes to
``systemInstruction``; assistant tool calls become ``functionCall`` parts and tool results
``functionResponse`` parts (the function name is looked up from the earlier call's id);
tool schemas go as ``parametersJsonSchema`` (JSON Schema as is), and a tool without arguments
is declared without one (Gemini rejects an empty object schema); ``generationConfig``
carries limits, sampling, stop sequences and ``thinkingConfig``.

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

import re
from typing import Any
from urllib.parse import quote

from gateway import events as ev
from gateway.adapters._conversation import (
    check_stop_count,
    check_tool_names,
    check_tool_turns,
)
from gateway.adapters._kit import (
    OptionTable,
    arguments_object,
    boolean,
    effort_budgets,
    load_object,
    maybe_cut,
    new_call_id,
    present,
    require_model,
    tool_names_by_id,
    tool_parameters,
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
_FUNCTION_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}")
_FUNCTION_NAME_RULE = (
    "1 to 128 letters, digits, '_', '.', ':' or '-', starting with a letter or '_'"
)
_MAX_STOP = 5


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
        """The native body for ``request``; raises ``InvalidRequest`` naming the field for a tool
        result not paired with its call, tool arguments that are not a JSON object, and what
        Gemini would refuse (see :func:`_contents`, :func:`_check`)."""
        model = require_model(self.model_for(request), self.name)
        _check(request)
        body: dict[str, Any] = {"contents": _contents(request)}
        if system := request.system_text:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if request.tools:
            declarations = [_declaration(t, i) for i, t in enumerate(request.tools)]
            body["tools"] = [{"functionDeclarations": declarations}]
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


def _declaration(tool: Tool, index: int) -> dict[str, Any]:
    """The function declaration of ``tools[index]``, its schema as ``parametersJsonSchema``
    (JSON Schema as is: Gemini's older ``parameters`` takes an OpenAPI subset and answers 400
    to ``additionalProperties``, ``$schema``, ``const`` ..., which ordinary schemas carry), and
    none for a tool that takes no arguments (Gemini rejects an object schema with no
    properties, which is what a tool sent without parameters becomes in the common request)."""
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    schema = tool_parameters(tool, index)
    if schema.get("properties") or schema.get("required") or not schema.keys() <= _NO_ARGUMENT_KEYS:
        declaration["parametersJsonSchema"] = schema
    return declaration


def _check(request: ChatRequest) -> None:
    """Tool names and stop sequences Gemini would refuse: a 400 naming the field."""
    check_tool_names(request.tools, _FUNCTION_NAME, _FUNCTION_NAME_RULE, "gemini")
    check_stop_count(request.stop, _MAX_STOP, "gemini")


def _contents(request: ChatRequest) -> list[dict[str, Any]]:
    """The ``contents``: roles user/model, runs of one role in one content (a function call
    turn must follow a user or function response turn), function responses in a content of
    their own right after the call turn. Gemini refuses an empty text part: an empty assistant
    text is left out, an empty user message is the client's 400 naming its ``content``."""
    check_tool_turns(request.messages, system_apart=True)
    names = tool_names_by_id(request.messages)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(request.messages):
        if m.role in ("system", "developer"):
            continue
        if m.role == "tool":
            name = names[m.tool_call_id or ""]  # check_tool_turns: the call is there
            part = {"functionResponse": {"name": name, "response": {"result": m.content}}}
            _add(out, "user", [part], results=True)
            continue
        parts: list[dict[str, Any]] = []
        if m.content:
            parts.append({"text": m.content})
        elif m.role == "user":
            raise InvalidRequest(
                f"messages[{i}].content: is empty; provider 'gemini' needs text in every"
                " user message"
            )
        for j, call in enumerate(m.tool_calls):
            args = arguments_object(call.arguments, f"messages[{i}].tool_calls[{j}].arguments")
            parts.append({"functionCall": {"name": call.name, "args": args}})
        if parts:
            _add(out, "model" if m.role == "assistant" else "user", parts, results=False)
    if not out:
        raise InvalidRequest(
            "messages: provider 'gemini' needs a user message besides the system ones"
        )
    for content in out:
        content.pop("_results", None)
    return out


def _add(
    out: list[dict[str, Any]], role: str, parts: list[dict[str, Any]], *, results: bool
) -> None:
    """Append ``parts`` as a content of ``role``, joining the last content when it has the
    same role and kind (function responses join only function responses)."""
    last = out[-1] if out else None
    if last is not None and last["role"] == role and last.get("_results", False) == results:
        last["parts"].extend(parts)
    elif results:
        out.append({"role": role, "parts": parts, "_results": True})
    else:
        out.append({"role": role, "parts": parts})


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
