"""``GET`` and ``DELETE <route path>/<stream id>`` (contract section 12), as plain functions.

The server mounts them and does what every request gets first (route lookup, auth, the route
allow-list); these take the authenticated app key name (``None`` without auth) and the store.

* :func:`resume_stream`: ``Last-Event-ID`` header or ``?last_event_id=`` (header wins), then a
  ``200`` response with the original stream's headers that replays every frame after that id and
  follows the live stream to its terminal frame, with ``: ping`` during silence. Works with the
  browser's ``EventSource``, which reconnects by itself after the response ends: a resume from
  the terminal event (or beyond) of a finished stream gets ``204``, which stops it for good.
  A follower that accepts no bytes for ``write_timeout`` is cut, as a stream's own client is.
* :func:`stop_stream`: ``204``; the stream's owner cancels it (a finished stream: also 204).

Every answer, errors included, carries ``cors``: the CORS headers for this request's own
``Origin`` (the original stream's are not repeated; its ``POST`` may have come from elsewhere).
Given ``log_line`` (the route, the stream id, the app), each writes one ``resume`` log line when it
is done: ``method``, ``outcome`` (``followed``, the terminal frame sent; ``client_left``, also
a follower cut as too slow; ``failed``; ``ended``, the 204; ``stopped``; or the error code),
``events`` (frames sent) and ``duration_ms``.

Errors are the gateway's JSON errors: 400 ``invalid_request`` (``Last-Event-ID`` not a number,
or beyond the end of the stream), 403 ``forbidden``, 404 ``not_found`` (unknown or expired),
410 ``gone`` (that range was dropped by ``max_events``), 503 ``unavailable`` (store down).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from gateway.errors import GatewayError, Unavailable
from gateway.http import json_error
from gateway.logs import log_fields, now_ms
from gateway.resume.base import ResumeStore, parse_last_event_id

log = logging.getLogger("gateway.resume")

PING = b": ping\n\n"


class Outcomes(Protocol):
    """Where outcomes are counted (``ResumeMetrics`` in production)."""

    def resumed(self, outcome: str) -> None: ...


async def resume_stream(
    request: web.Request,
    store: ResumeStore,
    stream_id: str,
    app: str | None,
    *,
    heartbeat: float = 15.0,
    write_timeout: float = 30.0,
    cors: Mapping[str, str] | None = None,
    metrics: Outcomes | None = None,
    slow_client: Callable[[], None] | None = None,
    log_line: Mapping[str, Any] | None = None,
) -> web.StreamResponse:
    """Serve ``GET <route path>/<stream_id>``: replay, then follow. See the module docstring.

    Cancellation (the client left) ends the follow and propagates; a write to a closed
    transport ends it quietly. A write the client takes no part of for ``write_timeout``
    (``server.write_timeout``) drops the connection and calls ``slow_client``.
    """
    started = time.monotonic()
    cors = dict(cors or {})
    try:
        last = parse_last_event_id(
            request.headers.get("Last-Event-ID"), request.query.get("last_event_id")
        )
        replay = await store.replay(stream_id, app, last, idle=heartbeat)
    except GatewayError as exc:
        _count(metrics, exc.error_code)
        _log(log_line, "GET", exc.error_code, 0, started)
        return json_error(exc, cors)
    except Exception as exc:  # a store failure: the edge translates it, once
        log.warning("resume store failed: %s", type(exc).__name__)
        _count(metrics, "unavailable")
        _log(log_line, "GET", "unavailable", 0, started)
        return json_error(Unavailable("the resume store is unavailable, try again"), cors)
    if replay.ended:
        await replay.frames.aclose()
        _count(metrics, "ended")
        _log(log_line, "GET", "ended", 0, started)
        return web.Response(status=204, headers=_passed_headers(replay.headers, cors, ended=True))
    response = web.StreamResponse(status=200, headers=_passed_headers(replay.headers, cors))
    guard = WriteGuard(request.transport, write_timeout, slow_client)
    outcome, sent = "client_left", 0
    try:
        await response.prepare(request)  # inside: a client already gone still closes the replay
        _count(metrics, "resumed")
        async for frame in replay.frames:
            guard.since = guard.now()
            await response.write(frame or PING)
            guard.since = None
            sent += frame != b""
        guard.since = guard.now()
        await response.write_eof()  # it waits for the client too
        outcome = "followed"
    except ConnectionResetError:
        pass  # the client went away between two writes (or was cut)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # headers are out: all we can do is end it
        log.warning("resume follow failed: %s", type(exc).__name__)
        outcome = "failed"
    finally:
        guard.stop()
        await replay.frames.aclose()
        _log(log_line, "GET", outcome, sent, started)
    return response


async def stop_stream(
    store: ResumeStore,
    stream_id: str,
    app: str | None,
    *,
    cors: Mapping[str, str] | None = None,
    metrics: Outcomes | None = None,
    log_line: Mapping[str, Any] | None = None,
) -> web.Response:
    """Serve ``DELETE <route path>/<stream_id>``: ``204``, or a JSON error (403, 404, 503);
    each with the ``cors`` headers."""
    started = time.monotonic()
    cors = dict(cors or {})
    try:
        await store.stop(stream_id, app)
    except GatewayError as exc:
        _count(metrics, exc.error_code)
        _log(log_line, "DELETE", exc.error_code, 0, started)
        return json_error(exc, cors)
    except Exception as exc:
        log.warning("resume store failed: %s", type(exc).__name__)
        _count(metrics, "unavailable")
        _log(log_line, "DELETE", "unavailable", 0, started)
        return json_error(Unavailable("the resume store is unavailable, try again"), cors)
    _count(metrics, "stopped")
    _log(log_line, "DELETE", "stopped", 0, started)
    return web.Response(status=204, headers=cors)


def _log(
    fields: Mapping[str, Any] | None, method: str, outcome: str, events: int, started: float
) -> None:
    """The request's ``resume`` log line (see the module docs), when the caller asked for one."""
    if fields is not None:
        line = {**fields, "method": method, "outcome": outcome, "events": events}
        line["duration_ms"] = now_ms(started)
        log_fields("resume", line)


def _passed_headers(
    headers: Mapping[str, str], cors: Mapping[str, str], *, ended: bool = False
) -> dict[str, str]:
    """The original response's headers (only its id when ``ended``: a 204 has no body type),
    its CORS headers replaced by ``cors``."""
    kept = {
        k: v
        for k, v in headers.items()
        if not (k.lower().startswith("access-control-") or k.lower() == "vary")
        and (not ended or k.lower() == "x-request-id")
    }
    return {**kept, **cors}


class WriteGuard:
    """A follower's slow-client deadline, by the rule of a stream's own writes
    (:class:`gateway.stream.deadlines.Deadlines`): a write notes when it started in
    :attr:`since` (``None`` between writes); one timer, asleep at most ``timeout / 2`` between
    writes, drops the connection once a write has waited ``timeout`` on the client, and calls
    ``on_cut`` (the route's ``gateway_slow_client_disconnects_total``). Aborting the transport
    ends the pending write. No timer work per write: a replay is thousands of them (an
    ``asyncio.timeout`` per write made a 7 MB replay 2.5x slower).
    """

    __slots__ = ("_loop", "_on_cut", "_timer", "_transport", "since", "timeout")

    def __init__(
        self,
        transport: asyncio.Transport | None,
        timeout: float,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        self._on_cut = on_cut
        self.timeout = timeout
        self.since: float | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(timeout / 2, self._tick)

    def now(self) -> float:
        return self._loop.time()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        since, t = self.since, self.now()
        if since is None:
            self._timer = self._loop.call_later(self.timeout / 2, self._tick)
        elif t < since + self.timeout:
            self._timer = self._loop.call_at(since + self.timeout, self._tick)
        else:
            self._timer = None
            log.info("resume follower cut: no progress for %gs", self.timeout)
            if self._transport is not None:
                self._transport.abort()
            if self._on_cut is not None:
                self._on_cut()


def _count(metrics: Outcomes | None, outcome: str) -> None:
    if metrics is not None:
        metrics.resumed(outcome)
