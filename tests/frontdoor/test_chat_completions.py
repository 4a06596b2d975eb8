"""The OpenAI-compatible front door, used through the official ``openai`` Python package.

Routes backed by a fake Chat Completions upstream, a fake Messages upstream (thinking + tool
use) and the simulated provider; streaming and not; tool calls; usage; an abort; errors.
Every streamed chunk is validated with ``ChatCompletionChunk`` and every whole answer with
``ChatCompletion`` (the SDK's own pydantic types) on top of the SDK consuming them.
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
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.adapters.harness import fixture_bytes, fixture_expected
from tests.frontdoor.streams import NO_ARGUMENTS, NO_ARGUMENTS_CALLS, STRICT_TOOLS
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway

USER = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def routes(base_url: str) -> dict[str, Any]:
    def fake(name: str, provider: str) -> dict[str, Any]:
        return {
            "name": name,
            "provider": provider,
            "upstream": {"base_url": base_url, "api_key": "sk-test", "model": "up-model"},
        }

    sim = {
        "name": "sim",
        "provider": "simulated",
        "options": {
            "text": "Hello there, world!",
            "reasoning": "Think.",
            "first_token_delay": 0,
            "token_interval": 0,
        },
    }
    broken = {**sim, "name": "broken", "options": {**sim["options"], "fail_after": 2}}
    return {"routes": [fake("chat", "openai-chat"), fake("msgs", "anthropic"), sim, broken]}


def client_for(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=10)


def assemble_chunks(chunks: list[ChatCompletionChunk]) -> dict[str, Any]:
    """What an SDK user rebuilds from chunks: text, reasoning, tool calls, finish, usage."""
    text, reasoning, calls = "", "", {}
    finish, usage = None, None
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.to_dict())
        if chunk.usage is not None:
            usage = chunk.usage.to_dict()
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for piece in delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
                if piece.id:
                    call["id"] = piece.id
                if piece.function and piece.function.name:
                    call["name"] = piece.function.name
                if piece.function and piece.function.arguments:
                    call["arguments"] += piece.function.arguments
            finish = choice.finish_reason or finish
    tools = [calls[i] for i in sorted(calls)]
    return {"text": text, "reasoning": reasoning, "tools": tools, "finish": finish, "usage": usage}


def expected_tools(fixture: str) -> list[dict[str, Any]]:
    return [
        {"id": c["id"], "name": c["name"], "arguments": c["arguments"]}
        for c in fixture_expected(fixture)["tool_calls"]
    ]


async def test_models_lists_the_routes(upstream: FakeUpstream) -> None:
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == ["chat", "msgs", "sim", "broken"]


async def test_stream_tool_calls_from_a_chat_upstream(upstream: FakeUpstream) -> None:
    fixture = "openai_chat_tool_calls.sse"
    upstream.push(Script(chunks=[(0, fixture_bytes(fixture))]))
    history = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "And "}, {"type": "text", "text": "now?"}],
        },
    ]
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        stream = await client.chat.completions.create(
            model="chat",
            messages=history,  # type: ignore[arg-type]
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            max_completion_tokens=100,
            reasoning_effort="low",
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    got = assemble_chunks(chunks)
    assert got["tools"] == expected_tools(fixture)
    assert got["text"] == "" and got["finish"] == "tool_calls"
    assert chunks[0].choices[0].delta.role == "assistant"
    # Same-API pass-through: the upstream's own chunks (its id and model) and the client's own
    # messages, content parts and all; the gateway applies the route's model and streaming.
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].model == "gpt-4o-2024-08-06"
    sent = upstream.seen[0].body
    assert sent["model"] == "up-model" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == history and sent["tools"] == [WEATHER_TOOL]
    assert sent["reasoning_effort"] == "low" and sent["max_completion_tokens"] == 100


async def test_whole_answer_with_tool_calls(upstream: FakeUpstream) -> None:
    fixture = "openai_chat_tool_calls.sse"
    upstream.push(Script(chunks=[(0, fixture_bytes(fixture))]))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat",
            messages=USER,
            tools=[WEATHER_TOOL],  # type: ignore[list-item,arg-type]
        )
        completion = raw.parse()
    ChatCompletion.model_validate_json(raw.content)
    assert raw.headers["content-type"] == "application/json"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}  # type: ignore[union-attr]
        for c in choice.message.tool_calls or []
    ]
    assert calls == expected_tools(fixture)
    assert completion.usage is not None and completion.usage.prompt_tokens == 149
    assert completion.usage.total_tokens == 209


async def test_usage_chunk_when_asked(upstream: FakeUpstream) -> None:
    fixture = "openai_chat_usage.sse"
    upstream.push(*[Script(chunks=[(0, fixture_bytes(fixture))]) for _ in range(2)])
    want = fixture_expected(fixture)
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        with_usage = [
            c
            async for c in await client.chat.completions.create(
                model="chat",
                messages=USER,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        without = [
            c
            async for c in await client.chat.completions.create(
                model="chat",
                messages=USER,  # type: ignore[arg-type]
                stream=True,
            )
        ]
    got = assemble_chunks(with_usage)
    assert got["text"] == want["text"] and got["finish"] == "stop"
    assert with_usage[-1].choices == []
    assert got["usage"]["prompt_tokens"] == 16 and got["usage"]["completion_tokens"] == 11
    assert got["usage"]["total_tokens"] == 27
    assert all(c.usage is None for c in without)
    assert assemble_chunks(without)["text"] == want["text"]


@pytest.mark.parametrize("stream", [True, False])
async def test_thinking_and_tool_use_upstream(upstream: FakeUpstream, stream: bool) -> None:
    fixture = "anthropic_thinking_tool_use.sse"
    upstream.push(Script(chunks=[(0, fixture_bytes(fixture))]))
    want = fixture_expected(fixture)
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        if stream:
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model="msgs",
                    messages=USER,  # type: ignore[arg-type]
                    tools=[WEATHER_TOOL],  # type: ignore[list-item]
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ]
            got = assemble_chunks(chunks)
        else:
            raw = await client.chat.completions.with_raw_response.create(
                model="msgs",
                messages=USER,
                tools=[WEATHER_TOOL],  # type: ignore[list-item,arg-type]
            )
            ChatCompletion.model_validate_json(raw.content)
            message = raw.parse().choices[0].message
            got = {
                "text": message.content,
                "reasoning": (message.model_extra or {}).get("reasoning_content"),
                "tools": [
                    {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}  # type: ignore[union-attr]
                    for c in message.tool_calls or []
                ],
                "finish": raw.parse().choices[0].finish_reason,
                "usage": raw.parse().usage.to_dict(),  # type: ignore[union-attr]
            }
    assert got["text"] == want["text"]
    assert got["reasoning"] == want["reasoning"]
    assert [(t["id"], t["name"]) for t in got["tools"]] == [
        (c["id"], c["name"]) for c in want["tool_calls"]
    ]
    assert [json.loads(t["arguments"]) for t in got["tools"]] == [
        json.loads(c["arguments"]) for c in want["tool_calls"]
    ]
    assert got["finish"] == "tool_calls"
    assert got["usage"]["prompt_tokens"] == 423 and got["usage"]["completion_tokens"] == 119
    assert upstream.seen[0].path == "/v1/messages"


@pytest.mark.parametrize("stream", [True, False])
async def test_simulated_route(upstream: FakeUpstream, stream: bool) -> None:
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        if stream:
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model="sim",
                    messages=USER,  # type: ignore[arg-type]
                    stream=True,
                )
            ]
            got = assemble_chunks(chunks)
            text, reasoning = got["text"], got["reasoning"]
        else:
            done = await client.chat.completions.create(model="sim", messages=USER)  # type: ignore[arg-type]
            ChatCompletion.model_validate(done.to_dict())
            text = done.choices[0].message.content
            reasoning = (done.choices[0].message.model_extra or {})["reasoning_content"]
    assert text == "Hello there, world!"
    assert reasoning == "Think."


async def test_abort_closes_the_upstream(upstream: FakeUpstream) -> None:
    first = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
    upstream.push(Script(chunks=[(0, first)], hang_after=True))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        stream = await client.chat.completions.create(
            model="chat",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        t0 = time.monotonic()
        await stream.close()
        seen = upstream.seen[0]
        await asyncio.wait_for(seen.closed.wait(), 2)
    assert seen.closed_at is not None and seen.closed_at - t0 < 0.5
    assert not seen.completed


async def test_errors_in_the_compatible_shape(upstream: FakeUpstream) -> None:
    upstream.push(Script(status=500, chunks=(), headers={"Content-Type": "application/json"}))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        with pytest.raises(openai.NotFoundError) as not_found:
            await client.chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="sim",
                messages=[{"role": "wizard", "content": "x"}],  # type: ignore[list-item]
            )
        with pytest.raises(openai.APIStatusError) as upstream_down:
            await client.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]
        # Mid-stream failure: an error frame, which the SDK raises while iterating.
        stream = await client.chat.completions.create(
            model="broken",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
        )
        texts = []
        with pytest.raises(openai.APIError, match="simulated upstream failure"):
            async for chunk in stream:
                texts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        # Non-streaming: the answer was held back, so the failure is still a status.
        with pytest.raises(openai.APIStatusError) as held:
            await client.chat.completions.create(model="broken", messages=USER)  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{gw.url}/v1/chat/completions", data="{") as r:
                ctype = (r.status, await r.json())
            async with s.post(f"{gw.url}/v1/chat/completions", json={"model": "sim"}) as r:
                missing = (r.status, await r.json())
    assert not_found.value.status_code == 404
    assert not_found.value.code == "model_not_found"
    assert not_found.value.body["param"] == "model"  # type: ignore[index]
    assert bad.value.status_code == 400 and bad.value.code == "invalid_request"
    assert "messages[0].role" in bad.value.message
    assert bad.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert upstream_down.value.status_code == 502
    assert "".join(texts) == "Hello there, "
    assert held.value.status_code == 502 and held.value.code == "upstream_error"
    assert ctype[0] == 415 and ctype[1]["error"]["code"] == "unsupported_media_type"
    assert missing[0] == 400 and "messages" in missing[1]["error"]["message"]
    assert set(missing[1]["error"]) == {"message", "type", "param", "code"}


async def test_whole_answer_commits_on_heartbeat_and_stays_valid_json(
    upstream: FakeUpstream,
) -> None:
    """A slow non-streaming answer sends headers and newlines at heartbeat time; JSON still parses."""
    doc = routes(upstream.url)
    doc["server"] = {"heartbeat_interval": "100ms"}
    doc["routes"][2]["options"] = {"text": "slow", "first_token_delay": "350ms"}
    async with running_gateway(doc) as gw, client_for(gw.url) as client:
        raw = await client.chat.completions.with_raw_response.create(model="sim", messages=USER)  # type: ignore[arg-type]
    assert raw.content.startswith(b"\n")
    assert ChatCompletion.model_validate_json(raw.content).choices[0].message.content == "slow"


async def test_streamed_tool_call_without_arguments_is_an_empty_object(
    upstream: FakeUpstream,
) -> None:
    """Each call's arguments are JSON, "{}" for none, before the SDK's helper closes the call."""
    upstream.push(Script(chunks=[(0, NO_ARGUMENTS)]))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        async with client.chat.completions.stream(
            model="msgs",
            messages=USER,  # type: ignore[arg-type]
            tools=STRICT_TOOLS,  # type: ignore[arg-type]
        ) as stream:
            done = [
                (e.index, e.arguments, e.parsed_arguments)
                async for e in stream
                if e.type == "tool_calls.function.arguments.done"
            ]
            final = await stream.get_final_completion()
    assert done == [(0, "{}", {}), (1, '{"city":"Rome"}', {"city": "Rome"}), (2, "{}", {})]
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.arguments) for c in calls] == NO_ARGUMENTS_CALLS


async def test_whole_tool_call_without_arguments_is_an_empty_object(
    upstream: FakeUpstream,
) -> None:
    upstream.push(Script(chunks=[(0, NO_ARGUMENTS)]))
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        parsed = await client.chat.completions.parse(
            model="msgs",
            messages=USER,  # type: ignore[arg-type]
            tools=STRICT_TOOLS,  # type: ignore[arg-type]
        )
    calls = parsed.choices[0].message.tool_calls or []
    assert [(c.id, c.function.arguments) for c in calls] == NO_ARGUMENTS_CALLS
    assert [c.function.parsed_arguments for c in calls] == [{}, {"city": "Rome"}, {}]


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh", "max"])
async def test_every_sdk_reasoning_effort_is_accepted(upstream: FakeUpstream, effort: str) -> None:
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        done = await client.chat.completions.create(
            model="sim",
            messages=USER,  # type: ignore[arg-type]
            reasoning_effort=effort,  # type: ignore[arg-type]
        )
    assert done.choices[0].message.content == "Hello there, world!"


async def test_tool_choice_none_sends_no_tools(upstream: FakeUpstream) -> None:
    upstream.push(*[Script(chunks=[(0, fixture_bytes("anthropic_basic.sse"))]) for _ in range(2)])
    async with running_gateway(routes(upstream.url)) as gw, client_for(gw.url) as client:
        for choice in ("none", "auto"):
            await client.chat.completions.create(
                model="msgs",
                messages=USER,  # type: ignore[arg-type]
                tools=[WEATHER_TOOL],  # type: ignore[list-item]
                tool_choice=choice,  # type: ignore[arg-type]
            )
    assert ["tools" in seen.body for seen in upstream.seen] == [False, True]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"stream": "yes"}, "stream"),
    ],
)
async def test_400_names_the_client_field_in_param(
    upstream: FakeUpstream, patch: dict[str, Any], param: str
) -> None:
    body = {"model": "chat", "messages": USER, **patch}
    async with running_gateway(routes(upstream.url)) as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/v1/chat/completions", json=body) as r:
            status, error = r.status, (await r.json())["error"]
    assert status == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"].startswith(param + ": ")
    assert upstream.seen == []


async def test_a_route_outside_the_keys_allow_list_is_403(upstream: FakeUpstream) -> None:
    """docs/frontdoors.md: 403 ``permission_error`` / ``forbidden`` on both OpenAI doors."""
    doc = routes(upstream.url)
    doc["auth"] = {"keys": [{"name": "app", "key": "k-123456", "routes": ["sim"]}]}
    async with running_gateway(doc) as gw:
        client = AsyncOpenAI(base_url=gw.url + "/v1", api_key="k-123456", max_retries=0)
        async with client:
            with pytest.raises(openai.PermissionDeniedError) as chat:
                await client.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]
            with pytest.raises(openai.PermissionDeniedError) as responses:
                await client.responses.create(model="chat", input="Hello")
    for denied in (chat.value, responses.value):
        assert denied.status_code == 403
        assert denied.body == {  # type: ignore[comparison-overlap]
            "message": "this key may not use route 'chat'",
            "type": "permission_error",
            "param": None,
            "code": "forbidden",
        }
    assert upstream.seen == []


AUTH_FIRST_DOC = {
    "auth": {"keys": [{"name": "app", "key": "k-123456"}]},
    "routes": [{"name": "sim", "provider": "simulated", "options": {"text": "Hi"}}],
}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages"])
async def test_a_request_without_a_key_is_refused_before_its_body_is_judged(path: str) -> None:
    # The body is read before the route (``model``) is known, so its checks ran before auth:
    # a client with no key could tell route names (404) and body checks (400) from a 401.
    bodies: list[Any] = [
        {"model": "no-such-route", "messages": [{"role": "user", "content": "x"}]},
        {"model": "sim", "messages": 5, "input": 5},
        "{not json",
    ]
    async with running_gateway(AUTH_FIRST_DOC) as gw, aiohttp.ClientSession() as s:
        for body in bodies:
            data = body if isinstance(body, str) else json.dumps(body)
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                headers = {**headers, "Content-Type": "application/json"}
                async with s.post(gw.url + path, data=data, headers=headers) as r:
                    got = await r.json()
                assert r.status == 401, (path, body, headers, got)
                kind = got["error"]["type"]
                assert kind in ("authentication_error", "invalid_request_error"), got
                assert "route" not in got["error"]["message"], got
        key = {"Authorization": "Bearer k-123456"}
        async with s.post(gw.url + path, json=bodies[0], headers=key) as r:
            assert r.status == 404  # with the key, the route lookup answers as before


@pytest.mark.parametrize(
    ("method", "path", "allow", "shape"),
    [
        ("GET", "/v1/chat/completions", "POST", "openai"),
        ("GET", "/v1/responses", "POST", "openai"),
        ("PUT", "/v1/messages", "POST", "anthropic"),
        ("GET", "/v1/messages/count_tokens", "POST", "anthropic"),
        ("DELETE", "/v1/models", "GET", "openai"),
    ],
)
async def test_another_method_is_a_405_with_allow_in_the_apis_shape(
    method: str, path: str, allow: str, shape: str
) -> None:
    # It fell through to the routes' catch-all: a 404 in the token protocol's shape.
    async with running_gateway(AUTH_FIRST_DOC) as gw, aiohttp.ClientSession() as s:
        async with s.request(method, gw.url + path) as r:
            got = await r.json()
            assert (r.status, r.headers["Allow"]) == (405, allow), got
    if shape == "anthropic":
        assert got["type"] == "error" and got["error"]["type"] == "invalid_request_error"
    else:
        assert got["error"]["code"] == "method_not_allowed"
