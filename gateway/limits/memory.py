"""In-process limits backend (the default): exact, instant, and private to one process.

Also the store of spending budgets (``budget.py``), with the same atomicity.

Every check runs without an ``await`` in between, so on one event loop it is atomic. With
several replicas or ``--workers N`` each process has its own budget: use the Redis backend to
share one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.limits import window as w
from gateway.limits.base import Denied, Grant, LimitBackend, Scope


@dataclass(slots=True)
class _Window:
    """The counts of one limit: the current window (number ``index``) and the one before."""

    index: int = 0
    cur: int = 0
    prev: int = 0

    def roll(self, index: int) -> None:
        if index == self.index:
            return
        self.prev = self.cur if index == self.index + 1 else 0
        self.cur = 0
        self.index = index

    def check(self, elapsed: float, cost: int, limit: int) -> float | None:
        """``None`` when ``cost`` fits, else seconds to wait."""
        if w.admits(self.prev, self.cur, elapsed, cost, limit):
            return None
        return w.retry_after(self.prev, self.cur, elapsed, cost, limit)


class MemoryBackend(LimitBackend):
    """Counters in dicts keyed by scope name (bounded by the configuration)."""

    def __init__(self) -> None:
        self.streams: dict[str, int] = {}
        self.windows: dict[tuple[str, str], _Window] = {}
        self.budgets: dict[str, list[int]] = {}

    def _window(self, scope: str, kind: str, index: int) -> _Window:
        win = self.windows.get((scope, kind))
        if win is None:
            win = self.windows[(scope, kind)] = _Window(index)
        win.roll(index)
        return win

    async def acquire(
        self, scopes: Sequence[Scope], tokens: int, now: float, lease: str
    ) -> Grant | Denied:
        index, elapsed = w.window_index(now), w.elapsed_in_window(now)
        worst: Denied | None = None
        for scope in scopes:
            for denied in self._check(scope, tokens, index, elapsed):
                if worst is None or denied.retry_after > worst.retry_after:
                    worst = denied
        if worst is not None:
            return worst
        for scope in scopes:
            lim = scope.limits
            if lim.concurrent_streams is not None:
                self.streams[scope.name] = self.streams.get(scope.name, 0) + 1
            if lim.requests_per_minute is not None:
                self._window(scope.name, "rpm", index).cur += 1
            if lim.tokens_per_minute is not None:
                self._window(scope.name, "tpm", index).cur += tokens
        return Grant(tuple(scopes), tokens, index, lease)

    def _check(self, scope: Scope, tokens: int, index: int, elapsed: float) -> list[Denied]:
        lim, name, out = scope.limits, scope.name, []
        conc = lim.concurrent_streams
        if conc is not None and self.streams.get(name, 0) >= conc:
            out.append(Denied(name, "concurrent_streams", 1.0))
        if lim.requests_per_minute is not None:
            wait = self._window(name, "rpm", index).check(elapsed, 1, lim.requests_per_minute)
            if wait is not None:
                out.append(Denied(name, "requests_per_minute", wait))
        if lim.tokens_per_minute is not None:
            wait = self._window(name, "tpm", index).check(elapsed, tokens, lim.tokens_per_minute)
            if wait is not None:
                out.append(Denied(name, "tokens_per_minute", wait))
        return out

    def release(self, grant: Grant, tokens_used: int | None, now: float) -> None:
        index = w.window_index(now)
        for scope in grant.scopes:
            lim = scope.limits
            if lim.concurrent_streams is not None:
                self.streams[scope.name] = max(0, self.streams.get(scope.name, 0) - 1)
            if lim.tokens_per_minute is None or tokens_used is None:
                continue
            win = self._window(scope.name, "tpm", index)
            delta = tokens_used - grant.tokens
            if delta > 0:
                win.cur += delta  # the extra is charged when it is known: now
            elif grant.window == index:
                win.cur = max(0, win.cur + delta)
            elif grant.window == index - 1:
                win.prev = max(0, win.prev + delta)
            # a refund for a window that no longer counts is dropped

    def abandon(self, scopes: Sequence[Scope], lease: str, now: float) -> None:
        """Nothing to free: :meth:`acquire` never suspends, so it either counted and returned
        its grant or counted nothing (and slots here are counts, not leases)."""
        return None

    def cancel(self, grant: Grant, now: float) -> None:
        self.release(grant, 0, now)  # slots freed, tokens given back
        index = w.window_index(now)
        for scope in grant.scopes:
            if scope.limits.requests_per_minute is None:
                continue
            win = self._window(scope.name, "rpm", index)
            if grant.window == index:
                win.cur = max(0, win.cur - 1)
            elif grant.window == index - 1:
                win.prev = max(0, win.prev - 1)

    # Budgets (``budget.py``): per scope, the counters of its current period only; a settlement
    # for an older period drops its refund (that period no longer admits anything).

    def _budget(self, scope: str, index: int) -> list[int]:
        """[period index, spent, reserved] of ``scope``, rolled to period ``index``."""
        entry = self.budgets.get(scope)
        if entry is None or entry[0] < index:
            entry = self.budgets[scope] = [index, 0, 0]
        return entry

    async def budget_reserve(
        self, scope: str, index: int, limit: int, amount: int, ttl: int, hold: str
    ) -> tuple[bool, int]:
        entry = self._budget(scope, index)
        used = entry[1] + entry[2]
        if used >= limit or used + amount > limit:
            return False, used
        entry[2] += amount
        return True, used + amount

    def budget_settle(
        self,
        scope: str,
        hold_index: int,
        reserved: int,
        index: int,
        real: int,
        ttl: int,
        on_used: Callable[[int], None] | None = None,
        hold: str = "",
    ) -> None:
        # No reservation here fails after being made, so none is settled twice: no ids kept.
        entry = self._budget(scope, index)
        if hold_index == entry[0]:
            entry[2] = max(0, entry[2] - reserved)
        entry[1] += real
        if on_used is not None:
            on_used(entry[1] + entry[2])

    async def budget_used(self, scope: str, index: int) -> int:
        entry = self._budget(scope, index)
        return entry[1] + entry[2]
