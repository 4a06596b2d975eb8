"""The ``openai-responses`` adapter: fixtures at every split, the request it builds, edge cases."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gateway.adapters.openai_responses import OpenAIResponsesAdapter
from gateway.errors import InvalidRequest
from gateway.events import Event
from gateway.request import parse_request
from tests.adapters.harness import assemble, make_adapter, replay_checked
from tests.adapters.openai_expect import (
    COMMON_BODY,
    check_fixture_at_every_split,
    fixture_names,
)

FIXTURES = fixture_names("openai_responses_")


def test_fixture_set_is_complete() -> None:
    for name in (
        "openai_responses_basic.sse",
        "openai_responses_reasoning_and_tool_call.sse",
        "openai_responses_refusal.sse",
        "openai_responses_incomplete.sse",
        "openai_responses_failed_midstream.sse",
        "openai_responses_error_event_documented.sse",
        "openai_responses_error_event_observed.sse",
        "openai_responses_truncated.sse",
        "openai_responses_proxy_done.sse",
    ):
        assert name in FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_at_every_split(name: str) -> None:
    check_fixture_at_every_split(OpenAIResponsesAdapter, name)


# --- helpers ---------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    """Named SSE frames as the Responses API writes them (``event:`` repeats ``type``)."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def run(data: bytes) -> list[Event]:
    return replay_checked(make_adapter(OpenAIResponsesAdapter), [data])


def completed(usage: Any = None, status: str = "completed", **response: Any) -> dict[str, Any]:
    return {
        "type": f"response.{status}",
        "response": {"status": status, "usage": usage, **response},
    }


FUNCTION_ITEM = {
    "type": "response.output_item.added",
    "output_index": 0,
    "item": {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "f",
        "arguments": "",
    },
}


# --- translation edge cases -----------------------------------------------------------------


def test_sequence_of_events_for_a_plain_answer() -> None:
    events = run(
        sse(
            {"type": "response.created", "response": {"model": "m"}},
            {"type": "response.in_progress", "response": {}},
            {"type": "response.content_part.added", "part": {"type": "output_text", "text": ""}},
            {"type": "response.output_text.delta", "delta": "Hi"},
            {"type": "response.output_text.delta", "delta": ""},
            completed({"input_tokens": 3, "output_tokens": 1}),
        )
    )
    assert [(e.type, e.data) for e in events] == [
        ("thinking", {}),
        ("clear", {}),
        ("delta", {"text": "Hi"}),
        ("usage", {"input_tokens": 3, "output_tokens": 1}),
        ("end", {"reason": "stop", "provider_reason": "completed"}),
    ]


def test_translator_remembers_the_model() -> None:
    from gateway.framing import Message

    translator = make_adapter(OpenAIResponsesAdapter).new_translator()
    created = {"type": "response.created", "response": {"model": "gpt-x"}}
    assert translator.feed(Message("response.created", json.dumps(created))) == []
    assert translator.model == "gpt-x"  # type: ignore[attr-defined]


def test_malformed_json_is_upstream_protocol() -> None:
    events = run(b"event: x\ndata: {not json\n\n")
    assert events[-1].data["code"] == "upstream_protocol"


def test_json_that_is_not_an_object_is_upstream_protocol() -> None:
    events = run(b"data: [1, 2]\n\n")
    assert events[-1].data["code"] == "upstream_protocol"


def test_done_and_unknown_events_are_ignored() -> None:
    events = run(
        b"data: [DONE]\n\n"
        + sse({"type": "response.web_search_call.searching"}, {"type": "response.queued"})
        + sse({"type": "response.output_text.delta", "delta": "x"}, completed())
    )
    assert [e.type for e in events] == ["thinking", "clear", "delta", "end"]


def test_eof_without_terminal_event_is_truncated() -> None:
    events = run(sse({"type": "response.created", "response": {}}))
    assert events[-1].type == "error"
    assert events[-1].data["code"] == "upstream_truncated"


def test_flat_error_without_message_gets_a_default_and_stops_the_stream() -> None:
    events = run(
        sse(
            {"type": "error", "code": "server_error", "message": None, "param": None},
            {"type": "response.output_text.delta", "delta": "late"},
        )
    )
    assert events[-1].type == "error"
    assert events[-1].data["retryable"] is True
    assert events[-1].data["type"] == "server_error"
    assert events[-1].data["message"]
    assert "delta" not in [e.type for e in events]


def test_nested_error_then_failed_gives_one_error() -> None:
    error = {"type": "invalid_request_error", "code": None, "message": "bad", "param": None}
    failed = completed(status="failed", error={"code": "server_error", "message": "other"})
    events = run(sse({"type": "error", "error": error}, failed))
    assert [e.type for e in events] == ["thinking", "error"]
    assert events[-1].data == {
        "code": "upstream_error",
        "message": "bad",
        "retryable": False,
        "type": "invalid_request_error",
    }


@pytest.mark.parametrize(
    ("code", "retryable"),
    [("rate_limit_exceeded", True), ("server_error", True), ("invalid_prompt", False)],
)
def test_failed_is_retryable_by_code(code: str, retryable: bool) -> None:
    events = run(sse(completed(status="failed", error={"code": code, "message": "m"})))
    assert events[-1].data == {
        "code": "upstream_error",
        "message": "m",
        "retryable": retryable,
        "type": code,
    }


@pytest.mark.parametrize(
    ("why", "reason"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), ("steered", "other")],
)
def test_incomplete_reasons(why: str, reason: str) -> None:
    events = run(sse(completed(status="incomplete", incomplete_details={"reason": why})))
    assert events[-1].data == {"reason": reason, "provider_reason": why}


def test_incomplete_without_details_is_other() -> None:
    events = run(sse(completed(status="incomplete")))
    assert events[-1].data == {"reason": "other", "provider_reason": "incomplete"}


def test_usage_is_lenient() -> None:
    usage = {
        "input_tokens": 5,
        "output_tokens": "7",
        "input_tokens_details": None,
        "output_tokens_details": {"reasoning_tokens": 2},
    }
    events = run(sse(completed(usage)))
    assert events[-2] == Event("usage", {"input_tokens": 5, "reasoning_tokens": 2})


def test_tool_call_pieces_keyed_by_item_id() -> None:
    second = {**FUNCTION_ITEM, "item": {**FUNCTION_ITEM["item"], "id": "fc_2", "call_id": "call_2"}}
    events = run(
        sse(
            FUNCTION_ITEM,
            second,
            {"type": "response.function_call_arguments.delta", "item_id": "fc_2", "delta": "{}"},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{"},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "}"},
            {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": "{}"},
            completed(),
        )
    )
    calls = [e.data for e in events if e.type == "tool_call"]
    assert calls == [
        {"index": 0, "id": "call_1", "name": "f", "arguments": ""},
        {"index": 1, "id": "call_2", "name": "f", "arguments": ""},
        {"index": 1, "arguments": "{}"},
        {"index": 0, "arguments": "{"},
        {"index": 0, "arguments": "}"},
    ]
    assert events[-1].data["reason"] == "tool_calls"


def test_arguments_sent_only_whole_in_done_are_emitted_once() -> None:
    done = {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": "{}"}
    events = run(sse(FUNCTION_ITEM, done, done, completed()))
    assert assemble(events).tool_calls == [{"id": "call_1", "name": "f", "arguments": "{}"}]


def test_arguments_for_an_unknown_item_are_a_protocol_error() -> None:
    delta = {"type": "response.function_call_arguments.delta", "item_id": "fc_9", "delta": "{"}
    events = run(sse(delta, completed()))
    assert events[-1].data["code"] == "upstream_protocol"


def test_refusal_ends_with_content_filter() -> None:
    events = run(
        sse(
            {"type": "response.content_part.added", "part": {"type": "refusal", "refusal": ""}},
            {"type": "response.refusal.delta", "delta": "No."},
            completed(),
        )
    )
    assert [e.type for e in events] == ["thinking", "clear", "delta", "end"]
    assert events[-1].data["reason"] == "content_filter"


# --- the request ----------------------------------------------------------------------------

EXPECTED_BODY: dict[str, Any] = {
    "model": "gpt-test",
    "input": [
        {"type": "message", "role": "system", "content": "Be brief."},
        {"type": "message", "role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "message", "role": "assistant", "content": "It is 18C."},
        {"type": "message", "role": "user", "content": "Thanks"},
    ],
    "max_output_tokens": 256,
    "temperature": 0.5,
    "top_p": 0.9,
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": False,
        }
    ],
    "reasoning": {"effort": "medium", "summary": "auto"},
    "stream": True,
}


def test_build_request_exact_body() -> None:
    adapter = make_adapter(OpenAIResponsesAdapter, model="gpt-test", api_key="sk-test")
    req = adapter.build_request(parse_request(COMMON_BODY))
    assert req.method == "POST"
    assert req.url == "https://api.openai.com/v1/responses"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.body) == EXPECTED_BODY  # stop ignored, metadata not forwarded


def test_build_request_minimal_and_options() -> None:
    adapter = make_adapter(
        OpenAIResponsesAdapter,
        {"reasoning_summary": None, "strict_tools": True},
        base_url="http://localhost:8000/v1/",
        model="route-model",
        headers={"x-extra": "1"},
    )
    body = {
        "model": "client-model",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "f"}],
        "reasoning": {"effort": "high"},
    }
    req = adapter.build_request(parse_request(body))
    assert req.url == "http://localhost:8000/v1/responses"
    assert "authorization" not in req.headers
    assert req.headers["x-extra"] == "1"
    assert json.loads(req.body) == {
        "model": "client-model",
        "input": [{"type": "message", "role": "user", "content": "Hi"}],
        "tools": [
            {
                "type": "function",
                "name": "f",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            }
        ],
        "reasoning": {"effort": "high"},
        "stream": True,
    }


def test_native_request_preserves_fields_and_forces_stream() -> None:
    adapter = make_adapter(OpenAIResponsesAdapter, model="pinned", api_key="k")
    body = {"model": "other", "input": "hi", "stream": False, "store": False, "x_unknown": [1]}
    req = adapter.build_native_request(body)
    assert json.loads(req.body) == {
        "model": "pinned",
        "input": "hi",
        "stream": True,
        "store": False,
        "x_unknown": [1],
    }
    assert body["stream"] is False  # the client's dict is not mutated
    unpinned = make_adapter(OpenAIResponsesAdapter).build_native_request({"model": "m"})
    assert json.loads(unpinned.body) == {"model": "m", "stream": True}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"nope": 1}, "options.nope: unknown option for provider 'openai-responses'"),
        ({"strict_tools": "yes"}, "options.strict_tools: must be a boolean"),
        ({"reasoning_summary": "long"}, "options.reasoning_summary: must be one of"),
        ({"reasoning_summary": 3}, "options.reasoning_summary: must be a string or null"),
    ],
)
def test_parse_options_errors(options: dict[str, Any], error: str) -> None:
    _, errors = OpenAIResponsesAdapter.parse_options(options, "options")
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_parse_options_defaults() -> None:
    parsed, errors = OpenAIResponsesAdapter.parse_options({}, "options")
    assert errors == []
    assert parsed == {"reasoning_summary": "auto", "strict_tools": False}


# --- audit fixes ------------------------------------------------------------------------------


def _summary_part(index: int) -> dict[str, Any]:
    return {
        "type": "response.reasoning_summary_part.added",
        "item_id": "rs_1",
        "output_index": 0,
        "summary_index": index,
        "part": {"type": "summary_text", "text": ""},
    }


def _summary_delta(index: int, delta: str) -> dict[str, Any]:
    return {
        "type": "response.reasoning_summary_text.delta",
        "item_id": "rs_1",
        "output_index": 0,
        "summary_index": index,
        "delta": delta,
    }


def test_reasoning_summary_parts_are_separated_by_a_blank_line() -> None:
    # Each summary part is a paragraph with its own bold title; run together they read
    # "...first.**Second**" (the titles merge into the text before them).
    events = run(
        sse(
            _summary_part(0),
            _summary_delta(0, "**First**\n\nOne."),
            _summary_part(1),
            _summary_delta(1, "**Second**\n\nTwo."),
            completed(),
        )
    )
    assert assemble(events).reasoning == "**First**\n\nOne.\n\n**Second**\n\nTwo."


@pytest.mark.parametrize("name", ["t" * 65, "mcp.search", "get weather"])
def test_a_tool_name_the_responses_api_refuses_is_a_400(name: str) -> None:
    # The Responses API takes ^[a-zA-Z0-9_-]{1,64}$ ("Invalid 'tools[0].name': string does not
    # match pattern"), which the client would otherwise see as a 502.
    request = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "name": "ok_" + "t" * 61},
            {"type": "function", "name": name},
        ],
    }
    adapter = make_adapter(OpenAIResponsesAdapter, model="m")
    with pytest.raises(InvalidRequest, match="^" + re.escape("tools[1].name: provider")):
        adapter.build_request(parse_request(request))
