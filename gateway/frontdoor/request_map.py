"""A Chat Completions request body mapped to the common request body (contract section 3). Pure.

The mapping is 1:1 per message, so the field paths in :func:`gateway.request.parse_request`'s
errors (``messages[2].tool_calls[0].id``) point at the client's own body; the fields it renames
(``max_completion_tokens``, ``reasoning_effort``) are checked here, under the client's name.

==========================================  ===============================================
Chat Completions                            common request
==========================================  ===============================================
``messages[].content`` string or text parts  ``content`` string (text parts joined)
``messages[].tool_calls[].function.*``       ``tool_calls[] {id, name, arguments}``
``tools`` (``{"type","function":{...}}``)    passed through (parse_request accepts it)
``tool_choice``                              ``none`` drops the tools (still validated); other
                                             values are ignored (the common request has no
                                             tool choice)
``max_completion_tokens`` / ``max_tokens``   ``max_tokens`` (the first when both are given)
``temperature``, ``top_p``, ``stop``         same
``reasoning_effort``                         ``reasoning.effort``: every SDK value (``none``
                                             omits it, ``xhigh`` and ``max`` are ``high``)
``metadata``                                 ``metadata`` (never forwarded upstream)
``model``                                    names the route; not a model override
``n`` > 1                                    400: one choice per request
everything else                              ignored (``seed``, ``user`` ...)
==========================================  ===============================================
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.frontdoor.compat_request import reasoning_effort
from gateway.request import COMMON_TOOLS, validate_tools


def to_common(body: dict[str, Any]) -> dict[str, Any]:
    """The common request body for a Chat Completions ``body``; raises InvalidRequest."""
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("n: only one choice per request is supported")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: is required and must be a non-empty list")
    common: dict[str, Any] = {
        "messages": [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    }
    for key in ("temperature", "top_p", "stop", "metadata"):
        if body.get(key) is not None:
            common[key] = body[key]
    tools = body.get("tools")
    if tools is not None:
        if body.get("tool_choice") == "none":
            validate_tools(tools, COMMON_TOOLS)  # the same 400s as when they are sent
        else:
            common["tools"] = tools
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    limit = body.get(key)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidRequest(f"{key}: must be a positive integer")
        common["max_tokens"] = limit
    if body.get("reasoning_effort") is not None:
        effort = reasoning_effort(body["reasoning_effort"], "reasoning_effort")
        if effort is not None:
            common["reasoning"] = {"effort": effort}
    return common


def _message(item: Any, path: str) -> Any:
    if not isinstance(item, dict):
        return item  # parse_request names the problem
    out: dict[str, Any] = {"role": item.get("role")}
    if "content" in item:  # absent stays absent, so parse_request says "is required"
        out["content"] = _content(item["content"], path)
    if item.get("tool_calls") is not None:
        out["tool_calls"] = _tool_calls(item["tool_calls"], f"{path}.tool_calls")
    if "tool_call_id" in item:
        out["tool_call_id"] = item["tool_call_id"]
    return out


def _content(content: Any, path: str) -> Any:
    """A string, None, or a list of content parts of which only text is supported."""
    if not isinstance(content, list):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "input_text") or not isinstance(part.get("text"), str):
            raise InvalidRequest(f"{path}.content[{j}]: only text parts are supported")
        texts.append(part["text"])
    return "".join(texts)


def _tool_calls(value: Any, path: str) -> Any:
    if not isinstance(value, list):
        return value
    calls = []
    for i, call in enumerate(value):
        if not isinstance(call, dict):
            calls.append(call)
            continue
        fn = call.get("function")
        if not isinstance(fn, dict):
            raise InvalidRequest(f"{path}[{i}].function: must be an object")
        calls.append(
            {"id": call.get("id"), "name": fn.get("name"), "arguments": fn.get("arguments")}
        )
    return calls
