"""Shared contract harness for adapters: replay recorded upstream bytes through the real pipeline.

Every adapter's contract test uses :func:`replay` with each of :func:`splits` and checks
:func:`check_invariants` (contract section 5 rules 1-2) and :func:`assemble` against the
fixture's ``.expected.json``.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.adapters.base import Adapter
from gateway.config.model import UpstreamConfig
from gateway.events import CONTENT_TYPES, Event
from gateway.pipeline import Pipeline

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    return data


def make_adapter(
    cls: type[Adapter], options: Mapping[str, Any] | None = None, **upstream: Any
) -> Adapter:
    parsed, errors = cls.parse_options(options or {}, "options")
    assert not errors, errors
    return cls(UpstreamConfig(**upstream), parsed)


def splits(data: bytes, seed: int = 0) -> Iterator[tuple[str, list[bytes]]]:
    """The ways the network could split ``data``: whole, one byte per read, random cuts."""
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    for n in range(3):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
        edges = [0, *cuts, len(data)]
        yield f"random{n}", [data[a:b] for a, b in itertools.pairwise(edges)]


def replay(adapter: Adapter, chunks: list[bytes]) -> list[Event]:
    """Events the pipeline produces for ``chunks`` after the upstream answered 2xx, then EOF."""
    pipe = Pipeline(adapter)
    out = pipe.accepted()
    for chunk in chunks:
        out.extend(pipe.feed(chunk))
    out.extend(pipe.close())
    return out


def replay_checked(adapter: Adapter, chunks: list[bytes]) -> list[Event]:
    """:func:`replay`, then :func:`check_invariants` on the result."""
    events = replay(adapter, chunks)
    check_invariants(events)
    return events


def replay_every_split(adapter: Adapter, data: bytes) -> Iterator[tuple[str, list[Event]]]:
    """``(label, events)`` for each of :func:`splits` of ``data``, invariants checked."""
    for label, chunks in splits(data):
        yield label, replay_checked(adapter, chunks)


def check_same_at_every_split(
    adapter: Adapter, data: bytes, expected: list[Event], *, every_cut: bool = False
) -> None:
    """The events for every split of ``data`` are ``expected`` (with ``every_cut``, also for
    ``data`` cut in two at every byte). Invariants are the caller's to check on ``expected``."""
    for label, chunks in splits(data):
        assert replay(adapter, chunks) == expected, label
    if every_cut:
        for cut in range(1, len(data)):
            assert replay(adapter, [data[:cut], data[cut:]]) == expected, cut


@dataclass
class Assembled:
    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    terminal: Event | None = None
    types: list[str] = field(default_factory=list)


def assemble(events: list[Event]) -> Assembled:
    """Join deltas, reasoning and tool-call pieces the way a client would."""
    result = Assembled()
    calls: dict[int, dict[str, Any]] = {}
    for event in events:
        result.types.append(event.type)
        data = event.data
        if event.type == "delta":
            result.text += data["text"]
        elif event.type == "reasoning":
            result.reasoning += data["text"]
        elif event.type == "tool_call":
            call = calls.setdefault(data["index"], {"id": None, "name": None, "arguments": ""})
            if "id" in data:
                call["id"] = data["id"]
            if "name" in data:
                call["name"] = data["name"]
            call["arguments"] += data["arguments"]
        elif event.type == "usage":
            result.usage = {**(result.usage or {}), **data}
        elif event.is_terminal:
            result.terminal = event
    result.tool_calls = [calls[i] for i in sorted(calls)]
    return result


def check_invariants(events: list[Event]) -> None:
    """Rules every stream obeys, whatever the adapter (the edge adds ``created`` in front)."""
    types = [e.type for e in events]
    terminals = [i for i, t in enumerate(types) if t in ("end", "error")]
    assert len(terminals) == 1, f"exactly one terminal event expected: {types}"
    assert terminals[0] == len(types) - 1, f"terminal event must be last: {types}"
    assert "created" not in types, "created belongs to the edge"
    assert types.count("thinking") <= 1 and types.count("clear") <= 1, types
    if "clear" in types:
        first_visible = next(
            (i for i, t in enumerate(types) if t in ("delta", "tool_call")), len(types)
        )
        assert types.index("clear") < first_visible, types
    for e in events:
        if e.type in CONTENT_TYPES and e.type != "tool_call":
            assert isinstance(e.data["text"], str) and e.data["text"] != "", e
        if e.type == "end":
            assert e.data["reason"] in ("stop", "length", "tool_calls", "content_filter", "other")
        if e.type == "error":
            assert {"code", "message", "retryable"} <= set(e.data), e
    if "tool_call" in types and types[-1] == "end":
        assert events[-1].data["reason"] == "tool_calls", events[-1]
