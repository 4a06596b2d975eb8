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
    # A mapping key is written as a key even when it is a number: `s[1]` would read as a list
    # index where there is no list.
    r = f.Reader()
    assert r.mapping({1: "x", "a": 2}, "s", ["a"]) == {"a": 2}
    assert r.errors == ["s.1: unknown key (known: a)"]


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (
            "api_key:sk-live-0123456789",
            "up.api_key:***: unknown key (did you mean 'api_key: ...'? YAML needs a space after ':')",
        ),
        (
            "token:sk-live-0123456789",
            "up.token:***: unknown key (known: api_key, model; YAML needs a space after ':')",
        ),
        ("api_key sk-live-0123456789", "up.api_key ***: unknown key (did you mean 'api_key'?)"),
    ],
)
def test_a_key_missing_the_space_after_its_colon_is_not_echoed(key: str, error: str) -> None:
    # `{api_key:sk-...}` in a flow mapping is one key with a null value: the secret is in the key.
    r = f.Reader()
    assert r.mapping({key: None}, "up", ["api_key", "model"]) == {}
    assert r.errors == [error]
    assert "sk-live" not in r.errors[0]


def test_header_name_holding_a_value_is_not_echoed() -> None:
    r = f.Reader()
    assert f.headers(r, {"Authorization:Bearer sk-live-0123456789": None}, "h") is f.BAD
    assert r.errors == ["h.Authorization:***: invalid header name (YAML needs a space after ':')"]


def test_unknown_key_is_reported_even_when_its_value_failed_interpolation() -> None:
    r = f.Reader(silenced={"s.idel"})
    assert r.mapping({"idel": "${UNSET}"}, "s", ["idle"]) == {}
    assert r.errors == ["s.idel: unknown key (did you mean 'idle'?)"]


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


def test_integer_ceiling() -> None:
    # Counts go to Redis and its Lua scripts: past 64 bits every request would fail instead.
    r = f.Reader()
    assert f.integer()(r, f.MAX_COUNT, "a") == f.MAX_COUNT
    assert f.integer(lo=0)(r, 10**23, "b") is f.BAD
    assert f.integer(hi=10)(r, 11, "c") is f.BAD
    assert r.errors == [
        f"b: must be at most {f.MAX_COUNT} (got {10**23})",
        "c: must be between 1 and 10 (got 11)",
    ]


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
