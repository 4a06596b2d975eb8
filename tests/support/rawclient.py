"""A raw HTTP/1.1 client on a plain socket: to abort, or never read, at a precise moment."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


async def open_raw(
    port: int, path: str, body: Any = HELLO, *, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw HTTP/1.1 POST on a plain socket (to abort, or never read, at a precise moment).

    ``rcvbuf`` shrinks the client's socket receive buffer (set before connecting).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    return reader, writer


async def read_until(reader: asyncio.StreamReader, marker: bytes, timeout: float = 5) -> bytes:
    buf = b""
    async with asyncio.timeout(timeout):
        while marker not in buf:
            chunk = await reader.read(65536)
            assert chunk, f"connection closed before {marker!r}: {buf!r}"
            buf += chunk
    return buf
