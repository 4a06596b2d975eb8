"""A small Python client for the token protocol (used by the tests, and by Python apps).

::

    async with aiohttp.ClientSession() as http:
        async for event in stream_tokens(http, "http://127.0.0.1:8080/v1/stream/demo",
                                         {"messages": [{"role": "user", "content": "Hi"}]}):
            if event.type == "delta":
                print(event.data["text"], end="")

:func:`stream_tokens` yields :class:`TokenEvent` objects in order, ending with the terminal
``end`` or ``error`` event. It raises :class:`GatewayHTTPError` for a JSON error status before the
stream, and :class:`StreamTruncated` when the connection ends without a terminal event (a
dead stream never looks like success). Cancelling the iteration closes the connection, which
makes the gateway cancel the upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.framing.sse import SSEDecoder
from gateway.jsonutil import loads


@dataclass(frozen=True, slots=True)
class TokenEvent:
    type: str
    data: dict[str, Any]
    id: str = ""


class GatewayHTTPError(Exception):
    """The gateway refused the request (a JSON error body with an HTTP status)."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers)


class StreamTruncated(Exception):
    """The stream ended without a terminal ``end`` or ``error`` event."""


async def stream_tokens(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[TokenEvent]:
    """POST ``body`` to a token-protocol route and yield its events (see the module docs)."""
    async with session.post(url, json=dict(body), headers=dict(headers or {})) as resp:
        if resp.status != 200:
            raw = await resp.read()
            try:
                err = loads(raw)["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", raw[:200].decode(errors="replace")
            raise GatewayHTTPError(resp.status, code, message, resp.headers)
        decoder = SSEDecoder()
        async for chunk in resp.content.iter_any():
            for frame in decoder.feed(chunk):
                event = TokenEvent(frame.event, loads(frame.data), frame.id)
                yield event
                if event.type in ("end", "error"):
                    return
        for frame in decoder.close():
            event = TokenEvent(frame.event, loads(frame.data), frame.id)
            yield event
            if event.type in ("end", "error"):
                return
    raise StreamTruncated("the stream ended without an end or error event")


async def collect(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
) -> list[TokenEvent]:
    """Every event of one stream, as a list."""
    return [e async for e in stream_tokens(session, url, body, headers=headers)]
