"""The protocol guard: what the pipeline guarantees whatever an adapter emits."""

from __future__ import annotations

import pytest

from gateway import events as ev
from gateway.adapters.base import Adapter, Translator, UpstreamRequest
from gateway.config.model import UpstreamConfig
from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.events import Event
from gateway.framing import Message
from gateway.pipeline import Pipeline
from gateway.request import ChatRequest


class Scripted(Translator):
    """Emits, for each NDJSON line, the events named in it (a test double for any adapter)."""

    def feed(self, message: Message) -> list[Event]:
        out: list[Event] = []
        for word in message.data.split():
            if word == "raise":
                raise UpstreamProtocolError("bad data")
            if word == "provider_error":
                self.finished = True
                raise UpstreamError("overloaded", retryable=True, provider_type="overloaded_error")
            out.append(_EVENTS[word]())
            if word in ("end", "error"):
                self.finished = True
        return out


_EVENTS = {
    "created": lambda: ev.created("x", "r", "p", None),
    "thinking": ev.thinking,
    "clear": ev.clear,
    "delta": lambda: ev.delta("hi"),
    "reasoning": lambda: ev.reasoning("hm"),
    "tool": lambda: ev.tool_call(0, "{}", id="c1", name="f"),
    "usage": lambda: ev.usage(output_tokens=3),
    "end": lambda: ev.end("stop", "done"),
    "length": lambda: ev.end("length"),
    "error": lambda: ev.error("upstream_error", "boom", False),
}


class ScriptedAdapter(Adapter):
    name = "scripted"
    framing = "ndjson"

    def build_request(self, request: ChatRequest) -> UpstreamRequest:  # pragma: no cover
        raise NotImplementedError

    def new_translator(self) -> Translator:
        return Scripted()


def run(*lines: str, accepted: bool = True, close: bool = True) -> list[Event]:
    pipe = Pipeline(ScriptedAdapter(UpstreamConfig(), {}))
    out = pipe.accepted() if accepted else []
    for line in lines:
        out += pipe.feed(line.encode() + b"\n")
    if close:
        out += pipe.close()
    return out


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def test_thinking_once_and_clear_before_first_visible_output() -> None:
    got = run("thinking reasoning", "thinking delta delta", "end")
    assert types(got) == ["thinking", "reasoning", "clear", "delta", "delta", "end"]


def test_an_adapter_clear_is_kept_once() -> None:
    assert types(run("clear clear delta", "clear delta end")) == [
        "thinking",
        "clear",
        "delta",
        "delta",
        "end",
    ]


def test_clear_precedes_a_tool_call_and_the_end_reason_becomes_tool_calls() -> None:
    got = run("tool", "usage end")
    assert types(got) == ["thinking", "clear", "tool_call", "usage", "end"]
    assert got[-1].data == {"reason": "tool_calls", "provider_reason": "done"}


def test_length_is_not_rewritten_by_a_tool_call() -> None:
    assert run("tool length")[-1].data["reason"] == "length"


def test_nothing_follows_the_terminal_event() -> None:
    got = run("delta end delta", "delta error")
    assert types(got) == ["thinking", "clear", "delta", "end"]


def test_created_from_an_adapter_is_dropped() -> None:
    assert "created" not in types(run("created delta end"))


def test_eof_without_terminator_is_upstream_truncated() -> None:
    got = run("delta delta")
    assert got[-1].type == "error"
    assert got[-1].data["code"] == "upstream_truncated" and got[-1].data["retryable"] is True
    assert types(got).count("error") == 1


def test_raised_gateway_errors_become_the_terminal_event() -> None:
    got = run("delta", "raise", "delta end")
    assert got[-1].data["code"] == "upstream_protocol"
    assert types(got) == ["thinking", "clear", "delta", "error"]
    provider = run("delta", "provider_error")[-1]
    assert provider.data == {
        "code": "upstream_error",
        "message": "overloaded",
        "retryable": True,
        "type": "overloaded_error",
    }


def test_fail_ends_the_stream_once() -> None:
    pipe = Pipeline(ScriptedAdapter(UpstreamConfig(), {}))
    pipe.feed(b"delta\n")
    first = pipe.fail(UpstreamError("x"))
    assert types(first) == ["error"] and pipe.done
    assert (
        pipe.fail(UpstreamError("y")) == []
        and pipe.feed(b"delta end\n") == []
        and pipe.close() == []
    )


@pytest.mark.parametrize("split", range(1, 18))
def test_any_split_of_the_bytes_gives_the_same_events(split: int) -> None:
    data = b"thinking reasoning\ndelta\ntool usage end\n"
    pipe = Pipeline(ScriptedAdapter(UpstreamConfig(), {}))
    got = pipe.feed(data[:split]) + pipe.feed(data[split:]) + pipe.close()
    assert [(e.type, e.data) for e in got] == [
        (e.type, e.data) for e in run(data.decode(), accepted=False)
    ]


def test_a_subclass_that_overrides_message_sees_every_message() -> None:
    seen: list[str] = []

    class Counting(Pipeline):
        def _message(self, message: Message, out: list[Event]) -> None:
            seen.append(message.data)
            super()._message(message, out)

    assert Counting.hooked and not Pipeline.hooked
    pipe = Counting(ScriptedAdapter(UpstreamConfig(), {}))
    got = pipe.feed(b"delta\ndelta end\ndelta\n")
    assert seen == ["delta", "delta end"]  # nothing after the terminal message
    assert types(got) == ["clear", "delta", "delta", "end"]
