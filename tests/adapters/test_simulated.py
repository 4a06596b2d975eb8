"""The built-in ``simulated`` provider (docs/adapters/simulated.md): its options, end to end
through the real pipeline, at every way its NDJSON could be split."""

from __future__ import annotations

from typing import Any

from gateway.adapters.base import LocalScript
from gateway.adapters.simulated import SimulatedAdapter
from gateway.request import parse_request
from tests.adapters.harness import assemble, make_adapter, replay_every_split


def play(options: dict[str, Any], body: dict[str, Any] | None = None) -> tuple[Any, LocalScript]:
    adapter = make_adapter(SimulatedAdapter, options)
    request = parse_request(body or {"messages": [{"role": "user", "content": "Hello"}]})
    script = adapter.build_request(request)
    assert isinstance(script, LocalScript)
    data = b"".join(chunk for _, chunk in script.chunks)
    results = [assemble(events) for _, events in replay_every_split(adapter, data)]
    assert all(r == results[0] for r in results)
    return results[0], script


def test_a_configured_text_and_reasoning_stream_at_the_configured_pace() -> None:
    got, script = play(
        {
            "text": "Héllo 🙂 wörld",
            "reasoning": "Let me think.",
            "first_token_delay": "250ms",
            "token_interval": "20ms",
        }
    )
    assert got.text == "Héllo 🙂 wörld"
    assert got.reasoning == "Let me think."
    assert got.terminal is not None and got.terminal.data["reason"] == "stop"
    assert got.usage == {"input_tokens": 1, "output_tokens": 6, "reasoning_tokens": 3}
    delays = [d for d, _ in script.chunks]
    assert delays[0] == 0.25 and set(delays[1:]) == {0.02}


def test_the_generated_text_is_deterministic_and_does_not_loop_over_a_few_words() -> None:
    first, _ = play({"words": 80})
    again, _ = play({"words": 80})
    assert first.text == again.text
    words = first.text.rstrip(".").lower().split()
    assert len(words) == 80
    # It used to repeat the same 8 words ten times over.
    assert len(set(words)) > 30
    assert words[:8] != words[8:16]


def test_max_tokens_cuts_the_answer_with_reason_length() -> None:
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5}
    generated, _ = play({"words": 80}, body)
    assert len(generated.text.split()) == 5
    assert generated.terminal is not None and generated.terminal.data["reason"] == "length"
    assert generated.usage is not None and generated.usage["output_tokens"] == 5
    configured, _ = play({"text": "one two three four five six seven"}, body)
    assert configured.text == "one two three four five "
    assert configured.terminal is not None and configured.terminal.data["reason"] == "length"
    fits, _ = play({"text": "one two"}, body)
    assert fits.terminal is not None and fits.terminal.data["reason"] == "stop"


def test_echo_answers_with_the_last_user_message() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "naïve 日本語 👩‍👩‍👧"},
        ]
    }
    got, _ = play({"echo": True}, body)
    assert got.text == "naïve 日本語 👩‍👩‍👧"


def test_fail_after_and_truncate_after_for_demos() -> None:
    failed, _ = play({"text": "a b c d e", "fail_after": 2})
    assert failed.text == "a b "
    assert failed.terminal is not None and failed.terminal.type == "error"
    assert failed.terminal.data["code"] == "upstream_error"
    cut, _ = play({"text": "a b c d e", "truncate_after": 3})
    assert cut.text == "a b c "
    assert cut.terminal is not None and cut.terminal.data["code"] == "upstream_truncated"
