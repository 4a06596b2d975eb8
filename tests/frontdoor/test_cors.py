"""CORS on the front doors (``gateway/frontdoor/cors.py``): the union decision of the routes'
``cors`` for what is answered before the route is known, the route's own for its answer.

Pure checks of the decision first, then real sockets on both servers, then a real headless
Chromium on another origin sending what the official SDKs send from a browser page.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from gateway.config.model import CorsConfig
from gateway.frontdoor.cors import answer_headers, preflight_answer, requested_headers
from gateway.http import EXPOSED_HEADERS
from tests.browser.conftest import LOOP, RawServer, browser, page, raw_server
from tests.support.gateway import RunningGateway, running_gateway

__all__ = ["browser", "page", "raw_server"]  # the browser tests' fixtures, used here

ORIGIN = "https://app.example"
SECOND = "https://b.example"
STRANGER = "https://evil.example"
KEY = "k-cors-123456"
FAST = {"text": "from afar", "first_token_delay": 0, "token_interval": 0}
USER = [{"role": "user", "content": "hi"}]
ALLOW = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
)

OPENAI_SDK_HEADERS = (
    "accept, authorization, content-type, x-stainless-arch, x-stainless-lang, "
    "x-stainless-os, x-stainless-package-version, x-stainless-retry-count, "
    "x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout, traceparent"
)
ANTHROPIC_SDK_HEADERS = (
    "anthropic-beta, anthropic-dangerous-direct-browser-access, anthropic-version, "
    "content-type, x-api-key, x-stainless-helper-method, x-stainless-lang"
)


def sim(name: str, cors: dict[str, Any] | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"name": name, "provider": "simulated", "options": FAST}
    if cors is not None:
        route["cors"] = cors
    return route


DOC: dict[str, Any] = {
    "server": {"max_body_bytes": 2000},
    "auth": {"keys": [{"name": "app", "key": KEY}]},
    "routes": [
        sim("web", {"allow_origins": [ORIGIN], "max_age": "5m"}),
        sim("wide", {"allow_origins": [ORIGIN, SECOND], "max_age": "10m"}),
        sim("closed"),
    ],
}
STREAM_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
POST_PATHS = (*STREAM_PATHS, "/v1/messages/count_tokens")
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": USER, "stream": True},
    "/v1/responses": {"input": "hi", "stream": True},
    "/v1/messages": {"messages": USER, "max_tokens": 9, "stream": True},
    "/v1/messages/count_tokens": {"messages": USER},
}


def cors(*origins: str, max_age: float = 600.0) -> CorsConfig:
    return CorsConfig(allow_origins=origins, max_age=max_age)


# -- the decision ------------------------------------------------------------------------------


def test_an_origin_some_route_lists_reads_the_answer_and_every_answer_varies() -> None:
    blocks = [cors(ORIGIN), cors(SECOND)]
    assert answer_headers(blocks, SECOND) == {
        "Access-Control-Allow-Origin": SECOND,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Vary": "Origin",
    }
    assert answer_headers(blocks, STRANGER) == {"Vary": "Origin"}
    assert answer_headers(blocks, None) == {"Vary": "Origin"}
    assert answer_headers([], ORIGIN) == {}  # no route has cors: nothing new


def test_a_star_route_allows_any_origin_as_a_route_path_does() -> None:
    assert answer_headers([cors(ORIGIN), cors("*")], STRANGER)["Access-Control-Allow-Origin"] == "*"
    assert (
        answer_headers([cors(ORIGIN), cors("*")], ORIGIN)["Access-Control-Allow-Origin"] == ORIGIN
    )


def test_the_preflight_echoes_the_asked_headers_with_the_smallest_max_age() -> None:
    blocks = [
        cors(ORIGIN, max_age=900),
        cors(ORIGIN, SECOND, max_age=300),
        cors(SECOND, max_age=60),
    ]
    answer = preflight_answer(
        blocks, ORIGIN, "X-Stainless-OS,  authorization ,,x-stainless-os", "POST"
    )
    assert answer.status == 204
    assert dict(answer.headers) == {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "x-stainless-os, authorization",
        "Access-Control-Max-Age": "300",
        "Vary": "Origin, Access-Control-Request-Headers",
    }
    assert "Access-Control-Allow-Headers" not in preflight_answer(blocks, ORIGIN, "", "GET").headers


@pytest.mark.parametrize(
    ("origin", "asked"),
    [(STRANGER, "content-type"), (None, "content-type"), (ORIGIN, "content-type, bad(name)")],
)
def test_a_preflight_is_refused_without_allow_headers(origin: str | None, asked: str) -> None:
    answer = preflight_answer([cors(ORIGIN)], origin, asked, "POST")
    assert (answer.status, dict(answer.headers)) == (403, {"Vary": "Origin"})


def test_requested_headers_are_tokens() -> None:
    assert requested_headers("") == []
    assert requested_headers("A, b\t,a") == ["a", "b"]
    assert requested_headers("x-ok, x y") is None
    assert requested_headers("x-ok, x:y") is None


# -- real sockets, both servers ----------------------------------------------------------------


async def options(gw: RunningGateway, path: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as s, s.options(gw.url + path, headers=headers) as r:
        await r.read()
        return r


def asking(origin: str, method: str = "POST", asked: str = OPENAI_SDK_HEADERS) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": asked,
    }


@pytest.mark.usefixtures("http_server")
async def test_every_front_door_answers_a_preflight_of_an_origin_some_route_lists() -> None:
    """Before: ``405`` on every front door, so no browser SDK could call the gateway."""
    async with running_gateway(DOC) as gw:
        for path, method in [*((p, "POST") for p in POST_PATHS), ("/v1/models", "GET")]:
            first = await options(gw, path, asking(ORIGIN, method))
            second = await options(gw, path, asking(SECOND, method, ANTHROPIC_SDK_HEADERS))
            assert (first.status, second.status) == (204, 204), path
            assert first.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert first.headers["Access-Control-Allow-Methods"] == method
            assert first.headers["Access-Control-Allow-Headers"] == OPENAI_SDK_HEADERS
            assert first.headers["Access-Control-Max-Age"] == "300"  # web's 5m, wide's 10m
            assert first.headers["Vary"] == "Origin, Access-Control-Request-Headers"
            assert second.headers["Access-Control-Allow-Origin"] == SECOND
            assert second.headers["Access-Control-Allow-Headers"] == ANTHROPIC_SDK_HEADERS
            assert second.headers["Access-Control-Max-Age"] == "600"  # only wide lists it


@pytest.mark.usefixtures("http_server")
async def test_a_preflight_of_an_origin_no_route_lists_is_refused() -> None:
    async with running_gateway(DOC) as gw:
        for path in (*POST_PATHS, "/v1/models"):
            r = await options(gw, path, asking(STRANGER))
            assert r.status == 403, path
            assert r.headers["Vary"] == "Origin"
            assert not [name for name in ALLOW if name in r.headers]
        plain = await options(gw, "/v1/chat/completions", {"Origin": ORIGIN})  # no preflight
        assert plain.status == 405 and plain.headers["Allow"] == "POST"
        assert plain.headers["Access-Control-Allow-Origin"] == ORIGIN  # readable, as a 405


async def post(
    gw: RunningGateway, path: str, data: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s, s.post(gw.url + path, data=data, headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


def json_headers(origin: str, key: str | None = KEY) -> dict[str, str]:
    out = {"Origin": origin, "Content-Type": "application/json"}
    if key is not None:
        out["Authorization"] = f"Bearer {key}"
    return out


REFUSALS: list[tuple[int, bytes, dict[str, str]]] = [
    (401, b'{"model": "web"}', json_headers(ORIGIN, key=None)),
    (401, b'{"model": "web"}', json_headers(ORIGIN, key="wrong-key-123456")),
    (400, b"{not json", json_headers(ORIGIN)),
    (400, b'{"messages": []}', json_headers(ORIGIN)),
    (404, b'{"model": "nope"}', json_headers(ORIGIN)),
    (413, b'{"model": "web", "x": "' + b"a" * 3000 + b'"}', json_headers(ORIGIN)),
    (415, b'{"model": "web"}', {**json_headers(ORIGIN), "Content-Type": "text/plain"}),
]


@pytest.mark.usefixtures("http_server")
@pytest.mark.parametrize("path", POST_PATHS)
async def test_a_refusal_before_the_route_is_known_is_readable_by_an_allowed_origin(
    path: str,
) -> None:
    """Before: none of these carried CORS headers, so a page saw a network error."""
    async with running_gateway(DOC) as gw:
        for status, data, headers in REFUSALS:
            got, answer, doc = await post(gw, path, data, headers)
            assert got == status, (path, status)
            assert answer["Access-Control-Allow-Origin"] == ORIGIN
            assert answer["Access-Control-Expose-Headers"] == EXPOSED_HEADERS
            assert answer["Vary"] == "Origin"
            assert "error" in doc
            stranger = await post(gw, path, data, {**headers, "Origin": STRANGER})
            assert stranger[0] == status and "Access-Control-Allow-Origin" not in stranger[1]
            assert stranger[1]["Vary"] == "Origin"
        gw.state.draining = True
        try:
            got, answer, _ = await post(gw, path, b'{"model": "web"}', json_headers(ORIGIN))
        finally:
            gw.state.draining = False
        assert (got, answer["Access-Control-Allow-Origin"]) == (503, ORIGIN)
        async with (
            aiohttp.ClientSession() as s,
            s.get(gw.url + path, headers={"Origin": ORIGIN}) as r,
        ):
            assert r.status == 405
            assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.usefixtures("http_server")
async def test_the_models_list_is_readable_by_an_allowed_origin() -> None:
    async with running_gateway(DOC) as gw, aiohttp.ClientSession() as s:
        for key, status in ((KEY, 200), (None, 401)):
            headers = json_headers(SECOND, key)
            async with s.get(gw.url + "/v1/models", headers=headers) as r:
                assert r.status == status
                assert r.headers["Access-Control-Allow-Origin"] == SECOND
                assert r.headers["Vary"] == "Origin"
        async with s.get(gw.url + "/v1/models", headers=json_headers(STRANGER)) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.usefixtures("http_server")
@pytest.mark.parametrize("path", POST_PATHS)
async def test_the_routes_own_cors_decides_on_its_answer(path: str) -> None:
    """The preflight passed for ``SECOND`` (``wide`` lists it), but ``web`` does not: its
    answer stays unreadable there; ``closed`` (no ``cors``) is unreadable to every page."""
    async with running_gateway(DOC) as gw:
        for model, origin, readable in [
            ("web", ORIGIN, True),
            ("web", SECOND, False),
            ("wide", SECOND, True),
            ("closed", ORIGIN, False),
        ]:
            body = {**BODIES[path], "model": model}
            data = json.dumps(body).encode()
            headers = json_headers(origin)
            async with (
                aiohttp.ClientSession() as s,
                s.post(gw.url + path, data=data, headers=headers) as r,
            ):
                await r.read()
                assert r.status == 200, (path, model)
                assert r.headers.get("Access-Control-Allow-Origin") == (
                    origin if readable else None
                ), (path, model, origin)
            bad = {**body, "messages": [{"role": "wizard", "content": "x"}], "input": 7}
            async with (
                aiohttp.ClientSession() as s,
                s.post(gw.url + path, json=bad, headers=headers) as r,
            ):
                assert r.status == 400  # refused once the route is known: its own headers
                assert r.headers.get("Access-Control-Allow-Origin") == (
                    origin if readable else None
                )


@pytest.mark.usefixtures("http_server")
async def test_without_cors_anywhere_nothing_changes_but_the_preflight_is_refused() -> None:
    doc = {"routes": [sim("closed")]}
    async with running_gateway(doc) as gw:
        refused = await options(gw, "/v1/chat/completions", asking(ORIGIN))
        assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers
        status, headers, _ = await post(gw, "/v1/messages", b"{", json_headers(ORIGIN, None))
        assert status == 400
        assert not [name for name in headers if name.startswith("Access-Control-")]
        assert "Vary" not in headers


# -- a real browser on another origin ----------------------------------------------------------

OPENAI_LIKE = """async ({url, key}) => {
  // what `new OpenAI({dangerouslyAllowBrowser: true}).chat.completions.create({stream: true})`
  // sends from a page
  const r = await fetch(url + "/v1/chat/completions", {
    method: "POST",
    headers: {
      "Accept": "application/json", "Content-Type": "application/json",
      "Authorization": "Bearer " + key,
      "X-Stainless-Lang": "js", "X-Stainless-Package-Version": "6.0.0",
      "X-Stainless-OS": "Unknown", "X-Stainless-Arch": "unknown",
      "X-Stainless-Runtime": "browser:chrome", "X-Stainless-Runtime-Version": "140",
      "X-Stainless-Retry-Count": "0", "X-Stainless-Timeout": "600",
    },
    body: JSON.stringify({model: "web", messages: [{role: "user", content: "Hi"}], stream: true}),
  });
  const raw = await r.text();
  let text = "";
  for (const line of raw.split("\\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    for (const choice of JSON.parse(line.slice(6)).choices) text += choice.delta.content || "";
  }
  return {status: r.status, text, done: raw.includes("data: [DONE]"),
          id: r.headers.get("x-request-id")};
}"""

ANTHROPIC_LIKE = """async ({url, key}) => {
  // what `new Anthropic({dangerouslyAllowBrowser: true}).messages.stream(...)` sends
  const r = await fetch(url + "/v1/messages", {
    method: "POST",
    headers: {
      "Accept": "application/json", "Content-Type": "application/json",
      "x-api-key": key, "anthropic-version": "2023-06-01",
      "anthropic-dangerous-direct-browser-access": "true",
      "X-Stainless-Lang": "js", "X-Stainless-Helper-Method": "stream",
      "X-Stainless-Retry-Count": "0",
    },
    body: JSON.stringify({model: "web", max_tokens: 64, stream: true,
                          messages: [{role: "user", content: "Hi"}]}),
  });
  const raw = await r.text();
  let text = "", last = null;
  for (const line of raw.split("\\n")) {
    if (!line.startsWith("data: ")) continue;
    const ev = JSON.parse(line.slice(6));
    if (ev.type === "content_block_delta" && ev.delta.type === "text_delta") text += ev.delta.text;
    if (ev.type !== "ping") last = ev.type;
  }
  return {status: r.status, text, last, id: r.headers.get("request-id")};
}"""

ERRORS = """async ({url, key}) => {
  const out = [];
  for (const [path, model, auth] of [
    ["/v1/chat/completions", "web", null], ["/v1/chat/completions", "nope", key],
    ["/v1/messages", "web", null], ["/v1/messages", "nope", key],
  ]) {
    const headers = {"Content-Type": "application/json", "X-Stainless-Lang": "js"};
    if (auth) headers["Authorization"] = "Bearer " + auth;
    const r = await fetch(url + path, {method: "POST", headers,
      body: JSON.stringify({model, messages: [{role: "user", content: "Hi"}], max_tokens: 9})});
    out.push({status: r.status, body: await r.json(), id: r.headers.get("x-request-id")});
  }
  const models = await fetch(url + "/v1/models", {headers: {"Authorization": "Bearer " + key}});
  out.push({status: models.status, body: await models.json()});
  return out;
}"""

REFUSED = """async ({url, key}) => {
  try {
    await fetch(url + "/v1/chat/completions", {method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + key},
      body: JSON.stringify({model: "web", messages: [{role: "user", content: "Hi"}]})});
    return "read";
  } catch (err) {
    return err.name;
  }
}"""


def browser_doc(origin: str) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"name": "app", "key": KEY}]},
        "routes": [sim("web", {"allow_origins": [origin]}), sim("closed")],
    }


@pytest.mark.system
@LOOP
async def test_a_page_streams_what_the_sdks_send_and_reads_the_errors(
    page: Page, raw_server: RawServer
) -> None:
    """Before: every call failed as a network error (the preflight got a 405)."""
    async with running_gateway(browser_doc(raw_server.url)) as gw:
        await page.goto(raw_server.url + "/")
        args = {"url": gw.url, "key": KEY}
        chat = await page.evaluate(OPENAI_LIKE, args)
        messages = await page.evaluate(ANTHROPIC_LIKE, args)
        errors = await page.evaluate(ERRORS, args)
    assert chat["status"] == 200 and chat["text"] == "from afar" and chat["done"]
    assert chat["id"]  # exposed
    assert messages == {**messages, "status": 200, "text": "from afar", "last": "message_stop"}
    assert messages["id"]
    statuses = [(e["status"], e.get("id") is not None) for e in errors]
    assert statuses == [(401, True), (404, True), (401, True), (404, True), (200, False)]
    assert errors[0]["body"]["error"]["code"] == "unauthorized"
    assert errors[1]["body"]["error"]["code"] == "model_not_found"
    assert errors[2]["body"]["error"]["type"] == "authentication_error"
    assert errors[3]["body"]["error"]["type"] == "not_found_error"
    assert [m["id"] for m in errors[4]["body"]["data"]] == ["web", "closed"]


@pytest.mark.system
@LOOP
async def test_a_page_on_an_origin_no_route_lists_cannot_call_a_front_door(
    page: Page, raw_server: RawServer
) -> None:
    port = raw_server.url.rsplit(":", 1)[1]
    async with running_gateway(browser_doc(raw_server.url)) as gw:
        await page.goto(f"http://localhost:{port}/")  # another origin than 127.0.0.1's
        outcome = await page.evaluate(REFUSED, {"url": gw.url, "key": KEY})
    assert outcome == "TypeError"  # the preflight was refused: a network error
