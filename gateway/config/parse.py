"""The configuration loader: YAML -> a validated, frozen :class:`GatewayConfig`. Pure.

The steps, each collecting errors rather than stopping at the first:

1. YAML with ``yaml.safe_load`` rules, plus duplicate mapping keys rejected (PyYAML would
   silently keep the last one). A syntax error names its line and column.
2. ``${VAR}`` / ``${VAR:-default}`` / ``$$`` interpolation of every string value
   (``envsubst.py``); keys are never interpolated.
3. Each section read with its spec (``fields.py``; routes in ``routes.py``): unknown keys get a
   "did you mean", durations and sizes take units (``units.py``), provider and format names are
   resolved through the adapter and encoder registries.
4. Cross-checks: unique route names and paths, ``auth.keys[].routes`` naming real routes,
   unique app-key names and keys.

Then one :class:`~gateway.errors.ConfigError` lists every problem, each prefixed with its key
path (``routes[0].timeouts.idel: unknown key (did you mean 'idle'?)``), or the config is returned.
Zero is accepted for ``server.port`` (pick a free port), ``server.shutdown_timeout``,
``limits.max_draining_streams`` and ``cors.max_age``; every other number must be positive.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.adapters import ADAPTERS
from gateway.adapters.base import Adapter
from gateway.config import fields as f
from gateway.config.accounting import parse_budget, parse_pricing
from gateway.config.envsubst import Source, interpolate, join_path
from gateway.config.model import (
    AppKey,
    AuthConfig,
    GatewayConfig,
    LimitsConfig,
    RouteConfig,
    RouteLimits,
    ServerConfig,
)
from gateway.config.resume import REDIS_MISSING, check_resume_stores, redis_installed
from gateway.config.routes import ROUTE_LIMITS, check_name, check_unique, parse_route
from gateway.config.tracing import parse_tracing
from gateway.encoders import ENCODERS
from gateway.errors import ConfigError

__all__ = ["load_config", "load_config_file", "parse_config", "routes_summary"]

TOP_KEYS = ("server", "routes", "auth", "limits", "pricing", "tracing")
APP_KEY_KEYS = ("name", "key", "routes", "limits", "budget")
SERVER_SPEC: dict[str, f.Conv] = {
    "host": f.string(),
    "port": f.integer(lo=0, hi=65535),
    "heartbeat_interval": f.duration(),
    "max_body_bytes": f.size(),
    "shutdown_timeout": f.duration(positive=False),
    "request_read_timeout": f.duration(),
    "write_timeout": f.duration(),
    "max_write_buffer_bytes": f.size(),
    "max_upstream_event_bytes": f.size(),
    "playground": f.boolean,
    "upstream_client": f.choice("auto", "raw", "aiohttp"),
    "upstream_max_connections": f.integer(lo=0),
    "http_server": f.choice("auto", "raw", "aiohttp"),
}
LIMITS_SPEC: dict[str, f.Conv] = {
    "backend": f.choice("memory", "redis"),
    "redis_url": f.url("redis", "rediss", "unix"),
    "on_backend_error": f.choice("open", "closed"),
    "max_concurrent_streams": f.integer(),
    "max_draining_streams": f.integer(lo=0),
    "token_estimate": f.integer(),
    "max_resume_buffer_bytes": f.size(),
    "max_detached_streams": f.integer(lo=0),
}


def parse_config(
    doc: Any,
    *,
    env: Mapping[str, str] | None = None,
    adapters: Mapping[str, type[Adapter]] | None = None,
    encoders: Collection[str] | None = None,
) -> GatewayConfig:
    """Validate a decoded YAML document into a :class:`GatewayConfig`.

    ``env`` (default ``os.environ``) feeds ``${VAR}``; ``adapters`` and ``encoders`` default to
    the real registries (``gateway.adapters.ADAPTERS``, ``gateway.encoders.ENCODERS``, imported
    here, lazily, because the adapters import the config model). ``doc`` is not mutated.
    Raises :class:`ConfigError` listing every problem found, each naming its key path.
    """
    adapters, encoders = _registries(adapters, encoders)
    if not isinstance(doc, dict):
        what = "empty" if doc is None else f"{f.kind(doc)}, not a mapping"
        raise ConfigError(f"the configuration is {what} (it needs at least a 'routes' list)")
    sources: dict[str, Source] = {}
    doc, problems = interpolate(doc, os.environ if env is None else env, sources=sources)
    r = f.Reader(silenced={path for path, _ in problems}, sources=sources)
    r.errors.extend(f"{path}: {message}" for path, message in problems)
    top = r.mapping(doc, "", TOP_KEYS) or {}
    server = r.build(ServerConfig, top.get("server"), "server", SERVER_SPEC)
    _check_fast_extra(r, server)
    routes, names = _routes(r, top, adapters, encoders)
    check_resume_stores(r, top.get("routes"), routes, top.get("limits"))
    auth = _auth(r, top.get("auth"), names)
    limits = r.build(LimitsConfig, top.get("limits"), "limits", LIMITS_SPEC)
    if limits.backend == "redis" and not redis_installed():
        r.error("limits.backend", REDIS_MISSING)
    pricing = parse_pricing(r, top.get("pricing"))
    tracing = parse_tracing(r, top.get("tracing"))
    if r.errors:
        raise ConfigError(r.redacted())
    return GatewayConfig(
        server=server, routes=routes, auth=auth, limits=limits, pricing=pricing, tracing=tracing
    )


def load_config(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    adapters: Mapping[str, type[Adapter]] | None = None,
    encoders: Collection[str] | None = None,
) -> GatewayConfig:
    """Parse YAML ``text`` and validate it with :func:`parse_config`.

    Raises :class:`ConfigError`: a YAML syntax error (or a duplicate key) as one error naming
    its line and column, a document nested too deeply as one error, otherwise every validation
    error.
    """
    return _parse_text(text, None, env=env, adapters=adapters, encoders=encoders)


def load_config_file(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    adapters: Mapping[str, type[Adapter]] | None = None,
    encoders: Collection[str] | None = None,
) -> GatewayConfig:
    """Read the UTF-8 file at ``path`` and load it with :func:`load_config`.

    Raises :class:`ConfigError` naming ``path`` when the file is missing or unreadable, and for
    YAML errors; validation errors name their key paths.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    return _parse_text(text, os.fspath(path), env=env, adapters=adapters, encoders=encoders)


def routes_summary(config: GatewayConfig) -> list[str]:
    """One line per route for ``gateway check-config``:
    ``name  POST /v1/stream/name  provider=X  format=Y`` (then ``  upstreams=A,B  balance=S``
    for a pool and ``  fallbacks=A,B`` if any)."""
    lines = []
    for route in config.routes:
        line = f"{route.name}  POST {route.path}  provider={route.provider}  format={route.format}"
        if route.pool is not None:
            line += f"  upstreams={','.join(route.pool.names)}  balance={route.pool.strategy}"
        if route.fallbacks:
            line += "  fallbacks=" + ",".join(t.provider for t in route.fallbacks)
        lines.append(line)
    return lines


def _parse_text(
    text: str,
    source: str | None,
    *,
    env: Mapping[str, str] | None,
    adapters: Mapping[str, type[Adapter]] | None,
    encoders: Collection[str] | None,
) -> GatewayConfig:
    """:func:`parse_config` on the YAML ``text`` (from the file ``source``, if any).

    PyYAML builds nested nodes recursively and interpolation walks them so: a document nested
    deeper than Python's recursion limit (brackets, or aliases each holding the one before)
    is reported as a :class:`ConfigError`, not a ``RecursionError`` traceback.
    """
    try:
        return parse_config(_yaml(text, source), env=env, adapters=adapters, encoders=encoders)
    except RecursionError:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}invalid YAML: nested too deeply") from None


def _registries(
    adapters: Mapping[str, type[Adapter]] | None, encoders: Collection[str] | None
) -> tuple[Mapping[str, type[Adapter]], Collection[str]]:
    if adapters is None:
        adapters = ADAPTERS
    if encoders is None:
        encoders = ENCODERS
    return adapters, encoders


def _routes(
    r: f.Reader,
    top: Mapping[str, Any],
    adapters: Mapping[str, type[Adapter]],
    encoders: Collection[str],
) -> tuple[tuple[RouteConfig, ...], list[str]]:
    """The routes, and every well-formed route name (for the auth allow-lists)."""
    if "routes" not in top:
        r.error("routes", "missing required key (at least one route is needed)")
        return (), []
    items = r.sequence(top["routes"], "routes")
    if items is None:
        return (), []
    if not items:
        r.error("routes", "at least one route is needed")
    built: list[tuple[str, RouteConfig]] = []
    names: list[str] = []
    for i, raw in enumerate(items):
        where = join_path("routes", i)
        route = parse_route(r, raw, where, adapters, encoders)
        if route is not None:
            built.append((where, route))
        # A route broken elsewhere still has its name: don't also fail the allow-lists on it.
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            names.append(raw["name"])
    check_unique(r, built)
    return tuple(route for _, route in built), names


FAST_MISSING = (
    "raw needs httptools, which is not installed (pip install 'llm-stream-gateway[fast]')"
)


def fast_installed() -> bool:
    """Whether the ``[fast]`` extra (``httptools``) is importable (checked without importing it)."""
    try:
        return importlib.util.find_spec("httptools") is not None
    except (ImportError, ValueError):  # ValueError: a module whose import was blocked
        return False


def _check_fast_extra(r: f.Reader, server: ServerConfig) -> None:
    """``server.upstream_client: raw`` and ``server.http_server: raw`` need the ``[fast]`` extra:
    said here, so ``check-config`` says it and the server does not fail while starting."""
    for key in ("upstream_client", "http_server"):
        if getattr(server, key) == "raw" and not fast_installed():
            r.error(f"server.{key}", FAST_MISSING)


def _auth(r: f.Reader, raw: Any, route_names: list[str]) -> AuthConfig | None:
    if raw is None:
        return None
    m = r.mapping(raw, "auth", ("keys",))
    items = None if m is None else r.sequence(m.get("keys"), "auth.keys")
    if items is None:
        return None
    if not items:
        r.error("auth.keys", "at least one key is needed (remove 'auth' to disable client auth)")
    keys: list[AppKey] = []
    names: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for i, item in enumerate(items):
        where = join_path("auth.keys", i)
        key = _app_key(r, item, where, route_names)
        if key is None:
            continue
        if key.name in names:
            r.error(f"{where}.name", f"duplicate key name {key.name!r} (also {names[key.name]})")
        if key.key in secrets:
            # Never echo the secret itself.
            r.error(f"{where}.key", f"same key as {secrets[key.key]}")
        names.setdefault(key.name, where)
        secrets.setdefault(key.key, where)
        keys.append(key)
    return AuthConfig(keys=tuple(keys))


def _app_key(r: f.Reader, raw: Any, path: str, route_names: list[str]) -> AppKey | None:
    m = r.mapping(raw, path, APP_KEY_KEYS)
    if m is None:
        return None
    name = check_name(r, m.get("name"), f"{path}.name")
    secret = _secret(r, m.get("key"), f"{path}.key")
    routes: Any = None
    if m.get("routes") is not None:
        routes = f.str_tuple(_route_ref(route_names))(r, m["routes"], f"{path}.routes")
        if routes == ():
            r.error(f"{path}.routes", "empty allow-list (omit 'routes' to allow every route)")
    limits = r.build(RouteLimits, m.get("limits"), f"{path}.limits", ROUTE_LIMITS)
    budget = parse_budget(r, m.get("budget"), f"{path}.budget")
    if name is None or secret is None or routes is f.BAD:
        return None
    return AppKey(name=name, key=secret, routes=routes, limits=limits, budget=budget)


def _secret(r: f.Reader, v: Any, path: str) -> str | None:
    if v is None:
        r.error(path, "missing required key")
        return None
    if not isinstance(v, str):
        r.error(path, f"expected a string, got {f.kind(v)}")
        return None
    if not v:
        r.error(path, "must not be empty")
        return None
    if any(c.isspace() or not c.isprintable() for c in v):
        r.error(path, "must not contain whitespace or control characters")
        return None
    return v


def _route_ref(route_names: list[str]) -> f.Conv:
    def conv(r: f.Reader, v: Any, path: str) -> Any:
        if isinstance(v, str) and v in route_names:
            return v
        r.error(path, f"unknown route {v!r} (known: {', '.join(sorted(set(route_names)))})")
        return f.BAD

    return conv


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping."""


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key repeated in one mapping; its message names the key (the config's structure, so
    shown as is, unlike the values PyYAML quotes in its own messages)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *anchor" may legitimately repeat keys it merges in
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: SafeLoader reports it itself
            continue
        if duplicate:
            raise _DuplicateKey(None, None, f"duplicate key {key!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# PyYAML quotes values with repr(): 'x', '\t', '<block end>', "it's", 'sk-...'.
_QUOTED = re.compile(r""" ?('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_HARMLESS = re.compile(r"""(['"])(?:[^\\]|\\(?:x..|u....|U........|.)|<[a-z ]+>)\1""")


def _unquoted(problem: str) -> str:
    """PyYAML's ``problem`` text without the values it quotes: an unquoted token that starts
    with ``*`` or ``!`` is read as an alias or a tag, and ``found undefined alias 'sk-...'``
    would print it. One quoted character (``found character '\\t' that cannot start any
    token``) and a token kind (``but found '<block mapping start>'``) are kept: they say what
    is wrong and cannot hold a secret."""
    return _QUOTED.sub(lambda m: m[0] if _HARMLESS.fullmatch(m[1]) else "", problem)


_UNQUOTED_REF = re.compile(r"\$?\$\{[^}\n]*\}")
"""A ``${...}`` reference (or its ``$${...}`` escape) as written in the YAML text."""


def _yaml(text: str, source: str | None) -> Any:
    """The YAML document in ``text``; a :class:`ConfigError` naming ``source``, the line and
    the column, but no quoted value, when it is not valid YAML.

    A ``${VAR}`` written unquoted inside a flow mapping or sequence
    (``{api_key: ${KEY}, model: m}``, as the contract's own pool example writes it) is not valid
    YAML: ``{`` starts a flow mapping there. A text that fails to parse is read once more with
    each reference stood in for by a plain word, which is put back in the document's strings
    after parsing; when that fails too, the first error is the one reported. A text that parses
    is read as YAML reads it.
    """
    try:
        return _load(text, source)
    except ConfigError as first:
        if "${" not in text:
            raise
        refs: dict[str, str] = {}
        nonce = secrets.token_hex(4)

        def stand_in(m: re.Match[str]) -> str:
            word = f"gwref{nonce}n{len(refs)}x"
            refs[word] = m[0]
            return word

        try:
            doc = _load(_UNQUOTED_REF.sub(stand_in, text), source)
        except ConfigError:
            raise first from None
        word = re.compile(f"gwref{nonce}n\\d+x")
        return _put_back(doc, lambda v: word.sub(lambda m: refs[m[0]], v))


def _put_back(node: Any, restore: Callable[[str], str]) -> Any:
    """``node`` with ``restore`` applied to every string in it, keys included."""
    if isinstance(node, str):
        return restore(node)
    if isinstance(node, dict):
        return {_put_back(k, restore): _put_back(v, restore) for k, v in node.items()}
    if isinstance(node, list):
        return [_put_back(v, restore) for v in node]
    return node


def _load(text: str, source: str | None) -> Any:
    """:func:`_yaml` without the second reading."""
    prefix = f"{source}: " if source else ""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        if not isinstance(exc, _DuplicateKey):
            problem = _unquoted(problem)
        raise ConfigError(f"{prefix}invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{prefix}invalid YAML: {exc}") from None
