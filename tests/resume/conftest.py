"""Fixtures for the resume tests: one store per kind (memory, Redis on a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.resume import Budget, MemoryStore, RedisStore, ResumeStore
from tests.limits.redis_server import RedisServer, redis_server

StoreFactory = Callable[[Budget], ResumeStore]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server per test module (each test flushes it)."""
    workdir: Path = tmp_path_factory.mktemp("redis")
    with redis_server(workdir) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """A factory of stores of one kind; every store it made is closed afterwards. Two Redis
    stores on one server behave as two replicas."""
    made: list[ResumeStore] = []
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        from redis.asyncio import Redis

        client = Redis.from_url(server.url)
        await client.flushdb()
        await client.aclose()

        def factory(budget: Budget) -> ResumeStore:
            made.append(RedisStore(budget, server.url))
            return made[-1]
    else:

        def factory(budget: Budget) -> ResumeStore:
            made.append(MemoryStore(budget))
            return made[-1]

    yield factory
    for store in made:
        await store.close()


@pytest.fixture
def budget() -> Budget:
    return Budget(64 * 1024 * 1024, 100)


@pytest.fixture
def store(make_store: StoreFactory, budget: Budget) -> ResumeStore:
    return make_store(budget)
