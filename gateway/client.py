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
makes the gateway cancel the upstream. ``resume=True`` picks a resumable stream up again after
a network error (``GET <url>/<stream id>`` with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
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
    resume: bool = False,
    max_resumes: int = 5,
    resume_delay: float = 0.5,
) -> AsyncIterator[TokenEvent]:
    """POST ``body`` to a token-protocol route and yield its events (see the module docs).

    With ``resume=True`` (for a route with ``resume`` enabled, contract section 12), a network
    error or a stream cut before its terminal event reconnects with
    ``GET <url>/<stream id>`` and ``Last-Event-ID``, up to ``max_resumes`` times in a row,
    waiting ``resume_delay`` seconds (doubling) between tries; the events continue where they
    stopped, none twice. A resume refused with a JSON error (404 expired, 410 dropped) raises
    :class:`GatewayHTTPError`; running out of tries raises :class:`StreamTruncated`.
    """
    state = _Progress()
    try:
        async with session.post(url, json=dict(body), headers=dict(headers or {})) as resp:
            async for event in _events(resp, state):
                yield event
            if state.done:
                return
    except (aiohttp.ClientError, ConnectionError, TimeoutError):
        if not (resume and state.stream_id):
            raise
    if not (resume and state.stream_id):
        raise StreamTruncated("the stream ended without an end or error event")
    async for event in _resume(session, url, headers, state, max_resumes, resume_delay):
        yield event


class _Progress:
    """How far a stream got: its id (from ``created``), the last event id, and the end."""

    def __init__(self) -> None:
        self.stream_id = ""
        self.last_id = 0
        self.done = False


async def _resume(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str] | None,
    state: _Progress,
    tries: int,
    delay: float,
) -> AsyncIterator[TokenEvent]:
    left = tries
    while left > 0:
        left -= 1
        await asyncio.sleep(delay)
        delay *= 2
        seen = state.last_id
        get_headers = {**(headers or {}), "Last-Event-ID": str(state.last_id)}
        try:
            async with session.get(f"{url}/{state.stream_id}", headers=get_headers) as resp:
                if resp.status == 204:  # we already had the terminal event
                    return
                async for event in _events(resp, state):
                    yield event
                if state.done:
                    return
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            pass
        if state.last_id > seen:
            left = tries  # progress was made: the budget of tries is per stall
    raise StreamTruncated(f"the stream did not resume after {tries} tries")


async def _events(resp: aiohttp.ClientResponse, state: _Progress) -> AsyncIterator[TokenEvent]:
    """The events of one response (raising :class:`GatewayHTTPError` for an error status),
    skipping ids already seen; ``state`` records progress."""
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
            event = _accept(frame.event, frame.data, frame.id, state)
            if event is not None:
                yield event
            if state.done:
                return
    for frame in decoder.close():
        event = _accept(frame.event, frame.data, frame.id, state)
        if event is not None:
            yield event
        if state.done:
            return


def _accept(kind: str, data: str, event_id: str, state: _Progress) -> TokenEvent | None:
    number = int(event_id) if event_id.isdigit() else None
    if number is not None:
        if number <= state.last_id:
            return None  # replayed twice (a resume from an older id): already yielded
        state.last_id = number
    event = TokenEvent(kind, loads(data), event_id)
    if kind == "created" and isinstance(event.data.get("id"), str):
        state.stream_id = event.data["id"]
    if kind in ("end", "error"):
        state.done = True
    return event


async def collect(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    resume: bool = False,
) -> list[TokenEvent]:
    """Every event of one stream, as a list."""
    return [e async for e in stream_tokens(session, url, body, headers=headers, resume=resume)]
