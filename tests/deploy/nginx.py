"""Run the shipped nginx config (deploy/nginx/) for real, under a temporary prefix.

:func:`render` copies ``nginx.conf`` and ``gateway.conf`` into a directory, changing only what
must differ on a test machine: the listen and gateway addresses, the pid, log and temp paths
(nginx runs unprivileged with ``-p DIR``), and optionally the worker count. Every substitution
must match exactly once, so a reshaped config fails loudly here instead of testing something
else. :func:`running_nginx` starts ``nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'``, waits
for the port and stops it by PID with SIGQUIT (graceful), then SIGKILL if it lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway import REPO
from tests.support.system import free_port, require_binary

NGINX_DIR = REPO / "deploy" / "nginx"

# Text the test adds to the http block: writable temp paths, and gzip switched on for stream
# types at the http level, as a distribution's nginx.conf may do: the shipped server block's
# `gzip off` must win, or streams would arrive compressed and held back.
HTTP_EXTRAS = """
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    gzip on;
    gzip_min_length 1;
    gzip_types text/event-stream text/plain application/x-ndjson application/json;
"""


def _sub(text: str, pattern: str, repl: str) -> str:
    new, count = re.subn(pattern, lambda _m: repl, text, flags=re.MULTILINE)
    assert count == 1, f"expected exactly one match of {pattern!r} in the shipped nginx config"
    return new


def render(
    directory: Path,
    *,
    listen_port: int,
    gateway_port: int,
    worker_processes: int = 1,
    more_gateway_ports: Sequence[int] = (),
) -> Path:
    """Write a runnable copy of deploy/nginx/ into ``directory``; returns nginx.conf's path.

    ``more_gateway_ports``: further replicas, one more ``server`` line each (same options)."""
    for sub in ("logs", "tmp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    d = str(directory)
    server = (NGINX_DIR / "gateway.conf").read_text()
    server = _sub(server, r"^\s*listen\s+\S+;", f"    listen 127.0.0.1:{listen_port};")
    server = _sub(
        server, r"server 127\.0\.0\.1:8080 ", f"server 127.0.0.1:{gateway_port} "
    ).replace("/var/log/nginx/", f"{d}/logs/")
    for port in more_gateway_ports:
        line = re.search(rf"^\s*server 127\.0\.0\.1:{gateway_port} .*$", server, re.MULTILINE)
        assert line is not None
        more = line.group(0).replace(f":{gateway_port} ", f":{port} ")
        server = server.replace(line.group(0), line.group(0) + "\n" + more, 1)
    (directory / "gateway.conf").write_text(server)

    main = (NGINX_DIR / "nginx.conf").read_text()
    main = _sub(main, r"^user .*;$", "")  # unprivileged: no user switch
    main = _sub(main, r"^worker_processes .*;$", f"worker_processes {worker_processes};")
    main = _sub(main, r"^pid .*;$", f"pid {d}/nginx.pid;")
    main = _sub(main, r"include /etc/nginx/gateway\.conf;", f"include {d}/gateway.conf;")
    main = _sub(main, r"^http \{$", "http {" + HTTP_EXTRAS.format(dir=d))
    main = main.replace("/var/log/nginx/", f"{d}/logs/")
    path = directory / "nginx.conf"
    path.write_text(main)
    return path


@dataclass
class Nginx:
    port: int
    proc: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.directory / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.directory / "logs" / "gateway-access.log"
        return path.read_text(errors="replace") if path.exists() else ""


async def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("nginx exited at start-up")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return
    raise TimeoutError(f"nginx did not listen on {port}")


def start_nginx(
    directory: Path,
    gateway_port: int,
    *,
    worker_processes: int = 1,
    more_gateway_ports: Sequence[int] = (),
) -> Nginx:
    """Render the shipped config, check it with ``nginx -t`` and start nginx in the foreground."""
    binary = require_binary("nginx")
    port = free_port()
    conf = render(
        directory,
        listen_port=port,
        gateway_port=gateway_port,
        worker_processes=worker_processes,
        more_gateway_ports=more_gateway_ports,
    )
    args = ["-p", str(directory), "-c", str(conf), "-g", "daemon off;"]
    check = subprocess.run([binary, "-t", *args], capture_output=True, timeout=10)
    assert check.returncode == 0, check.stderr.decode()
    proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Nginx(port, proc, directory)


@contextlib.asynccontextmanager
async def running_nginx(
    directory: Path,
    gateway_port: int,
    *,
    worker_processes: int = 1,
    more_gateway_ports: Sequence[int] = (),
) -> AsyncIterator[Nginx]:
    """The shipped nginx config in front of ``gateway_port`` (and ``more_gateway_ports``: more
    replicas, round-robin) on a free loopback port."""
    nginx = start_nginx(
        directory,
        gateway_port,
        worker_processes=worker_processes,
        more_gateway_ports=more_gateway_ports,
    )
    try:
        try:
            await _wait_port(nginx.port, nginx.proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}: {nginx.error_log()}") from None
        yield nginx
    finally:
        await _stop(nginx.proc)


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGQUIT (graceful), then SIGKILL after 5 s. Waits in a thread, not blocking the event
    loop: sockets the test just closed must really close, or nginx would wait for them."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            await asyncio.to_thread(proc.wait, 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)
