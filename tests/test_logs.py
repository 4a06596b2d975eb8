"""The JSON log lines (``gateway/logs.py``): the direct path writes what ``logging`` would."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway import logs
from gateway.logs import JSONFormatter, log_event, log_fields, setup_logging


@pytest.fixture
def gateway_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], io.StringIO]]:
    """Calls ``setup_logging("info")`` onto a captured stderr; the root logger restored after.

    Each test calls it in its body: pytest swaps ``sys.stderr`` and adds its capture handlers
    to the root logger when the body starts, and ``setup_logging`` must come after, as it does
    in the gateway.
    """
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(logs, "_HANDLER", None)

    def configure() -> io.StringIO:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        setup_logging("info")
        return stream

    try:
        yield configure
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _without_ts(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "ts"}


FIELDS: dict[str, Any] = {"route": "chat", "id": "abc", "ttft_ms": 1.5, "code": None, "events": 4}


def test_the_direct_line_is_the_formatters_line(
    gateway_logging: Callable[[], io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = gateway_logging()
    with monkeypatch.context() as m:  # the direct path must not go through logging at all
        m.setattr(logs.LOGGER, "log", lambda *a, **k: pytest.fail("went through logging"))
        log_event("stream", **FIELDS)
    other = io.StringIO()  # a second handler: now the line goes through logging to both
    extra = logging.StreamHandler(other)
    extra.setFormatter(JSONFormatter())
    logging.getLogger().addHandler(extra)
    log_event("stream", **FIELDS)
    direct, formatted = _lines(stderr)
    assert _without_ts(direct) == _without_ts(formatted) == _without_ts(_lines(other)[0])
    assert direct["event"] == "stream" and direct["level"] == "info"
    assert direct["logger"] == "gateway" and direct["code"] is None
    assert abs(direct["ts"] - formatted["ts"]) < 5


def test_fields_in_a_dict_make_the_same_line_as_keywords(
    gateway_logging: Callable[[], io.StringIO],
) -> None:
    stderr = gateway_logging()
    fields = dict(FIELDS)
    log_fields("stream", fields)
    log_event("stream", **FIELDS)
    log_fields("dropped", {"n": 1}, logging.DEBUG)  # under the level: nothing
    log_fields("bad", {"n": 2}, logging.ERROR)
    by_dict, by_keywords, bad = _lines(stderr)
    assert _without_ts(by_dict) == _without_ts(by_keywords)
    assert by_dict["event"] == "stream" and by_dict["route"] == "chat"
    assert bad["level"] == "error" and bad["n"] == 2
    assert fields == FIELDS  # the caller's dict is not changed


def test_on_a_file_stream_the_line_goes_to_its_byte_layer_after_earlier_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(logs, "_HANDLER", None)
    raw = io.BytesIO()
    stderr = io.TextIOWrapper(raw, encoding="utf-8", line_buffering=True)  # as sys.stderr is
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        setup_logging("info")
        stderr.write("partial ")  # text still in the text layer: it must not come after
        log_event("stream", **FIELDS, note="naïve")
        logging.getLogger("gateway").warning("through logging")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    first, second = raw.getvalue().decode().splitlines()
    assert first.startswith("partial {")
    doc = json.loads(first.removeprefix("partial "))
    assert _without_ts(doc) == {
        "level": "info",
        "logger": "gateway",
        "event": "stream",
        **FIELDS,
        "note": "naïve",
    }
    assert json.loads(second)["event"] == "through logging"


def test_the_time_has_three_decimals() -> None:
    doc = logs.line_doc(1733500000.1234567, "INFO", "gateway", "x", {})
    assert doc["ts"] == 1733500000.123
    assert logs.line_doc(12.0005, "INFO", "gateway", "x", {})["ts"] in (12.0, 12.001)


def test_levels_below_the_configured_one_are_not_written(
    gateway_logging: Callable[[], io.StringIO],
) -> None:
    stderr = gateway_logging()
    log_event("chatty", logging.DEBUG, n=1)
    log_event("bad", logging.ERROR, n=2)
    assert [(d["event"], d["level"]) for d in _lines(stderr)] == [("bad", "error")]


def test_a_broken_stream_does_not_break_the_caller(
    gateway_logging: Callable[[], io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: str) -> int:
        raise BrokenPipeError

    stderr = gateway_logging()
    monkeypatch.setattr(stderr, "write", broken)
    monkeypatch.setattr(logging, "raiseExceptions", False)  # as in production: no traceback
    log_event("stream", **FIELDS)  # does not raise


def test_without_setup_the_line_goes_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway"):
        log_event("stream", route="chat")
    assert [(r.getMessage(), r.fields) for r in caplog.records] == [("stream", {"route": "chat"})]  # type: ignore[attr-defined]
