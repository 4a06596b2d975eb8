"""Run the gateway for tests: in-process with the production runner, or as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.config.model import GatewayConfig
from gateway.config.parse import parse_config
from gateway.metrics import Metrics
from gateway.runner import start_app
from gateway.server import build_app
from tests.support.system import free_port

REPO = Path(__file__).resolve().parents[2]


UPSTREAM_CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "upstream_client", default=None
)
"""``server.upstream_client`` for :func:`running_gateway` (set by the ``upstream_client``
fixture in ``tests/conftest.py``, which runs a test module over both upstream clients)."""


HTTP_SERVER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "http_server", default=None
)
"""``server.http_server`` for :func:`running_gateway` (set by the ``http_server`` fixture in
``tests/conftest.py``, which runs a test module over both servers)."""


def config_from(doc: dict[str, Any]) -> GatewayConfig:
    return parse_config(doc, env={})


class RunningGateway:
    def __init__(self, port: int, app: Any) -> None:
        self.port = port
        self.app = app
        self.url = f"http://127.0.0.1:{port}"

    @property
    def state(self) -> Any:
        from gateway.state import STATE

        return self.app[STATE].current


@contextlib.asynccontextmanager
async def running_gateway(doc: dict[str, Any]) -> AsyncIterator[RunningGateway]:
    """The gateway app on a free loopback port, started exactly as ``gateway`` starts it."""
    server = {"host": "127.0.0.1", "port": 0}
    if (client := UPSTREAM_CLIENT.get()) is not None:
        server["upstream_client"] = client
    if (http_server := HTTP_SERVER.get()) is not None:
        server["http_server"] = http_server
    doc = {**doc, "server": {**server, **doc.get("server", {})}}
    app = build_app(config_from(doc), metrics=Metrics())
    runner, port = await start_app(app, "127.0.0.1", 0)
    try:
        yield RunningGateway(port, app)
    finally:
        await runner.cleanup()


async def metric_value(url: str, name: str, labels: dict[str, str]) -> float:
    """The value of one sample in ``/metrics`` (0 when absent)."""
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
        text = await r.text()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{"):
            head, value = line.rsplit(" ", 1)
            got = head[len(name) + 1 : -1]
            if all(part in got.split(",") for part in want.split(",")):
                return float(value)
    return 0.0


class GatewayProcess:
    """``python -m gateway`` in a subprocess, for signal and multi-process tests (or
    ``script``, run with ``python -c`` and the same arguments)."""

    def __init__(
        self,
        config_path: Path,
        port: int | None = None,
        *args: str,
        env: dict[str, str] | None = None,
        script: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            *(["-c", script] if script else ["-m", "gateway"]),
            "--config",
            str(config_path),
            "--port",
            str(self.port),
            *args,
        ]
        self.log_path = config_path.with_suffix(".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 15.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"gateway not ready: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def gateway_process(
    tmp_path: Path, doc: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> Iterator[GatewayProcess]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = GatewayProcess(path, None, *args, env=env)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


async def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)
