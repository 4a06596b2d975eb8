"""``mapped``: any SSE or NDJSON upstream, described by configuration alone. Pure.

No code runs from the config: the request is a JSON template with a fixed set of placeholders,
and each upstream message is parsed once and read at precompiled dotted paths (where the text,
reasoning, tool calls, usage, finish reason and errors sit, and what ends the stream). The
option reference, with the YAML that re-creates the built-in ``openai-chat`` and ``ollama``
adapters, is ``docs/adapters/mapped.md``.

Per message, in this order: the terminator's ``data`` (before any JSON parsing), the error
rules (the first that matches ends the stream with ``error``), then ``reasoning``, ``text``,
``refusal``, ``tool_call``, ``usage`` (remembered, merged count by count over events),
``finish_reason`` (remembered), and last the
terminator's ``type``/``path`` test, which emits the remembered ``usage`` then ``end``. With
``type_path: sse_event`` a message whose SSE type is ``terminator.type`` ends the stream even when
its data is empty or not JSON (nothing else is read from it then). A path that is missing is
simply absent; text values that are not non-empty strings are ignored. EOF
before the terminator is ``upstream_truncated`` unless ``eof_after_finish`` is set and a finish
reason was seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from gateway import events as ev
from gateway.adapters._kit import (
    IndexedToolCalls,
    UsageTally,
    count,
    maybe_cut,
    new_call_id,
    retryable_status,
    text,
    upstream_failure,
)
from gateway.adapters._mapped_config import compile_options
from gateway.adapters._mapped_spec import MISSING, ErrorRule, Rule, Spec, first, lookup, render
from gateway.adapters.base import Adapter, Translator, UpstreamRequest, body_bytes
from gateway.adapters.sigv4 import quote_path_segment
from gateway.config.fields import header_value_problem
from gateway.config.model import UpstreamConfig
from gateway.errors import ConfigError, InvalidRequest, UpstreamProtocolError
from gateway.events import Event, FinishReason
from gateway.framing import RAW_EVENT, Message
from gateway.jsonutil import dumps_str, loads
from gateway.request import ChatRequest

_DEFAULT_HEADERS = (("authorization", "Bearer {api_key}"),)
_ACCEPT = {"ndjson": "application/x-ndjson"}


class MappedAdapter(Adapter):
    """An upstream mapped by ``options`` (see the module docstring and docs/adapters/mapped.md).

    ``framing`` is per instance (``options.framing``). Construction raises
    :class:`~gateway.errors.ConfigError` when ``upstream.api_key`` (or ``upstream.model``, when a
    header template uses ``{model}``) could not be sent in a header: a line break, a NUL or a
    character outside Latin-1.
    """

    name = "mapped"

    def __init__(self, upstream: UpstreamConfig, options: Mapping[str, Any]) -> None:
        super().__init__(upstream, options)
        spec = options["spec"]
        assert isinstance(spec, Spec)
        self.spec = spec
        # The pipeline reads adapter.framing; here it is chosen by configuration, per instance.
        setattr(self, "framing", spec.framing)  # noqa: B010 - a ClassVar elsewhere
        self._model_in_header = any("{model}" in t for _, t in spec.headers or _DEFAULT_HEADERS)
        if upstream.api_key and (problem := header_value_problem(upstream.api_key)):
            raise ConfigError(f"upstream.api_key: {problem}")
        if (
            self._model_in_header
            and upstream.model
            and (problem := header_value_problem(upstream.model))
        ):
            raise ConfigError(f"upstream.model: {problem} (a header template uses {{model}})")

    @classmethod
    def parse_options(
        cls, options: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Any], list[str]]:
        """Validate and compile the mapping; the result holds the compiled ``spec``."""
        spec, errors = compile_options(options, path)
        return ({"spec": spec} if spec is not None else {}), errors

    def build_request(self, request: ChatRequest) -> UpstreamRequest:
        """The configured request with its placeholders filled from ``request``.

        Raises :class:`InvalidRequest` when the model has a line break or a NUL, or, when a
        header template uses ``{model}``, a character outside Latin-1 (a header cannot carry it).
        """
        values = _values(request, self.model_for(request), self.upstream.api_key)
        model = values["model"]
        if model is not None:
            if any(ch in model for ch in "\r\n\x00"):
                raise InvalidRequest("model: must not contain line breaks")
            if self._model_in_header and (problem := header_value_problem(model)):
                raise InvalidRequest(f"model: {problem} (it is sent in a header)")
        spec = self.spec
        texts = _texts(values)
        path = render(spec.path, {"model": quote_path_segment(model or "")})
        headers = {
            "content-type": "application/json",
            "accept": _ACCEPT.get(spec.framing, "text/event-stream"),
        }
        for name, template in spec.headers or _DEFAULT_HEADERS:
            if "{api_key}" in template and not values["api_key"]:
                continue  # no key configured: send no credential header at all
            headers[name] = render(template, texts)
        headers.update(self.upstream.headers)
        body = _fill(spec.body, values, texts)
        return UpstreamRequest(spec.method, self.base_url + path, headers, body_bytes(body))

    def new_translator(self) -> Translator:
        return MappedTranslator(self.spec)


def _values(request: ChatRequest, model: str | None, api_key: str | None) -> dict[str, Any]:
    messages = []
    for m in request.messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            item["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            item["tool_call_id"] = m.tool_call_id
        messages.append(item)
    users = [m.content for m in request.messages if m.role == "user"]
    tools = [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters,
        }
        for t in request.tools
    ]
    return {
        "model": model,
        "api_key": api_key,
        "messages": messages,
        "messages_text": "\n".join(f"{m.role}: {m.content}" for m in request.messages),
        "system": request.system_text or None,
        "prompt": users[-1] if users else None,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": list(request.stop) or None,
        "tools": tools or None,
        "tools_function": [
            {"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
            for t in tools
        ]
        or None,
        "reasoning_effort": request.reasoning_effort,
    }


def _texts(values: Mapping[str, Any]) -> dict[str, str]:
    """``values`` as text for placeholders inside a longer string (headers included): unset is
    ``""``, a string itself, anything else compact JSON (``stop=["x","y"]``)."""
    return {
        k: "" if v is None else v if isinstance(v, str) else dumps_str(v) for k, v in values.items()
    }


_DROP = object()


def _fill(node: Any, values: Mapping[str, Any], texts: Mapping[str, str]) -> Any:
    """The body template with placeholders filled. A whole-value placeholder keeps the value's
    JSON type; one whose value is unset drops its key (or list item). Inside a longer string,
    placeholders take their ``texts`` (see :func:`_texts`, built once a request)."""
    if isinstance(node, str):
        if node.startswith("{") and node.endswith("}") and node[1:-1] in values:
            value = values[node[1:-1]]
            return _DROP if value is None else value
        return render(node, texts)
    if isinstance(node, dict):
        filled = {k: _fill(v, values, texts) for k, v in node.items()}
        return {k: v for k, v in filled.items() if v is not _DROP}
    if isinstance(node, list):
        return [v for v in (_fill(item, values, texts) for item in node) if v is not _DROP]
    return node


def _text(doc: Any, rules: tuple[Rule, ...], kind: str | None) -> str | None:
    """The first non-empty string found by ``rules`` (alternatives) for event type ``kind``."""
    for rule in rules:
        if rule.types is not None and kind not in rule.types:
            continue
        if (value := first(doc, rule.paths, _is_text)) is not MISSING:
            return cast(str, value)
    return None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_count(value: Any) -> bool:
    return count(value) is not None


def _is_reason(value: Any) -> bool:
    """A finish reason: text, or a number (compared, like the config's map keys, as text)."""
    return _is_text(value) or (isinstance(value, int | float) and not isinstance(value, bool))


class MappedTranslator(Translator):
    """One stream read through a compiled :class:`Spec`; see the module docstring for the order.

    ``feed`` raises :class:`UpstreamProtocolError` for a message that is not JSON (raw side-channel
    text that is not JSON is ignored) and :class:`UpstreamError` when an error rule matches. An
    NDJSON line that starts like JSON but does not parse may be the stream's last line cut short
    by EOF (the decoder hands that tail over at EOF; SSE drops an unterminated event): it is held
    back, so EOF right after it is ``upstream_truncated`` (contract rule 5.1) and any further
    message makes it the protocol error.
    """

    __slots__ = ("_calls", "_cut", "_finish", "_refused", "_spec", "_usage")

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._finish: str | None = None
        self._usage = UsageTally()
        self._refused = False
        self._calls = IndexedToolCalls()
        self._cut: UpstreamProtocolError | None = None

    def feed(self, message: Message) -> list[Event]:
        if self.finished:
            return []
        if self._cut is not None:
            raise self._cut  # the message that did not parse was not the stream's last
        spec = self._spec
        data = message.data
        term = spec.terminator
        if term.data is not None and data == term.data:
            return self._end()
        if not data.strip():
            # An SSE terminator event may carry no payload (``event: done`` + ``data:``).
            return self._end() if self._typed_end(message) else []
        try:
            doc = loads(data)
        except ValueError:
            if message.event == RAW_EVENT:
                return []
            if self._typed_end(message):
                return self._end()  # its SSE type says it ends the stream; its text is no JSON
            problem = UpstreamProtocolError("the upstream sent a message that is not JSON")
            if spec.framing == "ndjson" and maybe_cut(data):
                self._cut = problem  # maybe cut short by EOF: close() says truncated
                return []
            raise problem from None
        kind = self._kind(doc, message)
        for rule in spec.errors:
            if rule.types is None or kind in rule.types:
                self._check_error(rule, doc)
        out: list[Event] = []
        if piece := _text(doc, spec.reasoning, kind):
            out.append(ev.reasoning(piece))
        if piece := _text(doc, spec.text, kind):
            out.append(ev.delta(piece))
        if piece := _text(doc, spec.refusal, kind):
            self._refused = True
            out.append(ev.delta(piece))
        if spec.tool_call is not None:
            self._tools(doc, kind, out)
        if spec.usage is not None:
            self._take_usage(doc, kind)
        if spec.finish is not None and (spec.finish.types is None or kind in spec.finish.types):
            value = first(doc, spec.finish.paths, _is_reason)
            if value is not MISSING:
                self._finish = str(value)
        if (term.type is not None and kind == term.type) or (
            term.paths and first(doc, term.paths) == term.equals
        ):
            out.extend(self._end())
        return out

    def close(self) -> list[Event]:
        if self.finished:
            return []
        if (
            self._cut is None
            and self._spec.terminator.eof_after_finish
            and self._finish is not None
        ):
            return self._end()
        return super().close()

    def _typed_end(self, message: Message) -> bool:
        """Whether ``message`` is the terminator by its SSE ``event:`` field alone (no JSON
        needed: ``type_path: sse_event`` with ``terminator.type``)."""
        spec = self._spec
        return spec.type_from_sse and message.event == spec.terminator.type

    def _kind(self, doc: Any, message: Message) -> str | None:
        spec = self._spec
        if spec.type_from_sse:
            return message.event
        if spec.type_path is not None:
            value = lookup(doc, spec.type_path)
            return value if isinstance(value, str) else None
        return None

    def _check_error(self, rule: ErrorRule, doc: Any) -> None:
        value = first(doc, rule.paths)
        if value is MISSING or (rule.equals is MISSING and not value):
            return
        if rule.equals is not MISSING and value != rule.equals:
            return
        message = first(doc, rule.message_paths, _is_text) if rule.message_paths else value
        found = [lookup(doc, p) for p in rule.type_paths]
        kinds = [k for k in found if isinstance(k, str) and k]
        status = next(
            (s for s in map(count, (lookup(doc, p) for p in rule.status_paths)) if s), None
        )
        label = kinds[0] if kinds else rule.type
        # The constant ``type`` counts too when it is the error's type (no type_path string).
        retryable = (
            any(k in rule.retryable_types for k in kinds)
            or (not kinds and rule.type in rule.retryable_types)
            or retryable_status(status)
        )
        self.finished = True
        raise upstream_failure(text(message), label, retryable=retryable)

    def _tools(self, doc: Any, kind: str | None, out: list[Event]) -> None:
        rule = self._spec.tool_call
        assert rule is not None
        if rule.types is not None and kind not in rule.types:
            return
        calls = lookup(doc, rule.list_path)
        if isinstance(calls, dict):
            calls = [calls]  # one call object instead of a list
        if not isinstance(calls, list):
            return
        for call in calls:
            call_id = lookup(call, rule.id_path) if rule.id_path else None
            call_id = call_id if isinstance(call_id, str) and call_id else None
            args = lookup(call, rule.arguments_path) if rule.arguments_path else MISSING
            if isinstance(args, dict | list):
                arguments = dumps_str(args)  # sent whole, as an object
            elif isinstance(args, str):
                arguments = args
            else:
                arguments = "" if rule.index_path else "{}"
            if rule.index_path is not None:
                index = count(lookup(call, rule.index_path))
                ordinal = self._calls.fragment(index, call_id, arguments, out)
                if ordinal is None:
                    continue
            else:
                ordinal = self._calls.new()
            name = lookup(call, rule.name_path) if rule.name_path else None
            name = name if isinstance(name, str) else ""
            out.append(ev.tool_call(ordinal, arguments, id=call_id or new_call_id(), name=name))

    def _take_usage(self, doc: Any, kind: str | None) -> None:
        rule = self._spec.usage
        assert rule is not None
        if rule.types is not None and kind not in rule.types:
            return
        # Merged count by count: a provider may split usage over several events.
        self._usage.take(**{key: first(doc, paths, _is_count) for key, paths in rule.fields})

    def _end(self) -> list[Event]:
        self.finished = True
        finish = self._spec.finish
        native = self._finish
        reason: Any = "other"
        if finish is not None:
            reason = finish.map.get(native, "other") if native else finish.default
        if self._refused and reason == "stop":
            reason = "content_filter"
        end = ev.end(cast(FinishReason, reason), native)  # config restricted it to the reasons
        return [*self._usage.events(), end]
