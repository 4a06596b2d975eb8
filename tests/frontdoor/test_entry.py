"""A front door's refusals, over real sockets on both servers: as on a route path, every one
carries an ``X-Request-Id`` that a ``rejected`` log line names; one whose body names a route is
counted against it; one refused before its route is known (draining, an unreadable body, no or
an unknown ``model``) is counted in no series (``gateway/frontdoor/entry.py``)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from gateway.errors import (
    BudgetExceeded,
    GatewayError,
    InvalidRequest,
    Unavailable,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from gateway.frontdoor.entry import retry_header
from tests.faults.kit import SSE, chat_chunk, chat_stream
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import RunningGateway, metric_value, running_gateway

pytestmark = pytest.mark.usefixtures("http_server")

KEY = "k-entry-123456"
DOC: dict[str, Any] = {
    "server": {"max_body_bytes": 2000},
    "auth": {
        "keys": [
            {"name": "app", "key": KEY},
            {"name": "narrow", "key": "k-narrow-123456", "routes": ["other"]},
        ]
    },
    "routes": [
        {"name": "sim", "provider": "simulated", "options": {"text": "Hi", "token_interval": 0}},
        {"name": "other", "provider": "simulated"},
    ],
}
GOOD = {"Authorization": f"Bearer {KEY}"}
USER = [{"role": "user", "content": "hi"}]

ROUTED = [
    ("/v1/responses", {"model": "sim", "input": "hi", "previous_response_id": "resp_1"}),
    ("/v1/responses", {"model": "sim", "input": "hi", "temperature": 9}),
    ("/v1/chat/completions", {"model": "sim", "messages": USER, "stream": 1}),
    ("/v1/messages", {"model": "sim", "max_tokens": 9, "messages": USER, "stream": "yes"}),
]
"""Bodies that name a route and fail that door's own checks (before: not counted, no id)."""


def rejected_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.getMessage() == "rejected"]  # type: ignore[attr-defined]


async def refusals(gw: RunningGateway, route: str, code: str) -> tuple[float, float]:
    """The route's ``rejected`` outcome count and its rejections of ``code``."""
    rejected = await metric_value(
        gw.url, "gateway_requests_total", {"route": route, "outcome": "rejected"}
    )
    coded = await metric_value(gw.url, "gateway_rejections_total", {"route": route, "code": code})
    return rejected, coded


@pytest.mark.parametrize(("path", "body"), ROUTED)
async def test_a_refusal_of_a_named_route_is_counted_and_logged_under_its_id(
    path: str, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    async with running_gateway(DOC) as gw, aiohttp.ClientSession() as s:
        before = await refusals(gw, "sim", "invalid_request")
        async with s.post(gw.url + path, json=body, headers=GOOD) as r:
            status, request_id = r.status, r.headers.get("X-Request-Id")
        after = await refusals(gw, "sim", "invalid_request")
    assert status == 400
    assert request_id
    assert rejected_lines(caplog) == [
        {"route": "sim", "id": request_id, "code": "invalid_request", "app": "app"}
    ]
    assert after == (before[0] + 1, before[1] + 1)


async def test_a_key_outside_its_allow_list_is_refused_before_the_body_checks() -> None:
    """As on a route path: the admission (403) comes before the door's body checks (400)."""
    body = {"model": "sim", "input": "hi", "previous_response_id": "resp_1"}
    headers = {"Authorization": "Bearer k-narrow-123456"}
    async with running_gateway(DOC) as gw, aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/responses", json=body, headers=headers) as r:
            status, doc = r.status, await r.json()
    assert status == 403
    assert doc["error"]["code"] == "forbidden"


UNROUTED: list[tuple[str, bytes, str, int, str]] = [
    ("/v1/chat/completions", b'{"model": "MARKER-x1", "messages": []}', "json", 404, "not_found"),
    ("/v1/responses", b'{"model": "MARKER-x2", "input": "hi"}', "json", 404, "not_found"),
    ("/v1/messages", b'{"model": "MARKER-x3", "max_tokens": 9}', "json", 404, "not_found"),
    ("/v1/chat/completions", b'{"model": ', "json", 400, "invalid_json"),
    ("/v1/responses", b'{"input": "hi"}', "json", 400, "invalid_request"),
    ("/v1/messages", b"{}", "text/plain", 415, "unsupported_media_type"),
    (
        "/v1/messages",
        b'{"model": "sim", "x": "' + b"x" * 3000 + b'"}',
        "json",
        413,
        "body_too_large",
    ),
]
"""Bodies that name no route: (path, body, content type, status, code)."""


@pytest.mark.parametrize(("path", "raw", "ctype", "status", "code"), UNROUTED)
async def test_a_refusal_before_the_route_is_known_has_an_id_and_a_line_and_no_series(
    path: str, raw: bytes, ctype: str, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    content_type = "application/json" if ctype == "json" else ctype
    async with running_gateway(DOC) as gw, aiohttp.ClientSession() as s:
        before = await refusals(gw, "sim", code)
        async with s.post(
            gw.url + path, data=raw, headers={**GOOD, "Content-Type": content_type}
        ) as r:
            got, request_id = r.status, r.headers.get("X-Request-Id")
        async with s.post(gw.url + path, data=raw, headers={"Content-Type": content_type}) as r:
            keyless, keyless_id = r.status, r.headers.get("X-Request-Id")
        after = await refusals(gw, "sim", code)
        async with s.get(gw.url + "/metrics") as r:
            exposition = await r.text()
    assert got == status
    assert keyless == 401  # a client without a key learns nothing about the body or the routes
    assert request_id and keyless_id and request_id != keyless_id
    assert rejected_lines(caplog) == [
        {"route": None, "id": request_id, "code": code, "app": "app"},
        {"route": None, "id": keyless_id, "code": "unauthorized", "app": None},
    ]
    assert after == before  # no route to count it under
    assert "MARKER" not in exposition


async def test_a_draining_gateway_answers_every_door_with_retry_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each SDK raises its 503 class; ``Retry-After`` lets it retry on another replica soon."""
    caplog.set_level(logging.INFO, logger="gateway")
    async with (
        running_gateway(DOC) as gw,
        openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as oa,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key=KEY, max_retries=0) as an,
    ):
        gw.state.draining = True
        with pytest.raises(openai.InternalServerError) as chat:
            await oa.chat.completions.create(model="sim", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.InternalServerError) as responses:
            await oa.responses.create(model="sim", input="hi")
        with pytest.raises(anthropic.ServiceUnavailableError) as messages:
            await an.messages.create(model="sim", max_tokens=9, messages=USER)  # type: ignore[arg-type]
        gw.state.draining = False
    for caught in (chat.value, responses.value, messages.value):
        assert caught.status_code == 503
        assert caught.response.headers.get("Retry-After") == "1"
        assert caught.request_id == caught.response.headers["X-Request-Id"]
    assert messages.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert [line["code"] for line in rejected_lines(caplog)] == ["unavailable"] * 3


async def test_each_sdk_reads_the_request_id_of_a_refusal() -> None:
    """``APIStatusError.request_id``: the OpenAI SDK reads ``x-request-id``, the Messages SDK
    ``request-id`` (and the body's ``request_id``); both name the gateway's id."""
    async with (
        running_gateway(DOC) as gw,
        openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as oa,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key=KEY, max_retries=0) as an,
    ):
        with pytest.raises(openai.NotFoundError) as not_found:
            await oa.responses.create(model="nope", input="hi")
        with pytest.raises(openai.BadRequestError) as bad:
            await oa.responses.create(model="sim", input="hi", temperature=9)
        with pytest.raises(anthropic.NotFoundError) as an_not_found:
            await an.messages.create(model="nope", max_tokens=9, messages=USER)  # type: ignore[arg-type]
        with pytest.raises(anthropic.BadRequestError) as an_bad:
            await an.messages.create(model="sim", max_tokens=0, messages=USER)  # type: ignore[arg-type]
    assert not_found.value.code == "model_not_found"
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]
    for caught in (not_found.value, bad.value, an_not_found.value, an_bad.value):
        assert caught.request_id
        assert caught.request_id == caught.response.headers["X-Request-Id"]
    for an_caught in (an_not_found.value, an_bad.value):
        assert an_caught.body["request_id"] == an_caught.request_id  # type: ignore[index]


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (InvalidRequest("messages: is required"), "false"),
        (UpstreamStatusError(400, "upstream answered HTTP 400"), "false"),
        (UpstreamProtocolError("malformed upstream data"), "false"),
        (UpstreamStatusError(503, "upstream answered HTTP 503"), "true"),
        (UpstreamStatusError(429, "upstream answered HTTP 429", retry_after=30), "true"),
        (BudgetExceeded("budget spent", headers={"Retry-After": "86400"}), "false"),
        (Unavailable("draining", headers={"Retry-After": "1"}), "true"),
    ],
)
def test_the_sdk_is_told_whether_to_retry(exc: GatewayError, retry: str) -> None:
    """``x-should-retry``: retryable and a wait an SDK sleeps through inside the app's call."""
    assert retry_header(exc) == {"x-should-retry": retry}


@pytest.fixture
def no_sdk_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDKs retry at once (their backoff, half a second and more, only slows the suite:
    these tests count the retries, not their timing)."""
    import anthropic._base_client
    import openai._base_client

    for client in (openai._base_client.BaseClient, anthropic._base_client.BaseClient):
        monkeypatch.setattr(client, "_calculate_retry_timeout", lambda *_, **__: 0.0)


def one_route(upstream: FakeUpstream) -> dict[str, Any]:
    """A config with one route, ``up``, on ``upstream`` (which speaks Chat Completions)."""
    route = {"name": "up", "provider": "openai-chat"}
    route["upstream"] = {"base_url": upstream.url, "api_key": "sk-test", "model": "m"}
    return {"routes": [route]}


async def _sdk_call(url: str, door: str, *, stream: bool) -> None:
    """One request to ``door`` by its official SDK, streamed or whole, which retries once
    (raises)."""
    async with (
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=1) as oa,
        anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=1) as an,
    ):
        if door == "chat":
            await oa.chat.completions.create(model="up", messages=USER, stream=stream)  # type: ignore[call-overload]
        elif door == "responses":
            await oa.responses.create(model="up", input="hi", stream=stream)  # type: ignore[call-overload]
        else:
            await an.messages.create(model="up", max_tokens=9, messages=USER, stream=stream)  # type: ignore[call-overload]


async def _should_retry_of_a_502(upstream: FakeUpstream, door: str, *, stream: bool) -> str:
    """The ``x-should-retry`` of the 502 an SDK raises for ``door`` on a route to ``upstream``."""
    async with running_gateway(one_route(upstream)) as gw:
        with pytest.raises((openai.InternalServerError, anthropic.InternalServerError)) as caught:
            await _sdk_call(gw.url, door, stream=stream)
    assert caught.value.status_code == 502
    return str(caught.value.response.headers["x-should-retry"])


@pytest.mark.parametrize("door", ["chat", "responses", "messages"])
@pytest.mark.parametrize(("status", "calls"), [(400, 1), (500, 2)])
@pytest.mark.usefixtures("no_sdk_backoff")
async def test_an_sdk_retries_an_upstream_failure_only_when_it_may_succeed(
    upstream: FakeUpstream, door: str, status: int, calls: int
) -> None:
    """An upstream's 400 behind the gateway's 502 is not retried by the SDK (it would only be
    paid for again); its 500 is, as the SDK's own rules say (``max_retries=1``: two calls)."""
    body = b'{"error": {"type": "invalid_request_error", "message": "bad"}}'
    upstream.default = Script(
        status=status, headers={"Content-Type": "application/json"}, chunks=[(0, body)]
    )
    retry = await _should_retry_of_a_502(upstream, door, stream=True)
    assert retry == ("false" if calls == 1 else "true")
    assert len(upstream.seen) == calls


@pytest.mark.parametrize("door", ["chat", "responses", "messages"])
@pytest.mark.parametrize(
    ("tail", "calls"),
    [(b"data: {not json\n\n", 1), (b"", 2)],
    ids=["malformed", "truncated"],
)
@pytest.mark.usefixtures("no_sdk_backoff")
async def test_a_whole_answer_that_fails_mid_stream_tells_the_sdk_whether_to_retry(
    upstream: FakeUpstream, door: str, tail: bytes, calls: int
) -> None:
    """A non-streaming answer whose upstream failed after it began (its status set by the
    error document) had no ``x-should-retry``: the SDKs retried a malformed upstream's 502 as
    they do every 5xx. A cut (``upstream_truncated``) may succeed again and is retried."""
    chunks = [(0.0, chat_chunk("part"))] + ([(0.0, tail)] if tail else [])
    upstream.default = Script(chunks=chunks, headers=SSE)
    retry = await _should_retry_of_a_502(upstream, door, stream=False)
    assert retry == ("false" if calls == 1 else "true")
    assert len(upstream.seen) == calls


async def test_the_messages_sdk_reads_the_request_id_of_an_answer(upstream: FakeUpstream) -> None:
    """The Messages SDKs read an answer's id from ``request-id`` (``message._request_id``),
    which only the errors carried: a good answer's id was ``None`` to them."""
    upstream.default = Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE)
    doc = one_route(upstream)
    async with (
        running_gateway(doc) as gw,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0) as an,
    ):
        raw = await an.messages.with_raw_response.create(
            model="up",
            max_tokens=9,
            messages=USER,  # type: ignore[arg-type]
        )
        message = await raw.parse()
        assert message._request_id == raw.headers["x-request-id"]
        async with an.messages.stream(model="up", max_tokens=9, messages=USER) as stream:  # type: ignore[arg-type]
            assert stream.request_id == stream.response.headers["x-request-id"]
            assert await stream.get_final_text() == "ab"
