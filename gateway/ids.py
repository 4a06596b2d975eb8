"""Request ids: also the stream ids of resumable streams (contract section 12), so unguessable.

Ids are drawn from the operating system's random source :data:`BATCH` at a time: one
``getrandom`` call per 256 requests instead of one each (a system call and two Python calls per
request: 0.13 % of a 1-token request's instructions, and the system call; docs/performance.md).
The unused ids stay in this process's memory, which holds the streams' contents anyway. A
forked process drops the ones it inherited (``os.register_at_fork``), so no two processes hand
out the same id.
"""

from __future__ import annotations

import os

BATCH = 256
"""Ids drawn per read of the random source."""

_pending: list[str] = []


def new_request_id() -> str:
    """A fresh id: 128 random bits as 32 hex digits (the ``X-Request-Id``, the ``created`` id,
    and a resumable stream's id)."""
    if not _pending:
        _draw()
    return _pending.pop()


def _draw() -> None:
    digits = os.urandom(16 * BATCH).hex()
    _pending.extend([digits[i : i + 32] for i in range(0, 32 * BATCH, 32)])


os.register_at_fork(after_in_child=_pending.clear)
