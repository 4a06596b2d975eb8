"""``text``: the seed's raw style. Visible text as it streams, plus optional marker strings.

Reasoning, tool calls and usage have no place in plain text and are left out. Markers for
created / thinking / clear / end / error come from the route's ``text_markers`` (empty by
default). There is no heartbeat: any byte would be text.
"""

from __future__ import annotations

from gateway import events as ev
from gateway.encoders.base import Encoder
from gateway.events import Event


class TextEncoder(Encoder):
    name = "text"
    content_type = "text/plain; charset=utf-8"

    def encode(self, event: Event) -> bytes:
        kind = event.type
        if kind == ev.DELTA:
            text: str = event.data["text"]
            return text.encode()
        markers = self.route.text_markers
        marker = getattr(markers, kind, "") if kind in _MARKED else ""
        return marker.encode() if marker else b""


_MARKED = frozenset({ev.CREATED, ev.THINKING, ev.CLEAR, ev.END, ev.ERROR})
