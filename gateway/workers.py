"""``gateway --workers N``: N processes serving one port (SO_REUSEPORT), one metrics view.

The parent process does not serve. It points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
(unless one is set), starts N worker processes that each bind the port with SO_REUSEPORT, and
forwards SIGTERM/SIGINT (graceful drain) and SIGHUP (reload) to them. Every worker's ``/metrics``
aggregates all workers through prometheus_client's multiprocess mode, so any scrape, whichever
worker answers it, sees the same totals. When a worker exits its live gauges are marked dead.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
from types import FrameType

from gateway.config.model import GatewayConfig


def _worker(config: GatewayConfig, config_path: str | None, host: str, port: int) -> None:
    import asyncio

    from gateway.logs import setup_logging
    from gateway.server import _install_fast_loop, run_server

    setup_logging(os.environ.get("GATEWAY_LOG_LEVEL", "info"))
    _install_fast_loop()
    code = asyncio.run(
        run_server(config, host=host, port=port, config_path=config_path, reuse_port=True)
    )
    raise SystemExit(code)


def run_workers(
    config: GatewayConfig, *, config_path: str | None, host: str, port: int, workers: int
) -> int:
    """Run ``workers`` serving processes until they all exit; returns the worst exit code."""
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    if port == 0:
        raise SystemExit("--workers needs a fixed --port (SO_REUSEPORT shares one port)")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(config, config_path, host, port), daemon=False)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        codes = []
        for proc in procs:
            while proc.is_alive():
                proc.join(0.2)
            codes.append(proc.exitcode or 0)
            if own_dir and proc.pid is not None:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(proc.pid, own_dir)  # type: ignore[no-untyped-call]
        return max(codes, default=0)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
