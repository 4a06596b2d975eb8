"""CORS per route (``cors.allow_origins``, contract section 9): preflight and the actual POST,
then the resume and stop requests at ``<route path>/<stream id>``."""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.ids import new_request_id
from tests.support.gateway import running_gateway

APP = "https://app.example"
OTHER = "https://evil.example"
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def sim(name: str, **extra: Any) -> dict[str, Any]:
    options = {"text": "Hi", "first_token_delay": 0, "token_interval": 0}
    return {"name": name, "provider": "simulated", "options": options, **extra}


DOC = {
    "routes": [
        sim("open", cors={"allow_origins": [APP], "max_age": "10m"}),
        sim("star", cors={"allow_origins": ["*"]}),
        sim("closed"),
    ]
}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


async def call(method: str, url: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.request(method, url, **kw) as r:
        return r.status, dict(r.headers), await r.read()


def cors_keys(headers: dict[str, str]) -> set[str]:
    return {k.lower() for k in headers if k.lower().startswith("access-control-")}


async def test_preflight_for_an_allowed_origin() -> None:
    async with running_gateway(DOC) as gw:
        status, headers, body = await call(
            "OPTIONS", f"{gw.url}/v1/stream/open", headers={"Origin": APP, **PREFLIGHT}
        )
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "authorization", "x-api-key"} <= allowed
    assert headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in headers["Vary"]


async def test_preflight_refused_for_other_origins() -> None:
    async with running_gateway(DOC) as gw:
        other = await call(
            "OPTIONS", f"{gw.url}/v1/stream/open", headers={"Origin": OTHER, **PREFLIGHT}
        )
        no_origin = await call("OPTIONS", f"{gw.url}/v1/stream/open", headers=PREFLIGHT)
    for status, headers, _ in (other, no_origin):
        assert status == 403
        assert not cors_keys(headers)


async def test_post_carries_the_origin_and_exposes_the_request_id() -> None:
    async with running_gateway(DOC) as gw:
        status, headers, body = await call(
            "POST", f"{gw.url}/v1/stream/open", json=HELLO, headers={"Origin": APP}
        )
        _, other, _ = await call(
            "POST", f"{gw.url}/v1/stream/open", json=HELLO, headers={"Origin": OTHER}
        )
        _, plain, _ = await call("POST", f"{gw.url}/v1/stream/open", json=HELLO)
    assert status == 200 and b"event: end" in body
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "x-request-id" in headers["Access-Control-Expose-Headers"].lower()
    assert "Origin" in headers["Vary"]
    assert not cors_keys(other)
    assert not cors_keys(plain)


async def test_errors_before_the_stream_are_readable_cross_origin() -> None:
    """A browser app must be able to read a 400/415 body, so errors carry the CORS headers too."""
    async with running_gateway(DOC) as gw:
        bad_json = await call(
            "POST",
            f"{gw.url}/v1/stream/open",
            data=b"{",
            headers={"Origin": APP, "Content-Type": "application/json"},
        )
        bad_type = await call(
            "POST", f"{gw.url}/v1/stream/open", data=b"x", headers={"Origin": APP}
        )
    assert bad_json[0] == 400 and bad_type[0] == 415
    for _, headers, _ in (bad_json, bad_type):
        assert headers["Access-Control-Allow-Origin"] == APP
        assert "x-request-id" in headers["Access-Control-Expose-Headers"].lower()


async def test_wildcard_origin() -> None:
    async with running_gateway(DOC) as gw:
        pre = await call(
            "OPTIONS", f"{gw.url}/v1/stream/star", headers={"Origin": OTHER, **PREFLIGHT}
        )
        post = await call("POST", f"{gw.url}/v1/stream/star", json=HELLO, headers={"Origin": OTHER})
    assert pre[0] == 204 and pre[1]["Access-Control-Allow-Origin"] == "*"
    assert post[0] == 200 and post[1]["Access-Control-Allow-Origin"] == "*"


async def test_routes_without_cors_send_no_cors_headers() -> None:
    async with running_gateway(DOC) as gw:
        pre = await call(
            "OPTIONS", f"{gw.url}/v1/stream/closed", headers={"Origin": APP, **PREFLIGHT}
        )
        post = await call("POST", f"{gw.url}/v1/stream/closed", json=HELLO, headers={"Origin": APP})
    assert pre[0] == 405 and pre[1]["Allow"] == "POST"
    assert post[0] == 200
    assert not cors_keys(pre[1]) and not cors_keys(post[1])


# -- <route path>/<stream id>: resume and stop (contract section 12) ----------------------------

RESUMABLE = {
    "auth": {"keys": [{"name": "web", "key": "k-web"}]},
    "routes": [
        sim(
            "resumable",
            options={"text": "a b c d e f", "first_token_delay": 0, "token_interval": 0},
            cors={"allow_origins": [APP]},
            resume={"enabled": True, "window": "1m", "max_events": 4},
        )
    ],
}
KEY = {"Authorization": "Bearer k-web"}
STREAMS = "/v1/stream/resumable"


def request_id(headers: dict[str, str]) -> str:
    return next(v for k, v in headers.items() if k.lower() == "x-request-id")


async def test_preflight_on_a_stream_path() -> None:
    """A browser app stops (``DELETE``) or resumes (``GET`` with ``Last-Event-ID``, a key) a
    stream with ``fetch``: each is preflighted at ``<route path>/<stream id>``."""
    async with running_gateway(RESUMABLE) as gw:
        url = f"{gw.url}{STREAMS}/{new_request_id()}"
        answers = [
            await call(
                "OPTIONS",
                url,
                headers={
                    "Origin": APP,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": asked,
                },
            )
            for method, asked in (
                ("DELETE", "authorization"),
                ("GET", "last-event-id"),
                ("GET", "authorization,x-api-key,last-event-id"),
            )
        ]
        refused = await call(
            "OPTIONS", url, headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"}
        )
    for status, headers, body in answers:
        assert status == 204 and body == b""
        assert headers["Access-Control-Allow-Origin"] == APP
        methods = {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
        assert methods == {"GET", "DELETE", "OPTIONS"}
        allowed = {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
        assert {"last-event-id", "authorization", "x-api-key", "content-type"} <= allowed
        assert headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in headers["Vary"]
    assert refused[0] == 403 and not cors_keys(refused[1])


async def test_resume_and_stop_answers_carry_their_own_origin() -> None:
    """Every answer at ``<route path>/<stream id>`` (a replay, an error, a stop) is readable by
    the app that asked, whatever the ``POST`` that started the stream sent (here: no Origin,
    then an Origin a resume without one must not repeat)."""
    app = {"Origin": APP, **KEY}
    async with running_gateway(RESUMABLE) as gw:
        _, started, raw = await call("POST", f"{gw.url}{STREAMS}", json=HELLO, headers=KEY)
        _, with_origin, _ = await call("POST", f"{gw.url}{STREAMS}", json=HELLO, headers=app)
        last = raw.count(b"\nid: ") + raw.startswith(b"id: ")
        url = f"{gw.url}{STREAMS}/{request_id(started)}"
        answers = {
            "replay": await call("GET", url, headers={**app, "Last-Event-ID": str(last - 1)}),
            "ended": await call("GET", url, headers={**app, "Last-Event-ID": str(last)}),
            "bad id": await call("GET", url, headers={**app, "Last-Event-ID": "x"}),
            "gone": await call("GET", url, headers={**app, "Last-Event-ID": "0"}),
            "unknown": await call("GET", f"{gw.url}{STREAMS}/{new_request_id()}", headers=app),
            "no key": await call("GET", url, headers={"Origin": APP}),
            "stop": await call("DELETE", url, headers=app),
        }
        own = f"{gw.url}{STREAMS}/{request_id(with_origin)}"
        _, plain, _ = await call("GET", own, headers=KEY)
        _, other, _ = await call("GET", own, headers={"Origin": OTHER, **KEY})
    statuses = {name: status for name, (status, _, _) in answers.items()}
    assert statuses == {
        "replay": 200,
        "ended": 204,
        "bad id": 400,
        "gone": 410,
        "unknown": 404,
        "no key": 401,
        "stop": 204,
    }
    for _, headers, _ in answers.values():
        assert headers["Access-Control-Allow-Origin"] == APP
        assert "x-request-id" in headers["Access-Control-Expose-Headers"].lower()
        assert "Origin" in headers["Vary"]
    assert not cors_keys(plain) and not cors_keys(other)
