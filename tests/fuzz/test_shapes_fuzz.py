"""Well-formed JSON of the wrong shape: real fixture events with values swapped for other types.

Byte-level fuzzing rarely gets past ``json.loads``. Here every message is valid JSON taken from a
recorded stream, with some values replaced by a list, an object, a number, a string or null. Every
adapter must still end in exactly one terminal event and never raise (a translator's
``TypeError`` on a list where an object was documented becomes ``upstream_protocol``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters import ADAPTERS
from gateway.pipeline import Pipeline
from tests.adapters.harness import FIXTURES
from tests.fuzz.inputs import adapter

PREFIXES = {
    "anthropic": ("anthropic_",),
    "cohere": ("cohere_",),
    "gemini": ("gemini_",),
    "ollama": ("ollama_",),
    "openai-chat": ("openai_chat", "openai_compat"),
    "mapped": ("openai_chat", "openai_compat"),
    "openai-responses": ("openai_responses",),
}
"""Each adapter is fed mutations of its own provider's recorded events (any fixture otherwise),
so the mutations reach deep into its translator."""


def _events(prefixes: tuple[str, ...] = ("",)) -> list[tuple[str, Any]]:
    """(SSE event name, decoded JSON) for every JSON message of the matching text fixtures."""
    found: list[tuple[str, Any]] = []
    for path in sorted(FIXTURES.iterdir()):
        if path.suffix not in (".sse", ".ndjson") or not path.name.startswith(prefixes):
            continue
        event = ""
        for line in path.read_text(errors="replace").splitlines():
            text = line[5:].strip() if line.startswith("data:") else line.strip()
            if line.startswith("event:"):
                event = line[6:].strip()
                continue
            try:
                found.append((event, json.loads(text)))
            except ValueError:
                continue
    return found


EVENTS = {name: _events(PREFIXES.get(name, ("",))) for name in ADAPTERS}
odd_value = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.booleans(),
)  # fmt: skip


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = _replace(doc[path[0]], path[1:], value)
    return copy


@st.composite
def mutated_stream(draw: st.DrawFn, name: str) -> list[tuple[str, Any]]:
    picked = draw(st.lists(st.sampled_from(EVENTS[name]), min_size=1, max_size=8))
    out = []
    for event, doc in picked:
        paths = _paths(doc)
        for _ in range(draw(st.integers(min_value=0, max_value=3)) if paths else 0):
            doc = _replace(doc, draw(st.sampled_from(paths)), draw(odd_value))
            paths = _paths(doc)
            if not paths:
                break
        out.append((event, doc))
    return out


def _frame(framing: str, stream: list[tuple[str, Any]]) -> bytes:
    parts = []
    for event, doc in stream:
        body = json.dumps(doc).encode()
        if framing == "ndjson":
            parts.append(body + b"\n")
        else:
            head = f"event: {event}\n".encode() if event else b""
            parts.append(head + b"data: " + body + b"\n\n")
    return b"".join(parts)


@pytest.mark.parametrize(
    "name", sorted(n for n in ADAPTERS if ADAPTERS[n].framing != "aws-eventstream")
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_wrong_shapes_end_in_exactly_one_terminal_event(name: str, data: st.DataObject) -> None:
    stream = data.draw(mutated_stream(name))
    subject = adapter(name)
    pipe = Pipeline(subject)
    events = pipe.accepted() + pipe.feed(_frame(subject.framing, stream)) + pipe.close()
    types = [e.type for e in events]
    assert sum(t in ("end", "error") for t in types) == 1, types
    assert types[-1] in ("end", "error")


def test_the_property_reaches_translators() -> None:
    """A list where an object belongs must become upstream_protocol, not escape as TypeError."""
    pipe = Pipeline(adapter("anthropic"))
    events = pipe.feed(b'event: error\ndata: {"type":"error","error":{"type":[1]}}\n\n')
    assert events[-1].data["code"] == "upstream_protocol"
