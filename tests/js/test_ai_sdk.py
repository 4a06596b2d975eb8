"""The gateway's ``ai-sdk`` output consumed by the real Vercel AI SDK (npm ``ai``), several versions.

``tests/js/package.json`` pins the versions of protocols/README.md section 7 side by side (npm
aliases): ai@5.0.0 (strict chunk schema), a late ai@5.x and ai@7. ``parse_ui_stream.mjs`` POSTs
to the gateway with each version's ``DefaultChatTransport`` (real fetch, real chunk validation)
and rebuilds the message with ``readUIMessageStream``, as ``useChat`` does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.harness import fixture_bytes, fixture_expected
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway
from tests.support.system import require_binary

HERE = Path(__file__).resolve().parent
VERSIONS = ("ai-5.0.0", "ai-5-latest", "ai-7")
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """``npm ci`` once into tests/js/node_modules (kept between runs; reinstalled if stale)."""
    require_binary("node")
    npm = require_binary("npm")
    marker = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=300,
        )
    return HERE / "node_modules"


async def parse_with_ai_sdk(url: str, body: Any) -> dict[str, Any]:
    node = require_binary("node")
    proc = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "parse_ui_stream.mjs"),
        url,
        json.dumps(body),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=HERE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def summarise(message: dict[str, Any]) -> dict[str, Any]:
    """Text, reasoning and tool calls of a UIMessage, as a useChat app would render them."""
    parts = message["parts"]
    tools = [
        {"id": p["toolCallId"], "name": p["type"][len("tool-") :], "input": p["input"]}
        for p in parts
        if p["type"].startswith("tool-")
    ]
    for p in parts:
        if p["type"].startswith("tool-"):
            assert p["state"] == "input-available", p
    return {
        "text": "".join(p["text"] for p in parts if p["type"] == "text"),
        "reasoning": "".join(p["text"] for p in parts if p["type"] == "reasoning"),
        "tools": tools,
    }


def assert_clean(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every version parsed the stream with no validation error; returns each summary."""
    out = {}
    for version in VERSIONS:
        got = results[version]
        assert got["ok"], f"{version}: {got['error']}"
        assert got["errors"] == [], f"{version}: {got['errors']}"
        out[version] = summarise(got["message"])
    return out


def fake_route(name: str, provider: str, base_url: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": provider,
        "format": "ai-sdk",
        "upstream": {"base_url": base_url, "api_key": "sk-test", "model": "m-1"},
    }


SIMULATED = {
    "name": "sim",
    "provider": "simulated",
    "options": {
        "text": "Hello there,\nworld! \u2028 ok",
        "reasoning": "Think\r\nfirst.",
        "first_token_delay": 0,
        "token_interval": 0,
    },
}


async def test_simulated_reasoning_and_text(node_modules: Path) -> None:
    async with running_gateway({"routes": [SIMULATED]}) as gw:
        results = await parse_with_ai_sdk(f"{gw.url}/v1/stream/sim?format=ai-sdk", HELLO)
    for version, got in assert_clean(results).items():
        assert got == {
            "text": "Hello there,\nworld! \u2028 ok",
            "reasoning": "Think\r\nfirst.",
            "tools": [],
        }, version
        parts = results[version]["message"]["parts"]
        assert [p["type"] for p in parts] == ["step-start", "reasoning", "text"]


async def test_tool_calls_from_a_chat_upstream(node_modules: Path, upstream: FakeUpstream) -> None:
    fixture = "openai_chat_tool_calls.sse"
    upstream.push(*[Script(chunks=[(0, fixture_bytes(fixture))]) for _ in VERSIONS])
    async with running_gateway({"routes": [fake_route("r", "openai-chat", upstream.url)]}) as gw:
        results = await parse_with_ai_sdk(f"{gw.url}/v1/stream/r", HELLO)
    expected = [
        {"id": c["id"], "name": c["name"], "input": json.loads(c["arguments"])}
        for c in fixture_expected(fixture)["tool_calls"]
    ]
    for got in assert_clean(results).values():
        assert got == {"text": "", "reasoning": "", "tools": expected}


async def test_thinking_text_and_tool_use_upstream(
    node_modules: Path, upstream: FakeUpstream
) -> None:
    fixture = "anthropic_thinking_tool_use.sse"
    upstream.push(*[Script(chunks=[(0, fixture_bytes(fixture))]) for _ in VERSIONS])
    async with running_gateway({"routes": [fake_route("r", "anthropic", upstream.url)]}) as gw:
        results = await parse_with_ai_sdk(f"{gw.url}/v1/stream/r", HELLO)
    want = fixture_expected(fixture)
    tools = [
        {"id": c["id"], "name": c["name"], "input": json.loads(c["arguments"])}
        for c in want["tool_calls"]
    ]
    for got in assert_clean(results).values():
        assert got == {"text": want["text"], "reasoning": want["reasoning"], "tools": tools}


async def test_error_mid_stream_reaches_use_chat_as_an_error(node_modules: Path) -> None:
    route = {
        "name": "bad",
        "provider": "simulated",
        "format": "ai-sdk",
        "options": {"text": "one two three", "fail_after": 2, "first_token_delay": 0},
    }
    async with running_gateway({"routes": [route]}) as gw:
        results = await parse_with_ai_sdk(f"{gw.url}/v1/stream/bad", HELLO)
    for version in VERSIONS:
        got = results[version]
        assert got["ok"], f"{version}: {got['error']}"
        assert got["errors"] == ["simulated upstream failure"], version
        assert summarise(got["message"])["text"] == "one two "
        types = [c["type"] for c in got["chunks"]]
        assert types[-3:] == ["error", "finish-step", "finish"]


async def test_use_chat_request_body_is_accepted(node_modules: Path) -> None:
    """The body DefaultChatTransport sends by itself (UIMessages with parts) is understood."""
    route = {**SIMULATED, "options": {"echo": True, "first_token_delay": 0, "token_interval": 0}}
    body = {
        "id": "chat-1",
        "trigger": "submit-message",
        "messageId": None,
        "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "echo me"}]},
        ],
    }
    async with running_gateway({"routes": [route]}) as gw:
        results = await parse_with_ai_sdk(f"{gw.url}/v1/stream/sim?format=ai-sdk", body)
    for got in assert_clean(results).values():
        assert got["text"] == "echo me"


async def test_finish_reason_variant_is_for_later_clients_only(node_modules: Path) -> None:
    """``ai-sdk-finish-reason`` adds finish.finishReason: ai@5.0.0's strict schema rejects it."""
    async with running_gateway({"routes": [SIMULATED]}) as gw:
        url = f"{gw.url}/v1/stream/sim?format=ai-sdk-finish-reason"
        results = await parse_with_ai_sdk(url, HELLO)
    assert "finishReason" in str(results["ai-5.0.0"]["error"] or results["ai-5.0.0"]["errors"])
    for version in ("ai-5-latest", "ai-7"):
        got = results[version]
        assert got["ok"] and got["errors"] == [], got
        assert got["chunks"][-1] == {"type": "finish", "finishReason": "stop"}
