"""The one way the gateway opens a Redis client (limits, budgets, pools), for shared state.

``redis`` is an optional dependency (the ``redis`` extra): it is imported here, when a Redis
backend is first used, so a gateway without it runs on the memory backends.
"""

from __future__ import annotations

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
