"""Structured one-line logs: one JSON object per line, never message text or secrets.

``log_event(name, level, **fields)`` writes ``{"ts", "level", "logger", "event": name,
...fields}``. Fields must come from the gateway's own bounded vocabulary (route and app names
from config, outcomes, durations, counts, ids it generated), never from request bodies or
headers.

Every stream writes one such line, so :func:`log_event` skips ``logging``'s machinery (a
``LogRecord``, its file and module names, the filters and handler chain: 5.7 % of a 1-token
stream's CPU, measured; docs/performance.md) while the gateway's own handler is the only one
that would see the line: it builds the line as :class:`JSONFormatter` does (:func:`line_doc`)
and writes it to that handler's stream under the handler's lock. With any other handler (a
test's capture, an embedding application's) it goes through ``logging`` as usual.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.jsonutil import dumps_str

LOGGER = logging.getLogger("gateway")


def line_doc(
    created: float, level: str, logger: str, event: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """The JSON object of one log line (both ways of writing one use it)."""
    return {
        "ts": round(created, 3),
        "level": level.lower(),
        "logger": logger,
        "event": event,
        **fields,
    }


class JSONFormatter(logging.Formatter):
    """Formats records as JSON lines; ``extra={"fields": {...}}`` is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        doc = line_doc(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            fields if isinstance(fields, dict) else {},
        )
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
    global _HANDLER
    handler = _HANDLER = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


ROOT = logging.getLogger()
_HANDLER: logging.StreamHandler[Any] | None = None
"""The handler :func:`setup_logging` installed (``None`` until it runs)."""


def log_event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON line: event ``name`` with ``fields`` (see the module docs)."""
    if not LOGGER.isEnabledFor(level):
        return
    handler = _HANDLER
    handlers = ROOT.handlers
    if (
        handler is None
        or len(handlers) != 1
        or handlers[0] is not handler
        or LOGGER.handlers
        or LOGGER.filters
        or ROOT.filters
        or handler.filters
        or level < handler.level
        or not LOGGER.propagate
    ):
        LOGGER.log(level, name, extra={"fields": fields})
        return
    doc = line_doc(time.time(), logging.getLevelName(level), LOGGER.name, name, fields)
    line = dumps_str(doc) + "\n"
    with handler.lock:  # type: ignore[union-attr]  # a StreamHandler always has its lock
        try:
            handler.stream.write(line)
            handler.stream.flush()
        except Exception:  # as logging does: a broken stream never breaks the caller
            handler.handleError(logging.makeLogRecord({"msg": name}))


def now_ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)
