"""Multi-process mode (``gateway --workers N``): workers write their values to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` aggregates them (prometheus_client multiprocess)."""

from __future__ import annotations

import os

from prometheus_client import multiprocess


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def mark_process_dead(pid: int, directory: str) -> None:
    """Multi-process mode: drop a dead worker's live gauges (``livesum``) from the aggregate."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
