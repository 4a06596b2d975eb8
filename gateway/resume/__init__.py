"""Resumable streams (contract section 12): the stores, their bounds, and the GET/DELETE logic.

The registry maps a route's ``resume.store`` to its class. :func:`build_stores` makes the
stores a config needs, sharing one per-process :class:`Budget`; the endpoint functions live in
``gateway.resume.endpoints``.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.model import GatewayConfig
from gateway.resume.base import (
    Budget,
    Recorder,
    Replay,
    ResumeStore,
    parse_last_event_id,
)
from gateway.resume.memory import MemoryStore
from gateway.resume.redis_store import RedisStore

STORES: dict[str, type[ResumeStore]] = {"memory": MemoryStore, "redis": RedisStore}


def build_stores(
    config: GatewayConfig, on_change: Callable[[int, int], None] | None = None
) -> dict[str, ResumeStore]:
    """One store per ``resume.store`` kind the config's routes use, sharing one :class:`Budget`
    (``limits.max_resume_buffer_bytes``, ``limits.max_detached_streams``). ``on_change`` feeds
    the gauges (``ResumeMetrics.budget_changed``). Nothing connects until first use."""
    limits = config.limits
    budget = Budget(limits.max_resume_buffer_bytes, limits.max_detached_streams, on_change)
    kinds = {r.resume.store for r in config.routes if r.resume.enabled}
    stores: dict[str, ResumeStore] = {}
    if "memory" in kinds:
        stores["memory"] = MemoryStore(budget)
    if "redis" in kinds:
        stores["redis"] = RedisStore(budget, limits.redis_url)
    return stores


__all__ = [
    "STORES",
    "Budget",
    "MemoryStore",
    "Recorder",
    "RedisStore",
    "Replay",
    "ResumeStore",
    "build_stores",
    "parse_last_event_id",
]
