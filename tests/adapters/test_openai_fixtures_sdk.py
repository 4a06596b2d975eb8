"""The OpenAI fixtures and request bodies, checked against the official ``openai`` package's types.

The SDK is the authority that a fixture is shaped like real traffic and that the bodies we send
are ones the API accepts. Two real-world events are *known* to break the SDK's types (protocols
README section 0.2, items 1 and 2): the nested ``error`` event and a ``response.failed`` whose
``error.code`` is ``insufficient_quota``. Those must fail validation; everything else must pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming
from openai.types.responses import ResponseStreamEvent
from openai.types.responses.response_create_params import ResponseCreateParamsStreaming

from gateway.adapters.openai_chat import OpenAIChatAdapter
from gateway.adapters.openai_responses import OpenAIResponsesAdapter
from gateway.framing.sse import SSEDecoder
from gateway.request import parse_request
from tests.adapters.harness import fixture_bytes, make_adapter
from tests.adapters.openai_expect import COMMON_BODY, fixture_names

RESPONSES = fixture_names("openai_responses_")
CHAT = fixture_names("openai_chat_", "openai_compat_")
RESPONSE_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def messages(name: str) -> list[tuple[str, str]]:
    """``(event, data)`` of every complete SSE event in the fixture (a cut-off tail is dropped)."""
    decoder = SSEDecoder()
    found = decoder.feed(fixture_bytes(name)) + decoder.close()
    return [(m.event, m.data) for m in found]


def known_sdk_rejection(doc: dict[str, Any]) -> bool:
    """The README's two documented cases where real events break openai-python's types."""
    if doc.get("type") == "error" and isinstance(doc.get("error"), dict):
        return True
    error = (doc.get("response") or {}).get("error") or {}
    return doc.get("type") == "response.failed" and error.get("code") == "insufficient_quota"


@pytest.mark.parametrize("name", RESPONSES)
def test_responses_events_match_the_sdk_types(name: str) -> None:
    events = [(event, data) for event, data in messages(name) if data != "[DONE]"]
    assert events, name
    for event, data in events:
        doc = json.loads(data)
        assert event == doc["type"], "the SSE event name repeats the JSON type"
        if known_sdk_rejection(doc):
            with pytest.raises(pydantic.ValidationError):
                RESPONSE_EVENT.validate_python(doc)
        else:
            RESPONSE_EVENT.validate_python(doc)


def test_observed_error_fixture_holds_both_documented_rejections() -> None:
    docs = [json.loads(d) for _, d in messages("openai_responses_error_event_observed.sse")]
    rejected = [d["type"] for d in docs if known_sdk_rejection(d)]
    assert rejected == ["error", "response.failed"]


def test_proxy_done_fixture_really_ends_with_done() -> None:
    assert messages("openai_responses_proxy_done.sse")[-1] == ("message", "[DONE]")


def is_error_payload(doc: dict[str, Any]) -> bool:
    return bool(doc.get("error")) or doc.get("object") == "error"


@pytest.mark.parametrize("name", CHAT)
def test_chat_chunks_match_the_sdk_types(name: str) -> None:
    payloads = [data for _, data in messages(name) if data != "[DONE]"]
    assert payloads, name
    for data in payloads:
        doc = json.loads(data)
        if is_error_payload(doc):
            # Not a chunk: openai-python's Stream raises APIError on it instead.
            assert "choices" not in doc
            continue
        ChatCompletionChunk.model_validate(doc)


def test_chat_error_fixture_has_an_error_payload() -> None:
    docs = [json.loads(d) for _, d in messages("openai_chat_error_midstream.sse")]
    assert [is_error_payload(d) for d in docs][-1] is True


def force(value: Any) -> Any:
    """Materialise pydantic's lazy ``Iterable`` validators so nested items are validated too."""
    if isinstance(value, dict):
        return {k: force(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [force(v) for v in value]
    return value


def check_body(params: Any, body: dict[str, Any]) -> None:
    unknown = set(body) - set(params.__annotations__)
    assert not unknown, f"keys the SDK does not know: {unknown}"
    # Keep the adapter alive while the lazy iterators run: they use its schema definitions.
    validator: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(params)
    force(validator.validate_python(body))


def test_chat_request_body_matches_the_sdk_params() -> None:
    for options in ({}, {"max_tokens_field": "max_completion_tokens"}):
        adapter = make_adapter(OpenAIChatAdapter, options, model="gpt-test")
        body = json.loads(adapter.build_request(parse_request(COMMON_BODY)).body)
        check_body(CompletionCreateParamsStreaming, body)


def test_responses_request_body_matches_the_sdk_params() -> None:
    adapter = make_adapter(OpenAIResponsesAdapter, model="gpt-test")
    body = json.loads(adapter.build_request(parse_request(COMMON_BODY)).body)
    check_body(ResponseCreateParamsStreaming, body)


def test_the_body_check_can_fail() -> None:
    with pytest.raises(AssertionError):
        check_body(CompletionCreateParamsStreaming, {"model": "m", "messages": [], "stop_seq": 1})
    bad_role = {"model": "m", "messages": [{"role": "robot", "content": "x"}], "stream": True}
    with pytest.raises(pydantic.ValidationError):
        check_body(CompletionCreateParamsStreaming, bad_role)
