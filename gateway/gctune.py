"""The garbage collector, tuned for a server whose long-lived objects are made at start-up.

A stream allocates a few hundred container objects (request, response, futures, events) that
reference counting frees; the cyclic collector still runs every :data:`GEN0_THRESHOLD`
allocations and, every few of those runs, walks every object the process holds (modules,
config, adapters: tens of thousands). Profiled on 1-token streams, that walk was about a tenth
of the gateway's CPU. :func:`tune` moves everything alive at start-up out of the collector's
reach (``gc.freeze``) and collects the young generation less often; cycles are still
collected (asyncio's exception tracebacks make some), just in larger batches.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 20_000
"""Allocations between young-generation collections (CPython's default: 700)."""
OLDER_THRESHOLDS = (20, 20)
"""Young collections per middle one, middle ones per full one (default 10, 10)."""


def tune() -> None:
    """Freeze what start-up made and raise the thresholds (call once the app is built)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *OLDER_THRESHOLDS)
