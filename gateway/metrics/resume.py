"""Resumable streams' series (``gateway/resume/``): resumes by outcome, detached streams,
buffered bytes."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

RESUME_OUTCOMES = (
    "resumed",
    "ended",
    "stopped",
    "not_found",
    "forbidden",
    "gone",
    "invalid_request",
    "unavailable",
)
"""Closed set of answers to ``GET``/``DELETE <route path>/<stream id>``; ``ended`` is the 204
given to a client that already has the terminal event."""


class BudgetView(Protocol):
    """What the gauges read (``gateway.resume.Budget``)."""

    bytes: int
    detached: int


class ResumeMetrics:
    """Resumes by outcome, and the per-process resume buffer (``gateway.resume.Budget``).

    Registered in ``registry`` (the app's :class:`Metrics` registry), pre-created at 0. The
    buffer's gauges are read from the budget (:meth:`refresh`: before each exposition, and
    once a second for the other workers' files), never pushed per write batch.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.resumes = Counter(
            "gateway_resumes",
            "Resume (GET) and stop (DELETE) requests by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.detached = Gauge(
            "gateway_resume_detached_streams",
            "Streams running on after their client left (on_client_abort: detach).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.buffered = Gauge(
            "gateway_resume_buffered_bytes",
            "Bytes of resumable-stream frames held in this process's memory.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._outcomes = {o: self.resumes.labels(o) for o in RESUME_OUTCOMES}
        self._budget: BudgetView | None = None
        self._shown = (0, 0)

    def resumed(self, outcome: str) -> None:
        """Count one answer; an outcome outside :data:`RESUME_OUTCOMES` counts as unavailable."""
        self._outcomes.get(outcome, self._outcomes["unavailable"]).inc()

    def watch(self, budget: BudgetView) -> None:
        """Show ``budget`` in the gauges from now on."""
        self._budget = budget
        self.refresh()

    def refresh(self) -> None:
        """Set the gauges to the budget's figures (a no-op when they did not change)."""
        budget = self._budget
        if budget is None or (budget.bytes, budget.detached) == self._shown:
            return
        self._shown = (budget.bytes, budget.detached)
        self.buffered.set(budget.bytes)
        self.detached.set(budget.detached)
