"""App keys end to end: 401s, the allow-list, the app label, and credentials that never cross.

Also the unit behaviour of :mod:`gateway.auth` and the start-up warning without auth.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from typing import Any

import aiohttp
import pytest

from gateway.auth import Authenticator, presented_key
from gateway.cli import _warn_if_open
from gateway.config.model import AppKey, AuthConfig
from gateway.errors import Forbidden, Unauthorized
from gateway.logs import JSONFormatter
from tests.adapters.harness import fixture_bytes
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import config_from, metric_value, running_gateway

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}
MOBILE_KEY = "gk-mobile-0123456789abcdef"
BATCH_KEY = "gk-batch-fedcba9876543210"
UPSTREAM_KEY = "sk-upstream-do-not-leak-42"
SIM = {"first_token_delay": 0, "token_interval": 0, "text": "Hi there"}


def doc(**extra: Any) -> dict[str, Any]:
    return {
        "routes": [
            {"name": "chat", "provider": "simulated", "options": SIM},
            {"name": "internal", "provider": "simulated", "options": SIM},
        ],
        "auth": {
            "keys": [
                {"name": "mobile", "key": MOBILE_KEY, "routes": ["chat"]},
                {"name": "batch", "key": BATCH_KEY},
            ]
        },
        **extra,
    }


async def post(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url, json=HELLO, headers=headers) as r:
        return r.status, r.headers.copy(), await r.read()


@pytest.fixture
def gateway_logs() -> Any:
    """Every gateway log line as the production JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("gateway")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# -- unit ------------------------------------------------------------------------------------


def test_presented_key_forms() -> None:
    assert presented_key({"Authorization": "Bearer abc"}) == "abc"
    assert presented_key({"Authorization": "bearer  abc "}) == "abc"
    assert presented_key({"x-api-key": "abc"}) == "abc"
    assert presented_key({"Authorization": "Bearer abc", "x-api-key": "other"}) == "abc"
    assert presented_key({"Authorization": "Basic abc", "x-api-key": "k"}) == "k"
    assert presented_key({"Authorization": "Basic abc"}) is None
    assert presented_key({"Authorization": "Bearer "}) is None
    assert presented_key({}) is None


def test_authenticator_matches_every_key_and_refuses_the_rest() -> None:
    auth = Authenticator(AuthConfig((AppKey("a", "key-a"), AppKey("b", "key-b", ("r1",)))))
    assert auth.authenticate({"Authorization": "Bearer key-a"}).name == "a"
    assert auth.authenticate({"x-api-key": "key-b"}).name == "b"
    for headers in (
        {},
        {"x-api-key": "key-"},
        {"x-api-key": "key-a "[:-2]},
        {"x-api-key": "KEY-A"},
    ):
        with pytest.raises(Unauthorized) as info:
            auth.authenticate(headers)
        assert info.value.message == "missing or invalid API key"
    assert "key-a" not in repr(auth.__dict__)  # only digests are kept


def test_compare_runs_over_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.auth as mod

    keys = tuple(AppKey(f"k{i}", f"secret-{i}") for i in range(5))
    auth = Authenticator(AuthConfig(keys))
    calls: list[int] = []
    real = mod.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(mod.hmac, "compare_digest", counting)
    for headers in ({"x-api-key": "secret-0"}, {"x-api-key": "nope"}, {}):
        calls.clear()
        with contextlib.suppress(Unauthorized):
            auth.authenticate(headers)
        assert len(calls) == 5  # no early exit on a match, none on a miss


def test_allow_list_forbids_the_route_by_name_never_the_key() -> None:
    config = config_from(doc())
    mobile = config.auth.keys[0]  # type: ignore[union-attr]
    Authenticator.authorize(mobile, config.routes[0])
    with pytest.raises(Forbidden) as info:
        Authenticator.authorize(mobile, config.routes[1])
    assert info.value.http_status == 403 and info.value.error_code == "forbidden"
    assert "'internal'" in info.value.message
    assert MOBILE_KEY not in info.value.message and "mobile" not in info.value.message


# -- over HTTP -------------------------------------------------------------------------------


async def test_missing_and_wrong_keys_get_the_same_401() -> None:
    async with running_gateway(doc()) as gw:
        url = f"{gw.url}/v1/stream/chat"
        results = [
            await post(url),
            await post(url, {"Authorization": "Bearer wrong"}),
            await post(url, {"x-api-key": "wrong"}),
            await post(url, {"Authorization": f"Basic {MOBILE_KEY}"}),
            await post(url, {"x-api-key": MOBILE_KEY[:-1]}),
        ]
        rejected = await metric_value(
            gw.url, "gateway_rejections_total", {"route": "chat", "code": "unauthorized"}
        )
    bodies = {body for _, _, body in results}
    assert {status for status, _, _ in results} == {401}
    assert len(bodies) == 1
    assert json.loads(bodies.pop()) == {
        "error": {"code": "unauthorized", "message": "missing or invalid API key"}
    }
    assert all(h["WWW-Authenticate"] == 'Bearer realm="gateway"' for _, h, _ in results)
    assert rejected == 5


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {MOBILE_KEY}"}, {"x-api-key": MOBILE_KEY}],
    ids=["bearer", "x-api-key"],
)
async def test_a_valid_key_streams_and_its_name_is_the_app_label(
    headers: dict[str, str], gateway_logs: io.StringIO
) -> None:
    async with running_gateway(doc()) as gw:
        status, _, body = await post(f"{gw.url}/v1/stream/chat", headers)
        completed = await metric_value(
            gw.url,
            "gateway_app_requests_total",
            {"app": "mobile", "route": "chat", "outcome": "completed"},
        )
        async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/metrics") as r:
            exposition = await r.text()
    assert status == 200 and b"event: end" in body
    assert completed == 1
    stream_lines = [
        json.loads(line)
        for line in gateway_logs.getvalue().splitlines()
        if '"event":"stream"' in line.replace(" ", "")
    ]
    assert [line["app"] for line in stream_lines] == ["mobile"]
    for text in (gateway_logs.getvalue(), exposition):
        assert MOBILE_KEY not in text and BATCH_KEY not in text


async def test_a_key_outside_its_allow_list_gets_403_naming_the_route() -> None:
    """Contract section 3: 403 for a valid key outside its allow-list (not the 404 of a missing
    route, which told the app's developer a lie), 401 for a wrong key, 404 for no route."""
    async with running_gateway(doc()) as gw:
        forbidden = await post(f"{gw.url}/v1/stream/internal", {"x-api-key": MOBILE_KEY})
        missing = await post(f"{gw.url}/v1/stream/nothing-here", {"x-api-key": MOBILE_KEY})
        wrong = await post(f"{gw.url}/v1/stream/internal", {"x-api-key": "gk-wrong"})
        allowed = await post(f"{gw.url}/v1/stream/internal", {"x-api-key": BATCH_KEY})
        rejected = await metric_value(
            gw.url, "gateway_rejections_total", {"route": "internal", "code": "forbidden"}
        )
    assert forbidden[0] == 403
    error = json.loads(forbidden[2])["error"]
    assert error["code"] == "forbidden" and "'internal'" in error["message"]
    assert MOBILE_KEY.encode() not in forbidden[2]
    assert forbidden[1]["Content-Type"].startswith("application/json")
    assert missing[0] == 404 and wrong[0] == 401
    assert allowed[0] == 200
    assert rejected == 1


async def test_models_lists_only_the_routes_the_key_may_use() -> None:
    async with running_gateway(doc()) as gw, aiohttp.ClientSession() as s:
        listed = {}
        for name, key in (("mobile", MOBILE_KEY), ("batch", BATCH_KEY)):
            async with s.get(f"{gw.url}/v1/models", headers={"x-api-key": key}) as r:
                assert r.status == 200
                listed[name] = [m["id"] for m in (await r.json())["data"]]
        async with s.get(f"{gw.url}/v1/models") as r:
            anonymous = (r.status, await r.json())
    assert listed == {"mobile": ["chat"], "batch": ["chat", "internal"]}
    assert anonymous[0] == 401 and anonymous[1]["error"]["code"] == "unauthorized"


async def test_the_chat_front_door_forbids_a_route_outside_the_allow_list() -> None:
    body = {"model": "internal", "messages": [{"role": "user", "content": "hi"}]}
    async with running_gateway(doc()) as gw, aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {MOBILE_KEY}"}
        async with s.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
            forbidden = (r.status, await r.json())
    assert forbidden[0] == 403
    assert forbidden[1]["error"]["code"] == "forbidden"
    assert forbidden[1]["error"]["type"] == "permission_error"
    assert "'internal'" in forbidden[1]["error"]["message"]


async def test_operations_endpoints_stay_open() -> None:
    async with running_gateway(doc()) as gw, aiohttp.ClientSession() as s:
        for path in ("/healthz", "/readyz", "/metrics", "/v1/routes"):
            async with s.get(f"{gw.url}{path}") as r:
                assert r.status == 200, path


@pytest.mark.parametrize(
    ("provider", "fixture", "upstream_header", "expected"),
    [
        ("openai-chat", "openai_chat_basic.sse", "Authorization", f"Bearer {UPSTREAM_KEY}"),
        ("anthropic", "anthropic_basic.sse", "x-api-key", UPSTREAM_KEY),
    ],
)
async def test_client_credentials_never_reach_the_upstream(
    upstream: FakeUpstream, provider: str, fixture: str, upstream_header: str, expected: str
) -> None:
    upstream.push(Script(chunks=[(0, fixture_bytes(fixture))]))
    route = {
        "name": "chat",
        "provider": provider,
        "upstream": {"base_url": upstream.url, "api_key": UPSTREAM_KEY, "model": "m-1"},
    }
    config = {"routes": [route], "auth": {"keys": [{"name": "mobile", "key": MOBILE_KEY}]}}
    client_headers = {"Authorization": f"Bearer {MOBILE_KEY}", "x-api-key": MOBILE_KEY}
    async with running_gateway(config) as gw:
        status, headers, body = await post(f"{gw.url}/v1/stream/chat", client_headers)
    assert status == 200
    seen = upstream.seen[0].headers
    assert seen[upstream_header] == expected
    assert all(MOBILE_KEY not in value for value in seen.values())
    assert UPSTREAM_KEY.encode() not in body
    assert all(UPSTREAM_KEY not in v for v in headers.values())


async def test_the_upstream_key_is_not_echoed_from_an_upstream_error(
    upstream: FakeUpstream,
) -> None:
    error = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "x"}}
    upstream.push(
        Script(
            status=401,
            headers={"Content-Type": "application/json"},
            chunks=[(0, json.dumps(error).encode())],
        )
    )
    route = {
        "name": "chat",
        "provider": "openai-chat",
        "upstream": {"base_url": upstream.url, "api_key": UPSTREAM_KEY, "model": "m-1"},
    }
    async with running_gateway({"routes": [route]}) as gw:
        status, headers, body = await post(f"{gw.url}/v1/stream/chat")
    assert status == 502
    assert UPSTREAM_KEY.encode() not in body
    assert all(UPSTREAM_KEY not in v for v in headers.values())


# -- the start-up warning --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "with_auth", "warns"),
    [
        ("0.0.0.0", False, True),
        ("10.1.2.3", False, True),
        ("::", False, True),
        ("127.0.0.1", False, False),
        ("localhost", False, False),
        ("::1", False, False),
        ("0.0.0.0", True, False),
    ],
)
def test_warns_when_open_to_the_network_without_auth(
    host: str, with_auth: bool, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_from(doc() if with_auth else {"routes": doc()["routes"]})
    caplog.set_level(logging.WARNING, logger="gateway")
    _warn_if_open(config, host)
    warned = [r for r in caplog.records if r.getMessage() == "warning_no_auth"]
    assert bool(warned) is warns
    if warns:
        assert warned[0].levelno == logging.WARNING
