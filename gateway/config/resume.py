"""Parsing a route's ``resume`` block and ``on_client_abort: detach`` (contract section 12). Pure.

Choices where the contract is silent (documented in ``docs/configuration.md``):

* A ``resume`` block without ``enabled`` turns resume on (``enabled: false`` turns it off while
  keeping the other settings in the file).
* Only SSE formats whose frames carry an ``id:`` line can be resumed (``EventSource`` resumes by
  ``Last-Event-ID``): :data:`RESUMABLE_FORMATS`. ``resume.enabled`` on a route whose ``format`` is
  another one is an error; a request that picks another format with ``?format=`` just gets a
  stream that is not resumable (the response says so with ``X-Resume: unavailable``).
* ``store: redis`` needs ``limits.redis_url`` written in the file: the default URL is fine for a
  local limiter, but a resume store that silently points at the wrong Redis makes every resume
  on another replica a 404.
* ``store: redis`` (and ``limits.backend: redis``) need the optional ``redis`` package: without
  it such a config would start, then fail open or closed on every request.
* ``on_client_abort: detach`` needs ``resume.enabled``: a stream that keeps running after its
  client left is only worth running if someone can pick it up.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.config import fields as f
from gateway.config.envsubst import join_path
from gateway.config.model import ResumeConfig, RouteConfig

REDIS_MISSING = (
    "'redis' needs the optional redis package, which is not installed "
    "(pip install 'llm-stream-gateway[redis]')"
)


def redis_installed() -> bool:
    """Whether the ``[redis]`` extra is importable (checked without importing it)."""
    return importlib.util.find_spec("redis") is not None


RESUMABLE_FORMATS = frozenset({"tokens"})
"""Output formats whose frames carry the SSE ``id`` a resume starts from."""

RESUME_SPEC: dict[str, f.Conv] = {
    "enabled": f.boolean,
    "window": f.duration(),
    "max_events": f.integer(),
    "store": f.choice("memory", "redis"),
}


def parse_resume(r: f.Reader, raw: Any, path: str) -> ResumeConfig:
    """The ``resume`` block at ``path``; absent gives resume off. Errors go to ``r``."""
    if raw is None:
        return ResumeConfig()
    section = r.mapping(raw, path, RESUME_SPEC)
    if section is None:
        return ResumeConfig()
    values = r.fields(section, path, RESUME_SPEC)
    values.setdefault("enabled", True)
    return ResumeConfig(**values)


def check_route_resume(
    r: f.Reader, path: str, resume: ResumeConfig, fmt: str | None, on_client_abort: Any
) -> None:
    """Cross-checks inside one route at ``path``: the format, and ``detach`` needing resume."""
    if resume.enabled and fmt is not None and fmt not in RESUMABLE_FORMATS:
        r.error(
            join_path(path, "resume.enabled"),
            f"format {fmt!r} cannot be resumed (resumable: {', '.join(sorted(RESUMABLE_FORMATS))})",
        )
    if on_client_abort == "detach" and not resume.enabled:
        r.error(join_path(path, "on_client_abort"), "'detach' needs resume.enabled: true")


def check_resume_stores(
    r: f.Reader, raw_routes: Any, routes: Iterable[RouteConfig], limits_raw: Any
) -> None:
    """``store: redis`` on any route needs ``limits.redis_url`` set in the document, and the
    ``redis`` package installed.

    ``raw_routes`` is the document's ``routes`` list (for the error's index), ``routes`` the
    routes that were built from it.
    """
    has_url = isinstance(limits_raw, Mapping) and limits_raw.get("redis_url") is not None
    installed = redis_installed()
    if has_url and installed:
        return
    index: dict[str, int] = {}
    if isinstance(raw_routes, list):
        for i, raw in enumerate(raw_routes):
            if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                index.setdefault(raw["name"], i)
    for route in routes:
        if route.resume.enabled and route.resume.store == "redis":
            where = join_path(join_path("routes", index.get(route.name, 0)), "resume.store")
            if not has_url:
                r.error(where, "'redis' needs limits.redis_url")
            if not installed:
                r.error(where, REDIS_MISSING)
