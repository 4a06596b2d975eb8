"""The front door's pure parts: request mapping and the two encoders, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway import events as ev
from gateway.encoders.chat_completions import ChatChunkEncoder, CompletionEncoder
from gateway.errors import InvalidRequest
from gateway.frontdoor.request_map import to_common
from gateway.request import parse_request
from tests.support.gateway import config_from

ROUTE = config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0]
NASTY = "a\nb\rc\r\nd\u2028e"


def test_request_mapping() -> None:
    body = {
        "model": "r",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Hi", "name": "bob"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        "max_tokens": 5,
        "max_completion_tokens": 7,
        "reasoning_effort": "high",
        "stop": "END",
        "temperature": 0.2,
        "tool_choice": "auto",
        "stream": True,
    }
    chat = parse_request(to_common(body))
    assert chat.model is None
    assert [m.role for m in chat.messages] == ["developer", "user", "assistant", "tool"]
    assert chat.messages[0].content == "Be brief."
    assert chat.messages[2].tool_calls[0].name == "f"
    assert chat.messages[3].tool_call_id == "c1"
    assert (chat.max_tokens, chat.reasoning_effort, chat.stop) == (7, "high", ("END",))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"n": 2, "messages": []}, "n"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "x"}]}]},
            "messages[0].tool_calls[0].function",
        ),
        # content: the error points at the client's own field, whatever the shape
        ({"messages": [{"role": "user"}]}, "messages[0].content: is required"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": None}]},
            "messages[1].content: must be a string, not null",
        ),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content: must be a string"),
        ({"messages": [{"role": "user", "content": {}}]}, "messages[0].content: must be a string"),
        ({"messages": [{"role": "assistant"}]}, "messages[0].content: is required"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_request_mapping_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_request(to_common(body))


EFFORTS = [
    ("none", None),
    ("minimal", "minimal"),
    ("low", "low"),
    ("medium", "medium"),
    ("high", "high"),
    ("xhigh", "high"),
    ("max", "high"),
]
"""Every reasoning effort of the OpenAI SDK and the common request's (None: no reasoning)."""


@pytest.mark.parametrize(("effort", "common"), EFFORTS)
def test_reasoning_effort_mapping(effort: str, common: str | None) -> None:
    chat = parse_request(
        to_common({"messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": effort})
    )
    assert chat.reasoning_effort == common


def test_tool_choice_none_drops_the_tools() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"messages": [{"role": "user", "content": "Hi"}], "tools": tools}
    assert "tools" not in to_common({**body, "tool_choice": "none"})
    assert to_common({**body, "tool_choice": "required"})["tools"] == tools
    with pytest.raises(InvalidRequest, match=r"tools\[0\]\.name"):  # still validated
        to_common({**body, "tools": [{"type": "function"}], "tool_choice": "none"})


def chunks(raw: bytes) -> list[Any]:
    text = raw.decode()
    out = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block and "\r" not in block
        payload = block[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_chunks_validate_and_survive_newlines() -> None:
    enc = ChatChunkEncoder(ROUTE, "rid", model="r", created=1, include_usage=True)
    events = [
        ev.created("rid", "r", "simulated", None),
        ev.thinking(),
        ev.reasoning(NASTY),
        ev.delta(NASTY),
        ev.tool_call(0, '{"a":', id="c1", name="f"),
        ev.tool_call(0, "1}"),
        ev.usage(input_tokens=3, output_tokens=4, reasoning_tokens=1, cached_input_tokens=2),
        ev.end("other"),
    ]
    got = chunks(b"".join(enc.encode(e) for e in events) + enc.close())
    assert got[-1] == "[DONE]"
    for doc in got[:-1]:
        ChatCompletionChunk.model_validate(doc)
    assert got[1]["choices"][0]["delta"] == {"reasoning_content": NASTY}
    assert got[2]["choices"][0]["delta"] == {"content": NASTY}
    assert got[4]["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]
    }
    assert got[5]["choices"][0]["finish_reason"] == "stop"
    assert got[6]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "completion_tokens_details": {"reasoning_tokens": 1},
        "prompt_tokens_details": {"cached_tokens": 2},
    }


def test_chunk_error_ends_without_done() -> None:
    enc = ChatChunkEncoder(ROUTE, "rid", model="r", created=1)
    raw = enc.encode(ev.error("upstream_timeout", NASTY, True)) + enc.close()
    (doc,) = chunks(raw)
    assert doc == {
        "error": {
            "message": NASTY,
            "type": "server_error",
            "param": None,
            "code": "upstream_timeout",
        }
    }


def test_completion_assembles_and_errors_carry_a_status() -> None:
    enc = CompletionEncoder(ROUTE, "rid", model="r", created=1)
    for e in [ev.created("rid", "r", "simulated", None), ev.delta("A"), ev.delta("B")]:
        assert enc.encode(e) == b""
    doc = ChatCompletion.model_validate_json(enc.encode(ev.end("length")))
    assert doc.choices[0].message.content == "AB" and doc.choices[0].finish_reason == "length"
    assert doc.usage is None and enc.status == 200
    failed = CompletionEncoder(ROUTE, "rid", model="r", created=1)
    body = json.loads(failed.encode(ev.error("upstream_timeout", "slow", True)))
    assert failed.status == 504 and body["error"]["code"] == "upstream_timeout"


def test_usage_carries_cache_read_and_write_in_the_apis_own_fields() -> None:
    usage = ev.usage(
        input_tokens=120,
        output_tokens=4,
        cache_read_input_tokens=100,
        cache_write_input_tokens=15,
    )
    enc = ChatChunkEncoder(ROUTE, "rid", model="r", created=1, include_usage=True)
    raw = b"".join(enc.encode(e) for e in [ev.delta("A"), usage, ev.end("stop")]) + enc.close()
    docs = chunks(raw)
    want = {"cached_tokens": 100, "cache_write_tokens": 15}
    (streamed,) = [d for d in docs[:-1] if d.get("usage")]
    assert ChatCompletionChunk.model_validate(streamed).usage is not None
    assert streamed["usage"]["prompt_tokens_details"] == want
    held = CompletionEncoder(ROUTE, "rid", model="r", created=1)
    held.encode(ev.delta("A"))
    held.encode(usage)
    doc = json.loads(held.encode(ev.end("stop")))
    completion = ChatCompletion.model_validate(doc)
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cache_write_tokens == 15
    assert doc["usage"]["prompt_tokens_details"] == want
