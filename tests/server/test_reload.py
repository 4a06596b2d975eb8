"""SIGHUP reloads the config file (issue 5 item 6), with the real ``python -m gateway`` process.

New streams use the new config; a stream open during the reload finishes on the old one; an
invalid new file is refused, its error logged with the key path, and the old config kept.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.client import collect
from tests.faults.kit import HELLO, post
from tests.support.gateway import gateway_process, wait_for


def demo(text: str, interval: str = "0ms", **extra: Any) -> dict[str, Any]:
    options = {"text": text, "first_token_delay": 0, "token_interval": interval, "reasoning": False}
    return {"name": "demo", "provider": "simulated", "options": options, **extra}


async def text_of(url: str) -> str:
    reply = await post(url)
    assert reply.status == 200, reply.raw
    return reply.text


async def test_sighup_reloads_new_streams_use_it_open_ones_finish_on_the_old(
    tmp_path: Path,
) -> None:
    old_text = " ".join(f"old{i}" for i in range(30))
    with gateway_process(tmp_path, {"routes": [demo(old_text, "50ms")]}) as gw:
        url = f"{gw.url}/v1/stream/demo"
        async with aiohttp.ClientSession() as http:
            open_stream = asyncio.ensure_future(collect(http, url, HELLO))
            await asyncio.sleep(0.3)  # streaming, about 6 tokens in
            new = {"routes": [demo("brand new"), {"name": "extra", "provider": "simulated"}]}
            (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(new))
            gw.signal(signal.SIGHUP)
            for _ in range(100):
                if await text_of(url) == "brand new":
                    break
                await asyncio.sleep(0.05)
            assert await text_of(url) == "brand new"
            assert (await post(f"{gw.url}/v1/stream/extra")).status == 200
            events = await asyncio.wait_for(open_stream, 10)
        assert events[-1].type == "end"
        assert "".join(e.data.get("text", "") for e in events if e.type == "delta") == old_text
        assert '"reloaded"' in gw.log()


async def test_invalid_config_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    with gateway_process(tmp_path, {"routes": [demo("still here")]}) as gw:
        url = f"{gw.url}/v1/stream/demo"
        bad = {"routes": [{"name": "demo", "provider": "no-such-provider"}]}
        (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(bad))
        gw.signal(signal.SIGHUP)
        await wait_for(lambda: "reload_refused" in gw.log(), 5)
        log = gw.log()
        assert "routes[0].provider" in log
        assert await text_of(url) == "still here"
        (tmp_path / "gateway.yaml").write_text("routes: [unclosed")
        gw.signal(signal.SIGHUP)
        await wait_for(lambda: gw.log().count("reload_refused") == 2, 5)
        assert await text_of(url) == "still here"
        assert gw.proc.poll() is None
        assert "Traceback" not in gw.log()


async def test_deeply_nested_config_is_refused_not_a_traceback(tmp_path: Path) -> None:
    with gateway_process(tmp_path, {"routes": [demo("still here")]}) as gw:
        url = f"{gw.url}/v1/stream/demo"
        (tmp_path / "gateway.yaml").write_text("x: " + "[" * 1000 + "]" * 1000 + "\n")
        gw.signal(signal.SIGHUP)
        await wait_for(lambda: "reload_refused" in gw.log(), 5)
        assert "nested too deeply" in gw.log()
        assert await text_of(url) == "still here"
        assert "Traceback" not in gw.log()


async def test_a_config_the_process_cannot_set_up_is_refused_and_the_old_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid file whose state fails to build (an extra not installed, a store that cannot
    start): the reload says so and the running config stays, instead of an exception in the
    signal handler."""
    from gateway import reload
    from gateway.state import STATE
    from tests.support.gateway import running_gateway

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"routes": [demo("new")]}))
    async with running_gateway({"routes": [demo("old")]}) as gw:
        before = gw.app[STATE].current

        def broken(*_: Any, **__: Any) -> Any:
            raise RuntimeError("cannot set up")

        monkeypatch.setattr(reload, "prepare_state", broken)
        assert reload.reload_config(gw.app, str(path)) is False
        assert gw.app[STATE].current is before
        assert await text_of(f"{gw.url}/v1/stream/demo") == "old"
    assert "reload_refused" in caplog.text and "cannot set up" in caplog.text


async def test_sighup_during_shutdown_is_refused_and_the_drain_goes_on(tmp_path: Path) -> None:
    """A reload once SIGTERM began would build a state that is not draining: ``/readyz`` went
    back to 200 and new streams were served again while the process was shutting down."""
    from tests.faults.kit import get_status, wait_exit

    slow = " ".join(f"w{i}" for i in range(60))  # about 3 s: outlives the checks below
    doc = {"server": {"shutdown_timeout": "10s"}, "routes": [demo(slow, "50ms")]}
    with gateway_process(tmp_path, doc) as gw:
        url = f"{gw.url}/v1/stream/demo"
        async with aiohttp.ClientSession() as http:
            open_stream = asyncio.ensure_future(collect(http, url, HELLO))
            await asyncio.sleep(0.3)  # streaming
            gw.signal(signal.SIGTERM)
            await wait_for(lambda: '"draining"' in gw.log(), 5)
            (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({"routes": [demo("new")]}))
            gw.signal(signal.SIGHUP)
            await wait_for(lambda: "reload" in gw.log().split('"draining"')[-1], 5)
            assert await get_status(f"{gw.url}/readyz") == 503
            refused = await post(url)
            assert refused.status == 503
            assert refused.json()["error"]["code"] == "unavailable"
            events = await asyncio.wait_for(open_stream, 15)
        assert events[-1].type == "end"  # finished within the grace, on its own config
        assert "".join(e.data.get("text", "") for e in events if e.type == "delta") == slow
        assert await wait_exit(gw.proc, 10) == 0
        assert '"reloaded"' not in gw.log() and "reload_refused" in gw.log()


async def test_a_change_only_a_restart_applies_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``server.playground`` (like the listen address) is taken at start-up: the reload applies
    the rest and names the keys it could not change, instead of ignoring them silently."""
    from gateway import reload
    from tests.support.gateway import running_gateway

    path = tmp_path / "config.yaml"
    new = {"server": {"playground": False}, "routes": [demo("new")]}
    path.write_text(yaml.safe_dump(new))
    async with running_gateway({"routes": [demo("old")]}) as gw:
        assert reload.reload_config(gw.app, str(path)) is True
        assert await text_of(f"{gw.url}/v1/stream/demo") == "new"
    warned = [r for r in caplog.records if r.getMessage() == "reload_needs_restart"]
    assert len(warned) == 1 and "server.playground" in warned[0].__dict__["fields"]["keys"]


async def test_a_refused_reload_does_not_log_an_environment_value(tmp_path: Path) -> None:
    """An API key in the variable meant for the base URL (the usual swap): the refused reload
    names the variable, not its value, in the log."""
    secret = "sk-proj-LEAK0123456789"
    env = {"GW_TEST_BASE": secret, "GW_TEST_KEY": "http://127.0.0.1:9/v1"}
    with gateway_process(tmp_path, {"routes": [demo("still here")]}, env=env) as gw:
        swapped = {
            "name": "demo",
            "provider": "openai-chat",
            "upstream": {"base_url": "${GW_TEST_BASE}", "api_key": "${GW_TEST_KEY}"},
        }
        (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({"routes": [swapped]}))
        gw.signal(signal.SIGHUP)
        await wait_for(lambda: "reload_refused" in gw.log(), 5)
        assert "routes[0].upstream.base_url: invalid URL '${GW_TEST_BASE}'" in gw.log()
        assert "LEAK" not in gw.log()
        assert await text_of(f"{gw.url}/v1/stream/demo") == "still here"


async def test_a_target_an_adapter_refuses_is_refused_by_key_path_without_a_traceback(
    tmp_path: Path,
) -> None:
    """A file that parses but names a target its adapter cannot run (here a provider without
    the credentials it needs): the reload said ``ConfigError: ...`` with no key path and logged
    a traceback, as for a bug. It is a config error like any other: each target by its path."""
    with gateway_process(tmp_path, {"routes": [demo("still here")]}) as gw:
        no_credentials = {"provider": "bedrock", "options": {"region": "us-east-1"}}
        routes = [
            demo("new", fallbacks=[no_credentials]),
            {"name": "other", **no_credentials},
        ]
        (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({"routes": routes}))
        gw.signal(signal.SIGHUP)
        await wait_for(lambda: "reload_refused" in gw.log(), 5)
        log = gw.log()
        assert "routes[0].fallbacks[0]: provider 'bedrock' needs" in log
        assert "routes[1]: provider 'bedrock' needs" in log
        assert "Traceback" not in log
        assert await text_of(f"{gw.url}/v1/stream/demo") == "still here"


async def test_a_refused_reload_leaves_the_running_pools_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that failed after the new state was built had already handed the running
    pools over to it (the pool of a route the new file drops was retired: its resting
    deployment shown as not resting, its store closed) and then kept the old state."""
    from gateway import reload
    from tests.pool.server_kit import deployments, pooled_route
    from tests.support.fake_upstream import Script
    from tests.support.gateway import metric_value, running_gateway

    async with deployments("a", "b") as fakes:
        fakes["b"].push(Script(status=500))
        cooldown = {"failures": 1, "window": "60s", "duration": "60s"}
        doc = {"routes": [pooled_route(fakes, cooldown=cooldown), demo("old")]}
        async with running_gateway(doc) as gw:
            for _ in range(2):  # a, then b answers 500 (it rests) and a serves
                assert (await post(f"{gw.url}/v1/stream/r")).status == 200
            b = {"route": "r", "deployment": "b"}
            assert await metric_value(gw.url, "gateway_deployment_resting", b) == 1
            pool = gw.state.pools["r"]

            def broken(*_: Any, **__: Any) -> None:
                raise RuntimeError("cannot set up")

            monkeypatch.setattr(reload, "install_tracing", broken)
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump({"routes": [demo("new")]}))  # drops the pool
            assert reload.reload_config(gw.app, str(path)) is False
            assert gw.state.pools["r"] is pool
            assert await metric_value(gw.url, "gateway_deployment_resting", b) == 1
            monkeypatch.undo()
            assert reload.reload_config(gw.app, str(path)) is True  # now it retires
            assert await metric_value(gw.url, "gateway_deployment_resting", b) == 0
