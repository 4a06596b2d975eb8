"""The Messages front door's pure parts (request decoder, both encoders) and its error shapes.

Bad input goes over HTTP too: each malformed field is Anthropic's 400 naming that field, and
nothing reaches the upstream.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from gateway import events as ev
from gateway.encoders.messages import MessageEncoder, MessagesStreamEncoder
from gateway.errors import InvalidRequest
from gateway.frontdoor.messages import estimate_tokens
from gateway.frontdoor.messages_request import to_common
from gateway.request import parse_request
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import config_from, running_gateway

ROUTE = config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0]
RAW = TypeAdapter(RawMessageStreamEvent)
NASTY = "a\nb\rc\r\nd\u2028e"
BASE = {"model": "r", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}


def test_request_mapping() -> None:
    body = {
        **BASE,
        "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Rome"}},
                    {"type": "tool_use", "id": "t2", "name": "w", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [{"type": "text", "text": "ok"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "", "signature": ""}],
            },
        ],
        "tools": [{"name": "w", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "max_tokens": 8000,
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 5000},
        "metadata": {"user_id": "u1"},
        "stream": True,
    }
    chat = parse_request(to_common(body))
    assert [m.role for m in chat.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
    ]
    assert chat.system_text == "Be brief."
    assert chat.messages[2].content == "Checking."
    assert chat.messages[2].tool_calls[0].arguments == '{"city":"Rome"}'
    assert (chat.messages[3].tool_call_id, chat.messages[3].content) == ("t1", "sunny")
    assert (chat.messages[4].tool_call_id, chat.messages[4].content) == ("t2", "ok")
    assert chat.messages[5].content == "Thanks"
    assert chat.tools[0].name == "w" and chat.tools[0].parameters == {"type": "object"}
    assert (chat.max_tokens, chat.temperature, chat.stop) == (8000, 0.5, ("END",))
    assert chat.reasoning_effort == "medium" and chat.metadata == {"user_id": "u1"}
    assert chat.model is None


@pytest.mark.parametrize(
    ("budget", "effort"), [(1024, "low"), (4095, "low"), (4096, "medium"), (16384, "high")]
)
def test_thinking_budget_to_effort(budget: int, effort: str) -> None:
    body = {**BASE, "max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": budget}}
    assert to_common(body)["reasoning"] == {"effort": effort}


def test_tool_choice_none_sends_no_tools() -> None:
    tools = [{"name": "w", "input_schema": {"type": "object"}}]
    assert "tools" not in to_common({**BASE, "tools": tools, "tool_choice": {"type": "none"}})
    assert to_common({**BASE, "tools": tools})["tools"][0]["name"] == "w"


BAD = [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "system", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
        "messages[0].content[0].type",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
        "messages[0].content[0].tool_use_id",
    ),
    (
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f"}]}
            ]
        },
        "messages[0].content[0].input",
    ),
    (
        {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]},
        "messages[0].content[0].signature",
    ),
    ({"system": 5}, "system"),
    ({"system": [{"type": "image"}]}, "system[0].type"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"tools": [{"type": "web_search_20250305", "name": "s"}]}, "tools[0].type"),
    ({"tool_choice": {"type": "maybe"}}, "tool_choice.type"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"temperature": 1.5}, "temperature"),
    ({"top_p": "x"}, "top_p"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "on"}}, "thinking.type"),
    ({"metadata": "x"}, "metadata"),
    ({"stream": "yes"}, "stream"),
]


@pytest.mark.parametrize(("patch", "field"), [b for b in BAD if b[1] != "stream"])
def test_decoder_errors_name_the_field(patch: dict[str, Any], field: str) -> None:
    """``stream`` is the handler's (``stream_flag``): checked over HTTP below."""
    body = {k: v for k, v in {**BASE, **patch}.items() if v is not None}
    with pytest.raises(InvalidRequest) as info:
        parse_request(to_common(body))
    assert info.value.message.startswith(field + ":")


async def test_bad_input_over_http_is_anthropics_400_and_reaches_nothing(
    upstream: FakeUpstream,
) -> None:
    doc = {
        "routes": [
            {
                "name": "r",
                "provider": "openai-chat",
                "upstream": {"base_url": upstream.url, "model": "m"},
            }
        ]
    }
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:
        for patch, field in BAD:
            body = {k: v for k, v in {**BASE, **patch}.items() if v is not None}
            async with s.post(f"{gw.url}/v1/messages", json=body) as r:
                status, got = r.status, await r.json()
            assert status == 400, (field, got)
            assert got["type"] == "error" and got["error"]["type"] == "invalid_request_error"
            assert got["error"]["message"].startswith(field + ":"), (field, got)
        async with s.post(f"{gw.url}/v1/messages", data="{", headers=JSON) as r:
            assert r.status == 400 and (await r.json())["error"]["type"] == "invalid_request_error"
        async with s.post(f"{gw.url}/v1/messages", data="{}") as r:
            assert r.status == 415 and (await r.json())["error"]["type"] == "invalid_request_error"
        async with s.post(f"{gw.url}/v1/messages", json={**BASE, "model": "nope"}) as r:
            assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
    assert upstream.seen == []


JSON = {"Content-Type": "application/json"}


async def test_auth_status_and_size_errors_in_anthropics_shape(upstream: FakeUpstream) -> None:
    doc = {
        "server": {"max_body_bytes": 2000},
        "auth": {"keys": [{"name": "app", "key": "k-123456", "routes": ["sim"]}]},
        "routes": [
            {
                "name": "sim",
                "provider": "simulated",
                "options": {"text": "Hi", "token_interval": 0},
            },
            {"name": "down", "provider": "openai-chat", "upstream": {"base_url": upstream.url}},
        ],
    }
    async with (
        running_gateway(doc) as gw,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="wrong", max_retries=0) as bad,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="k-123456", max_retries=0) as good,
        anthropic.AsyncAnthropic(base_url=gw.url, auth_token="k-123456", max_retries=0) as bearer,
    ):
        with pytest.raises(anthropic.AuthenticationError) as unauth:
            await bad.messages.create(**BASE | {"model": "sim"})  # type: ignore[call-overload]
        ok = await bearer.messages.create(
            **BASE | {"model": "sim"},  # type: ignore[call-overload]
            extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
        )
        with pytest.raises(anthropic.APIStatusError) as too_big:
            await good.messages.create(
                **BASE | {"model": "sim", "messages": [{"role": "user", "content": "x" * 3000}]}  # type: ignore[call-overload]
            )
        with pytest.raises(anthropic.PermissionDeniedError) as forbidden:  # outside the allow-list
            await good.messages.create(**BASE | {"model": "down"})  # type: ignore[call-overload]
    assert unauth.value.status_code == 401
    assert unauth.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "authentication_error", "message": "missing or invalid API key"},
        "request_id": unauth.value.request_id,  # the SDK's, from the ``request-id`` header
    }
    assert [b.type for b in ok.content] == ["text"] and ok.content[0].text == "Hi"  # type: ignore[union-attr]
    assert forbidden.value.status_code == 403
    assert forbidden.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "'down'" in forbidden.value.body["error"]["message"]  # type: ignore[index]
    assert too_big.value.status_code == 413
    assert too_big.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


async def test_upstream_refusal_before_the_stream_is_a_status(upstream: FakeUpstream) -> None:
    upstream.push(*[Script(status=500, chunks=(), headers=JSON) for _ in range(2)])
    doc = {
        "routes": [
            {
                "name": "r",
                "provider": "openai-chat",
                "upstream": {"base_url": upstream.url, "model": "m"},
            }
        ]
    }
    async with (
        running_gateway(doc) as gw,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0) as client,
    ):
        for stream in (True, False):
            with pytest.raises(anthropic.APIStatusError) as info:
                await client.messages.create(**BASE, stream=stream)  # type: ignore[call-overload]
            assert info.value.status_code == 502
            assert info.value.body["type"] == "error"  # type: ignore[index]
            assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_count_tokens_is_an_estimate_that_grows_with_the_text() -> None:
    doc = {"routes": [{"name": "sim", "provider": "simulated"}]}
    async with (
        running_gateway(doc) as gw,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0) as client,
    ):
        short = await client.messages.count_tokens(
            model="sim", messages=[{"role": "user", "content": "Hi"}]
        )
        long = await client.messages.count_tokens(
            model="sim", messages=[{"role": "user", "content": "word " * 400}], system="Be brief."
        )
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.count_tokens(
                model="nope", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(anthropic.BadRequestError, match="messages"):
            await client.messages.count_tokens(model="sim", messages=[])
    assert 1 <= short.input_tokens < 20
    assert 500 <= long.input_tokens <= 600  # 2,000 characters at about 4 a token
    assert estimate_tokens({"messages": [{"role": "user", "content": "x" * 400}]}) == 104


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        head, data = block.split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        doc = json.loads(data[len("data: ") :])
        assert doc["type"] == head[len("event: ") :]
        out.append((doc["type"], doc))
    return out


def run(enc: Any, events: list[ev.Event]) -> bytes:
    return b"".join(enc.encode(e) for e in events) + enc.close()


def test_stream_events_validate_and_keep_blocks_apart() -> None:
    enc = MessagesStreamEncoder(ROUTE, "rid", model="r")
    events = [
        ev.created("rid", "r", "simulated", None),
        ev.thinking(),
        ev.reasoning(NASTY),
        ev.clear(),
        ev.delta(NASTY),
        ev.tool_call(0, '{"a":', id="c1", name="f"),
        ev.tool_call(1, "{", id="c2", name="g"),
        ev.tool_call(0, "1}"),
        ev.tool_call(1, "}"),
        ev.usage(input_tokens=30, output_tokens=4, cached_input_tokens=10),
        ev.end("tool_calls"),
    ]
    got = frames(run(enc, events))
    for _, doc in got:
        RAW.validate_python(doc)
    assert [t for t, _ in got] == [
        "message_start",
        "content_block_start",  # 0 thinking
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # 1 text
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # 2 tool c1
        "content_block_delta",
        "content_block_start",  # 3 tool c2
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert got[2][1]["delta"] == {"type": "thinking_delta", "thinking": NASTY}
    assert got[5][1]["delta"] == {"type": "text_delta", "text": NASTY}
    assert [
        (d["index"], d["delta"]["partial_json"]) for t, d in got[8:13] if t.endswith("delta")
    ] == [
        (2, '{"a":'),
        (3, "{"),
        (2, "1}"),
        (3, "}"),
    ]
    assert got[7][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert got[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert got[-2][1]["usage"] == {
        "input_tokens": 20,
        "cache_read_input_tokens": 10,
        "output_tokens": 4,
    }


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (ev.end("stop"), "end_turn"),
        (ev.end("stop", "stop_sequence"), "stop_sequence"),
        (ev.end("length"), "max_tokens"),
        (ev.end("content_filter"), "refusal"),
        (ev.end("other"), "end_turn"),
    ],
)
def test_stop_reasons(end: ev.Event, reason: str) -> None:
    enc = MessagesStreamEncoder(ROUTE, "rid", model="r")
    got = frames(run(enc, [ev.created("rid", "r", "s", None), end]))
    assert got[-2][1]["delta"]["stop_reason"] == reason
    whole = MessageEncoder(ROUTE, "rid", model="r")
    assert Message.model_validate_json(whole.encode(end)).stop_reason == reason


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (
            ev.error("upstream_error", "Overloaded", True, type="overloaded_error"),
            "overloaded_error",
            502,
        ),
        (ev.error("upstream_error", "bad", False, type="server_error"), "api_error", 502),
        (ev.error("upstream_error", "busy", True), "overloaded_error", 502),
        (ev.error("upstream_truncated", "cut", True), "api_error", 502),
        (ev.error("upstream_timeout", "slow", True), "timeout_error", 504),
        (ev.error("shutdown", "bye", True), "overloaded_error", 503),
        (ev.error("internal", NASTY, False), "api_error", 500),
    ],
)
def test_errors_end_without_message_stop(error: ev.Event, kind: str, status: int) -> None:
    enc = MessagesStreamEncoder(ROUTE, "rid", model="r")
    got = frames(run(enc, [ev.created("rid", "r", "s", None), ev.delta("x"), error]))
    assert [t for t, _ in got][-1] == "error" and "message_stop" not in [t for t, _ in got]
    assert got[-1][1] == {
        "type": "error",
        "error": {"type": kind, "message": error.data["message"]},
    }
    whole = MessageEncoder(ROUTE, "rid", model="r")
    body = json.loads(whole.encode(error))
    assert whole.status == status and body["error"]["type"] == kind and body["type"] == "error"


def test_whole_message_assembles_blocks_and_keeps_bad_tool_json() -> None:
    enc = MessageEncoder(ROUTE, "rid", model="r")
    for e in [
        ev.created("rid", "r", "s", None),
        ev.reasoning("R"),
        ev.delta("A"),
        ev.delta("B"),
        ev.tool_call(0, '{"x": [1', id="c1", name="f"),
        ev.tool_call(0, ", 2]}"),
        ev.tool_call(1, "not json", id="c2", name="g"),
    ]:
        assert enc.encode(e) == b""
    doc = Message.model_validate_json(enc.encode(ev.end("tool_calls")))
    assert [b.type for b in doc.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert doc.content[1].text == "AB"  # type: ignore[union-attr]
    assert doc.content[2].input == {"x": [1, 2]}  # type: ignore[union-attr]
    assert doc.content[3].input == {"_raw": "not json"}  # type: ignore[union-attr]
    assert doc.usage.input_tokens == 0 and doc.usage.output_tokens == 0
    assert enc.status == 200 and enc.heartbeat() == b"\n"


def test_ping_is_the_keepalive() -> None:
    enc = MessagesStreamEncoder(ROUTE, "rid", model="r")
    assert frames(enc.heartbeat()) == [("ping", {"type": "ping"})]
