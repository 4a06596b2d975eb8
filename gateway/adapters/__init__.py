"""The adapter registry: provider name -> adapter class. One line per provider.

Resolved at config load; an unknown name is a config error listing these keys.
"""

from __future__ import annotations

from gateway.adapters.anthropic import AnthropicAdapter
from gateway.adapters.base import Adapter, LocalScript, Translator, UpstreamRequest
from gateway.adapters.bedrock import BedrockAdapter
from gateway.adapters.cohere import CohereAdapter
from gateway.adapters.gemini import GeminiAdapter
from gateway.adapters.mapped import MappedAdapter
from gateway.adapters.ollama import OllamaAdapter
from gateway.adapters.openai_chat import OpenAIChatAdapter
from gateway.adapters.openai_responses import OpenAIResponsesAdapter
from gateway.adapters.simulated import SimulatedAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    SimulatedAdapter.name: SimulatedAdapter,
    OpenAIResponsesAdapter.name: OpenAIResponsesAdapter,
    OpenAIChatAdapter.name: OpenAIChatAdapter,
    AnthropicAdapter.name: AnthropicAdapter,
    GeminiAdapter.name: GeminiAdapter,
    OllamaAdapter.name: OllamaAdapter,
    CohereAdapter.name: CohereAdapter,
    BedrockAdapter.name: BedrockAdapter,
    MappedAdapter.name: MappedAdapter,
}

PRICE_PROVIDERS: dict[str, str | None] = {
    name: cls.price_provider for name, cls in ADAPTERS.items()
}
"""Adapter name -> provider id in the price database (``None``: no known price); see
:attr:`Adapter.price_provider`. The only place outside each adapter that pairs the two."""

GENAI_PROVIDERS: dict[str, str] = {name: cls.genai_provider for name, cls in ADAPTERS.items()}
"""Registry name -> ``gen_ai.provider.name`` for trace spans (``_OTHER`` when unlisted)."""

__all__ = [
    "ADAPTERS",
    "GENAI_PROVIDERS",
    "PRICE_PROVIDERS",
    "Adapter",
    "LocalScript",
    "Translator",
    "UpstreamRequest",
]
