"""The one way the gateway opens a Redis client (limits, budgets, pools, resume), for shared
state, and :class:`LeaseRefresher`, which keeps a replica's leases there alive.

``redis`` is an optional dependency (the ``redis`` extra): it is imported here, when a Redis
backend is first used, so a gateway without it runs on the memory backends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any


def connect(url: str, timeout: float) -> Any:
    """A ``redis.asyncio.Redis`` client for ``url`` that fails fast: every socket operation and
    connect times out after ``timeout`` seconds and is retried once with no backoff (the callers
    decide what a failure means: fail open or closed)."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )


def pooled(url: str, max_connections: int, wait: float) -> Any:
    """A ``redis.asyncio.Redis`` client for ``url`` with a pool of its own: at most
    ``max_connections`` connections, a command waits up to ``wait`` seconds for a free one and
    then raises ``redis.exceptions.ConnectionError``. Connecting times out after a second;
    reads do not time out (``XREAD BLOCK`` waits on purpose). ``aclose()`` closes the pool."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait, socket_connect_timeout=1.0
    )
    return Redis.from_pool(pool)


class LeaseRefresher:
    """Keeps a replica's leases in Redis alive while any is held (limits and pools alike).

    ``refresh()`` runs every ``period`` seconds in one background task, started by
    :meth:`ensure` when a lease is taken and ending once ``held()`` is false. A failure of type
    ``errors`` goes to ``on_error`` (``None``: ``refresh`` reports its own) and the loop goes on:
    a lease that is not refreshed expires on its own. :meth:`close` stops the task.
    """

    __slots__ = ("_errors", "_held", "_on_error", "_period", "_refresh", "_task")

    def __init__(
        self,
        refresh: Callable[[], Awaitable[None]],
        held: Callable[[], bool],
        period: float,
        errors: type[Exception],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._refresh = refresh
        self._held = held
        self._period = period
        self._errors = errors
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None

    def ensure(self) -> None:
        """A lease was taken: run the loop unless it already runs."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while self._held():
            await asyncio.sleep(self._period)
            try:
                await self._refresh()
            except self._errors as exc:
                if self._on_error is not None:
                    self._on_error(exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
