"""The shipped configs: config.yaml and examples/all-providers.yaml (a route for every provider)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.adapters import ADAPTERS
from gateway.adapters.base import UpstreamRequest
from gateway.cli import main
from gateway.config.parse import load_config_file
from gateway.request import parse_request
from gateway.state import build_state
from tests.support.fake_upstream import FakeUpstream, Script, chunks_of
from tests.support.gateway import running_gateway

REPO = Path(__file__).resolve().parent.parent
ALL = REPO / "examples" / "all-providers.yaml"


@pytest.mark.parametrize("path", [REPO / "config.yaml", ALL], ids=lambda p: p.name)
def test_check_config_accepts_the_shipped_configs(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(path)]) == 0
    assert "POST /v1/stream/" in capsys.readouterr().out


def test_the_example_declares_a_route_for_every_provider(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["check-config", str(ALL)])
    listed = capsys.readouterr().out
    for name in ADAPTERS:
        assert f"provider={name}" in listed, f"examples/all-providers.yaml has no {name} route"


def test_every_example_route_builds_its_upstream_request() -> None:
    config = load_config_file(ALL, env={})
    state = build_state(config)
    chat = parse_request({"messages": [{"role": "user", "content": "Hello"}]})
    for runtime in state.routes.values():
        for target, adapter in runtime.targets:
            built = adapter.build_request(chat)
            if target.provider != "simulated":
                assert isinstance(built, UpstreamRequest)
                assert built.url.startswith("http"), (target.provider, built.url)


# The examples of the user docs, run for real: a YAML block that does not load, a stream that
# no longer matches its worked example, or an SDK snippet that raises is a defect of the docs.

DOCS_WITH_CONFIG = (
    "README.md",
    "docs/configuration.md",
    "docs/resume.md",
    "docs/clients.md",
    "docs/clients/browser.md",
)
DEMO_ROUTES = [{"name": "demo", "provider": "simulated"}, {"name": "gpt", "provider": "simulated"}]


def code_blocks(doc: str, lang: str) -> list[tuple[int, str]]:
    """Each fenced block of ``lang`` in the repo file ``doc``: (line of its fence, text)."""
    blocks: list[tuple[int, str]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate((REPO / doc).read_text().splitlines(), 1):
        if current is None and line.strip() == f"```{lang}":
            current, start = [], number
        elif current is not None and line.strip() == "```":
            blocks.append((start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def yaml_blocks() -> list[tuple[str, str]]:
    return [
        (f"{doc}:{line}", text)
        for doc in DOCS_WITH_CONFIG
        for line, text in code_blocks(doc, "yaml")
    ]


@pytest.mark.parametrize(("where", "text"), yaml_blocks(), ids=[w for w, _ in yaml_blocks()])
def test_every_yaml_example_of_the_docs_is_a_valid_config(
    where: str, text: str, tmp_path: Path
) -> None:
    """A block with ``routes`` loads as it is; a fragment (``auth``, ``pricing`` ...) loads
    beside routes named as the docs name them. Every ``${VAR}`` it uses is set."""
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), where
    if "routes" not in doc:
        doc["routes"] = DEMO_ROUTES
        text = yaml.safe_dump(doc)
    env = {name: "x" for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)}
    path = tmp_path / "example.yaml"
    path.write_text(text)
    load_config_file(path, env=env)  # raises ConfigError, naming the key, when the doc is wrong


def shown_frames(doc: str) -> list[dict[str, str]]:
    """The SSE frames with an ``id`` that the console examples of ``doc`` show (a line that is
    no field, ``...`` say, ends a frame as a blank line does)."""
    frames: list[dict[str, str]] = []
    for _, text in code_blocks(doc, "console"):
        fields: dict[str, str] = {}
        for line in [*text.splitlines(), ""]:
            name, sep, value = line.partition(": ")
            if sep and name in ("id", "event", "data"):
                fields[name] = value
                continue
            if "id" in fields and "event" in fields:
                frames.append(fields)
            fields = {}
    return frames


def fast_demo() -> dict[str, Any]:
    """config.yaml's demo route at full speed: the pace changes no frame."""
    doc = yaml.safe_load((REPO / "config.yaml").read_text())
    demo = next(r for r in doc["routes"] if r["name"] == "demo")
    demo["options"].update(first_token_delay=0, token_interval=0)
    return {"routes": [demo]}


@pytest.mark.parametrize("doc", ["README.md", "docs/protocol.md"])
async def test_the_worked_example_is_the_demo_routes_own_stream(doc: str) -> None:
    shown = shown_frames(doc)
    assert len(shown) >= 3, f"{doc} shows no stream"
    async with running_gateway(fast_demo()) as gw, aiohttp.ClientSession() as http:
        body = {"messages": [{"role": "user", "content": "Hello"}]}
        async with http.post(f"{gw.url}/v1/stream/demo", json=body) as resp:
            frames = parse_sse((await resp.read()).decode())
    real = {f["id"]: f for f in frames}
    assert shown[-1]["id"] == frames[-1]["id"], "the example's last frame is not the stream's last"
    for frame in shown:
        got = real.get(frame["id"])
        assert got is not None and got["event"] == frame["event"], (doc, frame, got)
        want, data = json.loads(frame["data"]), json.loads(got["data"])
        if frame["event"] == "created":  # its id is the request's own, elided in the doc
            want.pop("id"), data.pop("id")
        assert data == want, (doc, frame["id"])


def parse_sse(text: str) -> list[dict[str, str]]:
    frames = []
    for chunk in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in chunk.splitlines() if not line.startswith(":")
        )
        if fields:
            frames.append(fields)
    return frames


DOC_URL = "http://127.0.0.1:8080"
FIXTURES = REPO / "tests" / "fixtures"
CLIENT_SNIPPETS = {
    # a marker of the docs/clients.md block: what its output must hold
    "chat.completions.create(": ["Consectetur", "completion_tokens=96", "Dolor"],
    "responses.stream(": ["Consectetur", "output_tokens=96", "Dolor"],
    "function_call_output": ["Hello! Streaming works — naïve café test 🚀."],
    "anthropic.Anthropic(": ["Consectetur", "end_turn", "Dolor"],
    "asyncio.run(main())": ["Consectetur"],
}
OPENAI_CLIENT = 'from openai import OpenAI\nclient = OpenAI(base_url="{url}/v1", api_key="k")\n'


def client_snippet(marker: str) -> str:
    found = [text for _, text in code_blocks("docs/clients.md", "python") if marker in text]
    assert len(found) == 1, f"docs/clients.md has {len(found)} python blocks with {marker!r}"
    return found[0]


@pytest.mark.parametrize("marker", list(CLIENT_SNIPPETS))
async def test_the_python_client_examples_run_as_written(
    marker: str, upstream: FakeUpstream
) -> None:
    """Each Python example of docs/clients.md, with the official SDKs, against the gateway:
    ``demo`` as in config.yaml, ``gpt`` on a Responses upstream that calls a tool, then
    answers the tool's result."""
    for name in ("openai_responses_reasoning_and_tool_call.sse", "openai_responses_basic.sse"):
        upstream.push(Script(chunks=chunks_of((FIXTURES / name).read_bytes())))
    gpt = {
        "name": "gpt",
        "provider": "openai-responses",
        "upstream": {"base_url": f"{upstream.url}/v1", "api_key": "k", "model": "m"},
    }
    config = fast_demo()
    config["routes"].append(gpt)
    async with running_gateway(config) as gw:
        code = client_snippet(marker).replace(DOC_URL, gw.url)
        if "client = " not in code:  # a continuation of the block before it
            code = OPENAI_CLIENT.format(url=gw.url) + code
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=PIPE, stderr=PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    for expected in CLIENT_SNIPPETS[marker]:
        assert expected in out.decode(), (expected, out.decode())
