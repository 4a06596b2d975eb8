"""Running the gateway in production: the runner, signals, graceful drain, the start banner.

``start_app`` starts an app exactly the way production does: the stream requests on the fast
server (``gateway.httpserver``, ``server.http_server``), the rest on aiohttp's, which runs with
``handler_cancellation=True`` (a client disconnect cancels its handler at once, which is what
closes the upstream; the fast server does the same). Tests use it too, never aiohttp's test
server, which forces that flag on and would hide its absence.
``run_server`` serves one process; the CLI (``cli.py``) runs it directly or as ``--workers N``
processes (``workers.py``).
SIGTERM drains (readiness 503, new streams 503, open streams get ``shutdown_timeout``, then a
terminal ``shutdown`` error each); SIGHUP reloads the config file (``reload.py``). A SIGHUP that
comes while the process starts (:func:`hold_reloads` on) is remembered and applied once it
serves, rather than ending the process (the signal's default action).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType

from aiohttp import web

from gateway import NATIVE, gctune
from gateway.config.model import GatewayConfig
from gateway.httplistener import Listener, use_raw_server
from gateway.logs import log_event
from gateway.reload import reload_config
from gateway.server import build_app, stream_listener
from gateway.state import STATE, GatewayState

KEEPALIVE_TIMEOUT = 75.0
"""Idle keep-alive connections close after this (aiohttp's default is an hour; nginx's 75 s)."""
LINGERING_TIME = 1.0
"""Seconds aiohttp keeps reading an unread request body after an early error answer (its
default is 10 s, which lets a slowloris body hold the socket long after its 400)."""


async def drain_and_stop(state: GatewayState, grace: float) -> None:
    """SIGTERM: refuse new streams, let open ones finish for ``grace`` seconds, then end the rest.

    The drains of streams whose client left (``on_client_abort: drain``) read on for the same
    ``grace``, then are cancelled and awaited: each settles its budget with the usage it read
    as it ends, which must happen while the limits backend is still open (it closes with the
    app, after this). Polls every 50 ms: simpler than signalling every stream end, and
    shutdown is not a hot path.
    """
    state.draining = True
    log_event("draining", streams=len(state.sessions), grace_s=grace)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while (state.sessions or state.drain_tasks) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for session in list(state.sessions):
        session.shutdown()
    await _end_drains(state)
    end = loop.time() + 5.0
    while state.sessions and loop.time() < end:
        # A request admitted just before the grace ended (it stood in ``sessions`` as a
        # placeholder, whose ``shutdown`` does nothing) becomes a session meanwhile: it is
        # ended too, rather than waited for and then cut without its terminal event.
        for session in list(state.sessions):
            session.shutdown()  # once ended, a session ignores it
        await asyncio.sleep(0.01)
    await _end_drains(state)  # a client that left as its stream was being ended started one


async def _end_drains(state: GatewayState) -> None:
    """Cancel the drains still reading and wait (5 s at most) for them to settle.

    A drain task created in this very turn of the loop has not started: cancelled now, its
    coroutine would never run, so its upstream would stay open and its usage never be settled
    (the ``finally`` that does both is never entered). One turn of the loop starts it first.
    """
    if not state.drain_tasks:
        return
    await asyncio.sleep(0)
    drains = list(state.drain_tasks)
    for task in drains:
        task.cancel()
    await asyncio.wait(drains, timeout=5.0)


async def start_app(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> tuple[web.AppRunner, int]:
    """Start ``app`` the production way on a real socket; returns the runner and the bound port.

    Raises ``OSError`` when ``host``/``port`` cannot be listened on (in use, not an address of
    this machine, a privileged port), after cleaning up what the app's start-up opened (the
    upstream session, which would otherwise be reported unclosed at exit).
    With the fast server (``server.http_server``) every connection starts on its listener
    (:class:`Site`), which hands what is not a stream request to aiohttp's. On aiohttp's server,
    ``handler_cancellation=True`` is what turns a client disconnect into an immediate
    cancellation of its handler (and so of the upstream request).
    """
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
        lingering_time=LINGERING_TIME,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
    await runner.setup()
    assert runner.server is not None
    if use_raw_server(app[STATE].current.config.server.http_server):
        listener = stream_listener(app, runner.server, keepalive_timeout=KEEPALIVE_TIMEOUT)
        site: web.TCPSite | Site = Site(runner, listener, host, port, reuse_port=reuse_port)
    else:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=4096)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, site.port


async def run_server(
    config: GatewayConfig,
    *,
    host: str,
    port: int,
    config_path: str | None = None,
    reuse_port: bool = False,
) -> int:
    """Serve until SIGTERM/SIGINT; reload on SIGHUP. Returns the exit code: 0, or 1 after one
    line on stderr when the address cannot be listened on.

    Must run in the main thread (it installs signal handlers). A SIGHUP from the call on (or
    from an earlier :func:`hold_reloads`) until the loop's handler is in place reloads once
    serving starts.
    """
    if config_path is not None:
        hold_reloads()
    app = build_app(config)
    try:
        runner, bound = await start_app(app, host, port, reuse_port=reuse_port)
    except OSError as exc:  # start-up opens no other socket or file: this is the listen address
        print(listen_error(host, port, exc), file=sys.stderr)
        return 1
    gctune.tune()
    print_banner(config, host, bound)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: reload_config(app, config_path))
        if _Hangups.take():
            reload_config(app, config_path)
    await stop.wait()
    state = app[STATE].current
    await drain_and_stop(state, state.config.server.shutdown_timeout)
    await runner.cleanup()
    log_event("stopped")
    return 0


class _Hangups:
    """SIGHUPs received while the process starts, before the event loop's handler exists."""

    asked = False

    @classmethod
    def remember(cls, _signum: int, _frame: FrameType | None) -> None:
        cls.asked = True

    @classmethod
    def take(cls) -> bool:
        """Whether a SIGHUP came since :func:`hold_reloads` (and forget it)."""
        asked, cls.asked = cls.asked, False
        return asked


def release_hangups() -> None:
    """Unblock SIGHUP, which the ``gateway`` command blocks while it imports
    (:mod:`gateway.command`), and hold later ones for a reload (:func:`hold_reloads`). Called
    before the config is read: a hangup that came earlier asks for nothing the coming read will
    not do, so it is dropped. Main thread only."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # discards a pending one, blocked or not
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    hold_reloads()


def hangup_held() -> bool:
    """Whether a SIGHUP came since :func:`hold_reloads` (and forget it): for a process that
    takes over the signal itself and must not lose one that came before (the workers'
    supervisor)."""
    return _Hangups.take()


def hold_reloads() -> None:
    """From now on, a SIGHUP before :func:`run_server` serves is remembered, and reloads once
    it does. Without this its default action ends the process: a reload asked right after a
    start (``systemctl reload``, a log rotation) would kill the gateway. Main thread only."""
    signal.signal(signal.SIGHUP, _Hangups.remember)


def listen_error(host: str, port: int, exc: OSError) -> str:
    """``error: cannot listen on 127.0.0.1:8080: Address already in use`` (one line)."""
    return f"error: cannot listen on {_address(host, port)}: {_reason(exc)}"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: OSError) -> str:
    """``Address already in use``: the system's words for the error number, without the
    event loop's wording around them (asyncio's and uvloop's differ)."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)  # a resolver error (gaierror) has a negative number


def install_fast_loop() -> None:
    """Prepare the process for its event loop: uvloop when installed (unless
    ``GATEWAY_NO_UVLOOP`` is set), and file descriptors 0-2 open (see :func:`reserve_std_fds`)."""
    reserve_std_fds()
    if os.environ.get("GATEWAY_NO_UVLOOP"):
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def reserve_std_fds() -> None:
    """Open ``/dev/null`` on whichever of stdin, stdout and stderr is closed.

    Started with one closed (``gateway <&-``, some supervisors), the loop's first socket or
    epoll handle takes its number, and libuv (uvloop) aborts the process when it closes a file
    descriptor below 3: a clean SIGTERM then ended in SIGABRT (exit 134).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` (lower ones are open)


def print_banner(config: GatewayConfig, host: str, port: int) -> None:
    """The start banner on stdout: the URL (a wildcard address shown as the loopback address of
    its family: the event loop binds ``::`` for IPv6 only, so 127.0.0.1 would be refused), the
    compiled core's state, the playground, and a ``curl`` line to try."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    base = f"http://{_address(shown, port)}"  # an IPv6 address in brackets (RFC 3986)
    first = config.routes[0]
    print(f"gateway listening on {base}", flush=True)
    print(f"  compiled hot path: {NATIVE}", flush=True)  # gateway.native: on, or why not
    if config.server.playground:
        print(f"  playground: {base}/", flush=True)
    print(
        f"  try: curl -N {base}{first.path} -H 'Content-Type: application/json' "
        '-d \'{"messages":[{"role":"user","content":"Hello"}]}\'',
        flush=True,
    )


class Site(web.BaseSite):
    """An aiohttp site whose connections start on the fast server's :class:`Listener` (stream
    ``POST`` requests served there, the rest handed to aiohttp: ``gateway.httpserver``)."""

    __slots__ = ("_bound", "_host", "_listener", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        listener: Listener,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        backlog: int = 4096,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._listener = listener
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._bound = port

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose for port 0, once started)."""
        return self._bound

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._bound}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = server = await loop.create_server(
            self._listener,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
        if server.sockets:
            self._bound = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await super().stop()
        self._listener.close_all()
