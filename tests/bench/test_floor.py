"""The floor proxy (``bench/floor.py``) does the translation it claims to bound: a Chat
Completions stream in, the token protocol out, request after request on one connection."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.contract_floor import ContractServer
from bench.floor import Client, FloorServer


async def test_the_floor_translates_a_chat_stream_into_tokens(upstream_port: int) -> None:
    server = FloorServer(upstream_port)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Client(server), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for tokens in (3, 1):
        body = json.dumps({"messages": [{"role": "user", "content": f"bench:{tokens}:0:0:flow"}]})
        writer.write(
            f"POST /v1/stream/chat HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            f"{body}".encode()
        )
        async with asyncio.timeout(5):
            answers.append(await reader.readuntil(b"\r\n0\r\n\r\n"))
    writer.close()
    await writer.wait_closed()
    listener.close()
    await listener.wait_closed()
    pooled = [conn.transport for conn in server.idle]
    for tokens, answer in zip((3, 1), answers, strict=True):
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        events = [line[7:] for line in answer.split(b"\n") if line.startswith(b"event: ")]
        assert events == [b"created", *[b"delta"] * tokens, b"usage", b"end"]
        assert answer.count(b"~") == tokens  # one marker per token, as the load client counts
    assert len(pooled) == 1  # one pooled upstream connection served both
    for transport in pooled:
        transport.close()
    await asyncio.sleep(0)


async def _serve_contract(upstream_port: int) -> tuple[ContractServer, asyncio.Server, int]:
    server = ContractServer(upstream_port)
    listener = await asyncio.get_running_loop().create_server(server.client, "127.0.0.1", 0)
    return server, listener, listener.sockets[0].getsockname()[1]


def _post(
    body: str, content_type: str = "application/json", path: str = "/v1/stream/chat"
) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _chat(spec: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": spec}]})


def _value(server: ContractServer, name: str, **labels: str) -> float | None:
    return server.series.registry.get_sample_value(name, {"route": "chat", **labels})


async def test_the_contract_floor_keeps_the_token_protocol_and_counts_the_core_series(
    upstream_port: int,
) -> None:
    server, listener, port = await _serve_contract(upstream_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for tokens in (3, 1):
        writer.write(_post(_chat(f"bench:{tokens}:0:0:flow")))
        async with asyncio.timeout(5):
            answers.append(await reader.readuntil(b"\r\n0\r\n\r\n"))
    writer.close()
    await writer.wait_closed()
    for tokens, answer in zip((3, 1), answers, strict=True):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"X-Token-Protocol: 1" in head and b"X-Request-Id: " in head
        frames = [f for f in body.split(b"\n\n") if b"event: " in f]
        names = [f.split(b"event: ")[1].split(b"\n")[0] for f in frames]
        assert names == [b"created", b"thinking", b"clear", *[b"delta"] * tokens, b"usage", b"end"]
        ids = [int(f.split(b"id: ")[1].split(b"\n")[0]) for f in frames]
        assert ids == list(range(1, len(frames) + 1))
        assert b'"output_tokens":%d' % tokens in body and b'{"reason":"stop"}' in body
    assert _value(server, "gateway_requests_total", outcome="completed") == 2
    assert _value(server, "gateway_events_total", type="delta") == 4
    assert _value(server, "gateway_tokens_total", kind="output") == 4
    assert _value(server, "gateway_active_streams") == 0
    assert _value(server, "gateway_time_to_first_token_seconds_count") == 2
    gaps = _value(server, "gateway_inter_token_seconds_count")
    assert gaps is not None and gaps <= 2  # gaps between text writes only: at most 2 + 0
    for conn in server.idle:
        assert conn.transport is not None
        conn.transport.close()
    listener.close()
    await listener.wait_closed()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (_post(_chat("x"), content_type="text/plain"), b"415", b"unsupported_media_type"),
        (_post("{not json"), b"400", b"invalid_json"),
        (_post(json.dumps({"messages": []})), b"400", b"invalid_request"),
        (_post(json.dumps({"messages": [{"role": "bot", "content": "x"}]})), b"400", b"role"),
        (_post(_chat("x"), path="/v1/stream/other"), b"404", b"not_found"),
    ],
)
async def test_the_contract_floor_refuses_bad_requests_with_json_errors(
    upstream_port: int, request_bytes: bytes, status: bytes, code: bytes
) -> None:
    _, listener, port = await _serve_contract(upstream_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes)
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    listener.close()
    await listener.wait_closed()
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert b"application/json" in answer and code in answer


async def test_a_client_abort_closes_the_contract_floors_upstream(upstream_port: int) -> None:
    server, listener, port = await _serve_contract(upstream_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post(_chat("bench:1:0:0:silent")))
    async with asyncio.timeout(5):
        await reader.readuntil(b"event: thinking")
    writer.transport.abort()
    for _ in range(100):
        if _value(server, "gateway_client_aborts_total", phase="mid_stream"):
            break
        await asyncio.sleep(0.01)
    assert _value(server, "gateway_client_aborts_total", phase="mid_stream") == 1
    assert not server.idle  # the upstream connection was closed, not pooled
    listener.close()
    await listener.wait_closed()


async def test_an_upstream_refusal_is_a_502_json_error_and_ends_the_stream(
    upstream_port: int,
) -> None:
    server, listener, port = await _serve_contract(upstream_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post(_chat("no bench spec: the fake upstream answers 400")))
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    listener.close()
    await listener.wait_closed()
    assert answer.startswith(b"HTTP/1.1 502 ") and b'"code":"upstream_error"' in answer
    assert b"event:" not in answer  # no stream began: the head never went out
    assert _value(server, "gateway_active_streams") == 0
    assert _value(server, "gateway_requests_total", outcome="upstream_error") == 1
    assert not server.idle  # the refused connection was closed, not pooled
