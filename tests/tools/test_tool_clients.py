"""Real coding tools as gateway clients: the Codex CLI on ``/v1/responses`` and Claude Code on
``/v1/messages`` (contract section 10), each against a ``simulated`` route, offline.

``tests/tools/package.json`` pins ``@openai/codex`` and ``@anthropic-ai/claude-code``; both ship
their native binary inside the npm package (an optional platform dependency), so ``npm ci`` is
the whole install. Each run gets a fresh HOME (config, sessions and caches stay in ``tmp_path``)
and an environment with nothing but PATH and the tool's settings, so nothing leaks in or out.
The settings are the ones docs/clients.md gives. Skips when node/npm are missing, unless
``GATEWAY_REQUIRE_SYSTEM_TESTS=1``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.gateway import RunningGateway, metric_value, running_gateway
from tests.support.system import require_binary

HERE = Path(__file__).resolve().parent
FRONTDOORS = ("route", "chat_completions", "responses", "messages")


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    """``npm ci`` once into tests/tools/node_modules (kept between runs; reinstalled if stale)."""
    require_binary("node")
    npm = require_binary("npm")
    marker = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=900,
        )
    return HERE / "node_modules" / ".bin"


def simulated(text: str) -> dict[str, object]:
    options = {
        "text": text,
        "reasoning": False,
        "first_token_delay": "5ms",
        "token_interval": "1ms",
    }
    return {"routes": [{"name": "demo", "provider": "simulated", "options": options}]}


async def run_tool(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run the tool without blocking the loop (the gateway serves it from this loop)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def door_counts(gw: RunningGateway) -> dict[str, float]:
    name = "gateway_frontdoor_requests_total"
    return {
        door: await metric_value(gw.url, name, {"route": "demo", "frontdoor": door})
        for door in FRONTDOORS
    }


def codex_config(base_url: str) -> str:
    """docs/clients.md, "Codex CLI": a custom Responses provider pointed at the gateway."""
    return f"""model = "demo"
model_provider = "gateway"
web_search = "disabled"

[model_providers.gateway]
name = "Streaming gateway"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "GATEWAY_API_KEY"

[agents]
enabled = false
"""


async def test_codex_exec_answers_through_the_responses_front_door(
    bin_dir: Path, tmp_path: Path
) -> None:
    text = "The gateway says pineapple-42."
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".codex").mkdir(parents=True)
    work.mkdir()
    async with running_gateway(simulated(text)) as gw:
        (home / ".codex" / "config.toml").write_text(codex_config(gw.url))
        env = {"HOME": str(home), "CODEX_HOME": str(home / ".codex"), "GATEWAY_API_KEY": "x"}
        argv = [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", "Say hello"]
        code, out, err = await run_tool(argv, env, work)
        counts = await door_counts(gw)
    assert code == 0, err
    assert text in out
    assert counts["responses"] >= 1, counts
    assert counts["messages"] == counts["chat_completions"] == counts["route"] == 0


async def test_claude_code_print_answers_through_the_messages_front_door(
    bin_dir: Path, tmp_path: Path
) -> None:
    text = "The gateway says mango-7."
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    async with running_gateway(simulated(text)) as gw:
        env = {
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": gw.url,
            "ANTHROPIC_API_KEY": "sk-gateway-test",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "demo",  # its background calls use the route too
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
        }
        argv = [str(bin_dir / "claude"), "-p", "--model", "demo", "Say hello"]
        code, out, err = await run_tool(argv, env, work)
        counts = await door_counts(gw)
    assert code == 0, err
    assert text in out
    assert counts["messages"] >= 1, counts
    assert counts["responses"] == counts["chat_completions"] == counts["route"] == 0
