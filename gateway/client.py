"""A small Python client for the token protocol (used by the tests, and by Python apps).

::

    async with aiohttp.ClientSession() as http:
        async for event in stream_tokens(http, "http://127.0.0.1:8080/v1/stream/demo",
                                         {"messages": [{"role": "user", "content": "Hi"}]}):
            if event.type == "delta":
                print(event.data["text"], end="")

:func:`stream_tokens` yields :class:`TokenEvent` objects in order, ending with the terminal
``end`` or ``error`` event; nothing after it is read. It raises :class:`GatewayHTTPError` for an
error status before the stream, :class:`StreamTruncated` when the connection ends or fails
without a terminal event (a dead stream never looks like success), and
:class:`GatewayProtocolError` for an answer that is not a token-protocol stream. Cancelling the
task, or closing the generator, closes the connection, which makes the gateway cancel the
upstream. A ``break`` closes it only once the generator is released: wrap the call in
``contextlib.aclosing(...)`` when you keep a reference to it. ``resume=True`` picks a
resumable stream up again after a network error (``GET <url>/<stream id>`` with
``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

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


class GatewayProtocolError(Exception):
    """The answer is not a token-protocol stream: ``code`` ``unexpected_content_type`` (a 200
    that is not ``text/event-stream``, e.g. a route whose format is ``ndjson``: add
    ``?format=tokens``) or ``client_protocol`` (an event whose data is not a JSON object)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


async def stream_tokens(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    resume: bool = False,
    max_resumes: int = 5,
    resume_delay: float = 0.5,
) -> AsyncGenerator[TokenEvent, None]:
    """POST ``body`` to a token-protocol route and yield its events (see the module docs).

    Raises :class:`GatewayHTTPError` for an error status before the stream (a body that is not
    the gateway's JSON error, such as a proxy's HTML page, gives code ``http_error``), the
    session's own error when no response came at all, and :class:`StreamTruncated` when the
    connection ends or fails after the response began but before the terminal event.

    With ``resume=True`` (for a route with ``resume`` enabled, contract section 12), a stream cut
    before its terminal event reconnects with ``GET <url path>/<stream id>`` (the query string
    kept) and ``Last-Event-ID``, up to ``max_resumes`` failed tries in a row, waiting
    ``resume_delay`` seconds (doubling) between tries; the events continue where they stopped,
    none twice. A resume answered with a transient status (408, 429, 5xx) is tried again; any
    other error status (404 expired, 410 dropped, 403) raises :class:`GatewayHTTPError`; a
    ``204`` (the gateway says the stream had already ended) and running out of tries raise
    :class:`StreamTruncated`.
    """
    state = _Progress()
    try:
        async with session.post(url, json=dict(body), headers=dict(headers or {})) as resp:
            async for event in _events(resp, state):
                yield event
            if state.done:
                return
            raise StreamTruncated("the stream ended without an end or error event")
    except StreamTruncated:
        if not (resume and state.stream_id):
            raise
    async for event in _resume(session, url, headers, state, max_resumes, resume_delay):
        yield event


class _Progress:
    """How far a stream got: its id (from ``created``), the last event id, and the end."""

    def __init__(self) -> None:
        self.stream_id = ""
        self.last_id = 0
        self.done = False


_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""A resume answered with one of these (a proxy while the gateway restarts, a store briefly
down) is tried again; any other error status is final."""


def _resume_url(url: str, stream_id: str) -> URL:
    """``<url path>/<stream id>``, keeping the route url's query string (``?format=tokens``)."""
    base = URL(url)
    return base.with_path(f"{base.path.rstrip('/')}/{stream_id}").with_query(base.query)


async def _resume(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str] | None,
    state: _Progress,
    tries: int,
    delay: float,
) -> AsyncGenerator[TokenEvent, None]:
    """The rest of a cut stream, by resume attempts (:func:`_follow`) from ``state.last_id``,
    until its terminal event; see :func:`stream_tokens` for the tries and errors."""
    target = _resume_url(url, state.stream_id)
    left, wait = tries, delay
    while left > 0:
        left -= 1
        await asyncio.sleep(wait)
        wait *= 2
        seen = state.last_id
        try:
            async for event in _follow(session, target, headers, state):
                yield event
            return
        except _Cut:
            pass
        except GatewayHTTPError as exc:
            if exc.status not in _RETRYABLE_STATUS:
                raise
        if state.last_id > seen:  # progress: the tries and their backoff count per stall
            left, wait = tries, delay
    raise StreamTruncated(f"the stream did not resume after {tries} tries")


class _Cut(Exception):
    """A resume attempt broke before the terminal event (it may be tried again)."""


async def _follow(
    session: aiohttp.ClientSession,
    target: URL,
    headers: Mapping[str, str] | None,
    state: _Progress,
) -> AsyncGenerator[TokenEvent, None]:
    """One resume attempt: its events up to the terminal one. Raises :class:`_Cut` when it
    breaks first, :class:`StreamTruncated` on ``204`` (the gateway says this client already had
    the terminal event, which it never received: asking again would get the same answer)."""
    get_headers = {**(headers or {}), "Last-Event-ID": str(state.last_id)}
    ended = False
    try:
        async with session.get(target, headers=get_headers) as resp:
            ended = resp.status == 204
            if not ended:
                async for event in _events(resp, state):
                    yield event
    except (StreamTruncated, aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
        raise _Cut() from exc
    if ended:
        raise StreamTruncated("the stream had ended (204) before its terminal event arrived")
    if not state.done:
        raise _Cut()


async def _events(
    resp: aiohttp.ClientResponse, state: _Progress
) -> AsyncGenerator[TokenEvent, None]:
    """The events of one response up to its terminal one, skipping ids already seen (``state``
    records progress). Raises :class:`GatewayHTTPError` for an error status and
    :class:`StreamTruncated` when the connection fails while the stream is read."""
    if resp.status != 200:
        raise await _http_error(resp)
    if resp.content_type != "text/event-stream":
        raise GatewayProtocolError(
            "unexpected_content_type",
            f"expected a token-protocol event stream, got {resp.content_type!r}"
            " (use the route's tokens format, e.g. ?format=tokens)",
        )
    decoder = SSEDecoder()
    while not state.done:
        try:
            chunk = await resp.content.readany()
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            raise StreamTruncated(f"the connection failed mid-stream: {exc!r}") from exc
        frames = decoder.feed(chunk) if chunk else decoder.close()
        for frame in frames:
            event = _accept(frame.event, frame.data, frame.id, state)
            if event is not None:
                yield event
            if state.done:
                return
        if not chunk:
            return


async def _http_error(resp: aiohttp.ClientResponse) -> GatewayHTTPError:
    """The error of a refused request: code and message from the gateway's JSON error body,
    else ``http_error`` and the start of whatever the body was (a proxy's HTML page)."""
    raw = await resp.read()
    try:
        err = loads(raw)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", raw[:200].decode(errors="replace")
    return GatewayHTTPError(resp.status, code, message, resp.headers)


def _accept(kind: str, data: str, event_id: str, state: _Progress) -> TokenEvent | None:
    """The event of one frame, or ``None`` for a frame already yielded or an unnamed one (the
    token protocol names every event). Raises :class:`GatewayProtocolError` for bad data."""
    if kind == "message":
        return None
    number = int(event_id) if event_id.isascii() and event_id.isdigit() else None
    if number is not None:
        if number <= state.last_id:
            return None  # replayed twice (a resume from an older id): already yielded
        state.last_id = number
    try:
        value = loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise GatewayProtocolError("client_protocol", f"event {kind!r} carries no JSON object")
    event = TokenEvent(kind, value, event_id)
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
    max_resumes: int = 5,
    resume_delay: float = 0.5,
) -> list[TokenEvent]:
    """Every event of one stream, as a list (the arguments and errors of :func:`stream_tokens`)."""
    events = stream_tokens(
        session,
        url,
        body,
        headers=headers,
        resume=resume,
        max_resumes=max_resumes,
        resume_delay=resume_delay,
    )
    return [e async for e in events]
