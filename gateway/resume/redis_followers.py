"""The followers' side of the Redis resume store: the follower slots, the followers' connection
pool, and reading a replay's frames. :class:`~gateway.resume.redis_store.RedisStore` (the keys,
the owner's side, ``replay`` itself) holds one :class:`RedisFollowers`.

A follower reads the stream ``<k>`` (keys: see ``gateway.resume.redis_store``) with ``XRANGE``,
page by page, then live with ``XREAD BLOCK`` up to the terminal marker. After each empty
``XREAD`` it checks the owner's lease (:func:`gateway.resume.lease.check`): when a crashed
owner's lease has lapsed, a follower writes the terminal frame and every follower reads it.

A follower holds a connection for each ``XREAD BLOCK``, so followers get a pool of their own,
bounded by :data:`FOLLOWERS` slots: however many clients resume, the owner's writes and its
lease (on the store's other pool) never wait for a follower's connection (when they did, the
owner's append failed, its lease lapsed, and its followers wrote a false ``shutdown`` into a
stream that was still running). A replay past the bound waits :data:`FOLLOWER_WAIT` for a slot,
then gets 503 before its response starts.

A follower gets each event after its ``Last-Event-ID`` exactly once and in order: when the next
entry it reads is not the next id (``MAXLEN`` trimmed events it had not read yet), the replay is
410 if nothing was sent yet, otherwise the follower ends early and its next resume gets 410, as
in the memory store; never a silent gap in its ids.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from gateway import redis_client
from gateway.errors import Gone, Unavailable
from gateway.resume import lease

BLOCK_MS = 1000
PAGE = 500

FOLLOWERS = 128
"""Replays one store (one process) serves at once. Each holds two sockets for its whole life, its
client's and a Redis connection (blocked in ``XREAD``, so not shared): 128 keeps that to 256
file descriptors, a quarter of the common 1024 default, and leaves Redis' ``maxclients``
(10,000) room for dozens of replicas. More followers of one popular stream are refused (503),
never allowed to starve the owner's connections."""

FOLLOWER_WAIT = 1.0
"""Seconds a replay waits for a follower slot (about one ``XREAD`` block, in which followers that
end give theirs back), then 503."""


Entry = tuple[bytes, dict[bytes, bytes]]
"""A Redis Stream entry as redis-py returns it: ``(entry id, fields)``."""


def _after(page: Sequence[Entry], pos: int) -> tuple[list[bytes], int, bool]:
    """The frames of ``page`` that run on from event ``pos``, the id of the last of them, and
    whether the follower ends here: at the terminal marker, or at a gap (events trimmed before
    it read them: ending lets its next resume get 410). Ids up to ``pos`` are skipped (a
    ``Last-Event-ID`` may be ahead of what is flushed)."""
    frames: list[bytes] = []
    for _, fields in page:
        if b"e" in fields:
            return frames, pos, True
        event_id = int(fields[b"i"])
        if event_id > pos + 1:
            return frames, pos, True
        if event_id == pos + 1:
            frames.append(fields[b"f"])
            pos = event_id
    return frames, pos, False


class RedisFollowers:
    """The followers of one store: :data:`FOLLOWERS` slots (read when it is made) and the client
    at ``url`` they read on. A replay takes a slot (:meth:`admit`), finds where it starts
    (:meth:`seek`), then reads (:meth:`follow`), which gives the slot back when it ends; a replay
    that fails before :meth:`follow` gives it back with :meth:`release`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._max = FOLLOWERS
        self._slots = asyncio.Semaphore(FOLLOWERS)

    @property
    def client(self) -> Any:
        """The followers' client: one connection per follower slot, so an admitted follower
        never waits for one."""
        if self._client is None:
            self._client = redis_client.pooled(self.url, self._max, FOLLOWER_WAIT)
        return self._client

    async def admit(self) -> None:
        """Take a follower slot, waiting up to :data:`FOLLOWER_WAIT` for one; raises
        :class:`Unavailable` (503) when none frees. Cancelled while waiting: no slot is held."""
        try:
            async with asyncio.timeout(FOLLOWER_WAIT):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable(
                f"this replica serves {self._max} resumes already; try again"
            ) from None

    def release(self) -> None:
        """Give back a slot taken by :meth:`admit` (only for a replay that does not follow)."""
        self._slots.release()

    async def seek(self, key: str, pos: int) -> tuple[str, list[Entry]]:
        """Where a follower after event ``pos`` starts: the entry id before the first entry
        after ``pos`` (its cursor) and the rest of the page from that entry on (empty: none is
        stored yet). Raises :class:`Gone` when that entry is not event ``pos + 1``: the range
        check and the first frames come from the same read, so trimming cannot slip between."""
        cursor = "0-0"
        while True:
            page = await self.client.xrange(key, f"({cursor}", "+", count=PAGE)
            for n, (entry_id, fields) in enumerate(page):
                if b"e" in fields or int(fields[b"i"]) > pos:
                    if b"i" in fields and int(fields[b"i"]) != pos + 1:
                        next_id = int(fields[b"i"])
                        raise Gone(f"events after {pos} were dropped (the next held is {next_id})")
                    return cursor, page[n:]
                cursor = entry_id.decode()
            if len(page) < PAGE:
                return cursor, []

    async def follow(
        self, key: str, pos: int, cursor: str, page: list[Entry], idle: float, live_ttl: float
    ) -> AsyncGenerator[bytes, None]:
        """The frames after event ``pos``: ``page`` and the stored pages after it, then the live
        ones (``XREAD BLOCK`` from ``cursor``) up to the terminal marker, ``b""`` after ``idle``
        seconds without one. Ends early at a gap (see :func:`_after`) and when the stream expired;
        ``live_ttl`` is the window :func:`gateway.resume.lease.check` falls back on when the
        stream's meta has none. The first item is a ``b""`` for the caller to take, so the
        follower slot is given back however the generator ends, even when it is closed before
        its first frame."""
        try:
            yield b""
            while page:  # what is stored already, page by page
                frames, pos, end = _after(page, pos)
                for frame in frames:
                    yield frame
                if end:
                    return
                cursor = page[-1][0].decode()
                page = await self.client.xrange(key, f"({cursor}", "+", count=PAGE)
            quiet = time.monotonic()
            while True:  # then live
                # Block no longer than the next heartbeat is due (``idle`` may be under a
                # second: ``server.heartbeat_interval``), and at most BLOCK_MS (the lease check).
                due = quiet + idle - time.monotonic()
                block = min(BLOCK_MS, max(1, math.ceil(due * 1000)))
                answer = await self.client.xread({key: cursor}, count=PAGE, block=block)
                if not answer:
                    if await lease.check(self.client, key, live_ttl) == "gone":
                        return  # expired
                    if time.monotonic() - quiet >= idle:
                        quiet = time.monotonic()
                        yield b""
                    continue
                page = answer[0][1]
                frames, pos, end = _after(page, pos)
                for frame in frames:
                    yield frame
                if end:
                    return
                cursor = page[-1][0].decode()
                quiet = time.monotonic()
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Close the followers' client (made again on the next read)."""
        if self._client is not None:
            await self._client.aclose()
        self._client = None
