"""The mapped adapter: configs that could never end, and values of an unexpected type."""

from __future__ import annotations

import json
from typing import Any

from gateway.adapters.mapped import MappedAdapter
from gateway.events import Event
from gateway.request import parse_request
from tests.adapters.harness import make_adapter, replay_checked


def errors_for(options: Any) -> list[str]:
    parsed, errors = MappedAdapter.parse_options(options, "routes[0].options")
    assert (parsed == {}) == bool(errors)
    return errors


def options(framing: str = "sse", **events: Any) -> dict[str, Any]:
    return {"framing": framing, "request": {"body": {}}, "events": events}


def mapped(opts: dict[str, Any], **upstream: Any) -> MappedAdapter:
    a = make_adapter(MappedAdapter, opts, base_url="http://upstream.test", **upstream)
    assert isinstance(a, MappedAdapter)
    return a


def run(opts: dict[str, Any], *objs: Any) -> list[Event]:
    data = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs)
    return replay_checked(mapped(opts), [data + b"data: [DONE]\n\n"])


# --- configs that can never end normally ---------------------------------------------------


def test_a_terminator_that_sets_nothing_is_an_error() -> None:
    opts = options(text="t", finish_reason={"path": "f"}, terminator={"eof_after_finish": False})
    assert errors_for(opts) == [
        "routes[0].options.events.terminator: give data, type, path (+ equals) or eof_after_finish"
    ]


def test_eof_after_finish_needs_a_finish_reason() -> None:
    message = "needs events.finish_reason (EOF ends normally only after a finish reason)"
    assert errors_for(options(text="t", terminator="eof_after_finish")) == [
        f"routes[0].options.events.terminator: {message}"
    ]
    assert errors_for(options(text="t", terminator={"eof_after_finish": True})) == [
        f"routes[0].options.events.terminator.eof_after_finish: {message}"
    ]


def test_sse_event_types_need_sse_framing() -> None:
    opts = options(
        "ndjson",
        type_path="sse_event",
        text={"path": "t", "types": ["tok"]},
        terminator={"type": "end"},
    )
    assert errors_for(opts) == [
        "routes[0].options.events.type_path: sse_event needs framing sse or sse+raw"
        " (ndjson has no event names)"
    ]
    assert not errors_for({**opts, "framing": "sse+raw"})


def test_a_non_ascii_digit_segment_is_a_key() -> None:
    parsed, errors = MappedAdapter.parse_options(
        options(text="choices.²", terminator={"data": "x"}), "o"
    )
    assert not errors
    assert parsed["spec"].text[0].paths == (("choices", "²"),)


# --- request templates -----------------------------------------------------------------------


def test_unset_model_in_a_header_is_empty() -> None:
    opts = {
        "request": {"headers": {"x-m": "m={model}"}, "body": {}},
        "events": {"text": "t", "terminator": {"data": "x"}},
    }
    req = mapped(opts).build_request(
        parse_request({"messages": [{"role": "user", "content": "hi"}]})
    )
    assert req.headers["x-m"] == "m="


def test_lists_inside_a_string_are_json() -> None:
    opts = {
        "request": {"body": {"q": "stop={stop} max={max_tokens} t={temperature}"}},
        "events": {"text": "t", "terminator": {"data": "x"}},
    }
    req = mapped(opts).build_request(
        parse_request(
            {
                "messages": [{"role": "user", "content": "hi"}],
                "stop": ["x", "é"],
                "max_tokens": 5,
                "temperature": 0.5,
            }
        )
    )
    assert json.loads(req.body) == {"q": 'stop=["x","é"] max=5 t=0.5'}


# --- values of an unexpected type -----------------------------------------------------------


def test_error_message_is_the_first_string_at_message_path() -> None:
    opts = options(
        text="t",
        error={"path": "err", "message_path": ["err.message", "err.detail"]},
        terminator={"data": "[DONE]"},
    )
    events = run(opts, {"err": {"message": 42, "detail": "real reason"}})
    assert events[-1] == Event(
        "error", {"code": "upstream_error", "message": "real reason", "retryable": False}
    )


def test_a_numeric_finish_reason_is_compared_as_text() -> None:
    opts = options(
        text="t", finish_reason={"path": "f", "map": {1: "length"}}, terminator={"data": "[DONE]"}
    )
    events = run(opts, {"t": "a", "f": 1})
    assert events[-1] == Event("end", {"reason": "length", "provider_reason": "1"})


def test_usage_takes_the_first_integer() -> None:
    opts = options(text="t", usage={"input_tokens": ["u.a", "u.b"]}, terminator={"data": "[DONE]"})
    events = run(opts, {"t": "a", "u": {"a": "7", "b": 7}})
    assert Event("usage", {"input_tokens": 7}) in events
