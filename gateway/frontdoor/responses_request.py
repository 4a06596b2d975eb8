"""A Responses API request body mapped to the common request body (contract section 3). Pure.

:func:`decode` validates the client's body itself, so every :class:`InvalidRequest` names the
client's own field (``input[2].call_id: ...``); the handler turns the part before ``": "`` into
the error's ``param`` (:func:`gateway.frontdoor.compat_request.param_of`).

=============================================  ============================================
Responses                                      common request
=============================================  ============================================
``instructions``                               a first ``system`` message
``input`` string                               one ``user`` message
``input[]`` message (``role`` user / system /  a message; text parts (``input_text``,
developer / assistant)                         ``output_text``) joined; other parts: 400
``input[]`` ``function_call``                  ``tool_calls[] {id: call_id, name, arguments}``
                                               on an assistant message (consecutive calls,
                                               and a call after assistant text, share one);
                                               ``arguments`` a JSON object (or empty: ``{}``)
``input[]`` ``function_call_output``           a ``tool`` message (``tool_call_id: call_id``);
                                               ``call_id`` names an earlier ``function_call``
``input[]`` ``reasoning``                      dropped (reasoning is never sent back upstream)
``tools[]`` ``{type: function, name, ...}``    ``tools[] {name, description, parameters}``
``tool_choice``                                validated; ``none`` drops the tools; ``auto``,
                                               ``required`` and a named function are echoed but
                                               not enforced (the common request has no choice)
``max_output_tokens``                          ``max_tokens``
``temperature``, ``top_p``                     same
``reasoning.effort``                           ``reasoning.effort`` (every SDK value: ``none``
                                               omits it, ``xhigh`` and ``max`` are ``high``)
``metadata``                                   ``metadata`` (never forwarded upstream)
``model``                                      names the route; not a model override
``previous_response_id``, ``conversation``,    400 naming the field: the gateway keeps no
``prompt``, ``store: true``,                   conversation state and runs nothing in the
``background: true``, built-in tools,          background; only function tools and plain
``text.format`` other than ``text``            text output
everything else                                ignored (``include``, ``user``, ``truncation``,
                                               ``prompt_cache_key``, ``parallel_tool_calls`` ...)
=============================================  ============================================
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.frontdoor.compat_request import reasoning_effort
from gateway.jsonutil import loads
from gateway.request import ToolShape, validate_tools
from gateway.values import value

MESSAGE_ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text")
_STATEFUL = ("previous_response_id", "conversation", "prompt")


@value
class ResponsesRequest:
    """A decoded Responses request: the common body, the mode, and what the answer echoes."""

    common: dict[str, Any]
    stream: bool = False
    echo: dict[str, Any] = field(default_factory=dict)
    """Request fields the ``response`` object repeats (``instructions``, ``tools`` ...)."""


def _fail(path: str, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}")


def decode(body: Any) -> ResponsesRequest:
    """Validate a decoded Responses body and map it; raises InvalidRequest naming the field."""
    if not isinstance(body, dict):
        raise _fail("body", "must be a JSON object")
    for key in _STATEFUL:
        if body.get(key) is not None:
            raise _fail(key, "is not supported: the gateway keeps no conversation state")
    if body.get("store") is True:
        raise _fail("store", "must be false or absent: the gateway stores no responses")
    if body.get("background") is True:
        raise _fail("background", "must be false or absent: background responses need storage")
    for key in ("stream", "store", "background", "parallel_tool_calls"):
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise _fail(key, "must be true or false")
    _check_object(body, "stream_options")
    _check_text(body.get("text"))

    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _fail("instructions", "must be a string")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    messages.extend(_input(body.get("input")))

    common: dict[str, Any] = {"messages": messages}
    echo: dict[str, Any] = {"instructions": instructions}
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    if tools and choice != "none":
        common["tools"] = tools
    echo["tools"] = [{"type": "function", **t, "strict": t.get("strict")} for t in tools]
    echo["tool_choice"] = choice
    for key, lo, hi in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail(key, "must be a number")
            if not lo <= value <= hi:
                raise _fail(key, f"must be between {lo:g} and {hi:g}")
            common[key] = value
        echo[key] = value
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _fail("max_output_tokens", "must be a positive integer")
        common["max_tokens"] = limit
    echo["max_output_tokens"] = limit
    echo["reasoning"] = _reasoning(body.get("reasoning"), common)
    metadata = _check_object(body, "metadata")
    if metadata is not None:
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise _fail(f"metadata.{key}", "must be a string")
        common["metadata"] = metadata
    echo["metadata"] = metadata or {}
    echo["parallel_tool_calls"] = body.get("parallel_tool_calls") is not False  # null: default
    for t in tools:
        t.pop("strict", None)
    return ResponsesRequest(common, body.get("stream") is True, echo)


def _check_object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise _fail(key, "must be an object")
    return value


def _check_text(text: Any) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise _fail("text", "must be an object")
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _fail("text.format", "must be an object")
    if fmt.get("type") != "text":
        raise _fail("text.format.type", "only 'text' is supported (no structured output)")


def _input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _fail("input", "is required: a string or a non-empty list of items")
    out: list[dict[str, Any]] = []
    calls: set[str] = set()  # the call_ids so far: an output must answer one of them
    for i, item in enumerate(value):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise _fail(path, "must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, path))
        elif kind == "function_call":
            call = _function_call(item, path)
            calls.add(call["id"])
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", path)
            output = _text(item.get("output"), f"{path}.output")
            if call_id not in calls:  # as the API; else a provider's check names our fields
                raise _fail(f"{path}.call_id", "matches no earlier function_call item")
            out.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # the provider's own reasoning from an earlier turn: never sent back
        else:
            raise _fail(
                f"{path}.type", f"{kind!r} is not supported (needs state or a built-in tool)"
            )
    if not any(m["role"] != "system" for m in out):
        raise _fail("input", "must contain at least one message besides instructions")
    return out


def _string(item: dict[str, Any], key: str, path: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise _fail(f"{path}.{key}", "must be a non-empty string")
    return value


def _message(item: dict[str, Any], path: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise _fail(f"{path}.role", f"must be one of {', '.join(MESSAGE_ROLES)}")
    return {"role": role, "content": _text(item.get("content"), f"{path}.content")}


def _text(content: Any, path: str) -> str:
    """A string, or a list of text parts joined; anything else names its part."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _fail(path, "must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _fail(f"{path}[{j}]", "must be an object")
        kind = part.get("type")
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
            continue
        if kind not in TEXT_PARTS:
            raise _fail(f"{path}[{j}].type", f"only text parts are supported, not {kind!r}")
        if not isinstance(part.get("text"), str):
            raise _fail(f"{path}[{j}].text", "must be a string")
        texts.append(part["text"])
    return "".join(texts)


def _function_call(item: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = _string(item, "call_id", path)
    name = _string(item, "name", path)
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise _fail(f"{path}.arguments", "must be a JSON string")
    if not arguments.strip():
        return {"id": call_id, "name": name, "arguments": "{}"}
    try:
        parsed = loads(arguments)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):  # most providers take tool input only as an object
        raise _fail(f"{path}.arguments", "must be a JSON object (as a string)")
    return {"id": call_id, "name": name, "arguments": arguments}


_TOOLS = ToolShape(
    types=frozenset({"function"}),
    type_default=None,
    type_problem="only function tools are supported, not {kind!r}",
    schema_key="parameters",
    schema_optional=True,
    null_is_absent=True,
)


def _strict(tool: dict[str, Any], path: str) -> None:
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _fail(f"{path}.strict", "must be true or false")


def _tools(value: Any) -> list[dict[str, Any]]:
    tools = []
    for tool in validate_tools(value, _TOOLS, _strict):
        spec: dict[str, Any] = {
            "name": tool.name,
            "parameters": tool.schema,
            "strict": tool.spec.get("strict"),
        }
        if tool.description is not None:
            spec["description"] = tool.description
        tools.append(spec)
    return tools


def _tool_choice(value: Any) -> Any:
    if value is None:
        return "auto"
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        if not isinstance(value.get("name"), str) or not value["name"]:
            raise _fail("tool_choice.name", "must be a non-empty string")
        return {"type": "function", "name": value["name"]}
    raise _fail("tool_choice", "must be 'auto', 'none', 'required' or a function")


def _reasoning(value: Any, common: dict[str, Any]) -> dict[str, Any]:
    if value is None:
        return {"effort": None, "summary": None}
    if not isinstance(value, dict):
        raise _fail("reasoning", "must be an object")
    effort = value.get("effort")
    mapped = None if effort is None else reasoning_effort(effort, "reasoning.effort")
    if mapped is not None:
        common["reasoning"] = {"effort": mapped}
    summary = value.get("summary")
    if summary is not None and summary not in ("auto", "concise", "detailed"):
        raise _fail("reasoning.summary", "must be one of auto, concise, detailed")
    return {"effort": effort, "summary": summary}
