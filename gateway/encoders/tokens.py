"""``tokens``: the token protocol v1 as Server-Sent Events (contract section 5). The default."""

from __future__ import annotations

from typing import ClassVar

from gateway.config.model import RouteConfig
from gateway.encoders.base import Encoder
from gateway.events import Event
from gateway.jsonutil import dumps

_PING = b": ping\n\n"


class TokensEncoder(Encoder):
    """``id: N\\nevent: TYPE\\ndata: JSON\\n\\n`` with N counting 1, 2, 3 ... per stream."""

    name = "tokens"
    content_type = "text/event-stream; charset=utf-8"
    extra_headers: ClassVar[dict[str, str]] = {"X-Token-Protocol": "1"}

    def __init__(self, route: RouteConfig, request_id: str) -> None:
        super().__init__(route, request_id)
        self._n = 0

    def encode(self, event: Event) -> bytes:
        self._n += 1
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (
            self._n,
            event.type.encode(),
            dumps(event.data),
        )

    def heartbeat(self) -> bytes:
        return _PING


def tokens_frame(event_id: int, event: Event) -> bytes:
    """One ``tokens`` frame with an explicit id (what :meth:`TokensEncoder.encode` writes as
    its ``event_id``-th event). A stream's recorded tail written by someone other than its
    encoder (the Redis store ending a crashed replica's stream) uses it."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.type.encode(), dumps(event.data))
