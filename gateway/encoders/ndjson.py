"""``ndjson``: one JSON object per line, ``{"type": "<event>", ...data}``.

The line's ``type`` is always the event's. The one event whose data has a ``type`` of its own,
an ``error`` carrying the provider's error type (``overloaded_error``), has it as
``error_type`` here: spread after the event's, it replaced it, and a client looking for the
terminal ``{"type": "error"}`` line never saw one.
"""

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
        data = event.data
        if "type" in data:  # an error's provider type (see the module docs)
            data = {("error_type" if key == "type" else key): v for key, v in data.items()}
        return dumps({"type": event.type, **data}) + b"\n"

    def heartbeat(self) -> bytes:
        return b"\n"
