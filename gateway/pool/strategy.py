"""Balance strategies: each orders a pool's eligible deployments, best first. Pure.

A strategy sees the deployments that may be tried now (not yet tried for this client stream,
not resting) with their :class:`~gateway.pool.state.View`, returns them in order of preference,
and is told which one was taken (the first may have filled up meanwhile). State kept here
(rotation cursors) is per process; with Redis the counts and EWMA it reads are shared.

* ``round_robin``: each deployment in turn, in config order: the next choice starts after the
  deployment taken last, so a retry that skipped a failing one does not skip the one after it.
* ``weighted``: smooth weighted round robin (the nginx algorithm): over any run of choices each
  deployment's share is its weight's share, evenly interleaved, without randomness.
* ``least_busy``: fewest open streams; ties go to the higher weight, then in turn.
* ``latency``: lowest time-to-first-token EWMA; deployments never measured first (so each is
  seen); every :data:`EXPLORE_EVERY`-th choice goes to the deployment taken least recently, so a
  slow one that recovered is measured again and wins its traffic back (deterministic, so the
  share of exploration is exact: 5%).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from gateway.config.pool import Deployment
from gateway.pool.state import View

EXPLORE_EVERY = 20
"""Every 20th ``latency`` choice (5%) goes to the deployment taken least recently instead."""

Choice = tuple[Deployment, View]


def _by_load(c: Choice) -> tuple[int, float]:
    return c[1].active, -c[0].weight


def _by_latency(c: Choice) -> tuple[float, float]:
    ewma = c[1].ewma
    return (-1.0 if ewma is None else ewma), -c[0].weight  # never measured: first


class Strategy:
    """Orders candidates; :meth:`taken` tells it which one got the request."""

    name: ClassVar[str] = ""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.turn = 0
        """Choices made (``latency`` explores every :data:`EXPLORE_EVERY`-th)."""
        self.last: str | None = None
        """The deployment taken last: the rotation goes on after it."""
        self._position = {name: i for i, name in enumerate(names)}
        """Each deployment's place in the pool's config order (``names``)."""

    def order(self, choices: Sequence[Choice]) -> list[Choice]:
        raise NotImplementedError

    def taken(self, deployment: Deployment | None) -> None:
        """The request went to ``deployment``, one of the last :meth:`order`'s choices
        (``None``: to none of them, e.g. to a probe)."""
        if deployment is not None:
            self.turn += 1
            self.last = deployment.name

    def carry_from(self, old: Strategy) -> None:
        """Keep the rotation of the strategy this one replaces (config reload)."""
        self.turn = old.turn
        self.last = old.last

    def _rotated(self, choices: Sequence[Choice]) -> list[Choice]:
        """``choices`` (in config order, some left out) from the first one after the deployment
        taken last. By place, not by count: a retry's choices lack the deployment that failed,
        and rotating them by a count skipped the one after it."""
        last = self.last
        position = self._position
        after = -1 if last is None else position.get(last, -1)
        for i, (deployment, _) in enumerate(choices):
            if position.get(deployment.name, -1) > after:
                return [*choices[i:], *choices[:i]] if i else list(choices)
        return list(choices)


class RoundRobin(Strategy):
    name = "round_robin"

    def order(self, choices: Sequence[Choice]) -> list[Choice]:
        return self._rotated(choices)


class Weighted(Strategy):
    name = "weighted"

    def __init__(self, names: Sequence[str] = ()) -> None:
        super().__init__(names)
        self.current: dict[str, float] = {}
        self._last: Sequence[Choice] = ()
        self._total = 0.0

    def order(self, choices: Sequence[Choice]) -> list[Choice]:
        current = self.current
        total = 0.0
        for d, _ in choices:
            current[d.name] = current.get(d.name, 0.0) + d.weight
            total += d.weight
        self._last, self._total = choices, total
        return sorted(choices, key=lambda c: -current[c[0].name])

    def taken(self, deployment: Deployment | None) -> None:
        super().taken(deployment)
        if deployment is not None:  # one of the last order's choices (the pool's rule)
            self.current[deployment.name] -= self._total
        else:  # a probe, or nothing: undo this round so the shares stay exact
            for d, _ in self._last:
                self.current[d.name] -= d.weight
        self._last = ()


class LeastBusy(Strategy):
    name = "least_busy"

    def order(self, choices: Sequence[Choice]) -> list[Choice]:
        return sorted(self._rotated(choices), key=_by_load)


class Latency(Strategy):
    name = "latency"

    def __init__(self, names: Sequence[str] = ()) -> None:
        super().__init__(names)
        self.last_taken: dict[str, int] = {}

    def order(self, choices: Sequence[Choice]) -> list[Choice]:
        ranked = sorted(choices, key=_by_latency)  # stable: exact ties stay in config order
        if len(ranked) > 1 and self.turn % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            last = self.last_taken
            stalest = min(range(1, len(ranked)), key=lambda i: last.get(ranked[i][0].name, -1))
            ranked.insert(0, ranked.pop(stalest))
        return ranked

    def taken(self, deployment: Deployment | None) -> None:
        if deployment is not None:
            self.last_taken[deployment.name] = self.turn
        super().taken(deployment)

    def carry_from(self, old: Strategy) -> None:
        super().carry_from(old)
        if isinstance(old, Latency):
            self.last_taken = dict(old.last_taken)


STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (RoundRobin, Weighted, LeastBusy, Latency)
}
"""``balance.strategy`` -> class (keys: ``gateway.config.pool.STRATEGIES``; a test checks)."""
