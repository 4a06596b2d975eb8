"""``text``: the seed's raw style. Visible text as it streams, plus optional marker strings.

Reasoning, tool calls and usage have no place in plain text and are left out. Markers for
created / thinking / clear / end / error come from the route's ``text_markers`` (empty by
default). There is no heartbeat: any byte would be text.

A failed stream (an ``error`` event after the headers) writes its marker, if any, and then ends
cut short: no end of the chunked body, the connection closed (``cut_on_error``). With the
default empty markers a failure would otherwise be a clean end after partial text, the seed's
"failure that looks like success"; every HTTP client reports a body cut short as an error.
"""

from __future__ import annotations

from gateway import events as ev
from gateway.encoders.base import Encoder
from gateway.events import Event


class TextEncoder(Encoder):
    name = "text"
    content_type = "text/plain; charset=utf-8"
    cut_on_error = True

    def encode(self, event: Event) -> bytes:
        kind = event.type
        if kind == ev.DELTA:
            text: str = event.data["text"]
            return text.encode()
        markers = self.route.text_markers
        marker = getattr(markers, kind, "") if kind in _MARKED else ""
        return marker.encode() if marker else b""


_MARKED = frozenset({ev.CREATED, ev.THINKING, ev.CLEAR, ev.END, ev.ERROR})
