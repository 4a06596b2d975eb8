"""What every part of a stream session shares: its fields, declared once for the type checker.

:class:`~gateway.stream.session.StreamSession` assembles three parts that work on the same
per-stream state: :class:`~gateway.stream.attempts.Fallbacks` (which upstream serves),
:class:`~gateway.stream.deadlines.Deadlines` (one lazy timer for every deadline and heartbeat)
and the session itself (the pump: upstream bytes -> pipeline -> encoder -> client). The fields
are set in ``StreamSession.__init__``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.config.model import RouteConfig
from gateway.encoders.base import Encoder
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.metrics import RouteMetrics, StreamRecorder
from gateway.pipeline import Pipeline
from gateway.upstream import UpstreamStream

if TYPE_CHECKING:
    from gateway.state import GatewayState
    from gateway.stream.attempts import Attempt

now = time.monotonic
"""The one clock for stream timing (nanosecond resolution; uvloop's loop.time() has ms)."""


class SessionBase:
    """Field declarations shared by the parts of a stream session (no behaviour).

    Slots, not a ``__dict__``: a stream is open for minutes and there may be thousands at once.
    """

    __slots__ = (
        "_side_task",
        "_start_lock",
        "_timer",
        "app",
        "attempts",
        "bytes_written",
        "closed",
        "content_writes",
        "deadline_total",
        "duration_is_limit",
        "encoder",
        "error_code",
        "events_written",
        "extra_headers",
        "failure",
        "heartbeat_interval",
        "held",
        "held_back",
        "http_request",
        "last_content",
        "last_upstream",
        "last_write",
        "loop",
        "max_gap",
        "metrics",
        "model",
        "on_finish",
        "outcome",
        "pipeline",
        "rec",
        "request_id",
        "response",
        "route",
        "served_by",
        "slow_client",
        "started",
        "state",
        "t0",
        "t_first_content",
        "t_headers",
        "t_request_sent",
        "task",
        "upstream",
        "usage",
        "write_since",
        "write_timeout",
        "writing",
    )

    state: GatewayState
    route: RouteConfig
    http_request: web.Request
    encoder: Encoder
    attempts: list[Attempt]
    served_by: Attempt
    metrics: RouteMetrics
    rec: StreamRecorder
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[Any] | None
    response: web.StreamResponse | None
    upstream: UpstreamStream | None
    pipeline: Pipeline | None
    held: list[Event]
    held_back: bool
    started: bool
    closed: bool
    writing: bool
    write_since: float
    write_timeout: float
    last_write: float
    heartbeat_interval: float
    t0: float
    t_request_sent: float
    t_headers: float | None
    last_upstream: float
    deadline_total: float
    duration_is_limit: bool
    failure: GatewayError | None
    slow_client: bool
    _timer: asyncio.TimerHandle | None
    _side_task: asyncio.Task[None] | None

    if TYPE_CHECKING:

        async def _start(self) -> None: ...

        def _rearm_now(self) -> None: ...

        def _scrub(self, exc: GatewayError, attempt: Attempt) -> GatewayError: ...
