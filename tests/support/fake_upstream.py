"""A scriptable fake upstream provider on loopback, run with aiohttp's production runner.

Each request to any path is answered by the next :class:`Script` (or the default one): an
optional delay before headers, a status and headers, then body chunks each after its own delay,
then EOF (or an abrupt close). The fake records every request (path, headers, JSON body) and,
for each, when the gateway closed the connection: that is how abort propagation is measured.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.jsonutil import loads


@dataclass
class Script:
    chunks: Sequence[tuple[float, bytes]] = ()
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream"})
    delay_before_headers: float = 0.0
    hang_after: bool = False
    """After the last chunk, keep the connection open and silent (until the client leaves)."""
    reset_after: bool = False
    """After the last chunk, close the connection abruptly (no chunked terminator)."""
    rst_after_bytes: int | None = None
    """Send only this many body bytes of ``chunks``, then a TCP RST (SO_LINGER 0)."""
    endless: tuple[float, bytes] | None = None
    """After ``chunks``, write these bytes after this delay, forever (until the client leaves)."""


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any
    started: float
    closed_at: float | None = None
    completed: bool = False
    bytes_sent: int = 0
    """Body bytes written by ``Script.endless`` (how far a stream got)."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    raw: bytes = b""
    """The request body as received, byte for byte."""


def chunks_of(
    data: bytes, pieces: list[bytes] | None = None, gap: float = 0.0
) -> list[tuple[float, bytes]]:
    return [(gap, p) for p in (pieces if pieces is not None else [data])]


def _rst(request: web.Request) -> None:
    """Close with a TCP RST: SO_LINGER with a zero timeout, then close."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FakeUpstream:
    def __init__(self) -> None:
        self.scripts: list[Script] = []
        self.default = Script()
        self.seen: list[Seen] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    @property
    def open_connections(self) -> int:
        """Requests whose connection the gateway has not closed yet."""
        return sum(1 for s in self.seen if s.closed_at is None)

    async def start(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = loads(raw) if raw else None
        except ValueError:
            body = raw
        seen = Seen(request.path_qs, dict(request.headers), body, time.monotonic(), raw=raw)
        self.seen.append(seen)
        script = self.scripts.pop(0) if self.scripts else self.default
        try:
            if script.delay_before_headers:
                await asyncio.sleep(script.delay_before_headers)
            if script.status >= 300 and not script.chunks:
                return web.Response(status=script.status, headers=script.headers)
            resp = web.StreamResponse(status=script.status, headers=script.headers)
            await resp.prepare(request)
            budget = script.rst_after_bytes
            for delay, data in script.chunks:
                if delay:
                    await asyncio.sleep(delay)
                if budget is not None:
                    data, budget = data[:budget], budget - min(budget, len(data))
                await resp.write(data)
                if budget == 0:
                    _rst(request)
                    return resp
            if script.endless is not None:
                gap, data = script.endless
                while True:
                    await asyncio.sleep(gap)  # yields even at gap 0: the loop stays fair
                    await resp.write(data)
                    seen.bytes_sent += len(data)
            if script.hang_after:
                await asyncio.sleep(3600)
            if script.reset_after:
                assert request.transport is not None
                request.transport.abort()
                return resp
            await resp.write_eof()
            seen.completed = True
            return resp
        finally:
            seen.closed_at = time.monotonic()
            seen.closed.set()
