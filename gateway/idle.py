"""Deadlines of many connections on one loop timer: the keep-alive and response-head timeouts.

A client connection (:mod:`gateway.httpserver`) closes after ``keepalive_timeout`` without a
request; a pooled upstream connection (:mod:`gateway.rawhttp`) after ``IDLE_KEEPALIVE`` unused,
and it fails when a response's head is later than its request's first-event deadline. Each of
these deadlines is set and cleared once per request. A loop timer per deadline costs a request
two timer handles per deadline (on uvloop each is a libuv handle opened and closed: about 8,000
instructions the pair, counted with ``bench.instructions``) and, armed, half a kilobyte.

:class:`Expiry` keeps the deadlines of all connections of one kind in a dict instead, as nginx
keeps its timers in one tree: setting or clearing a deadline is a dict operation, and one loop
timer, armed for the earliest deadline, expires those that passed when it fires and re-arms for
the next. The timer fires no sooner than ``granularity`` after the last time it fired, so its
scan of the dict (one pass over the connections it holds) stays rare however many expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

SLACK = 0.001
"""Seconds early a timer may fire and still count as due: uvloop counts whole milliseconds, so a
timer armed for ``due`` can see ``loop.time()`` a rounding error short of it."""

Owner = TypeVar("Owner")

_log = logging.getLogger("gateway")


class Expiry(Generic[Owner]):
    """Calls ``expire(owner)`` once the loop's clock reaches the deadline :meth:`set` gave
    ``owner``, unless :meth:`clear` came first. Holds each owner while its deadline is set."""

    __slots__ = ("_armed_for", "_due", "_expire", "_handle", "_loop", "granularity")

    def __init__(
        self,
        expire: Callable[[Owner], None],
        *,
        granularity: float = 0.0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._expire = expire
        self.granularity = granularity
        """Seconds a deadline may be acted on late: a scan at most this often."""
        self._due: dict[Owner, float] = {}
        self._loop = loop
        """The running loop's, taken at the first deadline (the owner may be made before it)."""
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0.0

    def set(self, owner: Owner, when: float) -> None:
        """``owner`` expires at ``when`` (the loop's clock), unless cleared or set again."""
        self._due[owner] = when
        if self._handle is None or when < self._armed_for:
            self._arm(when)

    def clear(self, owner: Owner) -> None:
        self._due.pop(owner, None)

    def after(self, owner: Owner, seconds: float) -> None:
        """:meth:`set` ``owner`` to expire ``seconds`` from now (its body written out: this is
        the per-request call)."""
        when = (self._loop or self.loop).time() + seconds
        self._due[owner] = when
        if self._handle is None or when < self._armed_for:
            self._arm(when)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def __len__(self) -> int:
        return len(self._due)

    def close(self) -> None:
        """Forget every deadline (shutdown)."""
        self._due.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = self.loop.time()
        due = self._due
        passed = [owner for owner, when in due.items() if when <= now + SLACK]
        for owner in passed:
            del due[owner]
        if due:
            self._arm(max(min(due.values()), now + self.granularity))
        for owner in passed:
            try:
                self._expire(owner)
            except Exception:  # one owner's failure must not keep the others open
                _log.exception("expiring a connection's deadline failed")
