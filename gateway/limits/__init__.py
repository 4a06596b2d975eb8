"""Rate and concurrency limits per app and per route (contract section 9 ``limits``).

``base.py`` is the backend interface, ``window.py`` the sliding-window math, ``memory.py`` and
``redis_backend.py`` the backends, ``limiter.py`` the per-request logic. The registry below maps
``limits.backend`` to a factory.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.model import LimitsConfig
from gateway.limits.base import BackendError, Denied, Grant, LimitBackend, Scope
from gateway.limits.limiter import ErrorReporter, Limiter, Ticket, has_limits
from gateway.limits.memory import MemoryBackend
from gateway.limits.redis_backend import RedisBackend


def _memory(config: LimitsConfig, on_error: Callable[[Exception], None]) -> LimitBackend:
    return MemoryBackend()


def _redis(config: LimitsConfig, on_error: Callable[[Exception], None]) -> LimitBackend:
    return RedisBackend(config.redis_url, on_error=on_error)


BACKENDS: dict[str, Callable[[LimitsConfig, Callable[[Exception], None]], LimitBackend]] = {
    "memory": _memory,
    "redis": _redis,
}
"""``limits.backend`` -> factory(limits config, error reporter)."""

__all__ = [
    "BACKENDS",
    "BackendError",
    "Denied",
    "ErrorReporter",
    "Grant",
    "LimitBackend",
    "Limiter",
    "MemoryBackend",
    "Scope",
    "Ticket",
    "has_limits",
]
