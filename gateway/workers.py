"""``gateway --workers N``: N processes serving one port (SO_REUSEPORT), one metrics view.

The parent process does not serve; it supervises::

    parent ── prepares PROMETHEUS_MULTIPROC_DIR (fresh, or wiped) ── installs signal handlers
      ├─ worker 1 ─┐  each binds host:port with SO_REUSEPORT (the kernel spreads connections)
      └─ worker N ─┘  and writes its metric values to files in that directory

* Metrics: every worker's ``/metrics`` aggregates all workers (prometheus_client multiprocess
  mode), so any scrape, whichever worker answers it, sees the same totals; no saw-tooth.
  ``gateway_active_streams`` is a ``livesum`` gauge: the files of a worker that exited are removed
  (``mark_process_dead``), so it counts live workers only.
* Stale values: a directory set by the operator is wiped of ``*.db`` files at start. Values of a
  previous run would otherwise be summed in, and with PIDs reused across container restarts a
  new worker would even continue an old worker's counters. A directory the parent created itself
  is removed at exit.
* Signals: SIGTERM and SIGINT are forwarded to every worker (each drains for
  ``server.shutdown_timeout``, then exits 0); SIGHUP is forwarded (each reloads the config).
  Handlers are installed before the first worker starts, so no signal is lost in between; a
  SIGHUP that came earlier (the parent holds it from the command line on,
  :func:`~gateway.runner.release_hangups`) or while the workers started is forwarded again
  once all have started, since a worker started after it loads the config it replaced.
  A worker is started with the three signals blocked (a blocked signal stays pending across
  exec): one that comes while the new interpreter imports waits for the worker's own handlers,
  rather than taking its default action there (SIGHUP ended the worker, and so the group;
  SIGINT printed a traceback). A stop then exits the starting worker at once, a reload is
  applied once it serves.
* The port: the parent first checks that nothing listens on host:port. SO_REUSEPORT lets
  sockets of the same user share a port, so a second group started on the port of a running
  one would otherwise start and take half of its connections, instead of failing as one
  process does (``error: cannot listen on ...: Address already in use``, exit 1).
* A worker that exits while no stop was asked for (a crash, an OOM kill) stops the whole group:
  the others drain gracefully and the parent exits non-zero, so systemd (``Restart=on-failure``)
  or Kubernetes restarts a clean group. One process per container is the simpler alternative
  (see docs/operations/deploy.md).
* Orphans: each worker watches its parent; if the parent dies (SIGKILL), the worker drains and
  exits by itself instead of serving on unsupervised, also when the parent died while the
  worker was still starting.
* Exit code: 0 when every worker exited 0 after a stop; otherwise the first failing worker's code
  (128 + signal number for a worker killed by a signal, as a shell reports it).
* Logs: in this mode every log line carries ``worker`` (the worker's PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from multiprocessing import resource_tracker
from types import FrameType
from typing import Any

from gateway.config.model import GatewayConfig
from gateway.logs import log_event, setup_logging
from gateway.metrics import mark_process_dead
from gateway.runner import (
    hangup_held,
    hold_reloads,
    install_fast_loop,
    listen_error,
    run_server,
)

PARENT_POLL = 1.0
"""Seconds between a worker's checks that its parent is still alive."""
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""The signals the parent forwards to its workers (blocked while a worker starts)."""


# -- in the worker ---------------------------------------------------------------------------


class _WorkerField(logging.Filter):
    """Adds ``worker: <pid>`` to every JSON log line of this process."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        pid = {"worker": os.getpid()}
        record.fields = {**fields, **pid} if isinstance(fields, dict) else pid
        return True


def _watch_parent(parent: int) -> None:
    """Thread: when the parent (PID ``parent``, as the parent gave it) is gone (this process
    re-parented, possibly already before this thread started), ask this worker to drain and
    exit."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker(
    config: GatewayConfig,
    config_path: str | None,
    host: str,
    port: int,
    log_level: str,
    parent: int,
) -> None:
    """One serving process (the target of a spawned ``multiprocessing.Process``), logging at
    the ``--log-level`` the parent was given; ``parent`` is the parent's PID (not read here
    with ``getppid``: a parent killed while this process imported would be PID 1 by then,
    and the worker would serve on unsupervised)."""
    # Until run_server installs its handlers: a stop exits at once (nothing to drain yet) and
    # a reload is remembered for when it serves, rather than killing the worker. The parent
    # started this process with these signals blocked: those sent meanwhile come now.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    if config_path is not None:
        hold_reloads()
    else:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    setup_logging(log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField())
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    install_fast_loop()
    code = asyncio.run(
        run_server(config, host=host, port=port, config_path=config_path, reuse_port=True)
    )
    raise SystemExit(code)


# -- in the parent ---------------------------------------------------------------------------


def prepare_metrics_dir() -> tuple[str, bool]:
    """The multiprocess metrics directory and whether the parent created it (and removes it).

    Uses ``$PROMETHEUS_MULTIPROC_DIR`` when set (created if missing, stale ``*.db`` files
    removed), else a new temporary directory; either way exported for the workers.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        os.makedirs(configured, exist_ok=True)
        for path in glob.glob(os.path.join(configured, "*.db")):
            os.remove(path)
        return configured, False
    directory = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory, True


def check_port_free(host: str, port: int) -> None:
    """Raise ``OSError`` (``EADDRINUSE``) when a socket already listens on ``host``:``port``.

    Binds (without listening) each address ``host`` resolves to as the event loop will, with
    ``SO_REUSEADDR`` (a previous run's connections in TIME_WAIT do not count) and without
    ``SO_REUSEPORT``: any listener on the port, a running group's included, refuses that bind.
    A group started at the same instant on the same port can still slip past (both check, then
    both bind); starts are not that close in practice.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: '::' leaves 0.0.0.0 to others
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)


def _start_blocked(proc: Any) -> None:
    """``proc.start()`` with :data:`FORWARDED` blocked: the new process inherits the mask (its
    ``_worker`` unblocks them once its handlers are set); the parent gets what came meanwhile
    as the mask is restored."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def exit_code(code: int | None) -> int:
    """A process exit code as a shell reports it: 128 + N for death by signal N."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


class Supervisor:
    """Starts the workers, forwards signals, and reaps them (see the module docs)."""

    def __init__(self, target: Any, args: tuple[Any, ...], workers: int, directory: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # no forked event loops or sockets
        self.procs = [ctx.Process(target=target, args=args, daemon=False) for _ in range(workers)]
        self.directory = directory
        self.stopping = False
        self.starting = True
        self.reload_when_started = False
        self.failure: int | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        elif self.starting:  # a worker started later loads the config this reload replaces
            self.reload_when_started = True
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        for proc in self.procs:
            if proc.pid is not None and proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # exited since the check
                    os.kill(proc.pid, signum)

    def run(self) -> int:
        for sig in FORWARDED:
            signal.signal(sig, self._on_signal)
        # multiprocessing's resource tracker, which the first start() would launch, unblocks
        # SIGINT and SIGTERM once it is launched, in the middle of that start(): launched
        # now, it leaves the workers' starts blocked all through.
        resource_tracker.ensure_running()
        for proc in self.procs:
            if self.stopping:
                break  # stopped while starting: start no more
            _start_blocked(proc)
        started = [p for p in self.procs if p.pid is not None]
        self.starting = False
        if self.stopping:  # the signal may have come inside start(), before that pid existed
            self._forward(signal.SIGTERM)
        elif self.reload_when_started or hangup_held():  # asked before every worker had it
            self._forward(signal.SIGHUP)
        log_event("workers_started", pids=[p.pid for p in started])
        running = list(started)
        while running:
            multiprocessing.connection.wait([p.sentinel for p in running], timeout=0.5)
            for proc in [p for p in running if p.exitcode is not None]:
                running.remove(proc)
                self._reap(proc)
        if self.failure is not None:
            return self.failure
        # A stop signal that reached a worker before its handlers were set killed it: clean.
        stopped = (-signal.SIGTERM, -signal.SIGINT)
        return max(
            (0 if p.exitcode in stopped else exit_code(p.exitcode) for p in started), default=0
        )

    def _reap(self, proc: Any) -> None:
        mark_process_dead(proc.pid, self.directory)
        code = exit_code(proc.exitcode)
        log_event("worker_exited", worker=proc.pid, code=code, stopping=self.stopping)
        if self.stopping:
            return
        # Nobody asked for a stop: the group is degraded. Drain the rest and let the supervisor
        # above (systemd, Kubernetes) restart a clean group.
        self.failure = code or 1
        self.stopping = True
        log_event("worker_lost", logging.ERROR, worker=proc.pid, code=code)
        self._forward(signal.SIGTERM)


def run_workers(
    config: GatewayConfig,
    *,
    config_path: str | None,
    host: str,
    port: int,
    workers: int,
    log_level: str = "info",
) -> int:
    """Run ``workers`` serving processes until they all exit; returns the exit code."""
    if port == 0:
        raise SystemExit("error: --workers needs a fixed --port (SO_REUSEPORT shares one port)")
    try:
        check_port_free(host, port)
    except OSError as exc:
        print(listen_error(host, port, exc), file=sys.stderr)
        return 1
    directory, owned = prepare_metrics_dir()
    try:
        args = (config, config_path, host, port, log_level, os.getpid())
        supervisor = Supervisor(_worker, args, workers, directory)
        return supervisor.run()
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)
