"""SIGHUP: reload the config file. New streams use the new config; open streams finish on the
old one. An invalid file is refused with its errors logged, and the old config stays; so does a
valid one the process fails to set up."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.config.parse import load_config_file
from gateway.errors import ConfigError
from gateway.features import install_features
from gateway.logs import log_event
from gateway.resume.wiring import install_resume
from gateway.state import STATE, bind_clients, build_state
from gateway.tracing.app import install_tracing


def reload_config(app: web.Application, path: str) -> bool:
    """Swap in the config at ``path``; returns whether it was accepted."""
    holder = app[STATE]
    try:
        config = load_config_file(path)
    except ConfigError as exc:
        log_event("reload_refused", logging.ERROR, errors=exc.errors)
        return False
    old = holder.current
    try:
        state = build_state(config, old.metrics, previous=old)
        bind_clients(app, state)
        state.sessions = old.sessions  # shutdown must still see streams started before it
        state.drain_tasks = old.drain_tasks  # and their drains (and their cap counts them)
        install_features(app, state)
        install_resume(app, state)
        install_tracing(app, state)  # a tracing change needs a restart
    except Exception as exc:  # a valid file the process cannot run (a missing extra...)
        log_event("reload_refused", logging.ERROR, errors=[f"{type(exc).__name__}: {exc}"])
        logging.getLogger("gateway").exception("reload failed; the old config stays")
        return False
    holder.current = state
    log_event("reloaded", routes=[r.name for r in config.routes])
    return True
