"""Screenshots of the playground for the docs (run by hand, not a test).

    .venv/bin/python -m tests.browser.screenshots [OUT_DIR]   # default: docs/img

Starts the gateway in-process with a simulated route, streams one question on a desktop and a
phone viewport in headless Chromium, and writes playground.png and playground-mobile.png.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from tests.browser.conftest import CHROMIUM_ARGS
from tests.support.gateway import running_gateway

REPO = Path(__file__).resolve().parents[2]
ANSWER = (
    "Server-sent events keep one HTTP response open and push each token as its own small "
    "frame, so the browser can paint the answer while the model is still writing it. "
    "The gateway turns every provider's stream into the same events: created, thinking, "
    "reasoning, delta, tool calls, usage and one terminal end or error."
)
REASONING = (
    "The user wants to know why tokens can be streamed. I should explain server-sent events "
    "briefly and mention what the gateway adds on top."
)
DOC = {
    "routes": [
        {
            "name": "demo",
            "provider": "simulated",
            "options": {
                "text": ANSWER,
                "reasoning": REASONING,
                "first_token_delay": "400ms",
                "token_interval": "15ms",
            },
        },
        {"name": "echo", "provider": "simulated", "options": {"echo": True}},
    ]
}
QUESTION = "How can a model's answer appear in the browser while it is being written?"


async def run_one(page: Page, url: str, *, log: bool) -> None:
    await page.goto(url + "/?route=demo")
    await expect(page.locator("#send")).to_be_enabled()
    if log:
        await page.check("#log-toggle")
    await page.fill("#message", QUESTION)
    await page.click("#send")
    await expect(page.locator("#status")).to_have_text("done · stop", timeout=20_000)
    await page.locator(".msg.assistant .reasoning").last.evaluate("d => { d.open = true; }")
    await page.evaluate("document.activeElement && document.activeElement.blur()")


async def main(out: Path) -> None:
    async with running_gateway(DOC) as gw, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        try:
            desktop = await browser.new_page(viewport={"width": 1280, "height": 760})
            await run_one(desktop, gw.url, log=True)
            await desktop.screenshot(path=str(out / "playground.png"))
            phone = await browser.new_page(
                viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
            )
            await run_one(phone, gw.url, log=False)
            await phone.screenshot(path=str(out / "playground-mobile.png"))
        finally:
            await browser.close()
    print(f"wrote {out / 'playground.png'} and {out / 'playground-mobile.png'}")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "img"
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
