"""A fast fake OpenAI upstream for the benchmark: chat-completions and responses streams.

It must never be the bottleneck, so it is a raw :class:`asyncio.Protocol` HTTP/1.1 server (on
uvloop when installed) that answers from pre-encoded bytes: every frame is built once, already
wrapped as an HTTP chunk.

What a stream looks like is chosen by the request *body*, so every peer (a direct client, nginx,
LiteLLM, the gateway) can pass it through unchanged: the body must contain a spec
``bench:<tokens>:<first_ms>:<gap_ms>:<mode>`` somewhere (in the user message). The path picks
the wire format: a path ending in ``/responses`` gets a Responses stream, ``/messages`` an
Anthropic Messages stream, anything else a Chat Completions stream.

An optional ``:<tag>`` after the mode marks the stream for :mod:`bench.ttft`: the upstream
notes when the request arrived and when it wrote the first token (``/_marks``).

``mode``
    ``flow``: headers, then ``tokens`` token events (``first_ms`` before the first, ``gap_ms``
    between the others; back to back when both are 0), then the terminator; one write each.
    ``silent``: headers, then nothing until the client leaves (idle streams, aborts while the
    model is silent).

Every token's text contains exactly one ``~`` and no other byte of any stream does, so a client
counts tokens by counting ``~`` whatever the proxy re-encodes them into.

Control endpoints (``GET``), for the load client:
    ``/_stats``: ``{"open": <streams being served>, "closes": <count>, "requests": <count>}``.
    ``/_closes?after=K&wait=MS``: the ``time.monotonic()`` instants at which a peer closed a
    stream before its end (index > K), waiting up to MS ms for one. Same clock as the client's:
    CLOCK_MONOTONIC is system-wide, which is how abort propagation is timed across processes.
    ``/_marks``: ``{"marks": {<tag>: [<request arrived>, <first token written>]}}`` of the
    tagged streams since the last call (same clock), then forgets them.

Run: ``python -m bench.fake_upstream --port 0`` prints ``ready <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import time
from functools import lru_cache
from typing import cast
from urllib.parse import parse_qs, urlsplit

TOKEN_TEXT = " ~ab"
"""Each token's text; ``~`` is the one marker byte the load client counts."""
DONE_TEXT = " -ab"
"""What a token looks like inside the final "whole text" events (no marker)."""
SPEC = re.compile(rb"bench:(\d+):(\d+):(\d+):([a-z]+)(?::(\d+))?")

_CHAT_BASE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "bench",
    "system_fingerprint": "fp_bench",
}


def chunk(frame: bytes) -> bytes:
    """``frame`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(frame), frame)


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _chat_frame(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return b"data: %s\n\n" % _json({**_CHAT_BASE, "choices": [choice]})


def _chat_frames(tokens: int) -> tuple[list[bytes], bytes, list[bytes]]:
    usage = {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": tokens + 12}
    head = [_chat_frame({"role": "assistant", "content": ""})]
    tail = [
        _chat_frame({}, "stop"),
        b"data: %s\n\n" % _json({**_CHAT_BASE, "choices": [], "usage": usage}),
        b"data: [DONE]\n\n",
    ]
    return head, _chat_frame({"content": TOKEN_TEXT}), tail


def _sse(kind: str, doc: dict[str, object]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), _json({"type": kind, **doc}))


def _responses_frames(tokens: int) -> tuple[list[bytes], bytes, list[bytes]]:
    rid, mid = "resp_bench", "msg_bench"
    pending = {
        "id": rid,
        "object": "response",
        "status": "in_progress",
        "model": "bench",
        "output": [],
    }
    text = DONE_TEXT * tokens
    part = {"type": "output_text", "text": "", "annotations": []}
    item = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    at = {"item_id": mid, "output_index": 0, "content_index": 0}
    done_part = {**part, "text": text}
    done_item = {**item, "status": "completed", "content": [done_part]}
    usage = {"input_tokens": 12, "output_tokens": tokens, "total_tokens": tokens + 12}
    completed = {**pending, "status": "completed", "output": [done_item], "usage": usage}
    head = [
        _sse("response.created", {"response": pending}),
        _sse("response.in_progress", {"response": pending}),
        _sse("response.output_item.added", {"output_index": 0, "item": item}),
        _sse("response.content_part.added", {**at, "part": part}),
    ]
    token = _sse("response.output_text.delta", {**at, "delta": TOKEN_TEXT})
    tail = [
        _sse("response.output_text.done", {**at, "text": text}),
        _sse("response.content_part.done", {**at, "part": done_part}),
        _sse("response.output_item.done", {"output_index": 0, "item": done_item}),
        _sse("response.completed", {"response": completed}),
    ]
    return head, token, tail


def _messages_frames(tokens: int) -> tuple[list[bytes], bytes, list[bytes]]:
    """An Anthropic Messages stream (``message_start`` ... ``message_stop``)."""
    message: dict[str, object] = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "bench",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    head = [
        _sse("message_start", {"message": message}),
        _sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    token = _sse(
        "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": TOKEN_TEXT}}
    )
    tail = [
        _sse("content_block_stop", {"index": 0}),
        _sse(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": tokens},
            },
        ),
        _sse("message_stop", {}),
    ]
    return head, token, tail


WIRES = {"chat": _chat_frames, "responses": _responses_frames, "messages": _messages_frames}
"""The upstream API a request path picks (its last segment; anything else: chat)."""

HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"


@lru_cache(maxsize=64)
def frames(api: str, tokens: int) -> tuple[bytes, bytes, bytes]:
    """``(headers + head chunks, one token chunk, tail chunks + last chunk)``, pre-encoded."""
    head, token, tail = WIRES.get(api, _chat_frames)(tokens)
    return (
        HEADERS + b"".join(map(chunk, head)),
        chunk(token),
        b"".join(map(chunk, tail)) + LAST_CHUNK,
    )


class Recorder:
    """Counters and close instants shared by every connection of the process."""

    def __init__(self) -> None:
        self.open = 0
        self.requests = 0
        self.closes: list[float] = []
        self.marks: dict[str, list[float]] = {}
        """Tagged streams: tag -> [request arrived, first token written] (``time.monotonic``)."""
        self._waiters: list[asyncio.Future[None]] = []

    def closed_early(self, when: float) -> None:
        self.closes.append(when)
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def closes_after(self, after: int, wait: float) -> list[float]:
        if len(self.closes) <= after and wait > 0:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, wait)
        return self.closes[after:]


class UpstreamProtocol(asyncio.Protocol):
    """One connection: parse requests (keep-alive), answer each from pre-encoded frames."""

    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder
        self.loop = asyncio.get_running_loop()
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.streaming = False
        self.timer: asyncio.TimerHandle | None = None
        self.left = 0
        self.token = b""
        self.tail = b""
        self.gap = 0.0
        self.control: asyncio.Future[None] | None = None
        self.mark: list[float] | None = None
        """A tagged stream's entry in ``Recorder.marks`` until its first token is written."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.streaming:
            self._next_request()

    def eof_received(self) -> bool:
        self._gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def _gone(self) -> None:
        if self.streaming:
            self.rec.closed_early(time.monotonic())
            self._finish()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _next_request(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end]
        length = 0
        at = head.lower().find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4 : end + 4 + length]
        self.buf = self.buf[end + 4 + length :]
        line = head.split(b"\r\n", 1)[0]
        method, target = line.split(b" ")[:2]
        if method == b"GET":
            self.control = asyncio.ensure_future(self._control(target.decode()))
        else:
            self._stream(target, body)

    def _stream(self, target: bytes, body: bytes) -> None:
        assert self.transport is not None
        self.rec.requests += 1
        spec = SPEC.search(body)
        if spec is None:
            self._reply(400, b'{"error":{"message":"no bench spec in the body"}}')
            return
        tokens, first_ms, gap_ms, mode = int(spec[1]), int(spec[2]), int(spec[3]), spec[4]
        if spec[5] is not None:
            self.mark = self.rec.marks[spec[5].decode()] = [time.monotonic(), 0.0]
        api = target.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode("latin-1")
        self.streaming = True
        self.rec.open += 1
        head, self.token, self.tail = frames(api, tokens)
        if mode == b"silent":
            self.transport.write(HEADERS)
            return
        if first_ms == 0 and gap_ms == 0:
            # Back to back, but one write per event as a model server does: the proxy sees them
            # coalesced only as far as its own reads lag behind.
            write = self.transport.write
            write(head)
            self._marked()
            for _ in range(tokens):
                write(self.token)
            write(self.tail)
            self._finish()
            return
        self.transport.write(head)
        self.left, self.gap = tokens, gap_ms / 1000
        self.timer = self.loop.call_later(first_ms / 1000, self._tick)

    def _tick(self) -> None:
        assert self.transport is not None
        self.timer = None
        if not self.streaming:
            return
        if self.left > 0:
            self.left -= 1
            self._marked()
            self.transport.write(self.token)
            if self.left > 0:
                self.timer = self.loop.call_later(self.gap, self._tick)
                return
        self.transport.write(self.tail)
        self._finish()

    def _marked(self) -> None:
        """The first token is being written: note when (a tagged stream)."""
        if self.mark is not None:
            self.mark[1] = time.monotonic()
            self.mark = None

    def _finish(self) -> None:
        if self.streaming:
            self.streaming = False
            self.rec.open -= 1
        if self.buf:
            self._next_request()

    async def _control(self, target: str) -> None:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/_stats":
            doc: object = {
                "open": self.rec.open,
                "closes": len(self.rec.closes),
                "requests": self.rec.requests,
            }
        elif url.path == "/_closes":
            after, wait = int(query.get("after", 0)), float(query.get("wait", 0)) / 1000
            doc = {"closes": await self.rec.closes_after(after, wait)}
        elif url.path == "/_marks":
            doc, self.rec.marks = {"marks": self.rec.marks}, {}
        else:
            self._reply(404, b'{"error":{"message":"not found"}}')
            return
        self._reply(200, json.dumps(doc).encode())

    def _reply(self, status: int, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        self.transport.write(head % (status, len(body)) + body)
        if self.buf:
            self._next_request()


def raise_fd_limit(want: int = 200_000) -> None:
    """Lift the open-files limit (idle-stream scenarios hold tens of thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the bench installs the fast extra
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(host: str, port: int) -> None:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(recorder), host, port, backlog=65535, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"ready {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_fd_limit()
    install_uvloop()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
