"""SIGTERM's drain (``gateway/runner.py``: :func:`drain_and_stop`), without a process."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from gateway.runner import drain_and_stop


def state_with_drains(*drains: asyncio.Task[None]) -> Any:
    return SimpleNamespace(draining=False, sessions=set(), drain_tasks=set(drains))


async def test_a_drain_still_reading_at_the_end_of_the_grace_is_cancelled_and_settled() -> None:
    """Its settlement (a budget's real usage) runs before drain_and_stop returns, that is before
    the app closes the limits backend; it used to run after, against a closed backend."""
    settled: list[str] = []

    async def drain() -> None:
        try:
            await asyncio.sleep(3600)  # an upstream still streaming
        finally:
            settled.append("settled")

    task = asyncio.ensure_future(drain())
    await asyncio.sleep(0)
    state = state_with_drains(task)
    await asyncio.wait_for(drain_and_stop(state, grace=0.1), 5)
    assert state.draining and task.cancelled()
    assert settled == ["settled"]


async def test_a_drain_that_ends_within_the_grace_is_waited_for() -> None:
    async def drain() -> None:
        await asyncio.sleep(0.2)

    task = asyncio.ensure_future(drain())
    state = state_with_drains(task)
    state.drain_tasks = {task}
    task.add_done_callback(state.drain_tasks.discard)
    await asyncio.wait_for(drain_and_stop(state, grace=5.0), 5)
    assert task.done() and not task.cancelled()
