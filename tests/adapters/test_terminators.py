"""Contract rule 5.1, per adapter: only the provider's own terminator ends a stream with ``end``.

The terminator table below names, for every registered adapter, a stream with its terminator
and where that terminator starts (protocols README section 0.1). The stream cut just before the
terminator, or anywhere inside it, must end with ``error{code: upstream_truncated}``; the whole
stream must end with ``end``; both at every split of the bytes (whole, one byte per read, random
cuts, and every cut in two). The content before the terminator is the same either way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.adapters import ADAPTERS
from gateway.adapters.anthropic import AnthropicAdapter
from gateway.adapters.base import Adapter, LocalScript
from gateway.adapters.bedrock import BedrockAdapter
from gateway.adapters.cohere import CohereAdapter
from gateway.adapters.gemini import GeminiAdapter
from gateway.adapters.mapped import MappedAdapter
from gateway.adapters.ollama import OllamaAdapter
from gateway.adapters.openai_chat import OpenAIChatAdapter
from gateway.adapters.openai_responses import OpenAIResponsesAdapter
from gateway.adapters.simulated import SimulatedAdapter
from gateway.events import Event
from gateway.request import parse_request
from tests.adapters.harness import (
    check_invariants,
    check_same_at_every_split,
    fixture_bytes,
    make_adapter,
    replay,
)

DATA = Path(__file__).resolve().parent / "data"


def _before(marker: bytes) -> Callable[[bytes], int]:
    """The terminator starts at the last occurrence of ``marker``."""

    def find(data: bytes) -> int:
        at = data.rfind(marker)
        assert at > 0, marker
        return at

    return find


def _line_with(marker: bytes) -> Callable[[bytes], int]:
    """The terminator is the (last) line holding ``marker``: it starts after the newline before."""

    def find(data: bytes) -> int:
        at = data.rfind(marker)
        assert at > 0, marker
        return data.rfind(b"\n", 0, at) + 1

    return find


def _bedrock_metadata(data: bytes) -> int:
    """Start of the ``metadata`` frame (ConverseStream's last, after ``messageStop``)."""
    offset = 0
    while offset < len(data):
        total, headers_len = struct.unpack(">II", data[offset : offset + 8])
        headers = data[offset + 12 : offset + 12 + headers_len]
        # header: name length, name, type 7 (string), u16 value length, value
        if b":event-type\x07\x00\x08metadata" in headers:
            return offset
        offset += total
    raise AssertionError("no metadata frame")


def _simulated_stream() -> bytes:
    adapter = make_adapter(SimulatedAdapter, {"text": "Hello there, world", "reasoning": "Hm."})
    script = adapter.build_request(parse_request({"messages": [{"role": "user", "content": "x"}]}))
    assert isinstance(script, LocalScript)
    return b"".join(chunk for _, chunk in script.chunks)


def _twin(name: str) -> dict[str, Any]:
    options: dict[str, Any] = yaml.safe_load((DATA / f"mapped_{name}.yaml").read_text())
    return options


@dataclass(frozen=True)
class Row:
    """One adapter's terminator: the stream, where its terminator starts, what that is."""

    cls: type[Adapter]
    data: Callable[[], bytes]
    start: Callable[[bytes], int]
    terminator: str
    options: dict[str, Any] | None = None
    complete_without: int = 0
    """Trailing bytes that may be missing with the terminator still complete: NDJSON's last
    line needs no ``"\n"`` at EOF; in SSE a lone CR ends a line, so CRLF framing may lack its
    very last LF."""


TABLE: dict[str, Row] = {
    "openai-chat": Row(
        OpenAIChatAdapter,
        lambda: fixture_bytes("openai_chat_usage.sse"),
        _before(b"data: [DONE]"),
        "data: [DONE] (the usage chunk before it, after the finish chunk)",
    ),
    "openai-responses": Row(
        OpenAIResponsesAdapter,
        lambda: fixture_bytes("openai_responses_basic.sse"),
        _before(b"event: response.completed"),
        "response.completed",
    ),
    "anthropic": Row(
        AnthropicAdapter,
        lambda: fixture_bytes("anthropic_basic.sse"),
        _before(b"event: message_stop"),
        "message_stop",
    ),
    "gemini": Row(
        GeminiAdapter,
        lambda: fixture_bytes("gemini_basic.sse"),
        _line_with(b'"finishReason"'),
        "the chunk with finishReason, then EOF",
        complete_without=1,
    ),
    "ollama": Row(
        OllamaAdapter,
        lambda: fixture_bytes("ollama_chat.ndjson"),
        _line_with(b'"done":true'),
        'the "done": true line',
        complete_without=1,
    ),
    "cohere": Row(
        CohereAdapter,
        lambda: fixture_bytes("cohere_v2_chat_thinking.sse"),
        _before(b"event: message-end"),
        "message-end",
    ),
    "bedrock": Row(
        BedrockAdapter,
        lambda: fixture_bytes("bedrock_converse_stream.bin"),
        _bedrock_metadata,
        "the metadata frame after messageStop",
        options={"region": "us-west-2", "access_key_id": "AKID", "secret_access_key": "secret"},
    ),
    "mapped": Row(
        MappedAdapter,
        lambda: fixture_bytes("openai_chat_usage.sse"),
        _before(b"data: [DONE]"),
        "the configured terminator (here data: [DONE])",
        options=_twin("openai_chat"),
    ),
    "simulated": Row(
        SimulatedAdapter,
        _simulated_stream,
        _line_with(b'{"done"'),
        'the {"done": ...} line',
        complete_without=1,
    ),
}

# A second mapped terminator kind (a path test on an NDJSON object).
EXTRA: dict[str, Row] = {
    "mapped-ndjson": Row(
        MappedAdapter,
        lambda: fixture_bytes("ollama_chat.ndjson"),
        _line_with(b'"done":true'),
        "the configured terminator (here path done equals true)",
        options=_twin("ollama"),
        complete_without=1,
    ),
}
ROWS = {**TABLE, **EXTRA}


def test_every_registered_adapter_has_a_row() -> None:
    assert set(TABLE) == set(ADAPTERS)


def _adapter(row: Row) -> Adapter:
    upstream: dict[str, Any] = {"base_url": "http://upstream.test", "model": "m"}
    if row.cls is SimulatedAdapter:
        upstream = {}
    return make_adapter(row.cls, row.options, **upstream)


def _content(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type not in ("usage", "end", "error")]


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", sorted(ROWS))
def test_with_its_terminator_the_stream_ends(name: str) -> None:
    row = ROWS[name]
    adapter, data = _adapter(row), row.data()
    events = replay(adapter, [data])
    check_invariants(events)
    assert events[-1].type == "end", (name, events[-1])
    check_same_at_every_split(adapter, data, events, every_cut=True)


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", sorted(ROWS))
def test_cut_just_before_its_terminator_the_stream_is_truncated(name: str) -> None:
    row = ROWS[name]
    adapter, data = _adapter(row), row.data()
    cut = data[: row.start(data)]
    events = replay(adapter, [cut])
    check_invariants(events)
    assert events[-1].type == "error", (name, row.terminator, events[-1])
    assert events[-1].data["code"] == "upstream_truncated"
    assert events[-1].data["retryable"] is True
    assert "usage" not in [e.type for e in events]  # the provider's usage ends with its terminator
    content, whole = _content(events), _content(replay(adapter, [data]))
    assert content == whole[: len(content)]  # a prefix: some terminators carry content too
    check_same_at_every_split(adapter, cut, events, every_cut=True)


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", sorted(ROWS))
def test_cut_anywhere_inside_its_terminator_the_stream_is_truncated(name: str) -> None:
    row = ROWS[name]
    adapter, data = _adapter(row), row.data()
    for end in range(row.start(data), len(data) - row.complete_without):
        events = replay(adapter, [data[:end]])
        check_invariants(events)
        assert events[-1].type == "error", (name, end, events[-1])
        assert events[-1].data["code"] in ("upstream_truncated", "upstream_protocol"), end


def test_eof_after_finish_relaxes_openai_chat_only_when_asked() -> None:
    data = fixture_bytes("openai_compat_no_done.sse")  # ends after the finish chunk, no [DONE]
    strict = replay(make_adapter(OpenAIChatAdapter), [data])
    assert strict[-1].data["code"] == "upstream_truncated"
    relaxed_adapter = make_adapter(OpenAIChatAdapter, {"eof_after_finish": True})
    relaxed = replay(relaxed_adapter, [data])
    assert relaxed[-1] == Event("end", {"reason": "length", "provider_reason": "length"})
    check_same_at_every_split(relaxed_adapter, data, relaxed)
