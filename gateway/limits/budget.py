"""Spending budgets per app key (``auth.keys[].budget: {usd, per}``, contract section 13).

Periods are fixed windows aligned to the Unix epoch: period number ``n = floor(now / P)`` runs
from ``n * P`` to ``(n + 1) * P`` (``P`` = 3600 s for ``1h``, 86 400 s for ``1d``, ...). So ``1d``
restarts at 00:00 UTC, ``7d`` on Thursdays at 00:00 UTC (the epoch was a Thursday) and ``30d``
every 30 days from the epoch, not on calendar months. A refusal's ``Retry-After`` is the time
left until the period ends, when the whole budget is available again.

Per app and period the backend keeps two integers, in nano-dollars (1e-9 USD, exact in Redis):
``spent`` (settled costs) and ``reserved`` (worst cases of streams still running).

* :meth:`Budgets.reserve` admits a request when ``spent + reserved + worst_case <= usd`` (and
  ``spent + reserved < usd``, so a request of unknown price is refused once the budget is used
  up), adding the worst case to ``reserved``; otherwise it raises
  :class:`~gateway.errors.BudgetExceeded` (429 ``budget_exceeded``, ``Retry-After``).
* :meth:`Budgets.settle` at the stream's end (also on error and client abort) removes the
  reservation from the period it was made in and adds the real cost to the period current at
  settlement (the cost is known then; a stream crossing midnight charges the new day). A real
  cost of ``None`` (usage never arrived) charges the worst case instead.

Backend failures follow ``limits.on_backend_error`` like the other limits: ``open`` admits the
request unbudgeted, ``closed`` refuses it with 503; both are reported to the limiter's
:class:`~gateway.limits.limiter.ErrorReporter`. A reservation that failed may still have been
made (a stalled Redis runs the script it was sent once it wakes, after the gateway gave up on
it), so each reservation has an id and a failed one is undone by it, at once and again after
:data:`UNDO_AFTER` (undoing one that was never made does nothing). ``memory.py`` and
``redis_backend.py`` implement :class:`BudgetStore` (atomic in Redis through one Lua script per
operation).

The worst case of a request: :func:`worst_case_usd`. A request's part in admission
(:class:`gateway.admission.Hold`): :class:`BudgetTicket`, which reserves the worst case of its
:class:`~gateway.admission.Demand` and settles the ``cost_usd`` of the stream's usage.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.admission import Demand
from gateway.config.model import AppKey, GatewayConfig, RouteConfig
from gateway.errors import BudgetExceeded, Unavailable
from gateway.limits.base import BackendError
from gateway.limits.window import retry_after_header
from gateway.pricing.rates import cost_of

if TYPE_CHECKING:
    from gateway.metrics import AccountingMetrics
    from gateway.pricing import Pricer

NANO = 1_000_000_000
"""Nano-dollars per USD: amounts are stored as integers of 1e-9 USD."""
UNDO_AFTER = (5.0, 60.0)
"""Seconds after a failed reservation at which it is undone again (a store that stalled may
run it after the first undo)."""


def to_nano(usd: float) -> int:
    """USD as whole nano-dollars, rounded up (a reservation never falls short)."""
    return max(0, -int(-usd * NANO // 1))


class BudgetStore(Protocol):
    """The backend operations budgets need (``MemoryBackend``, ``RedisBackend``).

    ``scope`` names one app's budget (``<app>:<per>``), ``index`` a period of it; ``ttl`` is how
    long that period's counters must live (seconds). Amounts are nano-dollars.
    """

    async def budget_reserve(
        self, scope: str, index: int, limit: int, amount: int, ttl: int, hold: str
    ) -> tuple[bool, int]:
        """Atomically: if ``used < limit`` and ``used + amount <= limit`` (used = spent +
        reserved), add ``amount`` to reserved as reservation ``hold`` (an id). Returns
        (admitted, used after). Raises :class:`BackendError` when the store is unreachable."""
        ...

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
        """Remove reservation ``hold`` (of ``reserved``) from period ``hold_index``, if it is
        there, and add ``real`` to ``spent`` of period ``index``; then call ``on_used`` with
        period ``index``'s used amount. Never raises and never blocks (a backend doing I/O does
        it in the background, reporting failures). With ``real`` 0 it undoes a reservation."""
        ...

    async def budget_used(self, scope: str, index: int) -> int:
        """Spent + reserved of one period (0 when unknown); may raise :class:`BackendError`."""
        ...


@dataclass(slots=True)
class Hold:
    """An admitted request's reservation of ``amount`` in period ``index`` (of ``period``
    seconds) of ``app``'s budget of ``limit``, until :meth:`Budgets.settle` (once)."""

    app: str
    scope: str
    period: int
    index: int
    limit: int
    amount: int
    id: str
    settled: bool = False
    kept: bool = False
    """Settled by a drain, not by the end of the request's task."""


class Budgets:
    """Applies the budgets of ``config``'s app keys through ``store``."""

    def __init__(
        self,
        config: GatewayConfig,
        store: BudgetStore,
        report: Callable[[Exception], None],
        clock: Callable[[], float] = time.time,
        metrics: AccountingMetrics | None = None,
    ) -> None:
        self.store = store
        self.report = report
        self.clock = clock
        self.metrics = metrics
        self.fail_open = config.limits.on_backend_error == "open"

    @staticmethod
    def _where(app: AppKey, now: float) -> tuple[str, int, float, int]:
        """(scope, period index, seconds to the period's end, counter ttl)."""
        assert app.budget is not None
        period = app.budget.period
        index = int(now // period)
        left = (index + 1) * period - now
        return f"{app.name}:{app.budget.per}", index, left, int(left) + 60

    async def reserve(self, app: AppKey | None, worst_case_usd: float | None) -> Hold | None:
        """Reserve ``worst_case_usd`` (``None``: price unknown, reserves 0) of ``app``'s budget.

        Returns ``None`` when ``app`` has no budget (or failing open), else a :class:`Hold` to
        settle; if the current task ends without settling it, a done-callback settles it with
        ``None`` (unless the hold is ``kept``: a drain settles it). Raises
        :class:`BudgetExceeded` (with ``Retry-After``), or
        :class:`Unavailable` when the store fails and ``on_backend_error`` is ``closed``.
        """
        if app is None or app.budget is None:
            return None
        now = self.clock()
        scope, index, left, ttl = self._where(app, now)
        limit = to_nano(app.budget.usd)
        amount = to_nano(worst_case_usd or 0.0)
        hold_id = secrets.token_hex(8)
        try:
            admitted, used = await self.store.budget_reserve(
                scope, index, limit, amount, ttl, hold_id
            )
        except asyncio.CancelledError:  # the client left while the store was asked: the
            if amount:  # store may still have made the reservation, which nobody would settle
                self._undo(scope, index, amount, ttl, hold_id)
            raise
        except BackendError as exc:
            self.report(exc)
            if amount:
                self._undo(scope, index, amount, ttl, hold_id)
            if self.fail_open:
                return None
            raise Unavailable("budgets are unavailable", headers={"Retry-After": "1"}) from None
        self._record(app.name, limit, used)
        if not admitted:
            raise BudgetExceeded(
                f"budget of app '{app.name}' is used up for this period",
                headers={"Retry-After": retry_after_header(left)},
            )
        hold = Hold(app.name, scope, app.budget.period, index, limit, amount, hold_id)
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _task: None if hold.kept else self.settle(hold, None))
        return hold

    def settle(self, hold: Hold | None, real_usd: float | None) -> None:
        """Replace ``hold``'s reservation by the real cost (``None``: the reservation stands as
        the charge). Once per hold; ``None`` holds and later calls do nothing. Never raises."""
        if hold is None or hold.settled:
            return
        hold.settled = True
        real = hold.amount if real_usd is None else to_nano(real_usd)
        now = self.clock()
        index = int(now // hold.period)
        ttl = int((index + 1) * hold.period - now) + 60

        def on_used(used: int) -> None:
            self._record(hold.app, hold.limit, used)

        self.store.budget_settle(
            hold.scope, hold.index, hold.amount, index, real, ttl, on_used, hold.id
        )

    def _undo(self, scope: str, index: int, amount: int, ttl: int, hold_id: str) -> None:
        """Undo reservation ``hold_id``, whose reserve failed (see the module docs): now, and
        again after each of :data:`UNDO_AFTER`."""
        settle = self.store.budget_settle
        settle(scope, index, amount, index, 0, ttl, None, hold_id)
        loop = asyncio.get_running_loop()
        for delay in UNDO_AFTER:
            loop.call_later(delay, settle, scope, index, amount, index, 0, ttl, None, hold_id)

    async def remaining(self, app: AppKey) -> float | None:
        """USD ``app`` may still spend this period (reservations count as spent); ``None`` when
        it has no budget. Raises :class:`BackendError` if the store fails."""
        if app.budget is None:
            return None
        scope, index, _, _ = self._where(app, self.clock())
        limit = to_nano(app.budget.usd)
        used = await self.store.budget_used(scope, index)
        self._record(app.name, limit, used)
        return max(0, limit - used) / NANO

    def _record(self, app: str, limit: int, used: int) -> None:
        if self.metrics is not None:
            self.metrics.budget_remaining(app, max(0, limit - used) / NANO)


def worst_case_usd(
    pricer: Pricer,
    route: RouteConfig,
    model: str | None,
    max_tokens: int | None,
    default_max_tokens: int,
    body_bytes: int,
) -> float | None:
    """The most a request on ``route`` may cost, for :meth:`Budgets.reserve`.

    Output: ``max_tokens`` from the request, else ``default_max_tokens``
    (``limits.token_estimate``). Input: ``body_bytes / 4`` tokens
    (:data:`gateway.pricing.CHARS_PER_TOKEN`). ``model`` is the request's model override: the
    primary (each pool deployment) calls it, a fallback its own configured model, as
    :func:`gateway.stream.plan.build_attempts` sends them. Fallbacks may be dearer than the
    primary, so this is the maximum over the route's targets whose price is known; ``None``
    when none is.
    """
    out = max_tokens if max_tokens is not None and max_tokens > 0 else default_max_tokens
    primaries = len(route.pool.deployments) if route.pool else 1
    worst: float | None = None
    for index, target in enumerate(route.targets):
        called = model if model and index < primaries else None
        usd = pricer.worst_case_usd(
            target.provider, called or target.upstream.model, out, body_bytes
        )
        if usd is not None and (worst is None or usd > worst):
            worst = usd
    return worst


class BudgetTicket:
    """An app key's budget in a request's admission (a :class:`gateway.admission.Hold`).

    :meth:`reserve` reserves the worst case of the request's :class:`Demand` on ``route``
    (:func:`worst_case_usd`, ``max_tokens`` else ``token_estimate``); :meth:`release` settles
    the stream's real cost, the ``cost_usd`` of its usage (``None`` without one: the
    reservation is charged).
    """

    __slots__ = ("app", "budgets", "hold", "pricer", "route", "token_estimate")

    def __init__(
        self,
        budgets: Budgets,
        pricer: Pricer,
        app: AppKey,
        route: RouteConfig,
        token_estimate: int,
    ) -> None:
        self.budgets = budgets
        self.pricer = pricer
        self.app = app
        self.route = route
        self.token_estimate = token_estimate
        self.hold: Hold | None = None

    async def reserve(self, demand: Demand) -> None:
        worst = worst_case_usd(
            self.pricer,
            self.route,
            demand.model,
            demand.max_tokens,
            self.token_estimate,
            demand.body_bytes,
        )
        self.hold = await self.budgets.reserve(self.app, worst)

    def keep(self) -> None:
        if self.hold is not None:
            self.hold.kept = True

    def release(self, usage: Mapping[str, Any] | None) -> None:
        self.budgets.settle(self.hold, cost_of(usage))
