"""Structured one-line logs: one JSON object per line, never message text or secrets.

``log_event(logger, name, **fields)`` writes ``{"ts", "level", "event": name, ...fields}``.
Fields must come from the gateway's own bounded vocabulary (route and app names from config,
outcomes, durations, counts, ids it generated), never from request bodies or headers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.jsonutil import dumps_str

LOGGER = logging.getLogger("gateway")


class JSONFormatter(logging.Formatter):
    """Formats records as JSON lines; ``extra={"fields": {...}}`` is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.levelno >= logging.ERROR:
            doc["exception"] = self.formatException(record.exc_info)
        return dumps_str(doc)


def setup_logging(level: str = "info") -> None:
    """Route the gateway's and aiohttp's logs to stderr as JSON lines.

    aiohttp's access log is silenced (the gateway writes its own stream line) and its server
    log is kept at WARNING so malformed client requests cannot flood the log with tracebacks.
    """
    # The JSON lines use none of these; gathering them (a stack walk for the caller, the thread
    # and process names) was a measurable share of a short stream's CPU.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def log_event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, name, extra={"fields": fields})


def now_ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)
