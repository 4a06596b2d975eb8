"""``gateway --workers N`` as a real process group (gateway/workers.py).

Streams go through both workers (the kernel spreads connections over the SO_REUSEPORT sockets;
which worker served a stream is read from the ``worker`` field of its log line), then every
scrape, whichever worker answers it, must show the same totals: no saw-tooth. Also: stale
metric files of a previous run are wiped, SIGHUP reaches every worker, SIGTERM exits 0, a lost
worker stops the group with a non-zero code, and workers do not outlive a killed parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.client import collect
from tests.support.gateway import REPO, GatewayProcess

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}
WORKERS = 2
LANES = 16  # keep-alive connections; P(all on one worker) = 2 * 2**-16
STREAMS_PER_LANE = 2


def demo_route(name: str = "demo") -> dict[str, Any]:
    options = {"text": "one two three", "reasoning": False, "first_token_delay": 0}
    return {"name": name, "provider": "simulated", "options": {**options, "token_interval": 0}}


def write_config(path: Path, *routes: str) -> None:
    doc = {"server": {"shutdown_timeout": "2s"}, "routes": [demo_route(r) for r in routes]}
    path.write_text(yaml.safe_dump(doc))


def log_lines(proc: GatewayProcess) -> list[dict[str, Any]]:
    lines = []
    for line in proc.log().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def worker_pids(proc: GatewayProcess) -> list[int]:
    started = [e for e in log_lines(proc) if e["event"] == "workers_started"]
    assert len(started) == 1
    return list(started[0]["pids"])


def wait_until(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


@contextlib.contextmanager
def group(
    tmp_path: Path, env: dict[str, str], name: str = "gw", *args: str
) -> Iterator[GatewayProcess]:
    """A ``--workers 2`` process group (more command-line ``args`` after it), ready when every
    worker listens; stopped at the end."""
    config = tmp_path / f"{name}.yaml"
    if not config.exists():
        write_config(config, "demo")
    proc = GatewayProcess(config, None, "--workers", str(WORKERS), *args, env=env)
    try:
        wait_until(
            lambda: (
                proc.proc.poll() is not None or proc.log().count("gateway listening on") == WORKERS
            ),
            what="all workers listening",
        )
        assert proc.proc.poll() is None, proc.log()
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def served_by(proc: GatewayProcess) -> dict[str, int]:
    """Request id -> PID of the worker that served it, from the stream log lines."""
    return {e["id"]: e["worker"] for e in log_lines(proc) if e["event"] == "stream"}


def completed_on(text: str, route: str = "demo") -> float:
    for line in text.splitlines():
        head = line.split(" ", 1)[0]
        wanted = (f'route="{route}"', 'outcome="completed"')
        if head.startswith("gateway_requests_total{") and all(w in head for w in wanted):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("gateway_requests_total{outcome=completed} missing")


def sample(text: str, prefix: str) -> float:
    values = [float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(prefix)]
    assert len(values) == 1, (prefix, values)
    return values[0]


async def run_lanes(gw: GatewayProcess, route: str = "demo") -> list[tuple[list[str], str]]:
    """LANES keep-alive connections: each serves STREAMS_PER_LANE streams; once every stream is
    logged as finished (so counted), each lane scrapes ``/metrics`` on its connection.

    Returns per lane (request ids, /metrics text). One connection per lane (checked), so the
    scrape was answered by the worker that served that lane's streams.
    """
    done_before = len(served_by(gw))
    async with contextlib.AsyncExitStack() as stack, asyncio.timeout(30):
        created = [0] * LANES
        sessions = []
        for n in range(LANES):

            async def on_create(*_: Any, n: int = n) -> None:
                created[n] += 1

            trace = aiohttp.TraceConfig()
            trace.on_connection_create_end.append(on_create)
            connector = aiohttp.TCPConnector(limit=1)
            session = aiohttp.ClientSession(connector=connector, trace_configs=[trace])
            sessions.append(await stack.enter_async_context(session))

        async def streams(s: aiohttp.ClientSession) -> list[str]:
            ids = []
            for _ in range(STREAMS_PER_LANE):
                # Read to EOF (not just to `end`) so the connection goes back to the pool.
                async with s.post(f"{gw.url}/v1/stream/{route}", json=HELLO) as r:
                    body = await r.read()
                assert body.count(b"event: end") == 1, body
                ids.append(r.headers["X-Request-Id"])
            return ids

        async def scrape(s: aiohttp.ClientSession) -> str:
            async with s.get(f"{gw.url}/metrics") as r:
                return await r.text()

        ids = await asyncio.gather(*(streams(s) for s in sessions))
        total = done_before + LANES * STREAMS_PER_LANE
        wait_until(lambda: len(served_by(gw)) == total, 5, "every stream logged")
        texts = await asyncio.gather(*(scrape(s) for s in sessions))
    assert created == [1] * LANES, "each lane's requests must share one connection"
    return list(zip(ids, texts, strict=True))


async def fresh_scrapes(url: str, n: int = 10) -> list[str]:
    texts = []
    for _ in range(n):
        async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
            texts.append(await r.text())
    return texts


async def test_streams_through_both_workers_and_every_scrape_sees_all_of_them(
    tmp_path: Path,
) -> None:
    metrics_dir = tmp_path / "prom"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    # A previous run leaves its values behind in the operator's directory ...
    with group(tmp_path, env, "previous") as previous:
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                await collect(s, f"{previous.url}/v1/stream/demo", HELLO)
    assert previous.proc.returncode == 0
    assert glob.glob(f"{metrics_dir}/*.db")

    # ... which the next run must not count.
    with group(tmp_path, env) as gw:
        lanes = await run_lanes(gw)
        total = LANES * STREAMS_PER_LANE
        owner = served_by(gw)
        pids = set(worker_pids(gw))
        assert set(owner.values()) == pids, "both workers must have served streams"
        scraped_by = set()
        for ids, text in lanes:
            assert {owner[i] for i in ids} <= pids
            scraped_by.add(owner[ids[0]])
            assert completed_on(text) == total
        assert scraped_by == pids, "scrapes must have been answered by both workers"
        for text in await fresh_scrapes(gw.url):
            assert completed_on(text) == total
            assert sample(text, 'gateway_active_streams{route="demo"}') == 0
            assert (
                sample(text, 'gateway_stream_duration_seconds_count{outcome="completed"') == total
            )

        # SIGHUP reaches every worker: a new route works on every connection.
        write_config(tmp_path / "gw.yaml", "demo", "added")
        gw.signal(signal.SIGHUP)
        wait_until(
            lambda: sum(e["event"] == "reloaded" for e in log_lines(gw)) == WORKERS,
            what="every worker reloaded",
        )
        lanes = await run_lanes(gw, "added")
        assert {served_by(gw)[ids[0]] for ids, _ in lanes} == pids

        gw.signal(signal.SIGTERM)
        assert gw.proc.wait(10) == 0
    # The live gauge files of exited workers are gone (active streams count live workers only).
    assert not glob.glob(f"{metrics_dir}/gauge_live*.db")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_lost_worker_stops_the_group_with_its_exit_code(tmp_path: Path) -> None:
    # No directory configured: the parent makes its own (under TMPDIR) and removes it.
    env = {"PROMETHEUS_MULTIPROC_DIR": "", "TMPDIR": str(tmp_path)}
    with group(tmp_path, env) as gw:
        owned = glob.glob(f"{tmp_path}/gateway-metrics-*")
        assert len(owned) == 1
        victim, other = worker_pids(gw)
        # The workers write their values there (multiprocess mode), one file set per worker.
        assert {f"counter_{victim}.db", f"counter_{other}.db"} <= set(os.listdir(owned[0]))
        os.kill(victim, signal.SIGKILL)
        assert gw.proc.wait(10) == 128 + signal.SIGKILL
        wait_until(lambda: not alive(other), 5, "the other worker exited")
        lost = [e for e in log_lines(gw) if e["event"] == "worker_lost"]
        assert [e["worker"] for e in lost] == [victim]
    assert not os.path.exists(owned[0])


def test_workers_do_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    with group(tmp_path, env) as gw:
        pids = worker_pids(gw)
        gw.proc.kill()
        gw.proc.wait(5)
        wait_until(lambda: not any(alive(p) for p in pids), 10, "orphaned workers exited")


def test_workers_log_at_the_given_level(tmp_path: Path) -> None:
    # The workers set their logging up themselves (spawned interpreters): they logged at info
    # whatever --log-level said (their draining and stopped lines, every stream's line).
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    with group(tmp_path, env, "quiet", "--log-level", "warning") as gw:
        pass
    lines = [line for line in gw.log_path.read_text().splitlines() if line.startswith("{")]
    assert lines == [] or all(json.loads(line)["level"] != "info" for line in lines), lines


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    write_config(config, "demo")
    cmd = ["--config", str(config), "--port", "0", "--workers", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *cmd], capture_output=True, timeout=30, cwd=REPO
    )
    assert result.returncode != 0
    assert b"--workers needs a fixed --port" in result.stderr


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0])
def test_sigterm_during_start_up_exits_0_and_leaves_no_worker(tmp_path: Path, delay: float) -> None:
    """A stop at any moment of the start (spawning, importing, binding) is a clean stop.

    Before the parent has its handlers (still importing), SIGTERM simply ends it: no worker
    exists yet, and systemd counts death by SIGTERM as a clean exit too."""
    config = tmp_path / "gw.yaml"
    write_config(config, "demo")
    proc = GatewayProcess(config, None, "--workers", str(WORKERS))
    try:
        time.sleep(delay)
        proc.signal(signal.SIGTERM)
        code = proc.proc.wait(15)
        started = [e for e in log_lines(proc) if e["event"] == "workers_started"]
        assert code == 0 or (code == -signal.SIGTERM and not started), proc.log()
        for pid in started[0]["pids"] if started else []:
            wait_until(lambda pid=pid: not alive(pid), 5, f"worker {pid} exited")
    finally:
        proc.stop()


def start_group(tmp_path: Path) -> GatewayProcess:
    """A ``--workers 2`` group, returned as soon as the parent has started its workers: they
    are still importing."""
    config = tmp_path / "gw.yaml"
    write_config(config, "demo")
    proc = GatewayProcess(config, None, "--workers", str(WORKERS))
    wait_until(
        lambda: proc.proc.poll() is not None or "workers_started" in proc.log(),
        what="workers started",
    )
    return proc


def test_ctrl_c_while_the_workers_start_is_a_clean_stop(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group. A worker still importing took
    SIGINT's default action there: a KeyboardInterrupt traceback (a "Fatal Python error" in
    the site import), and the group's exit code was the worker's 1."""
    proc = start_group(tmp_path)
    try:
        for pid in [proc.proc.pid, *worker_pids(proc)]:  # as the terminal: every process
            os.kill(pid, signal.SIGINT)
        assert proc.proc.wait(30) == 0, proc.log()
        log = proc.log()
        assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
        for pid in worker_pids(proc):
            wait_until(lambda pid=pid: not alive(pid), 5, f"worker {pid} exited")
    finally:
        proc.stop()


def wait_every_worker_reloaded(proc: GatewayProcess) -> None:
    """Until each worker has logged ``reloaded``; the group must still run."""
    wait_until(
        lambda: (
            proc.proc.poll() is not None
            or sum(e["event"] == "reloaded" for e in log_lines(proc)) == WORKERS
        ),
        what="every worker reloaded",
    )
    assert proc.proc.poll() is None, proc.log()


def test_sighup_while_the_workers_start_reloads_them_once_they_serve(tmp_path: Path) -> None:
    """A reload asked as the group starts (``systemctl reload`` right after a start) used to
    kill each worker still importing (SIGHUP's default action), and so the whole group (129)."""
    proc = start_group(tmp_path)
    try:
        write_config(tmp_path / "gw.yaml", "demo", "added")
        proc.signal(signal.SIGHUP)
        wait_every_worker_reloaded(proc)
        proc.wait_ready()
        for _ in range(LANES):  # fresh connections: both workers answer some
            with urllib.request.urlopen(stream_request(proc.url, "added"), timeout=10) as r:
                assert b"event: end" in r.read()
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0, proc.log()
    finally:
        proc.stop()


HANGUP_BEFORE_THE_WORKERS = """
import os, signal, sys
import gateway.workers
from gateway.command import main

check_port_free = gateway.workers.check_port_free

def check_after_a_hangup(host, port):  # a reload asked after the config was read
    os.kill(os.getpid(), signal.SIGHUP)
    check_port_free(host, port)

gateway.workers.check_port_free = check_after_a_hangup
sys.exit(main())
"""


def test_a_sighup_before_the_workers_start_reloads_each_of_them(tmp_path: Path) -> None:
    """The parent took SIGHUP's default action until its supervisor set its handlers (exit
    129, no worker started); the workers, started with the config read before the hangup,
    must reload it."""
    config = tmp_path / "gw.yaml"
    write_config(config, "demo")
    proc = GatewayProcess(config, None, "--workers", str(WORKERS), script=HANGUP_BEFORE_THE_WORKERS)
    try:
        wait_every_worker_reloaded(proc)
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0, proc.log()
    finally:
        proc.stop()


def test_a_port_a_running_group_serves_is_refused_to_a_second_group(tmp_path: Path) -> None:
    """SO_REUSEPORT lets sockets of one user share a port: a second group started on a
    running group's port used to start and take part of its connections, with its own config
    and metrics, instead of failing as a single process does."""
    first = tmp_path / "first"
    first.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    with group(first, env) as running:
        config = tmp_path / "second.yaml"
        write_config(config, "other")
        cmd = ["--config", str(config), "--port", str(running.port), "--workers", "2"]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", *cmd], capture_output=True, timeout=60, cwd=REPO
        )
        assert result.returncode == 1, result.stderr
        message = f"error: cannot listen on 127.0.0.1:{running.port}: Address already in use"
        assert result.stderr.decode().strip() == message
        assert b"workers_started" not in result.stdout + result.stderr
        assert running.proc.poll() is None
        with urllib.request.urlopen(stream_request(running.url, "demo"), timeout=10) as r:
            assert b"event: end" in r.read()


def stream_request(url: str, route: str) -> urllib.request.Request:
    return urllib.request.Request(
        f"{url}/v1/stream/{route}",
        data=json.dumps(HELLO).encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
    )


def test_workers_do_not_outlive_a_parent_killed_while_they_start(tmp_path: Path) -> None:
    """Each worker watched the parent it found at its start (``getppid``): killed while the
    workers imported, the parent was already PID 1 to them, and they served on, unsupervised,
    for good."""
    proc = start_group(tmp_path)
    pids: list[int] = []
    try:
        pids = worker_pids(proc)
        proc.proc.kill()
        proc.proc.wait(5)
        wait_until(lambda: not any(alive(p) for p in pids), 30, "orphaned workers exited")
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.stop()
