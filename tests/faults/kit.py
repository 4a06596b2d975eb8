"""Shared helpers for the fault, fallback, shutdown and bad-input suites.

Upstream byte builders (an OpenAI-chat-compatible SSE stream; the fixtures for NDJSON), a
plain HTTP client that returns status, headers and the parsed token-protocol frames, and route
builders. Nothing here talks to the internet: every upstream is a :class:`FakeUpstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.adapters.harness import fixture_bytes, fixture_expected

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}
SSE = {"Content-Type": "text/event-stream"}
NDJSON = {"Content-Type": "application/x-ndjson"}
SECRET = "sk-fault-suite-secret-0123456789"

OLLAMA_OK = fixture_bytes("ollama_chat.ndjson")
OLLAMA_TEXT = str(fixture_expected("ollama_chat.ndjson")["text"])


def chat_chunk(text: str, finish: str | None = None) -> bytes:
    """One chat-completions-compatible SSE chunk carrying ``text``."""
    doc = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def chat_usage(prompt: int, completion: int) -> bytes:
    doc = {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def chat_error(message: str = "overloaded", kind: str = "server_error") -> bytes:
    doc = {"error": {"message": message, "type": kind}}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def chat_stream(*texts: str, usage: tuple[int, int] | None = None) -> bytes:
    """A whole, well-terminated stream with ``texts`` as deltas."""
    body = b"".join(chat_chunk(t) for t in texts) + chat_chunk("", "stop")
    if usage is not None:
        body += chat_usage(*usage)
    return body + DONE


def chat_route(name: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai-chat",
        "upstream": {"base_url": base_url, "api_key": SECRET, "model": "m-1"},
        **extra,
    }


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes
    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    comments: int = 0

    @property
    def types(self) -> list[str]:
        return [kind for kind, _ in self.frames]

    @property
    def text(self) -> str:
        return "".join(str(d.get("text", "")) for k, d in self.frames if k == "delta")

    @property
    def last(self) -> tuple[str, dict[str, Any]]:
        return self.frames[-1]

    def json(self) -> Any:
        return json.loads(self.raw)


def parse_frames(raw: bytes) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Token-protocol SSE frames ``(event, data)`` and the number of comment (ping) lines."""
    frames: list[tuple[str, dict[str, Any]]] = []
    comments = 0
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        comments += sum(1 for line in lines if line.startswith(":"))
        fields = dict(line.split(": ", 1) for line in lines if not line.startswith(":"))
        if "event" in fields:
            frames.append((fields["event"], json.loads(fields["data"])))
    return frames, comments


async def post(url: str, body: Any = HELLO, **kw: Any) -> Reply:
    """POST and read the whole answer; SSE answers are parsed into frames."""
    async with aiohttp.ClientSession() as s, s.post(url, json=body, **kw) as r:
        raw = await r.read()
        reply = Reply(r.status, dict(r.headers), raw)
    if reply.headers.get("Content-Type", "").startswith("text/event-stream"):
        reply.frames, reply.comments = parse_frames(raw)
    return reply


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for a subprocess without blocking the loop (fake upstreams live on it)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the process did not exit in time")
        await asyncio.sleep(0.02)
    return proc.returncode


async def get_status(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status


class HandUpstream:
    """A chat-completions upstream the test drives by hand: each request's answer head goes
    out at once (chunked, ``Connection: close``), then :meth:`send` writes one body chunk, at
    whatever moment the test picks (a race with a deadline, a shutdown, a client leaving)."""

    def __init__(self) -> None:
        self.answered: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()
        self.closed = asyncio.Event()
        """Set when the gateway closed (or finished with) the last request's connection."""
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> HandUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    @staticmethod
    def send(writer: asyncio.StreamWriter, data: bytes, *, last: bool = False) -> None:
        """One HTTP chunk of ``data`` (and the chunked terminator when ``last``)."""
        if not writer.is_closing():
            writer.write(b"%x\r\n%b\r\n" % (len(data), data) + (b"0\r\n\r\n" if last else b""))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        self.closed.clear()
        self.answered.put_nowait(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        writer.close()
        self.closed.set()


def dechunked(raw: bytes) -> bytes:
    """The body of a raw chunked HTTP/1.1 response (head and chunk framing taken off)."""
    body = raw.partition(b"\r\n\r\n")[2]
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + body[:n], body[n + 2 :]
    return out


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request the gateway sent upstream (head and ``Content-Length`` body); its head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head
