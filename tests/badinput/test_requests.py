"""Hostile and broken client requests (issue 5 item 8, client side).

Every answer before a stream is a JSON error with the right status, never HTML or a traceback,
and none of them reaches the upstream. Raw sockets are used where an HTTP client would
normalise what we want to send (paths, header bytes, trickled bodies).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.faults.kit import HELLO, SECRET, SSE, chat_route, chat_stream
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import RunningGateway, running_gateway

BODY_LIMIT = 4096


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, chat_stream("ok"))], headers=SSE)
    yield fake
    await fake.stop()


@pytest.fixture
async def gw(upstream: FakeUpstream) -> AsyncIterator[RunningGateway]:
    doc = {
        "server": {"max_body_bytes": BODY_LIMIT, "request_read_timeout": "500ms"},
        "routes": [chat_route("r", upstream.url, allow_model_override=True)],
    }
    async with running_gateway(doc) as running:
        yield running


async def send(gw: RunningGateway, method: str = "POST", **kw: Any) -> tuple[int, Any, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{gw.url}/v1/stream/r", **kw) as r,
    ):
        raw = await r.read()
        ctype = r.headers.get("Content-Type", "")
        assert ctype.startswith("application/json"), (r.status, ctype, raw[:200])
        return r.status, json.loads(raw), r.headers.get("Allow", "")


async def raw_request(gw: RunningGateway, data: bytes, timeout: float = 5) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_and_body(raw: bytes) -> tuple[int, dict[str, Any], str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body), head.decode("latin-1")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_is_405_with_allow(gw: RunningGateway, method: str) -> None:
    status, doc, allow = await send(gw, method)
    assert status == 405 and doc["error"]["code"] == "method_not_allowed"
    assert "POST" in allow


@pytest.mark.parametrize(
    "ctype", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_wrong_content_type_is_415(
    gw: RunningGateway, upstream: FakeUpstream, ctype: str | None
) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    status, doc, _ = await send(gw, data=json.dumps(HELLO).encode(), headers=headers)
    assert status == 415 and doc["error"]["code"] == "unsupported_media_type"
    assert upstream.seen == []


async def test_json_with_charset_is_accepted(gw: RunningGateway) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}/v1/stream/r", data=json.dumps(HELLO), headers=headers) as r,
    ):
        assert r.status == 200


DEEP = "[" * 100_000 + "]" * 100_000
INVALID_JSON = [b"", b"{", b"\xff\xfe", b"{'a': 1}", b"[1,]", b"NaN", DEEP.encode()]


@pytest.mark.parametrize("body", INVALID_JSON, ids=range(len(INVALID_JSON)))
async def test_invalid_json_is_400(gw: RunningGateway, upstream: FakeUpstream, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    status, doc, _ = await send(gw, data=body, headers=headers)
    assert status in (400, 413)
    assert doc["error"]["code"] in ("invalid_json", "body_too_large")
    assert upstream.seen == []


def msgs(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **extra}


class Raw(str):
    """A body sent as is (json.dumps would recurse too deep to build it)."""


def nested(depth: int) -> Raw:
    return Raw(
        '{"messages":[{"role":"user","content":"hi"}],"metadata":'
        + '{"a":' * depth
        + "1"
        + "}" * depth
        + "}"
    )


WRONG_SHAPES: list[tuple[Any, str]] = [
    ([], ""),
    ("text", ""),
    (17, ""),
    (None, ""),
    ({}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": 5}]}, "content"),
    # contract section 3: a string content on every message but an assistant's tool calls
    ({"messages": [{"role": "user"}]}, "messages[0].content: is required"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "tool", "tool_call_id": "c1"}]}, "messages[0].content"),
    ({"messages": [["user", "hi"]]}, "messages"),
    (msgs(max_tokens="many"), "max_tokens"),
    (msgs(max_tokens=-1), "max_tokens"),
    (msgs(max_tokens=1.5), "max_tokens"),
    (msgs(max_tokens=10**30), "max_tokens"),
    (msgs(temperature="hot"), "temperature"),
    (msgs(temperature=1e308 * 10), "temperature"),
    (msgs(top_p=[1]), "top_p"),
    (msgs(stop=5), "stop"),
    (msgs(tools="all"), "tools"),
    (msgs(tools=[{"type": "function"}]), "tools"),
    (msgs(reasoning={"effort": "extreme"}), "reasoning"),
    (msgs(metadata=[]), "metadata"),
    (msgs(model=7), "model"),
    (nested(3000), ""),
]


@pytest.mark.parametrize("body,field", WRONG_SHAPES, ids=range(len(WRONG_SHAPES)))
async def test_wrongly_shaped_json_is_400_naming_the_field(
    gw: RunningGateway, upstream: FakeUpstream, body: Any, field: str
) -> None:
    data = body.encode() if isinstance(body, Raw) else json.dumps(body, allow_nan=True).encode()
    headers = {"Content-Type": "application/json"}
    status, doc, _ = await send(gw, data=data, headers=headers)
    assert status in (400, 413), doc
    assert doc["error"]["code"] in ("invalid_request", "invalid_json", "body_too_large")
    if field and doc["error"]["code"] == "invalid_request":
        assert field in doc["error"]["message"]
    assert upstream.seen == []


async def test_oversize_body_is_413_with_and_without_content_length(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    big = json.dumps(msgs(metadata={"pad": "x" * BODY_LIMIT})).encode()
    status, doc, _ = await send(gw, data=big, headers={"Content-Type": "application/json"})
    assert status == 413 and doc["error"]["code"] == "body_too_large"

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    status, doc, _ = await send(gw, data=chunked(), headers={"Content-Type": "application/json"})
    assert status == 413 and doc["error"]["code"] == "body_too_large"
    assert upstream.seen == []


async def test_slowloris_body_gets_a_clean_error_in_time(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /v1/stream/r HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    t0 = time.monotonic()

    async def trickle() -> None:
        for _ in range(200):
            await asyncio.sleep(0.1)  # 10 bytes/s: far slower than the 500 ms deadline allows
            writer.write(b" ")

    dripping = asyncio.ensure_future(trickle())
    try:
        raw = b""
        async with asyncio.timeout(5):
            while not raw.endswith(b"}}"):
                chunk = await reader.read(4096)
                assert chunk, raw
                raw += chunk
        elapsed = time.monotonic() - t0
        status, doc, _ = status_and_body(raw)
        assert status == 400 and doc["error"]["code"] == "invalid_request"
        assert "not received within" in doc["error"]["message"]
        assert 0.4 < elapsed < 2.0
        # The handler is done (no stream, no upstream). aiohttp then reads and discards the
        # rest of the body for at most its lingering_time (10 s) and closes: bounded, see docs.
        assert not gw.state.sessions
        assert upstream.seen == []
    finally:
        dripping.cancel()
        writer.close()


TRICK_PATHS = [
    "/v1/stream/..%2Fr",
    "/v1/stream/..%2F..%2Fmetrics",
    "/v1/stream/%2e%2e/r",
    "/v1/stream/r%0d%0aX-Injected:%20yes",
    "/v1/stream/r%00",
    "/v1/stream/r/",
    "//v1/stream/r",
    "/v1/stream/R",
    "/v1/stream/r%2F",
]


@pytest.mark.parametrize("path", TRICK_PATHS)
async def test_percent_encoded_path_tricks_are_404_json(
    gw: RunningGateway, upstream: FakeUpstream, path: str
) -> None:
    body = json.dumps(HELLO).encode()
    raw = await raw_request(
        gw,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    status, doc, head = status_and_body(raw)
    assert status == 404 and doc["error"]["code"] == "not_found"
    assert "X-Injected" not in head
    assert upstream.seen == []


async def test_nothing_from_the_request_reaches_upstream_headers(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    evil = "x\r\nX-Evil: 1"
    body = {
        "messages": [{"role": "user", "content": evil}],
        "model": "m-1\r\nX-Evil-Model: 1",
        "metadata": {"h": evil},
    }
    client_headers = {
        "Authorization": "Bearer client-key-should-not-pass",
        "X-Api-Key": "client-x-api-key",
        "X-Request-Id": "client-request-id",
        "X-Forwarded-For": "6.6.6.6",
        "Cookie": "session=client-cookie",
        "X-Custom": "client-custom",
        "OpenAI-Organization": "client-org",
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}/v1/stream/r", json=body, headers=client_headers) as r,
    ):
        await r.read()
    assert len(upstream.seen) == 1
    sent = upstream.seen[0].headers
    names = {k.lower() for k in sent}
    for name, value in client_headers.items():
        assert value not in " ".join(sent.values()), name
    assert not {"cookie", "x-forwarded-for", "x-custom", "x-request-id", "x-api-key"} & names
    assert not any(k.lower().startswith("x-evil") for k in sent)
    assert sent["Authorization"] == f"Bearer {SECRET}"
    # The text travels in the JSON body, escaped, and nowhere else.
    assert "\r\n" not in "".join(f"{k}{v}" for k, v in sent.items())


async def test_a_tool_schema_nested_past_the_encoder_is_a_400(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    # The request parse takes 1024 levels (orjson's reader); the upstream body's encoder writes
    # 255: such a schema was a 500 and a logged traceback when the upstream request was built.
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    body = {**HELLO, "tools": [{"name": "f", "parameters": {"type": "object", "x": deep}}]}
    status, doc, _ = await send(gw, json=body)
    assert status == 400 and doc["error"]["code"] == "invalid_request", doc
    assert doc["error"]["message"].startswith("body:")
    assert upstream.seen == []
