"""Ollama adapter: request building, options, and the stream contract on every fixture."""

from __future__ import annotations

import json

import pytest

from gateway.adapters.ollama import OllamaAdapter
from gateway.errors import InvalidRequest
from gateway.jsonutil import loads
from gateway.request import parse_request
from tests.adapters.harness import make_adapter, replay
from tests.adapters.native_contract import CONVERSATION, check_fixture


@pytest.mark.parametrize(
    ("fixture", "terminal", "error"),
    [
        ("ollama_chat.ndjson", ("end", "stop"), {}),
        ("ollama_generate.ndjson", ("end", "stop"), {}),
        ("ollama_chat_tool_calls.ndjson", ("end", "tool_calls"), {}),
        (
            "ollama_error_midstream.ndjson",
            ("error", "upstream_error"),
            {"message": "an error was encountered while running the model"},
        ),
        ("ollama_truncated.ndjson", ("error", "upstream_truncated"), {}),
    ],
)
def test_contract(fixture: str, terminal: tuple[str, str], error: dict[str, object]) -> None:
    check_fixture(OllamaAdapter, fixture, terminal, **error)


def test_build_request_maps_every_field() -> None:
    adapter = make_adapter(OllamaAdapter, model="route-model")
    req = adapter.build_request(parse_request({**CONVERSATION, "top_p": 0.9}))
    assert req.url == "http://127.0.0.1:11434/api/chat"
    assert req.headers == {"content-type": "application/json", "accept": "application/x-ndjson"}
    assert loads(req.body) == {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "weather", "arguments": {"city": "Rome"}}},
                ],
            },
            {"role": "tool", "content": "21C", "tool_name": "weather"},
            {"role": "tool", "content": "25C", "tool_name": "weather"},
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
        "stream": True,
        "options": {"num_predict": 8000, "temperature": 0.5, "top_p": 0.9, "stop": ["END"]},
        "think": True,
    }


def test_bearer_auth_and_think_levels() -> None:
    adapter = make_adapter(OllamaAdapter, {"think_level": True}, model="gpt-oss", api_key="k")
    req = adapter.build_request(
        parse_request(
            {"messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "high"}}
        )
    )
    assert req.headers["authorization"] == "Bearer k"
    assert loads(req.body)["think"] == "high"
    plain = make_adapter(OllamaAdapter, model="m").build_request(
        parse_request(
            {"messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "minimal"}}
        )
    )
    assert loads(plain.body)["think"] is False


def test_generate_endpoint_is_single_turn() -> None:
    adapter = make_adapter(OllamaAdapter, {"endpoint": "generate"}, model="gemma3")
    req = adapter.build_request(
        parse_request(
            {
                "messages": [
                    {"role": "system", "content": "Be kind."},
                    {"role": "user", "content": "Hello"},
                ],
                "max_tokens": 5,
            }
        )
    )
    assert req.url == "http://127.0.0.1:11434/api/generate"
    assert loads(req.body) == {
        "model": "gemma3",
        "prompt": "Hello",
        "system": "Be kind.",
        "stream": True,
        "options": {"num_predict": 5},
    }
    with pytest.raises(InvalidRequest, match=r"^tools: "):
        adapter.build_request(parse_request(CONVERSATION))
    with pytest.raises(InvalidRequest, match=r"messages\[3\]\.role"):
        adapter.build_request(parse_request({**CONVERSATION, "tools": None}))


def test_native_request() -> None:
    adapter = make_adapter(OllamaAdapter, model="pinned")
    req = adapter.build_native_request(
        {"model": "x", "messages": [], "keep_alive": "5m", "stream": False}
    )
    assert loads(req.body) == {
        "model": "pinned",
        "messages": [],
        "keep_alive": "5m",
        "stream": True,
    }


def test_parse_options_errors() -> None:
    _, errors = OllamaAdapter.parse_options({"endpoint": "embed"}, "p")
    assert errors == ["p.endpoint: must be one of chat, generate"]


def test_done_object_text_tool_calls_and_reasons() -> None:
    line = {
        "message": {
            "role": "assistant",
            "content": "last",
            "tool_calls": [{"id": "call_given", "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        "done": True,
        "done_reason": "length",
        "eval_count": 4,
    }
    events = replay(make_adapter(OllamaAdapter), [json.dumps(line).encode() + b"\n"])
    assert [(e.type, e.data) for e in events[1:]] == [
        ("clear", {}),
        ("delta", {"text": "last"}),
        ("tool_call", {"index": 0, "id": "call_given", "name": "f", "arguments": '{"a":1}'}),
        ("usage", {"output_tokens": 4}),
        (
            "end",
            {"reason": "length", "provider_reason": "length"},
        ),  # only stop turns into tool_calls
    ]
    unload = replay(make_adapter(OllamaAdapter), [b'{"done": true, "done_reason": "unload"}\n'])
    assert unload[-1].data == {"reason": "other", "provider_reason": "unload"}


def test_stream_cut_inside_any_line_is_truncated_not_protocol() -> None:
    # Contract rule 5.1: a connection closed mid-line (the decoder hands the unterminated tail
    # over at EOF) is upstream_truncated, not a malformed-data upstream_protocol error.
    lines = [
        b'{"message":{"role":"assistant","content":"H\xc3\xa9"},"done":false}\n',
        b'{"message":{"role":"assistant","content":"llo"},"done":false}\n',
        b'{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}',
    ]
    data = b"".join(lines)
    adapter = make_adapter(OllamaAdapter, model="m")
    for end in range(1, len(data)):
        if data[:end].endswith(b"\n"):
            continue  # a whole line: the stream just lacks its terminator (covered elsewhere)
        for chunks in ([data[:end]], [data[i : i + 1] for i in range(end)]):
            events = replay(adapter, chunks)
            assert events[-1].type == "error", (end, events[-1])
            assert events[-1].data["code"] == "upstream_truncated", (end, events[-1])
    assert replay(adapter, [data])[-1].data == {"reason": "stop", "provider_reason": "stop"}


def test_malformed_line_followed_by_more_lines_is_a_protocol_error() -> None:
    data = b'{"message":{"content":"a"\n{"message":{"content":"b"},"done":true}\n'
    events = replay(make_adapter(OllamaAdapter, model="m"), [data])
    assert events[-1].data["code"] == "upstream_protocol"
    not_json = replay(make_adapter(OllamaAdapter, model="m"), [b"<html>oops</html>"])
    assert not_json[-1].data["code"] == "upstream_protocol"
