"""Anthropic adapter: request building, options, and the stream contract on every fixture."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from anthropic.types.message_create_params import MessageCreateParamsStreaming
from pydantic import TypeAdapter

from gateway.adapters.anthropic import AnthropicAdapter
from gateway.config.model import UpstreamConfig
from gateway.errors import InvalidRequest
from gateway.events import Event
from gateway.framing import Message
from gateway.jsonutil import loads
from gateway.request import parse_request
from tests.adapters.harness import (
    check_same_at_every_split,
    make_adapter,
    replay,
    replay_checked,
)
from tests.adapters.native_contract import CONVERSATION, check_fixture
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import running_gateway

STREAMING_PARAMS = TypeAdapter(MessageCreateParamsStreaming)


@pytest.mark.parametrize(
    ("fixture", "terminal", "error"),
    [
        ("anthropic_basic.sse", ("end", "stop"), {}),
        ("anthropic_thinking_tool_use.sse", ("end", "tool_calls"), {}),
        ("anthropic_max_tokens.sse", ("end", "length"), {}),
        ("anthropic_cache_usage.sse", ("end", "stop"), {}),
        (
            "anthropic_error_midstream.sse",
            ("error", "upstream_error"),
            {"retryable": True, "type": "overloaded_error", "message": "Overloaded"},
        ),
        ("anthropic_truncated.sse", ("error", "upstream_truncated"), {}),
    ],
)
def test_contract(fixture: str, terminal: tuple[str, str], error: dict[str, object]) -> None:
    check_fixture(AnthropicAdapter, fixture, terminal, **error)


def test_build_request_maps_every_field() -> None:
    adapter = make_adapter(
        AnthropicAdapter, api_key="sk-ant", model="route-model", headers={"x-extra": "1"}
    )
    req = adapter.build_request(parse_request(CONVERSATION))
    assert req.method == "POST"
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers == {
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "accept": "text/event-stream",
        "x-api-key": "sk-ant",
        "x-extra": "1",
    }
    assert loads(req.body) == {
        "model": "claude-x",
        "max_tokens": 8000,
        "system": "Be brief.\n\nUse tools.",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
                ],
            },
            {"role": "user", "content": "Thanks"},
        ],
        # thinking on: temperature is not sent (Anthropic rejects it with thinking)
        "thinking": {"type": "enabled", "budget_tokens": 4096},
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "weather",
                "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "stream": True,
    }


def test_build_request_defaults_and_options() -> None:
    adapter = make_adapter(
        AnthropicAdapter,
        {"anthropic_version": "2024-01-01", "max_tokens": 300},
        model="claude-route",
        base_url="http://proxy.local/",
    )
    req = adapter.build_request(
        parse_request({"messages": [{"role": "user", "content": "hi"}], "temperature": 1.5})
    )
    assert req.url == "http://proxy.local/v1/messages"
    assert req.headers["anthropic-version"] == "2024-01-01"
    assert "x-api-key" not in req.headers
    assert loads(req.body) == {
        "model": "claude-route",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1.0,  # Anthropic's range is 0..1
        "stream": True,
    }


def test_thinking_budget_capped_below_max_tokens_or_dropped() -> None:
    adapter = make_adapter(AnthropicAdapter, model="m")
    body = loads(
        adapter.build_request(
            parse_request(
                {
                    "messages": [{"role": "user", "content": "x"}],
                    "reasoning": {"effort": "high"},
                    "max_tokens": 2000,
                }
            )
        ).body
    )
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1999}
    small = parse_request(
        {
            "messages": [{"role": "user", "content": "x"}],
            "reasoning": {"effort": "high"},
            "max_tokens": 500,
        }
    )
    assert "thinking" not in loads(adapter.build_request(small).body)
    minimal = parse_request(
        {"messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "minimal"}}
    )
    assert "thinking" not in loads(adapter.build_request(minimal).body)


USER = {"role": "user", "content": "Weather in Paris?"}
CALL = {"id": "toolu_1", "name": "weather", "arguments": '{"city": "Paris"}'}
ASKED = {"role": "assistant", "content": None, "tool_calls": [CALL]}
RESULT = {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"}


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([USER, ASKED, RESULT], id="tool-loop"),
        pytest.param(
            [
                USER,
                {**ASKED, "content": "Checking.", "tool_calls": [CALL, CALL | {"id": "t2"}]},
                RESULT,
                RESULT | {"tool_call_id": "t2"},
            ],
            id="tool-loop-text-and-two-results",
        ),
        pytest.param(
            [USER, ASKED, RESULT, {"role": "system", "content": "Be brief."}],
            id="tool-loop-then-system",
        ),
        pytest.param([USER, {"role": "assistant", "content": "Sunny, "}], id="prefill"),
        pytest.param([USER, ASKED], id="unanswered-tool-use"),
    ],
)
def test_no_thinking_inside_an_assistant_turn(messages: list[dict[str, Any]]) -> None:
    # The turn being continued would need its own thinking block (with a signature) first,
    # which a common request cannot carry: Anthropic answers 400 unless thinking is off.
    # With thinking off, the sampling parameters go as they do without an effort.
    request = {
        "messages": messages,
        "reasoning": {"effort": "medium"},
        "temperature": 0.3,
        "top_p": 0.9,
    }
    body = loads(
        make_adapter(AnthropicAdapter, model="m").build_request(parse_request(request)).body
    )
    assert "thinking" not in body
    assert (body["temperature"], body["top_p"]) == (0.3, 0.9)


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([USER], id="first-turn"),
        pytest.param(
            [USER, ASKED, RESULT, {"role": "user", "content": "And Rome?"}], id="new-turn"
        ),
        pytest.param(
            [USER, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "Ok"}],
            id="after-a-text-answer",
        ),
    ],
)
def test_thinking_when_the_conversation_ends_on_a_user_turn(
    messages: list[dict[str, Any]],
) -> None:
    request = {
        "messages": messages,
        "reasoning": {"effort": "medium"},
        "max_tokens": 8000,
        "temperature": 0.3,
    }
    body = loads(
        make_adapter(AnthropicAdapter, model="m").build_request(parse_request(request)).body
    )
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "temperature" not in body


def test_native_request_keeps_thinking_in_a_tool_loop() -> None:
    # The Messages front door passes the client's own thinking blocks (with signatures) back:
    # there the continued turn has its thinking block, and the client's thinking stays on.
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Look it up.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
    ]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    native = {"messages": messages, "thinking": thinking, "max_tokens": 2048}
    body = loads(make_adapter(AnthropicAdapter, model="m").build_native_request(native).body)
    assert body["thinking"] == thinking and body["messages"] == messages


def test_bad_tool_arguments_name_the_field() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "a", "name": "f", "arguments": "[1]"}]},
        ]
    }
    with pytest.raises(InvalidRequest, match=r"messages\[1\]\.tool_calls\[0\]\.arguments"):
        make_adapter(AnthropicAdapter, model="m").build_request(parse_request(body))


def test_native_request_forces_stream_applies_route_model_and_keeps_fields() -> None:
    adapter = make_adapter(AnthropicAdapter, model="pinned", api_key="k")
    req = adapter.build_native_request(
        {
            "model": "other",
            "messages": [],
            "stream": False,
            "top_k": 5,
            "metadata": {"user_id": "u"},
        }
    )
    assert loads(req.body) == {
        "model": "pinned",
        "messages": [],
        "stream": True,
        "top_k": 5,
        "metadata": {"user_id": "u"},
        "max_tokens": 4096,
    }
    unpinned = make_adapter(AnthropicAdapter)
    assert (
        loads(unpinned.build_native_request({"model": "mine", "max_tokens": 9}).body)["model"]
        == "mine"
    )


def test_parse_options_rejects_unknown_and_bad_values() -> None:
    opts, errors = AnthropicAdapter.parse_options(
        {"max_tokens": 0, "nope": 1, "thinking_budgets": {"huge": 5}}, "routes.a.options"
    )
    assert sorted(errors) == [
        "routes.a.options.max_tokens: must be a positive integer",
        "routes.a.options.nope: unknown option for provider 'anthropic'",
        "routes.a.options.thinking_budgets: unknown effort 'huge'"
        " (expected one of minimal, low, medium, high)",
    ]
    opts, errors = AnthropicAdapter.parse_options({"thinking_budgets": {"low": 2048}}, "o")
    assert not errors
    assert opts["thinking_budgets"] == {"minimal": 0, "low": 2048, "medium": 4096, "high": 16384}
    assert opts["max_tokens"] == 4096 and opts["anthropic_version"] == "2023-06-01"


def _feed(*messages: Message) -> list[Event]:
    translator = make_adapter(AnthropicAdapter).new_translator()
    out: list[Event] = []
    for m in messages:
        out.extend(translator.feed(m))
    return out


def test_unknown_events_and_data_without_event_name() -> None:
    events = _feed(
        Message("some_future_event", '{"type": "some_future_event"}'),
        Message(
            "message",
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}',
        ),
    )
    assert [(e.type, e.data) for e in events] == [("delta", {"text": "hi"})]


def test_refusal_and_pause_turn_reasons() -> None:
    for native, reason in (("refusal", "content_filter"), ("pause_turn", "other")):
        events = _feed(
            Message(
                "message_delta",
                json.dumps({"type": "message_delta", "delta": {"stop_reason": native}}),
            ),
            Message("message_stop", '{"type":"message_stop"}'),
        )
        assert events[-1].data == {"reason": reason, "provider_reason": native}


def test_malformed_json_is_a_protocol_error() -> None:
    adapter = make_adapter(AnthropicAdapter)
    events = replay(adapter, [b"event: message_start\ndata: {not json\n\n"])
    assert events[-1].type == "error" and events[-1].data["code"] == "upstream_protocol"


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def test_cached_input_counts_in_input_tokens() -> None:
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 90,
        "cache_creation_input_tokens": 5,
        "output_tokens": 1,
    }
    start = _sse(
        {"type": "message_start", "message": {"usage": usage}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    )
    events = replay(make_adapter(AnthropicAdapter), [start])
    usage = next(e for e in events if e.type == "usage")
    assert usage.data == {
        "input_tokens": 105,
        "output_tokens": 7,
        "cached_input_tokens": 90,
        "cache_read_input_tokens": 90,
        "cache_write_input_tokens": 5,
    }


def test_usage_is_merged_over_message_start_and_message_delta() -> None:
    # message_delta repeats input_tokens without the cache counts (newer responses repeat some
    # fields): the cache counts of message_start must survive, and each count takes its latest
    # value. The old translator recomputed input from the last event alone (10, cached 0).
    start_usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 90,
        "cache_creation_input_tokens": 5,
        "output_tokens": 1,
    }
    stream = _sse(
        {"type": "message_start", "message": {"usage": start_usage}},
        {"type": "message_delta", "delta": {}, "usage": {"input_tokens": 10, "output_tokens": 3}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 7, "cache_read_input_tokens": None},
        },
        {"type": "message_stop"},
    )
    events = replay(make_adapter(AnthropicAdapter), [stream])
    assert [e.data for e in events if e.type == "usage"] == [
        {
            "input_tokens": 105,
            "output_tokens": 7,
            "cached_input_tokens": 90,
            "cache_read_input_tokens": 90,
            "cache_write_input_tokens": 5,
        }
    ]


def test_upstream_config_base_url_default() -> None:
    adapter = AnthropicAdapter(UpstreamConfig(), AnthropicAdapter.parse_options({}, "o")[0])
    assert adapter.base_url == "https://api.anthropic.com"


def _argless_stream(*, named: bool) -> bytes:
    """A tool without parameters: its ``input: {}`` only as the start's placeholder, then one
    empty ``input_json_delta``; between a text block and a call with arguments."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "On it."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_2", "name": "add", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    if named:
        return _sse(*events)
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)


@pytest.mark.parametrize("named", [True, False], ids=["event-lines", "data-only"])
def test_tool_call_without_arguments_is_an_empty_object(named: bool) -> None:
    # The arguments of a call must join into a JSON string (contract section 5); they joined "".
    adapter = make_adapter(AnthropicAdapter)
    data = _argless_stream(named=named)
    events = replay_checked(adapter, [data])
    assert [e.data for e in events if e.type == "tool_call"] == [
        {"index": 0, "id": "toolu_1", "name": "now", "arguments": ""},
        {"index": 0, "arguments": "{}"},  # at the call's content_block_stop
        {"index": 1, "id": "toolu_2", "name": "add", "arguments": ""},
        {"index": 1, "arguments": '{"a": 1}'},
    ]
    check_same_at_every_split(adapter, data, events, every_cut=True)


def _body(request: dict[str, Any]) -> dict[str, Any]:
    built = make_adapter(AnthropicAdapter, model="m").build_request(parse_request(request))
    body: dict[str, Any] = loads(built.body)
    return body


def test_awkward_conversations_become_requests_anthropic_accepts() -> None:
    # Blank text is refused by Anthropic (a 400, which the client would see as a 502): a blank
    # system or assistant text says nothing and is left out, a blank tool result goes without
    # content; a final assistant text loses its trailing whitespace; ids from other providers
    # are rewritten into Anthropic's alphabet, alike for the call and its result.
    odd = "functions.get weather:0"
    body = _body(
        {
            "messages": [
                {"role": "system", "content": " \n"},
                {"role": "user", "content": "Weather? 👋 שלום"},
                {"role": "assistant", "content": "  "},
                {"role": "user", "content": "Please."},
                {
                    "role": "assistant",
                    "content": "\n",
                    "tool_calls": [{"id": odd, "name": "weather", "arguments": ""}],
                },
                {"role": "tool", "tool_call_id": odd, "content": ""},
                {"role": "assistant", "content": "It is "},
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {}}],
        }
    )
    messages = body["messages"]
    call_id = messages[2]["content"][0]["id"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", call_id)
    assert "system" not in body
    assert messages == [
        {"role": "user", "content": "Weather? 👋 שלום"},
        {"role": "user", "content": "Please."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call_id, "name": "weather", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id}]},
        {"role": "assistant", "content": "It is"},
    ]
    assert body["tools"] == [{"name": "weather", "input_schema": {"type": "object"}}]
    STREAMING_PARAMS.validate_python(body)  # the official SDK's request type


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yes"},
                    {"role": "user", "content": " \t\n"},
                ]
            },
            "messages[2].content",
        ),
        ({"messages": [{"role": "system", "content": "Only me."}]}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": ["END", "\n"]}, "stop[1]"),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "name": "get weather"}],
            },
            "tools[0].name",
        ),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "name": "t" * 129}],
            },
            "tools[0].name",
        ),
    ],
)
def test_what_anthropic_refuses_is_a_400_naming_the_field(
    request_body: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest, match="^" + re.escape(field) + ": "):
        _body(request_body)


async def test_a_blank_user_message_is_a_400_before_any_upstream_call(
    upstream: FakeUpstream,
) -> None:
    route = {
        "name": "claude",
        "provider": "anthropic",
        "upstream": {"base_url": upstream.url, "api_key": "k", "model": "m"},
    }
    async with running_gateway({"routes": [route]}) as gw, aiohttp.ClientSession() as s:
        blank = {"messages": [{"role": "user", "content": "  "}]}
        async with s.post(gw.url + "/v1/stream/claude", json=blank) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("messages[0].content: is blank")
    assert upstream.seen == []
