"""Cohere adapter: request building, options, and the stream contract on every fixture."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gateway.adapters.cohere import CohereAdapter
from gateway.errors import InvalidRequest
from gateway.jsonutil import loads
from gateway.request import parse_request
from tests.adapters.harness import (
    check_same_at_every_split,
    make_adapter,
    replay,
    replay_checked,
)
from tests.adapters.native_contract import CONVERSATION, check_fixture


@pytest.mark.parametrize(
    ("fixture", "terminal", "error"),
    [
        ("cohere_v2_chat_thinking.sse", ("end", "stop"), {}),
        ("cohere_v2_chat_tool_call.sse", ("end", "tool_calls"), {}),
        (
            "cohere_v2_chat_error.sse",
            ("error", "upstream_error"),
            {"message": "internal server error, please retry", "retryable": False, "type": "ERROR"},
        ),
    ],
)
def test_contract(fixture: str, terminal: tuple[str, str], error: dict[str, object]) -> None:
    check_fixture(CohereAdapter, fixture, terminal, **error)


def test_build_request_maps_every_field() -> None:
    adapter = make_adapter(CohereAdapter, api_key="co-key", model="route-model")
    req = adapter.build_request(parse_request({**CONVERSATION, "top_p": 0.75}))
    assert req.url == "https://api.cohere.com/v2/chat"
    assert req.headers == {
        "content-type": "application/json",
        "accept": "text/event-stream",
        "authorization": "Bearer co-key",
    }
    assert loads(req.body) == {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "tool_plan": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "25C"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "max_tokens": 8000,
        "temperature": 0.5,
        "p": 0.75,
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "token_budget": 4096},
        "stream": True,
    }


def test_minimal_effort_disables_thinking_and_options_override() -> None:
    adapter = make_adapter(
        CohereAdapter, {"thinking_budgets": {"minimal": 0, "low": 77}}, model="m"
    )
    for effort, thinking in (
        ("minimal", {"type": "disabled"}),
        ("low", {"type": "enabled", "token_budget": 77}),
    ):
        body = {"messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": effort}}
        assert loads(adapter.build_request(parse_request(body)).body)["thinking"] == thinking


def test_native_request() -> None:
    adapter = make_adapter(CohereAdapter)
    req = adapter.build_native_request({"model": "command-a", "messages": [], "documents": ["d"]})
    assert loads(req.body) == {
        "model": "command-a",
        "messages": [],
        "documents": ["d"],
        "stream": True,
    }


def test_parse_options_errors() -> None:
    _, errors = CohereAdapter.parse_options({"thinking_budgets": {"low": -1}}, "p")
    assert errors == ["p.thinking_budgets: low: must be a non-negative integer"]


def test_done_marker_is_ignored_and_timeout_is_retryable() -> None:
    stream = (
        b'event: content-delta\ndata: {"type":"content-delta","index":0,'
        b'"delta":{"message":{"content":{"text":"Hi"}}}}\n\n'
        b'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"TIMEOUT"}}\n\n'
    )
    events = replay(make_adapter(CohereAdapter), [b"data: [DONE]\n\n" + stream])
    assert [e.type for e in events] == ["thinking", "clear", "delta", "error"]
    assert events[-1].data["retryable"] is True and events[-1].data["type"] == "TIMEOUT"
    truncated = replay(make_adapter(CohereAdapter), [stream.split(b"event: message-end")[0]])
    assert truncated[-1].data["code"] == "upstream_truncated"


def _call(kind: str, index: int, call: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "index": index}
    if call is not None:
        event["delta"] = {"message": {"tool_calls": call}}
    return event


def test_tool_call_without_arguments_is_an_empty_object() -> None:
    # A tool without parameters: tool-call-start with arguments "", no tool-call-delta. Its
    # arguments joined "" (not JSON, contract section 5); now one "{}" piece at tool-call-end.
    def start(index: int, tid: str) -> dict[str, Any]:
        function = {"name": "f", "arguments": ""}
        return _call(
            "tool-call-start", index, {"id": tid, "type": "function", "function": function}
        )

    events = [
        start(0, "a"),
        _call("tool-call-end", 0),
        start(1, "b"),
        _call("tool-call-delta", 1, {"function": {"arguments": '{"x":1}'}}),
        _call("tool-call-end", 1),
        start(2, "c"),
        _call("tool-call-end", 2),
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL"}},
    ]
    data = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    adapter = make_adapter(CohereAdapter)
    got = replay_checked(adapter, [data])
    assert [e.data for e in got if e.type == "tool_call"] == [
        {"index": 0, "id": "a", "name": "f", "arguments": ""},
        {"index": 0, "arguments": "{}"},
        {"index": 1, "id": "b", "name": "f", "arguments": ""},
        {"index": 1, "arguments": '{"x":1}'},
        {"index": 2, "id": "c", "name": "f", "arguments": ""},
        {"index": 2, "arguments": "{}"},
    ]
    check_same_at_every_split(adapter, data, got, every_cut=True)


@pytest.mark.parametrize(("top_p", "p"), [(1.0, 0.99), (0.995, 0.99), (0.0, 0.01), (0.5, 0.5)])
def test_top_p_is_kept_inside_coheres_range(top_p: float, p: float) -> None:
    # Cohere's p is documented (cohere-python v2 chat_stream) as min 0.01, max 0.99, while the
    # common request allows 0..1: top_p 1.0 (a common default) must not become a 400.
    adapter = make_adapter(CohereAdapter, model="m")
    body = {"messages": [{"role": "user", "content": "x"}], "top_p": top_p}
    assert loads(adapter.build_request(parse_request(body)).body)["p"] == p


def test_more_stop_sequences_than_cohere_takes_is_a_400() -> None:
    # Cohere v2 takes "a list of up to 5 strings" (cohere SDK docs): a sixth is its 400.
    adapter = make_adapter(CohereAdapter, model="m")
    five = {"messages": [{"role": "user", "content": "hi"}], "stop": list("abcde")}
    assert loads(adapter.build_request(parse_request(five)).body)["stop_sequences"] == list("abcde")
    with pytest.raises(InvalidRequest, match="^" + re.escape("stop: provider 'cohere'")):
        adapter.build_request(parse_request({**five, "stop": list("abcdef")}))
