"""CORS end to end (contract section 9): a real headless Chromium on another origin streams a
route through ``gateway-client.js``, and reads what the browser lets it read.

The page is the browser tests' raw server (it serves the client module); the gateway runs on
another port, which makes it another origin.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.conftest import LOOP, RawServer, browser, page, raw_server
from tests.support.gateway import running_gateway

pytestmark = [pytest.mark.system, LOOP]
__all__ = ["browser", "page", "raw_server"]  # the browser tests' fixtures, used here

FAST = {"text": "from afar", "first_token_delay": 0, "token_interval": 0}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STREAM_TWICE = """async ({url, headers}) => {
  const { streamTokens } = await import("/static/gateway-client.js");
  const body = { messages: [{ role: "user", content: "Hi" }] };
  const out = [];
  for (let i = 0; i < 2; i++) {
    try {
      out.push({ text: (await streamTokens(url, body, { headers })).text });
    } catch (err) {
      out.push({ kind: err.kind, status: err.status, code: err.code, retryAfter: err.retryAfter });
    }
  }
  return out;
}"""


def route(origin: str) -> dict[str, Any]:
    return {
        "name": "web",
        "provider": "simulated",
        "options": FAST,
        "cors": {"allow_origins": [origin]},
    }


async def stream_twice(page: Page, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(
        STREAM_TWICE, {"url": url, "headers": headers}
    )
    return result


async def test_a_page_sends_its_trace_context_and_reads_a_rate_limits_retry_after(
    page: Page, raw_server: RawServer
) -> None:
    """A page's tracing adds ``traceparent`` (the preflight refused it: every request failed
    as a network error), and a 429's ``Retry-After`` must reach the client's ``retryAfter``
    (unexposed, the browser showed it as null)."""
    doc = {
        "auth": {"keys": [{"name": "web", "key": "k", "limits": {"requests_per_minute": 1}}]},
        "routes": [route(raw_server.url)],
    }
    async with running_gateway(doc) as gw:
        await page.goto(raw_server.url + "/")
        headers = {"Authorization": "Bearer k", "traceparent": TRACEPARENT}
        first, second = await stream_twice(page, f"{gw.url}/v1/stream/web", headers)
    assert first == {"text": "from afar"}
    assert second["kind"] == "http" and (second["status"], second["code"]) == (429, "rate_limited")
    assert int(second["retryAfter"]) >= 1


async def test_an_origin_configured_in_another_case_is_allowed(
    page: Page, raw_server: RawServer
) -> None:
    """``http://LocalHost:<port>`` in the config is the page at ``http://localhost:<port>``
    (the browser sends its origin in lower case): it was accepted and never matched."""
    port = raw_server.url.rsplit(":", 1)[1]
    async with running_gateway({"routes": [route(f"http://LocalHost:{port}")]}) as gw:
        await page.goto(f"http://localhost:{port}/")
        first, _ = await stream_twice(page, f"{gw.url}/v1/stream/web", {})
    assert first == {"text": "from afar"}
