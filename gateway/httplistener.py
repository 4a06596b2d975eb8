"""The fast HTTP/1.1 server's listening side: which server serves the stream requests
(:func:`use_raw_server`), and :class:`Listener`, what every connection of one listening socket
shares and the factory of its :class:`~gateway.httpserver.Connection` protocols.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import ConfigError
from gateway.httpexchange import Reply, ServerRequest
from gateway.httpserver import AVAILABLE, Connection
from gateway.idle import Expiry

Handler = Callable[[ServerRequest], Awaitable[Reply]]
Claims = Callable[[str], bool]
"""``claims(path)``: whether a ``POST`` to ``path`` is served here."""


def use_raw_server(choice: str) -> bool:
    """Whether ``server.http_server`` (``auto``, ``raw``, ``aiohttp``) picks this server.

    ``auto`` picks it when ``httptools`` is installed; ``raw`` without it is a
    :class:`ConfigError`.
    """
    if choice == "raw" and not AVAILABLE:
        raise ConfigError(
            "server.http_server: raw needs httptools (pip install 'llm-stream-gateway[fast]')"
        )
    return choice != "aiohttp" and AVAILABLE


@dataclasses.dataclass(eq=False)
class Listener:
    """What every connection of one listening socket shares; the protocol factory."""

    app: web.Application
    aiohttp_server: web.Server  # a connection handed off gets one of its handlers
    _: dataclasses.KW_ONLY
    handler: Handler
    claims: Claims
    max_body_bytes: Callable[[], int]
    keepalive_timeout: float
    connections: set[Connection] = dataclasses.field(default_factory=set)
    idle: Expiry[Connection] = dataclasses.field(init=False)
    """The idle connections' keep-alive deadlines (one loop timer for all: ``gateway/idle.py``;
    acted on up to an eighth of the timeout late)."""

    def __post_init__(self) -> None:
        self.idle = Expiry(Connection.close, granularity=min(1.0, self.keepalive_timeout / 8))

    def __call__(self) -> Connection:
        return Connection(self)

    def close_all(self) -> None:
        """Close every connection still here (at shutdown, after the streams ended): an idle one
        after its buffered bytes, one still serving or holding unsent bytes at once (a client
        that does not read would keep a graceful close, and the connection, open for good)."""
        for conn in list(self.connections):
            transport = conn.transport
            if conn.task is not None or (transport and transport.get_write_buffer_size()):
                conn.abort()
            else:
                conn.close()
        self.idle.close()
