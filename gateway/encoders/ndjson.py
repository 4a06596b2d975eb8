"""``ndjson``: one JSON object per line, ``{"type": "<event>", ...data}``."""

from __future__ import annotations

from typing import ClassVar

from gateway.encoders.base import Encoder
from gateway.events import Event
from gateway.jsonutil import dumps


class NDJSONEncoder(Encoder):
    """Heartbeats are empty lines, which NDJSON readers skip."""

    name = "ndjson"
    content_type = "application/x-ndjson"
    extra_headers: ClassVar[dict[str, str]] = {"X-Token-Protocol": "1"}

    def encode(self, event: Event) -> bytes:
        return dumps({"type": event.type, **event.data}) + b"\n"

    def heartbeat(self) -> bytes:
        return b"\n"
