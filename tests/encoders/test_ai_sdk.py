"""The ``ai-sdk`` encoder (UI message stream v1) without a server; tests/js runs the real SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import events as ev
from gateway.encoders import ENCODERS
from gateway.encoders.ai_sdk import AISDKEncoder, AISDKFinishReasonEncoder
from gateway.events import Event
from gateway.frontdoor.ui_messages import from_ui_messages
from tests.support.gateway import config_from

ROUTE = config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0]
NASTY = "a\nb\rc\r\nd\u2028e\u2029f\x85g"


def run(events: list[Event], cls: type[AISDKEncoder] = AISDKEncoder) -> tuple[bytes, list[Any]]:
    enc = cls(ROUTE, "rid42")
    raw = b"".join(enc.encode(e) for e in events) + enc.close()
    return raw, frames(raw)


def frames(raw: bytes) -> list[Any]:
    """Strict data-only SSE: every block is exactly one ``data:`` line."""
    text = raw.decode()
    assert text.endswith("\n\n")
    out = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block and "\r" not in block, block
        payload = block[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def stream(*middle: Event, terminal: Event | None = None) -> list[Event]:
    return [
        ev.created("rid42", "r", "simulated", None),
        ev.thinking(),
        *middle,
        terminal or ev.end("stop"),
    ]


def test_registered_with_headers() -> None:
    assert ENCODERS["ai-sdk"] is AISDKEncoder
    assert ENCODERS["ai-sdk-finish-reason"] is AISDKFinishReasonEncoder
    assert AISDKEncoder.extra_headers == {"x-vercel-ai-ui-message-stream": "v1"}
    assert AISDKEncoder.content_type.startswith("text/event-stream")


def test_text_and_reasoning_parts() -> None:
    _, got = run(
        stream(
            ev.reasoning("Let me "),
            ev.reasoning("think."),
            ev.clear(),
            ev.delta("Hello"),
            ev.delta(" world"),
            ev.usage(input_tokens=3, output_tokens=4),
        )
    )
    assert got == [
        {"type": "start", "messageId": "msg_rid42"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning_1"},
        {"type": "reasoning-delta", "id": "reasoning_1", "delta": "Let me "},
        {"type": "reasoning-delta", "id": "reasoning_1", "delta": "think."},
        {"type": "reasoning-end", "id": "reasoning_1"},
        {"type": "text-start", "id": "text_2"},
        {"type": "text-delta", "id": "text_2", "delta": "Hello"},
        {"type": "text-delta", "id": "text_2", "delta": " world"},
        {"type": "text-end", "id": "text_2"},
        {"type": "finish-step"},
        {"type": "finish"},
        "[DONE]",
    ]


def test_tool_calls_stream_then_become_available() -> None:
    _, got = run(
        stream(
            ev.delta("Checking."),
            ev.tool_call(0, '{"city": "Ro', id="call_a", name="weather"),
            ev.tool_call(1, "", id="call_b", name="time"),
            ev.tool_call(0, 'me"}'),
            ev.tool_call(1, "not json"),
            terminal=ev.end("tool_calls"),
        )
    )
    types = [f["type"] if isinstance(f, dict) else f for f in got]
    assert types == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "tool-input-available",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert got[5] == {"type": "tool-input-start", "toolCallId": "call_a", "toolName": "weather"}
    assert got[6] == {
        "type": "tool-input-delta",
        "toolCallId": "call_a",
        "inputTextDelta": '{"city": "Ro',
    }
    assert got[10] == {
        "type": "tool-input-available",
        "toolCallId": "call_a",
        "toolName": "weather",
        "input": {"city": "Rome"},
    }
    # Arguments that are not JSON are handed over as text (5.0.0 has no tool-input-error).
    assert got[11]["input"] == "not json"


def test_text_after_a_tool_call_completes_the_call_first() -> None:
    _, got = run(stream(ev.tool_call(0, "{}", id="c", name="f"), ev.delta("done")))
    types = [f["type"] for f in got[:-1]]
    assert types.index("tool-input-available") < types.index("text-start")
    assert got[types.index("tool-input-available")]["input"] == {}


def test_error_follows_the_sdk_server() -> None:
    _, got = run(
        stream(
            ev.delta("Partial"),
            ev.tool_call(0, '{"x"', id="c", name="f"),
            terminal=ev.error("upstream_error", "boom", True),
        )
    )
    assert got[-4:] == [
        {"type": "error", "errorText": "boom"},
        {"type": "finish-step"},
        {"type": "finish"},
        "[DONE]",
    ]
    assert not any(f.get("type") == "tool-input-available" for f in got[:-1])


@pytest.mark.parametrize(
    ("reason", "wire"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool-calls"),
        ("content_filter", "content-filter"),
        ("other", "other"),
    ],
)
def test_finish_reason_only_in_the_variant(reason: str, wire: str) -> None:
    _, plain = run(stream(terminal=ev.end(reason)))  # type: ignore[arg-type]
    assert plain[-2] == {"type": "finish"}
    _, later = run(stream(terminal=ev.end(reason)), AISDKFinishReasonEncoder)  # type: ignore[arg-type]
    assert later[-2] == {"type": "finish", "finishReason": wire}


def test_error_finish_reason_in_the_variant() -> None:
    _, got = run(stream(terminal=ev.error("internal", "x", False)), AISDKFinishReasonEncoder)
    assert got[-2] == {"type": "finish", "finishReason": "error"}


def test_payload_newlines_can_never_break_a_frame() -> None:
    raw, got = run(
        stream(
            ev.reasoning(NASTY),
            ev.delta(NASTY),
            ev.tool_call(0, json.dumps({"t": NASTY}), id="c\n1", name="f\r"),
            terminal=ev.error("upstream_error", NASTY, True),
        )
    )
    deltas = [f["delta"] for f in got if isinstance(f, dict) and "delta" in f]
    assert deltas == [NASTY, NASTY]
    assert got[-4]["errorText"] == NASTY
    assert raw.count(b"\n\n") == len(got)


def test_heartbeat_is_a_comment() -> None:
    assert AISDKEncoder(ROUTE, "x").heartbeat() == b": ping\n\n"


def test_fixture_shapes_match_the_reference() -> None:
    """Every part type we emit appears with the same keys in the shared reference fixture."""
    from pathlib import Path

    ref = Path(__file__).resolve().parents[1] / "fixtures" / "vercel_ui_message_stream.sse"
    keys = {f["type"]: set(f) for f in frames(ref.read_bytes()) if isinstance(f, dict)}
    _, got = run(
        stream(
            ev.reasoning("r"),
            ev.tool_call(0, "{}", id="c", name="f"),
            ev.delta("t"),
        )
    )
    for frame in got:
        if isinstance(frame, dict) and frame["type"] != "finish":
            assert set(frame) == keys[frame["type"]], frame


def test_ui_messages_become_the_common_request() -> None:
    body = {
        "id": "chat",
        "trigger": "submit-message",
        "messageId": None,
        "messages": [
            {"id": "1", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
            {
                "id": "2",
                "role": "user",
                "parts": [
                    {"type": "text", "text": "Weather "},
                    {"type": "text", "text": "in Rome?"},
                ],
            },
            {
                "id": "3",
                "role": "assistant",
                "parts": [
                    {"type": "step-start"},
                    {"type": "reasoning", "text": "hmm"},
                    {
                        "type": "tool-weather",
                        "toolCallId": "c1",
                        "state": "output-available",
                        "input": {"city": "Rome"},
                        "output": {"sky": "clear"},
                    },
                    {"type": "text", "text": "Clear."},
                ],
            },
        ],
        "temperature": 0.5,
    }
    assert from_ui_messages(body) == {
        "temperature": 0.5,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Rome?"},
            {
                "role": "assistant",
                "content": "Clear.",
                "tool_calls": [{"id": "c1", "name": "weather", "arguments": '{"city":"Rome"}'}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"sky":"clear"}'},
        ],
    }


def test_common_bodies_pass_unchanged() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "id": "kept"}
    assert from_ui_messages(body) is body
    assert from_ui_messages([1]) == [1]
