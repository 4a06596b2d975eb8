"""gateway/tracing/content.py: attribute values made from request data."""

from __future__ import annotations

import json

import pytest

from gateway.adapters import ADAPTERS, GENAI_PROVIDERS
from gateway.tracing.content import (
    MAX_PART_CHARS,
    input_messages,
    output_messages,
    safe_url,
    server_of,
)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://api.example/v1/chat", "https://api.example/v1/chat"),
        ("https://u:p@api.example/v1", "https://REDACTED:REDACTED@api.example/v1"),
        (
            "https://api.example/v1/m:stream?alt=sse&key=AIza",
            "https://api.example/v1/m:stream?alt=REDACTED&key=REDACTED",
        ),
        ("http://[::1]:8080/x#frag", "http://[::1]:8080/x"),
        ("http://host:99999/x", ""),
    ],
)
def test_safe_url(url: str, safe: str) -> None:
    assert safe_url(url) == safe


def test_server_of() -> None:
    assert server_of("https://api.example/v1") == ("api.example", 443)
    assert server_of("http://127.0.0.1:8001/v1") == ("127.0.0.1", 8001)
    assert server_of("http://h:bad/") == (None, None)


def test_input_messages_shapes() -> None:
    got = json.loads(
        input_messages(
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, "b", {"type": "image"}],
                },
                {"role": "assistant", "content": None},
            ]
        )
    )
    assert got == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "a"}, {"type": "text", "content": "b"}],
        },
        {"role": "assistant", "parts": []},
    ]


def test_long_text_is_cut() -> None:
    [message] = json.loads(output_messages("x" * (MAX_PART_CHARS + 10), ()))
    text = message["parts"][0]["content"]
    assert text.startswith("x" * MAX_PART_CHARS) and text.endswith("[truncated]")
    assert len(text) < MAX_PART_CHARS + 20
    assert message["finish_reason"] == "unknown"


def test_every_adapter_maps_to_a_genai_provider_name() -> None:
    assert set(GENAI_PROVIDERS) == set(ADAPTERS)
    assert all(isinstance(v, str) and v for v in GENAI_PROVIDERS.values())
    assert GENAI_PROVIDERS["anthropic"] == "anthropic"
    assert GENAI_PROVIDERS["bedrock"] == "aws.bedrock"
    assert GENAI_PROVIDERS["gemini"] == "gcp.gemini"
    assert GENAI_PROVIDERS["openai-chat"] == GENAI_PROVIDERS["openai-responses"] == "openai"
    assert GENAI_PROVIDERS["simulated"] == "_OTHER"
