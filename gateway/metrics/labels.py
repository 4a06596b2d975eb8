"""The closed label sets of the stream series (never request data; see ``families``)."""

from __future__ import annotations

OUTCOMES = (
    "completed",
    "client_abort",
    "upstream_error",
    "upstream_timeout",
    "upstream_truncated",
    "limit_exceeded",
    "rejected",
    "shutdown",
    "internal",
)
"""Closed set of stream outcomes (``gateway_requests_total{outcome}``).

``limit_exceeded`` (a gateway limit ended a started stream: output size, slow client) and
``internal`` (a gateway bug) are not in the issue's list but are neither the upstream's nor the
client's doing, so they get their own values instead of hiding inside another one.
"""

ABORT_PHASES = ("before_upstream_headers", "before_first_token", "mid_stream")
TOKEN_KINDS = (
    "input",
    "output",
    "reasoning",
    "cached_input",
    "cache_read_input",
    "cache_write_input",
)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
ATTEMPT_RESULTS = ("ok", "connect_error", "status_error", "timeout", "early_error")
REJECTION_CODES = (
    "invalid_json",
    "invalid_request",
    "unauthorized",
    "forbidden",
    "body_too_large",
    "unsupported_media_type",
    "rate_limited",
    "unavailable",
)
"""The codes a request can be refused with before streaming (pre-created; the error tree bounds
any other code a feature may raise)."""


def status_class(status: int | None) -> str:
    """``2xx`` .. ``5xx`` for an upstream status, ``error`` when no response came (closed set)."""
    if status is None or status < 200:
        return "error"
    return f"{min(status // 100, 5)}xx"
