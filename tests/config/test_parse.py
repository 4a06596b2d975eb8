"""The loader (gateway/config/parse.py): top level, server, limits, auth, YAML, files, summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    AppKey,
    AuthConfig,
    CorsConfig,
    GatewayConfig,
    LimitsConfig,
    RouteConfig,
    RouteLimits,
    ServerConfig,
    TextMarkers,
    Timeouts,
    UpstreamConfig,
    UpstreamTarget,
)
from gateway.config.parse import load_config, load_config_file, parse_config, routes_summary
from gateway.errors import ConfigError
from tests.config.fakes import ADAPTERS, ENCODERS, errors_of, one_route, parse, route

# Contract sections 2 and 9 together, as a user would write them.
FULL_EXAMPLE = """
server:
  host: 0.0.0.0
  port: 8080
  heartbeat_interval: 15s
  max_body_bytes: 1MiB
  shutdown_timeout: 30s
routes:
  - name: demo
    path: /v1/stream/demo
    provider: simulated
    format: tokens
    upstream:                 # not used by `simulated`
      base_url: https://api.openai.com/v1
      api_key: ${OPENAI_API_KEY}
      model: gpt-5-mini
      headers: {}
    timeouts:
      connect: 10s
      first_event: 120s
      idle: 120s
      total: 30m
    options: {text: "Hello there", token_interval: 20ms}
  - name: gpt
    provider: openai-responses
    format: ndjson
    upstream:
      api_key: ${OPENAI_API_KEY}
      model: ${GPT_MODEL:-gpt-5-mini}
      headers: {OpenAI-Organization: "${OPENAI_ORG:-org-1}"}
    fallbacks:
      - provider: anthropic
        upstream: {api_key: "${ANTHROPIC_API_KEY}", model: claude-sonnet-4-5}
        timeouts: {first_event: 60s}
    on_client_abort: drain
    drain_timeout: 60s
    max_stream_duration: 30m
    max_output_bytes: 4MiB
    text_markers: {created: "", thinking: "", clear: "", end: "", error: ""}
    cors: {allow_origins: ["https://app.example"]}
    allow_model_override: false
auth:
  keys:
    - name: web-app
      key: ${WEB_APP_KEY}
      routes: [demo, gpt]
      limits: {concurrent_streams: 20, requests_per_minute: 600, tokens_per_minute: 200000}
    - name: batch
      key: batch-key-2
limits:
  backend: memory
  redis_url: redis://127.0.0.1:6379/0
  on_backend_error: open
  max_concurrent_streams: 10000
"""
FULL_ENV = {"OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant", "WEB_APP_KEY": "wk-1"}


def _options(provider: str, raw: dict[str, Any]) -> dict[str, Any]:
    """What the real adapter normalises ``raw`` to (its defaults filled in)."""
    from gateway.adapters import ADAPTERS as REAL

    options, errors = REAL[provider].parse_options(raw, "x")
    assert errors == []
    return options


def test_full_example_with_the_real_registries() -> None:
    config = load_config(FULL_EXAMPLE, env=FULL_ENV)
    demo_options = _options("simulated", {"text": "Hello there", "token_interval": "20ms"})
    assert demo_options["token_interval"] == pytest.approx(0.02)
    expected = GatewayConfig(
        server=ServerConfig(host="0.0.0.0", port=8080, max_body_bytes=1_048_576),
        routes=(
            RouteConfig(
                name="demo",
                path="/v1/stream/demo",
                format="tokens",
                primary=UpstreamTarget(
                    "simulated",
                    UpstreamConfig("https://api.openai.com/v1", "sk-openai", "gpt-5-mini", {}),
                    Timeouts(10.0, 120.0, 120.0, 1800.0),
                    demo_options,
                ),
            ),
            RouteConfig(
                name="gpt",
                path="/v1/stream/gpt",
                format="ndjson",
                primary=UpstreamTarget(
                    "openai-responses",
                    UpstreamConfig(
                        None, "sk-openai", "gpt-5-mini", {"OpenAI-Organization": "org-1"}
                    ),
                    Timeouts(),
                    _options("openai-responses", {}),
                ),
                fallbacks=(
                    UpstreamTarget(
                        "anthropic",
                        UpstreamConfig(api_key="sk-ant", model="claude-sonnet-4-5"),
                        Timeouts(first_event=60.0),
                        _options("anthropic", {}),
                    ),
                ),
                on_client_abort="drain",
                drain_timeout=60.0,
                max_stream_duration=1800.0,
                max_output_bytes=4 * 1_048_576,
                text_markers=TextMarkers(),
                cors=CorsConfig(allow_origins=("https://app.example",)),
            ),
        ),
        auth=AuthConfig(
            keys=(
                AppKey("web-app", "wk-1", ("demo", "gpt"), RouteLimits(20, 600, 200_000)),
                AppKey("batch", "batch-key-2"),
            )
        ),
        limits=LimitsConfig(),
    )
    assert config == expected
    # Secrets compare equal above but are kept out of reprs (logs).
    assert "sk-openai" not in repr(config) and "wk-1" not in repr(config)


def test_real_registry_unknown_provider() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"routes": [{"name": "a", "provider": "antropic"}]}, env={})
    (error,) = info.value.errors
    assert error.startswith("routes[0].provider: unknown provider 'antropic' (known: anthropic, ")
    assert "simulated" in error


def test_real_registry_simulated_options_errors_have_paths() -> None:
    doc = {"routes": [{"name": "a", "provider": "simulated", "options": {"txet": "x"}}]}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, env={})
    assert [e.split(":")[0] for e in info.value.errors] == ["routes[0].options.txet"]


def test_every_error_is_collected_at_once() -> None:
    doc = {
        "server": {"port": 70000, "heartbeat_intervl": "15s", "max_body_bytes": "lots"},
        "routes": [
            route(name="a", timeouts={"idel": "3s"}),
            route(name="b", provider="antropic", upstream={"api_key": "${MISSING_KEY}"}),
            route(name="a"),
            route(name="c", path="/metrics", format="xml"),
        ],
        "auth": {"keys": [{"name": "web", "key": "", "routes": ["a", "zzz"]}]},
        "limits": {"backend": "etcd"},
        "extra": 1,
    }
    assert errors_of(doc) == [
        "routes[1].upstream.api_key: environment variable MISSING_KEY is not set",
        "extra: unknown key (known: auth, limits, pricing, routes, server, tracing)",
        "server.heartbeat_intervl: unknown key (did you mean 'heartbeat_interval'?)",
        "server.port: must be between 0 and 65535 (got 70000)",
        "server.max_body_bytes: invalid size 'lots' "
        "(use bytes or a number with a unit: B, KB, MB, GB, KiB, MiB, GiB)",
        "routes[0].timeouts.idel: unknown key (did you mean 'idle'?)",
        "routes[1].provider: unknown provider 'antropic' (known: bare, local, remote, tunable)",
        "routes[3].path: '/metrics' is reserved for the gateway's own endpoints",
        "routes[3].format: unknown format 'xml' (known: ndjson, text, tokens)",
        "routes[2].name: duplicate route name 'a' (also routes[0])",
        "auth.keys[0].key: must not be empty",
        "auth.keys[0].routes[1]: unknown route 'zzz' (known: a, b, c)",
        "limits.backend: must be one of memory, redis (got 'etcd')",
    ]


def test_config_error_message_is_every_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"routes": [], "x": 1})
    assert str(info.value) == "\n".join(info.value.errors)
    assert len(info.value.errors) == 2


# --- interpolation through the whole loader -------------------------------------------------


def test_interpolation_set_default_and_nested() -> None:
    doc = one_route(
        provider="bare",
        upstream={
            "base_url": "https://${HOST}/v1",
            "api_key": "${KEY}",
            "model": "${MODEL:-m-default}",
            "headers": {"Authorization": "Bearer ${KEY}", "X-Price": "$$5"},
        },
        cors={"allow_origins": ["https://${HOST}"]},
    )
    (r,) = parse(doc, {"HOST": "h.example", "KEY": "k-1"}).routes
    assert r.primary.upstream == UpstreamConfig(
        "https://h.example/v1", "k-1", "m-default", {"Authorization": "Bearer k-1", "X-Price": "$5"}
    )
    assert r.cors is not None and r.cors.allow_origins == ("https://h.example",)


def test_missing_variable_names_variable_and_path_once() -> None:
    doc = {
        "server": {"port": "${PORT}"},
        "routes": [route(), route(name="s", upstream={"api_key": "${OPENAI_API_KEY}"})],
    }
    # No second "port: expected an integer" error for the value that already failed.
    assert errors_of(doc) == [
        "server.port: environment variable PORT is not set",
        "routes[1].upstream.api_key: environment variable OPENAI_API_KEY is not set",
    ]


def test_invalid_reference_is_not_echoed() -> None:
    # A token pasted between the braces instead of a variable name.
    (error,) = errors_of(one_route(upstream={"api_key": "${sk-LEAK-123}"}))
    assert error.startswith("routes[0].upstream.api_key: invalid variable reference")
    assert "[A-Za-z_][A-Za-z0-9_]*" in error
    assert "LEAK" not in error


SECRET = "sk-proj-LEAK0123456789"


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        (  # an API key set in the base URL's variable, the usual swap
            one_route(provider="bare", upstream={"base_url": "${KEY}", "api_key": "${URL}"}),
            "routes[0].upstream.base_url: invalid URL '${KEY}' (expected http://... or https://...)",
        ),
        (
            one_route(format="${KEY}"),
            "routes[0].format: unknown format '${KEY}' (known: ndjson, text, tokens)",
        ),
        (
            one_route(timeouts={"idle": "x${KEY}"}),
            "routes[0].timeouts.idle: invalid duration 'x${KEY}' "
            "(use seconds or a number with a unit: ms, s, m, h)",
        ),
        (  # the user part of a URL is shown (it is no password): not when it is a variable's
            one_route(provider="bare", upstream={"base_url": "https://${KEY}@h:99999/v1"}),
            "routes[0].upstream.base_url: invalid URL 'https://${KEY}@h:99999/v1' "
            "(Port out of range 0-65535)",
        ),
        (
            {"server": {"port": "${PORT}"}, **one_route()},
            "server.port: must be between 0 and 65535 (got 70000)",  # short values are no secret
        ),
    ],
)
def test_errors_do_not_echo_environment_values(doc: dict[str, Any], error: str) -> None:
    (got,) = errors_of(doc, {"KEY": SECRET, "URL": "https://h/v1", "PORT": "70000"})
    assert got.startswith(error)
    assert "LEAK" not in got


def test_adapter_errors_do_not_echo_environment_values() -> None:
    text = "routes: [{name: d, provider: simulated, options: {token_interval: '${KEY}'}}]"
    with pytest.raises(ConfigError) as info:
        load_config(text, env={"KEY": SECRET})
    assert info.value.errors == [
        "routes[0].options.token_interval: invalid duration '${KEY}' "
        "(use seconds or a number with a unit: ms, s, m, h)"
    ]


def test_typed_values_from_variables() -> None:
    doc = {
        "server": {
            "port": "${PORT:-9000}",
            "heartbeat_interval": "${HB:-5}",
            "playground": "${PG}",
        },
        "routes": [route(max_output_bytes="${MAX:-2MiB}")],
    }
    config = parse(doc, {"PG": "false", "HB": "250ms"})
    assert (config.server.port, config.server.heartbeat_interval) == (9000, 0.25)
    assert config.server.playground is False
    assert config.routes[0].max_output_bytes == 2 * 1_048_576


def test_keys_are_not_interpolated() -> None:
    assert errors_of({"routes": [route()], "${X}": 1}, {"X": "server"}) == [
        "${X}: unknown key (known: auth, limits, pricing, routes, server, tracing)"
    ]


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_MODEL", "from-environ")
    doc = one_route(upstream={"model": "${GW_TEST_MODEL}"})
    config = parse_config(doc, adapters=ADAPTERS, encoders=ENCODERS)
    assert config.routes[0].primary.upstream.model == "from-environ"


# --- top level ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        (None, "the configuration is empty (it needs at least a 'routes' list)"),
        ([1], "the configuration is a list, not a mapping (it needs at least a 'routes' list)"),
        ({}, "routes: missing required key (at least one route is needed)"),
        ({"routes": []}, "routes: at least one route is needed"),
        ({"routes": None}, "routes: at least one route is needed"),
        ({"routes": {"name": "a"}}, "routes: expected a list, got a mapping"),
        ({"routes": [route()], "rotes": []}, "rotes: unknown key (did you mean 'routes'?)"),
        ({"routes": [route()], "server": 8080}, "server: expected a mapping, got a number"),
    ],
)
def test_top_level(doc: Any, error: str) -> None:
    assert errors_of(doc) == [error]


# --- server -------------------------------------------------------------------------------------


def test_server_defaults() -> None:
    assert parse(one_route()).server == ServerConfig()
    assert parse({"server": None, **one_route()}).server == ServerConfig()


def test_server_every_key() -> None:
    server = {
        "host": "::",
        "port": 0,
        "heartbeat_interval": "5s",
        "max_body_bytes": "64KB",
        "shutdown_timeout": 0,
        "request_read_timeout": "10s",
        "write_timeout": 20,
        "max_write_buffer_bytes": "128KiB",
        "max_upstream_event_bytes": 1000,
        "playground": False,
    }
    assert parse({"server": server, **one_route()}).server == ServerConfig(
        "::", 0, 5.0, 64_000, 0.0, 10.0, 20.0, 131_072, 1000, False
    )


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("port", 65536, "must be between 0 and 65535 (got 65536)"),
        ("port", -1, "must be between 0 and 65535 (got -1)"),
        ("port", "http", "expected an integer, got a string"),
        ("port", True, "expected an integer, got a boolean"),
        ("host", "", "must not be empty"),
        ("host", 127, "expected a string, got a number"),
        ("heartbeat_interval", 0, "must be greater than zero (got 0)"),
        ("shutdown_timeout", "-1s", "invalid duration '-1s' (must not be negative)"),
        ("max_body_bytes", 0, "must be greater than zero (got 0)"),
        ("max_body_bytes", 1.5, "invalid size 1.5"),
        ("playground", "on", "expected true or false, got a string"),
        ("max_write_buffer_bytes", 10**23, f"invalid size {10**23} (at most 1TiB"),
        ("write_timeout", "1000000000s", "invalid duration '1000000000s' (at most 315360000s"),
        ("upstream_max_connections", 10**13, "must be at most 1000000000000 (got 1"),
    ],
)
def test_bad_server_values(key: str, value: object, error: str) -> None:
    (got,) = errors_of({"server": {key: value}, **one_route()})
    assert got.startswith(f"server.{key}: {error}")


@pytest.mark.parametrize("key", ["upstream_client", "http_server"])
def test_raw_without_the_fast_extra_is_a_config_error(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was accepted, then the server died at start-up with a traceback.
    monkeypatch.setitem(sys.modules, "httptools", None)  # as if the [fast] extra were missing
    (got,) = errors_of({"server": {key: "raw"}, **one_route()})
    assert got == (
        f"server.{key}: raw needs httptools, which is not installed "
        "(pip install 'llm-stream-gateway[fast]')"
    )
    assert parse({"server": {key: "auto"}, **one_route()}).server == ServerConfig(**{key: "auto"})


# --- limits -------------------------------------------------------------------------------------


def test_limits() -> None:
    limits = {
        "backend": "redis",
        "redis_url": "rediss://cache:6380/1",
        "on_backend_error": "closed",
        "max_concurrent_streams": 50,
        "max_draining_streams": 0,
        "token_estimate": 2000,
    }
    assert parse({"limits": limits, **one_route()}).limits == LimitsConfig(
        "redis", "rediss://cache:6380/1", "closed", 50, 0, 2000
    )


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("backend", "etcd", "must be one of memory, redis (got 'etcd')"),
        ("on_backend_error", "fail", "must be one of open, closed (got 'fail')"),
        ("redis_url", "http://cache", "invalid URL 'http://cache'"),
        ("max_concurrent_streams", 0, "must be >= 1 (got 0)"),
        ("token_estimate", "many", "expected an integer, got a string"),
        ("max_draining_streams", -1, "must be >= 0 (got -1)"),
        ("token_estimate", 10**23, f"must be at most 1000000000000 (got {10**23})"),
        ("backnd", "redis", "unknown key (did you mean 'backend'?)"),
    ],
)
def test_bad_limits(key: str, value: object, error: str) -> None:
    (got,) = errors_of({"limits": {key: value}, **one_route()})
    assert got.startswith(f"limits.{key}: {error}")


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        (
            {"limits": {"redis_url": "redis://:sk-LEAK@127.0.0.1:70000/0"}, **one_route()},
            "limits.redis_url: invalid URL 'redis://:***@127.0.0.1:70000/0' "
            "(Port out of range 0-65535)",
        ),
        (
            {"limits": {"redis_url": "http://:sk-LEAK@127.0.0.1:6379/0"}, **one_route()},
            "limits.redis_url: invalid URL 'http://:***@127.0.0.1:6379/0' "
            "(expected redis://... or rediss://... or unix://...)",
        ),
        (
            one_route(provider="bare", upstream={"base_url": "ftp://user:sk-LEAK@h/v1"}),
            "routes[0].upstream.base_url: invalid URL 'ftp://user:***@h/v1' "
            "(expected http://... or https://...)",
        ),
        (
            one_route(provider="bare", upstream={"base_url": "https://h/v1?key=sk-LEAK&alt "}),
            "routes[0].upstream.base_url: invalid URL 'https://h/v1?key=***&*** ' "
            "(contains whitespace)",
        ),
        (
            {"tracing": {"otlp_endpoint": "ftp://u:sk-LEAK@h:4318/v1#sk-LEAK"}, **one_route()},
            "tracing.otlp_endpoint: invalid URL 'ftp://u:***@h:4318/v1#***' "
            "(expected http://... or https://...)",
        ),
    ],
)
def test_url_errors_hide_passwords_and_query_values(doc: dict[str, Any], error: str) -> None:
    assert errors_of(doc) == [error]


# --- auth ---------------------------------------------------------------------------------------


def _with_auth(*keys: Any, routes: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
    return {"routes": [route(name=n) for n in routes], "auth": {"keys": list(keys)}}


def test_auth_absent_is_none() -> None:
    assert parse(one_route()).auth is None


def test_auth_keys() -> None:
    doc = _with_auth(
        {"name": "web", "key": "${WEB_KEY}", "routes": ["a"], "limits": {"concurrent_streams": 2}},
        {"name": "cli", "key": "k2"},
    )
    assert parse(doc, {"WEB_KEY": "k1"}).auth == AuthConfig(
        (AppKey("web", "k1", ("a",), RouteLimits(concurrent_streams=2)), AppKey("cli", "k2"))
    )


K0 = "auth.keys[0]"
BAD_AUTH: list[tuple[list[Any], list[str]]] = [
    ([], ["auth.keys: at least one key is needed (remove 'auth' to disable client auth)"]),
    ([{"key": "k"}], [f"{K0}.name: missing required key"]),
    ([{"name": "Web", "key": "k"}], [f"{K0}.name: invalid name 'Web' (use [a-z0-9][a-z0-9_-]*)"]),
    ([{"name": "w"}], [f"{K0}.key: missing required key"]),
    ([{"name": "w", "key": 5}], [f"{K0}.key: expected a string, got a number"]),
    (
        [{"name": "w", "key": "a b"}],
        [f"{K0}.key: must not contain whitespace or control characters"],
    ),
    (
        [{"name": "w", "key": "k", "routes": []}],
        [f"{K0}.routes: empty allow-list (omit 'routes' to allow every route)"],
    ),
    (
        [{"name": "w", "key": "k", "routes": ["c"]}],
        [f"{K0}.routes[0]: unknown route 'c' (known: a, b)"],
    ),
    (
        [{"name": "w", "key": "k", "route": ["a"]}],
        [f"{K0}.route: unknown key (did you mean 'routes'?)"],
    ),
    (
        [{"name": "w", "key": "k1"}, {"name": "w", "key": "k2"}],
        ["auth.keys[1].name: duplicate key name 'w' (also auth.keys[0])"],
    ),
    (
        [{"name": "w", "key": "same-secret"}, {"name": "v", "key": "same-secret"}],
        ["auth.keys[1].key: same key as auth.keys[0]"],
    ),
]


@pytest.mark.parametrize(("keys", "errors"), BAD_AUTH)
def test_bad_auth(keys: list[Any], errors: list[str]) -> None:
    assert errors_of(_with_auth(*keys)) == errors


def test_empty_key_from_unset_variable_with_empty_default() -> None:
    assert errors_of(_with_auth({"name": "w", "key": "${WEB_KEY:-}"})) == [
        "auth.keys[0].key: must not be empty"
    ]


def test_allow_list_accepts_a_route_broken_elsewhere() -> None:
    doc = {
        "routes": [route(name="a", format="xml")],
        "auth": {"keys": [{"name": "w", "key": "k", "routes": ["a"]}]},
    }
    assert errors_of(doc) == [
        "routes[0].format: unknown format 'xml' (known: ndjson, text, tokens)"
    ]


def test_auth_block_shape() -> None:
    assert errors_of({**one_route(), "auth": {"key": []}}) == [
        "auth.key: unknown key (did you mean 'keys'?)",
        "auth.keys: at least one key is needed (remove 'auth' to disable client auth)",
    ]
    assert errors_of({**one_route(), "auth": {"keys": {"name": "w"}}}) == [
        "auth.keys: expected a list, got a mapping"
    ]


# --- YAML and files -----------------------------------------------------------------------------

MINIMAL = "routes:\n  - name: a\n    provider: local\n"


def _load(text: str, env: dict[str, str] | None = None) -> GatewayConfig:
    return load_config(text, env=env or {}, adapters=ADAPTERS, encoders=ENCODERS)


def test_load_config_text() -> None:
    assert _load(MINIMAL).routes[0].path == "/v1/stream/a"


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = "routes:\n  - name: a\n    provider: local\n   bad: [\n"
    with pytest.raises(ConfigError) as info:
        _load(text)
    (error,) = info.value.errors
    assert error == (
        "invalid YAML at line 4, column 4: expected <block end>, but found '<block mapping start>'"
    )


def test_duplicate_yaml_key_is_an_error() -> None:
    text = "routes:\n  - name: a\n    provider: local\n    name: b\n"
    with pytest.raises(ConfigError) as info:
        _load(text)
    assert info.value.errors == ["invalid YAML at line 4, column 5: duplicate key 'name'"]


def test_yaml_merge_keys_still_work() -> None:
    text = "routes:\n  - &r {name: a, provider: local, format: text}\n  - {<<: *r, name: b}\n"
    routes = _load(text).routes
    assert [(r.name, r.format) for r in routes] == [("a", "text"), ("b", "text")]


def test_yaml_unsafe_tags_are_refused() -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        _load("routes: !!python/object/apply:os.system ['true']\n")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("*sk-LEAK-123", "invalid YAML at line 4, column 25: found undefined alias"),
        (
            "!sk-LEAK-123 x",
            "invalid YAML at line 4, column 25: could not determine a constructor for the tag",
        ),
    ],
)
def test_yaml_errors_do_not_echo_values(value: str, error: str) -> None:
    # An unquoted token that starts with '*' or '!' reads as an alias or a tag.
    with pytest.raises(ConfigError) as info:
        _load(f"routes:\n  - name: a\n    provider: local\n    upstream: {{api_key: {value}}}\n")
    assert info.value.errors == [error]


@pytest.mark.parametrize(
    "text",
    [
        "x: " + "[" * 1000 + "]" * 1000 + "\n",
        # Aliases nest without brackets: each list holds the one before it.
        "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 2000)),
    ],
)
def test_deeply_nested_yaml_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(text)
    assert info.value.errors == ["invalid YAML: nested too deeply"]


def test_empty_yaml() -> None:
    with pytest.raises(ConfigError, match="the configuration is empty"):
        _load("# nothing\n")


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "    upstream: {model: '${M}'}\n", encoding="utf-8")
    config = load_config_file(path, env={"M": "m1"}, adapters=ADAPTERS, encoders=ENCODERS)
    assert config.routes[0].primary.upstream.model == "m1"
    assert (
        load_config_file(str(path), env={"M": "m1"}, adapters=ADAPTERS, encoders=ENCODERS) == config
    )


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert info.value.errors == [f"{path}: config file not found"]


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file"):
        load_config_file(tmp_path)  # a directory
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"routes: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bin\.yaml: not UTF-8 text"):
        load_config_file(binary)


def test_yaml_error_in_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config_file(path, adapters=ADAPTERS, encoders=ENCODERS)
    (error,) = info.value.errors
    assert error.startswith(f"{path}: invalid YAML at line 2, column 1: ")


# --- summary and purity -------------------------------------------------------------------------


def test_routes_summary() -> None:
    doc = {
        "routes": [
            route(name="demo"),
            route(name="gpt", path="/chat", provider="remote", format="ndjson",
                  fallbacks=[{"provider": "local"}, {"provider": "tunable"}]),
        ]
    }  # fmt: skip
    assert routes_summary(parse(doc)) == [
        "demo  POST /v1/stream/demo  provider=local  format=tokens",
        "gpt  POST /chat  provider=remote  format=ndjson  fallbacks=local,tunable",
    ]


def test_config_package_is_pure() -> None:
    code = (
        "import sys, gateway.config, gateway.config.parse\n"
        "bad = {'aiohttp', 'asyncio'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


FLOW_POOL = """
routes:
  - name: gpt
    provider: openai-chat
    upstreams:
      - {name: east, base_url: "https://east.example/v1", api_key: ${KEY_EAST}, model: m, weight: 3}
      - {name: west, base_url: "https://west.example/v1", api_key: ${KEY_WEST:-none}, model: $${M}}
"""


def test_a_reference_unquoted_in_a_flow_mapping_is_read_as_the_contract_writes_it() -> None:
    """Contract section 11 writes ``{..., api_key: ${KEY_EAST}, ...}``: not valid YAML as it
    stands (``{`` opens a flow mapping there), read all the same; ``$${M}`` stays the escape
    it is (a literal ``${M}``)."""
    config = load_config(FLOW_POOL, env={"KEY_EAST": "sk-east"})
    pool = config.routes[0].pool
    assert pool is not None
    upstreams = [d.target.upstream for d in pool.deployments]
    assert [u.api_key for u in upstreams] == ["sk-east", "none"]
    assert [u.model for u in upstreams] == ["m", "${M}"]


def test_yaml_broken_elsewhere_still_reports_its_own_error() -> None:
    text = FLOW_POOL.replace("model: m, weight: 3}", "model: m, weight: 3", 1)
    with pytest.raises(ConfigError) as info:
        load_config(text, env={"KEY_EAST": "sk-east"})
    # When the second reading fails too, the error is the text's own first one.
    assert info.value.errors == [
        "invalid YAML at line 6, column 69: expected ',' or '}', but got '{'"
    ]
