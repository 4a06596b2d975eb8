"""Translator cost per adapter: CPU µs per event through :class:`gateway.pipeline.Pipeline`.

For every adapter in :data:`gateway.adapters.ADAPTERS`, the recorded fixture streams in
``tests/fixtures`` (framing decoder + translator + protocol guard, each fixture fed whole, then
EOF) are replayed in a loop for a fixed CPU budget; the figure is process CPU time divided by the
events produced. ``simulated`` replays the NDJSON script its own ``build_request`` makes, and
``mapped`` the YAML twins in ``tests/adapters/data`` on the fixtures of the adapters they copy.
No I/O and no encoder: this is the pure translation cost an adapter adds to the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.adapters import ADAPTERS, Adapter, LocalScript
from gateway.config.model import UpstreamConfig
from gateway.pipeline import Pipeline
from gateway.request import parse_request

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TWINS = ROOT / "tests" / "adapters" / "data"

PREFIXES: dict[str, tuple[str, ...]] = {
    "openai-chat": ("openai_chat_", "openai_compat_"),
    "openai-responses": ("openai_responses_",),
    "anthropic": ("anthropic_",),
    "gemini": ("gemini_",),
    "ollama": ("ollama_",),
    "cohere": ("cohere_",),
    "bedrock": ("bedrock_",),
}
OPTIONS: dict[str, dict[str, Any]] = {
    "bedrock": {"region": "us-west-2", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "x"},
}
MAPPED_TWINS = {"openai_chat": "openai-chat", "ollama": "ollama"}


def _adapter(name: str, options: Mapping[str, Any] | None = None) -> Adapter:
    cls = ADAPTERS[name]
    parsed, errors = cls.parse_options(options or {}, "options")
    if errors:
        raise ValueError(f"{name}: {errors}")
    upstream = UpstreamConfig(base_url="http://127.0.0.1:1/v1", api_key="k", model="m")
    return cls(upstream, parsed)


def _fixtures(adapter_name: str) -> list[bytes]:
    prefixes = PREFIXES.get(adapter_name, ())
    return [
        p.read_bytes()
        for p in sorted(FIXTURES.iterdir())
        if p.name.startswith(prefixes) and not p.name.endswith(".json")
    ]


def _cases() -> list[tuple[str, str, Adapter, list[bytes]]]:
    """``(row name, adapter name, adapter, streams)`` for every registered adapter."""
    cases = []
    for name in ADAPTERS:
        if name == "simulated":
            adapter = _adapter(name, {"words": 200, "reasoning": True})
            script = adapter.build_request(
                parse_request({"messages": [{"role": "user", "content": "hi"}]})
            )
            assert isinstance(script, LocalScript)
            cases.append((name, name, adapter, [b"".join(c for _, c in script.chunks)]))
        elif name == "mapped":
            for twin, copied in MAPPED_TWINS.items():
                options = yaml.safe_load((TWINS / f"mapped_{twin}.yaml").read_text())
                streams = _fixtures(copied)
                cases.append((f"mapped ({copied} twin)", name, _adapter(name, options), streams))
        else:
            cases.append((name, name, _adapter(name, OPTIONS.get(name)), _fixtures(name)))
    return cases


def _one_pass(adapter: Adapter, streams: list[bytes]) -> int:
    events = 0
    for data in streams:
        pipe = Pipeline(adapter)
        events += len(pipe.accepted()) + len(pipe.feed(data)) + len(pipe.close())
    return events


def measure(budget: float = 0.5) -> list[dict[str, Any]]:
    """One row per adapter (and per mapped twin): events per pass and CPU µs per event."""
    rows = []
    for row_name, _, adapter, streams in _cases():
        if not streams:
            continue
        per_pass = _one_pass(adapter, streams)  # also warms caches
        size = sum(map(len, streams))
        passes = 0
        start = time.process_time()
        while (used := time.process_time() - start) < budget:
            for _ in range(20):
                _one_pass(adapter, streams)
            passes += 20
        rows.append(
            {
                "adapter": row_name,
                "fixtures": len(streams),
                "events": per_pass,
                "bytes": size,
                "us_per_event": used / (passes * per_pass) * 1e6,
                "us_per_byte": used / (passes * size) * 1e6,
            }
        )
    return rows
