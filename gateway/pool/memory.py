"""Pool state in this process's memory (``limits.backend: memory``, or Redis failing open).

Each worker process balances on its own counts, rests and EWMA: with ``--workers N`` a
``max_concurrent`` of 100 lets each worker open up to 100 (document it; use Redis to share).
Everything here is synchronous; the ``async`` methods of the interface return at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from gateway.config.pool import Cooldown
from gateway.pool.state import EWMA_ALPHA, Candidate, PoolState, Taken, View


class _Entry:
    __slots__ = ("failures", "probe", "view")

    def __init__(self) -> None:
        self.view = View()
        self.failures: deque[float] = deque()
        self.probe: str | None = None


class MemoryPoolState(PoolState):
    """Per-process pool state. See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[str, _Entry] = {}
        self.resting = 0
        """How many deployments have a rest set (resting or awaiting the probe): 0 = all healthy,
        which lets the pool skip the per-deployment checks."""
        self._leaving: set[str] = set()
        """Deployments a reload removed while they still had open leases: dropped at the last
        release (see :meth:`forget`)."""

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry()
        return entry

    def views(self, names: Sequence[str]) -> list[View]:
        """The live views (no copy): the fast path of :meth:`snapshot`."""
        entries = self._entries
        try:
            return [entries[n].view for n in names]
        except KeyError:
            return [self._entry(n).view for n in names]

    async def snapshot(self, names: Sequence[str], now: float) -> list[View]:
        return self.views(names)

    def take_now(self, candidates: Sequence[Candidate], lease: str, now: float) -> Taken | None:
        """:meth:`take` without the coroutine (the Pool's fast path for this backend)."""
        entries = self._entries
        for c in candidates:
            entry = entries.get(c.name) or self._entry(c.name)
            view = entry.view
            if c.cap and view.active >= c.cap:
                continue
            probe = False
            if view.rest_until:
                if view.probing or (view.rest_until > now and not c.early):
                    continue
                probe = True
                view.probing = True
                entry.probe = lease
            view.active += 1
            return Taken(c.name, probe)
        return None

    async def take(self, candidates: Sequence[Candidate], lease: str, now: float) -> Taken | None:
        return self.take_now(candidates, lease, now)

    def succeeded(self, name: str, lease: str, ttft: float) -> None:
        entry = self._entry(name)
        view = entry.view
        view.ewma = ttft if view.ewma is None else view.ewma + EWMA_ALPHA * (ttft - view.ewma)
        if entry.probe == lease:
            entry.probe = None
            view.probing = False
            view.rest_until = 0.0
            view.rest_reason = ""
            entry.failures.clear()
            self.resting -= 1

    def failed(
        self,
        name: str,
        lease: str,
        now: float,
        cooldown: Cooldown,
        rest: float | None = None,
        reason: str = "failures",
    ) -> None:
        entry = self._entry(name)
        if entry.probe == lease:
            entry.probe = None
            entry.view.probing = False
            if rest is None:
                rest, reason = cooldown.duration, "probe_failed"
        if rest is None:
            failures = entry.failures
            failures.append(now)
            while failures and failures[0] <= now - cooldown.window:
                failures.popleft()
            if len(failures) < cooldown.failures:
                return
            rest, reason = cooldown.duration, "failures"
        self._rest(name, entry, now, rest, reason)

    def _rest(self, name: str, entry: _Entry, now: float, rest: float, reason: str) -> None:
        view = entry.view
        entry.failures.clear()
        until = now + rest
        started = view.rest_until <= now  # healthy, or over and awaiting its probe
        if not view.rest_until:
            self.resting += 1
        if until > view.rest_until:
            view.rest_until = until
            view.rest_reason = reason
        if started:
            self.rested(name, reason)

    def release(self, name: str, lease: str) -> None:
        """Free one slot (the :class:`~gateway.pool.pool.Lease` makes release idempotent)."""
        entry = self._entries.get(name) or self._entry(name)
        if entry.view.active > 0:
            entry.view.active -= 1
        if entry.probe == lease:
            entry.probe = None
            entry.view.probing = False
        if self._leaving and name in self._leaving and not entry.view.active:
            self._leaving.discard(name)
            self._drop(name)

    def forget(self, keep: Sequence[str]) -> None:
        """Drop deployments not in ``keep`` (after a reload); one with open leases is dropped at
        its last :meth:`release`. Until then its rest would keep the pool off its calm path."""
        self._leaving = {n for n, e in self._entries.items() if n not in keep and e.view.active}
        gone = [n for n in self._entries if n not in keep and n not in self._leaving]
        for name in gone:
            self._drop(name)

    def _drop(self, name: str) -> None:
        if self._entries.pop(name).view.rest_until:
            self.resting -= 1
