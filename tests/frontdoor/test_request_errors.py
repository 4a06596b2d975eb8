"""Translating front doors: a 400 names the client's own field, never the common request's.

A Messages or Responses request is mapped to the common request (system prepended, tool
results split into messages), so a check an adapter makes on the common request names a field
the client never sent (``messages[2].tool_call_id``). The front doors' decoders make those
checks themselves, on the client's fields, before any adapter sees the request.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from openai.types.responses import Response

from gateway import events as ev
from gateway.encoders.responses import ResponseState
from gateway.errors import InvalidRequest
from gateway.frontdoor.compat_request import param_of
from gateway.frontdoor.messages_request import to_common
from gateway.frontdoor.responses_request import decode
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import running_gateway

UP = {"base_url": "http://127.0.0.1:9", "api_key": "k", "model": "m"}
PROVIDERS = ("gemini", "anthropic", "bedrock", "openai-chat")
BEDROCK = {"region": "us-west-2", "access_key_id": "AKIA", "secret_access_key": "s"}


def routes() -> dict[str, Any]:
    docs: list[dict[str, Any]] = []
    for p in PROVIDERS:
        doc: dict[str, Any] = {"name": p, "provider": p, "upstream": UP}
        if p == "bedrock":
            doc["options"] = BEDROCK
        docs.append(doc)
    return {"routes": docs}


ORPHAN_RESULT = [
    {"role": "user", "content": "Weather?"},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "zz", "content": "x"}]},
]
ORPHAN_OUTPUT = [
    {"role": "user", "content": "Weather?"},
    {"type": "function_call_output", "call_id": "zz", "output": "x"},
]


def calls_with(arguments: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": arguments},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]


def test_messages_tool_result_must_answer_an_earlier_tool_use() -> None:
    body = {"model": "r", "max_tokens": 9, "system": "S", "messages": ORPHAN_RESULT}
    with pytest.raises(InvalidRequest) as caught:
        to_common(body)
    assert caught.value.message.startswith("messages[1].content[0].tool_use_id: ")


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", "5", '"s"'])
def test_responses_function_call_arguments_must_be_an_object(arguments: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode({"model": "r", "input": calls_with(arguments)})
    assert param_of(caught.value) == "input[1].arguments"


def test_responses_output_must_answer_an_earlier_call() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode({"model": "r", "instructions": "S", "input": ORPHAN_OUTPUT})
    assert param_of(caught.value) == "input[1].call_id"
    # The calls that are there still map, empty arguments as "{}".
    common = decode({"model": "r", "input": calls_with("")}).common
    assert common["messages"][1]["tool_calls"][0]["arguments"] == "{}"


async def test_every_provider_names_the_clients_field(upstream: FakeUpstream) -> None:
    """Over a gateway, for every provider: the 400 names the client's field (and ``param``),
    whatever checks the provider's adapter makes; nothing reaches an upstream."""
    cases: list[tuple[str, dict[str, Any], str]] = []
    for p in PROVIDERS:
        cases += [
            (
                "/v1/messages",
                {"model": p, "max_tokens": 9, "system": "S", "messages": ORPHAN_RESULT},
                "messages[1].content[0].tool_use_id",
            ),
            (
                "/v1/responses",
                {"model": p, "instructions": "S", "input": ORPHAN_OUTPUT},
                "input[1].call_id",
            ),
            ("/v1/responses", {"model": p, "input": calls_with("nope")}, "input[1].arguments"),
        ]
    async with running_gateway(routes()) as gw, aiohttp.ClientSession() as s:
        for path, body, field in cases:
            async with s.post(gw.url + path, json=body) as r:
                status, doc = r.status, await r.json()
            assert status == 400, (path, body["model"], doc)
            if path == "/v1/messages":
                assert doc["type"] == "error"
                assert doc["error"]["type"] == "invalid_request_error"
                assert doc["error"]["message"].startswith(field + ": "), doc
            else:
                assert doc["error"]["param"] == field, doc
                assert doc["error"]["message"].startswith(field + ": "), doc
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("route", "function", "field"),
    [
        ("anthropic", {"name": "f", "arguments": "nope"}, "function.arguments"),
        ("gemini", {"name": "f", "arguments": "[1]"}, "function.arguments"),
        ("openai-chat", {"arguments": "{}"}, "function.name"),
        ("openai-chat", {"name": "f", "arguments": 5}, "function.arguments"),
    ],
)
async def test_chat_tool_call_fields_are_named_under_function(
    upstream: FakeUpstream, route: str, function: dict[str, Any], field: str
) -> None:
    """A Chat Completions tool call's ``name`` / ``arguments`` are the client's
    ``tool_calls[i].function.*``, whichever check (the request's, an adapter's) refused them."""
    call = {"id": "c1", "type": "function", "function": function}
    body = {
        "model": route,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
    }
    want = f"messages[1].tool_calls[0].{field}"
    async with running_gateway(routes()) as gw, aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/chat/completions", json=body) as r:
            status, doc = r.status, await r.json()
    assert status == 400, doc
    assert doc["error"]["param"] == want
    assert doc["error"]["message"].startswith(want + ": ")
    assert upstream.seen == []


@pytest.mark.parametrize(("sent", "echoed"), [(None, True), (True, True), (False, False)])
def test_responses_parallel_tool_calls_echo_is_a_boolean(sent: bool | None, echoed: bool) -> None:
    """``parallel_tool_calls: null`` is the default (true): the answer's field is a boolean,
    as the SDK's ``Response`` requires."""
    decoded = decode({"model": "r", "input": "Hi", "parallel_tool_calls": sent})
    state = ResponseState("rid", model="r", created=1, echo=decoded.echo)
    for event in (ev.created("rid", "r", "simulated", None), ev.delta("x"), ev.end("stop")):
        state.feed(event)
    response = Response.model_validate(state.final)
    assert response.parallel_tool_calls is echoed
