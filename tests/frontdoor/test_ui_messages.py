"""``useChat`` bodies: every tool call the model made gets its result, as providers require.

The AI SDK's ``convertToModelMessages`` answers a failed client tool (state ``output-error``)
with its ``errorText`` and a denied one (``output-denied``) with the approval's reason; the
gateway's mapping of the same body must too, or the upstream gets an assistant ``tool_calls``
with no ``tool`` message after it (a 400 from OpenAI and Anthropic).
"""

from __future__ import annotations

from typing import Any

from gateway.frontdoor.ui_messages import from_ui_messages
from gateway.request import parse_request


def tool_part(call_id: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"type": "tool-weather", "toolCallId": call_id, "state": state, **extra}


def body(*parts: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chat",
        "trigger": "submit-message",
        "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather?"}]},
            {"id": "a1", "role": "assistant", "parts": [{"type": "step-start"}, *parts]},
            {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Again"}]},
        ],
    }


def test_failed_and_denied_calls_get_their_results() -> None:
    mapped = from_ui_messages(
        body(
            tool_part("c1", "output-available", input={"city": "Rome"}, output={"t": 20}),
            tool_part("c2", "output-error", input={"city": "Oslo"}, errorText="service down"),
            tool_part("c3", "output-denied", input={"city": "Bern"}, approval={"id": "a"}),
            tool_part(
                "c4", "output-denied", input={}, approval={"id": "b", "reason": "not allowed"}
            ),
        )
    )
    chat = parse_request(mapped)
    assert [m.role for m in chat.messages] == ["user", "assistant", *["tool"] * 4, "user"]
    assert [c.id for c in chat.messages[1].tool_calls] == ["c1", "c2", "c3", "c4"]
    results = [(m.tool_call_id, m.content) for m in chat.messages[2:6]]
    assert results == [
        ("c1", '{"t":20}'),
        ("c2", "service down"),
        ("c3", "Tool call execution denied."),
        ("c4", "not allowed"),
    ]


def test_a_call_still_waiting_has_no_result() -> None:
    mapped = from_ui_messages(body(tool_part("c1", "input-available", input={"city": "Rome"})))
    chat = parse_request(mapped)
    assert [m.role for m in chat.messages] == ["user", "assistant", "user"]
    assert chat.messages[1].tool_calls[0].id == "c1"
