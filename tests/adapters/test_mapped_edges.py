"""The mapped adapter: configs that could never end, and values of an unexpected type."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.adapters.mapped import MappedAdapter
from gateway.config.model import UpstreamConfig
from gateway.errors import ConfigError, InvalidRequest
from gateway.events import Event
from gateway.request import ChatRequest, parse_request
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


# --- the done condition and error mapping -----------------------------------------------------

SSE_TYPED = options(
    type_path="sse_event", text={"path": "t", "types": ["token"]}, terminator={"type": "done"}
)


def test_an_sse_terminator_event_with_empty_data_ends_the_stream() -> None:
    # ``data:`` with nothing after it dispatches an event whose data is "": its SSE type alone
    # says the stream is complete (terminator.data cannot be empty, so nothing else could).
    data = b'event: token\ndata: {"t":"hi"}\n\nevent: done\ndata:\n\n'
    for cut in range(len(data) + 1):
        events = replay_checked(mapped(SSE_TYPED), [data[:cut], data[cut:]])
        assert events[-2:] == [Event("delta", {"text": "hi"}), Event("end", {"reason": "other"})]


def test_an_sse_terminator_event_whose_data_is_not_json_ends_the_stream() -> None:
    data = b'event: token\ndata: {"t":"hi"}\n\nevent: done\ndata: [DONE]\n\n'
    assert replay_checked(mapped(SSE_TYPED), [data])[-1] == Event("end", {"reason": "other"})
    # Any other event that is not JSON is still malformed.
    bad = b"event: token\ndata: [DONE]\n\n"
    assert replay_checked(mapped(SSE_TYPED), [bad])[-1].data["code"] == "upstream_protocol"


def test_empty_data_of_another_type_is_still_skipped() -> None:
    data = b"event: token\ndata:\n\nevent: ping\ndata:\n\n"
    assert replay_checked(mapped(SSE_TYPED), [data])[-1].data["code"] == "upstream_truncated"


def test_a_constant_error_type_can_be_retryable() -> None:
    opts = options(
        text="t",
        error={"path": "busy", "type": "overloaded", "retryable_types": ["overloaded"]},
        terminator={"data": "[DONE]"},
    )
    assert run(opts, {"busy": True})[-1] == Event(
        "error",
        {
            "code": "upstream_error",
            "message": "the upstream reported an error",
            "retryable": True,
            "type": "overloaded",
        },
    )
    # A type found at type_path decides alone, as documented.
    typed = options(
        text="t",
        error={
            "path": "busy",
            "type_path": "kind",
            "type": "overloaded",
            "retryable_types": ["overloaded"],
        },
        terminator={"data": "[DONE]"},
    )
    assert run(typed, {"busy": True, "kind": "invalid"})[-1].data["retryable"] is False


# --- configs that would silently never apply ------------------------------------------------------


def test_equals_null_is_an_error() -> None:
    # A null at a path counts as absent (alternatives go past it), so equals: null never matched.
    terminator = options(text="t", terminator={"path": "next", "equals": None})
    assert errors_for(terminator) == [
        "routes[0].options.events.terminator.equals: must not be null"
        " (a null value counts as absent)"
    ]
    error = options(text="t", error={"path": "e", "equals": None}, terminator={"data": "x"})
    assert errors_for(error) == [
        "routes[0].options.events.error.equals: must not be null (a null value counts as absent)"
    ]


def test_empty_rule_lists_are_errors() -> None:
    assert errors_for(options(text=[], reasoning="r", terminator={"data": "x"})) == [
        "routes[0].options.events.text: must be a path, a mapping with path,"
        " or a non-empty list of them"
    ]
    assert errors_for(options(text="t", error=[], terminator={"data": "x"})) == [
        "routes[0].options.events.error: must be a rule or a non-empty list of rules"
    ]
    no_types = options(type_path="type", text={"path": "t", "types": []}, terminator={"data": "x"})
    assert errors_for(no_types) == [
        "routes[0].options.events.text.types: must be a non-empty list of event type names"
    ]


# --- values that reach a header ---------------------------------------------------------------

MODEL_HEADER = {
    "request": {"headers": {"x-model": "{model}"}, "body": {"model": "{model}"}},
    "events": {"text": "t", "terminator": {"data": "x"}},
}


def with_model(model: str) -> ChatRequest:
    return parse_request({"messages": [{"role": "user", "content": "hi"}], "model": model})


def test_a_model_a_header_cannot_carry_is_a_400_not_a_crash() -> None:
    # Sent as is, it made the HTTP client fail to encode the request head: a 500 and a traceback.
    with pytest.raises(InvalidRequest, match=r"^model: must not contain characters outside"):
        mapped(MODEL_HEADER).build_request(with_model("модель"))
    assert mapped(MODEL_HEADER).build_request(with_model("modèle")).headers["x-model"] == "modèle"
    # Only the body carries it: any text will do.
    body_only = {**MODEL_HEADER, "request": {"body": {"model": "{model}"}}}
    req = mapped(body_only).build_request(with_model("модель"))
    assert json.loads(req.body) == {"model": "модель"}


def test_credentials_and_models_a_header_cannot_carry_are_config_errors() -> None:
    parsed, errors = MappedAdapter.parse_options(MODEL_HEADER, "o")
    assert not errors
    with pytest.raises(ConfigError, match=r"^upstream.api_key: must not contain characters"):
        MappedAdapter(UpstreamConfig(base_url="http://x", api_key="ключ"), parsed)
    with pytest.raises(ConfigError, match=r"^upstream.model: must not contain characters"):
        MappedAdapter(UpstreamConfig(base_url="http://x", model="модель"), parsed)
