"""Optional request features (auth, limits, budgets) plugged into the stream handler.

``admit(request, state, runtime) -> Admission`` runs before the body is read; it may raise a
:class:`~gateway.errors.GatewayError` (401, 403, 429 ...) and returns a typed
:class:`~gateway.admission.Admission`: the app key's name (the ``app`` label in metrics and logs)
and what the request holds of the limits and of its budget (reserved once the request is valid,
released when the stream ends or the request is refused).

Accounting (contract section 13): every state gets its own :class:`~gateway.pricing.Pricer`
(``state.pricer``, with the config's ``pricing:``), which prices every stream; when an app key
has a ``budget``, the state's :class:`~gateway.limits.budget.Budgets`
(``state.extras["budgets"]``) keep it in the shared limits backend, and ``admit`` adds the key's
:class:`~gateway.limits.budget.BudgetTicket`.

:func:`install_features` runs once per config state (at start-up and on every SIGHUP reload).
Limits backends live as long as the app, not the state: they are created on first need, shared
by every state with the same backend settings (so a reload keeps the counts and the Redis
connection), and closed by one ``cleanup_ctx`` registered on the first call (a started app is
frozen, so a reload cannot add one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from aiohttp import web

from gateway.admission import Admission
from gateway.auth import Authenticator
from gateway.config.model import GatewayConfig, LimitsConfig
from gateway.http import ClientRequest
from gateway.limits import BACKENDS, ErrorReporter, LimitBackend, Limiter, has_limits
from gateway.limits.budget import Budgets, BudgetStore, BudgetTicket
from gateway.metrics import Metrics
from gateway.pricing import Pricer
from gateway.pricing.catalog import Catalog
from gateway.state import GatewayState, RouteRuntime


class Features:
    """App-lifetime holder of the limits backends (one per backend and URL) and of the price
    catalog (loaded once, off the event loop, at start-up; shared by every config's pricer)."""

    def __init__(self) -> None:
        self.backends: dict[tuple[str, str], tuple[LimitBackend, ErrorReporter]] = {}
        self.catalog = Catalog()

    def backend(self, config: LimitsConfig, metrics: Metrics) -> tuple[LimitBackend, ErrorReporter]:
        """The shared backend for ``config`` and its error reporter (created on first use)."""
        ident = (config.backend, config.redis_url if config.backend == "redis" else "")
        found = self.backends.get(ident)
        if found is None:
            report = ErrorReporter(metrics)
            found = self.backends[ident] = (BACKENDS[config.backend](config, report), report)
        return found

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        # Loading the price database takes ~0.2 s: at start-up, not in the first stream.
        await asyncio.to_thread(self.catalog.load)
        yield
        for backend, _ in self.backends.values():
            await backend.close()
        self.backends.clear()


FEATURES: web.AppKey[Features] = web.AppKey("gateway_features", Features)


def _features(app: web.Application) -> Features:
    holder = app.get(FEATURES)
    if holder is None:
        holder = Features()
        if not app.frozen:
            app[FEATURES] = holder
            app.cleanup_ctx.append(holder.cleanup_ctx)
    return holder


def needs_limits(config: GatewayConfig) -> bool:
    keys = config.auth.keys if config.auth is not None else ()
    return any(has_limits(r.limits) for r in config.routes) or any(
        has_limits(k.limits) for k in keys
    )


def needs_budgets(config: GatewayConfig) -> bool:
    keys = config.auth.keys if config.auth is not None else ()
    return any(k.budget is not None for k in keys)


def install_features(app: web.Application, state: GatewayState) -> None:
    """Set ``state.pricer``, and ``state.admit`` as the configuration asks (``None`` without
    ``auth`` and limits)."""
    config = state.config
    holder = _features(app)  # registered on the first call, even if limits come with a reload
    pricer = state.pricer = Pricer(config.pricing, catalog=holder.catalog)
    auth = Authenticator(config.auth) if config.auth is not None else None
    state.auth = auth
    limiter = None
    if needs_limits(config):
        backend, report = holder.backend(config.limits, state.metrics)
        limiter = Limiter(config, backend, report)
        state.extras["limiter"] = limiter
    budgets = None
    if needs_budgets(config):
        backend, report = holder.backend(config.limits, state.metrics)
        store = cast(BudgetStore, backend)  # every registered backend keeps budgets too
        budgets = Budgets(config, store, report, metrics=state.metrics.accounting)
        state.extras["budgets"] = budgets
    if auth is None and limiter is None:
        return
    token_estimate = config.limits.token_estimate

    async def admit(
        request: ClientRequest, state: GatewayState, runtime: RouteRuntime
    ) -> Admission:
        key = None
        admission = Admission()
        if auth is not None:
            key = auth.authenticate(request.headers)
            admission.app = key.name
            auth.authorize(key, runtime.config)
        if limiter is not None:
            ticket = limiter.ticket(key, runtime.config)
            if ticket is not None:
                admission.holds.append(ticket)
        if budgets is not None and key is not None and key.budget is not None:
            admission.holds.append(
                BudgetTicket(budgets, pricer, key, runtime.config, token_estimate)
            )
        return admission

    state.admit = admit
