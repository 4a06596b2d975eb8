"""Adapters and byte strategies shared by the fuzz properties and ``fuzz/fuzz_pipeline.py``.

Inputs mix pure noise with pieces of real recorded upstream streams (lines from every fixture,
framing punctuation, JSON fragments), so the fuzzer reaches past the decoders into each
translator instead of bouncing off the first parse error.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from gateway.adapters import ADAPTERS
from gateway.adapters.base import Adapter
from tests.adapters.harness import FIXTURES, make_adapter

DATA = Path(__file__).resolve().parents[1] / "adapters" / "data"

OPTIONS: dict[str, dict[str, Any]] = {
    "bedrock": {"region": "us-east-1"},
    "mapped": yaml.safe_load((DATA / "mapped_openai_chat.yaml").read_text()),
}


def adapter(name: str) -> Adapter:
    """A ready adapter of provider ``name`` (a key of ``ADAPTERS``) with test credentials."""
    return make_adapter(
        ADAPTERS[name], OPTIONS.get(name, {}), base_url="http://x", model="m", api_key="k"
    )


def _fixture_pieces() -> list[bytes]:
    pieces: set[bytes] = set()
    for path in sorted(FIXTURES.iterdir()):
        if path.name.endswith(".json"):
            continue
        data = path.read_bytes()
        pieces.update(line + b"\n" for line in data.split(b"\n")[:200])
        pieces.add(data[:512])
    return sorted(pieces)


PIECES = _fixture_pieces()
PUNCTUATION = [
    b"\n", b"\r\n", b"\r", b"\n\n", b"data: ", b"data:", b"event: ", b": ping\n\n", b"id: 1\n",
    b"[DONE]", b"{", b"}", b'"', b"\\u00", b"\xe2\x82", b"\xff", b"\x00", b"{}", b"[]", b"null",
    b'{"error":{"message":"x"}}', b'{"done":true}', b"retry: 5\n",
]  # fmt: skip

piece = st.one_of(
    st.sampled_from(PIECES),
    st.sampled_from(PUNCTUATION),
    st.binary(max_size=64),
)
stream_bytes = st.lists(piece, max_size=40).map(b"".join)
"""An upstream byte stream: fixture lines, framing punctuation and noise, concatenated."""


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (positions taken modulo its length): how the network split it."""
    if not data:
        return [b""]
    edges = sorted({0, len(data), *(c % len(data) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]
