"""Gemini adapter: request building, options, and the stream contract on every fixture."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gateway.adapters.gemini import GeminiAdapter
from gateway.errors import InvalidRequest
from gateway.jsonutil import loads
from gateway.request import parse_request
from tests.adapters.harness import fixture_bytes, make_adapter, replay
from tests.adapters.native_contract import CONVERSATION, check_fixture


@pytest.mark.parametrize(
    ("fixture", "terminal", "error"),
    [
        ("gemini_basic.sse", ("end", "stop"), {}),
        ("gemini_thinking_tool_call.sse", ("end", "tool_calls"), {}),
        ("gemini_max_tokens.sse", ("end", "length"), {}),
        ("gemini_cache_usage.sse", ("end", "length"), {}),
        ("gemini_safety.sse", ("end", "content_filter"), {}),
        ("gemini_prompt_blocked.sse", ("end", "content_filter"), {}),
        (
            "gemini_error_midstream.sse",
            ("error", "upstream_error"),
            {
                "retryable": True,
                "type": "UNAVAILABLE",
                "message": "The model is overloaded. Please try again later.",
            },
        ),
    ],
)
def test_contract(fixture: str, terminal: tuple[str, str], error: dict[str, object]) -> None:
    check_fixture(GeminiAdapter, fixture, terminal, **error)


def test_build_request_maps_every_field() -> None:
    adapter = make_adapter(GeminiAdapter, api_key="g-key", model="route-model")
    req = adapter.build_request(parse_request(CONVERSATION))
    assert req.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/claude-x:streamGenerateContent?alt=sse"
    )
    assert req.headers == {
        "content-type": "application/json",
        "accept": "text/event-stream",
        "x-goog-api-key": "g-key",
    }
    assert loads(req.body) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "weather", "response": {"result": "21C"}}},
                    {"functionResponse": {"name": "weather", "response": {"result": "25C"}}},
                ],
            },
            {"role": "user", "parts": [{"text": "Thanks"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief.\n\nUse tools."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "weather",
                        "description": "Current weather",
                        "parametersJsonSchema": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                        },
                    }
                ]
            }
        ],
        "generationConfig": {
            "maxOutputTokens": 8000,
            "temperature": 0.5,
            "stopSequences": ["END"],
            "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192},
        },
    }


def test_thinking_level_option_and_minimal_request() -> None:
    adapter = make_adapter(
        GeminiAdapter,
        {"thinking_level": True, "include_thoughts": False},
        model="models/gemini-3-pro",
    )
    req = adapter.build_request(
        parse_request(
            {"messages": [{"role": "user", "content": "hi"}], "reasoning": {"effort": "low"}}
        )
    )
    assert req.url.endswith("/v1beta/models/gemini-3-pro:streamGenerateContent?alt=sse")
    assert loads(req.body) == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"thinkingConfig": {"thinkingLevel": "low"}},
    }
    plain = adapter.build_request(parse_request({"messages": [{"role": "user", "content": "hi"}]}))
    assert "generationConfig" not in loads(plain.body)


def test_tool_result_without_matching_call_is_rejected() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nope", "content": "1"},
        ]
    }
    with pytest.raises(InvalidRequest, match=r"messages\[1\]\.tool_call_id"):
        make_adapter(GeminiAdapter, model="m").build_request(parse_request(body))


def test_native_request_model_goes_to_the_url() -> None:
    adapter = make_adapter(GeminiAdapter)
    req = adapter.build_native_request(
        {"model": "gemini-2.5-flash", "contents": [], "cachedContent": "c/1"}
    )
    assert "/models/gemini-2.5-flash:streamGenerateContent?alt=sse" in req.url
    assert loads(req.body) == {"contents": [], "cachedContent": "c/1"}
    pinned = make_adapter(GeminiAdapter, model="gemini-pinned")
    assert (
        "/models/gemini-pinned:" in pinned.build_native_request({"model": "x", "contents": []}).url
    )


def test_parse_options_errors() -> None:
    _, errors = GeminiAdapter.parse_options({"thinking_level": "yes", "x": 1}, "p")
    assert sorted(errors) == [
        "p.thinking_level: must be true or false",
        "p.x: unknown option for provider 'gemini'",
    ]


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)


def _text_chunk(text: str, **candidate: Any) -> dict[str, Any]:
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, **candidate}]}


def test_error_as_data_event_is_terminal() -> None:
    error = {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}
    events = replay(make_adapter(GeminiAdapter), [_sse(_text_chunk("Hi"), {"error": error})])
    assert [e.type for e in events] == ["thinking", "clear", "delta", "error"]
    assert events[-1].data == {
        "code": "upstream_error",
        "message": "Resource exhausted",
        "retryable": True,
        "type": "RESOURCE_EXHAUSTED",
    }


def test_eof_without_finish_reason_is_truncated() -> None:
    events = replay(make_adapter(GeminiAdapter), [_sse(_text_chunk("Hi"))])
    assert events[-1].data["code"] == "upstream_truncated"


def test_raw_text_that_is_not_an_error_is_a_protocol_error() -> None:
    events = replay(make_adapter(GeminiAdapter), [b"<html>oops</html>\n"])
    assert events[-1].type == "error" and events[-1].data["code"] == "upstream_protocol"


def test_usage_is_the_last_cumulative_value_emitted_once() -> None:
    def usage(n: int) -> dict[str, int]:
        return {"promptTokenCount": 3, "candidatesTokenCount": n, "cachedContentTokenCount": 2}

    data = _sse(
        {**_text_chunk("a"), "usageMetadata": usage(1)},
        {**_text_chunk("b", finishReason="OTHER"), "usageMetadata": usage(4)},
    )
    events = replay(make_adapter(GeminiAdapter), [data])
    usages = [e for e in events if e.type == "usage"]
    assert [u.data for u in usages] == [
        {
            "input_tokens": 3,
            "output_tokens": 4,
            "cached_input_tokens": 2,
            "cache_read_input_tokens": 2,
        }
    ]
    assert events[-1].data == {"reason": "other", "provider_reason": "OTHER"}


def test_the_tool_use_prompt_counts_as_input() -> None:
    """Built-in tools' results fed back (``toolUsePromptTokenCount``) are input the model read
    and is billed for; ``promptTokenCount`` leaves them out."""
    meta = {"promptTokenCount": 10, "toolUsePromptTokenCount": 90, "candidatesTokenCount": 5}
    data = _sse({**_text_chunk("a", finishReason="STOP"), "usageMetadata": meta})
    usage = next(e for e in replay(make_adapter(GeminiAdapter), [data]) if e.type == "usage")
    assert usage.data == {"input_tokens": 100, "output_tokens": 5}


def test_stream_cut_inside_a_raw_error_is_truncated() -> None:
    # Contract rule 5.1: EOF inside the pretty-printed error outside SSE framing (it has no
    # framing that could tell it is complete) is upstream_truncated, not upstream_protocol.
    data = fixture_bytes("gemini_error_midstream.sse")
    start = data.index(b"\r\n\r\n{") + 4
    adapter = make_adapter(GeminiAdapter)
    for end in range(start + 1, len(data) - 1):
        events = replay(adapter, [data[:end]])
        assert events[-1].data["code"] == "upstream_truncated", (end, events[-1])
    assert replay(adapter, [data])[-1].data["code"] == "upstream_error"
    finished = _sse(_text_chunk("Hi", finishReason="STOP")) + b'{\n  "error": {\n'
    assert replay(adapter, [finished])[-1].data["code"] == "upstream_truncated"


def test_unparsable_raw_text_followed_by_more_is_a_protocol_error() -> None:
    data = b'{\n  "oops"\n\n' + _sse(_text_chunk("Hi", finishReason="STOP"))
    assert replay(make_adapter(GeminiAdapter), [data])[-1].data["code"] == "upstream_protocol"


def test_a_tool_without_arguments_is_declared_without_parameters() -> None:
    # Gemini answers 400 "parameters.properties: should be non-empty for OBJECT type" to the
    # empty object schema a tool without parameters gets in the common request.
    body = {
        "messages": [{"role": "user", "content": "What time is it?"}],
        "tools": [
            {"type": "function", "name": "now", "description": "The time"},
            {"type": "function", "name": "empty", "parameters": {"type": "object"}},
            {
                "type": "function",
                "name": "open",
                "parameters": {"type": "object", "properties": {}, "required": []},
            },
            {
                "type": "function",
                "name": "city",
                "parameters": {"type": "object", "properties": {"c": {"type": "string"}}},
            },
        ],
    }
    req = make_adapter(GeminiAdapter, model="m").build_request(parse_request(body))
    assert loads(req.body)["tools"] == [
        {
            "functionDeclarations": [
                {"name": "now", "description": "The time"},
                {"name": "empty"},
                {"name": "open"},
                {
                    "name": "city",
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {"c": {"type": "string"}},
                    },
                },
            ]
        }
    ]


def _gemini(request: dict[str, Any]) -> dict[str, Any]:
    built = make_adapter(GeminiAdapter, model="m").build_request(parse_request(request))
    body: dict[str, Any] = loads(built.body)
    return body


def test_awkward_conversations_become_requests_gemini_accepts() -> None:
    # Gemini refuses an empty text part ("required oneof field 'data' must have one
    # initialized field") and a function call turn that does not follow a user or function
    # response turn; its older ``parameters`` refuses JSON Schema keys such as
    # additionalProperties and $schema, which ``parametersJsonSchema`` takes as they are.
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string", "const": "Paris"}},
        "additionalProperties": False,
    }
    body = _gemini(
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": " "},
                {"role": "assistant", "content": "Let me look."},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c.1", "name": "mcp.weather", "arguments": "{}"}],
                },
                {"role": "tool", "tool_call_id": "c.1", "content": "21C"},
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [{"type": "function", "name": "mcp.weather", "parameters": schema}],
        }
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather?"}, {"text": " "}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me look."},
                {"functionCall": {"name": "mcp.weather", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "mcp.weather", "response": {"result": "21C"}}}],
        },
        {"role": "user", "parts": [{"text": "Thanks"}]},
    ]
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "mcp.weather", "parametersJsonSchema": schema}]}
    ]


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
        ({"messages": [{"role": "developer", "content": "Only me."}]}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": list("abcdef")}, "stop"),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "name": "1st-tool"}],
            },
            "tools[0].name",
        ),
    ],
)
def test_what_gemini_refuses_is_a_400_naming_the_field(
    request_body: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest, match="^" + re.escape(field) + ": "):
        _gemini(request_body)
