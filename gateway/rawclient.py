"""The pool of the fast upstream client (:mod:`gateway.rawhttp` has the connections), and
:func:`use_raw`, whether ``server.upstream_client`` picks that client.

:class:`RawClient` keeps per ``(scheme, host, port)`` a list of idle keep-alive connections
(reused when a response was read to its end; closed after
:data:`IDLE_KEEPALIVE` seconds unused), an optional cap on open connections
(``max_connections``, 0 = none: a request waits for a free slot), a DNS cache (:data:`DNS_TTL`;
a host name's addresses are tried in turn, and forgotten when none answers), TLS with certificate
and host name verification (the system's default context). A request on a reused connection
that the upstream closed before answering is sent once more on a new connection, never another
pooled one (the keep-alive race, or every idle connection dropped unseen by a restart or a load
balancer; nothing reached the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from gateway.errors import ConfigError, GatewayError, UpstreamConnectError, UpstreamError
from gateway.idle import Expiry
from gateway.rawhttp import AVAILABLE, Key, RawResponse, _Conn

DNS_TTL = 300.0
"""Seconds a resolved host name is reused."""
IDLE_KEEPALIVE = 30.0
"""Seconds an idle pooled connection is kept open."""


def use_raw(choice: str) -> bool:
    """Whether ``server.upstream_client`` (``auto``, ``raw``, ``aiohttp``) picks this client.

    ``auto`` picks it when ``httptools`` is installed; ``raw`` without it is a
    :class:`ConfigError`.
    """
    if choice == "raw" and not AVAILABLE:
        raise ConfigError(
            "server.upstream_client: raw needs httptools (pip install 'llm-stream-gateway[fast]')"
        )
    return choice != "aiohttp" and AVAILABLE


def _raced(conn: _Conn) -> bool:
    """Whether a pooled connection lost the keep-alive race: the upstream closed it before
    answering, or answered 408 (its idle timeout ran out as the request came; browsers retry
    that too). Either way no model saw the request; it is sent again on a new connection."""
    if conn.status:
        return conn.status == 408
    return not isinstance(conn.error, (GatewayError, TimeoutError))


class RawClient:
    """The pool of upstream connections (see the module docs). One per gateway process."""

    def __init__(self, *, max_connections: int = 0) -> None:
        self.max_connections = max_connections
        self._idle: dict[Key, deque[_Conn]] = {}
        self._idle_deadlines: Expiry[_Conn] = Expiry(_Conn.abort, granularity=1.0)
        """The idle connections' deadlines (one loop timer for all: ``gateway/idle.py``)."""
        self.heads: Expiry[_Conn] = Expiry(_Conn._head_late)
        """The response-head deadlines of the requests waiting for one."""
        self._open: set[_Conn] = set()
        self._busy = 0
        self._slots: deque[asyncio.Future[None]] = deque()
        self._dns: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._heads: dict[tuple[str, str, int], tuple[Mapping[str, str], Key, bytes]] = {}

    # -- requests --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        connect: float,
        deadline: float | None = None,
    ) -> RawResponse:
        """Send the request and wait for the response head.

        ``deadline`` (the loop's clock; ``None``: the caller bounds the wait) bounds it all: a
        connection slot, the DNS lookup and the connect (also bounded by ``connect`` seconds),
        and the head, whose wait is bounded by the pool's head deadlines (:attr:`heads`, no
        ``asyncio.timeout`` on the hot path). Past it, ``TimeoutError``. Cancellation closes the
        connection. Raises :class:`UpstreamConnectError` (could not connect), ``OSError`` or
        ``TimeoutError``.
        """
        key, head = self._head(method, url, headers)
        # Added in three pieces: 150 ns, where one ``%`` with the body as ``%b`` took 260.
        data = head + b"%d\r\n\r\n" % len(body) + body
        await self._slot(deadline)
        try:
            for fresh in (False, True):  # a retry never takes another pooled connection
                conn, reused = await self._connection(key, connect, deadline, fresh)
                try:
                    conn.start(data, deadline)
                    while not conn.status and conn.error is None:
                        await conn.wait()
                except BaseException:
                    conn.abort()
                    raise
                if conn.status and not (reused and conn.status == 408):
                    return RawResponse(conn)
                conn.abort()
                if reused and _raced(conn):
                    continue
                if isinstance(conn.error, (GatewayError, TimeoutError)):
                    raise conn.error
                break
            raise UpstreamConnectError("upstream closed the connection")
        except BaseException:
            self.done()
            raise

    def _head(self, method: str, url: str, headers: Mapping[str, str]) -> tuple[Key, bytes]:
        """The pool key and the request's head up to its ``Content-Length`` value: built once
        per (method, url, headers) for read-only headers (``MappingProxyType``: an adapter's
        own, built once, :meth:`gateway.adapters.base.Adapter.post_json`); a request with a
        dict of its own (a signed one, a traced one) builds its head anew."""
        shared = isinstance(headers, MappingProxyType)  # read-only: encoded once
        if shared:
            cached = self._heads.get((method, url, id(headers)))
            if cached is not None and cached[0] is headers:
                return cached[1], cached[2]
        key, line, host = self._target(method, url)
        lines = [line]
        coding = "Accept-Encoding: identity\r\n"  # a token's bytes as sent, not zlib's batch
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
            lower = name.lower()
            if lower == "host":
                host = ""  # the adapter's own (a signed request)
            elif lower == "accept-encoding":
                coding = ""
        lines.append(f"{host}{coding}Content-Length: ")
        head = "".join(lines).encode("latin-1")
        if shared and len(self._heads) < 1024:  # the entry keeps ``headers`` alive: its id too
            self._heads[(method, url, id(headers))] = (headers, key, head)
        return key, head

    def _target(self, method: str, url: str) -> tuple[Key, str, str]:
        """The pool key, the request line and the Host header of (method, url)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError(f"unsupported upstream URL scheme {parts.scheme!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = port == (443 if parts.scheme == "https" else 80)
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        host = name if default else f"{name}:{port}"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return (
            (parts.scheme, parts.hostname, port),
            f"{method} {target} HTTP/1.1\r\n",
            f"Host: {host}\r\n",
        )

    async def _connection(
        self, key: Key, connect: float, deadline: float | None, fresh: bool = False
    ) -> tuple[_Conn, bool]:
        """A connection to ``key`` and whether it was pooled: an idle one unless ``fresh``."""
        idle = None if fresh else self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                self._idle_deadlines.clear(conn)
                return conn, True
        scheme, host, port = key
        connect_by = asyncio.get_running_loop().time() + connect
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout_at(
                connect_by if deadline is None else min(connect_by, deadline)
            ):
                conn = await self._connect(key, await self._resolve(host, port), tls)
        except TimeoutError:
            if deadline is not None and deadline < connect_by:
                raise  # the answer's deadline came first: the upstream did not answer in time
            raise UpstreamConnectError(f"could not connect to upstream in {connect:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamConnectError(
                f"could not connect to upstream: {connect_reason(exc)}"
            ) from exc
        self._open.add(conn)
        return conn, False

    async def _connect(
        self, key: Key, addresses: tuple[str, ...], tls: ssl.SSLContext | None
    ) -> _Conn:
        """A new connection to the first of ``addresses`` that accepts it, in their order (a
        host name that resolves to several, one of them down, as aiohttp's client tries
        them). Every one failing forgets the host's DNS cache entry (it may have moved) and
        raises the last failure."""
        _, host, port = key
        loop = asyncio.get_running_loop()
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, key, loop),
                    address,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
                return conn
            except OSError:
                if address == addresses[-1]:
                    self._dns.pop((host, port), None)
                    raise
        raise AssertionError("no address to connect to")  # _resolve returns one at least

    async def _resolve(self, host: str, port: int) -> tuple[str, ...]:
        """``host``'s addresses (an IP literal: itself), from the DNS cache when fresh."""
        cached = self._dns.get((host, port))
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        if host.replace(".", "").isdigit() or ":" in host:
            return (host,)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise UpstreamConnectError(f"could not resolve upstream host {host!r}") from exc
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise UpstreamConnectError(f"could not resolve upstream host {host!r}")
        self._dns[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # verifies the certificate and host name
        return self._ssl

    # -- the connection cap ----------------------------------------------------------------

    async def _slot(self, deadline: float | None) -> None:
        if self.max_connections and self._busy >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            self._slots.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._next()  # handed a slot while being cancelled: pass it on
                raise
            return  # the slot was handed over by done()
        self._busy += 1

    def done(self) -> None:
        """A request ended (its connection was released or closed): pass its slot on."""
        self._next()

    def _next(self) -> None:
        while self._slots:
            waiter = self._slots.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy -= 1

    # -- the pool --------------------------------------------------------------------------

    def release(self, conn: _Conn) -> None:
        """Pool ``conn``, reading again (an idle connection must see the upstream's close, and
        the next response must arrive) if a reader that never came paused it."""
        conn.parser = None
        if conn.paused and conn.transport is not None:
            conn.paused = False
            conn.transport.resume_reading()
        self._idle.setdefault(conn.key, deque()).append(conn)
        self._idle_deadlines.after(conn, IDLE_KEEPALIVE)

    def forget(self, conn: _Conn) -> None:
        self._open.discard(conn)
        self._idle_deadlines.clear(conn)
        self.heads.clear(conn)
        idle = self._idle.get(conn.key)
        if idle is not None:
            with contextlib.suppress(ValueError):
                idle.remove(conn)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(q) for q in self._idle.values())

    async def close(self) -> None:
        """Close every connection (shutdown)."""
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        self._idle_deadlines.close()
        self.heads.close()


def connect_reason(exc: OSError) -> str:
    """Why a connection failed, without the OS's message, which names the upstream's address
    (clients see this message; the address is the operator's)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "its TLS certificate did not verify"
    if isinstance(exc, ssl.SSLError):
        return "the TLS handshake failed"
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__
