"""The Redis resume store: any replica pointed at one Redis can serve any stream's resume.

This module holds the keys, the owner's side (:class:`RedisRecorder`: appends and ``finish``;
leases, TTL refreshes, stops) and :class:`RedisStore`. The followers' side (their slots, their
connection pool, reading a replay's frames, gap checks) is ``gateway.resume.redis_followers``.

Keys (``<k>`` = ``gateway:resume:<stream id>``; the id is checked against ``STREAM_ID`` first):

* ``<k>``: a Redis Stream, one entry per frame ``{i: <event id>, f: <frame>}``, appended with
  ``XADD <k> MAXLEN ~ <max_events + 1>`` (approximate trimming: Redis drops whole nodes, so a
  stream keeps at least ``max_events`` events and sometimes a few more). The terminal marker
  is one more entry ``{e: 1}`` written by ``finish``: followers see it in the same ``XREAD``.
* ``<k>:meta``: a hash ``owner, headers (JSON), state (live|done), last (id, once done)``.

Both keys expire: ``LIVE_TTL`` while live (the owner refreshes it every ``LIVE_TTL / 3``, so a
crashed owner's stream goes away by itself), then ``window`` from ``finish``. Followers read
with ``XRANGE`` then ``XREAD BLOCK``. The owner also holds a short lease per live stream
(``gateway.resume.lease``): when it lapses (the owner crashed), a follower writes the terminal
``error{code: shutdown}`` frame, so followers of a crashed replica end within about 4 s.

Two connection pools: the owner's (appends, ``finish``, lease and TTL refreshes, stops) and the
followers' (every read of a replay, bounded by follower slots: see
``gateway.resume.redis_followers``), so the owner's writes and its lease never wait for a
follower's connection. A follower gets each event after its ``Last-Event-ID`` exactly once and
in order, or 410 (the same module).

Appends are buffered in the recorder and written by one flush task per recorder, one
:data:`APPEND` script call per flush (it runs the ``XADD`` of each frame inside Redis): the hot
path never waits for Redis. Bytes waiting to be flushed count against the
process :class:`~gateway.resume.base.Budget`; if Redis fails, or falls so far behind that the
process cap is exceeded, the recorder stops recording
(resumes of that stream then end where the record ends, and expire with it).

Stop: ``stop`` on the owner's replica calls ``on_stop`` directly; elsewhere it publishes the
id on ``gateway:resume:stop``, which every store with live recorders subscribes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from gateway import redis_client
from gateway.errors import NotFound
from gateway.jsonutil import dumps, loads
from gateway.resume import lease
from gateway.resume.base import (
    Budget,
    Recorder,
    Replay,
    ResumeStore,
    StopCallback,
    check_owner,
    check_range,
    check_stream_id,
)
from gateway.resume.redis_followers import RedisFollowers

log = logging.getLogger("gateway.resume")

PREFIX = "gateway:resume:"
STOP_CHANNEL = "gateway:resume:stop"
LIVE_TTL = 30.0

OWNER_CONNECTIONS = 100
"""The owner's pool: one append in flight per recorder, ``finish``, the keep-alive, the stop
listener (one, held) and stop lookups. A command waits up to ``OWNER_WAIT`` for a connection
(redis-py's default pool of 100 fails at once instead)."""

OWNER_WAIT = 1.0
"""Under the lease's margin (``LEASE_TTL - LEASE_REFRESH``): a refresh that waits this long still
keeps the lease."""


APPEND = """
local id = tonumber(ARGV[3])
for i = 4, #ARGV do
  local event_id = string.format('%d', id)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'i', event_id, 'f', ARGV[i])
  id = id + 1
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 0
"""
"""One flush of a recorder: ``XADD`` each frame (``ARGV[4..]``, ids from ``ARGV[3]`` on) with
``MAXLEN ~ ARGV[1]``, then ``EXPIRE`` the key ``ARGV[2]`` seconds. One command from the gateway
per flush: redis-py spends about 30 µs of the gateway's CPU on each command of a pipeline, the
server about one on each ``XADD`` of the script."""


def _key(stream_id: str) -> str:
    return PREFIX + stream_id


class RedisRecorder(Recorder):
    def __init__(
        self,
        store: RedisStore,
        stream_id: str,
        window: float,
        max_events: int,
        on_stop: StopCallback | None,
    ) -> None:
        self.stream_id = stream_id
        self.on_stop = on_stop
        self._store = store
        self._key = _key(stream_id)
        self._window = window
        self._maxlen = max_events + 1
        self._pending: list[bytes] = []
        self._pending_first = 1
        """The id of ``_pending[0]`` (ids run on without a gap)."""
        self._pending_bytes = 0
        self._last = 0
        self._flusher: asyncio.Task[None] | None = None
        self._done = False
        self._failed = False
        self._detached = False

    def extend(self, first_id: int, frames: Sequence[bytes]) -> None:
        if self._done or self._failed or not frames:
            return
        if first_id != self._last + 1:
            raise ValueError(f"event id {first_id} after {self._last}")
        self._last += len(frames)
        if self._store.budget.over:  # Redis is too slow or down: stop recording, never OOM
            self._fail()
            return
        if not self._pending:
            self._pending_first = first_id
        self._pending.extend(frames)
        size = sum(map(len, frames))
        self._pending_bytes += size
        self._store.budget.add(size)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending and not self._failed:
                batch, first, size = self._pending, self._pending_first, self._pending_bytes
                self._pending, self._pending_bytes = [], 0
                try:
                    args = (self._maxlen, round(LIVE_TTL), first, *batch)
                    await self._store.append_script(keys=[self._key], args=args)
                except Exception as exc:  # a store failure must not end the stream
                    log.warning("resume store write failed: %s", type(exc).__name__)
                    self._fail()
                finally:
                    self._store.budget.add(-size)
        finally:
            self._flusher = None

    def _fail(self) -> None:
        self._failed = True
        self._store.budget.add(-self._pending_bytes)
        self._pending, self._pending_bytes = [], 0

    def detach(self) -> bool:
        if self._done:
            return False
        if self._detached:
            return True
        if not self._store.budget.detach():
            return False
        self._detached = True
        return True

    async def finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._store.forget(self)
        if self._detached:
            self._detached = False
            self._store.budget.undetach()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._failed:
            return
        meta = self._key + ":meta"
        try:
            pipe = self._store.client.pipeline(transaction=False)
            pipe.xadd(self._key, {"e": 1})
            pipe.hset(meta, mapping={"state": "done", "last": self._last})
            window_ms = max(1, int(self._window * 1000))
            pipe.pexpire(self._key, window_ms)
            pipe.pexpire(meta, window_ms)
            await pipe.execute()
        except Exception as exc:
            log.warning("resume store finish failed: %s", type(exc).__name__)


class RedisStore(ResumeStore):
    """Resumable streams in Redis at ``url`` (shared by replicas). See the module docstring."""

    def __init__(self, budget: Budget, url: str, client: Any = None) -> None:
        super().__init__(budget)
        self.url = url
        self._client = client
        self._followers = RedisFollowers(url)
        self._append: Any = None
        self._live: dict[str, RedisRecorder] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()

    @property
    def client(self) -> Any:
        """The owner's client: appends, ``finish``, leases, stops (never a follower's read)."""
        if self._client is None:
            self._client = redis_client.pooled(self.url, OWNER_CONNECTIONS, OWNER_WAIT)
        return self._client

    @property
    def readers(self) -> Any:
        """The followers' client: one connection per follower slot, so an admitted follower
        never waits for one (:attr:`RedisFollowers.client`)."""
        return self._followers.client

    @property
    def append_script(self) -> Any:
        """:data:`APPEND`, registered with the client (``EVALSHA``, loaded again on NOSCRIPT)."""
        if self._append is None:
            self._append = self.client.register_script(APPEND)
        return self._append

    async def warm(self) -> None:
        """Connect now (app start-up), so the first ``GET``/``DELETE`` of this replica does not
        pay for importing the client and the connection (a ``DELETE`` must act within 100 ms).
        Redis being down is not an error here: requests retry the connection and say 503."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.client.ping()

    async def open(
        self,
        stream_id: str,
        owner_app: str | None,
        headers: Mapping[str, str],
        window: float,
        max_events: int,
        on_stop: StopCallback | None = None,
    ) -> tuple[Recorder | None, str | None]:
        check_stream_id(stream_id)
        reason = self.budget.refusal()
        if reason is not None:
            return None, reason
        await self._start_background()
        meta = _key(stream_id) + ":meta"
        fields = {
            "owner": owner_app or "",
            "headers": dumps(dict(headers)),
            "state": "live",
            "window": repr(window),
        }
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(meta, mapping=fields)
            pipe.expire(meta, round(LIVE_TTL))
            lease.take(pipe, _key(stream_id))
            await pipe.execute()
        except Exception as exc:
            log.warning("resume store open failed: %s", type(exc).__name__)
            return None, "store_error"
        recorder = RedisRecorder(self, stream_id, window, max_events, on_stop)
        self._live[stream_id] = recorder
        return recorder, None

    def forget(self, recorder: RedisRecorder) -> None:
        self._live.pop(recorder.stream_id, None)

    async def _meta(self, stream_id: str, app: str | None, client: Any) -> dict[str, str]:
        check_stream_id(stream_id)
        raw = await client.hgetall(_key(stream_id) + ":meta")
        if not raw:
            raise NotFound("no such stream (unknown or expired)")
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        check_owner(meta.get("owner") or None, app)
        return meta

    async def replay(
        self, stream_id: str, app: str | None, last_event_id: int | None, idle: float = 15.0
    ) -> Replay:
        """See :meth:`ResumeStore.replay`; also raises :class:`~gateway.errors.Unavailable`
        (503) when no follower slot frees within ``redis_followers.FOLLOWER_WAIT``. The slot is
        held until the returned frames are closed or end."""
        await self._followers.admit()
        try:
            meta = await self._meta(stream_id, app, self.readers)
            pos = last_event_id or 0
            done = meta.get("state") == "done"
            last = int(meta.get("last", "0"))
            check_range(pos, None, last, finished=done)
            headers = loads(meta.get("headers", "{}"))
            key = _key(stream_id)
            cursor, page = await self._followers.seek(key, pos)
        except BaseException:
            self._followers.release()
            raise
        frames = self._followers.follow(key, pos, cursor, page, idle, LIVE_TTL)
        await anext(frames)  # started: from now on, closing it gives the slot back
        return Replay(headers, frames, done and pos >= last)

    async def stop(self, stream_id: str, app: str | None) -> None:
        meta = await self._meta(stream_id, app, self.client)
        if meta.get("state") == "done":
            return
        if not self._deliver_stop(stream_id):
            await self.client.publish(STOP_CHANNEL, stream_id)

    def _deliver_stop(self, stream_id: str) -> bool:
        recorder = self._live.get(stream_id)
        if recorder is None:
            return False
        callback, recorder.on_stop = recorder.on_stop, None
        if callback is not None:
            callback()
        return True

    async def _start_background(self) -> None:
        """Start the stop listener and the TTL refresher; the first call waits (up to a
        second) until the listener is subscribed, so no stop is missed."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._listen()), loop.create_task(self._keep_alive())]
        if not self._subscribed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._subscribed.wait()

    async def _listen(self) -> None:
        """Stop requests published by other replicas, for the recorders this process owns."""
        while True:
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(STOP_CHANNEL)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver_stop(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retry: stops must keep arriving
                log.warning("resume stop listener failed: %s", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _keep_alive(self) -> None:
        """Refresh the leases of live streams every ``LEASE_REFRESH``, and their keys' TTL
        every ``LIVE_TTL / 3``, so only a crashed owner's streams end early."""
        every = max(1, round(LIVE_TTL / 3 / lease.LEASE_REFRESH))
        tick = 0
        while True:
            await asyncio.sleep(lease.LEASE_REFRESH)
            tick += 1
            if not self._live:
                continue
            try:
                pipe = self.client.pipeline(transaction=False)
                keys = [_key(stream_id) for stream_id in list(self._live)]
                lease.refresh(pipe, keys)
                if tick % every == 0:
                    for key in keys:
                        pipe.expire(key, round(LIVE_TTL))
                        pipe.expire(key + ":meta", round(LIVE_TTL))
                await pipe.execute()
            except Exception as exc:  # the next tick tries again; the lease outlives two misses
                log.warning("resume lease refresh failed: %s", type(exc).__name__)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
        await self._followers.close()
        self._client = self._append = None
