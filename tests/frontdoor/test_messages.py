"""The Anthropic Messages front door, used through the official ``anthropic`` Python package.

Every provider's recorded fixtures are replayed by a fake upstream on loopback; what the SDK
gets (``messages.stream()`` + ``get_final_message()``, ``create(stream=True)``, and the
non-streaming ``create``) must equal what the token protocol carries for the same bytes (the
adapter replayed without a server): text and reasoning byte for byte, tool calls with their ids
and argument JSON byte for byte, the stop reason, usage, and errors as Anthropic's ``error``
event (never ``message_stop``). Every streamed event is validated with the SDK's own
``RawMessageStreamEvent`` and every whole answer with ``Message``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic import AsyncAnthropic
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from gateway.adapters import ADAPTERS
from gateway.encoders.messages import ERROR_TYPES
from tests.adapters.harness import (
    FIXTURES,
    assemble,
    fixture_bytes,
    fixture_expected,
    make_adapter,
    replay,
    splits,
)
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway

RAW = TypeAdapter(RawMessageStreamEvent)
USER = [{"role": "user", "content": "Hello"}]
BEDROCK_KEYS = {
    "region": "us-west-2",
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "other": "end_turn",
}
HEADERS = {
    "bin": {"Content-Type": "application/vnd.amazon.eventstream"},
    "ndjson": {"Content-Type": "application/x-ndjson"},
    "sse": {"Content-Type": "text/event-stream"},
}


def provider_of(fixture: str) -> tuple[str, dict[str, Any]]:
    """The adapter and its options for a fixture, by the fixture's name."""
    if fixture.startswith("openai_responses"):
        return "openai-responses", {}
    if fixture.startswith(("openai_chat", "openai_compat")):
        return "openai-chat", {}
    if fixture.startswith("ollama_generate"):
        return "ollama", {"endpoint": "generate"}
    if fixture.startswith("bedrock"):
        return "bedrock", BEDROCK_KEYS
    return fixture.split("_", 1)[0], {}


PROVIDER_FIXTURES = sorted(
    p.name
    for p in FIXTURES.iterdir()
    if p.suffix in (".sse", ".ndjson", ".bin") and not p.name.startswith(("vercel", "sse_"))
)


def route_doc(name: str, provider: str, options: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": provider,
        "upstream": {"base_url": base_url, "api_key": "sk-test", "model": "up-model"},
        "options": options,
    }


def client_for(url: str) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=url, api_key="x", max_retries=0, timeout=10)


def truth(fixture: str) -> dict[str, Any]:
    """What the token protocol carries for the fixture (the adapter without a server)."""
    provider, options = provider_of(fixture)
    adapter = make_adapter(ADAPTERS[provider], options, model="up-model")
    got = assemble(replay(adapter, [fixture_bytes(fixture)]))
    assert got.terminal is not None
    native = fixture_expected(fixture).get("tool_calls") or []
    for call, recorded in zip(got.tool_calls, native, strict=False):
        call["native_id"] = bool(recorded.get("id"))
    return {
        "text": got.text,
        "reasoning": got.reasoning,
        "tools": got.tool_calls,
        "terminal": got.terminal,
        "usage": got.usage or {},
    }


def from_raw_events(events: list[Any]) -> dict[str, Any]:
    """Text, thinking, tool calls (raw ``partial_json`` joined), stop reason and usage."""
    blocks: dict[int, dict[str, Any]] = {}
    stop, usage, types = None, None, []
    for event in events:
        RAW.validate_python(event.to_dict())
        types.append(event.type)
        if event.type == "content_block_start":
            blocks[event.index] = {**event.content_block.to_dict(), "json": ""}
        elif event.type == "content_block_delta":
            block, delta = blocks[event.index], event.delta
            if delta.type == "text_delta":
                block["text"] += delta.text
            elif delta.type == "thinking_delta":
                block["thinking"] += delta.thinking
            elif delta.type == "input_json_delta":
                block["json"] += delta.partial_json
        elif event.type == "message_start":  # usage so far; message_delta's counts replace it
            usage = event.message.usage.to_dict()
        elif event.type == "message_delta":
            stop = event.delta.stop_reason
            usage = {**(usage or {}), **event.usage.to_dict()}
    ordered = [blocks[i] for i in sorted(blocks)]
    return {
        "text": "".join(b["text"] for b in ordered if b["type"] == "text"),
        "reasoning": "".join(b["thinking"] for b in ordered if b["type"] == "thinking"),
        "tools": [(b["id"], b["name"], b["json"]) for b in ordered if b["type"] == "tool_use"],
        "stop": stop,
        "usage": usage,
        "types": types,
    }


def from_message(message: Message) -> dict[str, Any]:
    blocks = message.content
    return {
        "text": "".join(b.text for b in blocks if b.type == "text"),
        "reasoning": "".join(b.thinking for b in blocks if b.type == "thinking"),
        "tools": [(b.id, b.name, b.input) for b in blocks if b.type == "tool_use"],
        "stop": message.stop_reason,
        "usage": message.usage.to_dict(),
    }


def check_same(got: dict[str, Any], want: dict[str, Any], *, raw_args: bool) -> None:
    assert got["text"] == want["text"]
    assert got["reasoning"] == want["reasoning"]
    assert len(got["tools"]) == len(want["tools"])
    for (call_id, name, args), call in zip(got["tools"], want["tools"], strict=True):
        # A provider without call ids gets one synthesised per stream (random): only its shape.
        assert (
            call_id == call["id"] if call.get("native_id") else isinstance(call_id, str) and call_id
        )
        assert name == call["name"]
        assert args == (call["arguments"] if raw_args else json.loads(call["arguments"]))
    assert got["stop"] == STOP[want["terminal"].data["reason"]]
    usage = want["usage"]
    assert got["usage"]["output_tokens"] == usage.get("output_tokens", 0)
    cached = usage.get("cached_input_tokens", 0)
    written = usage.get("cache_write_input_tokens", 0)
    # Messages' input_tokens excludes cache reads and writes; the token protocol's includes them.
    assert got["usage"]["input_tokens"] == usage.get("input_tokens", 0) - cached - written
    if "cached_input_tokens" in usage:
        assert got["usage"]["cache_read_input_tokens"] == cached
    if "cache_write_input_tokens" in usage:
        assert got["usage"]["cache_creation_input_tokens"] == written


def check_error(exc: anthropic.APIStatusError, want: dict[str, Any]) -> None:
    body = exc.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] in ERROR_TYPES
    assert body["error"]["message"] == want["terminal"].data["message"]


@pytest.mark.parametrize("fixture", PROVIDER_FIXTURES)
async def test_every_fixture_through_the_sdk(upstream: FakeUpstream, fixture: str) -> None:
    provider, options = provider_of(fixture)
    data = fixture_bytes(fixture)
    cuts = dict(splits(data))
    headers = HEADERS[fixture.rsplit(".", 1)[1]]
    for label in ("random0", "random1", "whole"):
        upstream.push(Script(chunks=[(0, c) for c in cuts[label]], headers=headers))
    want = truth(fixture)
    failed = want["terminal"].type == "error"
    doc = {"routes": [route_doc("r", provider, options, upstream.url)]}
    async with running_gateway(doc) as gw, client_for(gw.url) as client:
        # 1. messages.stream() and its accumulated final message.
        seen: list[Any] = []
        async with client.messages.stream(model="r", max_tokens=64, messages=USER) as stream:  # type: ignore[arg-type]
            try:
                async for event in stream:
                    seen.append(event)
                final = await stream.get_final_message()
            except anthropic.APIStatusError as exc:
                assert failed, exc
                check_error(exc, want)
            else:
                assert not failed
                Message.model_validate(final.to_dict())
                check_same(from_message(final), want, raw_args=False)
        raw_types = {"message_start", "message_delta", "message_stop"}
        assert seen and seen[0].type == "message_start"
        for event in seen:
            if event.type in raw_types or event.type.startswith("content_block"):
                RAW.validate_python(event.to_dict())
        # 2. create(stream=True): raw events; tool arguments byte for byte.
        events: list[Any] = []
        try:
            async for event in await client.messages.create(
                model="r",
                max_tokens=64,
                messages=USER,  # type: ignore[arg-type]
                stream=True,
            ):
                events.append(event)
        except anthropic.APIStatusError as exc:
            assert failed, exc
            check_error(exc, want)
            assert "message_stop" not in [e.type for e in events]
        else:
            assert not failed
            got = from_raw_events(events)
            assert got["types"][-1] == "message_stop" and got["types"][-2] == "message_delta"
            check_same(got, want, raw_args=True)
        # 3. Non-streaming: one message, or an error status.
        try:
            raw = await client.messages.with_raw_response.create(
                model="r",
                max_tokens=64,
                messages=USER,  # type: ignore[arg-type]
            )
        except anthropic.APIStatusError as exc:
            assert failed, exc
            assert exc.status_code in (429, 502, 503, 504)
            check_error(exc, want)
        else:
            assert not failed
            message = Message.model_validate_json(await raw.read())
            check_same(from_message(message), want, raw_args=False)
    assert [s.path for s in upstream.seen] == [upstream.seen[0].path] * 3


async def test_truncation_ends_in_an_error_event_on_the_wire(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0, fixture_bytes("anthropic_truncated.sse"))]))
    doc = {"routes": [route_doc("r", "anthropic", {}, upstream.url)]}
    body = {"model": "r", "max_tokens": 64, "messages": USER, "stream": True}
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/v1/messages", json=body) as r:
            status, ctype, raw = r.status, r.headers["Content-Type"], await r.read()
    frames = [f for f in raw.decode().split("\n\n") if f]
    names = [f.split("\n", 1)[0] for f in frames]
    assert status == 200 and ctype.startswith("text/event-stream")
    assert names[0] == "event: message_start" and names[-1] == "event: error"
    assert "event: message_stop" not in names and "event: message_delta" not in names
    error = json.loads(frames[-1].split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"


async def test_abort_by_closing_the_sdk_stream(upstream: FakeUpstream) -> None:
    data = fixture_bytes("anthropic_basic.sse")
    head = data[: data.index(b"\n\n", data.index(b'"Hello"')) + 2]
    upstream.push(Script(chunks=[(0, head)], hang_after=True))
    doc = {"routes": [route_doc("r", "anthropic", {}, upstream.url)]}
    async with running_gateway(doc) as gw, client_for(gw.url) as client:
        async with client.messages.stream(model="r", max_tokens=64, messages=USER) as stream:  # type: ignore[arg-type]
            async for text in stream.text_stream:
                assert text == "Hello"
                break
            t0 = time.monotonic()
        seen = upstream.seen[0]
        await asyncio.wait_for(seen.closed.wait(), 2)
    assert seen.closed_at is not None and seen.closed_at - t0 < 0.1
    assert not seen.completed
