"""Contract check shared by the native-protocol adapter tests: one fixture, every split.

Each fixture's ``.expected.json`` gives the assembled text, reasoning, tool calls and normalised
usage; the caller gives the terminal event it must end with (the normalisation under test).
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.base import Adapter
from tests.adapters.harness import (
    assemble,
    fixture_bytes,
    fixture_expected,
    make_adapter,
    replay_every_split,
)

# A common request touching every mapped field: system, developer, user, assistant tool calls,
# two consecutive tool results, tools, stop, max_tokens, effort, temperature.
CONVERSATION = {
    "model": "claude-x",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "toolu_1", "name": "weather", "arguments": '{"city": "Paris"}'},
                {"id": "toolu_2", "name": "weather", "arguments": '{"city": "Rome"}'},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "25C"},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
    "stop": ["END"],
    "max_tokens": 8000,
    "reasoning": {"effort": "medium"},
    "temperature": 0.5,
    "metadata": {"never": "forwarded"},
}


def expected_usage(expected: dict[str, Any]) -> dict[str, int] | None:
    """``usage_normalized`` without ``total_tokens`` (not in the protocol) and unknown fields."""
    normalized = expected.get("usage_normalized")
    if not normalized:
        return None
    usage = {k: v for k, v in normalized.items() if k != "total_tokens" and v is not None}
    return usage or None


def check_fixture(
    cls: type[Adapter], fixture: str, terminal: tuple[str, str], **error_fields: Any
) -> None:
    """Replay ``fixture`` at every split and compare with its expectation.

    ``terminal`` is ``("end", reason)`` or ``("error", code)``; ``error_fields`` are extra fields
    the error event must carry (``retryable``, ``type``, ``message``).
    """
    expected = fixture_expected(fixture)
    data = fixture_bytes(fixture)
    for how, events in replay_every_split(make_adapter(cls), data):
        got = assemble(events)
        where = f"{fixture} split {how}"
        assert got.text == expected["text"], where
        assert got.reasoning == expected["reasoning"], where
        assert len(got.tool_calls) == len(expected["tool_calls"]), where
        ids = set()
        for call, want in zip(got.tool_calls, expected["tool_calls"], strict=True):
            assert call["name"] == want["name"], where
            assert call["arguments"] == want["arguments"], where
            if want["id"] is not None:
                assert call["id"] == want["id"], where
            else:  # the provider sends none: a synthesised one, unique in the stream
                assert isinstance(call["id"], str) and call["id"].startswith("call_"), where
            ids.add(call["id"])
        assert len(ids) == len(got.tool_calls), where
        assert got.terminal is not None, where
        kind, value = terminal
        assert got.terminal.type == kind, (where, got.terminal)
        if kind == "end":
            assert got.terminal.data["reason"] == value, (where, got.terminal)
            assert got.terminal.data.get("provider_reason") == expected["finish_reason"], where
            assert got.usage == expected_usage(expected), where
        else:
            assert got.terminal.data["code"] == value, (where, got.terminal)
            for key, want_value in error_fields.items():
                assert got.terminal.data.get(key) == want_value, (where, key, got.terminal)
            assert got.usage is None, where  # a failed stream reports no usage
