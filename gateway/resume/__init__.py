"""Resumable streams (contract section 12): the stores, their bounds, and the GET/DELETE logic.

``store: memory`` is :class:`MemoryStore`, ``store: redis`` is :class:`RedisStore`; every store
of a process shares one :class:`Budget` (``gateway.resume.wiring`` makes them). The endpoint
functions live in ``gateway.resume.endpoints``.
"""

from __future__ import annotations

from gateway.resume.base import (
    Budget,
    Recorder,
    Replay,
    ResumeStore,
    parse_last_event_id,
)
from gateway.resume.memory import MemoryStore
from gateway.resume.redis_store import RedisStore

__all__ = [
    "Budget",
    "MemoryStore",
    "Recorder",
    "RedisStore",
    "Replay",
    "ResumeStore",
    "parse_last_event_id",
]
