"""The JavaScript client module (gateway/static/gateway-client.js) in headless Chromium.

Run in a page served by the gateway (or, for bytes the gateway never sends, by a tiny raw SSE
server), through ``page.evaluate``: streamTokens and the iterator form against real routes,
aborts that must reach the upstream, every way a stream can fail, and the SSE parser against
the shared conformance vectors split at every byte.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.conftest import DEMO_REASONING, DEMO_TEXT, HELLO, LOOP, RawServer, watch_of
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import RunningGateway, running_gateway, wait_for

pytestmark = [pytest.mark.system, LOOP]

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "sse_vectors.json").read_text()
)["vectors"]

# Runs streamTokens and reports what happened, in a JSON-friendly shape.
STREAM_TOKENS = """
async ({url, body}) => {
  const { streamTokens, GatewayError, StreamTruncatedError } = await import("/static/gateway-client.js");
  const calls = [];
  const types = [];
  try {
    const summary = await streamTokens(url, body, {
      onEvent: (ev) => types.push(ev.type),
      onCreated: (d) => calls.push(["created", d.route]),
      onThinking: () => calls.push(["thinking"]),
      onReasoning: (t) => calls.push(["reasoning", t]),
      onClear: () => calls.push(["clear"]),
      onDelta: (t) => calls.push(["delta", t]),
      onToolCall: (p, c) => calls.push(["tool_call", c.name]),
      onUsage: (u) => calls.push(["usage", u]),
      onEnd: (d) => calls.push(["end", d.reason]),
      onError: (e) => calls.push(["onError", e.code ?? e.name]),
    });
    return { ok: true, summary, calls, types };
  } catch (err) {
    return {
      ok: false, calls, types,
      error: { name: err.name, kind: err.kind, code: err.code, status: err.status,
               message: err.message, retryable: err.retryable,
               isGatewayError: err instanceof GatewayError,
               isTruncated: err instanceof StreamTruncatedError,
               summary: err.summary },
    };
  }
}
"""


async def run_stream(page: Page, url: str, body: Any = HELLO) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(STREAM_TOKENS, {"url": url, "body": body})
    return result


async def test_stream_tokens_resolves_with_the_full_text(
    page: Page, gateway: RunningGateway
) -> None:
    await page.goto(gateway.url + "/")
    result = await run_stream(page, "/v1/stream/fast")
    assert result["ok"], result
    s = result["summary"]
    assert s["text"] == DEMO_TEXT
    assert s["reasoning"] == DEMO_REASONING
    assert s["reason"] == "stop"
    assert s["route"] == "fast"
    assert s["provider"] == "simulated"
    assert s["usage"]["output_tokens"] > 0
    assert s["status"] == 200 and s["requestId"]
    t = s["timings"]
    assert 0 <= t["headers"] <= t["firstToken"] <= t["firstText"] <= t["duration"]
    types = result["types"]
    assert types[0] == "created" and types[-1] == "end"
    assert s["events"] == len(types)
    calls = result["calls"]
    assert calls[0] == ["created", "fast"] and calls[1] == ["thinking"]
    assert "".join(c[1] for c in calls if c[0] == "delta") == DEMO_TEXT
    assert "".join(c[1] for c in calls if c[0] == "reasoning") == DEMO_REASONING
    assert calls[-1] == ["end", "stop"]
    assert not any(c[0] == "onError" for c in calls)
    assert watch_of(page).console_errors == []


async def test_the_iterator_form(page: Page, gateway: RunningGateway) -> None:
    await page.goto(gateway.url + "/")
    result = await page.evaluate(
        """async (body) => {
          const { tokenEvents } = await import("/static/gateway-client.js");
          const events = [];
          for await (const ev of tokenEvents("/v1/stream/fast", body)) events.push(ev);
          return events;
        }""",
        HELLO,
    )
    types = [e["type"] for e in result]
    assert types[0] == "created" and types[-1] == "end"
    assert [e["id"] for e in result] == [str(i) for i in range(1, len(result) + 1)]
    assert "".join(e["data"]["text"] for e in result if e["type"] == "delta") == DEMO_TEXT
    assert all(isinstance(e["at"], int | float) for e in result)


async def test_a_route_with_another_default_format_streams_tokens_on_request(
    page: Page, gateway: RunningGateway
) -> None:
    await page.goto(gateway.url + "/")
    result = await run_stream(page, "/v1/stream/ndjson-route")
    assert not result["ok"]
    assert result["error"]["kind"] == "protocol"
    assert result["error"]["code"] == "unexpected_content_type"
    result = await run_stream(page, "/v1/stream/ndjson-route?format=tokens")
    assert result["ok"] and result["summary"]["text"] == "in any format"


async def test_abort_closes_the_upstream_connection(
    page: Page, gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    await page.goto(gateway.url + "/")
    result = await page.evaluate(
        """async (body) => {
          const { streamTokens } = await import("/static/gateway-client.js");
          const controller = new AbortController();
          let deltas = 0;
          try {
            await streamTokens("/v1/stream/upstream", body, {
              signal: controller.signal,
              onDelta: () => { if (++deltas === 3) controller.abort(); },
            });
            return { ok: true };
          } catch (err) {
            return { ok: false, name: err.name, deltas };
          }
        }""",
        HELLO,
    )
    returned = time.monotonic()
    assert result == {"ok": False, "name": "AbortError", "deltas": 3}
    seen = upstream.seen[-1]
    await wait_for(lambda: seen.closed_at is not None, timeout=2)
    assert seen.closed_at is not None and not seen.completed
    # The abort happened in the page before evaluate returned; the close reached the upstream
    # well within the contract's 100 ms plus the page-to-test round trip.
    assert seen.closed_at - returned < 0.5
    await wait_for(lambda: not gateway.state.sessions, timeout=2)


async def test_leaving_the_iterator_early_closes_the_connection(
    page: Page, gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    await page.goto(gateway.url + "/")
    texts = await page.evaluate(
        """async (body) => {
          const { tokenEvents } = await import("/static/gateway-client.js");
          const texts = [];
          for await (const ev of tokenEvents("/v1/stream/upstream", body)) {
            if (ev.type === "delta") texts.push(ev.data.text);
            if (texts.length === 2) break;
          }
          return texts;
        }""",
        HELLO,
    )
    returned = time.monotonic()
    assert texts == ["word0 ", "word1 "]
    seen = upstream.seen[-1]
    await wait_for(lambda: seen.closed_at is not None, timeout=2)
    assert seen.closed_at is not None and not seen.completed
    assert seen.closed_at - returned < 0.5


async def test_an_error_event_rejects_after_on_error(page: Page, gateway: RunningGateway) -> None:
    await page.goto(gateway.url + "/")
    result = await run_stream(page, "/v1/stream/flaky")
    assert not result["ok"]
    err = result["error"]
    assert err["isGatewayError"] and not err["isTruncated"]
    assert (err["kind"], err["code"], err["status"]) == ("stream", "upstream_error", 200)
    assert "simulated upstream failure" in err["message"]
    assert err["retryable"] is True
    assert len(err["summary"]["text"].split()) == 3  # what streamed before the failure
    assert [c for c in result["calls"] if c[0] == "onError"] == [["onError", "upstream_error"]]
    assert result["types"][-1] == "error"


async def test_a_truncated_upstream_rejects(page: Page, gateway: RunningGateway) -> None:
    await page.goto(gateway.url + "/")
    result = await run_stream(page, "/v1/stream/cut")
    assert not result["ok"]
    assert (result["error"]["kind"], result["error"]["code"]) == ("stream", "upstream_truncated")


async def test_http_errors_reject_with_status_and_code(page: Page, gateway: RunningGateway) -> None:
    await page.goto(gateway.url + "/")
    result = await run_stream(page, "/v1/stream/demo", {"messages": []})
    err = result["error"]
    assert (err["kind"], err["status"], err["code"]) == ("http", 400, "invalid_request")
    assert "messages" in err["message"]
    assert result["calls"] == [["onError", "invalid_request"]]
    result = await run_stream(page, "/v1/stream/nope")
    assert (result["error"]["status"], result["error"]["code"]) == (404, "not_found")


async def test_the_client_detects_a_stream_without_terminal_event(
    page: Page, raw_server: RawServer
) -> None:
    await page.goto(raw_server.url + "/")
    for name in ("truncated", "unterminated-end"):
        result = await run_stream(page, f"/raw/{name}")
        assert not result["ok"], name
        err = result["error"]
        assert err["isTruncated"] and err["name"] == "StreamTruncatedError", err
        assert (err["kind"], err["code"], err["retryable"]) == (
            "truncated",
            "stream_truncated",
            True,
        )
        assert "end" not in result["types"]
    assert err["summary"]["text"] == "almost"
    result = await run_stream(page, "/reset")
    assert result["error"]["code"] == "stream_truncated"
    assert result["error"]["summary"]["text"] == "partial "


async def test_the_client_parses_a_stream_delivered_one_byte_per_write(
    page: Page, raw_server: RawServer
) -> None:
    await page.goto(raw_server.url + "/")
    result = await run_stream(page, "/raw/bytewise")
    assert result["ok"], result
    assert result["summary"]["text"] == "hé 🙂"
    assert result["types"] == ["created", "delta", "end"]


async def test_a_response_that_is_not_an_event_stream_rejects(
    page: Page, raw_server: RawServer
) -> None:
    await page.goto(raw_server.url + "/")
    result = await run_stream(page, "/plain")
    assert (result["error"]["kind"], result["error"]["code"]) == (
        "protocol",
        "unexpected_content_type",
    )


# -- the SSE parser -------------------------------------------------------------------------------

PARSE_EVERY_SPLIT = """
async (vectors) => {
  const { SSEParser } = await import("/static/gateway-client.js");
  const hex = (h) => new Uint8Array(h.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
  const run = (chunks) => {
    const p = new SSEParser();
    const out = [];
    for (const c of chunks) out.push(...p.feed(c));
    out.push(...p.end());
    return { events: out.map((e) => ({ type: e.type, data: e.data, lastEventId: e.id })), retry: p.retry };
  };
  const failures = [];
  let runs = 0;
  for (const v of vectors) {
    const chunks = v.chunks_hex.map(hex);
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of chunks) { all.set(c, o); o += c.length; }
    const ways = [["as given", chunks], ["byte by byte", Array.from(all, (b) => new Uint8Array([b]))]];
    for (let i = 0; i <= all.length; i++) ways.push([`split at ${i}`, [all.slice(0, i), all.slice(i)]]);
    for (const [how, parts] of ways) {
      runs++;
      const got = run(parts);
      const want = { events: v.expected_events, retry: v.expected_retry };
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        failures.push({ name: v.name, how, got, want });
      }
    }
  }
  return { failures: failures.slice(0, 5), count: failures.length, runs };
}
"""


async def test_sse_parser_conformance_vectors_at_every_split(
    page: Page, raw_server: RawServer
) -> None:
    await page.goto(raw_server.url + "/")
    result = await page.evaluate(PARSE_EVERY_SPLIT, VECTORS)
    assert result["count"] == 0, result["failures"]
    assert result["runs"] > len(VECTORS) * 10


async def test_sse_parser_on_a_token_stream_with_crlf_comments_and_multibyte(
    page: Page, raw_server: RawServer
) -> None:
    sample = (
        "\ufeff: hello\r\n"
        'event: delta\r\ndata: {"text":\r\ndata: "h\u00e9llo \U0001f600"}\r\nid: 7\r\n\r\n'
        ": ping\r\n\r\n"
        "data: line1\rdata:line2\r\r"
        "event: end\ndata:  two spaces\u2028kept\nretry: 300\n\n"
        "event: lost\ndata: no blank line at the end\n"
    )
    expected = [
        {"type": "delta", "data": '{"text":\n"h\u00e9llo \U0001f600"}', "id": "7"},
        {"type": "message", "data": "line1\nline2", "id": "7"},
        {"type": "end", "data": " two spaces\u2028kept", "id": "7"},
    ]
    await page.goto(raw_server.url + "/")
    results = await page.evaluate(
        """async (sample) => {
          const { SSEParser } = await import("/static/gateway-client.js");
          const bytes = new TextEncoder().encode(sample);
          const run = (parts, asText) => {
            const p = new SSEParser();
            const dec = new TextDecoder();
            const out = [];
            for (const c of parts) out.push(...p.feed(asText ? dec.decode(c, { stream: true }) : c));
            out.push(...p.end());
            return { events: out, retry: p.retry };
          };
          const results = [];
          for (let i = 0; i <= bytes.length; i++) {
            results.push(run([bytes.slice(0, i), bytes.slice(i)], false));
          }
          for (let i = 0; i <= bytes.length; i++) {
            results.push(run([bytes.slice(0, i), bytes.slice(i)], true));  // string chunks
          }
          results.push(run(Array.from(bytes, (b) => new Uint8Array([b])), false));
          return results;
        }""",
        sample,
    )
    assert len(results) > 2 * len(sample.encode())
    for r in results:
        assert r == {"events": expected, "retry": 300}


async def test_sse_parser_bounds_its_buffers(page: Page, raw_server: RawServer) -> None:
    await page.goto(raw_server.url + "/")
    result = await page.evaluate(
        """async () => {
          const { SSEParser, SSEParseError } = await import("/static/gateway-client.js");
          const p = new SSEParser({ maxBufferSize: 1000 });
          const outcomes = [];
          for (const input of ["data: " + "x".repeat(2000), "data: x\\n".repeat(600)]) {
            try { p.reset(); p.feed(input); outcomes.push("accepted"); }
            catch (err) { outcomes.push(err instanceof SSEParseError ? "bounded" : String(err)); }
          }
          return outcomes;
        }"""
    )
    assert result == ["bounded", "bounded"]


async def test_an_app_on_another_origin_needs_the_route_to_allow_it(
    page: Page, raw_server: RawServer
) -> None:
    """The docs' cross-origin example: cors.allow_origins lets a page elsewhere stream a route."""
    fast = {"text": "from afar", "first_token_delay": 0, "token_interval": 0}
    doc = {
        "routes": [
            {
                "name": "web",
                "provider": "simulated",
                "options": fast,
                "cors": {"allow_origins": [raw_server.url]},
            },
            {"name": "private", "provider": "simulated", "options": fast},
        ]
    }
    async with running_gateway(doc) as gw:
        await page.goto(raw_server.url + "/")
        allowed = await run_stream(page, f"{gw.url}/v1/stream/web")
        assert allowed["ok"], allowed
        assert allowed["summary"]["text"] == "from afar"
        assert len(allowed["summary"]["requestId"]) == 32  # X-Request-Id is exposed
        refused = await run_stream(page, f"{gw.url}/v1/stream/private")
        assert (refused["error"]["kind"], refused["error"]["code"]) == ("network", "network_error")


async def test_extra_headers_of_any_form_reach_the_gateway(page: Page) -> None:
    """`options.headers` as a `Headers` object, a list of pairs or lower-case names: merged by
    name over the defaults (a `Headers` object was dropped, a 401; a lower-case content-type
    went out twice, a 415)."""
    fast = {"text": "let in", "first_token_delay": 0, "token_interval": 0}
    doc = {
        "auth": {"keys": [{"name": "web", "key": "browser-key"}]},
        "routes": [{"name": "demo", "provider": "simulated", "options": fast}],
    }
    async with running_gateway(doc) as gw:
        await page.goto(gw.url + "/")
        result = await page.evaluate(
            """async () => {
              const { streamTokens } = await import("/static/gateway-client.js");
              const auth = "Bearer browser-key";
              const forms = {
                Headers: new Headers({ Authorization: auth }),
                pairs: [["Authorization", auth]],
                lowercase: { authorization: auth, "content-type": "application/json; charset=utf-8" },
              };
              const out = {};
              for (const [name, headers] of Object.entries(forms)) {
                try {
                  out[name] = (await streamTokens("/v1/stream/demo",
                    { messages: [{ role: "user", content: "Hi" }] }, { headers })).text;
                } catch (err) {
                  out[name] = `${err.status} ${err.code}`;
                }
              }
              return out;
            }"""
        )
    assert result == {"Headers": "let in", "pairs": "let in", "lowercase": "let in"}
