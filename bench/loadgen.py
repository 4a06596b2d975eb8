"""A cheap load client: raw asyncio sockets on uvloop, parsing just enough to time tokens.

A stream's response is never decoded. The client finds the end of the response head, then counts
``~`` bytes (the fake upstream puts exactly one in every token's text, and no proxy's framing
contains one) and watches for the chunked body's last chunk ``\\r\\n0\\r\\n\\r\\n``. That is enough
to time the first token and each gap, whatever format the proxy re-encodes the tokens into.

Three ways to drive a peer:

* :func:`closed_loop`: ``concurrency`` keep-alive connections, each sending its next stream as
  soon as the previous one ends, until a deadline (saturation and latency scenarios);
* :func:`hold_idle`: open ``n`` streams on a silent upstream and keep them open (memory);
* :func:`abort_probes`: one stream at a time, closed by the client, timed until the upstream
  sees the close (abort propagation).
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

_now = time.monotonic
MARK = b"~"
LAST = b"\r\n0\r\n\r\n"


@dataclass
class Tally:
    """What a closed-loop run saw. ``gaps`` only when timing was asked for."""

    streams: int = 0
    failed: int = 0
    unfinished: int = 0
    tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    gaps: array[float] = field(default_factory=lambda: array("d"))
    statuses: dict[int, int] = field(default_factory=dict)


class StreamConn(asyncio.Protocol):
    """One keep-alive client connection carrying one stream at a time."""

    def __init__(self, tally: Tally, timing: bool) -> None:
        self.tally = tally
        self.timing = timing
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[bool] | None = None
        self.first: asyncio.Future[None] | None = None
        self.head = b""
        self.in_head = True
        self.tail = b""
        self.t_sent = 0.0
        self.t_first = 0.0
        self.t_last = 0.0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, request: bytes) -> asyncio.Future[bool]:
        """Send one request; the future says whether the stream ended cleanly."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.first = loop.create_future()
        self.head, self.in_head, self.tail = b"", True, b""
        self.t_first = 0.0
        self.t_sent = _now()
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        now = _now()
        if self.in_head:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(self.head[9:12])
            data = self.head[end + 4 :]
            self.head, self.in_head = b"", False
            self.tally.statuses[status] = self.tally.statuses.get(status, 0) + 1
            if status != 200:
                self._end(False)
                return
        n = data.count(MARK)
        if n:
            tally = self.tally
            tally.tokens += n
            if not self.t_first:
                self.t_first = now
                tally.ttft.append(now - self.t_sent)
                if self.first is not None and not self.first.done():
                    self.first.set_result(None)
                n -= 1
            elif self.timing:
                tally.gaps.append(now - self.t_last)
                n -= 1
            if self.timing and n:
                tally.gaps.extend([0.0] * n)
            self.t_last = now
        tail = (self.tail + data[-7:])[-7:]
        self.tail = tail
        if tail == LAST:
            self._end(True)

    def _end(self, ok: bool) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(ok)
            if not ok and self.transport is not None:
                self.transport.close()  # an error body: do not try to reuse the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(False)
        if not self.lost.done():
            self.lost.set_result(None)


async def connect(host: str, port: int, tally: Tally, timing: bool = False) -> StreamConn:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: StreamConn(tally, timing), host, port)
    return proto


async def closed_loop(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    duration: float,
    timing: bool = False,
    stagger: float = 0.0,
    grace: float = 10.0,
    on_window: Callable[[], None] | None = None,
) -> tuple[Tally, float]:
    """Keep ``concurrency`` streams going for ``duration`` seconds; returns (tally, window).

    Worker ``i`` starts after ``i * stagger / concurrency`` seconds so arrivals are smooth rather
    than one burst. The measured window starts when every worker has started (``on_window`` is
    called then: the caller samples the proxy's CPU) and lasts ``duration``; streams that have not
    ended ``grace`` seconds after it are cut and counted as ``unfinished``.
    """
    tally = Tally()
    started = asyncio.Event()
    stop_at = [float("inf")]
    conns: list[StreamConn] = []
    pending = [concurrency]

    async def worker(i: int) -> None:
        if stagger:
            await asyncio.sleep(i * stagger / concurrency)
        pending[0] -= 1
        if pending[0] == 0:
            started.set()
        conn: StreamConn | None = None
        while _now() < stop_at[0]:
            if conn is None or conn.lost.done():
                try:
                    conn = await connect(host, port, tally, timing)
                except OSError:
                    tally.failed += 1
                    await asyncio.sleep(0.05)
                    continue
                conns.append(conn)
            if await conn.send(request):
                tally.streams += 1
            else:
                tally.failed += 1

    tasks = [asyncio.ensure_future(worker(i)) for i in range(concurrency)]
    await started.wait()
    if on_window is not None:
        on_window()
    t0 = _now()
    before = (tally.tokens, tally.streams, len(tally.ttft), len(tally.gaps))
    stop_at[0] = t0 + duration
    await asyncio.sleep(duration)
    window = _now() - t0
    if on_window is not None:
        on_window()
    tokens, streams = tally.tokens - before[0], tally.streams - before[1]
    _, still = await asyncio.wait(tasks, timeout=grace)
    for task in still:
        task.cancel()
    tally.unfinished = len(still)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    window_tally = Tally(
        streams=streams,
        failed=tally.failed,
        unfinished=tally.unfinished,
        tokens=tokens,
        ttft=tally.ttft[before[2] :],
        gaps=tally.gaps[before[3] :],
        statuses=tally.statuses,
    )
    return window_tally, window


async def hold_idle(
    host: str, port: int, request: bytes, n: int, *, budget: float, parallel: int = 200
) -> list[StreamConn]:
    """Open ``n`` streams, ``parallel`` connects at a time, within ``budget`` seconds.

    Returns the connections that opened (the caller closes them). Their responses are ignored.
    """
    tally = Tally()
    conns: list[StreamConn] = []
    deadline = _now() + budget
    sem = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with sem:
            if _now() > deadline:
                return
            try:
                conn = await connect(host, port, tally)
            except OSError:
                return
            conn.send(request)
            conns.append(conn)

    await asyncio.wait([asyncio.ensure_future(one()) for _ in range(n)], timeout=budget)
    return conns


@dataclass
class ProbeResult:
    delays_ms: list[float]
    missing: int


async def abort_probes(
    host: str,
    port: int,
    request: bytes,
    count: int,
    *,
    control: tuple[str, int],
    wait_first_token: bool,
    timeout: float = 2.0,
) -> ProbeResult:
    """Close ``count`` streams one after the other; time each until the upstream sees it.

    With ``wait_first_token`` the client closes after the first token (mid-stream); otherwise
    50 ms after sending the request (the model is silent). A close the upstream has not seen
    within ``timeout`` counts as ``missing``.
    """
    delays: list[float] = []
    missing = 0
    tally = Tally()
    for _ in range(count):
        stats = await get_json(*control, "/_stats")
        seen = int(stats["closes"])
        conn = await connect(host, port, tally)
        conn.send(request)
        try:
            if wait_first_token:
                assert conn.first is not None
                await asyncio.wait_for(conn.first, timeout)
            else:
                await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        assert conn.transport is not None
        t_close = _now()
        conn.transport.close()
        got = await get_json(*control, f"/_closes?after={seen}&wait={int(timeout * 1000)}")
        closes = got["closes"]
        if closes:
            delays.append((closes[0] - t_close) * 1000)
        else:
            missing += 1
        await asyncio.sleep(0.02)
    return ProbeResult(delays, missing)


async def get_json(host: str, port: int, path: str) -> dict[str, Any]:
    """A one-shot ``GET`` answered with a JSON body (the fake upstream's control endpoints)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        doc: dict[str, Any] = json.loads(await reader.readexactly(length))
        return doc
    finally:
        writer.close()


def post(path: str, host: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A keep-alive ``POST`` request's bytes."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
