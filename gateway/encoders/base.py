"""The encoder interface: token-protocol events to the client's wire format. Pure.

One encoder instance per stream (it may keep state, such as the SSE ``id`` counter). ``encode``
returns the bytes for one event (possibly ``b""``); ``heartbeat`` the bytes to send during
silence (``b""`` where the format has no way to say nothing). Payload text can never break a
frame: JSON encoding escapes newlines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from gateway.config.model import RouteConfig
from gateway.events import Event


class Encoder(ABC):
    name: ClassVar[str]
    content_type: ClassVar[str]
    extra_headers: ClassVar[dict[str, str]] = {}
    buffered: ClassVar[bool] = False
    """A non-streaming answer: one document at the terminal event, sent with :attr:`status`."""
    status: int = 200
    """The HTTP status of a buffered answer (an error document sets its own)."""
    retryable: bool = False
    """A buffered answer's error may succeed if asked again (its event's ``retryable``): the
    sink says so in ``x-should-retry``, which the official SDKs obey over their own rules."""
    cut_on_error: ClassVar[bool] = False
    """A failed stream ends cut short (no end of body, the connection closed after its last
    bytes) instead of with the body's end: for a format that has no error of its own, whose
    failure would otherwise look like a success to the client (``text``)."""

    def __init__(self, route: RouteConfig, request_id: str) -> None:
        self.route = route
        self.request_id = request_id

    @abstractmethod
    def encode(self, event: Event) -> bytes:
        """The bytes for ``event``."""

    def heartbeat(self) -> bytes:
        """Bytes that keep proxies from cutting a silent stream; ``b""`` for none."""
        return b""

    def close(self) -> bytes:
        """Bytes written after the terminal event's own bytes (e.g. a ``[DONE]`` sentinel)."""
        return b""
