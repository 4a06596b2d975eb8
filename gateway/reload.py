"""SIGHUP: reload the config file. New streams use the new config; open streams finish on the
old one. An invalid file is refused with its errors logged, and the old config stays; so does a
valid one the process fails to set up; a reload refused at any step leaves the running state
untouched (its pools, its series). Once a graceful shutdown has begun (SIGTERM), a reload is
refused: the new state would start undrained, turning ``/readyz`` back to 200 and taking new
streams again. Keys read once at start-up (:data:`RESTART_KEYS`) keep their running value; a
reload that changes one logs ``reload_needs_restart`` (warning) naming them."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.config.model import GatewayConfig
from gateway.config.parse import load_config_file
from gateway.errors import ConfigError
from gateway.features import install_features
from gateway.logs import log_event
from gateway.resume.wiring import install_resume
from gateway.state import STATE, activate, bind_clients, prepare_state
from gateway.tracing.app import install_tracing

RESTART_KEYS: tuple[tuple[str, str], ...] = (
    ("server", "host"),
    ("server", "port"),
    ("server", "http_server"),
    ("server", "playground"),
    ("server", "upstream_max_connections"),
    ("limits", "max_resume_buffer_bytes"),
    ("limits", "max_detached_streams"),
)
"""Keys the running process took at start-up (the listening socket, the server chosen for
stream requests, the playground's endpoints, the raw client's connection cap, the resume
buffer's bounds): a reload cannot change them. ``tracing`` is another (``tracing/app.py``
warns of it)."""


def restart_keys(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """The :data:`RESTART_KEYS` whose value differs between ``old`` and ``new``."""
    return [
        f"{section}.{key}"
        for section, key in RESTART_KEYS
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)
    ]


def reload_config(app: web.Application, path: str) -> bool:
    """Swap in the config at ``path``; returns whether it was accepted."""
    holder = app[STATE]
    if holder.current.draining:
        log_event("reload_refused", logging.WARNING, errors=["the gateway is shutting down"])
        return False
    try:
        config = load_config_file(path)
    except ConfigError as exc:
        log_event("reload_refused", logging.ERROR, errors=exc.errors)
        return False
    old = holder.current
    try:
        state = prepare_state(config, old.metrics)
        bind_clients(app, state)
        state.sessions = old.sessions  # shutdown must still see streams started before it
        state.drain_tasks = old.drain_tasks  # and their drains (and their cap counts them)
        install_features(app, state)
        install_resume(app, state)
        install_tracing(app, state)  # a tracing change needs a restart
        activate(state, old)  # last: it takes the old state's pools over
    except ConfigError as exc:  # an adapter refuses a target (credentials it needs...)
        log_event("reload_refused", logging.ERROR, errors=exc.errors)
        return False
    except Exception as exc:  # a valid file the process cannot run (a missing extra...)
        log_event("reload_refused", logging.ERROR, errors=[f"{type(exc).__name__}: {exc}"])
        logging.getLogger("gateway").exception("reload failed; the old config stays")
        return False
    holder.current = state
    log_event("reloaded", routes=[r.name for r in config.routes])
    if changed := restart_keys(old.config, config):
        log_event("reload_needs_restart", logging.WARNING, keys=changed)
    return True
