"""The pool state interface: what a :class:`~gateway.pool.pool.Pool` asks of its store.

Per deployment the store keeps: the open leases (streams in flight), the recent failures, the
rest (``rest_until``: 0 = healthy; in the future = resting; in the past = the rest is over and the
deployment waits for its one probe), who holds the probe, and the time-to-first-token EWMA.

Two implementations: ``memory.py`` (one process) and ``redis_state.py`` (every worker and replica
that shares one Redis, atomic Lua scripts, leases that expire when a replica dies). One
behavioural suite (``tests/pool/test_state.py``) runs against both.

Reads and the claim of a slot are ``async`` (Redis answers them); the outcome calls
(:meth:`PoolState.succeeded`, :meth:`~PoolState.failed`, :meth:`~PoolState.release`) never block
and never raise: a store that needs I/O does it in the background and reports failures through
its ``on_error`` callback (its leases expire on their own).
"""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gateway.config.pool import Cooldown
from gateway.limits.base import BackendError
from gateway.values import value

EWMA_ALPHA = 0.3
"""Weight of a new time-to-first-token sample in the EWMA (about the last 5 samples matter)."""

__all__ = ["EWMA_ALPHA", "BackendError", "Candidate", "PoolState", "Taken", "View"]


@dataclass(slots=True)
class View:
    """What the strategies read about one deployment (a snapshot; memory hands out live ones)."""

    active: int = 0
    rest_until: float = 0.0
    rest_reason: str = ""
    probing: bool = False
    ewma: float | None = None

    def resting(self, now: float) -> bool:
        """Resting now (the rest has not ended)."""
        return self.rest_until > now

    def awaiting_probe(self, now: float) -> bool:
        """The rest is over and nobody probes yet: the next taker becomes the probe."""
        return 0.0 < self.rest_until <= now and not self.probing


@value
class Candidate:
    """One deployment offered to :meth:`PoolState.take`, in order of preference.

    ``cap`` is ``max_concurrent`` (0: none). ``early``: it may be taken as a probe even though its
    rest has not ended (every deployment is resting; see ``pool.py``).
    """

    name: str
    cap: int = 0
    early: bool = False


class Taken(NamedTuple):
    """The deployment :meth:`PoolState.take` claimed, and whether this lease is its probe."""

    name: str
    probe: bool


class PoolState(ABC):
    """A store of per-deployment state for one route's pool (keyed by deployment name)."""

    def __init__(self) -> None:
        self.on_rest: Callable[[str, str], None] | None = None
        self._ids = itertools.count()
        self._prefix = f"{os.getpid():x}.{os.urandom(4).hex()}."

    def rested(self, name: str, reason: str) -> None:
        if self.on_rest is not None:
            self.on_rest(name, reason)

    def new_lease_id(self) -> str:
        """A lease id unique across processes (cheap: a random prefix and a counter)."""
        return self._prefix + str(next(self._ids))

    @abstractmethod
    async def snapshot(self, names: Sequence[str], now: float) -> list[View]:
        """The current :class:`View` of each deployment in ``names`` (same order).

        Raises :class:`BackendError` when the store is unreachable.
        """

    @abstractmethod
    async def take(self, candidates: Sequence[Candidate], lease: str, now: float) -> Taken | None:
        """Atomically claim a slot on the first candidate that can take one, as lease ``lease``.

        A candidate can when it has fewer than ``cap`` open leases and it is healthy, or its
        rest is over and no probe is in flight (this lease becomes the probe), or it is
        ``early`` and no probe is in flight (also a probe). ``None`` when none can. Raises
        :class:`BackendError` when the store is unreachable (nothing is then claimed).
        """

    @abstractmethod
    def succeeded(self, name: str, lease: str, ttft: float) -> None:
        """The first event came after ``ttft`` seconds: feed the EWMA; a probe ends the rest."""

    @abstractmethod
    def failed(
        self,
        name: str,
        lease: str,
        now: float,
        cooldown: Cooldown,
        rest: float | None = None,
        reason: str = "failures",
    ) -> None:
        """Count a failure (``cooldown.failures`` within ``cooldown.window`` rest the deployment
        for ``cooldown.duration``, reason ``failures``), or with ``rest`` set, rest it for that
        long at once with ``reason`` (a 429's Retry-After). A rest never shortens a longer one
        already running. A failed probe rests it again at once (``cooldown.duration``, reason
        ``probe_failed``, unless ``rest`` is given). A rest that starts (the deployment was not
        resting) is reported to :attr:`on_rest` as ``(name, reason)``, once, by the process that
        started it."""

    @abstractmethod
    def release(self, name: str, lease: str) -> None:
        """Free the lease's slot; a probe that ended without a verdict frees the probe claim.

        Called once per lease (:meth:`gateway.pool.pool.Lease.release` is the idempotent one)."""

    async def flush(self) -> None:
        """Wait for background writes (tests, shutdown)."""
        return None  # nothing runs in the background by default

    async def close(self) -> None:
        """Release connections and background tasks; the state is not used after."""
        return None  # nothing to release by default
