"""Structured one-line logs: one JSON object per line, never message text or secrets.

``log_event(name, level, **fields)`` writes ``{"ts", "level", "logger", "event": name,
...fields}``. Fields must come from the gateway's own bounded vocabulary (route and app names
from config, outcomes, durations, counts, ids it generated), never from request bodies or
headers.

Every stream writes one such line, so :func:`log_event` skips ``logging``'s machinery (a
``LogRecord``, its file and module names, the filters and handler chain: about 5 µs of a short
stream's CPU) while the gateway's own handler is the only one that would see the line: it
formats the line as :class:`JSONFormatter` would and writes it to that handler's stream under
the handler's lock. With any other handler (a test's capture, an embedding application's)
it goes through ``logging`` as usual.
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
    doc = {
        "ts": round(time.time(), 3),
        "level": logging.getLevelName(level).lower(),
        "logger": "gateway",
        "event": name,
        **fields,
    }
    line = dumps_str(doc) + "\n"
    with handler.lock:  # type: ignore[union-attr]  # a StreamHandler always has its lock
        try:
            handler.stream.write(line)
            handler.stream.flush()
        except Exception:  # as logging does: a broken stream never breaks the caller
            handler.handleError(logging.makeLogRecord({"msg": name}))


def now_ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)
