"""An Anthropic Messages request body mapped to the common request body (contract section 3). Pure.

:func:`to_common` validates the Messages-specific shape and raises
:class:`~gateway.errors.InvalidRequest` naming the client's own field (``messages[2].content[0]
.tool_use_id``); :func:`gateway.request.parse_request` then validates the result as usual.

==============================================  ==============================================
Messages                                        common request
==============================================  ==============================================
``system`` string or text blocks                one ``system`` message first (blocks joined)
``messages[]`` user text blocks                 a ``user`` message (text blocks joined)
``messages[]`` ``role: system`` (string/blocks)  a ``system`` message in place
user ``tool_result`` blocks                     one ``tool`` message each, in block order
                                                (content string or text blocks joined;
                                                ``is_error`` is not carried); its
                                                ``tool_use_id`` must name an earlier
                                                ``tool_use`` block
assistant text + ``tool_use`` blocks            ``assistant`` with ``tool_calls``
                                                (``input`` as compact JSON ``arguments``)
assistant ``thinking`` / ``redacted_thinking``  accepted, dropped (the common request has no
                                                place for them; see docs/frontdoors.md)
``tools[]`` ``{name, description, input_schema}`` ``tools[]`` ``{type: function, name, ...}``
``tool_choice`` ``none``                        no tools sent upstream
``tool_choice`` ``auto`` / ``any`` / ``tool``   accepted; not enforced upstream
``max_tokens`` (required)                       ``max_tokens``
``temperature`` (0..1), ``top_p``               same
``stop_sequences``                              ``stop``
``thinking`` ``{type: enabled, budget_tokens}`` ``reasoning.effort``: < 4096 low, < 16384
                                                medium, else high; ``adaptive`` medium;
                                                ``disabled`` none
``metadata``                                    ``metadata`` (never forwarded upstream)
``model``                                       names the route; not a model override
``stream``                                      the answer's mode (see :func:`stream_flag`)
everything else (``top_k``, ``service_tier``)   ignored
==============================================  ==============================================

``cache_control`` on any block is accepted and ignored. Image, document and server-tool blocks
are a 400 naming the block.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.jsonutil import dumps_str
from gateway.request import ToolShape, validate_tools

# budget_tokens -> effort: the inverse of the Anthropic Messages adapter's default budgets.
_EFFORT_STEPS = ((4096, "low"), (16384, "medium"))
_MIN_BUDGET = 1024
_TOOL_CHOICES = ("auto", "any", "tool", "none")


def _fail(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}")


def stream_flag(body: dict[str, Any]) -> bool:
    """``stream`` (default false); raises InvalidRequest unless it is a boolean."""
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise _fail("stream", "must be true or false")
    return stream


def to_common(body: dict[str, Any], *, require_max_tokens: bool = True) -> dict[str, Any]:
    """The common request body for a Messages ``body``; raises InvalidRequest naming the field.

    ``require_max_tokens`` is false for ``count_tokens``, whose body has no ``max_tokens``.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "is required and must be a non-empty list")
    common_messages: list[dict[str, Any]] = []
    if body.get("system") is not None:
        common_messages.append({"role": "system", "content": _text(body["system"], "system")})
    calls: set[str] = set()  # the tool_use ids so far: a tool_result must answer one of them
    for i, message in enumerate(messages):
        common_messages.extend(_message(message, f"messages[{i}]", calls))
    if not any(m["role"] != "system" for m in common_messages):
        raise _fail("messages", "has no text, tool_use or tool_result content")
    common: dict[str, Any] = {"messages": common_messages}
    max_tokens = _max_tokens(body, require_max_tokens)
    if max_tokens is not None:
        common["max_tokens"] = max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise _fail("temperature", "must be a number")
        if not 0 <= temperature <= 1:
            raise _fail("temperature", "must be between 0 and 1")
        common["temperature"] = temperature
    if body.get("top_p") is not None:
        common["top_p"] = body["top_p"]  # parse_request checks it (same name, same range)
    if body.get("stop_sequences") is not None:
        common["stop"] = _stop_sequences(body["stop_sequences"])
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    if tools and choice != "none":
        common["tools"] = tools
    effort = _effort(body.get("thinking"), max_tokens)
    if effort is not None:
        common["reasoning"] = {"effort": effort}
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], dict):
            raise _fail("metadata", "must be an object")
        common["metadata"] = body["metadata"]
    return common


def _max_tokens(body: dict[str, Any], required: bool) -> int | None:
    value = body.get("max_tokens")
    if value is None:
        if required:
            raise _fail("max_tokens", "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail("max_tokens", "must be a positive integer")
    return value


def _text(value: Any, path: str) -> str:
    """A string, or a list of text blocks joined (``system``, ``tool_result.content``)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _fail(path, "must be a string or a list of text blocks")
    texts = []
    for j, block in enumerate(value):
        texts.append(_text_block(block, f"{path}[{j}]"))
    return "".join(texts)


def _text_block(block: Any, path: str) -> str:
    if not isinstance(block, dict):
        raise _fail(path, "must be an object")
    if block.get("type") != "text":
        raise _fail(f"{path}.type", "only text blocks are supported here")
    text = block.get("text")
    if not isinstance(text, str):
        raise _fail(f"{path}.text", "must be a string")
    return text


def _message(item: Any, path: str, calls: set[str]) -> list[dict[str, Any]]:
    if not isinstance(item, dict):
        raise _fail(path, "must be an object")
    role = item.get("role")
    if role not in ("user", "assistant", "system"):
        raise _fail(f"{path}.role", "must be user, assistant or system")
    content = item.get("content")
    if role == "system":  # Claude Code 2.x sends these mid-conversation
        return [{"role": "system", "content": _text(content, f"{path}.content")}]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _fail(f"{path}.content", "must be a string or a list of content blocks")
    if role == "assistant":
        return _assistant(content, f"{path}.content", calls)
    return _user(content, f"{path}.content", calls)


def _block_type(block: Any, path: str) -> str:
    if not isinstance(block, dict):
        raise _fail(path, "must be an object")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _fail(f"{path}.type", "is required")
    return kind


def _user(blocks: list[Any], path: str, calls: set[str]) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages; runs of text become ``user`` messages."""
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    for j, block in enumerate(blocks):
        p = f"{path}[{j}]"
        kind = _block_type(block, p)
        if kind == "text":
            texts.append(_text_block(block, p))
        elif kind == "tool_result":
            if texts:
                out.append({"role": "user", "content": "".join(texts)})
                texts = []
            out.append(_tool_result(block, p, calls))
        else:
            raise _fail(f"{p}.type", f"{kind!r} blocks are not supported (text, tool_result)")
    if texts or not out:
        out.append({"role": "user", "content": "".join(texts)})
    return out


def _tool_result(block: dict[str, Any], path: str, calls: set[str]) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _fail(f"{path}.tool_use_id", "must be a non-empty string")
    if call_id not in calls:  # as the Messages API; else a provider's check names our fields
        raise _fail(f"{path}.tool_use_id", "matches no earlier tool_use block")
    content = block.get("content", "")
    text = "" if content is None else _text(content, f"{path}.content")
    if "is_error" in block and not isinstance(block["is_error"], bool):
        raise _fail(f"{path}.is_error", "must be true or false")
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant(blocks: list[Any], path: str, seen: set[str]) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        p = f"{path}[{j}]"
        kind = _block_type(block, p)
        if kind == "text":
            texts.append(_text_block(block, p))
        elif kind == "tool_use":
            call = _tool_use(block, p)
            seen.add(call["id"])
            calls.append(call)
        elif kind == "thinking":
            for key in ("thinking", "signature"):
                if not isinstance(block.get(key), str):
                    raise _fail(f"{p}.{key}", "must be a string")
        elif kind == "redacted_thinking":
            if not isinstance(block.get("data"), str):
                raise _fail(f"{p}.data", "must be a string")
        else:
            raise _fail(f"{p}.type", f"{kind!r} blocks are not supported in assistant turns")
    if not texts and not calls:
        return []  # only thinking: nothing the common request can carry
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool_use(block: dict[str, Any], path: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise _fail(f"{path}.id", "must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise _fail(f"{path}.name", "must be a non-empty string")
    if not isinstance(arguments, dict):
        raise _fail(f"{path}.input", "must be an object")
    return {"id": call_id, "name": name, "arguments": dumps_str(arguments)}


def _stop_sequences(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise _fail("stop_sequences", "must be a list of non-empty strings")
    return value


_TOOLS = ToolShape(
    types=frozenset({"custom", None}),
    type_default="custom",
    type_problem="only client tools (with input_schema) are supported",
    schema_key="input_schema",
)


def _tools(value: Any) -> list[dict[str, Any]]:
    return [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.schema}
        for t in validate_tools(value, _TOOLS)
    ]


def _tool_choice(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail("tool_choice", "must be an object")
    kind = value.get("type")
    if kind not in _TOOL_CHOICES:
        raise _fail("tool_choice.type", f"must be one of {', '.join(_TOOL_CHOICES)}")
    if kind == "tool" and (not isinstance(value.get("name"), str) or not value["name"]):
        raise _fail("tool_choice.name", "is required for type tool")
    parallel = value.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise _fail("tool_choice.disable_parallel_tool_use", "must be true or false")
    return str(kind)


def _effort(value: Any, max_tokens: int | None) -> str | None:
    """``thinking`` as a reasoning effort (see the module table)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail("thinking", "must be an object")
    kind = value.get("type")
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return "medium"
    if kind != "enabled":
        raise _fail("thinking.type", "must be one of enabled, disabled, adaptive")
    budget = value.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < _MIN_BUDGET:
        raise _fail("thinking.budget_tokens", f"must be an integer >= {_MIN_BUDGET}")
    if max_tokens is not None and budget >= max_tokens:
        raise _fail("thinking.budget_tokens", "must be less than max_tokens")
    for limit, effort in _EFFORT_STEPS:
        if budget < limit:
            return effort
    return "high"
