"""What an OpenAI fixture's ``.expected.json`` means in token-protocol terms (shared by the tests).

The expected files describe the upstream scenario (text, refusal, tool calls, the provider's
finish reason, error, usage). The normalisation below follows the protocols README section 0.4
table and contract section 5, written independently of the adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.adapters.base import Adapter
from gateway.events import USAGE_FIELDS
from tests.adapters.harness import (
    FIXTURES,
    Assembled,
    assemble,
    fixture_bytes,
    fixture_expected,
    make_adapter,
    replay_every_split,
)

# The common request both OpenAI adapters' exact-body tests send (and the SDK-type checks).
COMMON_BODY: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}
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
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
    "reasoning": {"effort": "medium"},
    "metadata": {"trace": "never forwarded"},
}

RETRYABLE = {"server_error", "rate_limit_exceeded"}


def fixture_names(*prefixes: str) -> list[str]:
    """Every ``<prefix>*.sse`` fixture that has an expected file, sorted."""
    names = {
        p.name
        for prefix in prefixes
        for p in Path(FIXTURES).glob(f"{prefix}*.sse")
        if (p.parent / f"{p.name}.expected.json").exists()
    }
    return sorted(names)


def _responses_end(exp: dict[str, Any]) -> tuple[str, str]:
    status = exp["finish_reason"]
    if status == "incomplete":
        why = (exp.get("incomplete_details") or {}).get("reason")
        return {"max_output_tokens": "length", "content_filter": "content_filter"}.get(
            why, "other"
        ), why
    assert status == "completed", status
    if exp["tool_calls"]:
        return "tool_calls", status
    return ("content_filter" if exp["refusal"] else "stop"), status


def _chat_end(exp: dict[str, Any]) -> tuple[str, str]:
    finish = exp["finish_reason"]
    reason = {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_calls",
        "function_call": "tool_calls",
        "content_filter": "content_filter",
    }.get(finish, "other")
    if reason == "stop" and exp["refusal"]:
        reason = "content_filter"
    return reason, finish


def check_terminal(result: Assembled, exp: dict[str, Any]) -> None:
    """Error beats finish reason; neither (or ``truncated``: no terminator) means cut off."""
    terminal = result.terminal
    assert terminal is not None
    error = exp["error"]
    if exp.get("truncated"):
        assert terminal.type == "error", terminal
        assert terminal.data["code"] == "upstream_truncated"
    elif error is not None:
        assert terminal.type == "error", terminal
        assert terminal.data["code"] == "upstream_error"
        assert terminal.data["message"] == error["message"]
        kind = error.get("code") or error.get("type")
        assert terminal.data.get("type") == kind
        assert terminal.data["retryable"] is (kind in RETRYABLE)
    elif exp["finish_reason"] is not None:
        responses = exp["protocol"].startswith("openai.responses")
        reason, provider_reason = (_responses_end if responses else _chat_end)(exp)
        assert terminal.type == "end", terminal
        assert terminal.data == {"reason": reason, "provider_reason": provider_reason}
    else:
        assert terminal.type == "error", terminal
        assert terminal.data["code"] == "upstream_truncated"
        assert terminal.data["retryable"] is True


def check_usage(result: Assembled, exp: dict[str, Any]) -> None:
    """``usage_normalized`` fields the protocol carries; ``null`` means unknown, i.e. omitted."""
    normalized = exp["usage_normalized"]
    if normalized is None or exp["error"] is not None or exp.get("truncated"):
        assert result.usage is None, result.usage
        return
    wanted = {k: normalized[k] for k in USAGE_FIELDS if normalized.get(k) is not None}
    assert result.usage == wanted


def check_fixture(result: Assembled, exp: dict[str, Any]) -> None:
    """Text (refusal included: it streams as visible text), reasoning, tool calls, usage, end."""
    assert result.text == exp["text"] + exp["refusal"]
    assert result.reasoning == exp["reasoning"]
    calls = [{k: c[k] for k in ("id", "name", "arguments")} for c in exp["tool_calls"]]
    assert result.tool_calls == calls
    check_usage(result, exp)
    check_terminal(result, exp)


def check_fixture_at_every_split(cls: type[Adapter], name: str) -> None:
    """Replay fixture ``name`` through ``cls`` at every split; :func:`check_fixture` each time."""
    expected = fixture_expected(name)
    for label, events in replay_every_split(make_adapter(cls), fixture_bytes(name)):
        try:
            check_fixture(assemble(events), expected)
        except AssertionError as exc:
            raise AssertionError(f"{name} split {label}: {exc}") from exc
