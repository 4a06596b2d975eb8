"""Fixtures shared by several test packages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gateway import httpserver
from gateway.rawhttp import AVAILABLE
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import HTTP_SERVER, UPSTREAM_CLIENT


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A fake upstream provider (``tests/support/fake_upstream.py``) for one test; a module
    that needs another kind defines its own ``upstream``."""
    fake = await FakeUpstream().start()
    yield fake
    await fake.stop()


@pytest.fixture(params=["raw", "aiohttp"])
def upstream_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per upstream client (``server.upstream_client``).

    A module opts in with ``pytestmark = pytest.mark.usefixtures("upstream_client")``; every
    gateway it starts with ``running_gateway`` then uses that client.
    """
    choice = str(request.param)
    if choice == "raw" and not AVAILABLE:
        pytest.skip("httptools is not installed (the fast extra)")
    token = UPSTREAM_CLIENT.set(choice)
    try:
        yield choice
    finally:
        UPSTREAM_CLIENT.reset(token)


@pytest.fixture(params=["raw", "aiohttp"])
def http_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per server for the stream requests (``server.http_server``).

    A module opts in with ``pytestmark = pytest.mark.usefixtures("http_server")``; every
    gateway it starts with ``running_gateway`` then serves its streams with that server.
    """
    choice = str(request.param)
    if choice == "raw" and not httpserver.AVAILABLE:
        pytest.skip("httptools is not installed (the fast extra)")
    token = HTTP_SERVER.set(choice)
    try:
        yield choice
    finally:
        HTTP_SERVER.reset(token)
