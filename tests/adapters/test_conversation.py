"""``gateway/adapters/_conversation.py``: the conversation rules the gateway checks before a
provider would refuse the request (a 400 naming the client's field instead of the provider's 400
as a 502), across the adapters; also ``_kit.tool_parameters``, the object schema they rely on."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.adapters._conversation import (
    check_tool_turns,
    provider_call_id,
)
from gateway.adapters._kit import (
    tool_parameters,
)
from gateway.adapters.anthropic import AnthropicAdapter
from gateway.adapters.base import Adapter
from gateway.adapters.bedrock import BedrockAdapter
from gateway.adapters.cohere import CohereAdapter
from gateway.adapters.gemini import GeminiAdapter
from gateway.adapters.ollama import OllamaAdapter
from gateway.adapters.openai_chat import OpenAIChatAdapter
from gateway.adapters.openai_responses import OpenAIResponsesAdapter
from gateway.errors import InvalidRequest
from gateway.request import Tool, parse_request
from tests.adapters.harness import make_adapter

USER = {"role": "user", "content": "Weather?"}
CALLS = {
    "role": "assistant",
    "tool_calls": [
        {"id": "c1", "name": "weather", "arguments": "{}"},
        {"id": "c2", "name": "weather", "arguments": "{}"},
    ],
}
SYSTEM = {"role": "system", "content": "Be brief."}


def _result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "21C"}


def _turns(*messages: dict[str, Any], system_apart: bool = False) -> None:
    check_tool_turns(
        parse_request({"messages": list(messages)}).messages, system_apart=system_apart
    )


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([USER, CALLS, _result("c1"), _result("c2"), USER], id="answered"),
        pytest.param([USER, CALLS, _result("c2"), _result("c1")], id="any-order"),
        pytest.param([USER, CALLS], id="open-at-the-end"),
        pytest.param([USER, CALLS, _result("c1")], id="partly-answered-at-the-end"),
        pytest.param([USER], id="no-tools"),
    ],
)
def test_paired_tool_turns_pass(messages: list[dict[str, Any]]) -> None:
    _turns(*messages)


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        pytest.param([USER, _result("c1")], "messages[1].tool_call_id", id="no-call"),
        pytest.param(
            [USER, CALLS, _result("c1"), _result("zz")], "messages[3].tool_call_id", id="unknown"
        ),
        pytest.param(
            [USER, CALLS, _result("c1"), _result("c1")], "messages[3].tool_call_id", id="twice"
        ),
        pytest.param(
            [USER, CALLS, _result("c1"), _result("c2"), USER, _result("c1")],
            "messages[5].tool_call_id",
            id="after-the-turn",
        ),
        pytest.param(
            [USER, CALLS, _result("c1"), USER], "messages[1].tool_calls[1].id", id="unanswered"
        ),
        pytest.param(
            [USER, CALLS, SYSTEM, _result("c1"), _result("c2")],
            "messages[1].tool_calls[0].id",
            id="system-in-between",
        ),
    ],
)
def test_unpaired_tool_turns_name_the_field(messages: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(field) + ":"):
        _turns(*messages)


def test_system_text_kept_apart_does_not_break_a_pair() -> None:
    _turns(USER, CALLS, SYSTEM, _result("c1"), _result("c2"), system_apart=True)


def test_provider_call_id_keeps_fitting_ids_and_rewrites_others_alike() -> None:
    bad = re.compile(r"[^a-zA-Z0-9_-]")
    assert provider_call_id("toolu_01A-b", bad, 64) == "toolu_01A-b"
    dotted = provider_call_id("functions.get_weather:0", bad, 64)
    coloned = provider_call_id("functions:get_weather.0", bad, 64)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", dotted)
    assert dotted != coloned  # the same after replacing characters: the hash keeps them apart
    assert provider_call_id("functions.get_weather:0", bad, 64) == dotted  # call and result
    long = provider_call_id("x" * 100, bad, 64)
    assert len(long) == 64 and long.startswith("x" * 40)
    assert long != provider_call_id("x" * 101, bad, 64)


def test_tool_parameters_are_an_object_schema() -> None:
    assert tool_parameters(Tool("f", None, {}), 0) == {"type": "object"}
    schema = {"properties": {"x": {"type": "string"}}}
    assert tool_parameters(Tool("f", None, schema), 0) == {"type": "object", **schema}
    kept = {"type": "object", "properties": {}}
    assert tool_parameters(Tool("f", None, kept), 0) is kept
    with pytest.raises(InvalidRequest, match=re.escape("tools[3].parameters.type: must be")):
        tool_parameters(Tool("f", None, {"type": "string"}), 3)


ADAPTERS: list[tuple[type[Adapter], dict[str, Any]]] = [
    (OpenAIResponsesAdapter, {}),
    (OpenAIChatAdapter, {}),
    (AnthropicAdapter, {}),
    (GeminiAdapter, {}),
    (CohereAdapter, {}),
    (BedrockAdapter, {"region": "us-east-1"}),
]
"""Every adapter whose provider refuses a tool result without its call (Ollama does not)."""


def _adapter(cls: type[Adapter], options: dict[str, Any]) -> Adapter:
    return make_adapter(cls, options, model="m", api_key="k")


@pytest.mark.parametrize(("cls", "options"), ADAPTERS, ids=lambda c: getattr(c, "name", ""))
def test_a_tool_result_without_its_call_is_a_400(
    cls: type[Adapter], options: dict[str, Any]
) -> None:
    request = parse_request({"messages": [USER, _result("call_1")]})
    with pytest.raises(InvalidRequest, match=re.escape("messages[1].tool_call_id:")):
        _adapter(cls, options).build_request(request)


@pytest.mark.parametrize(("cls", "options"), ADAPTERS, ids=lambda c: getattr(c, "name", ""))
def test_a_call_left_unanswered_is_a_400(cls: type[Adapter], options: dict[str, Any]) -> None:
    request = parse_request({"messages": [USER, CALLS, _result("c2"), USER]})
    with pytest.raises(InvalidRequest, match=re.escape("messages[1].tool_calls[0].id:")):
        _adapter(cls, options).build_request(request)


@pytest.mark.parametrize(
    ("cls", "options"),
    [*ADAPTERS, (OllamaAdapter, {})],
    ids=lambda c: getattr(c, "name", ""),
)
def test_tool_parameters_that_are_not_an_object_are_a_400(
    cls: type[Adapter], options: dict[str, Any]
) -> None:
    request = parse_request(
        {
            "messages": [USER],
            "tools": [
                {"type": "function", "name": "ok"},
                {"type": "function", "name": "f", "parameters": {"type": "string"}},
            ],
        }
    )
    with pytest.raises(InvalidRequest, match=re.escape("tools[1].parameters.type:")):
        _adapter(cls, options).build_request(request)
