"""The shipped configs: config.yaml and examples/all-providers.yaml (a route for every provider)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.adapters import ADAPTERS
from gateway.adapters.base import UpstreamRequest
from gateway.cli import main
from gateway.config.parse import load_config_file
from gateway.request import parse_request
from gateway.state import build_state

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
