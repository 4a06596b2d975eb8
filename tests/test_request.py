"""The common request (contract section 3): every field validated, each error names its field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.frontdoor.messages_request import to_common
from gateway.frontdoor.responses_request import decode
from gateway.request import ChatMessage, Tool, ToolCall, parse_request

USER = {"role": "user", "content": "hi"}


def test_a_full_request_parses() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric units."},
            USER,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "name": "f", "arguments": {"a": 1}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "model": "m",
        "max_tokens": 5,
        "temperature": 0.5,
        "top_p": 1,
        "stop": "END",
        "tools": [
            {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}},
            {"type": "function", "function": {"name": "g", "parameters": {}}},
        ],
        "reasoning": {"effort": "high"},
        "metadata": {"user": "u1"},
    }
    req = parse_request(body)
    assert req.messages[3] == ChatMessage("assistant", "", (ToolCall("c1", "f", '{"a":1}'),))
    assert req.messages[4].tool_call_id == "c1"
    assert (
        req.stop == ("END",) and req.max_tokens == 5 and req.temperature == 0.5 and req.top_p == 1.0
    )
    assert req.tools == (Tool("f", "d", {"type": "object"}), Tool("g", None, {}))
    assert req.reasoning_effort == "high" and req.metadata == {"user": "u1"} and req.model == "m"
    assert req.system_text == "Be brief.\n\nUse metric units."
    assert req.raw is body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [5]}, "messages[0]"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [USER, {"role": "user", "content": ["x"]}]}, "messages[1].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "user", "content": "x", "tool_call_id": "c"}]},
            "messages[0].tool_call_id",
        ),
        (
            {"messages": [{"role": "user", "content": "x", "tool_calls": []}]},
            "messages[0].tool_calls",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"name": "f"}]}]},
            "messages[0].tool_calls[0].id",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "name": "f", "arguments": 3}]}
                ]
            },
            "arguments",
        ),
        ({"messages": [USER], "model": ""}, "model"),
        ({"messages": [USER], "max_tokens": 0}, "max_tokens"),
        ({"messages": [USER], "max_tokens": True}, "max_tokens"),
        ({"messages": [USER], "max_tokens": 1.5}, "max_tokens"),
        ({"messages": [USER], "temperature": 3}, "temperature"),
        ({"messages": [USER], "temperature": "hot"}, "temperature"),
        ({"messages": [USER], "top_p": -0.1}, "top_p"),
        ({"messages": [USER], "stop": [1]}, "stop"),
        ({"messages": [USER], "tools": {}}, "tools"),
        ({"messages": [USER], "tools": [{"type": "code"}]}, "tools[0].type"),
        ({"messages": [USER], "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"messages": [USER], "tools": [{"name": "f", "parameters": []}]}, "tools[0].parameters"),
        ({"messages": [USER], "reasoning": "high"}, "reasoning"),
        ({"messages": [USER], "reasoning": {"effort": "max"}}, "reasoning.effort"),
        ({"messages": [USER], "metadata": []}, "metadata"),
    ],
)
def test_each_error_names_its_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(body)
    assert info.value.message.startswith(field) or f"{field}:" in info.value.message
    assert info.value.http_status == 400 and info.value.error_code == "invalid_request"


CALL = {"id": "c1", "name": "f", "arguments": "{}"}


@pytest.mark.parametrize("content", ["absent", None])
def test_assistant_with_tool_calls_may_omit_content(content: Any) -> None:
    message: dict[str, Any] = {"role": "assistant", "tool_calls": [CALL]}
    if content != "absent":
        message["content"] = content
    parsed = parse_request({"messages": [USER, message]}).messages[1]
    assert parsed.content == "" and parsed.tool_calls == (ToolCall("c1", "f", "{}"),)


# Contract section 3: every message has a string ``content``, except an assistant message that
# carries tool calls. Each shape below was accepted (or half-accepted) before.
MISSING = object()


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"role": "user"}, "is required"),
        ({"role": "system"}, "is required"),
        ({"role": "developer"}, "is required"),
        ({"role": "assistant"}, "is required"),
        ({"role": "assistant", "tool_calls": []}, "is required"),
        ({"role": "assistant", "tool_calls": None}, "is required"),
        ({"role": "tool", "tool_call_id": "c1"}, "is required"),
        ({"role": "user", "content": None}, "not null"),
        ({"role": "assistant", "content": None}, "not null"),
        ({"role": "tool", "tool_call_id": "c1", "content": None}, "not null"),
        ({"role": "user", "content": 5}, "not a number"),
        ({"role": "user", "content": 1.5}, "not a number"),
        ({"role": "user", "content": True}, "not a boolean"),
        ({"role": "user", "content": {"text": "hi"}}, "not an object"),
        ({"role": "user", "content": [{"type": "text", "text": "hi"}]}, "not a list"),
        ({"role": "assistant", "content": ["x"], "tool_calls": [CALL]}, "not a list"),
    ],
)
def test_content_must_be_a_string(message: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request({"messages": [USER, message]})
    assert info.value.message.startswith("messages[1].content: "), info.value.message
    assert problem in info.value.message
    assert info.value.http_status == 400 and info.value.error_code == "invalid_request"


@pytest.mark.parametrize("tool_call_id", [MISSING, None, "", 7, ["c1"]])
def test_tool_message_needs_a_tool_call_id(tool_call_id: Any) -> None:
    message: dict[str, Any] = {"role": "tool", "content": "42"}
    if tool_call_id is not MISSING:
        message["tool_call_id"] = tool_call_id
    with pytest.raises(InvalidRequest) as info:
        parse_request({"messages": [USER, message]})
    assert info.value.message.startswith("messages[1].tool_call_id: "), info.value.message


def test_empty_string_content_is_text() -> None:
    assert parse_request({"messages": [{"role": "user", "content": ""}]}).messages[0].content == ""


# -- the tool validator shared by the common request and the front doors ---------------------

_MSG = [{"role": "user", "content": "hi"}]


def _common_tools(tools: Any) -> None:
    parse_request({"messages": _MSG, "tools": tools})


def _messages_tools(tools: Any) -> None:
    to_common({"model": "r", "max_tokens": 10, "messages": _MSG, "tools": tools})


def _responses_tools(tools: Any) -> None:
    decode({"model": "r", "input": "hi", "tools": tools})


_TOOL_ERRORS = [
    (_common_tools, "x", "tools: must be a list"),
    (_common_tools, [1], "tools[0]: must be an object"),
    (_common_tools, [{"type": "web"}], "tools[0].type: must be 'function'"),
    (_common_tools, [{"type": "function", "function": 1}], "tools[0].function: must be an object"),
    (_common_tools, [{"function": {"name": ""}}], "tools[0].name: must be a non-empty string"),
    (_common_tools, [{"name": "f", "description": 1}], "tools[0].description: must be a string"),
    (_common_tools, [{"name": "f", "parameters": None}], "tools[0].parameters: must be an object"),
    (_messages_tools, "x", "tools: must be a list"),
    (_messages_tools, [{"type": "bash_20250124", "name": "b"}], "tools[0].type: only client"),
    (_messages_tools, [{"input_schema": {}}], "tools[0].name: must be a non-empty string"),
    (_messages_tools, [{"name": "f"}], "tools[0].input_schema: must be an object"),
    (_responses_tools, [{"name": "f"}], "tools[0].type: only function tools are supported, not"),
    (_responses_tools, [{"type": "function"}], "tools[0].name: must be a non-empty string"),
    (_responses_tools, [{"type": "function", "name": "f", "strict": 1}], "tools[0].strict:"),
    (
        _responses_tools,
        [{"type": "function", "name": "f", "strict": 1}, {"type": "function"}],
        "tools[0].strict: must be true or false",  # each tool whole, in order
    ),
]


@pytest.mark.parametrize(("call", "tools", "message"), _TOOL_ERRORS)
def test_tool_errors_name_each_apis_field(
    call: Callable[[Any], None], tools: Any, message: str
) -> None:
    with pytest.raises(InvalidRequest) as failed:
        call(tools)
    assert failed.value.message.startswith(message)


def test_tools_without_a_schema_get_an_empty_one_each() -> None:
    first = parse_request({"messages": _MSG, "tools": [{"name": "f"}, {"name": "g"}]}).tools
    assert first[0].parameters == {"type": "object", "properties": {}}
    assert first[0].parameters is not first[1].parameters
    decoded = decode({"model": "r", "input": "hi", "tools": [{"type": "function", "name": "f"}]})
    (tool,) = decoded.common["tools"]
    assert tool["parameters"] == {"type": "object", "properties": {}}


@pytest.mark.parametrize("kind", [[], ["function"], {}, {"function": 1}])
@pytest.mark.parametrize("call", [_common_tools, _messages_tools, _responses_tools])
def test_a_tool_type_that_is_a_list_or_an_object_is_a_400(
    call: Callable[[Any], None], kind: Any
) -> None:
    # Unhashable: a set lookup raised TypeError (a 500 with a traceback) before the fix.
    with pytest.raises(InvalidRequest) as info:
        call([{"type": kind, "name": "f", "parameters": {}}])
    assert info.value.message.startswith("tools[0].type: ")


def test_tool_call_arguments_nested_too_deeply_are_a_400_naming_them() -> None:
    deep: Any = []
    for _ in range(300):  # orjson decodes 1024 levels but encodes only 255
        deep = [deep]
    call = {"id": "c1", "name": "f", "arguments": {"a": deep}}
    body = {"messages": [{"role": "assistant", "tool_calls": [call]}]}
    with pytest.raises(InvalidRequest) as info:
        parse_request(body)
    assert info.value.message.startswith("messages[0].tool_calls[0].arguments: ")
