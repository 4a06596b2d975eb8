"""The command line (contract section 1).

``gateway check-config PATH``
    Validate a config file; print one line per route (exit 0) or ``config error:`` and each
    error on stderr (exit 1).
``gateway [--config PATH] [--host H] [--port P] [--workers N] [--log-level L]``
    Serve. ``--config`` defaults to ``$GATEWAY_CONFIG``, then ``./config.yaml``; ``--host`` and
    ``--port`` override ``server.host`` / ``server.port``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.config import GatewayConfig
from gateway.config.parse import load_config_file, routes_summary
from gateway.errors import ConfigError
from gateway.logs import log_event, setup_logging
from gateway.runner import install_fast_loop, release_hangups, run_server
from gateway.state import build_routes
from gateway.workers import run_workers

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Exit codes: 0 success, 1 invalid configuration (also one found only while starting, such as
    a missing optional package), 2 bad command line (from argparse, which raises
    ``SystemExit``); serving returns whatever :func:`serve` returns.
    """
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path)
    release_hangups()  # from here on a SIGHUP reloads once the gateway serves
    config_path = args.config or os.environ.get("GATEWAY_CONFIG") or "config.yaml"
    config = _load(config_path)
    if config is None:
        return 1
    try:
        return serve(
            config,
            config_path=config_path,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
        )
    except ConfigError as exc:  # a valid file this machine cannot run: said as at load time
        _print_errors(exc)
        return 1


def serve(
    config: GatewayConfig,
    *,
    config_path: str | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
    log_level: str = "info",
) -> int:
    """Run the gateway: one process, or ``workers`` processes sharing the port."""
    setup_logging(log_level)
    host = host or config.server.host
    port = config.server.port if port is None else port
    _warn_if_open(config, host)
    if workers > 1:
        return run_workers(
            config,
            config_path=config_path,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )
    install_fast_loop()
    return asyncio.run(run_server(config, host=host, port=port, config_path=config_path))


def _warn_if_open(config: GatewayConfig, host: str) -> None:
    if config.auth is None and host not in ("127.0.0.1", "localhost", "::1"):
        log_event(
            "warning_no_auth",
            logging.WARNING,
            detail=f"listening on {host} without auth: any client can use every route",
        )


def _check_config(path: str) -> int:
    """``check-config``: the file's own checks, then each target's adapter built as start-up
    builds it (a provider without the credentials it needs is refused here too)."""
    config = _load(path)
    if config is None:
        return 1
    try:
        build_routes(config)
    except ConfigError as exc:
        _print_errors(exc)
        return 1
    for line in routes_summary(config):
        print(line)
    return 0


def _load(path: str) -> GatewayConfig | None:
    """The config at ``path``, or ``None`` after printing every error to stderr."""
    try:
        return load_config_file(path)
    except ConfigError as exc:
        _print_errors(exc)
        return None


def _print_errors(exc: ConfigError) -> None:
    """``config error:`` then each error, indented, on stderr."""
    print("config error:", file=sys.stderr)
    for line in exc.errors:
        print(f"  {line}", file=sys.stderr)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535 (got {port})")
    return port


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {n})")
    return n


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Streaming gateway for LLM token streams. Without a command: serve.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $GATEWAY_CONFIG, ./config.yaml)"
    )
    parser.add_argument("--host", metavar="H", help="listen address (overrides server.host)")
    parser.add_argument(
        "--port", metavar="P", type=_port, help="listen port, 0 = any free port (server.port)"
    )
    parser.add_argument(
        "--workers", metavar="N", type=_workers, default=1, help="worker processes (default 1)"
    )
    parser.add_argument(
        "--log-level",
        metavar="L",
        type=str.lower,
        choices=LOG_LEVELS,
        default="info",
        help=f"one of {', '.join(LOG_LEVELS)} (default info)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check-config", help="validate a config file and print its routes (exit 0) or errors (1)"
    )
    check.add_argument("path", metavar="PATH")
    return parser
