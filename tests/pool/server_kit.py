"""Shared parts of the pool-through-the-gateway tests: fake deployments and pooled routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.faults.kit import SSE, chat_chunk, chat_stream
from tests.support.fake_upstream import FakeUpstream, Script


def ok(text: str = "Hi", delay: float = 0.0) -> Script:
    """A short healthy stream, its first byte after ``delay`` seconds."""
    body = chat_stream(text)
    return Script(chunks=[(delay, body)], headers=SSE)


def held(text: str = "Hi") -> Script:
    """A stream that sends one token, then stays open until the client leaves."""
    return Script(chunks=[(0, chat_chunk(text))], headers=SSE, hang_after=True)


@asynccontextmanager
async def deployments(*names: str) -> AsyncIterator[dict[str, FakeUpstream]]:
    """One fake upstream per deployment name, each answering :func:`ok` by default."""
    fakes: dict[str, FakeUpstream] = {}
    try:
        for name in names:
            fake = await FakeUpstream().start()
            fake.default = ok(f"from-{name}")
            fakes[name] = fake
        yield fakes
    finally:
        for fake in fakes.values():
            await fake.stop()


def pooled_route(
    fakes: dict[str, FakeUpstream],
    *,
    strategy: str = "round_robin",
    name: str = "r",
    weights: dict[str, float] | None = None,
    caps: dict[str, int] | None = None,
    cooldown: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A route with one deployment per fake upstream (``base_url`` may be overridden)."""
    ups = []
    for dep, fake in fakes.items():
        up: dict[str, Any] = {"name": dep, "base_url": fake.url, "api_key": "k", "model": "m"}
        if weights and dep in weights:
            up["weight"] = weights[dep]
        if caps and dep in caps:
            up["max_concurrent"] = caps[dep]
        ups.append(up)
    balance: dict[str, Any] = {"strategy": strategy}
    if cooldown is not None:
        balance["cooldown"] = cooldown
    return {
        "name": name,
        "provider": "openai-chat",
        "upstreams": ups,
        "balance": balance,
        **extra,
    }


def counts(fakes: dict[str, FakeUpstream]) -> dict[str, int]:
    return {name: len(fake.seen) for name, fake in fakes.items()}
