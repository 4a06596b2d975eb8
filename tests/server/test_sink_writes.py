"""The client side of the hot path (gateway/stream/sinks.py ``Sink.send``) on the wire.

Frames written straight to the transport must be exact HTTP/1.1 chunks, the terminal frame must
carry the one chunked terminator, several events must keep their order on a keep-alive
connection, and an HTTP/1.0 client (no chunked encoding) must get the same events as a body that
ends with the connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.usefixtures("http_server")
"""Every test here runs over both servers (``server.http_server``)."""

SSE = {"Content-Type": "text/event-stream"}
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def chat_chunk(text: str, finish: str | None = None) -> bytes:
    delta = {"content": text} if text else {}
    doc = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def script(words: list[str]) -> Script:
    chunks = [(0.01, chat_chunk(w)) for w in words]
    chunks += [(0.01, chat_chunk("", "stop")), (0, b"data: [DONE]\n\n")]
    return Script(chunks=chunks, headers=SSE)


def doc(upstream: FakeUpstream) -> dict[str, Any]:
    target = {"base_url": upstream.url, "model": "m"}
    return {"routes": [{"name": "r", "provider": "openai-chat", "upstream": target}]}


def request(version: str, query: str = "") -> bytes:
    body = json.dumps(HELLO).encode()
    head = (
        f"POST /v1/stream/r{query} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
    )
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def dechunk(body: bytes) -> tuple[bytes, bytes]:
    """The payload of a chunked body and what follows its terminator (must be nothing)."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body.startswith(b"\r\n"), body[:20]
            return out, body[2:]
        out += body[:size]
        assert body[size : size + 2] == b"\r\n", "every chunk ends with CRLF"
        body = body[size + 2 :]


def texts(payload: bytes) -> list[str]:
    out = []
    for frame in payload.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if lines.get("event") == "delta":
            out.append(json.loads(lines["data"])["text"])
    return out


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    body = b""
    async with asyncio.timeout(5):
        while not body.endswith(b"\r\n0\r\n\r\n"):
            chunk = await reader.read(65536)
            assert chunk, "the connection closed before the chunked terminator"
            body += chunk
    return head, body


async def test_frames_are_exact_chunks_and_the_terminator_comes_once(
    upstream: FakeUpstream,
) -> None:
    words = ["one", " two", " three"]
    upstream.push(script(words), script(words))
    async with running_gateway(doc(upstream)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        for _ in range(2):  # twice on one keep-alive connection: nothing left over in between
            writer.write(request("1.1"))
            head, body = await read_response(reader)
            assert b"Transfer-Encoding: chunked" in head
            payload, rest = dechunk(body)
            assert rest == b""
            assert texts(payload) == words
            assert payload.count(b"event: end") == 1
        writer.close()


async def test_an_http_1_0_client_gets_a_plain_body(upstream: FakeUpstream) -> None:
    words = ["plain", " body"]
    upstream.push(script(words))
    async with running_gateway(doc(upstream)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(request("1.0"))
        async with asyncio.timeout(5):
            raw = await reader.read(-1)  # the body ends with the connection
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert b"chunked" not in head.lower()
        assert texts(payload) == words
        assert payload.rstrip().endswith(b"}")  # the end event, no chunk framing after it
        writer.close()


async def test_a_failed_text_stream_ends_cut_short(upstream: FakeUpstream) -> None:
    # ``text`` has no error of its own (its markers are empty by default): a failure that ended
    # with the chunked terminator would be a success to the client, the seed's weak point.
    # It ends without one and the connection closes: every HTTP client reports a cut body.
    truncated = Script(chunks=[(0.01, chat_chunk("Hel")), (0.01, chat_chunk("lo"))], headers=SSE)
    upstream.push(script(["Hel", "lo"]), truncated)
    async with running_gateway(doc(upstream)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(request("1.1", "?format=text"))
        head, body = await read_response(reader)  # a whole stream ends as before
        assert dechunk(body) == (b"Hello", b"")
        writer.write(request("1.1", "?format=text"))
        async with asyncio.timeout(5):
            raw = await reader.read(-1)  # the connection closes after the text
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    assert body == b"3\r\nHel\r\n2\r\nlo\r\n"  # whole chunks, and no terminator
