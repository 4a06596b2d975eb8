"""A keep-alive connection's idle timeout, re-armed lazily.

A client connection (:mod:`gateway.httpserver`) closes after ``keepalive_timeout`` without a
request, and a pooled upstream connection (:mod:`gateway.rawhttp`) after ``IDLE_KEEPALIVE``
unused. Arming a loop timer when a connection falls idle and cancelling it when the next request
comes costs two timer handles per request (on uvloop each is a libuv handle opened and closed).
:class:`IdleTimer` does what aiohttp's keep-alive handle does instead: a request only marks the
connection busy, and a timer that fires on a busy connection, or on one idle for less than the
timeout, waits again. A connection serving requests back to back arms one timer per timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

SLACK = 0.001
"""Seconds early a timer may fire and still count as due: uvloop counts whole milliseconds, so a
timer armed for ``due`` can see ``loop.time()`` a rounding error short of it."""


class IdleTimer:
    """Calls ``expire`` once the owner has been idle (:meth:`idle`, and no :meth:`busy` since)
    for ``timeout`` seconds. :meth:`cancel` is for good (the connection closed or changed
    hands): it lets go of ``expire``, the owner's method, so the two are no reference cycle."""

    __slots__ = ("_expire", "_handle", "_loop", "idle_since", "timeout")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float, expire: Callable[[], None]
    ) -> None:
        self._loop = loop
        self.timeout = timeout
        self._expire: Callable[[], None] | None = expire
        self._handle: asyncio.TimerHandle | None = None
        self.idle_since: float | None = None
        """When the owner fell idle (the loop's clock); ``None`` while it is busy."""

    def idle(self) -> None:
        """Idle from now."""
        if self._expire is None:
            return  # cancelled
        self.idle_since = now = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(now + self.timeout, self._check)

    def busy(self) -> None:
        """In use until the next :meth:`idle` (a timer firing meanwhile does nothing)."""
        self.idle_since = None

    def cancel(self) -> None:
        self.idle_since = None
        self._expire = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        since = self.idle_since
        if since is None:
            return  # busy: the next idle() arms a timer again
        due = since + self.timeout
        if self._loop.time() >= due - SLACK:
            self.idle_since = None
            if self._expire is not None:
                self._expire()
        else:
            self._handle = self._loop.call_at(due, self._check)
