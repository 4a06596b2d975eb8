"""Ollama native NDJSON (``POST {base_url}/api/chat``, or ``/api/generate``). Pure.

Request (chat): ``messages`` with roles system/user/assistant/tool (assistant tool calls carry
their arguments as objects), ``options`` {num_predict, temperature, top_p, stop}, ``tools`` in the
function-tool shape, ``think`` when a reasoning effort is given, ``stream: true``. With option
``endpoint: generate`` the request is a single-turn ``prompt`` (+ ``system``).

Stream: one JSON object per line. ``message.thinking`` / ``thinking`` -> ``reasoning``,
``message.content`` / ``response`` -> ``delta`` (the final ``done`` object may carry text too),
``message.tool_calls`` (whole) -> one ``tool_call`` each with a synthesised id and the arguments
as a JSON string. ``done: true`` -> ``usage`` + ``end``. ``{"error": "..."}`` -> terminal error.
EOF before ``done`` is ``upstream_truncated``, also when it cuts the last line short.
"""

from __future__ import annotations

from typing import Any

from gateway import events as ev
from gateway.adapters._kit import (
    OptionTable,
    arguments_object,
    bearer_headers,
    boolean,
    function_tool,
    load_object,
    maybe_cut,
    native_stream_body,
    new_call_id,
    one_of,
    present,
    require_model,
    tool_names_by_id,
)
from gateway.adapters.base import Adapter, Translator, UpstreamRequest
from gateway.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from gateway.events import Event, FinishReason
from gateway.framing import Message
from gateway.jsonutil import dumps_str
from gateway.request import ChatRequest

_OPTIONS: OptionTable = {
    "endpoint": ("chat", one_of("chat", "generate")),
    # gpt-oss takes think: "low"|"medium"|"high"; other thinking models take true/false.
    "think_level": (False, boolean),
}
_DONE_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class OllamaAdapter(Adapter):
    """Ollama's own API. Options: ``endpoint`` (chat | generate), ``think_level``."""

    name = "ollama"
    genai_provider = "ollama"
    framing = "ndjson"
    default_base_url = "http://127.0.0.1:11434"
    option_table = _OPTIONS

    def auth_headers(self) -> dict[str, str]:
        return bearer_headers(self.upstream.api_key)  # ollama.com; a local server needs none

    def common_headers(self) -> dict[str, str]:
        headers = super().common_headers()
        headers["accept"] = self.upstream.headers.get("accept", "application/x-ndjson")
        return headers

    def _request(self, body: dict[str, Any]) -> UpstreamRequest:
        return self.post_json(f"/api/{self.options['endpoint']}", body)

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The native body; raises ``InvalidRequest`` for tool arguments that are not a JSON
        object, a tool schema that is not an object, or (endpoint generate) for a multi-turn
        conversation or tools."""
        body: dict[str, Any] = {"model": require_model(self.model_for(request), self.name)}
        if self.options["endpoint"] == "generate":
            body.update(_generate_prompt(request))
        else:
            body["messages"] = _messages(request)
            if request.tools:
                body["tools"] = [function_tool(t, i) for i, t in enumerate(request.tools)]
        body["stream"] = True
        options = present(
            num_predict=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=list(request.stop) or None,
        )
        if options:
            body["options"] = options
        effort = request.reasoning_effort
        if effort is not None:
            if self.options["think_level"]:
                body["think"] = "low" if effort == "minimal" else effort
            else:
                body["think"] = effort != "minimal"
        return self._request(body)

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest:
        """Forward an Ollama body: ``stream`` forced true, the route's model (if set) wins."""
        model = require_model(self.upstream.model or body.get("model"), self.name)
        return self._request(native_stream_body(body, model))

    def new_translator(self) -> Translator:
        return OllamaTranslator()


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    names = tool_names_by_id(request.messages)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(request.messages):
        role = "system" if m.role == "developer" else m.role
        message: dict[str, Any] = {"role": role, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [
                {
                    "function": {
                        "name": call.name,
                        "arguments": arguments_object(
                            call.arguments, f"messages[{i}].tool_calls[{j}].arguments"
                        ),
                    }
                }
                for j, call in enumerate(m.tool_calls)
            ]
        if role == "tool" and m.tool_call_id in names:
            message["tool_name"] = names[m.tool_call_id]
        out.append(message)
    return out


def _generate_prompt(request: ChatRequest) -> dict[str, Any]:
    if request.tools:
        raise InvalidRequest("tools: not supported by provider 'ollama' with endpoint generate")
    prompts = []
    for i, m in enumerate(request.messages):
        if m.role in ("assistant", "tool"):
            raise InvalidRequest(
                f"messages[{i}].role: endpoint generate takes a single-turn prompt"
            )
        if m.role == "user":
            prompts.append(m.content)
    out: dict[str, Any] = {"prompt": "\n\n".join(prompts)}
    if system := request.system_text:
        out["system"] = system
    return out


class OllamaTranslator(Translator):
    """``/api/chat`` and ``/api/generate`` stream lines -> token events.

    A line that starts like an object but does not parse may be the unterminated last line of a
    stream cut mid-line (the decoder hands that tail over at EOF): it is held back, so EOF right
    after it is ``upstream_truncated`` (contract rule 5.1); any further line makes it the
    ``upstream_protocol`` error it is.
    """

    def __init__(self) -> None:
        self._tools = 0
        self._cut: UpstreamProtocolError | None = None

    def feed(self, message: Message) -> list[Event]:
        if self._cut is not None:
            raise self._cut  # the malformed line was not the last one
        try:
            obj = load_object(message.data, "ollama")
        except UpstreamProtocolError as exc:
            if not maybe_cut(message.data):
                raise
            self._cut = exc  # maybe a line cut by EOF: close() says truncated
            return []
        if "error" in obj:
            self.finished = True
            raise UpstreamError(str(obj["error"]), retryable=False)
        out: list[Event] = []
        msg = obj.get("message")
        if isinstance(msg, dict):  # /api/chat
            thinking, content = msg.get("thinking"), msg.get("content")
            calls = msg.get("tool_calls")
        else:  # /api/generate
            thinking, content, calls = obj.get("thinking"), obj.get("response"), None
        if thinking:
            out.append(ev.reasoning(thinking))
        if content:
            out.append(ev.delta(content))
        if calls:
            self._tool_calls(calls, out)
        if obj.get("done") is True:
            self.finished = True
            self._done(obj, out)
        return out

    def _tool_calls(self, calls: Any, out: list[Event]) -> None:
        for call in calls:
            function = call.get("function") or {}
            args = function.get("arguments")
            arguments = (
                args if isinstance(args, str) else dumps_str(args if args is not None else {})
            )
            out.append(
                ev.tool_call(
                    self._tools,
                    arguments,
                    id=call.get("id") or new_call_id(),
                    name=function.get("name"),
                )
            )
            self._tools += 1

    @staticmethod
    def _done(obj: dict[str, Any], out: list[Event]) -> None:
        prompt, generated = obj.get("prompt_eval_count"), obj.get("eval_count")
        if prompt is not None or generated is not None:
            out.append(ev.usage(input_tokens=prompt, output_tokens=generated))
        native = obj.get("done_reason")
        # Ollama before done_reason existed only ever finished normally.
        reason = _DONE_REASONS.get(native, "other") if native else "stop"
        out.append(ev.end(reason, native))
