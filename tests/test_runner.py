"""SIGTERM's drain (``gateway/runner.py``: :func:`drain_and_stop`), without a process."""

from __future__ import annotations

import asyncio
from pathlib import Path
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


async def test_a_drain_started_in_the_same_turn_as_the_cancel_still_settles() -> None:
    """A drain task not yet started when the grace ends: cancelled at once, its coroutine never
    ran, so its ``finally`` (close the upstream, settle the budget) never did either."""
    settled: list[str] = []

    async def drain() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            settled.append("settled")

    task = asyncio.ensure_future(drain())  # created, not started: no await before the drain
    state = state_with_drains(task)
    await drain_and_stop(state, grace=0.0)
    assert task.done()
    assert settled == ["settled"]


class _Stream:
    """A stream that ends (leaves ``sessions``) when told to shut down."""

    def __init__(self, sessions: set[Any]) -> None:
        self.sessions = sessions
        self.told = 0

    def shutdown(self) -> None:
        self.told += 1
        self.sessions.discard(self)


class _Placeholder:
    """A request past admission, not yet a session (``gateway.stream.serve.Starting``): told to
    shut down it does nothing; a moment later its session takes its place."""

    def __init__(self, sessions: set[Any]) -> None:
        self.sessions = sessions
        self.session = _Stream(sessions)

    def shutdown(self) -> None:
        asyncio.get_running_loop().call_later(0.02, self.become_session)

    def become_session(self) -> None:
        self.sessions.discard(self)
        self.sessions.add(self.session)


async def test_a_session_that_starts_as_the_grace_ends_is_ended_too() -> None:
    """It used to be waited for (5 s) and then cut by the runner's cleanup without its
    ``shutdown`` event."""
    state = state_with_drains()
    placeholder = _Placeholder(state.sessions)
    state.sessions.add(placeholder)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(drain_and_stop(state, grace=0.0), 10)
    assert placeholder.session.told >= 1
    assert not state.sessions
    assert loop.time() - t0 < 2.0


def test_the_banner_shows_an_ipv6_address_in_brackets(capsys: Any) -> None:
    """``http://::1:8080/`` is not a URL a browser or curl takes; ``http://[::1]:8080/`` is."""
    from gateway.config.parse import load_config_file
    from gateway.runner import print_banner

    config = load_config_file(Path(__file__).resolve().parents[1] / "config.yaml", env={})
    print_banner(config, "::1", 8080)
    print_banner(config, "127.0.0.1", 8081)
    out = capsys.readouterr().out
    assert "gateway listening on http://[::1]:8080" in out
    assert "curl -N http://[::1]:8080/" in out
    assert "gateway listening on http://127.0.0.1:8081" in out
