"""Helpers for the operations tests: the shipped Prometheus and Grafana files, PromQL checks,
a real Prometheus server, and streams through a running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.metrics import Metrics
from tests.support.system import free_port

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "gateway-dashboard.json"
OPERATIONS_DOC = REPO / "docs" / "operations.md"

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def load_alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def panel_targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (panel, target) pair, rows' nested panels included."""
    pairs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                pairs.append((inner, target))
    return pairs


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, interval: str = "1m") -> str:
    """A dashboard query with its variables replaced: intervals by ``interval``, others by ``.*``
    (every variable of the dashboard is used inside a regex matcher, ``=~"$route"``)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return interval if name.startswith("__") else ".*"

    return _VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(gateway_[a-z0-9_]+|up)\b", expr)) - {"up"}


def exported_sample_names() -> set[str]:
    """Every sample name the gateway exposes (one route pre-created), e.g. ``..._bucket``."""
    metrics = Metrics()
    metrics.precreate(["r"], {"r": ["p"]}, ["app"])
    metrics.pools.route("r", ["d"])  # the upstream pool series (bound per pooled route)
    text = metrics.exposition()[0].decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def check_exprs(
    promtool: str, exprs: dict[str, str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on a recording-rules file holding ``exprs`` (record name -> expr).

    promtool has no "check expression" command; a rules file makes it parse each one.
    """
    rules = [{"record": name, "expr": expr} for name, expr in exprs.items()]
    path = tmp / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    return subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )


# -- a real Prometheus -------------------------------------------------------------------------


class Prometheus:
    """``prometheus`` on a free loopback port with a 1 s scrape of one gateway, stopped by PID."""

    def __init__(self, binary: str, tmp: Path, target: str, rule_files: list[Path]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": "gateway", "static_configs": [{"targets": [target]}]},
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = tmp / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def api(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}{path}", params=params) as resp,
        ):
            doc = await resp.json()
        assert doc["status"] == "success", doc
        return doc["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def wait_until(self, what: str, check: Any, timeout: float) -> Any:
        """Poll ``await check()`` until it returns something truthy (bounded; no blind sleeps)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log()}")
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                got = await check()
                if got:
                    return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log: {self.log()}")
            await asyncio.sleep(0.2)


@contextlib.contextmanager
def prometheus(binary: str, tmp: Path, target: str, rule_files: list[Path]) -> Iterator[Prometheus]:
    server = Prometheus(binary, tmp, target, rule_files)
    try:
        yield server
    finally:
        server.stop()


# -- streams -----------------------------------------------------------------------------------


async def stream(url: str, path: str, body: Any = None) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}{path}", json=HELLO if body is None else body) as resp,
    ):
        return resp.status, await resp.read()


async def abort_mid_stream(port: int, path: str) -> None:
    """Open a stream on a raw socket, wait for the first ``delta``, then drop the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(HELLO).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    buf = b""
    async with asyncio.timeout(5):
        while b"event: delta" not in buf:
            chunk = await reader.read(65536)
            assert chunk, buf
            buf += chunk
    writer.transport.abort()
