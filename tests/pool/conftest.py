from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.limits.redis_server import RedisServer, redis_server


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server per test module (tests flush it or use distinct route names)."""
    workdir: Path = tmp_path_factory.mktemp("redis")
    with redis_server(workdir) as server:
        yield server
