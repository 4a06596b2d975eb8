"""``POST /v1/responses`` used through the official ``openai`` package, over every provider.

Each case replays a recorded upstream fixture from a fake upstream on loopback. What the client
must see is derived from the route's own adapter (the fixture replayed through it with the
contract harness), so text, reasoning and tool-call arguments are compared byte for byte with
what the provider sent. Three ways in: ``responses.create(stream=True)``, ``responses.stream()``
(the SDK's accumulator, which raises on events out of order) and non-streaming ``create``; and
the raw bytes, every event validated with the SDK's own pydantic union.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.errors import status_for_code as status_for
from tests.adapters.harness import Assembled, assemble, fixture_bytes, fixture_expected, replay
from tests.frontdoor.streams import NO_ARGUMENTS, NO_ARGUMENTS_CALLS
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway

EVENT = TypeAdapter(ResponseStreamEvent)
INPUT = [{"role": "user", "content": [{"type": "input_text", "text": "Hello"}]}]
BEDROCK = {
    "region": "us-east-1",
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
PROVIDERS = ("openai-responses", "openai-chat", "anthropic", "gemini", "ollama", "cohere")

CASES = [
    ("openai-responses", "openai_responses_basic.sse"),
    ("openai-responses", "openai_responses_reasoning_and_tool_call.sse"),
    ("openai-responses", "openai_responses_incomplete.sse"),
    ("openai-responses", "openai_responses_failed_midstream.sse"),
    ("openai-responses", "openai_responses_truncated.sse"),
    ("openai-chat", "openai_chat_tool_calls.sse"),
    ("openai-chat", "openai_chat_usage.sse"),
    ("openai-chat", "openai_chat_error_midstream.sse"),
    ("openai-chat", "openai_compat_deepseek_reasoning.sse"),
    ("openai-chat", "openai_compat_no_done.sse"),
    ("anthropic", "anthropic_thinking_tool_use.sse"),
    ("anthropic", "anthropic_max_tokens.sse"),
    ("anthropic", "anthropic_truncated.sse"),
    ("gemini", "gemini_thinking_tool_call.sse"),
    ("gemini", "gemini_safety.sse"),
    ("gemini", "gemini_error_midstream.sse"),
    ("ollama", "ollama_chat.ndjson"),
    ("ollama", "ollama_chat_tool_calls.ndjson"),
    ("cohere", "cohere_v2_chat_tool_call.sse"),
    ("cohere", "cohere_v2_chat_thinking.sse"),
    ("bedrock", "bedrock_converse_stream.bin"),
    ("bedrock", "bedrock_converse_stream_exception.bin"),
]
IDS = [f"{p}:{f.split('.')[0]}" for p, f in CASES]


def routes(base_url: str) -> dict[str, Any]:
    up = {"base_url": base_url, "api_key": "sk-test", "model": "up-model"}
    docs: list[dict[str, Any]] = [{"name": p, "provider": p, "upstream": up} for p in PROVIDERS]
    docs.append({"name": "bedrock", "provider": "bedrock", "upstream": up, "options": BEDROCK})
    sim = {"text": "Hello there, world!", "reasoning": "Think.", "token_interval": 0}
    docs.append({"name": "sim", "provider": "simulated", "options": sim})
    docs.append({"name": "broken", "provider": "simulated", "options": {**sim, "fail_after": 2}})
    return {"routes": docs}


def client_for(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=10)


def push(upstream: FakeUpstream, fixture: str, pieces: list[bytes] | None = None) -> bytes:
    data = fixture_bytes(fixture)
    headers = {"Content-Type": fixture_expected(fixture)["content_type"]}
    upstream.push(Script(chunks=[(0, p) for p in (pieces or [data])], headers=headers))
    return data


def reference(gw: Any, route: str, data: bytes) -> Assembled:
    """What the route's adapter makes of the upstream bytes: the ground truth for the client."""
    adapter = gw.state.routes[route].targets[0][1]
    want = assemble(replay(adapter, [data]))
    again = assemble(replay(adapter, [data]))
    for call, other in zip(want.tool_calls, again.tool_calls, strict=True):
        if call["id"] != other["id"]:
            call["id"] = None  # synthesised per stream (the provider has no ids): not comparable
    return want


def expected_status(want: Assembled) -> tuple[str, str | None]:
    assert want.terminal is not None
    if want.terminal.type == "error":
        return "failed", None
    reason = want.terminal.data["reason"]
    incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(reason)
    return ("incomplete" if incomplete else "completed"), incomplete


PASSED_THROUGH = "openai-responses"
"""The route whose upstream speaks Responses itself: its frames reach the client as they are."""


def check_response(response: Response, want: Assembled, *, route: str = "") -> None:
    """The final ``response`` object against the adapter's events.

    A failed pass-through response is the upstream's own (or, for a truncation, the gateway's
    ``response.failed`` over the upstream's response): its output is what the upstream listed.
    """
    Response.model_validate(response.to_dict())
    status, incomplete = expected_status(want)
    assert response.status == status
    assert response.object == "response"
    if route == PASSED_THROUGH and status == "failed":
        assert response.error is not None and response.error.message
        return
    text = "".join(
        part.text
        for item in response.output
        if item.type == "message"
        for part in item.content
        if part.type == "output_text"
    )
    assert text == want.text
    summary = "".join(
        s.text for item in response.output if item.type == "reasoning" for s in item.summary
    )
    assert summary == want.reasoning
    calls = [
        {"id": i.call_id, "name": i.name, "arguments": i.arguments}
        for i in response.output
        if i.type == "function_call"
    ]
    assert all(c["id"] for c in calls)
    for call, wanted in zip(calls, want.tool_calls, strict=True):
        if wanted["id"] is None:
            call["id"] = None
    assert calls == want.tool_calls
    if incomplete:
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == incomplete
    if status == "failed":
        assert response.error is not None and want.terminal is not None
        assert response.error.message == want.terminal.data["message"]
        assert response.error.type == want.terminal.data["code"]
    if want.usage and status != "failed":
        usage = response.usage
        assert usage is not None
        assert usage.input_tokens == want.usage.get("input_tokens", 0)
        assert usage.output_tokens == want.usage.get("output_tokens", 0)
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
        assert usage.output_tokens_details.reasoning_tokens == want.usage.get("reasoning_tokens", 0)
        assert usage.input_tokens_details.cached_tokens == want.usage.get("cached_input_tokens", 0)


@pytest.mark.parametrize(("route", "fixture"), CASES, ids=IDS)
async def test_raw_events_validate(upstream: FakeUpstream, route: str, fixture: str) -> None:
    """Raw bytes, upstream split at random cuts: named SSE events, sequence 0.., SDK types."""
    data = fixture_bytes(fixture)
    cut = [data[i : i + 97] for i in range(0, len(data), 97)]
    push(upstream, fixture, cut)
    body = {"model": route, "input": INPUT, "stream": True}
    async with running_gateway(routes(upstream.url)) as gw:
        want = reference(gw, route, data)
        async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/responses", json=body) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            raw = (await r.read()).decode()
    frames = [f for f in raw.split("\n\n") if f]
    events = []
    for n, frame in enumerate(frames):
        head, data_line = frame.split("\n")
        doc = json.loads(data_line.removeprefix("data: "))
        assert head == "event: " + doc["type"]
        assert doc["sequence_number"] == n
        EVENT.validate_python(doc)
        events.append(doc)
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    status, _ = expected_status(want)
    assert events[-1]["type"] == f"response.{status}"
    assert events[-1]["response"]["status"] == status
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == want.text
    check_response(Response.model_validate(events[-1]["response"]), want, route=route)


@pytest.mark.parametrize(("route", "fixture"), CASES, ids=IDS)
async def test_sdk_stream_helper(upstream: FakeUpstream, route: str, fixture: str) -> None:
    """``responses.stream()``: the SDK's accumulator checks the order and identity of items."""
    data = push(upstream, fixture)
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        want = reference(gw, route, data)
        async with client.responses.stream(model=route, input=INPUT) as stream:  # type: ignore[arg-type]
            seen = [event async for event in stream]
            status, _ = expected_status(want)
            if status == "completed":
                final = await stream.get_final_response()
            else:
                with pytest.raises(RuntimeError, match=r"response\.completed"):
                    await stream.get_final_response()
    last = seen[-1]
    assert last.type == f"response.{status}"
    check_response(final if status == "completed" else last.response, want, route=route)  # type: ignore[union-attr]
    reasoning = "".join(e.delta for e in seen if e.type == "response.reasoning_summary_text.delta")
    assert reasoning == want.reasoning
    args = {}
    for e in seen:
        if e.type == "response.function_call_arguments.done":
            args[e.item_id] = e.arguments
    assert list(args.values()) == [c["arguments"] for c in want.tool_calls]


@pytest.mark.parametrize(("route", "fixture"), CASES, ids=IDS)
async def test_sdk_whole_response(upstream: FakeUpstream, route: str, fixture: str) -> None:
    """Non-streaming ``create``: the ``response`` object, or the error status of a failure."""
    data = push(upstream, fixture)
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        want = reference(gw, route, data)
        assert want.terminal is not None
        if want.terminal.type == "error":
            with pytest.raises(openai.APIStatusError) as failed:
                await client.responses.create(model=route, input=INPUT)  # type: ignore[arg-type]
            code = want.terminal.data["code"]
            assert failed.value.status_code == status_for(code)
            assert failed.value.code == code
            return
        raw = await client.responses.with_raw_response.create(model=route, input=INPUT)  # type: ignore[arg-type]
    assert raw.headers["content-type"] == "application/json"
    response = raw.parse()
    Response.model_validate_json(raw.content)
    check_response(response, want)
    assert response.output_text == want.text
    if route == PASSED_THROUGH:  # the upstream's own response: its id and model
        assert (
            response.model
            == json.loads(data.split(b"data: ", 1)[1].split(b"\n")[0])["response"]["model"]
        )
    else:
        assert response.model == route and response.id.startswith("resp_")


async def test_create_stream_over_the_simulated_route(upstream: FakeUpstream) -> None:
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        stream = await client.responses.create(
            model="sim",
            input="Hello",
            instructions="Be brief.",
            stream=True,
            metadata={"k": "v"},
        )
        events = [e async for e in stream]
    EVENT.validate_python(events[-1].to_dict())
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert (text, summary) == ("Hello there, world!", "Think.")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.instructions == "Be brief." and done.response.metadata == {"k": "v"}
    assert done.response.output_text == "Hello there, world!"


async def test_provider_error_mid_stream_is_response_failed(upstream: FakeUpstream) -> None:
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        stream = await client.responses.create(model="broken", input="Hello", stream=True)
        events = [e async for e in stream]
        with pytest.raises(openai.APIStatusError) as held:
            await client.responses.create(model="broken", input="Hello")
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.error is not None and failed.response.error.code == "server_error"
    assert failed.response.error.type == "upstream_error"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "Hello there, "
    )
    assert [i.status for i in failed.response.output if i.type == "message"] == ["incomplete"]
    assert held.value.status_code == 502 and held.value.code == "upstream_error"


async def test_abort_closes_the_upstream(upstream: FakeUpstream) -> None:
    first = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
    upstream.push(Script(chunks=[(0, first)], hang_after=True))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        stream = await client.responses.create(model="openai-chat", input="Hello", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
        t0 = time.monotonic()
        await stream.close()
        seen = upstream.seen[0]
        await asyncio.wait_for(seen.closed.wait(), 2)
    assert seen.closed_at is not None and seen.closed_at - t0 < 0.1
    assert not seen.completed


async def test_streamed_function_call_without_arguments_is_an_empty_object(
    upstream: FakeUpstream,
) -> None:
    """A call with no argument text streams "{}" as its delta before its done events."""
    upstream.push(Script(chunks=[(0, NO_ARGUMENTS)]))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        async with client.responses.stream(model="anthropic", input="Hello") as stream:
            events = [e async for e in stream]
            final = await stream.get_final_response()
    deltas: dict[str, str] = {}
    done: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.type == "response.function_call_arguments.delta":
            assert e.item_id not in done
            deltas[e.item_id] = deltas.get(e.item_id, "") + e.delta
        elif e.type == "response.function_call_arguments.done":
            done[e.item_id] = (deltas.get(e.item_id, ""), e.arguments)
        elif e.type == "response.output_item.done" and e.item.type == "function_call":
            assert done[e.item.id] == (e.item.arguments, e.item.arguments)
    assert [args for args, _ in done.values()] == [a for _, a in NO_ARGUMENTS_CALLS]
    calls = [(i.call_id, i.arguments) for i in final.output if i.type == "function_call"]
    assert calls == NO_ARGUMENTS_CALLS


async def test_whole_function_call_without_arguments_is_an_empty_object(
    upstream: FakeUpstream,
) -> None:
    upstream.push(Script(chunks=[(0, NO_ARGUMENTS)]))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        response = await client.responses.create(model="anthropic", input="Hello")
    calls = [(i.call_id, i.arguments) for i in response.output if i.type == "function_call"]
    assert calls == NO_ARGUMENTS_CALLS


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh", "max"])
async def test_every_sdk_reasoning_effort_is_accepted(upstream: FakeUpstream, effort: str) -> None:
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        response = await client.responses.create(
            model="sim",
            input="Hello",
            reasoning={"effort": effort},  # type: ignore[typeddict-item]
        )
    assert response.output_text == "Hello there, world!"
    assert response.reasoning is not None and response.reasoning.effort == effort
