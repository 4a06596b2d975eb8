"""``gateway/upstream.py``: the one mapping of the upstream clients' exceptions."""

from __future__ import annotations

import aiohttp

from gateway.errors import UpstreamConnectError, UpstreamTimeout, UpstreamTruncated
from gateway.upstream import client_error


def test_a_connect_timeout_is_a_connect_error_on_either_client() -> None:
    # aiohttp's connect timeout is a TimeoutError too: it was a 504 "did not answer in time"
    # there, where the fast client says 502 upstream_connect (docs/operations/reliability.md).
    got = client_error(aiohttp.ConnectionTimeoutError("Connection timeout to host"))
    assert isinstance(got, UpstreamConnectError)
    assert got.http_status == 502 and got.error_code == "upstream_connect"


def test_a_read_timeout_is_still_a_timeout() -> None:
    assert isinstance(client_error(aiohttp.SocketTimeoutError("read")), UpstreamTimeout)
    assert isinstance(client_error(TimeoutError()), UpstreamTimeout)


def test_a_broken_connection_mid_stream_is_truncation() -> None:
    got = client_error(aiohttp.ServerDisconnectedError(), mid_stream=True)
    assert isinstance(got, UpstreamTruncated)
