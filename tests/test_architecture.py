"""The shape rules of architecture.md, checked on the source tree.

* The core is pure: framing, adapters, encoders, config, request, events, errors and the pipeline
  import neither aiohttp nor asyncio (so every piece is testable without a server).
* Nothing outside ``gateway/adapters/`` names a provider: provider knowledge lives in one module
  per provider (the litellm counter-example in architecture.md).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
PURE = [
    "framing",
    "adapters",
    "encoders",
    "config",
    "request.py",
    "events.py",
    "errors.py",
    "pipeline.py",
    "jsonutil.py",
]
PROVIDER_WORDS = re.compile(
    r"openai|anthropic|claude|gemini|google|vertex|ollama|cohere|bedrock|aws|amazon|"
    r"deepseek|vllm|mistral|groq|openrouter|litellm|gpt-\d",
    re.IGNORECASE,
)
# A client-facing format that copies a provider's public API may say whose API it copies, and a
# wire framing may carry its standard name (the binary event-stream format has one owner's name).
ALLOWED_PHRASES = re.compile(
    r"openai[- ]compatible|openai sdk|openai package|aws[- _]event[- _]?stream|vnd\.amazon\.eventstream"
    r"|anthropic messages|anthropic sdk|anthropic-version|anthropic-beta|claude code",
    re.IGNORECASE,
)


def _modules(entry: str) -> list[Path]:
    path = GATEWAY / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path", [p for e in PURE for p in _modules(e)], ids=lambda p: str(p.relative_to(GATEWAY))
)
def test_core_is_pure(path: Path) -> None:
    bad = _imports(path) & {"aiohttp", "asyncio"}
    assert not bad, f"{path.relative_to(GATEWAY)} imports {bad}: the core must stay free of I/O"


def _outside_adapters() -> list[Path]:
    return [
        p
        for p in sorted(GATEWAY.rglob("*"))
        if p.is_file()
        and "adapters" not in p.relative_to(GATEWAY).parts
        and p.suffix in (".py", ".js", ".html", ".css", ".ts")
    ]


@pytest.mark.parametrize("path", _outside_adapters(), ids=lambda p: str(p.relative_to(GATEWAY)))
def test_no_provider_named_outside_adapters(path: Path) -> None:
    text = ALLOWED_PHRASES.sub("", path.read_text(errors="replace"))
    found = sorted({m.group(0).lower() for m in PROVIDER_WORDS.finditer(text)})
    assert not found, (
        f"{path.relative_to(GATEWAY)} names providers {found}; move that knowledge into gateway/adapters/"
    )


def test_the_guard_would_catch_a_provider_name(tmp_path: Path) -> None:
    probe = "if provider == 'anthropic': pass"
    assert PROVIDER_WORDS.search(ALLOWED_PHRASES.sub("", probe))
    assert not PROVIDER_WORDS.search(ALLOWED_PHRASES.sub("", "an OpenAI-compatible front door"))
