"""Fixtures shared by several test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.rawhttp import AVAILABLE
from tests.support.gateway import UPSTREAM_CLIENT


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
