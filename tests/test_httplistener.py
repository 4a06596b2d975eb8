"""Which server serves the stream requests (``gateway/httplistener.py``); the listener itself
runs in every test of tests/test_httpserver.py."""

from __future__ import annotations

import pytest

from gateway import httplistener
from gateway.errors import ConfigError


def test_raw_without_httptools_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httplistener, "AVAILABLE", False)
    with pytest.raises(ConfigError, match="http_server: raw needs httptools"):
        httplistener.use_raw_server("raw")
    assert httplistener.use_raw_server("auto") is False
    monkeypatch.setattr(httplistener, "AVAILABLE", True)
    assert httplistener.use_raw_server("auto") is True
    assert httplistener.use_raw_server("aiohttp") is False
