"""System binaries for end-to-end tests (nginx, prometheus, redis-server, chromium).

A test that needs one calls :func:`require_binary`: it returns the path, or skips with a reason
when the binary is missing, unless ``GATEWAY_REQUIRE_SYSTEM_TESTS=1`` is set, in which case a
missing binary fails the test (CI installs them all).
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

REQUIRED = os.environ.get("GATEWAY_REQUIRE_SYSTEM_TESTS") == "1"


def require_binary(name: str, *alternatives: str) -> str:
    for candidate in (name, *alternatives):
        path = shutil.which(candidate) or next(
            (p for p in (f"/usr/sbin/{candidate}", f"/usr/bin/{candidate}") if os.path.exists(p)),
            None,
        )
        if path:
            return path
    message = f"{name} is not installed (apt-get install it, or see .ci/run)"
    if REQUIRED:
        pytest.fail(f"GATEWAY_REQUIRE_SYSTEM_TESTS=1 but {message}")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
