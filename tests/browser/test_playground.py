"""The playground page at ``/`` (contract section 8) in headless Chromium against a real gateway."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import DEMO_REASONING, DEMO_TEXT, LOOP, tool_call_script, watch_of
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import RunningGateway, running_gateway, wait_for

pytestmark = [pytest.mark.system, LOOP]

ROUTES = ["demo", "fast", "upstream", "flaky", "cut", "ndjson-route"]

# Records (ms, length of the streaming text, thinking shown, reasoning length) at every change
# of the transcript, so a test can tell progressive streaming from text that appears at the end.
RECORD_GROWTH = """
() => {
  window.__samples = [];
  const t0 = performance.now();
  new MutationObserver(() => {
    const turn = document.querySelector(".msg.assistant:last-of-type");
    if (!turn) return;
    window.__samples.push({
      t: performance.now() - t0,
      text: turn.querySelector(".text").textContent.length,
      thinking: !turn.querySelector(".thinking").hidden,
      reasoning: turn.querySelector(".reasoning-text").textContent.length,
    });
  }).observe(document.getElementById("transcript"),
             { subtree: true, childList: true, characterData: true, attributes: true });
}
"""


async def open_playground(page: Page, gateway: RunningGateway, route: str | None = None) -> None:
    query = f"?route={route}" if route else ""
    await page.goto(f"{gateway.url}/{query}")
    await expect(page.locator("#send")).to_be_enabled()


async def send(page: Page, text: str = "Hello there") -> None:
    await page.fill("#message", text)
    await page.click("#send")


def assistant(page: Page) -> Any:
    return page.locator(".msg.assistant").last


async def test_the_page_loads_lists_routes_and_streams_the_demo_route(
    page: Page, gateway: RunningGateway
) -> None:
    await open_playground(page, gateway)
    options = await page.locator("#route option").all_text_contents()
    assert options == ROUTES
    assert await page.locator("#route").input_value() == "demo"
    await expect(page.locator("#route-info")).to_contain_text("POST /v1/stream/demo")

    await page.evaluate(RECORD_GROWTH)
    await send(page)
    turn = assistant(page)
    await expect(turn.locator(".thinking")).to_be_visible()
    await expect(page.locator("#stop")).to_be_enabled()
    await expect(page.locator("#status")).to_have_text("done · stop", timeout=15_000)

    # Reasoning is shown apart from the visible text, and the text is exactly the route's.
    assert await turn.locator(".reasoning-text").text_content() == DEMO_REASONING
    assert await turn.locator(".text").text_content() == DEMO_TEXT
    await expect(turn.locator(".thinking")).to_be_hidden()
    await expect(page.locator(".msg.user .body")).to_have_text("Hello there")

    # The text grew over time, piece by piece, not all at once at the end.
    samples = await page.evaluate("window.__samples")
    lengths = sorted({s["text"] for s in samples if s["text"]})
    assert len(lengths) >= 10, lengths
    first_text = next(s["t"] for s in samples if s["text"])
    full_text = next(s["t"] for s in samples if s["text"] == lengths[-1])
    assert full_text - first_text > 300, (first_text, full_text)  # ~30 pieces 40 ms apart
    assert any(s["thinking"] and not s["text"] for s in samples)  # indicator before the text
    assert any(s["reasoning"] and not s["text"] for s in samples)  # reasoning before the text

    # Timings are shown.
    assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", await page.locator("#ttft").inner_text())
    assert float(await page.locator("#tps").inner_text()) > 0
    assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", await page.locator("#duration").inner_text())
    assert int(await page.locator("#events").inner_text()) > 30
    assert await page.locator("#reason").inner_text() == "stop"
    assert len(await page.locator("#request-id").inner_text()) == 32
    await expect(page.locator("#send")).to_be_enabled()
    await expect(page.locator("#stop")).to_be_disabled()

    # The raw event log, behind its toggle.
    await expect(page.locator("#log")).to_be_hidden()
    await page.check("#log-toggle")
    log = page.locator("#log")
    await expect(log).to_be_visible()
    await expect(log).to_contain_text("created")
    await expect(log).to_contain_text('end       {"reason":"stop"')

    watch = watch_of(page)
    assert watch.console_errors == []
    assert watch.failed_requests == []
    assert watch.bad_responses == []


async def test_a_second_turn_sends_the_conversation(page: Page, gateway: RunningGateway) -> None:
    await open_playground(page, gateway, "fast")
    await send(page, "first")
    await expect(page.locator("#status")).to_have_text("done · stop")
    async with page.expect_request("**/v1/stream/fast") as info:
        await send(page, "second")
    body = (await info.value).post_data_json
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == DEMO_TEXT
    await expect(page.locator("#status")).to_have_text("done · stop")
    assert await page.locator(".msg.assistant").count() == 2


async def test_stop_cancels_the_upstream(
    page: Page, gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    await open_playground(page, gateway, "upstream")
    await send(page)
    turn = assistant(page)
    await expect(turn.locator(".text")).to_contain_text("word2")
    seen = upstream.seen[-1]
    assert seen.closed_at is None
    clicked = time.monotonic()
    await page.click("#stop")
    await wait_for(lambda: seen.closed_at is not None, timeout=2)
    assert seen.closed_at is not None and not seen.completed
    assert seen.closed_at - clicked < 0.5
    await expect(page.locator("#status")).to_have_text("stopped")
    await expect(turn.locator(".turn-state")).to_have_text("stopped")
    await expect(page.locator("#stop")).to_be_disabled()
    await expect(page.locator("#send")).to_be_enabled()
    await expect(page.locator("#error")).to_be_hidden()
    await wait_for(lambda: not gateway.state.sessions, timeout=2)
    assert watch_of(page).console_errors == []


async def test_a_stream_error_is_shown(page: Page, gateway: RunningGateway) -> None:
    await open_playground(page, gateway, "flaky")
    await send(page)
    error = page.locator("#error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("upstream_error")
    await expect(error).to_contain_text("simulated upstream failure")
    await expect(error).to_contain_text("retryable")
    await expect(page.locator("#status")).to_have_text("error")
    turn = assistant(page)
    await expect(turn.locator(".turn-state")).to_have_text("failed")
    await expect(turn.locator(".turn-error")).to_have_text(
        "upstream_error: simulated upstream failure"
    )
    assert len((await turn.locator(".text").text_content() or "").split()) == 3
    # A mid-stream error came on a 200 response: the banner does not blame "HTTP 200".
    assert "HTTP" not in (await error.text_content() or "")
    assert watch_of(page).console_errors == []


async def test_a_failed_turn_is_scrolled_into_view(page: Page, gateway: RunningGateway) -> None:
    await open_playground(page, gateway, "fast")
    for _ in range(3):
        await send(page, "fill the transcript")
        await expect(page.locator("#status")).to_have_text("done · stop")
    await page.select_option("#route", "flaky")
    await send(page)
    await expect(page.locator("#status")).to_have_text("error")
    await expect(page.locator("#error")).to_be_visible()
    gap = await page.evaluate(
        "(() => { const t = document.getElementById('transcript');"
        " return t.scrollHeight - t.clientHeight - t.scrollTop; })()"
    )
    assert gap <= 2, gap  # the failed turn's error line is in view, not under the banner


async def test_a_very_long_fast_answer_does_not_freeze_the_page(page: Page) -> None:
    # 3000 pieces as fast as the gateway can send them: rendered once per frame, not once per
    # event (which took ~18 s here, the page frozen, and grew with the square of the length).
    doc = {
        "routes": [
            {
                "name": "long",
                "provider": "simulated",
                "options": {"words": 3000, "first_token_delay": 0, "token_interval": 0},
            }
        ]
    }
    async with running_gateway(doc) as gw:
        await open_playground(page, gw)
        started = time.monotonic()
        await send(page)
        await expect(page.locator("#status")).to_have_text("done · stop", timeout=20_000)
        took = time.monotonic() - started
        text = await assistant(page).locator(".text").text_content() or ""
        assert len(text.split()) == 3000
        assert (
            await page.locator("#events").inner_text() == "3005"
        )  # created, thinking, clear, 3000 deltas, usage, end
        assert took < 5, took
        assert watch_of(page).console_errors == []


async def test_an_upstream_failure_before_the_stream_is_shown(
    page: Page, gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.push(Script(status=500, headers={"Content-Type": "application/json"}))
    await open_playground(page, gateway, "upstream")
    await send(page)
    error = page.locator("#error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("upstream_error")
    await expect(error).to_contain_text("HTTP 502")
    await expect(page.locator("#status")).to_have_text("error")
    # A new request clears the error.
    await send(page)
    await expect(page.locator("#status")).to_have_text(re.compile("streaming"))
    await expect(error).to_be_hidden()
    await page.click("#stop")


async def test_tool_calls_are_shown(
    page: Page, gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    upstream.push(tool_call_script())
    await open_playground(page, gateway, "upstream")
    await send(page, "Weather in Paris?")
    await expect(page.locator("#status")).to_have_text("done · tool_calls")
    call = assistant(page).locator(".tool-call")
    await expect(call).to_have_count(1)
    await expect(call.locator(".tool-name")).to_have_text("get_weather")
    await expect(call.locator(".tool-id")).to_have_text("call_42")
    args = await call.locator(".tool-args").text_content()
    assert args is not None and '"city": "Paris"' in args and '"unit": "celsius"' in args
    assert watch_of(page).console_errors == []


async def test_a_route_in_another_format_is_played_as_tokens(
    page: Page, gateway: RunningGateway
) -> None:
    await open_playground(page, gateway, "ndjson-route")
    await expect(page.locator("#route-info")).to_contain_text("ndjson → tokens")
    await send(page)
    await expect(page.locator("#status")).to_have_text("done · stop")
    await expect(assistant(page).locator(".text")).to_have_text("in any format")


async def test_the_page_is_readable_on_a_phone(page: Page, gateway: RunningGateway) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await open_playground(page, gateway, "fast")
    await send(page, "A message long enough to wrap on a narrow phone screen, " * 3)
    await expect(page.locator("#status")).to_have_text("done · stop")
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    for sel in ("#route", "#message", "#send", "#stop"):
        box = await page.locator(sel).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, sel
    font = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert font >= 14
    assert watch_of(page).console_errors == []


async def test_the_api_key_setting_authorises_requests(page: Page) -> None:
    key = "gk-playground-0123456789abcdef"
    doc = {
        "routes": [
            {
                "name": "chat",
                "provider": "simulated",
                "options": {"text": "authorised", "first_token_delay": 0, "token_interval": 0},
            }
        ],
        "auth": {"keys": [{"name": "web", "key": key}]},
    }
    async with running_gateway(doc) as gw:
        await open_playground(page, gw)
        await send(page)
        error = page.locator("#error")
        await expect(error).to_contain_text("unauthorized")
        await expect(error).to_contain_text("HTTP 401")
        await page.click(".settings summary")
        await page.fill("#api-key", key)
        async with page.expect_request("**/v1/stream/chat") as info:
            await send(page)
        assert (await info.value).headers["authorization"] == f"Bearer {key}"
        await expect(page.locator("#status")).to_have_text("done · stop")
        await expect(assistant(page).locator(".text")).to_have_text("authorised")
        await expect(error).to_be_hidden()
