"""The limits backend interface: what the limiter asks of a counter store.

A *scope* is one set of limits applied to one bounded name: ``app:<key name>`` (the limits of an
app key, over all its routes) or ``route:<route name>`` (the limits of a route, over all apps).
One request checks every scope it falls in, atomically: all limits pass and are all counted, or
none is counted and the request is refused.

Backends: ``memory.py`` (one process) and ``redis_backend.py`` (shared by replicas). Both use the
sliding-window math of ``window.py``. A backend raises :class:`BackendError` (and only that) when
its store cannot be reached; the limiter decides whether to fail open or closed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.model import RouteLimits
from gateway.limits.window import window_index
from gateway.values import value


class BackendError(Exception):
    """The backend's store failed (unreachable, timed out). Never reaches a client as such."""


@dataclass(frozen=True, slots=True)
class Scope:
    """One set of limits on one name (``app:<name>`` or ``route:<name>``)."""

    name: str
    limits: RouteLimits


@value
class Denied:
    """A refusal: which limit of which scope, and seconds until it would admit the request."""

    scope: str
    limit: str
    retry_after: float


@value
class Grant:
    """What an admitted request holds until :meth:`LimitBackend.release`.

    ``tokens`` were reserved in window number ``window``; ``lease`` names the concurrency
    slot (each scope with a ``concurrent_streams`` limit holds one).
    """

    scopes: tuple[Scope, ...]
    tokens: int
    window: int
    lease: str


class LimitBackend(ABC):
    """A counter store. ``now`` is seconds since the epoch, passed in so tests control time."""

    @abstractmethod
    async def acquire(
        self, scopes: Sequence[Scope], tokens: int, now: float, lease: str
    ) -> Grant | Denied:
        """Check every limit of every scope; if all admit, count the request and hold a slot.

        ``tokens`` is the reservation for tokens_per_minute (already at most each scope's
        limit). Returns a :class:`Grant`, or the :class:`Denied` that waits longest. Raises
        :class:`BackendError` when the store is unreachable (nothing is then counted).
        """

    @abstractmethod
    def release(self, grant: Grant, tokens_used: int | None, now: float) -> None:
        """Free the grant's slots and reconcile its reservation with ``tokens_used``.

        ``None`` keeps the reservation as the charge (usage unknown). Never raises and never
        blocks: a backend that needs I/O does it in the background and reports failures itself.
        """

    def abandon(self, scopes: Sequence[Scope], lease: str, now: float) -> None:
        """Free slot ``lease`` of an :meth:`acquire` the limiter gave up on (it raised
        :class:`BackendError` or was cancelled), in case the store ran it anyway: a stalled
        store runs the script it was sent once it wakes, and a cancelled call may have been
        sent. Never raises and never blocks; freeing a lease that was never taken does nothing.

        By default a :meth:`release` of ``lease`` with nothing to reconcile (counts stay as
        they are), right for a store that keys slots by lease. A backend whose acquire cannot
        be left half-done (in-process, with no ``await`` inside) overrides it with nothing.
        """
        self.release(Grant(tuple(scopes), 0, window_index(now), lease), None, now)

    def cancel(self, grant: Grant, now: float) -> None:
        """Undo an :meth:`acquire` whose request was refused after all (by a later hold, a
        budget): free its slots, give back its tokens and, where the backend can, un-count the
        request. By default a release with nothing used (the request stays counted)."""
        self.release(grant, 0, now)

    async def flush(self) -> None:
        """Wait for background work started by :meth:`release` (tests, shutdown)."""
        return None  # nothing runs in the background by default

    async def close(self) -> None:
        """Release resources (connections, background tasks); the backend is not used after."""
        return None  # nothing to release by default
