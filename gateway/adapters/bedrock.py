"""Amazon Bedrock ConverseStream (``POST {base_url}/model/{modelId}/converse-stream``). Pure.

Request: the Converse shape. System/developer text goes to ``system``; consecutive messages of
one role are merged (Converse wants strict user/assistant alternation); assistant tool calls
become ``toolUse`` blocks and tool results ``toolResult`` blocks in the following user turn;
``max_tokens``/``temperature``/``top_p``/``stop`` go to ``inferenceConfig``, tools to
``toolConfig``. Signed with SigV4 (service ``bedrock``) from the configured access keys, or sent
with ``Authorization: Bearer <upstream.api_key>`` (a Bedrock API key) when no keys are set.

Stream (AWS binary event stream, one JSON payload per frame, the event name in a header):
``contentBlockStart`` with ``start.toolUse`` opens a ``tool_call`` (not for a
``server_tool_use``: a system tool Bedrock runs itself); ``contentBlockDelta``
carries ``delta.text`` -> ``delta``, ``delta.reasoningContent.text`` -> ``reasoning``,
``delta.toolUse.input`` -> ``tool_call`` pieces (``"{}"`` at ``contentBlockStop`` when a call
streamed none); ``messageStop.stopReason`` is remembered, and
``metadata`` (usage: ``inputTokens``, ``outputTokens``, ``cacheReadInputTokens``,
``cacheWriteInputTokens``) arrives *after* it and is the stream's terminator: ``usage`` then
``end`` are emitted at ``metadata``. An exception frame is a terminal ``error`` carrying the
exception type. EOF before ``metadata`` (even after ``messageStop``) is ``upstream_truncated``:
the usage that ends every ConverseStream would be lost (contract rule 5.1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
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
    arguments_object,
    bearer_headers,
    load_object,
    present,
    require_model,
    tool_parameters,
    upstream_failure,
)
from gateway.adapters.base import Adapter, Translator, UpstreamRequest, body_bytes
from gateway.adapters.sigv4 import AwsCredentials, quote_path_segment, sign_headers
from gateway.config.fields import key_path
from gateway.config.model import UpstreamConfig
from gateway.errors import ConfigError, InvalidRequest, UpstreamError
from gateway.events import Event, FinishReason
from gateway.framing import Message
from gateway.request import ChatMessage, ChatRequest, Tool

_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d+$")
_KEYS = ("region", "access_key_id", "secret_access_key", "session_token")
_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_RETRYABLE = frozenset(
    {
        "throttlingException",
        "serviceUnavailableException",
        "internalServerException",
        "modelStreamErrorException",
    }
)
_SKIP = frozenset({"messageStart"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_NAME_RULE = "1 to 64 letters, digits, '_' or '-'"
_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_.:-]")
_ID_LIMIT = 64
_EMPTY_RESULT = "(no output)"
"""The text of a blank tool result: Converse needs a result's content, and refuses blank text."""


def utc_now() -> datetime:
    """The default signing clock: the current time, in UTC."""
    return datetime.now(UTC)


class BedrockAdapter(Adapter):
    """Bedrock Runtime ConverseStream.

    Options (strings, ``${ENV}`` allowed): ``region`` (required; also picks the default
    ``base_url`` ``https://bedrock-runtime.{region}.amazonaws.com``), ``access_key_id`` and
    ``secret_access_key`` (together), ``session_token`` (temporary credentials; an empty
    string means none), and
    ``additional_model_request_fields`` (a mapping sent verbatim as
    ``additionalModelRequestFields``, e.g. a thinking budget). Without access keys,
    ``upstream.api_key`` is sent as a bearer token; with neither, construction raises
    :class:`~gateway.errors.ConfigError`.
    """

    name = "bedrock"
    price_provider = "aws"

    genai_provider = "aws.bedrock"
    framing = "aws-eventstream"
    default_base_url = "https://bedrock-runtime.{region}.amazonaws.com"
    """A template: the ``base_url`` property fills in the ``region`` option."""

    def __init__(self, upstream: UpstreamConfig, options: Mapping[str, Any]) -> None:
        super().__init__(upstream, options)
        self.clock: Callable[[], datetime] = utc_now
        """The signing clock; tests pin it (the signature covers the time)."""
        key_id = options.get("access_key_id")
        self._credentials = (
            AwsCredentials(key_id, options["secret_access_key"], options.get("session_token"))
            if key_id
            else None
        )
        if self._credentials is None and not upstream.api_key:
            raise ConfigError(
                "provider 'bedrock' needs options.access_key_id and options.secret_access_key,"
                " or upstream.api_key (a Bedrock API key)"
            )
        self._region: str = options["region"]

    @classmethod
    def parse_options(
        cls, options: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Any], list[str]]:
        out: dict[str, Any] = {}
        errors: list[str] = []
        for key, value in options.items():
            if key == "additional_model_request_fields":
                if not isinstance(value, Mapping):
                    errors.append(f"{path}.{key}: must be a mapping")
                else:
                    out[key] = dict(value)
            elif key not in _KEYS:
                errors.append(f"{key_path(path, key)}: unknown option for provider '{cls.name}'")
            elif key == "session_token" and value == "":
                continue  # ${AWS_SESSION_TOKEN:-} with no token set: long-lived keys
            elif not isinstance(value, str) or not value:
                errors.append(f"{path}.{key}: must be a non-empty string")
            else:
                out[key] = value
        region = out.get("region")
        if "region" not in options:
            errors.append(f"{path}.region: is required (e.g. us-east-1)")
        elif region is not None and not _REGION.match(region):
            errors.append(f"{path}.region: '{region}' is not an AWS region name (e.g. us-east-1)")
        if ("access_key_id" in out) != ("secret_access_key" in out):
            errors.append(f"{path}: access_key_id and secret_access_key go together")
        if "session_token" in out and "access_key_id" not in out:
            errors.append(f"{path}.session_token: needs access_key_id and secret_access_key")
        return out, errors

    @property
    def base_url(self) -> str:
        configured = self.upstream.base_url
        if configured:
            return configured.rstrip("/")
        return self.default_base_url.format(region=self._region)

    def auth_headers(self) -> dict[str, str]:
        return bearer_headers(self.upstream.api_key) if self._credentials is None else {}

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The Converse body for ``request``, signed; raises ``InvalidRequest`` naming the field
        for a missing model, tool-call arguments that are not a JSON object, and what Converse
        would refuse (see :func:`_messages`, :func:`_check`)."""
        _check(request)
        body: dict[str, Any] = {"messages": _messages(request.messages)}
        system = request.system_text
        if not blank(system):  # Converse refuses a blank text block; it says nothing anyway
            body["system"] = [{"text": system}]
        temperature = request.temperature
        inference = present(
            maxTokens=request.max_tokens,
            # Bedrock's range is 0..1
            temperature=None if temperature is None else min(temperature, 1.0),
            topP=request.top_p,
            stopSequences=list(request.stop) or None,
        )
        if inference:
            body["inferenceConfig"] = inference
        if request.tools:
            body["toolConfig"] = {"tools": [_tool(t, i) for i, t in enumerate(request.tools)]}
        if extra := self.options.get("additional_model_request_fields"):
            body["additionalModelRequestFields"] = extra
        return self._request(require_model(self.model_for(request), self.name), body)

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest:
        """Forward a Converse body; the model is the route's, else the body's ``modelId``."""
        native = dict(body)
        model_id = native.pop("modelId", None)
        return self._request(require_model(self.upstream.model or model_id, self.name), native)

    def _request(self, model_id: str, body: dict[str, Any]) -> UpstreamRequest:
        url = f"{self.base_url}/model/{quote_path_segment(model_id)}/converse-stream"
        raw = body_bytes(body)
        headers = {
            "content-type": "application/json",
            "accept": "application/vnd.amazon.eventstream",
            **self.auth_headers(),
            **self.upstream.headers,
        }
        if self._credentials is not None:
            headers = sign_headers(
                "POST",
                url,
                headers,
                raw,
                credentials=self._credentials,
                region=self._region,
                service="bedrock",
                now=self.clock(),
            )
        return UpstreamRequest("POST", url, headers, raw)

    def new_translator(self) -> Translator:
        return BedrockTranslator()


def _tool(tool: Tool, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name}
    if tool.description:
        spec["description"] = tool.description
    spec["inputSchema"] = {"json": tool_parameters(tool, index)}
    return {"toolSpec": spec}


def _check(request: ChatRequest) -> None:
    """Tool names and stop sequences Converse would refuse: a 400 naming the field."""
    check_tool_names(request.tools, _TOOL_NAME, _TOOL_NAME_RULE, "bedrock")
    for i, stop in enumerate(request.stop):
        if not stop:
            raise InvalidRequest(f"stop[{i}]: provider 'bedrock' refuses an empty stop sequence")


def _call_id(call_id: str) -> str:
    """A tool-use id as Converse takes it (``[a-zA-Z0-9_.:-]``, at most 64 characters); the
    call and its result are rewritten alike."""
    return provider_call_id(call_id, _BAD_ID_CHARS, _ID_LIMIT)


def _blocks(m: ChatMessage, i: int) -> list[dict[str, Any]]:
    """The content blocks of one message. Converse refuses blank text (empty or whitespace):
    a blank assistant text is left out (an assistant message of only that has no blocks and
    is skipped), a blank tool result is sent as :data:`_EMPTY_RESULT`, a blank user message is
    the client's 400 naming its ``content``."""
    if m.role == "tool":
        text = _EMPTY_RESULT if blank(m.content) else m.content
        result = {"toolUseId": _call_id(m.tool_call_id or ""), "content": [{"text": text}]}
        return [{"toolResult": result}]
    if not blank(m.content):
        blocks: list[dict[str, Any]] = [{"text": m.content}]
    elif m.role == "user":
        raise InvalidRequest(
            f"messages[{i}].content: is blank; provider 'bedrock' needs text"
            " (not only whitespace) in every user message"
        )
    else:
        blocks = []
    for j, call in enumerate(m.tool_calls):
        path = f"messages[{i}].tool_calls[{j}].arguments"
        use = {
            "toolUseId": _call_id(call.id),
            "name": call.name,
            "input": arguments_object(call.arguments, path),
        }
        blocks.append({"toolUse": use})
    return blocks


def _messages(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """The Converse conversation: strict user/assistant alternation (runs of one role merged),
    starting with a user turn, a final assistant text without trailing whitespace. Raises
    ``InvalidRequest`` naming the field for what Converse would refuse."""
    check_tool_turns(messages, system_apart=True)
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if m.role in ("system", "developer"):
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m, i)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        elif not out and role != "user":
            raise InvalidRequest(
                f"messages[{i}].role: provider 'bedrock' needs the conversation to start with"
                " a user message (after any system messages)"
            )
        else:
            out.append({"role": role, "content": blocks})
    if not out:
        raise InvalidRequest(
            "messages: provider 'bedrock' needs a user message besides the system ones"
        )
    _strip_prefill(out[-1])
    return out


def _strip_prefill(last: dict[str, Any]) -> None:
    """A conversation ending on assistant text (a prefill): that text without its trailing
    whitespace, which Claude on Bedrock refuses there (never blank: blank text is left out)."""
    block = last["content"][-1]
    if last["role"] == "assistant" and "text" in block:
        block["text"] = block["text"].rstrip()


class BedrockTranslator(Translator):
    """ConverseStream events -> token events. See the module docstring for the mapping."""

    __slots__ = ("_stop_reason", "_stopped", "_tools")

    def __init__(self) -> None:
        self._stopped = False
        self._stop_reason: str | None = None
        self._tools = BlockToolCalls()  # keyed by contentBlockIndex

    def feed(self, message: Message) -> list[Event]:
        kind = message.event
        if kind in _SKIP or (kind == "contentBlockStop" and not self._tools.waiting):
            return []  # a block's stop matters only to a tool call without input so far
        if kind.startswith(("exception:", "error:")):
            self._raise(kind.partition(":")[2], message.data)
        obj = load_object(message.data, "bedrock")
        if kind == "contentBlockDelta":
            return self._delta(obj)
        if kind == "contentBlockStart":
            return self._block_start(obj)
        if kind == "contentBlockStop":
            return self._tools.stop(obj.get("contentBlockIndex"))
        if kind == "messageStop":
            self._stopped = True
            reason = obj.get("stopReason")
            self._stop_reason = reason if isinstance(reason, str) else None
            return []
        if kind == "metadata":
            return self._metadata(obj)
        return []  # unknown events: new ones may be added to the union

    def _delta(self, obj: dict[str, Any]) -> list[Event]:
        delta = obj.get("delta")
        if not isinstance(delta, dict):
            return []
        text = delta.get("text")
        if isinstance(text, str):
            return [ev.delta(text)] if text else []
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            # signature / redactedContent carry nothing for the token protocol
            text = reasoning.get("text")
            return [ev.reasoning(text)] if isinstance(text, str) and text else []
        use = delta.get("toolUse")
        if isinstance(use, dict):
            return self._tools.piece(obj.get("contentBlockIndex"), use.get("input"))
        return []  # citation, image: not part of the token protocol

    def _block_start(self, obj: dict[str, Any]) -> list[Event]:
        start = obj.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict) or use.get("type") == "server_tool_use":
            # A system tool runs inside Bedrock (its input and result stream back too): no
            # call for the client, and its input pieces are dropped (no start opened them).
            return []
        return [
            self._tools.start(obj.get("contentBlockIndex"), use.get("toolUseId"), use.get("name"))
        ]

    def _metadata(self, obj: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        usage = obj.get("usage")
        if isinstance(usage, dict):
            cached = usage.get("cacheReadInputTokens")
            written = usage.get("cacheWriteInputTokens")
            given = usage.get("inputTokens")
            # Bedrock counts cached input apart; the protocol's input_tokens is all of it.
            total_input = None
            if given is not None:
                total_input = int(given) + int(cached or 0) + int(written or 0)
            out.append(
                ev.usage(
                    input_tokens=total_input,
                    output_tokens=usage.get("outputTokens"),
                    cache_read_input_tokens=cached,
                    cache_write_input_tokens=written,
                )
            )
        if self._stopped:
            out.append(self._end())
        return out

    def _end(self) -> Event:
        self.finished = True
        native = self._stop_reason
        return ev.end(_STOP_REASONS.get(native or "", "other"), native)

    def _raise(self, kind: str, data: str) -> None:
        self.finished = True
        message = "the upstream reported an error"
        try:
            obj = load_object(data, "bedrock")
        except UpstreamError:
            obj = {}
        for key in ("message", "Message", "originalMessage"):
            if isinstance(obj.get(key), str) and obj[key]:
                message = obj[key]
                break
        else:
            if data and not data.lstrip().startswith("{"):
                message = data[:500]  # an error frame's text from its header
        # Exception types arrive lower-camel in frames ("throttlingException").
        kind = kind[:1].lower() + kind[1:]
        raise upstream_failure(message, kind, retryable=kind in _RETRYABLE)
