"""Every native fixture (shared and our own) validates against the provider's official SDK types.

This keeps hand-built fixtures honest: a field name or event shape we invented would fail here.
Upstream data is parsed leniently by the adapters; these checks are about the fixtures only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from cohere.v2.types import V2ChatStreamResponse
from google.genai import types as genai_types
from ollama import ChatResponse, GenerateResponse
from pydantic import TypeAdapter, ValidationError

from gateway.framing import RAW_EVENT, Message, new_decoder
from tests.adapters.harness import FIXTURES, fixture_bytes

ANTHROPIC = TypeAdapter(RawMessageStreamEvent)
COHERE = TypeAdapter(V2ChatStreamResponse)


def _fixtures(prefix: str) -> list[str]:
    names = sorted(
        p.name for p in FIXTURES.glob(f"{prefix}*") if not p.name.endswith(".expected.json")
    )
    assert names, prefix
    return names


def _messages(name: str, framing: str) -> list[Message]:
    decoder = new_decoder(framing)
    return [*decoder.feed(fixture_bytes(name)), *decoder.close()]


@pytest.mark.parametrize("name", _fixtures("anthropic_"))
def test_anthropic_events_validate(name: str) -> None:
    messages = _messages(name, "sse")
    assert messages
    for m in messages:
        assert json.loads(m.data)["type"] == m.event  # event: always equals data.type
        if m.event == "ping":
            continue  # not in the SDK union: its stream reader skips pings
        if m.event == "error":
            ErrorResponse.model_validate_json(m.data)
        else:
            ANTHROPIC.validate_json(m.data)


def test_anthropic_validation_is_not_vacuous() -> None:
    with pytest.raises(ValidationError):
        ANTHROPIC.validate_json('{"type":"content_block_delta","index":0,"delta":{"type":"nope"}}')


@pytest.mark.parametrize("name", _fixtures("gemini_"))
def test_gemini_chunks_validate(name: str) -> None:
    messages = _messages(name, "sse+raw")
    assert messages
    for m in messages:
        if m.event == RAW_EVENT or '"error"' in m.data[:20]:
            # Errors are not GenerateContentResponse: check the google.rpc error shape instead.
            error = json.loads(m.data)["error"]
            assert isinstance(error["code"], int) and error["message"] and error["status"]
            continue
        genai_types.GenerateContentResponse.model_validate_json(m.data)


def test_gemini_validation_is_not_vacuous() -> None:
    with pytest.raises(ValidationError):  # the SDK model forbids unknown fields
        genai_types.GenerateContentResponse.model_validate_json('{"candidatez": []}')


def _ollama_line(data: str) -> Any:
    obj = json.loads(data)
    if "error" in obj:
        assert set(obj) == {"error"} and isinstance(obj["error"], str)
        return obj
    model = ChatResponse if "message" in obj else GenerateResponse
    return model.model_validate_json(data)


@pytest.mark.parametrize("name", _fixtures("ollama_"))
def test_ollama_lines_validate(name: str) -> None:
    messages = _messages(name, "ndjson")
    assert messages
    for m in messages:
        _ollama_line(m.data)


def test_ollama_validation_is_not_vacuous() -> None:
    with pytest.raises(ValidationError):
        ChatResponse.model_validate_json('{"message": {"role": "assistant", "tool_calls": 5}}')


@pytest.mark.parametrize("name", _fixtures("cohere_"))
def test_cohere_events_validate(name: str) -> None:
    messages = _messages(name, "sse")
    assert messages
    for m in messages:
        if m.data == "[DONE]":
            continue  # cohere-python's stream reader stops here
        event = COHERE.validate_json(m.data)
        assert event.type == m.event
        assert type(event).__name__ != "dict", m.data  # matched a typed union member


def test_cohere_tool_call_fixture_matches_sdk_shapes() -> None:
    # Cohere's models are lenient (extra allowed), so check the fields the adapter reads.
    for m in _messages("cohere_v2_chat_tool_call.sse", "sse"):
        event = COHERE.validate_json(m.data)
        if m.event == "tool-call-start":
            call = event.delta.message.tool_calls
            assert call.id and call.function.name and call.function.arguments == ""
        elif m.event == "message-end":
            assert event.delta.finish_reason == "TOOL_CALL"
            assert event.delta.usage.tokens.input_tokens == 1549
