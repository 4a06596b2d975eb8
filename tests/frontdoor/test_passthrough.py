"""Same-API pass-through (contract section 10, last paragraph), end to end.

Where the front door's API is the upstream's own, the client gets the upstream's frames (event
name and data byte for byte) and the upstream gets the client's blocks (thinking signatures,
``cache_control``, reasoning ``encrypted_content`` ...) unchanged; a truncated upstream still ends
in the API's own error; a fallback of another API is re-encoded as usual.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from anthropic import AsyncAnthropic
from anthropic.types import Message as AnthropicMessage
from openai import AsyncOpenAI

from gateway.framing.sse import SSEDecoder
from tests.adapters.harness import fixture_bytes, splits
from tests.frontdoor.streams import sse
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway

USER = [{"role": "user", "content": "What is the weather in Florence?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the weather",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}


def route(name: str, provider: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": provider,
        "upstream": {"base_url": base_url, "api_key": "sk-test-key", "model": "up-model"},
        **extra,
    }


def frames_of(data: bytes) -> list[tuple[str, str]]:
    """``(event, data)`` of every SSE frame in ``data``."""
    decoder = SSEDecoder()
    return [(m.event, m.data) for m in decoder.feed(data) + decoder.close()]


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


async def post_raw(url: str, body: bytes) -> bytes:
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.read()


@pytest.mark.parametrize("split", ["whole", "bytewise", "random0", "random1"])
async def test_messages_frames_reach_the_client_as_they_are(
    upstream: FakeUpstream, split: str
) -> None:
    data = fixture_bytes("anthropic_thinking_tool_use.sse")
    upstream.push(Script(chunks=[(0, c) for c in dict(splits(data))[split]]))
    body = {"model": "r", "max_tokens": 2048, "messages": USER, "stream": True}
    async with running_gateway({"routes": [route("r", "anthropic", upstream.url)]}) as gw:
        got = await post_raw(f"{gw.url}/v1/messages", compact(body))
    assert frames_of(got) == frames_of(data)  # signature_delta, pings, usage details and all


async def test_responses_frames_reach_the_client_as_they_are(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_responses_reasoning_and_tool_call.sse")
    upstream.push(Script(chunks=[(0, c) for c in dict(splits(data))["random2"]]))
    body = {"model": "r", "input": "Weather in Rome?", "stream": True}
    async with running_gateway({"routes": [route("r", "openai-responses", upstream.url)]}) as gw:
        got = await post_raw(f"{gw.url}/v1/responses", compact(body))
    assert frames_of(got) == frames_of(data)  # obfuscation, encrypted ids, service_tier ...


async def test_chat_frames_reach_the_client_as_they_are(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_chat_tool_calls.sse")
    upstream.push(Script(chunks=[(0, data)]), Script(chunks=[(0, data)]))
    body: dict[str, Any] = {"model": "r", "messages": USER, "stream": True}
    asked = {**body, "stream_options": {"include_usage": True}}
    async with running_gateway({"routes": [route("r", "openai-chat", upstream.url)]}) as gw:
        with_usage = await post_raw(f"{gw.url}/v1/chat/completions", compact(asked))
        without = await post_raw(f"{gw.url}/v1/chat/completions", compact(body))
    assert frames_of(with_usage) == frames_of(data)
    # The gateway always asks the upstream for usage; a client that did not gets no usage chunk.
    assert frames_of(without) == [f for f in frames_of(data) if '"choices":[]' not in f[1]]


async def test_signature_round_trip_reaches_the_upstream_unchanged(upstream: FakeUpstream) -> None:
    """Turn 1: thinking + tool_use through ``/v1/messages``; turn 2 carries the thinking block
    (with its signature) and the tool result back: the upstream gets those blocks as sent."""
    upstream.push(
        Script(chunks=[(0, fixture_bytes("anthropic_thinking_tool_use.sse"))]),
        Script(chunks=[(0, fixture_bytes("anthropic_basic.sse"))]),
    )
    doc = {"routes": [route("r", "anthropic", upstream.url)]}
    thinking = {"type": "enabled", "budget_tokens": 1024}
    async with running_gateway(doc) as gw:
        client = AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=10)
        async with client.messages.stream(
            model="r",
            max_tokens=2048,
            messages=USER,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            thinking=thinking,  # type: ignore[arg-type]
        ) as stream:
            first = await stream.get_final_message()
        await client.close()
        blocks = [b.to_dict() for b in first.content]
        assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use"]
        assert blocks[0]["signature"].startswith("EsEnDr6lgkUZ")  # signature_delta passed through
        tool_use = blocks[2]
        result = {
            "type": "tool_result",
            "tool_use_id": tool_use["id"],
            "content": "sunny, 24C",
            "cache_control": {"type": "ephemeral"},
        }
        messages = [*USER, {"role": "assistant", "content": blocks}]
        messages.append({"role": "user", "content": [result]})
        second = {
            "model": "r",
            "max_tokens": 2048,
            "messages": messages,
            "tools": [WEATHER],
            "thinking": thinking,
            "metadata": {"user_id": "u-1"},
            "stream": True,
        }
        await post_raw(f"{gw.url}/v1/messages", compact(second))
    sent = upstream.seen[1]
    for block in [*blocks, result]:
        assert compact(block) in sent.raw  # byte for byte, key order and all
    assert sent.body["messages"] == messages and sent.body["tools"] == [WEATHER]
    assert sent.body["thinking"] == thinking
    assert sent.body["model"] == "up-model" and sent.body["stream"] is True
    assert "metadata" not in sent.body  # never forwarded, as on every path


async def test_whole_message_keeps_signature_and_usage_details(upstream: FakeUpstream) -> None:
    data = fixture_bytes("anthropic_thinking_tool_use.sse")
    upstream.push(Script(chunks=[(0, data)]))
    doc = {"routes": [route("r", "anthropic", upstream.url)]}
    async with running_gateway(doc) as gw:
        client = AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=10)
        raw = await client.messages.with_raw_response.create(
            model="r",
            max_tokens=2048,
            messages=USER,  # type: ignore[arg-type]
        )
        await client.close()
    message = json.loads(await raw.read())
    AnthropicMessage.model_validate(message)
    frames = [json.loads(d) for _, d in frames_of(data)]
    start = frames[0]["message"]
    assert message["id"] == start["id"] and message["model"] == start["model"]
    thinking, text, tool = message["content"]
    signature = next(
        f["delta"]["signature"]
        for f in frames
        if f.get("delta", {}).get("type") == "signature_delta"
    )
    assert thinking["signature"] == signature
    assert text["text"] == "I'll check the current weather in Florence for you."
    assert tool["input"] == {"location": "Florence, Italy"}
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 119
    assert message["usage"]["cache_creation"] == start["usage"]["cache_creation"]


async def test_reasoning_items_round_trip_through_responses(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_responses_reasoning_and_tool_call.sse")
    upstream.push(Script(chunks=[(0, data)]), Script(chunks=[(0, data)]))
    doc = {"routes": [route("r", "openai-responses", upstream.url)]}
    async with running_gateway(doc) as gw:
        client = AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=10)
        first = await client.responses.create(model="r", input="Weather in Rome?")
        reasoning = {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Checking"}],
            "encrypted_content": "gAAAAABo-opaque-blob==",
        }
        call = next(i.to_dict() for i in first.output if i.type == "function_call")
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
        items = [
            {"role": "user", "content": "Weather in Rome?"},
            reasoning,
            call,
            output,
        ]
        body = {"model": "r", "input": items, "include": ["reasoning.encrypted_content"]}
        await client.responses.create(**body)  # type: ignore[call-overload]
        await client.close()
    assert first.id.startswith("resp_0a91b2c3")  # the upstream's own response
    sent = upstream.seen[1]
    for item in (reasoning, call, output):
        assert compact(item) in sent.raw
    assert sent.body["input"] == items and sent.body["include"] == body["include"]
    assert sent.body["model"] == "up-model" and sent.body["stream"] is True


async def test_truncated_upstream_ends_in_the_apis_error(upstream: FakeUpstream) -> None:
    data = fixture_bytes("anthropic_truncated.sse")
    upstream.push(Script(chunks=[(0, data)]))
    body = {"model": "r", "max_tokens": 64, "messages": USER, "stream": True}
    async with running_gateway({"routes": [route("r", "anthropic", upstream.url)]}) as gw:
        got = frames_of(await post_raw(f"{gw.url}/v1/messages", compact(body)))
    upstream_frames = frames_of(data)
    assert got[: len(upstream_frames)] == upstream_frames  # everything the upstream sent
    event, payload = got[-1]
    assert len(got) == len(upstream_frames) + 1 and event == "error"
    assert json.loads(payload)["error"]["type"] == "api_error"


async def test_truncated_responses_upstream_fails_in_sequence(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_responses_truncated.sse")
    upstream.push(Script(chunks=[(0, data)]))
    body = {"model": "r", "input": "hi", "stream": True}
    async with running_gateway({"routes": [route("r", "openai-responses", upstream.url)]}) as gw:
        got = frames_of(await post_raw(f"{gw.url}/v1/responses", compact(body)))
    docs = [json.loads(d) for _, d in got]
    assert [d["sequence_number"] for d in docs] == list(range(len(docs)))
    failed = docs[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["id"] == docs[0]["response"]["id"]
    assert failed["response"]["error"]["type"] == "upstream_truncated"


async def test_a_fallback_of_another_api_is_reencoded(upstream: FakeUpstream) -> None:
    fallback = await FakeUpstream().start()
    try:
        upstream.push(Script(status=500, chunks=[(0, b'{"error":{"message":"down"}}')]))
        fallback.push(Script(chunks=[(0, fixture_bytes("openai_chat_basic.sse"))]))
        primary = route("r", "anthropic", upstream.url)
        primary["fallbacks"] = [
            {"provider": "openai-chat", "upstream": {"base_url": fallback.url, "model": "m"}}
        ]
        body = {"model": "r", "max_tokens": 64, "messages": USER, "stream": True}
        async with running_gateway({"routes": [primary]}) as gw:
            got = frames_of(await post_raw(f"{gw.url}/v1/messages", compact(body)))
    finally:
        await fallback.stop()
    assert upstream.seen[0].body["messages"] == USER  # the native request to the primary
    assert fallback.seen[0].body["messages"] == USER  # the common request, translated
    names = [e for e, _ in got]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    start = json.loads(got[0][1])["message"]
    assert start["model"] == "r" and start["id"].startswith("msg_")  # the gateway's encoding


async def test_requests_are_counted_by_front_door(upstream: FakeUpstream) -> None:
    upstream.push(*[Script(chunks=[(0, fixture_bytes("anthropic_basic.sse"))]) for _ in range(3)])
    body = {"model": "r", "max_tokens": 64, "messages": USER, "stream": True}
    name = "gateway_frontdoor_requests_total"
    async with running_gateway({"routes": [route("r", "anthropic", upstream.url)]}) as gw:
        for _ in range(2):
            await post_raw(f"{gw.url}/v1/messages", compact(body))
        counts = {
            door: await metric_value(gw.url, name, {"route": "r", "frontdoor": door})
            for door in ("route", "chat_completions", "responses", "messages")
        }
    assert counts == {"route": 0, "chat_completions": 0, "responses": 0, "messages": 2}


def _strip_event_lines(data: bytes) -> bytes:
    """``data`` as a data-only stream (no ``event:`` lines), as some compatible servers send."""
    return b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"event:"))


async def test_whole_response_from_a_data_only_upstream(upstream: FakeUpstream) -> None:
    data = fixture_bytes("openai_responses_basic.sse")
    upstream.push(Script(chunks=[(0, _strip_event_lines(data))]))
    doc = {"routes": [route("r", "openai-responses", upstream.url)]}
    async with running_gateway(doc) as gw:
        client = AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=10)
        response = await client.responses.create(model="r", input="hi")
        await client.close()
    completed = json.loads(frames_of(data)[-1][1])["response"]
    assert response.id == completed["id"] and response.status == "completed"
    assert response.output_text == completed["output"][0]["content"][0]["text"]


def _sse(event: str, doc: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + compact(doc) + b"\n\n"


CITATION = {
    "type": "char_location",
    "cited_text": "The grass is green.",
    "document_index": 0,
    "document_title": "Facts",
    "start_char_index": 0,
    "end_char_index": 19,
}


def _cited_message(start_block: dict[str, Any]) -> bytes:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    cite = {"type": "citations_delta", "citation": CITATION}
    return b"".join(
        [
            _sse("message_start", {"type": "message_start", "message": message}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0, **start_block}),
            _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": cite}),
            _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Grass is green."},
                },
            ),
            _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            ),
            _sse("message_stop", {"type": "message_stop"}),
        ]
    )


@pytest.mark.parametrize(
    "start_block",
    [
        {"content_block": {"type": "text", "text": "", "citations": None}},
        {"content_block": {"type": "text", "text": ""}},
    ],
    ids=["citations-null", "citations-absent"],
)
async def test_whole_message_keeps_citations(
    upstream: FakeUpstream, start_block: dict[str, Any]
) -> None:
    upstream.push(Script(chunks=[(0, _cited_message(start_block))]))
    doc = {"routes": [route("r", "anthropic", upstream.url)]}
    async with running_gateway(doc) as gw:
        client = AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=10)
        message = await client.messages.create(
            model="r",
            max_tokens=64,
            messages=USER,  # type: ignore[arg-type]
        )
        await client.close()
    (block,) = [b.to_dict() for b in message.content]
    assert block["text"] == "Grass is green." and block["citations"] == [CITATION]


async def test_chat_usage_is_asked_for_even_when_the_client_declines(
    upstream: FakeUpstream,
) -> None:
    """The gateway counts tokens and cost from the upstream's usage: a client's
    ``include_usage: false`` does not turn it off upstream, and the client gets no usage chunk."""
    data = fixture_bytes("openai_chat_cache_usage.sse")
    upstream.push(Script(chunks=[(0, data)]))
    body = {
        "model": "r",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": False},
    }
    async with running_gateway({"routes": [route("r", "openai-chat", upstream.url)]}) as gw:
        got = await post_raw(f"{gw.url}/v1/chat/completions", compact(body))
    assert upstream.seen[0].body["stream_options"] == {"include_usage": True}
    assert frames_of(got) == [f for f in frames_of(data) if '"choices":[]' not in f[1]]


def _message_of(*events: dict[str, Any]) -> bytes:
    """A Messages upstream stream: ``message_start``, ``events``, then a clean end."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    }
    end = {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}}
    return sse(start, *events, {**end, "usage": {"output_tokens": 9}}, {"type": "message_stop"})


def _tool_use(index: int, call_id: str, partial_json: str) -> list[dict[str, Any]]:
    block = {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {}}
    delta = {"type": "input_json_delta", "partial_json": partial_json}
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        {"type": "content_block_delta", "index": index, "delta": delta},
        {"type": "content_block_stop", "index": index},
    ]


async def test_whole_message_keeps_a_malformed_tool_input(upstream: FakeUpstream) -> None:
    """A model's tool input that is not a JSON object is kept as ``{"_raw": text}``, as on a
    re-encoded route, and a stray delta before any block is dropped: the whole message is
    still the 200 answer, never the gateway's 500."""
    stray = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "x"},
    }
    upstream.push(
        Script(
            chunks=[
                (0, _message_of(stray, *_tool_use(0, "toolu_a", '{"city": "Ro'))),
            ]
        ),
        Script(chunks=[(0, _message_of(*_tool_use(0, "toolu_b", '["Rome"]')))]),
    )
    doc = {"routes": [route("r", "anthropic", upstream.url)]}
    async with (
        running_gateway(doc) as gw,
        AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=10) as client,
    ):
        cut = await client.messages.create(model="r", max_tokens=64, messages=USER)  # type: ignore[arg-type]
        listed = await client.messages.create(model="r", max_tokens=64, messages=USER)  # type: ignore[arg-type]
    assert [b.to_dict() for b in cut.content] == [
        {
            "type": "tool_use",
            "id": "toolu_a",
            "name": "get_weather",
            "input": {"_raw": '{"city": "Ro'},
        }
    ]
    assert [b.to_dict()["input"] for b in listed.content] == [{"_raw": '["Rome"]'}]
    assert cut.stop_reason == listed.stop_reason == "tool_use"
