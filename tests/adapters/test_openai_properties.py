"""Property tests for the OpenAI adapters: chunking never matters; garbage never crashes them.

Every stream, however hostile, must end in exactly one terminal event and the pipeline must never
raise: the translators read upstream JSON leniently and only raise gateway errors.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.adapters.base import Adapter
from gateway.adapters.openai_chat import OpenAIChatAdapter
from gateway.adapters.openai_responses import OpenAIResponsesAdapter
from gateway.events import Event
from tests.adapters.harness import check_invariants, fixture_bytes, make_adapter, replay
from tests.adapters.openai_expect import fixture_names

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

ADAPTERS: list[type[Adapter]] = [OpenAIResponsesAdapter, OpenAIChatAdapter]
CASES = [(OpenAIResponsesAdapter, n) for n in fixture_names("openai_responses_")] + [
    (OpenAIChatAdapter, n) for n in fixture_names("openai_chat_", "openai_compat_")
]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize(("cls", "name"), CASES, ids=[n for _, n in CASES])
@PROPERTY_SETTINGS
@given(points=st.lists(st.integers(min_value=0), max_size=60))
def test_any_chunking_gives_the_same_events(
    cls: type[Adapter], name: str, points: list[int]
) -> None:
    adapter = make_adapter(cls)
    data = fixture_bytes(name)
    assert replay(adapter, cut(data, points)) == replay(adapter, [data])


@pytest.mark.parametrize("cls", ADAPTERS)
@PROPERTY_SETTINGS
@given(data=st.binary(max_size=600), points=st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_end_in_one_terminal(
    cls: type[Adapter], data: bytes, points: list[int]
) -> None:
    check_invariants(replay(make_adapter(cls), cut(data, points)))


# Payloads built from the names the translators look at, so garbage reaches the deep branches.
KEYS = [
    "type", "delta", "item", "item_id", "id", "call_id", "name", "arguments", "part", "response",
    "usage", "error", "code", "message", "choices", "index", "finish_reason", "tool_calls",
    "function", "content", "reasoning", "reasoning_content", "refusal", "object", "model",
    "incomplete_details", "reason", "input_tokens", "output_tokens", "prompt_tokens",
    "completion_tokens", "output_tokens_details", "input_tokens_details", "reasoning_tokens",
    "cached_tokens", "prompt_tokens_details", "completion_tokens_details",
]  # fmt: skip
TYPES = [
    "response.created", "response.in_progress", "response.content_part.added",
    "response.output_text.delta", "response.refusal.delta", "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta", "response.output_item.added",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.completed", "response.incomplete", "response.failed", "error", "function_call",
    "output_text", "refusal", "stop", "length", "tool_calls", "fc_1", "call_1", "",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=600),
    st.sampled_from(TYPES),
    st.text(max_size=6),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=20,
)
payloads = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6).map(json.dumps),
    json_values.map(json.dumps),
    st.sampled_from(["[DONE]", "{", "", "null"]),
)


def frames(items: list[tuple[str | None, str]]) -> bytes:
    out = []
    for event, data in items:
        head = f"event: {event}\n" if event else ""
        out.append(f"{head}data: {data}\n\n")
    return "".join(out).encode()


@pytest.mark.exhaustive
@pytest.mark.parametrize("cls", ADAPTERS)
@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.tuples(st.none() | st.sampled_from(TYPES), payloads), max_size=8),
    points=st.lists(st.integers(min_value=0), max_size=8),
    tail=st.binary(max_size=20),
)
def test_hostile_json_ends_in_one_terminal(
    cls: type[Adapter], items: list[tuple[str | None, str]], points: list[int], tail: bytes
) -> None:
    data = frames(items) + tail
    events = replay(make_adapter(cls), cut(data, points))
    check_invariants(events)
    whole = replay(make_adapter(cls), [data])
    assert _normalise(events, data) == _normalise(whole, data)


def _normalise(events: list[Event], data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Events with synthesised tool-call ids (random, absent from the input) made comparable."""
    text = data.decode("utf-8", "replace")
    out = []
    for e in events:
        payload = e.data
        if (
            e.type == "tool_call"
            and "id" in payload
            and json.dumps(payload["id"])[1:-1] not in text
        ):
            payload = {**payload, "id": "<synthesised>"}
        out.append((e.type, payload))
    return out
