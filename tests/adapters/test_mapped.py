"""The mapped adapter: YAML twins of built-in adapters give the same events, config errors, requests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.adapters import ADAPTERS
from gateway.adapters.base import Adapter
from gateway.adapters.mapped import MappedAdapter
from gateway.adapters.ollama import OllamaAdapter
from gateway.adapters.openai_chat import OpenAIChatAdapter
from gateway.config.model import UpstreamConfig
from gateway.errors import ConfigError, InvalidRequest
from gateway.events import Event
from gateway.request import parse_request
from tests.adapters.harness import (
    assemble,
    check_invariants,
    check_same_at_every_split,
    fixture_bytes,
    fixture_expected,
    make_adapter,
    replay,
    replay_checked,
)

DATA = Path(__file__).resolve().parent / "data"
DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters" / "mapped.md"


def twin_options(name: str) -> dict[str, Any]:
    options: dict[str, Any] = yaml.safe_load((DATA / f"mapped_{name}.yaml").read_text())
    return options


def mapped(options: dict[str, Any], **upstream: Any) -> MappedAdapter:
    upstream.setdefault("base_url", "http://upstream.test:8000/v1")
    a = make_adapter(MappedAdapter, options, **upstream)
    assert isinstance(a, MappedAdapter)
    return a


TWINS: list[tuple[str, type[Adapter], str]] = [
    ("openai_chat", OpenAIChatAdapter, "openai_chat_basic.sse"),
    ("openai_chat", OpenAIChatAdapter, "openai_chat_usage.sse"),
    ("openai_chat", OpenAIChatAdapter, "openai_chat_tool_calls.sse"),
    ("openai_chat", OpenAIChatAdapter, "openai_chat_error_midstream.sse"),
    ("openai_chat", OpenAIChatAdapter, "openai_compat_deepseek_reasoning.sse"),
    ("ollama", OllamaAdapter, "ollama_chat.ndjson"),
    ("ollama", OllamaAdapter, "ollama_generate.ndjson"),
    ("ollama", OllamaAdapter, "ollama_error_midstream.ndjson"),
]


@pytest.mark.exhaustive
@pytest.mark.parametrize(("twin", "builtin", "fixture"), TWINS)
def test_yaml_twin_matches_the_builtin_adapter_at_every_split(
    twin: str, builtin: type[Adapter], fixture: str
) -> None:
    data = fixture_bytes(fixture)
    ours = mapped(twin_options(twin))
    theirs = make_adapter(builtin, {}, base_url="http://x", model="m")
    reference = replay(theirs, [data])
    check_invariants(reference)
    assert len(reference) > 3
    check_same_at_every_split(ours, data, reference, every_cut=True)


@pytest.mark.parametrize(("twin", "builtin", "fixture"), TWINS)
def test_yaml_twin_matches_the_fixture_expectations(
    twin: str, builtin: type[Adapter], fixture: str
) -> None:
    expected = fixture_expected(fixture)
    got = assemble(replay(mapped(twin_options(twin)), [fixture_bytes(fixture)]))
    assert got.text == expected["text"]
    assert got.reasoning == expected["reasoning"]
    assert [(c["id"], c["name"], c["arguments"]) for c in got.tool_calls] == [
        (c["id"], c["name"], c["arguments"]) for c in expected["tool_calls"]
    ]
    assert got.terminal is not None
    assert (got.terminal.type == "error") == (expected["error"] is not None)


def _ndjson(*objs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


EXTRA_STREAMS: list[tuple[str, type[Adapter], bytes]] = [
    (
        "ollama",
        OllamaAdapter,
        _ndjson(
            {"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False},
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "a", "function": {"name": "f", "arguments": {"x": 1}}},
                        {"id": "b", "function": {"name": "g", "arguments": {}}},
                    ],
                },
                "done": False,
            },
            {"message": {"content": "!"}, "done": True, "done_reason": "length", "eval_count": 2},
        ),
    ),
    ("ollama", OllamaAdapter, _ndjson({"response": "x", "done": True})),
    ("ollama", OllamaAdapter, _ndjson({"response": "x", "done": False})),
    (
        "openai_chat",
        OpenAIChatAdapter,
        b'data: {"choices":[{"delta":{"refusal":"No."}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n',
    ),
    (
        "openai_chat",
        OpenAIChatAdapter,
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
        b'data: {"object":"error","message":"bad","type":"BadRequestError","code":503}\n\n',
    ),
    (
        "openai_chat",
        OpenAIChatAdapter,
        b'data: {"choices":[{"delta":{"reasoning":"r","reasoning_content":"r"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":"weird"}]}\n\n',
    ),
    ("openai_chat", OpenAIChatAdapter, b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'),
    ("openai_chat", OpenAIChatAdapter, b'data: {"error":"plain text"}\n\n'),
    ("openai_chat", OpenAIChatAdapter, b"data: [DONE]\n\n"),
]


@pytest.mark.parametrize(("twin", "builtin", "data"), EXTRA_STREAMS)
def test_yaml_twin_matches_on_edge_streams(twin: str, builtin: type[Adapter], data: bytes) -> None:
    reference = replay(make_adapter(builtin, {}, base_url="http://x", model="m"), [data])
    check_same_at_every_split(mapped(twin_options(twin)), data, reference)


def test_twin_yaml_is_the_one_documented() -> None:
    doc = DOC.read_text()
    for name in ("openai_chat", "ollama"):
        text = (DATA / f"mapped_{name}.yaml").read_text()
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert body.strip() in doc, f"docs/adapters/mapped.md must show {name}'s mapping verbatim"


def test_registered() -> None:
    assert ADAPTERS["mapped"] is MappedAdapter


# --- behaviour beyond the twins -----------------------------------------------------------

TYPED = {
    "request": {"path": "/stream", "body": {"q": "{prompt}"}},
    "events": {
        "type_path": "type",
        "text": {"path": "delta", "types": ["text-delta"]},
        "reasoning": {"path": "delta", "types": ["reasoning-delta"]},
        "usage": {"output_tokens": "usage.out", "types": ["finish"]},
        "finish_reason": {"path": "reason", "types": ["finish"], "map": {"done": "stop"}},
        "error": {"path": "errorText", "types": ["error"]},
        "terminator": {"type": "finish"},
    },
}


def sse(*objs: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs)


def run(options: dict[str, Any], data: bytes) -> list[Event]:
    return replay_checked(mapped(options), [data])


def test_typed_events_and_type_filters() -> None:
    events = run(
        TYPED,
        sse(
            {"type": "reasoning-delta", "delta": "think"},
            {"type": "text-delta", "delta": "Hi"},
            {"type": "other", "delta": "ignored"},
            {"type": "text-delta", "delta": 5},
            {"type": "finish", "reason": "done", "usage": {"out": 3}},
            {"type": "text-delta", "delta": "after the end"},
        ),
    )
    assert events == [
        Event("thinking", {}),
        Event("reasoning", {"text": "think"}),
        Event("clear", {}),
        Event("delta", {"text": "Hi"}),
        Event("usage", {"output_tokens": 3}),
        Event("end", {"reason": "stop", "provider_reason": "done"}),
    ]


def test_sse_event_field_as_the_type() -> None:
    options = {
        "request": {"body": {}},
        "events": {
            "type_path": "sse_event",
            "text": {"path": "t", "types": ["chunk"]},
            "error": {"path": "msg", "types": ["oops"], "type": "oops"},
            "terminator": {"type": "bye"},
        },
    }
    data = b'event: chunk\ndata: {"t":"a"}\n\nevent: other\ndata: {"t":"b"}\n\nevent: bye\ndata: {}\n\n'
    assert assemble(run(options, data)).text == "a"
    failed = run(
        options, b'event: chunk\ndata: {"msg":"x"}\n\nevent: oops\ndata: {"msg":"boom"}\n\n'
    )
    assert failed[-1] == Event(
        "error", {"code": "upstream_error", "message": "boom", "retryable": False, "type": "oops"}
    )


def test_missing_paths_and_non_strings_are_absent() -> None:
    options = {
        "request": {"body": {}},
        "events": {"text": "a.0.b", "terminator": {"path": "end", "equals": 1}},
    }
    events = run(
        options,
        sse(
            {"a": []},
            {"a": {"0": {"b": "dict key"}}},
            {"a": [{"b": None}]},
            {"a": "x"},
            {"a": [{"b": "y"}]},
            7,
            [1],
            {"end": 1},
        ),
    )
    assert assemble(events).text == "dict keyy"
    assert events[-1].type == "end" and events[-1].data == {"reason": "other"}


def test_non_json_is_a_protocol_error_and_empty_data_is_skipped() -> None:
    options = {
        "request": {"body": {}},
        "events": {"text": "t", "finish_reason": {"path": "f"}, "terminator": "eof_after_finish"},
    }
    assert run(options, b"data: {nope\n\n")[-1].data["code"] == "upstream_protocol"
    # eof_after_finish without any finish reason: truncated, never a clean end
    assert run(options, b"data: \n\n" + sse({"t": "x"}))[-1].data["code"] == "upstream_truncated"


def test_raw_side_channel_json_errors() -> None:
    options = {
        "framing": "sse+raw",
        "request": {"body": {}},
        "events": {
            "text": "t",
            "error": {
                "path": "error",
                "message_path": "error.message",
                "status_path": "error.code",
            },
            "finish_reason": {"path": "f"},
            "terminator": "eof_after_finish",
        },
    }
    data = (
        sse({"t": "a"})
        + b"not json\n\n"
        + b'{\n  "error": {"code": 503, "message": "overloaded"}\n}\n'
    )
    events = run(options, data)
    assert events[-1] == Event(
        "error", {"code": "upstream_error", "message": "overloaded", "retryable": True}
    )


def test_unmapped_finish_reason_is_other_and_refusal_is_content_filter() -> None:
    options = twin_options("openai_chat")
    events = run(
        options,
        sse({"choices": [{"delta": {"content": "a"}, "finish_reason": "x"}]}) + b"data: [DONE]\n\n",
    )
    assert events[-1].data == {"reason": "other", "provider_reason": "x"}


# --- requests --------------------------------------------------------------------------------

REQUEST = {
    "messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "first"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "user", "content": "last"},
    ],
    "max_tokens": 9,
    "tools": [
        {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}
    ],
}


def test_request_from_the_openai_twin() -> None:
    req = mapped(twin_options("openai_chat"), api_key="sk-1", model="m1").build_request(
        parse_request(REQUEST)
    )
    assert req.method == "POST"
    assert req.url == "http://upstream.test:8000/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-1"
    assert req.headers["accept"] == "text/event-stream"
    body = json.loads(req.body)
    assert body == {
        "model": "m1",
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "first"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}],
            },
            {"role": "tool", "content": "r", "tool_call_id": "c1"},
            {"role": "user", "content": "last"},
        ],
        "max_tokens": 9,
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_request_placeholders_inline_and_unset() -> None:
    options = {
        "framing": "ndjson",
        "request": {
            "method": "PUT",
            "path": "/models/{model}/run",
            "headers": {"x-key": "k={api_key}", "x-model": "{model} {{literal}}"},
            "body": {
                "prompt": "{prompt}",
                "system": "{system}",
                "text": "{messages_text}",
                "label": "model={model}, temp={temperature}",
                "list": ["{temperature}", "{max_tokens}", "{stop}"],
                "keep": [1, None, True, 2.5],
            },
        },
        "events": {"text": "t", "terminator": {"path": "done"}},
    }
    req = mapped(options, model="a/b:c").build_request(
        parse_request({"messages": [{"role": "user", "content": "hi"}]})
    )
    assert req.method == "PUT"
    assert req.url == "http://upstream.test:8000/v1/models/a%2Fb:c/run"
    assert "x-key" not in req.headers  # no api_key configured: the header is left out
    assert req.headers["x-model"] == "a/b:c {literal}"
    assert req.headers["accept"] == "application/x-ndjson"
    assert json.loads(req.body) == {
        "prompt": "hi",
        "text": "user: hi",
        "label": "model=a/b:c, temp=",
        "list": [],
        "keep": [1, None, True, 2.5],
    }


def test_default_headers_and_route_headers() -> None:
    options = {"request": {"body": {}}, "events": {"text": "t", "terminator": {"data": "x"}}}
    req = mapped(options, api_key="K", headers={"x-extra": "1"}).build_request(
        parse_request({"messages": [{"role": "user", "content": "x"}]})
    )
    assert req.headers["authorization"] == "Bearer K"
    assert req.headers["x-extra"] == "1"
    assert req.url == "http://upstream.test:8000/v1"


def test_model_with_line_break_is_rejected() -> None:
    options = {
        "request": {"headers": {"x-model": "{model}"}, "body": {}},
        "events": {"text": "t", "terminator": {"data": "x"}},
    }
    with pytest.raises(InvalidRequest, match="model"):
        mapped(options).build_request(
            parse_request(
                {"messages": [{"role": "user", "content": "x"}], "model": "a\r\nX-Evil: 1"}
            )
        )


def test_api_key_with_line_break_is_a_config_error() -> None:
    parsed, errors = MappedAdapter.parse_options(twin_options("ollama"), "o")
    assert not errors
    with pytest.raises(ConfigError, match="api_key"):
        MappedAdapter(UpstreamConfig(base_url="http://x", api_key="k\nx"), parsed)


def test_framing_is_per_instance() -> None:
    assert mapped(twin_options("ollama")).framing == "ndjson"
    assert mapped(twin_options("openai_chat")).framing == "sse"


# --- configuration errors ----------------------------------------------------------------------


def errors_for(options: Any) -> list[str]:
    parsed, errors = MappedAdapter.parse_options(options, "routes[0].options")
    assert (parsed == {}) == bool(errors)
    return errors


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda o: o.update(framng="sse"),
            "routes[0].options.framng: unknown key (did you mean 'framing'?)",
        ),
        (
            lambda o: o.update(framing="xml"),
            "routes[0].options.framing: must be one of sse, sse+raw, ndjson",
        ),
        (
            lambda o: o["events"].update(txt="a"),
            "routes[0].options.events.txt: unknown key (did you mean 'text'?)",
        ),
        (
            lambda o: o["request"].update({"headers:Bearer sk-live-123": "x"}),
            "routes[0].options.request.headers:***: unknown key (did you mean 'headers: ...'? "
            "YAML needs a space after ':')",
        ),
        (
            lambda o: o["request"].update(method="GET"),
            "routes[0].options.request.method: must be one of POST, PUT, PATCH",
        ),
        (
            lambda o: o["request"].update(path="chat"),
            "routes[0].options.request.path: must be a string starting with /",
        ),
        (
            lambda o: o["request"].update(path="/x/{api_key}"),
            "routes[0].options.request.path: unknown placeholder '{api_key}'",
        ),
        (
            lambda o: o["request"]["headers"].update(x="a\r\nb"),
            "routes[0].options.request.headers.x: must not contain line breaks",
        ),
        (
            lambda o: o["request"]["headers"].update({"bad name": "v"}),
            "routes[0].options.request.headers.bad name: is not a valid header name",
        ),
        (
            lambda o: o["request"]["headers"].update(x="{prompt}"),
            "routes[0].options.request.headers.x: unknown placeholder '{prompt}'",
        ),
        (
            lambda o: o["request"]["body"].update(x="{mesages}"),
            "routes[0].options.request.body.x: unknown placeholder '{mesages}'",
        ),
        (
            lambda o: o["request"]["body"].update(x=["{nope}"]),
            "routes[0].options.request.body.x[0]: unknown placeholder '{nope}'",
        ),
        (lambda o: o["request"].pop("body"), "routes[0].options.request.body: is required"),
        (
            lambda o: o["events"].update(text="a..b"),
            "routes[0].options.events.text: must be a dotted path",
        ),
        (
            lambda o: o["events"].update(reasoning=["ok", 3]),
            "routes[0].options.events.reasoning[1]: must be a dotted path or a mapping",
        ),
        (
            lambda o: o["events"].update(text={"path": "a", "types": ["x"]}),
            "routes[0].options.events.text.types: needs events.type_path",
        ),
        (
            lambda o: o["events"].update(text={"pth": "a"}),
            "routes[0].options.events.text.pth: unknown key (did you mean 'path'?)",
        ),
        (
            lambda o: o["events"]["finish_reason"]["map"].update(stop="done"),
            "routes[0].options.events.finish_reason.map.stop: must be one of stop, length",
        ),
        (
            lambda o: o["events"]["finish_reason"].update(default="fine"),
            "routes[0].options.events.finish_reason.default: must be one of",
        ),
        (
            lambda o: o["events"].pop("terminator"),
            "routes[0].options.events.terminator: is required",
        ),
        (
            lambda o: o["events"].update(terminator={"type": "end"}),
            "routes[0].options.events.terminator.type: needs events.type_path",
        ),
        (
            lambda o: o["events"].update(terminator={"equals": 1}),
            "routes[0].options.events.terminator.equals: needs path",
        ),
        (
            lambda o: o["events"].update(terminator="at_eof"),
            "routes[0].options.events.terminator: must be a mapping",
        ),
        (
            lambda o: o["events"]["tool_call"].pop("list_path"),
            "routes[0].options.events.tool_call.list_path: is required",
        ),
        (
            lambda o: o["events"].update(usage={"types": []}),
            "routes[0].options.events.usage: maps no counter",
        ),
        (
            lambda o: o["events"]["error"][0].update(retryable_types="x"),
            "routes[0].options.events.error[0].retryable_types: must be a list",
        ),
        (
            lambda o: [o["events"].pop(k) for k in ("text", "reasoning", "tool_call", "refusal")],
            "routes[0].options.events: maps nothing",
        ),
        (lambda o: o.pop("events"), "routes[0].options.events: is required"),
    ],
)
def test_config_errors_name_their_path(mutate: Any, message: str) -> None:
    options = twin_options("openai_chat")
    mutate(options)
    errors = errors_for(options)
    assert any(e.startswith(message) for e in errors), errors


def test_every_error_is_reported_at_once() -> None:
    errors = errors_for(
        {"framing": 1, "request": {"body": "{x}"}, "events": {"text": "", "terminator": {}}}
    )
    assert len(errors) >= 4, errors
    assert errors_for("not a mapping")[0] == "routes[0].options: must be a mapping"


def test_paths_are_compiled_to_tuples() -> None:
    parsed, _ = MappedAdapter.parse_options(twin_options("openai_chat"), "o")
    spec = parsed["spec"]
    assert spec.text[0].paths == (("choices", 0, "delta", "content"),)
    assert spec.tool_call.index_path == ("index",)
    assert re.fullmatch(r"\[DONE\]", spec.terminator.data)


def test_an_ndjson_stream_cut_inside_its_last_line_is_truncated() -> None:
    # NDJSON hands the unterminated tail over at EOF: a line cut short is upstream_truncated
    # (contract rule 5.1), as on the built-in ollama adapter, not upstream_protocol.
    adapter = mapped(twin_options("ollama"), model="m")
    data = fixture_bytes("ollama_chat.ndjson")
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # where the last line starts
    for end in range(last + 1, len(data) - 1):
        events = replay(adapter, [data[:end]])
        assert events[-1].type == "error", (end, events[-1])
        assert events[-1].data["code"] == "upstream_truncated", (end, events[-1])


def test_an_ndjson_line_that_does_not_parse_before_more_is_a_protocol_error() -> None:
    adapter = mapped(twin_options("ollama"), model="m")
    data = b'{"message":{"content":"a"\n{"message":{"content":"b"},"done":true}\n'
    assert replay(adapter, [data])[-1].data["code"] == "upstream_protocol"
    assert replay(adapter, [b"<html>oops</html>"])[-1].data["code"] == "upstream_protocol"
