"""Small fake adapters and helpers for testing the config validation without real providers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from gateway.adapters.base import Adapter, LocalScript, Translator, UpstreamRequest
from gateway.config import GatewayConfig
from gateway.config.parse import parse_config
from gateway.errors import ConfigError
from gateway.request import ChatRequest


class _Fake(Adapter):
    def build_request(self, request: ChatRequest) -> UpstreamRequest | LocalScript:
        raise NotImplementedError

    def new_translator(self) -> Translator:
        raise NotImplementedError


class Local(_Fake):
    """A built-in source: no upstream needed."""

    name = "local"
    needs_upstream = False


class Remote(_Fake):
    """Needs an upstream, but has a default base_url."""

    name = "remote"
    default_base_url = "https://remote.example/v1"


class Bare(_Fake):
    """Needs an upstream with a base_url (no default)."""

    name = "bare"


class Tunable(_Fake):
    """Accepts one option, ``speed`` (a positive number, normalised to float, default 1.0)."""

    name = "tunable"
    needs_upstream = False

    @classmethod
    def parse_options(
        cls, options: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Any], list[str]]:
        out: dict[str, Any] = {"speed": 1.0}
        errors = []
        for key, value in options.items():
            if key != "speed":
                errors.append(f"{path}.{key}: unknown option for provider 'tunable'")
            elif not isinstance(value, int | float) or value <= 0:
                errors.append(f"{path}.speed: must be a positive number")
            else:
                out["speed"] = float(value)
        return out, errors


ADAPTERS: dict[str, type[Adapter]] = {a.name: a for a in (Local, Remote, Bare, Tunable)}
ENCODERS = ("tokens", "text", "ndjson")


def parse(doc: Any, env: Mapping[str, str] | None = None) -> GatewayConfig:
    return parse_config(doc, env=env or {}, adapters=ADAPTERS, encoders=ENCODERS)


def errors_of(doc: Any, env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(doc, env)
    return info.value.errors


def route(**keys: Any) -> dict[str, Any]:
    """A valid route mapping (provider ``local``) with ``keys`` added or replaced."""
    return {"name": "r", "provider": "local", **keys}


def one_route(**keys: Any) -> dict[str, Any]:
    return {"routes": [route(**keys)]}
