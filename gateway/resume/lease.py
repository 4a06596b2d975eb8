"""Owner leases in the Redis store: a crashed replica's live streams end with a terminal event.

A replica that records live streams holds a lease per stream, ``<k>:lease``, set with a
``LEASE_TTL`` expiry when the stream opens and refreshed every ``LEASE_REFRESH`` by the store's
keep-alive loop (:func:`refresh`, one pipeline for all of the process's live streams), on the
owner's connection pool: followers read on a pool of their own, so however many there are,
they cannot delay a refresh. A process that stops without ending its streams (SIGKILL, a lost
host, a partition longer than the lease) stops refreshing, and its leases expire.

A follower whose ``XREAD BLOCK`` comes back empty calls :func:`check`: when the stream is still
``live`` but its lease is gone, the first follower to ``SET <k>:abandon NX`` writes the terminal
frame, ``error{code: shutdown, retryable: true}`` with the next id, then the terminal marker,
``state done`` and the window expiry, exactly as the owner's ``finish`` would (when the owner
died after its own terminal frame, before ``finish``, only the marker is added). Every follower
(and every later resume) reads that terminal like any other: exactly one terminal event.

Bound: a follower of a crashed owner gets its terminal event at most
``LEASE_TTL + BLOCK_MS`` after the owner's last refresh, so within ``LEASE_TTL + 1 s`` = 4 s of
the crash. An owner whose event loop stalls longer than ``LEASE_TTL - LEASE_REFRESH`` (2 s) can
be taken for dead: its followers then end with that ``shutdown`` error (retryable) while its own
client still gets the whole stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from gateway import events as ev
from gateway.encoders.tokens import tokens_frame
from gateway.errors import ShutdownError
from gateway.events import Event

LEASE_TTL = 3.0
"""Seconds a lease lasts without a refresh."""

LEASE_REFRESH = 1.0
"""Seconds between two refreshes of every live stream's lease (the keep-alive loop's tick)."""

CLAIM_MS = 10_000
"""How long the ``abandon`` claim is held (one follower writes the terminal)."""


def lease_key(key: str) -> str:
    return key + ":lease"


def take(pipe: Any, key: str) -> None:
    """Queue the lease of stream ``key`` on ``pipe`` (open, and each refresh)."""
    pipe.set(lease_key(key), 1, px=int(LEASE_TTL * 1000))


def refresh(pipe: Any, keys: Iterable[str]) -> None:
    """Queue a refresh of the leases of ``keys`` (the process's live streams)."""
    for key in keys:
        take(pipe, key)


def abandon_message() -> str:
    return "the gateway replica running this stream stopped; retry the request"


def abandon_frame(event_id: int) -> bytes:
    """The terminal frame a follower writes for a crashed owner's stream (``tokens`` format,
    the one resumable format)."""
    exc = ShutdownError(abandon_message())
    return tokens_frame(event_id, Event(ev.ERROR, exc.to_event_data()))


def is_terminal(frame: bytes) -> bool:
    """Whether a recorded ``tokens`` frame (``id: N\\nevent: <type>\\n...``) is a terminal
    event."""
    return frame.split(b"\n", 2)[1:2] in ([b"event: end"], [b"event: error"])


async def check(client: Any, key: str, default_window: float) -> Literal["live", "gone", "ended"]:
    """After an empty ``XREAD``: ``live`` (the owner holds its lease, or the stream is done and
    its terminal is on its way), ``gone`` (expired: stop following) or ``ended`` (the lease was
    gone and this follower wrote the terminal frame: read on to get it)."""
    meta = key + ":meta"
    pipe = client.pipeline(transaction=False)
    pipe.hmget(meta, ["state", "window"])
    pipe.exists(lease_key(key))
    (state, window), leased = await pipe.execute()
    if state is None:
        return "gone"
    if state != b"live" or leased:
        return "live"
    if not await client.set(key + ":abandon", 1, nx=True, px=CLAIM_MS):
        return "live"  # another follower is writing it
    tail = await client.xrevrange(key, "+", "-", count=1)
    if tail and b"e" in tail[0][1]:
        return "live"  # the owner's own terminal made it after all
    last = int(tail[0][1][b"i"]) if tail else 0
    window_ms = max(1, int(float(window or default_window) * 1000))
    pipe = client.pipeline(transaction=False)
    if not tail or not is_terminal(tail[0][1][b"f"]):
        last += 1
        pipe.xadd(key, {"i": last, "f": abandon_frame(last)})
    # else: the owner died between its terminal frame and ``finish``: only the marker is missing
    pipe.xadd(key, {"e": 1})
    pipe.hset(meta, mapping={"state": "done", "last": last})
    pipe.pexpire(key, window_ms)
    pipe.pexpire(meta, window_ms)
    await pipe.execute()
    return "ended"
