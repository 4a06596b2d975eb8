"""The section reader and converters (gateway/config/fields.py), and that specs match the model."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.config import fields as f
from gateway.config.model import (
    AppKey,
    GatewayConfig,
    LimitsConfig,
    RouteConfig,
    ServerConfig,
    UpstreamTarget,
)
from gateway.config.parse import APP_KEY_KEYS, LIMITS_SPEC, SERVER_SPEC, TOP_KEYS
from gateway.config.pool import POOL_ROUTE_KEYS
from gateway.config.routes import ROUTE_KEYS, SECTION_SPECS, TARGET_KEYS


def _fields(cls: type) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    ("cls", "spec"),
    [(ServerConfig, SERVER_SPEC), (LimitsConfig, LIMITS_SPEC), *SECTION_SPECS.items()],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_every_model_field_is_a_known_key(cls: type, spec: dict[str, Any]) -> None:
    # Known keys are exactly the model's fields: a field added to the model must be parsed.
    assert set(spec) == _fields(cls)


def test_route_and_target_keys_match_the_model() -> None:
    # `deployment` is set from a pool's `upstreams[].name`; `pool` is read from upstreams/balance
    assert set(TARGET_KEYS) == _fields(UpstreamTarget) - {"deployment"}
    assert set(ROUTE_KEYS) == (_fields(RouteConfig) - {"primary", "pool"}) | set(TARGET_KEYS) | set(
        POOL_ROUTE_KEYS
    )
    assert set(APP_KEY_KEYS) == _fields(AppKey)
    assert set(TOP_KEYS) == _fields(GatewayConfig)


def test_unknown_key_message() -> None:
    assert (
        f.unknown_key_message("idel", ["connect", "idle"]) == "unknown key (did you mean 'idle'?)"
    )
    assert f.unknown_key_message("zzz", ["b", "a"]) == "unknown key (known: a, b)"
    assert f.unknown_key_message(3, ["a"]) == "unknown key (known: a)"


def test_non_string_keys_are_unknown() -> None:
    r = f.Reader()
    assert r.mapping({1: "x", "a": 2}, "s", ["a"]) == {"a": 2}
    assert r.errors == ["s[1]: unknown key (known: a)"]


def test_silenced_paths_are_not_reported_twice() -> None:
    r = f.Reader(silenced={"s.port"})
    r.error("s.port", "expected an integer")
    r.error("s.host", "bad")
    assert r.errors == ["s.host: bad"]


@pytest.mark.parametrize(
    ("value", "expected"), [(5, 5), ("5", 5), (" 7 ", 7), ("x", f.BAD), (5.0, f.BAD), (0, f.BAD)]
)
def test_integer(value: object, expected: object) -> None:
    got = f.integer()(f.Reader(), value, "p")
    if expected is f.BAD:
        assert got is f.BAD
    else:
        assert got == expected and type(got) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("False", False), ("yes", f.BAD), (1, f.BAD)],
)
def test_boolean(value: object, expected: object) -> None:
    assert f.boolean(f.Reader(), value, "p") == expected


def test_nullable_converters() -> None:
    r = f.Reader()
    assert f.integer(nullable=True)(r, None, "a") is None
    assert f.duration(nullable=True)(r, None, "b") is None
    assert f.size(nullable=True)(r, None, "c") is None
    assert f.string(nullable=True)(r, None, "d") is None
    assert r.errors == []
    assert f.integer()(r, None, "e") is f.BAD
    assert r.errors == ["e: expected an integer, got null"]


def test_build_keeps_defaults_for_rejected_fields() -> None:
    r = f.Reader()
    server = r.build(ServerConfig, {"port": "x", "host": "h"}, "server", SERVER_SPEC)
    assert server == ServerConfig(host="h")
    assert r.errors == ["server.port: expected an integer, got a string"]
