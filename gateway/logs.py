"""Structured one-line logs: one JSON object per line, never message text or secrets.

``log_event(name, level, **fields)`` writes ``{"ts", "level", "logger", "event": name,
...fields}``. Fields must come from the gateway's own bounded vocabulary (route and app names
from config, outcomes, durations, counts, ids it generated), never from request bodies or
headers.

Every stream writes one such line, so :func:`log_event` skips ``logging``'s machinery (a
``LogRecord``, its file and module names, the filters and handler chain: 5.7 % of a 1-token
stream's CPU, measured; docs/performance.md) while the gateway's own handler is the only one
that would see the line: it builds the line as :class:`JSONFormatter` does (:func:`line_doc`)
and writes it to that handler's stream under the handler's lock (as bytes to the stream's byte
layer when it has one, as ``sys.stderr`` does: the JSON is bytes already). With any other
handler (a test's capture, an embedding application's) it goes through ``logging`` as usual.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.jsonutil import dumps_line, dumps_str

LOGGER = logging.getLogger("gateway")


def line_doc(
    created: float, level: str, logger: str, event: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """The JSON object of one log line (both ways of writing one use it)."""
    return {
        "ts": round(created * 1000) / 1000,  # round(created, 3) formats and parses a decimal
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


_LEVEL_NAMES = {
    level: logging.getLevelName(level)
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}
"""``logging.getLevelName`` for the standard levels, without its Python call."""

ROOT = logging.getLogger()
_HANDLER: logging.StreamHandler[Any] | None = None
"""The handler :func:`setup_logging` installed (``None`` until it runs)."""


def log_event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON line: event ``name`` with ``fields`` (see the module docs)."""
    log_fields(name, fields, level)


def log_fields(name: str, fields: dict[str, Any], level: int = logging.INFO) -> None:
    """:func:`log_event` with the fields in a dict the caller built (it is not kept). For the
    line every stream writes: keyword arguments would be packed into a dict by the caller and
    again by the call, fifteen fields twice (2.3 % of a 1-token request, counted)."""
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
    level_name = _LEVEL_NAMES.get(level) or logging.getLevelName(level)
    line = dumps_line(line_doc(time.time(), level_name, LOGGER.name, name, fields))
    stream = handler.stream
    binary = getattr(stream, "buffer", None)  # a text file's byte layer (sys.stderr's)
    with handler.lock:  # type: ignore[union-attr]  # a StreamHandler always has its lock
        try:
            if binary is None:  # a text-only stream (a test's capture)
                stream.write(line.decode())
                stream.flush()
            else:  # the JSON is bytes already: no decoding and re-encoding
                stream.flush()  # text written before this line goes out first
                binary.write(line)
                binary.flush()
        except Exception:  # as logging does: a broken stream never breaks the caller
            handler.handleError(logging.makeLogRecord({"msg": name}))


def now_ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)
