"""Validation of ``routes[]`` (gateway/config/routes.py), through ``parse_config`` with fakes."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.adapters._kit import validate_options
from gateway.config import (
    CorsConfig,
    RouteLimits,
    TextMarkers,
    Timeouts,
    UpstreamConfig,
    UpstreamTarget,
)
from gateway.config.routes import RESERVED_PATHS
from tests.config.fakes import errors_of, one_route, parse, route


def test_minimal_route_defaults() -> None:
    (r,) = parse(one_route()).routes
    assert r.name == "r"
    assert r.path == "/v1/stream/r"
    assert r.format == "tokens"
    assert r.primary == UpstreamTarget("local", UpstreamConfig(), Timeouts(), {})
    assert r.fallbacks == ()
    assert (r.on_client_abort, r.drain_timeout, r.request) == ("cancel", 60.0, "common")
    assert r.max_stream_duration is None and r.max_output_bytes is None
    assert r.text_markers == TextMarkers() and r.cors is None and r.limits == RouteLimits()
    assert r.allow_model_override is False


@pytest.mark.parametrize("name", ["demo", "a", "0", "gpt-5_mini", "r2"])
def test_good_names(name: str) -> None:
    assert parse(one_route(name=name)).routes[0].name == name


@pytest.mark.parametrize("name", ["Demo", "-x", "_x", "a b", "a/b", "", "é", 5, True, ["a"]])
def test_bad_names(name: object) -> None:
    assert errors_of(one_route(name=name)) == [
        f"routes[0].name: invalid name {name!r} (use [a-z0-9][a-z0-9_-]*)"
    ]


def test_name_required() -> None:
    assert errors_of({"routes": [{"provider": "local"}]}) == [
        "routes[0].name: missing required key"
    ]


def test_duplicate_names() -> None:
    doc = {"routes": [route(name="a"), route(name="b"), route(name="a")]}
    assert errors_of(doc) == ["routes[2].name: duplicate route name 'a' (also routes[0])"]


@pytest.mark.parametrize("path", ["/chat", "/v1/stream/x", "/a/b.c~d-e_f/", "/API/v2"])
def test_explicit_paths(path: str) -> None:
    assert parse(one_route(path=path)).routes[0].path == path


def test_path_must_start_with_slash() -> None:
    assert errors_of(one_route(path="v1/x")) == ["routes[0].path: must start with '/' (got 'v1/x')"]


@pytest.mark.parametrize(
    "path", ["/a b", "/a/{name}", "/a//b", "/a/../b", "/./a", "/a?x=1", "/a#b"]
)
def test_invalid_paths(path: str) -> None:
    (error,) = errors_of(one_route(path=path))
    assert error.startswith(f"routes[0].path: invalid path {path!r}")


@pytest.mark.parametrize(
    "path", [*sorted(RESERVED_PATHS), "/metrics/", "/static", "/static/app.js", "/static/x/y"]
)
def test_reserved_paths(path: str) -> None:
    assert errors_of(one_route(path=path)) == [
        f"routes[0].path: {path!r} is reserved for the gateway's own endpoints"
    ]


def test_reserved_set_covers_the_contract() -> None:
    expected = {"/", "/metrics", "/healthz", "/readyz", "/v1/routes", "/v1/chat/completions"}
    front_doors = {"/v1/responses", "/v1/messages", "/v1/messages/count_tokens"}
    assert expected | front_doors | {"/v1/models"} == RESERVED_PATHS


def test_duplicate_paths() -> None:
    doc = {"routes": [route(name="a", path="/x"), route(name="b", path="/x")]}
    assert errors_of(doc) == ["routes[1].path: duplicate path '/x' (also routes[0])"]


def test_explicit_path_colliding_with_a_default_path() -> None:
    doc = {"routes": [route(name="a"), route(name="b", path="/v1/stream/a")]}
    assert errors_of(doc) == ["routes[1].path: duplicate path '/v1/stream/a' (also routes[0])"]


def test_provider_required() -> None:
    assert errors_of({"routes": [{"name": "r"}]}) == ["routes[0].provider: missing required key"]


@pytest.mark.parametrize("provider", ["lokal", "", 3, None])
def test_unknown_provider_lists_known(provider: object) -> None:
    assert errors_of(one_route(provider=provider)) == [
        f"routes[0].provider: unknown provider {provider!r} (known: bare, local, remote, tunable)"
    ]


def test_upstream_block_required_when_needed_without_default() -> None:
    assert errors_of(one_route(provider="bare")) == [
        "routes[0].upstream: required by provider 'bare'"
    ]


def test_base_url_required_when_needed_without_default() -> None:
    assert errors_of(one_route(provider="bare", upstream={"model": "m"})) == [
        "routes[0].upstream.base_url: required by provider 'bare' (it has no default)"
    ]


def test_default_base_url_makes_upstream_optional() -> None:
    (r,) = parse(one_route(provider="remote")).routes
    assert r.primary.upstream == UpstreamConfig()


def test_upstream_fields() -> None:
    upstream = {
        "base_url": "http://127.0.0.1:8000/v1",
        "api_key": "sk-1",
        "model": "m-1",
        "headers": {"X-Org": "o", "x-trace": ""},
    }
    (r,) = parse(one_route(provider="bare", upstream=upstream)).routes
    assert r.primary.upstream == UpstreamConfig(
        "http://127.0.0.1:8000/v1", "sk-1", "m-1", {"X-Org": "o", "x-trace": ""}
    )


@pytest.mark.parametrize(
    "url", ["ftp://x", "example.com/v1", "https://", "http://a b", "http://h:99999", 5]
)
def test_bad_base_url(url: object) -> None:
    (error,) = errors_of(one_route(provider="bare", upstream={"base_url": url}))
    assert error.startswith("routes[0].upstream.base_url: ")
    assert "URL" in error


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        (
            {"X-N": 5},
            "routes[0].upstream.headers.X-N: expected a string header value, got a number",
        ),
        ({"X-A": "a\r\nX-B: b"}, "routes[0].upstream.headers.X-A: header value must not contain"),
        ({"Bad Name": "v"}, "routes[0].upstream.headers.Bad ***: invalid header name"),
        (
            {"X-Team": "équipe ✓"},
            "routes[0].upstream.headers.X-Team: header value must not contain characters "
            "outside Latin-1",
        ),
        (["X-A"], "routes[0].upstream.headers: expected a mapping, got a list"),
    ],
)
def test_bad_headers(headers: object, error: str) -> None:
    (got,) = errors_of(one_route(upstream={"headers": headers}))
    assert got.startswith(error)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("sk-\u2019live-secret", "must not contain characters outside Latin-1"),
        ("sk-live\nX-Injected: 1", "must not contain CR, LF or NUL"),
        (5, "expected a string, got a number"),
    ],
)
def test_an_api_key_no_header_can_carry_is_refused_without_quoting_it(
    key: object, error: str
) -> None:
    """Every adapter sends the key in a header: a key with a typographic quote pasted in (or a
    line break) would fail every request of the route with a 500; said at load, unquoted."""
    (got,) = errors_of(one_route(upstream={"api_key": key}))
    assert got == f"routes[0].upstream.api_key: {error}"
    assert "secret" not in got


def test_a_latin1_header_value_is_accepted() -> None:
    (r,) = parse(one_route(upstream={"headers": {"X-Team": "équipe"}})).routes
    assert r.primary.upstream.headers == {"X-Team": "équipe"}


def test_upstream_unknown_key_suggests() -> None:
    assert errors_of(one_route(upstream={"api_kye": "x"})) == [
        "routes[0].upstream.api_kye: unknown key (did you mean 'api_key'?)"
    ]


def test_timeouts_with_units() -> None:
    timeouts = {"connect": "250ms", "first_event": 90, "idle": "2m", "total": "1.5h"}
    (r,) = parse(one_route(timeouts=timeouts)).routes
    assert r.primary.timeouts == Timeouts(connect=0.25, first_event=90.0, idle=120.0, total=5400.0)


def test_timeouts_unknown_key_suggests() -> None:
    assert errors_of(one_route(timeouts={"idel": "3s"})) == [
        "routes[0].timeouts.idel: unknown key (did you mean 'idle'?)"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be greater than zero (got 0)"),
        ("0s", "must be greater than zero (got '0s')"),
        (-1, "invalid duration -1 (must not be negative)"),
        ("soon", "invalid duration 'soon'"),
    ],
)
def test_bad_timeouts(value: object, message: str) -> None:
    (error,) = errors_of(one_route(timeouts={"idle": value}))
    assert error.startswith(f"routes[0].timeouts.idle: {message}")


def test_options_validated_and_normalised_by_the_adapter() -> None:
    (r,) = parse(one_route(provider="tunable", options={"speed": 2})).routes
    assert r.primary.options == {"speed": 2.0}
    (r,) = parse(one_route(provider="tunable")).routes
    assert r.primary.options == {"speed": 1.0}


def test_option_errors_carry_the_path() -> None:
    assert errors_of(one_route(provider="tunable", options={"speed": -1, "sped": 1})) == [
        "routes[0].options.speed: must be a positive number",
        "routes[0].options.sped: unknown option for provider 'tunable'",
    ]


def test_unknown_adapter_option_suggests_the_closest() -> None:
    table = {"speed": (1.0, lambda v: None), "mode": ("a", lambda v: None)}
    assert validate_options("p", {"sped": 1, "zzz": 2}, "routes[0].options", table)[1] == [
        "routes[0].options.sped: unknown option for provider 'p' (did you mean 'speed'?)",
        "routes[0].options.zzz: unknown option for provider 'p'",
    ]
    assert validate_options("p", {"x": 1}, "o", {})[1] == ["o.x: unknown option for provider 'p'"]


def test_default_parse_options_accepts_nothing() -> None:
    assert errors_of(one_route(options={"x": 1})) == [
        "routes[0].options.x: unknown option for provider 'local'"
    ]


def test_options_must_be_a_mapping() -> None:
    assert errors_of(one_route(options=[1])) == [
        "routes[0].options: expected a mapping, got a list"
    ]


@pytest.mark.parametrize("fmt", ["tokens", "text", "ndjson"])
def test_format(fmt: str) -> None:
    assert parse(one_route(format=fmt)).routes[0].format == fmt


def test_unknown_format() -> None:
    assert errors_of(one_route(format="sse")) == [
        "routes[0].format: unknown format 'sse' (known: ndjson, text, tokens)"
    ]


def test_fallbacks_are_upstream_targets() -> None:
    fallbacks = [
        {"provider": "remote", "upstream": {"model": "m2"}, "timeouts": {"connect": "1s"}},
        {"provider": "tunable", "options": {"speed": 3}},
    ]
    (r,) = parse(one_route(fallbacks=fallbacks)).routes
    assert r.fallbacks == (
        UpstreamTarget("remote", UpstreamConfig(model="m2"), Timeouts(connect=1.0), {}),
        UpstreamTarget("tunable", UpstreamConfig(), Timeouts(), {"speed": 3.0}),
    )
    assert [t.provider for t in r.targets] == ["local", "remote", "tunable"]


def test_fallback_errors_carry_the_path() -> None:
    fallbacks = [
        {"provider": "local"},
        {"provider": "lokal"},
        {"provider": "bare"},
        {"provider": "tunable", "options": {"speed": 0}, "format": "text"},
        "local",
    ]
    assert errors_of(one_route(fallbacks=fallbacks)) == [
        "routes[0].fallbacks[1].provider: unknown provider 'lokal' "
        "(known: bare, local, remote, tunable)",
        "routes[0].fallbacks[2].upstream: required by provider 'bare'",
        "routes[0].fallbacks[3].format: unknown key (known: options, provider, timeouts, upstream)",
        "routes[0].fallbacks[3].options.speed: must be a positive number",
        "routes[0].fallbacks[4]: expected a mapping, got a string",
    ]


def test_fallbacks_must_be_a_list() -> None:
    assert errors_of(one_route(fallbacks={"provider": "local"})) == [
        "routes[0].fallbacks: expected a list, got a mapping"
    ]


def test_route_behaviour_keys() -> None:
    keys: dict[str, Any] = {
        "on_client_abort": "drain",
        "drain_timeout": "90s",
        "max_stream_duration": "30m",
        "max_output_bytes": "4MiB",
        "allow_model_override": True,
        "request": "native",
        "text_markers": {"created": "[C]", "end": "[END]"},
        "limits": {"concurrent_streams": 5, "requests_per_minute": None},
    }
    (r,) = parse(one_route(**keys)).routes
    assert (r.on_client_abort, r.drain_timeout, r.request) == ("drain", 90.0, "native")
    assert (r.max_stream_duration, r.max_output_bytes) == (1800.0, 4 * 1024 * 1024)
    assert r.allow_model_override is True
    assert r.text_markers == TextMarkers(created="[C]", end="[END]")
    assert r.limits == RouteLimits(concurrent_streams=5)


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("on_client_abort", "stop", "must be one of cancel, drain, detach (got 'stop')"),
        ("request", "raw", "must be one of common, native (got 'raw')"),
        ("drain_timeout", 0, "must be greater than zero (got 0)"),
        ("max_stream_duration", "-1m", "invalid duration '-1m' (must not be negative)"),
        ("max_output_bytes", 0, "must be greater than zero (got 0)"),
        ("max_output_bytes", "4 parsecs", "invalid size '4 parsecs'"),
        ("allow_model_override", "yes", "expected true or false, got a string"),
        ("text_markers", {"created": 1}, None),
        ("limits", {"concurrent_streams": 0}, None),
    ],
)
def test_bad_route_values(key: str, value: object, error: str | None) -> None:
    (got,) = errors_of(one_route(**{key: value}))
    if error is None:
        assert got.startswith(f"routes[0].{key}.")
    else:
        assert got.startswith(f"routes[0].{key}: {error}")


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({"concurrent_streams": 0}, "concurrent_streams: must be >= 1 (got 0)"),
        ({"tokens_per_minute": -5}, "tokens_per_minute: must be >= 1 (got -5)"),
        ({"requests_per_minute": 1.5}, "requests_per_minute: expected an integer, got a number"),
        (
            {"requests_per_min": 1},
            "requests_per_min: unknown key (did you mean 'requests_per_minute'?)",
        ),
    ],
)
def test_bad_route_limits(limits: dict[str, Any], error: str) -> None:
    assert errors_of(one_route(limits=limits)) == [f"routes[0].limits.{error}"]


def test_text_markers_unknown_key() -> None:
    assert errors_of(one_route(text_markers={"thinkng": "…"})) == [
        "routes[0].text_markers.thinkng: unknown key (did you mean 'thinking'?)"
    ]


def test_cors() -> None:
    cors = {
        "allow_origins": ["https://app.example", "http://localhost:3000"],
        "allow_headers": ["Content-Type", "X-Custom"],
        "max_age": "1h",
    }
    (r,) = parse(one_route(cors=cors)).routes
    assert r.cors == CorsConfig(
        allow_origins=("https://app.example", "http://localhost:3000"),
        allow_headers=("content-type", "x-custom"),
        max_age=3600.0,
    )
    assert parse(one_route(cors={"allow_origins": ["*"]})).routes[0].cors == CorsConfig(("*",))


@pytest.mark.parametrize(
    ("cors", "error"),
    [
        ({"allow_origins": "https://a.example"}, "allow_origins: expected a list, got a string"),
        ({"allow_origins": ["https://a.example/app"]}, "allow_origins[0]: invalid origin"),
        ({"allow_origins": ["app.example"]}, "allow_origins[0]: invalid origin"),
        ({"allow_origins": ["https://app.example/"]}, "allow_origins[0]: invalid origin"),
        ({"allow_origins": ["null"]}, "allow_origins[0]: invalid origin"),
        ({"allow_origins": ["https://app.example:99999"]}, "allow_origins[0]: invalid origin"),
        ({"allow_origins": ["https://me@app.example"]}, "allow_origins[0]: invalid origin"),
        ({"allow_origins": ["https://app.example?x=1"]}, "allow_origins[0]: invalid origin"),
        ({"allow_origins": ["https://bücher.example"]}, "allow_origins[0]: invalid origin"),
        ({"allow_headers": ["bad header"]}, "allow_headers[0]: invalid header name"),
        ({"max_age": -1}, "max_age: invalid duration -1"),
        ({"allow_origin": []}, "allow_origin: unknown key (did you mean 'allow_origins'?)"),
    ],
)
def test_bad_cors(cors: dict[str, Any], error: str) -> None:
    (got,) = errors_of(one_route(cors=cors))
    assert got.startswith(f"routes[0].cors.{error}")


@pytest.mark.parametrize(
    ("written", "origin"),
    [
        ("https://App.Example", "https://app.example"),
        ("HTTPS://app.example:443", "https://app.example"),
        ("http://LocalHost:80", "http://localhost"),
        ("http://localhost:03000", "http://localhost:3000"),
        ("https://app.example:8443", "https://app.example:8443"),
        ("http://[::1]:5173", "http://[::1]:5173"),
        ("chrome-extension://abcdefghijklmnop", "chrome-extension://abcdefghijklmnop"),
        ("capacitor://localhost", "capacitor://localhost"),
    ],
)
def test_cors_origins_are_kept_as_browsers_send_them(written: str, origin: str) -> None:
    """A browser's ``Origin`` is serialized: scheme and host in lower case, no default port.
    An origin written otherwise was accepted and then never matched any request; one of an
    extension or an app's web view (its own scheme) could not be written at all."""
    (r,) = parse(one_route(cors={"allow_origins": [written]})).routes
    assert r.cors is not None and r.cors.allow_origins == (origin,)


def test_unknown_route_key_suggests() -> None:
    assert errors_of({"routes": [{"name": "r", "provider": "local", "provder": "x"}]}) == [
        "routes[0].provder: unknown key (did you mean 'provider'?)"
    ]


def test_route_must_be_a_mapping() -> None:
    assert errors_of({"routes": ["demo"]}) == ["routes[0]: expected a mapping, got a string"]
