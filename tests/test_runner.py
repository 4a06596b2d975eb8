"""SIGTERM's drain (``gateway/runner.py``: :func:`drain_and_stop`), without a process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from gateway.runner import drain_and_stop, hangup_held, release_hangups
from tests.support.gateway import REPO
from tests.support.system import free_port


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


async def test_the_banner_url_of_a_wildcard_address_answers(capsys: Any) -> None:
    """Listening on ``::`` (IPv6 only: the event loop sets ``IPV6_V6ONLY``), the banner showed
    ``http://127.0.0.1:PORT``, which refused every connection."""
    import aiohttp

    from gateway.runner import print_banner, start_app
    from gateway.server import build_app
    from tests.support.gateway import config_from

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    config = config_from({"routes": [{"name": "demo", "provider": "simulated"}]})
    for host in ("::", "0.0.0.0"):
        runner, port = await start_app(build_app(config), host, 0)
        try:
            print_banner(config, host, port)
            line = capsys.readouterr().out.splitlines()[0]
            url = line.removeprefix("gateway listening on ")
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as reply:
                assert reply.status == 200, line
        finally:
            await runner.cleanup()


@contextlib.contextmanager
def gateway_run(
    tmp_path: Path, *, script: str = "", stdin_closed: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m gateway`` on a free port (or ``script`` run with the same arguments), its
    output in ``out.log``; with ``stdin_closed`` it starts with file descriptor 0 closed.
    Killed at the end if still running."""
    config = tmp_path / "gateway.yaml"
    route = {"name": "demo", "provider": "simulated", "options": {"token_interval": 0}}
    config.write_text(yaml.safe_dump({"routes": [route]}))
    head = ["-c", script] if script else ["-m", "gateway"]
    cmd = [sys.executable, *head, "--config", str(config), "--port", str(free_port())]
    if stdin_closed:
        cmd = ["sh", "-c", 'exec "$@" <&-', "sh", *cmd]
    with open(tmp_path / "out.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.kill()
            proc.wait()


def wait_for_output(proc: subprocess.Popen[bytes], log: Path, needle: str) -> None:
    """Until ``needle`` is in the process's output (fails if it exits first)."""
    deadline = time.monotonic() + 30
    while needle not in (text := log.read_text()):
        assert proc.poll() is None, text
        assert time.monotonic() < deadline, text
        time.sleep(0.05)


def test_a_closed_stdin_does_not_abort_the_process_at_exit(tmp_path: Path) -> None:
    """With file descriptor 0 closed at start, the event loop's first handle took number 0,
    and libuv aborted the process as it closed it (``uv__close: Assertion fd > STDERR_FILENO``):
    a clean SIGTERM ended in SIGABRT (exit 134)."""
    log = tmp_path / "out.log"
    with gateway_run(tmp_path, stdin_closed=True) as proc:
        wait_for_output(proc, log, "gateway listening on")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    assert "Assertion" not in log.read_text()


HANGUP_IN_START_UP = """
import os, signal, sys
import gateway.runner
from gateway.cli import main

build_app = gateway.runner.build_app

def build_app_after_a_hangup(config):  # a reload asked while the process starts
    os.kill(os.getpid(), signal.SIGHUP)
    return build_app(config)

gateway.runner.build_app = build_app_after_a_hangup
sys.exit(main(sys.argv[1:]))
"""


def test_a_sighup_while_starting_is_a_reload_once_serving(tmp_path: Path) -> None:
    """SIGHUP's default action ends the process: a reload asked while it started (after the
    config was read) killed it (exit 129) instead of reloading."""
    log = tmp_path / "out.log"
    with gateway_run(tmp_path, script=HANGUP_IN_START_UP) as proc:
        wait_for_output(proc, log, "gateway listening on")
        wait_for_output(proc, log, '"reloaded"')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_release_hangups_drops_one_from_before_and_holds_those_after() -> None:
    """The ``gateway`` command blocks SIGHUP while it imports: one that came then is dropped
    (the config is read after it), and one that comes later is held for a reload once the
    gateway serves, never its default action."""
    previous = signal.getsignal(signal.SIGHUP)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        signal.raise_signal(signal.SIGHUP)  # pending: blocked
        release_hangups()
        assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert not hangup_held()
        signal.raise_signal(signal.SIGHUP)
        assert hangup_held()
        assert not hangup_held()  # taken once
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGHUP, previous)
