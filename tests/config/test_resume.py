"""Validation of a route's ``resume`` block and ``on_client_abort: detach`` (config/resume.py)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from gateway.config.model import ResumeConfig
from tests.config.fakes import errors_of, one_route, parse, route


def test_absent_means_off() -> None:
    assert parse(one_route()).routes[0].resume == ResumeConfig(enabled=False)


def test_block_turns_it_on_with_defaults() -> None:
    r = parse(one_route(resume={"window": "5m"})).routes[0]
    assert r.resume == ResumeConfig(enabled=True, window=300.0, max_events=20000, store="memory")


def test_explicit_values_and_detach() -> None:
    doc = one_route(
        resume={"enabled": True, "window": "250ms", "max_events": 7, "store": "redis"},
        on_client_abort="detach",
    )
    doc["limits"] = {"redis_url": "redis://127.0.0.1:6390/1"}
    r = parse(doc).routes[0]
    assert r.resume == ResumeConfig(True, 0.25, 7, "redis")
    assert r.on_client_abort == "detach"


def test_enabled_false_keeps_it_off() -> None:
    r = parse(one_route(resume={"enabled": False, "max_events": 3})).routes[0]
    assert (r.resume.enabled, r.resume.max_events) == (False, 3)


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ({"windw": "1m"}, "routes[0].resume.windw: unknown key (did you mean 'window'?)"),
        ({"window": 0}, "routes[0].resume.window: must be greater than zero"),
        ({"max_events": 0}, "routes[0].resume.max_events: must be >= 1"),
        ({"store": "disk"}, "routes[0].resume.store: must be one of memory, redis"),
        ({"enabled": "yes"}, "routes[0].resume.enabled: expected true or false"),
        ([1], "routes[0].resume: expected a mapping"),
    ],
)
def test_bad_values_name_their_path(block: Any, error: str) -> None:
    (got,) = errors_of(one_route(resume=block))
    assert got.startswith(error)


def test_redis_store_needs_a_redis_url() -> None:
    doc = {"routes": [route(name="a"), route(name="b", resume={"store": "redis"})]}
    assert errors_of(doc) == ["routes[1].resume.store: 'redis' needs limits.redis_url"]


def test_redis_needs_the_redis_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without it, such a config started, then failed open or closed on every request.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else find_spec(name)
    )
    doc = {
        "limits": {"backend": "redis", "redis_url": "redis://127.0.0.1:6379/0"},
        "routes": [route(name="a", resume={"store": "redis"})],
    }
    missing = "'redis' needs the optional redis package, which is not installed"
    got = errors_of(doc)
    assert [e.split(": ", 1)[0] for e in got] == ["routes[0].resume.store", "limits.backend"]
    assert all(missing in e for e in got)
    monkeypatch.undo()
    assert parse(doc).limits.backend == "redis"  # the test extra installs it


def test_detach_needs_resume() -> None:
    (got,) = errors_of(one_route(on_client_abort="detach"))
    assert got == "routes[0].on_client_abort: 'detach' needs resume.enabled: true"


def test_a_format_without_event_ids_cannot_be_resumed() -> None:
    (got,) = errors_of(one_route(format="text", resume={}))
    assert got.startswith("routes[0].resume.enabled: format 'text' cannot be resumed")
