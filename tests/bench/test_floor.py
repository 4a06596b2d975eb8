"""The floor proxy (``bench/floor.py``) does the translation it claims to bound: a Chat
Completions stream in, the token protocol out, request after request on one connection."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from bench.contract_floor import ContractServer, ContractUpstream
from bench.floor import Client, FloorServer
from bench.peers import free_port


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
        (_post(_chat("x"), content_type="application/jsonp"), b"415", b"unsupported_media_type"),
        (_post(json.dumps({"messages": [{"role": "user"}]})), b"400", b"messages[0].content"),
        (
            _post(json.dumps({"messages": [{"role": "user", "tool_calls": [{"id": "c"}]}]})),
            b"400",
            b"messages[0].tool_calls",
        ),
        (
            _post(json.dumps({"messages": [{"role": "tool", "content": "42"}]})),
            b"400",
            b"messages[0].tool_call_id",
        ),
        (
            _post(json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": "9"})),
            b"400",
            b"max_tokens",
        ),
        (
            _post(json.dumps({"messages": [{"role": "user", "content": "x"}], "top_p": 3})),
            b"400",
            b"top_p",
        ),
        (
            _post(json.dumps({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})),
            b"400",
            b"tools[0].name",
        ),
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
        if _value(server, "gateway_upstream_cancel_seconds_count"):
            break
        await asyncio.sleep(0.01)
    # answered, no token yet: the phase says so; the stream's record ends like any other
    assert _value(server, "gateway_client_aborts_total", phase="before_first_token") == 1
    assert _value(server, "gateway_client_aborts_total", phase="mid_stream") == 0
    assert _value(server, "gateway_upstream_cancel_seconds_count") == 1
    assert _value(server, "gateway_requests_total", outcome="client_abort") == 1
    assert _value(server, "gateway_stream_duration_seconds_count", outcome="client_abort") == 1
    assert _value(server, "gateway_active_streams") == 0
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


async def test_a_method_other_than_post_on_the_route_is_405_with_allow(upstream_port: int) -> None:
    _, listener, port = await _serve_contract(upstream_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/stream/chat HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    listener.close()
    await listener.wait_closed()
    assert answer.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nAllow: POST\r\n" in answer and b'"code":"method_not_allowed"' in answer


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _chunked(*pieces: bytes, last: bool = True) -> bytes:
    """An SSE answer whose pieces are each one HTTP chunk (so each is its own read)."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return SSE_HEAD + body + (b"0\r\n\r\n" if last else b"")


def _data(doc: dict[str, Any], end: bytes = b"\n\n") -> bytes:
    return b"data: " + json.dumps(doc).encode() + end


class RawUpstream:
    """An upstream that answers every request with ``answer`` (its head, then after ``pause``
    the rest), then holds the connection until the proxy closes it."""

    def __init__(self, answer: bytes, pause: float = 0.0) -> None:
        self.head, _, self.rest = answer.partition(b"\r\n\r\n")
        self.pause = pause
        self.handlers: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        request = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(re.findall(rb"Content-Length: (\d+)", request)[0]))
        writer.write(self.head + b"\r\n\r\n")
        await asyncio.sleep(self.pause)
        writer.write(self.rest)
        await reader.read()
        writer.close()
        await writer.wait_closed()

    async def stop(self) -> None:
        """Once the proxy closed its connections: every handler has ended."""
        self.server.close()
        await self.server.wait_closed()
        async with asyncio.timeout(5):
            await asyncio.gather(*self.handlers)


def _events(answer: bytes) -> list[tuple[str, Any]]:
    found = re.findall(rb"id: \d+\nevent: (\w+)\ndata: ([^\n]*)\n", answer)
    return [(name.decode(), json.loads(data)) for name, data in found]


async def _exchange(answer: bytes, end: bytes = b"\r\n0\r\n\r\n") -> tuple[ContractServer, bytes]:
    """One request through the contract floor to an upstream answering ``answer``."""
    upstream = RawUpstream(answer)
    server, listener, port = await _serve_contract(await upstream.start())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post(_chat("hi")))
    async with asyncio.timeout(5):
        got = await reader.readuntil(end) if end else await reader.read()
    writer.close()
    await writer.wait_closed()
    for conn in server.idle:
        assert conn.transport is not None
        conn.transport.close()
    listener.close()
    await listener.wait_closed()
    await upstream.stop()
    return server, got


CHOICE = {"index": 0, "finish_reason": None}


async def test_the_contract_floor_reads_any_sse_framing_and_translates_every_chat_field() -> None:
    crlf = b"\r\n\r\n"
    answer = _chunked(
        b": OPENROUTER PROCESSING\r",  # a comment, its CRLF split between two reads
        b"\n\r\n" + _data({"choices": [{**CHOICE, "delta": {"reasoning_content": "hm"}}]}, crlf),
        _data({"choices": [{**CHOICE, "delta": {"content": "Hé"}}]}, b"\r"),
        b"\n\r\n",
        b"data:"
        + json.dumps(
            {
                "choices": [
                    {
                        **CHOICE,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c1",
                                    "function": {"name": "f", "arguments": '{"a"'},
                                }
                            ]
                        },
                    }
                ]
            }
        ).encode()
        + b"\n\n",
        _data(
            {
                "choices": [
                    {
                        **CHOICE,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]},
                    }
                ]
            }
        ),
        _data({"choices": [{**CHOICE, "delta": {}, "finish_reason": "stop"}]}),
        _data(
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 7,
                    "completion_tokens_details": {"reasoning_tokens": 3},
                    "prompt_tokens_details": {"cached_tokens": 2},
                },
            }
        ),
        b"data: [DONE]\n\n",
    )
    server, got = await _exchange(answer)
    assert _events(got)[1:] == [
        ("thinking", {}),
        ("reasoning", {"text": "hm"}),
        ("clear", {}),
        ("delta", {"text": "Hé"}),
        ("tool_call", {"index": 0, "arguments": '{"a"', "id": "c1", "name": "f"}),
        ("tool_call", {"index": 0, "arguments": ":1}"}),
        (
            "usage",
            {
                "input_tokens": 5,
                "output_tokens": 7,
                "reasoning_tokens": 3,
                "cached_input_tokens": 2,
            },
        ),
        ("end", {"reason": "tool_calls"}),  # a tool was called: tool_calls, whatever it said
    ]
    assert _value(server, "gateway_tokens_total", kind="reasoning") == 3
    assert _value(server, "gateway_events_total", type="tool_call") == 2


@pytest.mark.parametrize(
    ("delta", "finish", "reason"),
    [
        ({"content": "no"}, "content_filter", "content_filter"),
        ({"refusal": "I can't"}, "stop", "content_filter"),
        ({"content": "x"}, "function_call", "tool_calls"),
        ({"content": "x"}, None, "other"),
    ],
)
async def test_the_contract_floor_maps_every_end_reason(
    delta: dict[str, str], finish: str | None, reason: str
) -> None:
    answer = _chunked(
        _data({"choices": [{**CHOICE, "delta": delta, "finish_reason": finish}]}),
        b"data: [DONE]\n\n",
    )
    _, got = await _exchange(answer)
    events = _events(got)
    assert events[-1] == ("end", {"reason": reason})
    assert ("delta", {"text": next(iter(delta.values()))}) in events


@pytest.mark.parametrize(
    ("bad", "code", "outcome"),
    [
        (_data({"error": {"message": "overloaded"}}), "upstream_error", "upstream_error"),
        (b"data: {not json\n\n", "upstream_protocol", "upstream_error"),
        (b"", "upstream_truncated", "upstream_truncated"),  # the body ends without [DONE]
    ],
)
async def test_an_upstream_failure_mid_stream_is_one_error_event_with_its_code(
    bad: bytes, code: str, outcome: str
) -> None:
    answer = _chunked(_data({"choices": [{**CHOICE, "delta": {"content": "a"}}]}), bad)
    server, got = await _exchange(answer)
    events = _events(got)
    assert events[-2] == ("delta", {"text": "a"})
    assert events[-1][0] == "error" and events[-1][1]["code"] == code
    assert _value(server, "gateway_requests_total", outcome=outcome) == 1
    assert _value(server, "gateway_stream_duration_seconds_count", outcome=outcome) == 1
    assert _value(server, "gateway_stream_duration_seconds_count", outcome="completed") == 0


async def test_an_upstream_429_before_streaming_is_a_429_with_retry_after() -> None:
    answer = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}"
    _, got = await _exchange(answer, end=b"")
    assert got.startswith(b"HTTP/1.1 429 ") and b"\r\nRetry-After: " in got
    assert b'"code":"rate_limited"' in got


async def test_an_upstream_that_refuses_the_connection_is_a_502_upstream_connect() -> None:
    server, listener, port = await _serve_contract(free_port())  # nothing listens there
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post(_chat("hi")))
    async with asyncio.timeout(5):
        got = await reader.read()
    writer.close()
    listener.close()
    await listener.wait_closed()
    assert got.startswith(b"HTTP/1.1 502 ") and b'"code":"upstream_connect"' in got
    assert _value(server, "gateway_active_streams") == 0


async def test_the_next_heartbeat_is_due_one_interval_after_the_last_read() -> None:
    """Rule 4: a ping once the client heard nothing for an interval, so the timer is re-armed
    for one interval after the last read (or ping), not one interval after it ran."""
    heartbeat = 1.0
    answer = _chunked(_data({"choices": [{**CHOICE, "delta": {"content": "a"}}]}), last=False)
    upstream = RawUpstream(answer, pause=heartbeat / 3)
    server = ContractServer(await upstream.start(), heartbeat=heartbeat)
    made: list[ContractUpstream] = []

    def upstream_conn() -> ContractUpstream:
        made.append(ContractUpstream(server))
        return made[-1]

    server.upstream = upstream_conn  # type: ignore[method-assign]
    listener = await asyncio.get_running_loop().create_server(server.client, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", listener.sockets[0].getsockname()[1]
    )
    writer.write(_post(_chat("hi")))
    async with asyncio.timeout(5):
        await reader.readuntil(b"event: delta")
        conn = made[0]
        ticked = asyncio.Event()
        tick = conn.tick

        def seen_tick() -> None:
            tick()
            ticked.set()

        conn.tick = seen_tick  # type: ignore[method-assign]
        conn.timer.cancel()  # the first tick, re-armed at the same time to be seen
        conn.timer = asyncio.get_running_loop().call_at(conn.timer.when(), conn.tick)
        await ticked.wait()
        assert conn.timer.when() == pytest.approx(max(conn.last_read, conn.beat) + heartbeat)
        await reader.readuntil(b": ping\n\n")
    writer.close()
    await writer.wait_closed()
    listener.close()
    await listener.wait_closed()
    await upstream.stop()
