"""The common request (contract section 3): parsed and validated from the client's JSON body. Pure.

:func:`parse_request` turns the decoded body into a frozen :class:`ChatRequest` or raises
:class:`~gateway.errors.InvalidRequest` whose message names the offending field
(``messages[2].role: must be one of ...``). Unknown top-level fields are kept in ``extra`` and
never forwarded by the common adapters; ``metadata`` is never forwarded upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.jsonutil import dumps_str
from gateway.values import value

ROLES = ("system", "developer", "user", "assistant", "tool")
EFFORTS = ("minimal", "low", "medium", "high")


@value
class ToolCall:
    """A tool call made by the assistant in an earlier turn; ``arguments`` is a JSON string."""

    id: str
    name: str
    arguments: str


@value
class ChatMessage:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@value
class Tool:
    name: str
    description: str | None
    parameters: dict[str, Any]


@value
class ChatRequest:
    """The validated common request. ``raw`` is the decoded body as the client sent it."""

    messages: tuple[ChatMessage, ...]
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    reasoning_effort: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def system_text(self) -> str:
        """System and developer messages joined by blank lines (providers with one system slot)."""
        return "\n\n".join(m.content for m in self.messages if m.role in ("system", "developer"))


def _fail(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}")


def _opt_number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, "must be a number")
    if not lo <= value <= hi:
        raise _fail(key, f"must be between {lo:g} and {hi:g}")
    return float(value)


def _parse_tool_calls(value: Any, path: str) -> tuple[ToolCall, ...]:
    if not isinstance(value, list):
        raise _fail(path, "must be a list")
    calls = []
    for i, item in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise _fail(p, "must be an object")
        call_id, name, arguments = item.get("id"), item.get("name"), item.get("arguments", "{}")
        if not isinstance(call_id, str) or not call_id:
            raise _fail(f"{p}.id", "must be a non-empty string")
        if not isinstance(name, str) or not name:
            raise _fail(f"{p}.name", "must be a non-empty string")
        if isinstance(arguments, dict):
            try:
                arguments = dumps_str(arguments)
            except TypeError:  # nested deeper than the encoder goes (orjson: 255 levels)
                raise _fail(f"{p}.arguments", "is nested too deeply") from None
        if not isinstance(arguments, str):
            raise _fail(f"{p}.arguments", "must be a JSON string or an object")
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def _parse_message(item: Any, path: str) -> ChatMessage:
    if not isinstance(item, dict):
        raise _fail(path, "must be an object")
    role = item.get("role")
    if role not in ROLES:
        raise _fail(f"{path}.role", f"must be one of {', '.join(ROLES)}")
    tool_calls: tuple[ToolCall, ...] = ()
    if "tool_calls" in item and item["tool_calls"] is not None:
        if role != "assistant":
            raise _fail(f"{path}.tool_calls", "only assistant messages carry tool calls")
        tool_calls = _parse_tool_calls(item["tool_calls"], f"{path}.tool_calls")
    content = _content(item, path, may_omit=bool(tool_calls))
    tool_call_id = item.get("tool_call_id")
    if role == "tool":
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise _fail(f"{path}.tool_call_id", "is required for role tool (a non-empty string)")
    elif tool_call_id is not None:
        raise _fail(f"{path}.tool_call_id", "only tool messages carry tool_call_id")
    return ChatMessage(role, content, tool_calls, tool_call_id)


def _content(item: dict[str, Any], path: str, *, may_omit: bool) -> str:
    """The message's text: a string, required unless the message carries tool calls.

    Only an assistant message with at least one tool call may leave ``content`` out or
    ``null`` (it is then ""); anything else that is not a string is a 400 naming ``content``.
    """
    content = item.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        if may_omit:
            return ""
        missing = "is required" if "content" not in item else "must be a string, not null"
        raise _fail(
            f"{path}.content",
            f"{missing} (only an assistant message with tool_calls may omit it)",
        )
    kind = _json_kind(content)
    raise _fail(f"{path}.content", f"must be a string, not {kind}")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list (content parts are not accepted here; send the text as a string)"
    if isinstance(value, dict):
        return "an object"
    return "a " + type(value).__name__


@dataclass(frozen=True, slots=True)
class ToolShape:
    """How one API spells a tool: what :func:`validate_tools` checks differently per API.

    ``types`` are the accepted values of ``type`` (``type_default`` when absent); a wrong one
    fails with ``type_problem`` (``{kind!r}`` is the value sent). The schema sits at
    ``schema_key``; if ``schema_optional``, an absent one (or a ``null`` one, if
    ``null_is_absent``) is an empty object schema. ``nested`` names a key that may hold the rest
    of the tool (the Chat Completions ``{"type": "function", "function": {...}}``).
    """

    types: frozenset[str | None]
    type_default: str | None
    type_problem: str
    schema_key: str
    schema_optional: bool = False
    null_is_absent: bool = False
    nested: str | None = None


@dataclass(frozen=True, slots=True)
class ToolFields:
    """One validated tool: its fields, and ``spec`` (the object holding them) for API extras."""

    name: str
    description: str | None
    schema: dict[str, Any]
    spec: dict[str, Any]


COMMON_TOOLS = ToolShape(
    types=frozenset({"function"}),
    type_default="function",
    type_problem="must be 'function'",
    schema_key="parameters",
    schema_optional=True,
    nested="function",
)


def validate_tools(
    value: Any, shape: ToolShape, check: Callable[[dict[str, Any], str], None] | None = None
) -> list[ToolFields]:
    """A client's ``tools`` list checked against ``shape``; ``[]`` for ``None``.

    Raises :class:`InvalidRequest` naming the field (``tools[2].name: must be a non-empty
    string``), the same paths and problems for every API but the ``type`` one. ``check`` is
    called with each tool's spec and path after its common fields (an API's own fields).
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail("tools", "must be a list")
    tools = []
    for i, item in enumerate(value):
        p = f"tools[{i}]"
        if not isinstance(item, dict):
            raise _fail(p, "must be an object")
        kind = item.get("type", shape.type_default)
        # A list or an object is no type either (and unhashable: a set lookup would raise).
        if not (kind is None or isinstance(kind, str)) or kind not in shape.types:
            raise _fail(f"{p}.type", shape.type_problem.format(kind=kind))
        spec = item.get(shape.nested, item) if shape.nested else item
        if not isinstance(spec, dict):
            raise _fail(f"{p}.{shape.nested}", "must be an object")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{p}.name", "must be a non-empty string")
        description = spec.get("description")
        if description is not None and not isinstance(description, str):
            raise _fail(f"{p}.description", "must be a string")
        schema = spec.get(shape.schema_key)
        absent = shape.null_is_absent or shape.schema_key not in spec
        if schema is None and shape.schema_optional and absent:
            schema = {"type": "object", "properties": {}}  # no arguments
        if not isinstance(schema, dict):
            raise _fail(f"{p}.{shape.schema_key}", "must be an object (a JSON schema)")
        if check is not None:
            check(spec, p)
        tools.append(ToolFields(name, description, schema, spec))
    return tools


def _parse_tools(value: Any) -> tuple[Tool, ...]:
    return tuple(Tool(t.name, t.description, t.schema) for t in validate_tools(value, COMMON_TOOLS))


def parse_request(body: Any) -> ChatRequest:
    """Validate a decoded JSON body as the common request.

    Raises :class:`InvalidRequest` naming the first field that is wrong.
    """
    if not isinstance(body, dict):
        raise _fail("body", "must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "is required and must be a non-empty list")
    parsed = tuple([_parse_message(m, f"messages[{i}]") for i, m in enumerate(messages)])

    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise _fail("model", "must be a non-empty string")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise _fail("max_tokens", "must be a positive integer")
    stop = body.get("stop")
    if stop is None:
        stop_t: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stop_t = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop_t = tuple(stop)
    else:
        raise _fail("stop", "must be a string or a list of strings")
    tools = _parse_tools(body["tools"]) if body.get("tools") is not None else ()
    effort = None
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise _fail("reasoning", "must be an object")
        effort = reasoning.get("effort")
        if effort is not None and effort not in EFFORTS:
            raise _fail("reasoning.effort", f"must be one of {', '.join(EFFORTS)}")
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _fail("metadata", "must be an object")
    temperature = _opt_number(body, "temperature", 0, 2)
    top_p = _opt_number(body, "top_p", 0, 1)
    # In field order, not by keyword: a class called with keywords builds a dict of them first
    # (ten: twice the cost of the whole construction; docs/performance.md).
    return ChatRequest(
        parsed, model, max_tokens, temperature, top_p, stop_t, tools, effort, metadata, body
    )
