"""The Responses front door's pure parts (decoder, encoders) and its bad-input answers."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway import events as ev
from gateway.encoders.responses import (
    ResponseDocEncoder,
    ResponseEventEncoder,
    ResponseState,
)
from gateway.errors import InvalidRequest
from gateway.frontdoor.compat_request import param_of
from gateway.frontdoor.responses_request import decode
from gateway.request import parse_request
from tests.encoders.test_chat_completions import EFFORTS
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import config_from, running_gateway

ROUTE = config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0]
EVENT = TypeAdapter(ResponseStreamEvent)
NASTY = "a\nb\rc\r\nd\u2028e \U0001f680"


def test_request_mapping() -> None:
    body = {
        "model": "r",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": [{"type": "input_text", "text": "Dev."}]},
            {"type": "message", "role": "user", "content": "Weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": ""},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
        ],
        "tools": [
            {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
        ],
        "tool_choice": "required",
        "max_output_tokens": 7,
        "temperature": 0.5,
        "top_p": 0.9,
        "reasoning": {"effort": "xhigh", "summary": "auto"},
        "metadata": {"k": "v"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "stream_options": {"include_obfuscation": False},
    }
    decoded = decode(body)
    chat = parse_request(decoded.common)
    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "Be brief."),
        ("developer", "Dev."),
        ("user", "Weather?"),
        ("assistant", "Checking."),
        ("tool", "sunny"),
        ("tool", "rain"),
    ]
    assert [(c.id, c.name, c.arguments) for c in chat.messages[3].tool_calls] == [
        ("c1", "f", '{"a":1}'),
        ("c2", "f", "{}"),
    ]
    assert chat.messages[4].tool_call_id == "c1"
    assert [t.name for t in chat.tools] == ["f"]
    assert (chat.max_tokens, chat.temperature, chat.top_p) == (7, 0.5, 0.9)
    assert chat.reasoning_effort == "high" and chat.metadata == {"k": "v"}
    assert decoded.stream is False
    assert decoded.echo["tools"][0] == {
        "type": "function",
        "name": "f",
        "parameters": {"type": "object"},
        "strict": True,
    }
    assert decoded.echo["tool_choice"] == "required"
    assert (
        decode({"input": "Hi", "tools": body["tools"], "tool_choice": "none"}).common.get("tools")
        is None
    )
    assert decode({"input": "Hi", "stream": True}).common["messages"] == [
        {"role": "user", "content": "Hi"}
    ]


@pytest.mark.parametrize(("effort", "common"), EFFORTS)
def test_reasoning_effort_mapping(effort: str, common: str | None) -> None:
    decoded = decode({"model": "r", "input": "Hi", "reasoning": {"effort": effort}})
    assert parse_request(decoded.common).reasoning_effort == common
    assert decoded.echo["reasoning"]["effort"] == effort


BAD: list[tuple[dict[str, Any], str]] = [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"store": True}, "store"),
    ({"background": True}, "background"),
    ({"stream": "yes"}, "stream"),
    ({"input": None}, "input"),
    ({"input": []}, "input"),
    ({"input": [5]}, "input[0]"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        "input[0].content[0].type",
    ),
    (
        {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        "input[0].content[0].text",
    ),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call", "call_id": "c"}]}, "input[0].name"),
    (
        {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
        "input[0].arguments",
    ),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"instructions": 3}, "instructions"),
    ({"tools": {}}, "tools"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "tools[0].parameters"),
    ({"tools": [{"type": "function", "name": "f", "strict": "y"}]}, "tools[0].strict"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"max_output_tokens": "9"}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": "x"}, "top_p"),
    ({"reasoning": "high"}, "reasoning"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"reasoning": {"summary": "long"}}, "reasoning.summary"),
    ({"metadata": []}, "metadata"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"stream_options": 1}, "stream_options"),
    ({"text": {"format": {"type": "json_schema"}}}, "text.format.type"),
]


@pytest.mark.parametrize(("patch", "param"), BAD, ids=[p for _, p in BAD])
def test_decoder_names_the_field(patch: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode({"model": "r", "input": "Hi", **patch})
    assert param_of(caught.value) == param


async def test_bad_requests_never_reach_the_upstream() -> None:
    fake = await FakeUpstream().start()
    doc = {
        "routes": [
            {
                "name": "r",
                "provider": "openai-chat",
                "upstream": {"base_url": fake.url, "model": "m"},
            }
        ]
    }
    try:
        async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:
            answers = []
            for patch, _ in BAD:
                body = {"model": "r", "input": "Hi", **patch}
                async with s.post(f"{gw.url}/v1/responses", json=body) as r:
                    answers.append((r.status, await r.json()))
            async with s.post(f"{gw.url}/v1/responses", json={"model": "nope", "input": "x"}) as r:
                missing = (r.status, await r.json())
            async with s.post(f"{gw.url}/v1/responses", data="{") as r:
                media = (r.status, await r.json())
    finally:
        await fake.stop()
    for (status, body), (_, param) in zip(answers, BAD, strict=True):
        assert status == 400, body
        assert body["error"]["param"] == param
        assert body["error"]["type"] == "invalid_request_error"
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert fake.seen == []
    assert missing[0] == 404 and missing[1]["error"]["code"] == "model_not_found"
    assert missing[1]["error"]["param"] == "model"
    assert media[0] == 415


def run(encoder: ResponseEventEncoder, events: list[ev.Event]) -> list[dict[str, Any]]:
    raw = b"".join(encoder.encode(e) for e in events).decode()
    docs = []
    for frame in raw.split("\n\n")[:-1]:
        head, data = frame.split("\n")
        doc = json.loads(data.removeprefix("data: "))
        assert head == "event: " + doc["type"]
        EVENT.validate_python(doc)
        docs.append(doc)
    assert [d["sequence_number"] for d in docs] == list(range(len(docs)))
    return docs


def state(**kw: Any) -> ResponseState:
    return ResponseState("rid", model="r", created=1, clock=lambda: 2.0, **kw)


def test_items_open_and_close_in_api_order() -> None:
    encoder = ResponseEventEncoder(ROUTE, "rid", state())
    docs = run(
        encoder,
        [
            ev.created("rid", "r", "simulated", None),
            ev.thinking(),
            ev.reasoning("Hm"),
            ev.clear(),
            ev.delta(NASTY),
            ev.tool_call(0, '{"a"', id="call_x", name="f"),
            ev.tool_call(1, "{}", name="g"),
            ev.tool_call(0, ":1}"),
            ev.usage(input_tokens=3, output_tokens=5, reasoning_tokens=2, cached_input_tokens=1),
            ev.end("tool_calls"),
        ],
    )
    types = [d["type"].removeprefix("response.") for d in docs]
    assert types[:2] == ["created", "in_progress"]
    assert types.count("output_item.added") == types.count("output_item.done") == 4
    assert types[-1] == "completed"
    final = Response.model_validate(docs[-1]["response"])
    assert final.output_text == NASTY and final.completed_at == 2
    calls = [(i.call_id, i.name, i.arguments) for i in final.output if i.type == "function_call"]
    assert calls == [("call_x", "f", '{"a":1}'), ("call_rid_1", "g", "{}")]
    assert final.usage is not None and final.usage.total_tokens == 8
    assert final.usage.input_tokens_details.cached_tokens == 1
    assert encoder.heartbeat() == b": ping\n\n"


@pytest.mark.parametrize(
    ("reason", "detail"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_incomplete(reason: str, detail: str) -> None:
    docs = run(
        ResponseEventEncoder(ROUTE, "rid", state()),
        [ev.created("rid", "r", "simulated", None), ev.delta("Hi"), ev.end(reason)],  # type: ignore[arg-type]
    )
    last = docs[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": detail}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert last["response"]["usage"] is None


def test_whole_response_and_its_error_status() -> None:
    whole = ResponseDocEncoder(ROUTE, "rid", state(echo={"instructions": "x"}))
    out = [
        whole.encode(e) for e in [ev.created("rid", "r", "s", None), ev.delta("A"), ev.end("stop")]
    ]
    assert out[:2] == [b"", b""] and whole.status == 200
    doc = Response.model_validate_json(out[2])
    assert doc.output_text == "A" and doc.instructions == "x" and doc.status == "completed"
    failed = ResponseDocEncoder(ROUTE, "rid", state())
    body = json.loads(failed.encode(ev.error("upstream_timeout", "slow", True)))
    assert failed.status == 504 and body["error"]["code"] == "upstream_timeout"
    assert failed.heartbeat() == b"\n"
