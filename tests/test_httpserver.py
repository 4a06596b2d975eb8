"""The fast HTTP/1.1 server (``gateway/httpserver.py``, ``server.http_server``) on real sockets.

Which server answered is visible: aiohttp's answers carry its ``Server`` header, the fast
server's do not. Requests are written in every way a network could split them; answers are read
with a small HTTP/1.1 reader here (not an HTTP library, which would hide framing mistakes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway import httpserver, runner
from tests.support.gateway import RunningGateway, metric_value, running_gateway, wait_for
from tests.support.heap import live, new_objects_only
from tests.support.rawclient import HELLO

pytestmark = pytest.mark.skipif(not httpserver.AVAILABLE, reason="httptools is not installed")

ROUTE = {
    "name": "r",
    "provider": "simulated",
    "options": {"text": "one two", "first_token_delay": "0ms", "token_interval": "0ms"},
}
PATH = "/v1/stream/r"


def post(path: str = PATH, body: Any = HELLO, *, extra: str = "", version: str = "1.1") -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}\r\n"
    ).encode() + payload


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def by_aiohttp(self) -> bool:
        return "aiohttp" in self.headers.get("server", "")

    def events(self) -> list[str]:
        return [line[7:] for line in self.body.decode().splitlines() if line.startswith("event: ")]

    @property
    def whole(self) -> bool:
        """A whole token stream: ``created`` first, ``end`` last, the route's text between."""
        text = "".join(
            json.loads(block.split("data: ", 1)[1]).get("text", "")
            for block in self.body.decode().split("\n\n")
            if "event: delta" in block
        )
        events = self.events()
        return events[0] == "created" and events[-1] == "end" and text.strip() == self.expect

    expect = "one two"


async def read_answer(reader: asyncio.StreamReader, start: bytes = b"") -> Answer:
    """One HTTP/1.1 answer: Content-Length, chunked, or (HTTP/1.0) until the connection ends
    (``start``: its first bytes, already read)."""
    async with asyncio.timeout(10):
        status_line = start + await reader.readline()
        assert status_line.startswith(b"HTTP/1."), status_line
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            return Answer(status, headers, b"")
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while size := int((await reader.readline()).strip(), 16):
                parts.append(await reader.readexactly(size))
                assert await reader.readexactly(2) == b"\r\n"
            assert await reader.readexactly(2) == b"\r\n"
            body = b"".join(parts)
        else:
            body = await reader.read()
    return Answer(status, headers, body)


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF or reset) within 3 s, sending nothing."""
    try:
        async with asyncio.timeout(3):
            return await reader.read(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
async def gw() -> AsyncIterator[RunningGateway]:
    doc = {"server": {"http_server": "raw", "max_body_bytes": 2048}, "routes": [ROUTE]}
    async with running_gateway(doc) as gateway:
        yield gateway


async def connect(gw: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gw.port)


async def test_a_stream_post_is_served_by_the_fast_server(gw: RunningGateway) -> None:
    reader, writer = await connect(gw)
    writer.write(post())
    answer = await read_answer(reader)
    writer.close()
    assert answer.status == 200 and not answer.by_aiohttp
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["transfer-encoding"] == "chunked"
    assert answer.headers["x-request-id"] and answer.headers["date"]
    assert answer.whole


async def test_aiohttp_serves_with_the_fast_server_off() -> None:
    doc = {"server": {"http_server": "aiohttp"}, "routes": [ROUTE]}
    async with running_gateway(doc) as gw:
        reader, writer = await connect(gw)
        writer.write(post())
        answer = await read_answer(reader)
        writer.close()
    assert answer.status == 200 and answer.by_aiohttp
    assert answer.whole


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
async def test_a_request_split_anywhere_is_the_same_request(gw: RunningGateway, size: int) -> None:
    """The request written ``size`` bytes at a time (each its own segment)."""
    data = post(PATH + "?format=tokens")
    reader, writer = await connect(gw)
    for i in range(0, len(data), size):
        writer.write(data[i : i + size])
        await writer.drain()
        await asyncio.sleep(0.001)
    answer = await read_answer(reader)
    writer.close()
    assert answer.status == 200 and not answer.by_aiohttp
    assert answer.whole


async def test_keep_alive_then_another_endpoint_hands_the_connection_to_aiohttp(
    gw: RunningGateway,
) -> None:
    reader, writer = await connect(gw)
    first: list[Answer] = []
    for _ in range(3):
        writer.write(post())
        first.append(await read_answer(reader))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    health = await read_answer(reader)
    writer.write(post())  # the connection is aiohttp's now
    after = await read_answer(reader)
    writer.close()
    assert [(a.status, a.by_aiohttp) for a in first] == [(200, False)] * 3
    assert len({a.headers["x-request-id"] for a in first}) == 3
    assert (health.status, health.by_aiohttp, json.loads(health.body)) == (
        200,
        True,
        {"status": "ok"},
    )
    assert (after.status, after.by_aiohttp) == (200, True)
    assert after.whole and all(a.whole for a in first)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/stream/r HTTP/1.1\r\nHost: x\r\n\r\n",  # wrong method: aiohttp's 405
        b"POST /v1/stream/%72 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",  # escaped
        b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"OPTIONS /v1/stream/r HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_what_is_not_a_stream_post_gets_aiohttps_answer(
    gw: RunningGateway, request_bytes: bytes
) -> None:
    reader, writer = await connect(gw)
    for byte in request_bytes[:4]:  # the method arrives a byte at a time
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.001)
    writer.write(request_bytes[4:])
    answer = await read_answer(reader)
    writer.close()
    assert answer.by_aiohttp and answer.status >= 400
    assert "error" in json.loads(answer.body)


async def test_the_front_doors_stream_on_the_fast_server(gw: RunningGateway) -> None:
    body = {"model": "r", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    reader, writer = await connect(gw)
    writer.write(post("/v1/chat/completions", body))
    answer = await read_answer(reader)
    writer.close()
    assert answer.status == 200 and not answer.by_aiohttp
    assert answer.body.rstrip().endswith(b"data: [DONE]")


async def test_http_1_0_body_ends_with_the_connection(gw: RunningGateway) -> None:
    reader, writer = await connect(gw)
    writer.write(post(version="1.0"))
    answer = await read_answer(reader)
    writer.close()
    assert answer.status == 200 and not answer.by_aiohttp
    assert answer.headers["connection"] == "close" and "transfer-encoding" not in answer.headers
    assert answer.whole


async def test_expect_100_continue(gw: RunningGateway) -> None:
    data = post(extra="Expect: 100-continue\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    reader, writer = await connect(gw)
    writer.write(head + b"\r\n\r\n")
    interim = await read_answer(reader)
    writer.write(body)
    answer = await read_answer(reader)
    writer.close()
    assert interim.status == 100
    assert answer.status == 200 and answer.whole


async def test_a_chunked_request_body_arriving_slowly(gw: RunningGateway) -> None:
    payload = json.dumps(HELLO).encode()
    reader, writer = await connect(gw)
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    for i in range(0, len(payload), 5):
        piece = payload[i : i + 5]
        writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
        await writer.drain()
        await asyncio.sleep(0.005)
    writer.write(b"0\r\n\r\n")
    answer = await read_answer(reader)
    writer.close()
    assert answer.status == 200 and answer.whole


async def test_an_oversized_body_is_413_and_the_connection_still_serves(
    gw: RunningGateway,
) -> None:
    reader, writer = await connect(gw)
    writer.write(post(body={"messages": [{"role": "user", "content": "x" * 4000}]}))
    too_big = await read_answer(reader)
    writer.write(post())
    ok = await read_answer(reader)
    writer.close()
    assert too_big.status == 413 and not too_big.by_aiohttp
    assert json.loads(too_big.body)["error"]["code"] == "body_too_large"
    assert ok.status == 200 and ok.whole


async def test_an_answer_before_the_body_lingers_then_closes(gw: RunningGateway) -> None:
    """A body announced over the bound: 413 at once, the rest of it read and dropped, then the
    connection closes (the client gets its answer, not a reset)."""
    reader, writer = await connect(gw)
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n".encode()
        + b"x" * 3000
    )
    answer = await read_answer(reader)
    writer.write(b"x" * 3000)  # still accepted while it lingers
    assert answer.status == 413
    assert await closed(reader)
    writer.close()


HELLO_CHUNKS = b"%x\r\n%b\r\n0\r\n\r\n" % (len(json.dumps(HELLO)), json.dumps(HELLO).encode())


def chunked_post(
    *chunks: bytes, coding: str = "chunked", version: str = "1.1", extra: str = ""
) -> bytes:
    head = f"POST {PATH} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
    return (head + f"Transfer-Encoding: {coding}\r\n{extra}\r\n").encode() + b"".join(chunks)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/stream/r HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n",
        b"POST /v1/stream/r HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"POST /v1/stream/r HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
        b"POST /v1/stream/r HTTQ/1.1\r\n\r\n",
        b"POST /v1/stream/r HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"POST /v1/stream/r HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 0\r\n\r\n",
        # request smuggling shapes: llhttp takes them, nginx refuses them (RFC 9112 6.1, 6.3)
        chunked_post(b"0\r\n\r\n", coding="identity, chunked"),
        chunked_post(b"0\r\n\r\n", coding="identity\r\nTransfer-Encoding: chunked"),
        chunked_post(HELLO_CHUNKS, version="1.0"),
        chunked_post(HELLO_CHUNKS, version="1.0", extra="Connection: keep-alive\r\n"),
        post(version="2.0"),
        b"POST /v1/stream/r\r\n\r\n",
        # a head over 64 KiB, every line within its own bound
        post(extra="".join(f"X-{i}: {'a' * 1000}\r\n" for i in range(80))),
    ],
    ids=[
        "bad-length",
        "big-header",
        "many-headers",
        "bad-version",
        "no-host",
        "two-hosts",
        "identity-chunked",
        "two-coding-lines",
        "coding-on-http-1.0",
        "coding-on-http-1.0-keep-alive",
        "http-2.0",
        "no-version",
        "big-head",
    ],
)
async def test_a_malformed_request_is_a_json_400_then_close(
    gw: RunningGateway, request_bytes: bytes
) -> None:
    reader, writer = await connect(gw)
    writer.write(request_bytes)
    answer = await read_answer(reader)
    assert answer.status == 400 and not answer.by_aiohttp
    assert json.loads(answer.body)["error"]["code"] == "invalid_request"
    assert await closed(reader)
    writer.close()


def short_length(request: bytes) -> bytes:
    """``request`` with a Content-Length one byte short (a length counted in characters)."""
    head, _, body = request.partition(b"\r\n\r\n")
    length = b"Content-Length: %d" % len(body)
    return head.replace(length, b"Content-Length: %d" % (len(body) - 1)) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (chunked_post(b"zz\r\n{}\r\n0\r\n\r\n"), "invalid_request"),
        (chunked_post(b"2\r\n{}}}\r\n0\r\n\r\n"), "invalid_request"),
        (short_length(post()), "invalid_json"),  # the body cut short, its last byte not HTTP
    ],
    ids=["bad-chunk-size", "chunk-overrun", "short-length"],
)
async def test_a_body_that_breaks_off_is_a_json_400_then_close(
    gw: RunningGateway, request_bytes: bytes, code: str
) -> None:
    """The head was read and the handler runs: its answer is the 400, not a dropped connection."""
    reader, writer = await connect(gw)
    writer.write(request_bytes)
    answer = await read_answer(reader)
    assert answer.status == 400 and not answer.by_aiohttp
    assert json.loads(answer.body)["error"]["code"] == code
    assert answer.headers["connection"] == "close"
    assert await closed(reader)
    writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (post()[: post().index(b"\r\n\r\n")] + b"\r\nX-A: ", "request head over 65536 bytes"),
        (post()[: post().index(b"\r\n\r\n")] + b"\r\nX-", "request head over 65536 bytes"),
        (chunked_post(b"2\r\n{}\r\n0\r\nX-T: "), "request trailers over 65536 bytes"),
    ],
    ids=["header-value", "header-name", "trailer"],
)
async def test_an_endless_header_line_is_refused_within_its_bound(
    gw: RunningGateway, request_bytes: bytes, message: str
) -> None:
    """httptools holds a header line whole until its end: a line that never ends is refused
    once the head (or the trailers) passes 64 KiB, not buffered until the idle timeout."""
    reader, writer = await connect(gw)
    writer.write(request_bytes)
    reading = asyncio.create_task(read_answer(reader))
    with contextlib.suppress(ConnectionError):
        for _ in range(32):  # 2 MiB at most: the answer comes after the first 64 KiB
            writer.write(b"a" * 65536)
            await writer.drain()
            if reading.done():
                break
    answer = await reading
    assert answer.status == 400 and not answer.by_aiohttp
    assert json.loads(answer.body)["error"] == {"code": "invalid_request", "message": message}
    assert await closed(reader)
    writer.close()


TRAILER_KEY = "trailer-key-0123456789"


@pytest.mark.parametrize("server", ["raw", "aiohttp"])
async def test_a_trailer_is_never_a_header_of_the_next_request(server: str) -> None:
    """A chunked body's trailer fields are dropped: one saying ``Authorization`` must not
    authorize the next request on the connection (which behind a proxy may be another
    client's), nor be read as this request's."""
    doc = {
        "server": {"http_server": server},
        "routes": [ROUTE],
        "auth": {"keys": [{"name": "app", "key": TRAILER_KEY}]},
    }
    trailer = f"Authorization: Bearer {TRAILER_KEY}\r\n".encode()
    body = json.dumps(HELLO).encode()
    async with running_gateway(doc) as gateway:
        reader, writer = await connect(gateway)
        writer.write(chunked_post(b"%x\r\n%b\r\n0\r\n%b\r\n" % (len(body), body, trailer)))
        first = await read_answer(reader)
        writer.write(post())  # no Authorization of its own
        async with asyncio.timeout(10):
            closed = await reader.read(1) == b""  # or the second answer's first byte
        second = None if closed else await read_answer(reader, b"H")
        writer.close()
    assert first.status == 401
    # aiohttp's parser keeps the last trailer for the next request: the gateway closes such a
    # connection after the answer there (server.close_after_chunked_body), so no next request.
    assert second.status == 401 if second is not None else server == "aiohttp"


async def test_a_trailer_is_read_and_dropped(gw: RunningGateway) -> None:
    """Trailers within the bound: the request is served and the connection kept (a ``Host``
    trailer is not a second ``Host`` of the next request)."""
    body = json.dumps(HELLO).encode()
    reader, writer = await connect(gw)
    writer.write(chunked_post(b"%x\r\n%b\r\n0\r\nHost: y\r\nX-T: 1\r\n\r\n" % (len(body), body)))
    first = await read_answer(reader)
    writer.write(post())
    second = await read_answer(reader)
    writer.close()
    assert first.status == 200 and first.whole
    assert second.status == 200 and second.whole


async def test_an_http_1_0_keep_alive_error_says_keep_alive_and_keeps_it(
    gw: RunningGateway,
) -> None:
    """An HTTP/1.0 client closes unless the answer says ``Connection: keep-alive`` (as aiohttp
    says it): a JSON error on a kept connection says so, and the connection serves again."""
    reader, writer = await connect(gw)
    writer.write(post(body=[], version="1.0", extra="Connection: keep-alive\r\n"))
    error = await read_answer(reader)
    writer.write(post(version="1.0", extra="Connection: keep-alive\r\n"))
    stream = await read_answer(reader)  # an HTTP/1.0 stream ends with the connection
    writer.close()
    assert error.status == 400 and error.headers["connection"] == "keep-alive"
    assert stream.status == 200 and stream.whole


async def test_bytes_after_a_whole_request_that_are_not_http_end_the_connection_after_it(
    gw: RunningGateway,
) -> None:
    reader, writer = await connect(gw)
    writer.write(post() + b"\x16\x03\x01 not a request\r\n\r\n")
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.whole
    assert answer.headers["connection"] == "close"
    assert await closed(reader)
    writer.close()
    assert await metric_value(gw.url, "gateway_client_aborts_total", {"route": "r"}) == 0
    assert await metric_value(gw.url, "gateway_requests_total", {"outcome": "completed"}) == 1


CURL_HTTP2 = (
    "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)
"""What ``curl --http2`` (7.88) adds to a request to an ``http://`` URL."""


@pytest.mark.parametrize("split", [False, True])
async def test_an_upgrade_request_is_served_as_http_1_1(gw: RunningGateway, split: bool) -> None:
    """RFC 9110 7.8: a server may ignore ``Upgrade``; the stream comes over HTTP/1.1, then the
    connection closes (the upgrade is not taken, and llhttp stopped at the request's head)."""
    data = post(extra=CURL_HTTP2)
    reader, writer = await connect(gw)
    if split:  # the body in its own segment, after the head
        cut = data.index(b"\r\n\r\n") + 4
        writer.write(data[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        data = data[cut:]
    writer.write(data)
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.whole and not answer.by_aiohttp
    assert answer.headers["connection"] == "close"
    assert await closed(reader)
    writer.close()


@pytest.mark.parametrize(
    ("framing", "status"),
    [("chunked", 200), ("none", 400)],
)
async def test_an_upgrade_request_s_body_in_any_framing(
    gw: RunningGateway, framing: str, status: int
) -> None:
    upgrade = "Connection: upgrade\r\nUpgrade: websocket\r\n"
    payload = json.dumps(HELLO).encode()
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{upgrade}"
    if framing == "chunked":
        request = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
        request += b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload)
    else:
        request = (head + "\r\n").encode()
    reader, writer = await connect(gw)
    writer.write(request)
    answer = await read_answer(reader)
    assert answer.status == status and not answer.by_aiohttp
    if status == 200:
        assert answer.whole
    else:  # no body: the JSON error of an empty body
        assert json.loads(answer.body)["error"]["code"] == "invalid_json"
    assert await closed(reader)
    writer.close()


async def test_a_client_s_connection_close_is_said_in_the_streamed_answer(
    gw: RunningGateway,
) -> None:
    reader, writer = await connect(gw)
    writer.write(post(extra="Connection: close\r\n"))
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.whole
    assert answer.headers["connection"] == "close"
    assert await closed(reader)
    writer.close()
    reader, writer = await connect(gw)
    writer.write(post())
    assert "connection" not in (await read_answer(reader)).headers  # kept alive: not said
    writer.close()


async def test_two_requests_in_one_write_answer_the_first_then_close(gw: RunningGateway) -> None:
    reader, writer = await connect(gw)
    writer.write(post() + post())
    answer = await read_answer(reader)
    assert answer.status == 200 and answer.whole
    assert answer.headers["connection"] == "close"  # the second is not answered: said so
    assert await closed(reader)
    writer.close()


async def test_a_next_request_sent_before_the_answer_ended_is_served_after_it() -> None:
    """The next request arrives while the first stream is still going (it is read, kept, and
    served when the first answer is out)."""
    slow = {**ROUTE, "options": {"text": "a b c", "token_interval": "50ms"}}
    async with running_gateway({"server": {"http_server": "raw"}, "routes": [slow]}) as gw:
        reader, writer = await connect(gw)
        writer.write(post())
        await reader.readuntil(b"event: created")
        writer.write(post())
        rest = await read_answer_rest(reader)
        second = await read_answer(reader)
        writer.close()
    assert rest.endswith(b"0\r\n\r\n")
    second.expect = "a b c"
    assert second.status == 200 and second.whole


async def read_answer_rest(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(10):
        return await reader.readuntil(b"\r\n0\r\n\r\n")


@contextlib.asynccontextmanager
async def with_keepalive(
    monkeypatch: pytest.MonkeyPatch, seconds: float
) -> AsyncIterator[RunningGateway]:
    """A gateway on the fast server whose keep-alive timeout is ``seconds``."""
    monkeypatch.setattr(runner, "KEEPALIVE_TIMEOUT", seconds)
    async with running_gateway({"server": {"http_server": "raw"}, "routes": [ROUTE]}) as gw:
        yield gw


async def test_an_idle_connection_closes_after_the_keep_alive_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with with_keepalive(monkeypatch, 0.3) as gw:
        reader, writer = await connect(gw)
        writer.write(post())
        answer = await read_answer(reader)
        assert answer.status == 200
        assert await closed(reader)
        idle_reader, idle_writer = await connect(gw)  # never sends a byte
        assert await closed(idle_reader)
        writer.close()
        idle_writer.close()


async def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_keep_alive_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slowloris: the keep-alive timeout bounds the whole head, not the gap between bytes."""
    async with with_keepalive(monkeypatch, 0.3) as gw:
        reader, writer = await connect(gw)
        data = post()
        with contextlib.suppress(ConnectionError):
            for i in range(len(data)):  # about 10 s in all, a byte every 50 ms
                writer.write(data[i : i + 1])
                await writer.drain()
                if reader.at_eof():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1), 0.05)
        assert reader.at_eof()
        assert i < len(data) - 1  # cut before the head was whole
        writer.close()


async def test_requests_within_the_timeout_keep_the_connection_the_last_answer_starts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with with_keepalive(monkeypatch, 0.4) as gw:
        reader, writer = await connect(gw)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < 1.0:  # 2.5 timeouts in all, never 0.4 s idle
            writer.write(post())
            assert (await read_answer(reader)).status == 200
            last = loop.time()
            await asyncio.sleep(0.1)
        assert await closed(reader)
        writer.close()
    assert loop.time() - last >= 0.4 - 0.01  # idle for the timeout after the last answer


async def test_a_closed_connection_is_freed(gw: RunningGateway) -> None:
    """The listener's keep-alive deadlines hold each idle connection; an ended connection is
    let go of, and freed without the cyclic collector."""

    with new_objects_only():
        for _ in range(3):
            reader, writer = await connect(gw)
            for _ in range(2):  # keep-alive: busy, idle, busy again
                writer.write(post())
                assert (await read_answer(reader)).status == 200
            writer.close()
            await writer.wait_closed()
        await wait_for(lambda: live(httpserver.Connection) == 0)


@pytest.mark.parametrize("early", [False, True], ids=["refused-head", "answered-before-body"])
async def test_a_closing_answer_ends_at_once_for_the_client(
    gw: RunningGateway, monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    """After its last answer the server lingers, reading what the client still sends (a close
    with unread bytes would reset the answer away), but says the end at once: a client reading
    to the end gets it with the answer, not a lingering time later."""
    monkeypatch.setattr(httpserver, "LINGERING_TIME", 30.0)
    reader, writer = await connect(gw)
    if early:  # over max_body_bytes: a 413 before the body (still to come) is read
        writer.write(post(body={"x": "a" * 4000})[:-4000])
    else:
        writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 70_000)
        writer.write(b"\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.split(b" ", 2)[1] == (b"413" if early else b"400")
