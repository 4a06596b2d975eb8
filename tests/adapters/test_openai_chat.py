"""The ``openai-chat`` adapter: fixtures at every split, the request it builds, edge cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.adapters.openai_chat import OpenAIChatAdapter
from gateway.events import Event
from gateway.request import parse_request
from tests.adapters.harness import assemble, make_adapter, replay_checked
from tests.adapters.openai_expect import (
    COMMON_BODY,
    check_fixture_at_every_split,
    fixture_names,
)

FIXTURES = fixture_names("openai_chat_", "openai_compat_")


def test_fixture_set_is_complete() -> None:
    for name in (
        "openai_chat_basic.sse",
        "openai_chat_usage.sse",
        "openai_chat_tool_calls.sse",
        "openai_chat_error_midstream.sse",
        "openai_chat_truncated.sse",
        "openai_compat_deepseek_reasoning.sse",
        "openai_compat_vllm_reasoning.sse",
        "openai_compat_no_done.sse",
    ):
        assert name in FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_at_every_split(name: str) -> None:
    check_fixture_at_every_split(OpenAIChatAdapter, name)


# --- helpers ---------------------------------------------------------------------------------


def sse(*payloads: dict[str, Any] | str) -> bytes:
    """Data-only SSE frames; a ``str`` payload is sent as is (``[DONE]``)."""
    return b"".join(
        f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for p in payloads
    )


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"object": "chat.completion.chunk", "model": "m", "choices": choices, **extra}


def run(data: bytes) -> list[Event]:
    return replay_checked(make_adapter(OpenAIChatAdapter), [data])


# --- translation edge cases -----------------------------------------------------------------


def test_done_without_finish_reason_is_other() -> None:
    events = run(sse(chunk({"content": "hi"}), "[DONE]"))
    assert events[-1].data == {"reason": "other"}


def test_nothing_after_done() -> None:
    events = run(sse(chunk({}, "stop"), "[DONE]", chunk({"content": "late"})))
    assert [e.type for e in events] == ["thinking", "end"]


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("eos", "other"),
    ],
)
def test_finish_reasons(finish: str, reason: str) -> None:
    events = run(sse(chunk({}, finish), "[DONE]"))
    assert events[-1].data == {"reason": reason, "provider_reason": finish}


USAGE_AFTER_FINISH = sse(
    chunk({"content": "a"}),
    chunk({}, "stop", usage=None),
    chunk(None, usage={"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}),
)


def test_eof_after_finish_reason_without_done_is_truncated() -> None:
    # Contract rule 5.1: the terminator is [DONE]. The old translator ended such a stream
    # normally at EOF; cut between the finish chunk and the usage chunk, usage was lost silently.
    for data in (sse(chunk({"content": "a"}), chunk({}, "stop")), USAGE_AFTER_FINISH):
        events = run(data)
        assert events[-1].type == "error", events
        assert events[-1].data["code"] == "upstream_truncated"
        assert "usage" not in [e.type for e in events]


def test_usage_after_the_finish_chunk_comes_before_end_at_done() -> None:
    events = run(USAGE_AFTER_FINISH + sse("[DONE]"))
    assert [(e.type, e.data) for e in events[-2:]] == [
        ("usage", {"input_tokens": 2, "output_tokens": 3}),
        ("end", {"reason": "stop", "provider_reason": "stop"}),
    ]


def test_eof_after_finish_option_relaxes_the_terminator() -> None:
    adapter = make_adapter(OpenAIChatAdapter, {"eof_after_finish": True})
    events = replay_checked(adapter, [USAGE_AFTER_FINISH])
    assert [(e.type, e.data) for e in events[-2:]] == [
        ("usage", {"input_tokens": 2, "output_tokens": 3}),
        ("end", {"reason": "stop", "provider_reason": "stop"}),
    ]
    # ... but never without a finish reason
    events = replay_checked(adapter, [sse(chunk({"content": "a"}))])
    assert events[-1].data["code"] == "upstream_truncated"


def test_eof_without_finish_reason_is_truncated() -> None:
    events = run(sse(chunk({"content": "a"})))
    assert events[-1].data["code"] == "upstream_truncated"


def test_usage_is_merged_per_count_and_sent_once_before_end() -> None:
    first = {
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    last = {
        "prompt_tokens": 4,
        "completion_tokens": 9,
        "prompt_tokens_details": {"cache_write_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    events = run(
        sse(
            chunk({"content": "a"}, usage=first),
            chunk({}, "stop", usage=None),
            chunk(None, usage=last),
            "[DONE]",
        )
    )
    usages = [e for e in events if e.type == "usage"]
    assert usages == [
        Event(
            "usage",
            {
                "input_tokens": 4,
                "output_tokens": 9,
                "reasoning_tokens": 5,
                "cached_input_tokens": 2,
                "cache_read_input_tokens": 2,
                "cache_write_input_tokens": 3,
            },
        )
    ]
    assert events[-2] is usages[0]


def test_deepseek_cache_hit_is_the_cache_read() -> None:
    usage = {"prompt_tokens": 18, "completion_tokens": 2, "prompt_cache_hit_tokens": 16}
    events = run(sse(chunk({}, "stop", usage=usage), "[DONE]"))
    assert events[-2].data["cache_read_input_tokens"] == 16
    assert events[-2].data["cached_input_tokens"] == 16


def test_reasoning_field_names_and_no_duplicates() -> None:
    events = run(
        sse(
            chunk({"reasoning_content": "a"}),
            chunk({"reasoning": "b"}),
            chunk({"reasoning": "c", "reasoning_content": "c"}),  # transitional vLLM sends both
            chunk({"content": "d"}, "stop"),
            "[DONE]",
        )
    )
    result = assemble(events)
    assert (result.reasoning, result.text) == ("abc", "d")


def test_refusal_streams_as_text_and_ends_with_content_filter() -> None:
    events = run(sse(chunk({"refusal": "I can't."}), chunk({}, "stop"), "[DONE]"))
    assert assemble(events).text == "I can't."
    assert events[-1].data == {"reason": "content_filter", "provider_reason": "stop"}


@pytest.mark.parametrize(
    ("payload", "message", "kind", "retryable"),
    [
        ({"error": {"message": "boom", "type": "server_error"}}, "boom", "server_error", True),
        (
            {"error": {"message": "slow", "code": "rate_limit_exceeded"}},
            "slow",
            "rate_limit_exceeded",
            True,
        ),
        ({"error": "plain text"}, "plain text", None, False),
        (
            {"object": "error", "message": "bad input", "type": "BadRequestError", "code": 400},
            "bad input",
            "BadRequestError",
            False,
        ),
        (
            {"object": "error", "message": "oom", "type": "InternalServerError", "code": 500},
            "oom",
            "InternalServerError",
            True,
        ),
    ],
)
def test_error_payloads(
    payload: dict[str, Any], message: str, kind: str | None, retryable: bool
) -> None:
    events = run(sse(chunk({"content": "a"}), payload, chunk({}, "stop"), "[DONE]"))
    error = events[-1]
    assert error.type == "error"
    assert error.data["code"] == "upstream_error"
    assert error.data["message"] == message
    assert error.data.get("type") == kind
    assert error.data["retryable"] is retryable


def test_finish_reason_error_is_an_error() -> None:
    events = run(sse(chunk({"content": "a"}), chunk({}, "error"), "[DONE]"))
    assert events[-1].type == "error"
    assert events[-1].data["code"] == "upstream_error"


def test_malformed_and_non_object_json_are_protocol_errors() -> None:
    assert run(b"data: {oops\n\n")[-1].data["code"] == "upstream_protocol"
    assert run(b'data: "text"\n\n')[-1].data["code"] == "upstream_protocol"


def test_odd_shapes_are_ignored() -> None:
    events = run(
        sse(
            chunk(None),
            {"choices": [None]},
            {"choices": "x"},
            chunk({"content": 5, "tool_calls": [None, 3]}),
            chunk({"content": "ok"}, "stop"),
            "[DONE]",
        )
    )
    assert assemble(events).text == "ok"


def _call(
    index: int | None, id: str | None = None, name: str | None = None, args: Any = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"function": {}}
    if index is not None:
        call["index"] = index
    if id is not None:
        call["id"], call["type"] = id, "function"
    if name is not None:
        call["function"]["name"] = name
    if args is not None:
        call["function"]["arguments"] = args
    return call


def test_tool_call_fragments_by_index() -> None:
    events = run(
        sse(
            chunk({"tool_calls": [_call(0, "call_a", "f", ""), _call(1, "call_b", "g", "{")]}),
            chunk({"tool_calls": [_call(0, args='{"x":1}')]}),
            chunk({"tool_calls": [_call(1, args="}")]}),
            chunk({"tool_calls": [_call(1, args="")]}),
            chunk({}, "tool_calls"),
            "[DONE]",
        )
    )
    assert [e.data for e in events if e.type == "tool_call"] == [
        {"index": 0, "id": "call_a", "name": "f", "arguments": ""},
        {"index": 1, "id": "call_b", "name": "g", "arguments": "{"},
        {"index": 0, "arguments": '{"x":1}'},
        {"index": 1, "arguments": "}"},
    ]


def test_tool_calls_without_index_or_id_and_whole_object_arguments() -> None:
    events = run(
        sse(
            chunk({"tool_calls": [_call(None, "call_a", "f", {"x": 1})]}),
            chunk({"tool_calls": [_call(None, "call_b", "g", "{")]}),
            chunk({"tool_calls": [_call(None, args="}")]}),
            chunk({"tool_calls": [_call(0, None, "h", "{}")]}),
            chunk({"tool_calls": [_call(0, "call_d", "k", "[]")]}),  # index 0 reused, new id
            chunk({}, "stop"),
            "[DONE]",
        )
    )
    calls = assemble(events).tool_calls
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("f", '{"x":1}'),
        ("g", "{}"),
        ("h", "{}"),
        ("k", "[]"),
    ]
    assert [c["id"] for c in calls if c["name"] != "h"] == ["call_a", "call_b", "call_d"]
    assert calls[2]["id"].startswith("call_") and len(calls[2]["id"]) > len("call_")
    assert events[-1].data["reason"] == "tool_calls"  # the guard: a tool was called


def test_translator_remembers_the_model() -> None:
    from gateway.framing import Message

    translator = make_adapter(OpenAIChatAdapter).new_translator()
    translator.feed(Message("message", json.dumps(chunk({"content": "a"}))))
    assert translator.model == "m"  # type: ignore[attr-defined]


# --- the request ----------------------------------------------------------------------------

EXPECTED_BODY: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "Thanks"},
    ],
    "max_tokens": 256,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["\n\n", "END"],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "reasoning_effort": "medium",
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_build_request_exact_body() -> None:
    adapter = make_adapter(OpenAIChatAdapter, model="gpt-test", api_key="sk-test")
    req = adapter.build_request(parse_request(COMMON_BODY))
    assert req.method == "POST"
    assert req.url == "https://api.openai.com/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.headers["accept"] == "text/event-stream"
    assert json.loads(req.body) == EXPECTED_BODY
    assert list(json.loads(req.body)) == list(EXPECTED_BODY)  # the keys in the documented order


def test_a_bare_request_sends_no_unset_setting() -> None:
    adapter = make_adapter(OpenAIChatAdapter, model="gpt-test")
    req = adapter.build_request(parse_request({"messages": [{"role": "user", "content": "Hi"}]}))
    assert list(json.loads(req.body).items()) == [
        ("model", "gpt-test"),
        ("messages", [{"role": "user", "content": "Hi"}]),
        ("stream", True),
        ("stream_options", {"include_usage": True}),
    ]


def test_every_request_shares_the_adapters_read_only_headers() -> None:
    adapter = make_adapter(OpenAIChatAdapter, model="gpt-test", api_key="sk-test")
    first = adapter.build_request(parse_request(COMMON_BODY))
    second = adapter.build_request(parse_request(COMMON_BODY))
    assert first.headers is second.headers  # built once: the raw client encodes them once
    with pytest.raises(TypeError):
        first.headers["authorization"] = "Bearer other"  # type: ignore[index]


def test_build_request_options() -> None:
    adapter = make_adapter(
        OpenAIChatAdapter,
        {"max_tokens_field": "max_completion_tokens", "include_usage": False},
        base_url="http://127.0.0.1:8000/v1",
        model="m",
    )
    req = adapter.build_request(
        parse_request({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 9})
    )
    assert req.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert "authorization" not in req.headers
    assert json.loads(req.body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 9,
        "stream": True,
    }


def test_native_request_preserves_fields_and_forces_stream() -> None:
    adapter = make_adapter(OpenAIChatAdapter, model="pinned")
    body = {"model": "x", "messages": [], "stream": False, "n": 1, "x_vendor": {"a": 1}}
    assert json.loads(adapter.build_native_request(body).body) == {
        "model": "pinned",
        "messages": [],
        "stream": True,
        "n": 1,
        "x_vendor": {"a": 1},
        "stream_options": {"include_usage": True},
    }
    assert body["stream"] is False and "stream_options" not in body


def test_native_request_sends_max_tokens_under_the_routes_field() -> None:
    # A pass-through request obeys max_tokens_field as the route's own path does: the upstream
    # that needs max_completion_tokens (reasoning models) refuses max_tokens with a 400.
    adapter = make_adapter(OpenAIChatAdapter, {"max_tokens_field": "max_completion_tokens"})
    sent = json.loads(adapter.build_native_request({"messages": [], "max_tokens": 50}).body)
    assert sent["max_completion_tokens"] == 50 and "max_tokens" not in sent
    both = {"messages": [], "max_tokens": 50, "max_completion_tokens": 70}
    assert json.loads(adapter.build_native_request(both).body)["max_completion_tokens"] == 70
    plain = make_adapter(OpenAIChatAdapter)
    assert json.loads(plain.build_native_request({"max_tokens": 50}).body)["max_tokens"] == 50


def test_native_request_keeps_the_clients_stream_options() -> None:
    adapter = make_adapter(OpenAIChatAdapter)
    options = {"include_usage": False, "include_obfuscation": False}
    sent = json.loads(adapter.build_native_request({"model": "c", "stream_options": options}).body)
    assert sent == {"model": "c", "stream": True, "stream_options": options}
    merged = json.loads(
        adapter.build_native_request({"stream_options": {"include_obfuscation": False}}).body
    )
    assert merged["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    off = make_adapter(OpenAIChatAdapter, {"include_usage": False})
    assert json.loads(off.build_native_request({"model": "c"}).body) == {
        "model": "c",
        "stream": True,
    }


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"stream_usage": True}, "options.stream_usage: unknown option for provider 'openai-chat'"),
        (
            {"include_usage:sk-live-123": True},  # YAML without the space after ':'
            "options.include_usage:***: unknown option for provider 'openai-chat' "
            "(did you mean 'include_usage'?)",
        ),
        ({"include_usage": 1}, "options.include_usage: must be a boolean"),
        ({"max_tokens_field": "tokens"}, "options.max_tokens_field: must be one of"),
        ({"max_tokens_field": True}, "options.max_tokens_field: must be a string"),
    ],
)
def test_parse_options_errors(options: dict[str, Any], error: str) -> None:
    _, errors = OpenAIChatAdapter.parse_options(options, "options")
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_parse_options_defaults() -> None:
    parsed, errors = OpenAIChatAdapter.parse_options({}, "options")
    assert errors == []
    assert parsed == {
        "max_tokens_field": "max_tokens",
        "include_usage": True,
        "eof_after_finish": False,
    }


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(429, "rate_limited", True), (500, "upstream_error", True), (401, "upstream_error", False)],
)
def test_status_error_reads_the_openai_error_body(status: int, code: str, retryable: bool) -> None:
    body = b'{"error":{"message":"Nope","type":"invalid_request_error","param":null,"code":null}}'
    error = make_adapter(OpenAIChatAdapter).status_error(status, body, 2.0)
    assert (error.error_code, error.retryable) == (code, retryable)
    assert "Nope" in error.message
    assert error.to_event_data()["type"] == "invalid_request_error"


# --- audit fixes ------------------------------------------------------------------------------


def test_mistral_typed_content_chunks_are_text_and_reasoning() -> None:
    # Magistral (Mistral's reasoning models) streams delta.content as a list of typed chunks;
    # the text and the thinking used to be dropped silently.
    thinking = {"type": "thinking", "thinking": [{"type": "text", "text": "Let me "}]}
    events = run(
        sse(
            chunk({"role": "assistant", "content": [thinking]}),
            chunk(
                {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "think"}]}]}
            ),
            chunk({"content": [{"type": "text", "text": "Bonjour"}, {"type": "text", "text": ""}]}),
            chunk({"content": [{"type": "reference", "reference_ids": [1]}, 3, "x"]}),
            chunk({"content": " à vous"}),
            chunk({}, "stop"),
            "[DONE]",
        )
    )
    got = assemble(events)
    assert (got.reasoning, got.text) == ("Let me think", "Bonjour à vous")
    assert events[-1].data == {"reason": "stop", "provider_reason": "stop"}


def test_done_without_finish_reason_after_a_tool_call_is_tool_calls() -> None:
    events = run(sse(chunk({"tool_calls": [_call(0, "call_a", "f", "{}")]}), "[DONE]"))
    assert events[-1].data == {"reason": "tool_calls"}
