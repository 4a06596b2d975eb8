"""``GET`` and ``DELETE <route path>/<stream id>`` (contract section 12), as plain functions.

The server mounts them and does what every request gets first (route lookup, auth, the route
allow-list); these take the authenticated app key name (``None`` without auth) and the store.

* :func:`resume_stream`: ``Last-Event-ID`` header or ``?last_event_id=`` (header wins), then a
  ``200`` response with the original stream's headers that replays every frame after that id and
  follows the live stream to its terminal frame, with ``: ping`` during silence. Works with the
  browser's ``EventSource``, which reconnects by itself after the response ends: a resume from
  the terminal event (or beyond) of a finished stream gets ``204``, which stops it for good.
* :func:`stop_stream`: ``204``; the stream's owner cancels it (a finished stream: also 204).

Errors are the gateway's JSON errors: 400 ``invalid_request`` (``Last-Event-ID`` not a number,
or beyond the end of the stream), 403 ``forbidden``, 404 ``not_found`` (unknown or expired),
410 ``gone`` (that range was dropped by ``max_events``), 503 ``unavailable`` (store down).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiohttp import web

from gateway.errors import GatewayError, Unavailable
from gateway.http import json_error
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
    metrics: Outcomes | None = None,
) -> web.StreamResponse:
    """Serve ``GET <route path>/<stream_id>``: replay, then follow. See the module docstring.

    Cancellation (the client left) ends the follow and propagates; a write to a closed
    transport ends it quietly.
    """
    try:
        last = parse_last_event_id(
            request.headers.get("Last-Event-ID"), request.query.get("last_event_id")
        )
        replay = await store.replay(stream_id, app, last, idle=heartbeat)
    except GatewayError as exc:
        _count(metrics, exc.error_code)
        return json_error(exc)
    except Exception as exc:  # a store failure: the edge translates it, once
        log.warning("resume store failed: %s", type(exc).__name__)
        _count(metrics, "unavailable")
        return json_error(Unavailable("the resume store is unavailable, try again"))
    if replay.ended:
        await replay.frames.aclose()
        _count(metrics, "ended")
        return web.Response(status=204, headers=_passed_headers(replay.headers))
    response = web.StreamResponse(status=200, headers=dict(replay.headers))
    try:
        await response.prepare(request)  # inside: a client already gone still closes the replay
        _count(metrics, "resumed")
        async for frame in replay.frames:
            await response.write(frame or PING)
    except ConnectionResetError:
        pass  # the client went away between two writes
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # headers are out: all we can do is end it
        log.warning("resume follow failed: %s", type(exc).__name__)
    finally:
        await replay.frames.aclose()
    return response


async def stop_stream(
    store: ResumeStore,
    stream_id: str,
    app: str | None,
    *,
    metrics: Outcomes | None = None,
) -> web.Response:
    """Serve ``DELETE <route path>/<stream_id>``: ``204``, or a JSON error (403, 404, 503)."""
    try:
        await store.stop(stream_id, app)
    except GatewayError as exc:
        _count(metrics, exc.error_code)
        return json_error(exc)
    except Exception as exc:
        log.warning("resume store failed: %s", type(exc).__name__)
        _count(metrics, "unavailable")
        return json_error(Unavailable("the resume store is unavailable, try again"))
    _count(metrics, "stopped")
    return web.Response(status=204)


def _passed_headers(headers: object) -> dict[str, str]:
    """Headers of the original response worth repeating on a 204 (ids and CORS, no body type)."""
    if not isinstance(headers, dict):
        return {}
    return {
        k: v
        for k, v in headers.items()
        if k.lower() == "x-request-id" or k.lower().startswith("access-control-")
    }


def _count(metrics: Outcomes | None, outcome: str) -> None:
    if metrics is not None:
        metrics.resumed(outcome)
