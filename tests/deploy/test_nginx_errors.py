"""Errors nginx itself answers, with the shipped config (deploy/nginx/): the contract's JSON, never
nginx's HTML page (contract section 3: errors before any stream byte are JSON).

- No gateway replica reachable (nothing listens: nginx's own 502): a JSON 503 ``unavailable``
  with ``Retry-After``, as the gateway's own answer while it drains.
- The gateway's own JSON 502 (its provider refused the connection) passes through unchanged:
  only errors nginx generates are replaced.
- ``/metrics`` on the public edge: a JSON 403.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.deploy.nginx import running_nginx
from tests.support.gateway import running_gateway
from tests.support.system import free_port

pytestmark = pytest.mark.system

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


async def post(url: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=HELLO) as resp:
        body = await resp.json(content_type=None)
        return resp.status, dict(resp.headers), body


async def test_no_gateway_reachable_is_a_json_503_not_nginx_html(tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens there: nginx's connect fails (its own 502)
    async with running_nginx(tmp_path, nobody) as nginx:
        for path in ("/v1/stream/demo", "/v1/chat/completions"):
            status, headers, body = await post(f"{nginx.url}{path}")
            assert status == 503, (path, body)
            assert headers["Content-Type"].startswith("application/json")
            assert body["error"]["code"] == "unavailable"
            assert int(headers["Retry-After"]) >= 1
        async with aiohttp.ClientSession() as s, s.get(f"{nginx.url}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json(content_type=None))["error"]["code"] == "unavailable"


async def test_the_gateways_own_502_passes_through_unchanged(tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{free_port()}/v1"  # the provider: nothing listens
    doc = {
        "routes": [
            {
                "name": "r",
                "provider": "openai-chat",
                "upstream": {"base_url": refused, "model": "m"},
                "timeouts": {"connect": "2s"},
            }
        ]
    }
    async with running_gateway(doc) as gw, running_nginx(tmp_path, gw.port) as nginx:
        direct = await post(f"{gw.url}/v1/stream/r")
        through = await post(f"{nginx.url}/v1/stream/r")
    assert direct[0] == through[0] == 502
    assert through[2] == direct[2]
    assert through[2]["error"]["code"] == "upstream_connect"


async def test_metrics_on_the_edge_is_a_json_403(tmp_path: Path) -> None:
    async with running_nginx(tmp_path, free_port()) as nginx:
        async with aiohttp.ClientSession() as s, s.get(f"{nginx.url}/metrics") as resp:
            assert resp.status == 403
            assert resp.headers["Content-Type"].startswith("application/json")
            assert (await resp.json(content_type=None))["error"]["code"] == "forbidden"
