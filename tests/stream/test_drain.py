"""gateway.stream.drain: the pieces shared by a drain and a detached (resumable) stream."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway import events as ev
from gateway.events import Event
from gateway.stream.drain import fold_batch, record_after_abort, share_after


class _Metrics:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, int], int]] = []

    def drained(self, usage: dict[str, int], after_abort: int) -> None:
        self.calls.append((dict(usage), after_abort))


def _record() -> Any:
    return SimpleNamespace(metrics=_Metrics())


def test_fold_batch_folds_usage_and_flags_content() -> None:
    usage: dict[str, Any] = {"input_tokens": 3}
    batch = [
        Event(ev.DELTA, {"text": "hi"}),
        Event(ev.USAGE, {"output_tokens": 5}),
        Event(ev.USAGE, {"output_tokens": 7, "total_tokens": 10}),
    ]
    assert fold_batch(batch, usage) == 1
    assert usage == {"input_tokens": 3, "output_tokens": 7, "total_tokens": 10}


def test_fold_batch_without_content_is_zero() -> None:
    usage: dict[str, Any] = {}
    assert fold_batch([Event(ev.USAGE, {"output_tokens": 2})], usage) == 0
    assert usage == {"output_tokens": 2}
    assert fold_batch([], usage) == 0


def test_record_after_abort_records_only_the_fresh_usage() -> None:
    record = _record()
    before = {"input_tokens": 10, "output_tokens": 4}
    usage = {"input_tokens": 10, "output_tokens": 12, "model": "m"}
    record_after_abort(record, before, usage, writes_before=2, reads_after=2)
    assert record.metrics.calls == [({"output_tokens": 8}, share_after(8, 2, 2))]
    assert record.metrics.calls[0][1] == 4


def test_record_after_abort_records_nothing_when_nothing_came() -> None:
    record = _record()
    before = {"input_tokens": 10, "output_tokens": 4}
    record_after_abort(record, before, dict(before), writes_before=3, reads_after=0)
    assert record.metrics.calls == []


def test_share_after_without_content_before_is_everything() -> None:
    assert share_after(9, 0, 0) == 9
    assert share_after(9, 0, 3) == 9
    assert share_after(9, 3, 0) == 0
