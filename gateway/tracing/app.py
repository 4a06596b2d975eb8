"""Tracing for an app's lifetime: built once at start-up, shut down off the event loop at cleanup.

::

    build_app ──> install_tracing(app, state)     registers the cleanup context (first call)
    start-up  ──> Tracing built from the config the app started with (one per process)
    reload    ──> install_tracing(app, new_state) the new state shares the running Tracing
    cleanup   ──> await asyncio.to_thread(tracing.shutdown)   flush (bounded), then stop

A stream finds the part with :func:`tracing_of` (``None``: tracing off). It is built in the
serving process at start-up, not in ``build_app``, so its export thread belongs to the process
that serves (worker processes each build their own).

**A change to the ``tracing`` section needs a restart**: a SIGHUP reload keeps the running
tracing part (its exporter, queue and sampler) and logs ``tracing_change_needs_restart`` when
the new file's section differs. Swapping exporters under streams in flight would drop their spans.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.config.model import TracingConfig
from gateway.logs import log_event
from gateway.metrics import TraceMetrics
from gateway.state import STATE, GatewayState
from gateway.tracing import from_config

if TYPE_CHECKING:
    from gateway.tracing.tracer import Tracing

__all__ = ["SHUTDOWN_TIMEOUT", "TracingHolder", "install_tracing", "tracing_of"]

SHUTDOWN_TIMEOUT = 3.0
"""Seconds the cleanup waits for queued spans to be exported before giving up on them."""
_EXTRA = "tracing"


class TracingHolder:
    """The app's tracing part and the config it was built from (``None`` until start-up)."""

    def __init__(self, config: TracingConfig | None) -> None:
        self.config = config
        self.tracing: Tracing | None = None

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        state = app[STATE].current
        if self.config is not None:
            self.tracing = from_config(self.config, TraceMetrics(state.metrics.registry))
        state.extras[_EXTRA] = self.tracing
        yield
        tracing, self.tracing = self.tracing, None
        app[STATE].current.extras[_EXTRA] = None
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown, SHUTDOWN_TIMEOUT)


TRACING: web.AppKey[TracingHolder] = web.AppKey("gateway_tracing", TracingHolder)


def install_tracing(app: web.Application, state: GatewayState) -> None:
    """Give ``state`` the app's tracing part (once per config state: build and every reload).

    The first call (in ``build_app``) registers the start-up/cleanup context; later calls (a
    reload) share the running part and warn when the ``tracing`` section changed.
    """
    holder = app.get(TRACING)
    if holder is None:
        holder = TracingHolder(state.config.tracing)
        app[TRACING] = holder
        app.cleanup_ctx.append(holder.cleanup_ctx)
        return
    state.extras[_EXTRA] = holder.tracing
    if state.config.tracing != holder.config:
        log_event(
            "tracing_change_needs_restart",
            logging.WARNING,
            message="the tracing section changed; it takes effect after a restart",
        )


def tracing_of(state: GatewayState) -> Tracing | None:
    """The running tracing part streams on ``state`` use (``None``: tracing off)."""
    tracing: Tracing | None = state.extras.get(_EXTRA)
    return tracing
