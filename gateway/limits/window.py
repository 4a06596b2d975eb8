"""Sliding-window counter math, shared by every limits backend (pure: no I/O, no clock).

A "per minute" limit counts in fixed 60 s windows, but judges a request by the *sliding* estimate
``prev * (W - elapsed) / W + cur``: the previous window's count, weighted by how much of it still
overlaps the last 60 s, plus the current window's count. This is the usual sliding-window
counter: two integers per limit and O(1) per check; exact when traffic within the previous
window was even, and it refuses the burst at a window boundary that a plain fixed window would
let through (up to twice the limit within a few seconds).

The Redis backend's Lua script implements exactly these formulas (``redis_backend.py``); the
behavioural test suite runs the same cases against both backends.
"""

from __future__ import annotations

import math

WINDOW = 60.0
"""Seconds per window: the "minute" of requests_per_minute and tokens_per_minute."""


def window_index(now: float) -> int:
    """The number of the window that contains ``now`` (seconds since the epoch)."""
    return int(now // WINDOW)


def elapsed_in_window(now: float) -> float:
    """Seconds since the current window began."""
    return now - window_index(now) * WINDOW


def admits(prev: float, cur: float, elapsed: float, cost: float, limit: float) -> bool:
    """Whether ``cost`` more fits under ``limit`` given the sliding estimate."""
    return prev * (WINDOW - elapsed) / WINDOW + cur + cost <= limit


def retry_after(prev: float, cur: float, elapsed: float, cost: float, limit: float) -> float:
    """Seconds until ``cost`` would fit, assuming no other traffic (``cost <= limit``).

    Either the previous window's weight decays enough within the current window, or, failing
    that, the current window becomes the previous one and decays in turn.
    """
    remaining = WINDOW - elapsed
    room = limit - cur - cost
    if room >= 0 and prev > 0:
        wait = remaining - WINDOW * room / prev
        if wait < remaining:
            return max(wait, 0.0)
    room_next = limit - cost
    later = 0.0 if cur <= room_next else WINDOW - WINDOW * room_next / cur
    return remaining + later


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` value: whole seconds, at least 1 (a client retrying at 0 would spin)."""
    return str(max(1, math.ceil(seconds - 1e-9)))
