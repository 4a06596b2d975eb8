"""The things measured side by side, each behind the same fake upstream.

``direct``  the client talks to the fake upstream itself: the limit, no proxy process.
``nginx``   a plain reverse proxy (``proxy_buffering off``, upstream keep-alive, 1 worker): the C
            anchor.
``litellm`` LiteLLM proxy from its own venv (``bench/.venv-litellm``), the fake upstream as an
            OpenAI-compatible ``api_base``: the Python gateway users would otherwise pick.
``portkey`` the Portkey AI gateway (npm ``@portkey-ai/gateway``, Node.js) from its own npm
            prefix (``bench/.portkey``), pointed at the fake upstream per request with
            ``x-portkey-provider: openai`` and ``x-portkey-custom-host``: the gateway users
            would otherwise pick in the Node ecosystem.
``gateway`` this project, ``python -m gateway`` on a generated config with an ``openai-chat``
            and an ``openai-responses`` route, output format ``tokens``.

Every proxy runs pinned to core 0 (the fake upstream and the load client run on core 1) with a
raised open-files limit. CPU and memory are read from ``/proc`` for the proxy's whole process
tree (nginx's worker, LiteLLM's workers).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.fake_upstream import install_uvloop, raise_fd_limit
from bench.loadgen import post

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
PORTKEY_DIR = ROOT / "bench" / ".portkey"
PORTKEY_VERSION = "1.15.2"
PORTKEY_PACKAGE = {
    "name": "bench-portkey",
    "private": True,
    "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION},
    # Today's resolution of these breaks every request with a 500 "TypeError: immutable"
    # (Portkey-AI/gateway#1389); the versions it was built with work.
    "overrides": {"@hono/node-server": "1.13.5", "@hono/node-ws": "1.2.0"},
}
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build"
PROXY_CORE, LOAD_CORE = 0, 1
FD_LIMIT = 200_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
ROUTES = ("chat", "responses")


class PeerUnavailable(Exception):
    """The peer cannot run here (not installed, failed to start); the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(core: int | None) -> Callable[[], None]:
    """A ``preexec_fn``: pin to ``core`` (``None``: any core) and raise the open-files limit
    (inherited by workers); the child leads its own process group (``Peer.stop`` signals it)."""

    def setup() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        os.setpgrp()

    return setup


def start_upstream() -> tuple[subprocess.Popen[bytes], int]:
    """The fake upstream (:mod:`bench.fake_upstream`) on a free port, pinned to the load core:
    the process and its port."""
    cmd = [sys.executable, "-m", "bench.fake_upstream", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, preexec_fn=pinned(LOAD_CORE))
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != b"ready":
        raise SystemExit("the fake upstream did not start")
    return proc, int(line[1])


def become_load_generator() -> None:
    """Make this process the bench's load generator: room for tens of thousands of sockets,
    uvloop, and the load core (beside the fake upstream, away from the proxy under test)."""
    raise_fd_limit()
    install_uvloop()
    os.sched_setaffinity(0, {LOAD_CORE})


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant alive now."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, ()))
    return tree


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """utime and stime of ``pids`` (``/proc/<pid>/stat`` fields 14 and 15): the seconds spent
    in the process's own code and in the kernel on its behalf."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids``, in seconds."""
    return sum(cpu_times(pids))


def rss_kib(pids: list[int]) -> int:
    """Resident memory of ``pids`` in KiB (``/proc/<pid>/statm``)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except OSError:
            continue
    return total


@dataclass
class Peer:
    """A running peer: where to send requests and which processes to measure."""

    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    paths: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, Callable[[str], bytes]] = field(default_factory=dict)
    host: str = "127.0.0.1"
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, route: str, spec: str) -> bytes:
        """The HTTP request for one stream on ``route`` whose fake upstream follows ``spec``."""
        return post(self.paths[route], self.host, self.bodies[route](spec), self.headers)

    def pids(self) -> list[int]:
        return [] if self.proc is None else process_tree(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _openai_bodies(model: str) -> dict[str, Callable[[str], bytes]]:
    def chat(spec: str) -> bytes:
        doc = {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": spec}],
        }
        return json.dumps(doc).encode()

    def responses(spec: str) -> bytes:
        return json.dumps({"model": model, "stream": True, "input": spec}).encode()

    return {"chat": chat, "responses": responses}


_OPENAI_PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses"}


@dataclass
class Wrapper:
    """A command every peer is started under (``valgrind ...``), and how much longer that makes
    a peer's start-up: set for a ``with`` block by :func:`wrapped`."""

    prefix: list[str] = field(default_factory=list)
    slowdown: float = 1.0


_WRAPPER = Wrapper()


@contextlib.contextmanager
def wrapped(prefix: list[str], slowdown: float) -> Iterator[None]:
    """Start the peers of the block under ``prefix`` (``bench.instructions``: callgrind), giving
    each ``slowdown`` times as long to become ready."""
    global _WRAPPER
    before, _WRAPPER = _WRAPPER, Wrapper(prefix, slowdown)
    try:
        yield
    finally:
        _WRAPPER = before


def _spawn(
    name: str,
    cmd: list[str],
    workdir: Path,
    env: dict[str, str] | None = None,
    *,
    pin: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a peer pinned to the proxy core (``pin=False``: wherever the kernel puts it), under
    the :func:`wrapped` prefix if one is set."""
    with open(workdir / f"{name}.log", "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [*_WRAPPER.prefix, *cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(PROXY_CORE if pin else None),
            env={**os.environ, **(env or {})},
            cwd=workdir,
        )


def _wait_ready(peer: Peer, path: str | None, timeout: float) -> None:
    """Poll until the peer answers (``path`` over HTTP, else a TCP connect) or fail."""
    timeout *= _WRAPPER.slowdown
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.proc is not None and peer.proc.poll() is not None:
            break
        try:
            if path is None:
                socket.create_connection((peer.host, peer.port), 0.5).close()
                return
            with urllib.request.urlopen(f"http://{peer.host}:{peer.port}{path}", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    log = ""
    if peer.workdir is not None:
        logs = sorted(peer.workdir.glob("*.log"))
        log = logs[0].read_text(errors="replace")[-2000:] if logs else ""
    peer.stop()
    raise PeerUnavailable(f"{peer.name} did not become ready in {timeout:g}s\n{log}")


# -- launchers ---------------------------------------------------------------------------------


def start_direct(upstream_port: int) -> Peer:
    return Peer("direct", upstream_port, paths=_OPENAI_PATHS, bodies=_openai_bodies("bench"))


NGINX_CONF = """\
daemon off;
worker_processes 1;
worker_rlimit_nofile {fd_limit};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 65000; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream fake {{ server 127.0.0.1:{upstream}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )


def start_nginx(upstream_port: int, *, edit: Callable[[str], str] = lambda conf: conf) -> Peer:
    """nginx as a plain proxy, on ``NGINX_CONF`` then ``edit``."""
    binary = nginx_binary()
    if binary is None:
        raise PeerUnavailable("nginx is not installed (apt-get install nginx-light)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    port = free_port()
    conf = NGINX_CONF.format(dir=workdir, upstream=upstream_port, port=port, fd_limit=FD_LIMIT)
    conf = edit(conf)
    (workdir / "nginx.conf").write_text(conf)
    proc = _spawn("nginx", [binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf")], workdir)
    peer = Peer("nginx", port, proc, workdir, _OPENAI_PATHS, _openai_bodies("bench"))
    _wait_ready(peer, None, 10)
    return peer


LITELLM_CONF = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:{upstream}/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
general_settings:
  master_key: {key}
"""
LITELLM_KEY = "sk-bench-0123456789abcdef0123456789abcdef"


def start_litellm(upstream_port: int) -> Peer:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        raise PeerUnavailable(f"LiteLLM is not installed in {LITELLM_VENV}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-litellm-"))
    port = free_port()
    (workdir / "litellm.yaml").write_text(
        LITELLM_CONF.format(upstream=upstream_port, key=LITELLM_KEY)
    )
    cmd = [str(binary), "--config", str(workdir / "litellm.yaml"), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--num_workers", "1"]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"}
    proc = _spawn("litellm", cmd, workdir, env)
    peer = Peer("litellm", port, proc, workdir, _OPENAI_PATHS, _openai_bodies("bench"))
    peer.headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
    _wait_ready(peer, "/health/liveliness", 180)
    return peer


def start_portkey(upstream_port: int) -> Peer:
    script = PORTKEY_SERVER / "start-server.js"
    node = shutil.which("node")
    if node is None or not script.exists():
        raise PeerUnavailable(f"Portkey is not installed in {PORTKEY_DIR} (or node is missing)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-portkey-"))
    port = free_port()
    cmd = [node, str(script), f"--port={port}", "--headless"]
    proc = _spawn("portkey", cmd, workdir)
    peer = Peer("portkey", port, proc, workdir, _OPENAI_PATHS, _openai_bodies("bench"))
    peer.headers = {
        "Authorization": "Bearer sk-bench",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"http://127.0.0.1:{upstream_port}/v1",
    }
    _wait_ready(peer, None, 60)
    return peer


GATEWAY_CONF = """\
server:
  host: 127.0.0.1
  port: {port}
  upstream_client: {client}
limits:
  max_concurrent_streams: 1000000
routes:
  - name: chat
    provider: openai-chat
    format: tokens
    upstream: {{base_url: "http://127.0.0.1:{upstream}/v1", api_key: sk-bench, model: bench}}
  - name: responses
    provider: openai-responses
    format: tokens
    upstream: {{base_url: "http://127.0.0.1:{upstream}/v1", api_key: sk-bench, model: bench}}
"""


def _gateway_bodies() -> dict[str, Callable[[str], bytes]]:
    def body(spec: str) -> bytes:
        return json.dumps({"messages": [{"role": "user", "content": spec}]}).encode()

    return {"chat": body, "responses": body}


def start_gateway(upstream_port: int) -> Peer:
    return start_gateway_variant("gateway", upstream_port, lambda conf: conf)


RESUME_LINE = "    resume: {enabled: true, window: 2s, store: memory}\n"


def gateway_config(port: int, upstream_port: int, edit: Callable[[str], str]) -> str:
    """The ``gateway`` peer's config text, then ``edit`` (one feature switched on).

    ``BENCH_UPSTREAM_CLIENT`` (auto, raw, aiohttp) picks the upstream client, to A/B them.
    """
    client = os.environ.get("BENCH_UPSTREAM_CLIENT", "auto")
    return edit(GATEWAY_CONF.format(port=port, upstream=upstream_port, client=client))


def start_gateway_sources(upstream_port: int) -> Peer:
    """The ``gateway`` peer running its Python sources, compiled build or not (gateway.native)."""
    return start_gateway_variant("sources", upstream_port, lambda conf: conf, native=False)


def start_gateway_variant(
    name: str,
    upstream_port: int,
    edit: Callable[[str], str],
    *,
    tree: Path = ROOT,
    native: bool = True,
    python: str = sys.executable,
) -> Peer:
    """The ``gateway`` peer on ``gateway_config(..., edit)``: the same routes, one feature on.

    ``tree``: the checkout whose ``gateway`` package runs (another commit, to A/B code).
    ``native``: run the tree's compiled build if it has a current one (``gateway.native``);
    False runs its sources. ``python``: the interpreter to run it on (another build of CPython:
    its environment needs the gateway's dependencies)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    port = free_port()
    (workdir / "gateway.yaml").write_text(gateway_config(port, upstream_port, edit))
    cmd = [python, "-m", "gateway", "--config", str(workdir / "gateway.yaml")]
    env = {"PYTHONPATH": str(tree)} if native else {"PYTHONPATH": str(tree), "GATEWAY_NATIVE": "0"}
    proc = _spawn(name, cmd, workdir, env)
    paths = {r: f"/v1/stream/{r}" for r in ROUTES}
    peer = Peer(name, port, proc, workdir, paths, _gateway_bodies())
    _wait_ready(peer, "/healthz", 30)
    return peer


def with_resume(conf: str) -> str:
    conf = conf.replace("format: tokens\n", "format: tokens\n" + RESUME_LINE)
    return conf.replace("limits:\n", "limits:\n  max_resume_buffer_bytes: 1GiB\n")


def with_redis_resume(redis_url: str) -> Callable[[str], str]:
    """``with_resume`` on ``store: redis`` at ``redis_url`` (a bench-owned redis-server)."""

    def edit(conf: str) -> str:
        conf = with_resume(conf).replace("store: memory", "store: redis")
        return conf.replace("limits:\n", f"limits:\n  redis_url: {redis_url}\n")

    return edit


def start_gateway_resume(upstream_port: int) -> Peer:
    """The gateway with ``resume: {store: memory}`` on both routes (a 2 s window and a 1 GiB
    buffer cap, so every stream of a run is recorded): compare with ``gateway`` for the CPU
    cost of recording (docs/resume.md, target at most +10% per event)."""
    return start_gateway_variant("gateway-resume", upstream_port, with_resume)


def with_pool(conf: str) -> str:
    """Each route's one upstream becomes a pool of three deployments of it (least_busy)."""

    def pool(match: re.Match[str]) -> str:
        keys = match.group(1)
        rows = "".join(f"      - {{name: d{i}, {keys}}}\n" for i in range(3))
        return f"    upstreams:\n{rows}    balance: {{strategy: least_busy}}\n"

    return re.sub(r"    upstream: \{(.*)\}\n", pool, conf)


def start_gateway_pool(upstream_port: int) -> Peer:
    """The gateway with a pool of three deployments per route (the same fake upstream behind
    each): compare with ``gateway`` for the CPU a pool adds per request and per event
    (docs/performance.md, issue: choosing a deployment < 5 µs, nothing measurable per event)."""
    return start_gateway_variant("gateway-pool", upstream_port, with_pool)


LAUNCHERS: dict[str, Callable[[int], Peer]] = {
    "direct": start_direct,
    "nginx": start_nginx,
    "litellm": start_litellm,
    "portkey": start_portkey,
    "gateway": start_gateway,
    "gateway-resume": start_gateway_resume,
    "gateway-pool": start_gateway_pool,
}
PEERS = tuple(LAUNCHERS)
DEFAULT_PEERS = ("direct", "nginx", "litellm", "gateway")
"""Run without ``--peers`` (``gateway-resume`` and ``gateway-pool`` are asked for by name)."""
MEASURED_IN_TURN = (
    "direct",
    "nginx",
    "gateway",
    "gateway-resume",
    "gateway-pool",
    "portkey",
    "litellm",
)
"""The order in which one repetition measures its peers, whatever order ``--peers`` lists them
in (the tables keep that one): nginx right before the gateway and its variants, so that the
ratios to nginx compare neighbouring minutes, and the slow peers last. This VM's speed drifts
by a fifth within minutes (docs/performance.md, "Six full runs"); with LiteLLM and Portkey
between them, nginx and the gateway were measured nine minutes apart."""


def in_turn(peers: list[str]) -> list[str]:
    """``peers`` in :data:`MEASURED_IN_TURN` order."""
    return sorted(peers, key=MEASURED_IN_TURN.index)


# -- installing what the peers need ------------------------------------------------------------


def ensure_installed(names: list[str], log: Callable[[str], None]) -> dict[str, str]:
    """Install missing peers (nginx with apt-get, LiteLLM in its own venv, Portkey with npm).

    Returns ``{peer: reason}`` for the peers that still cannot run; never raises.
    """
    missing: dict[str, str] = {}
    if "nginx" in names and nginx_binary() is None:
        log("installing nginx-light with apt-get ...")
        if os.geteuid() == 0 and shutil.which("apt-get"):
            quiet = subprocess.DEVNULL
            subprocess.run(["apt-get", "update", "-q"], stdout=quiet, stderr=quiet, check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "nginx-light"],
                stdout=quiet,
                stderr=quiet,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                check=False,
            )
        if nginx_binary() is None:
            missing["nginx"] = "nginx is not installed and apt-get could not install it"
    if "litellm" in names and not (LITELLM_VENV / "bin" / "litellm").exists():
        log(f"installing litellm[proxy] into {LITELLM_VENV} (a few minutes) ...")
        python = shutil.which("python3") or sys.executable
        logfile = ROOT / "bench" / "results" / "litellm-install.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(logfile, "wb") as out:
            ok = subprocess.run([python, "-m", "venv", str(LITELLM_VENV)], stdout=out, stderr=out)
            if ok.returncode == 0:
                pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"]
                ok = subprocess.run(pip, stdout=out, stderr=out)
        if not (LITELLM_VENV / "bin" / "litellm").exists():
            missing["litellm"] = f"pip install 'litellm[proxy]' failed (see {logfile})"
    if "portkey" in names and not (PORTKEY_SERVER / "start-server.js").exists():
        missing.update(_install_portkey(log))
    return missing


def _install_portkey(log: Callable[[str], None]) -> dict[str, str]:
    """``npm install`` Portkey into :data:`PORTKEY_DIR` with the overrides it needs."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return {"portkey": "node/npm are not installed: Portkey skipped"}
    log(f"installing @portkey-ai/gateway {PORTKEY_VERSION} into {PORTKEY_DIR} with npm ...")
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    (PORTKEY_DIR / "package.json").write_text(json.dumps(PORTKEY_PACKAGE, indent=2))
    logfile = ROOT / "bench" / "results" / "portkey-install.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "wb") as out:
        cmd = [npm, "install", "--no-audit", "--no-fund", "--omit=dev"]
        subprocess.run(cmd, cwd=PORTKEY_DIR, stdout=out, stderr=out, check=False)
    if not (PORTKEY_SERVER / "start-server.js").exists():
        return {"portkey": f"npm could not install @portkey-ai/gateway (see {logfile})"}
    return {}
