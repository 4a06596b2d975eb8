"""Owner leases (gateway.resume.lease) on a real redis-server: a crashed owner's followers end
with one terminal ``error{code: shutdown}``; a live owner's followers do not."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway import events as ev
from gateway.encoders.tokens import TokensEncoder
from gateway.errors import Unavailable
from gateway.events import Event
from gateway.resume import Budget, RedisStore, Replay, lease, redis_followers, redis_store
from tests.resume.conftest import StoreFactory
from tests.resume.test_store import drain, frame, opened
from tests.support.gateway import config_from

REDIS = pytest.mark.parametrize("make_store", ["redis"], indirect=True)


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.5 s lease refreshed every 0.1 s, and 0.2 s XREAD blocks: the same logic, faster."""
    monkeypatch.setattr(lease, "LEASE_TTL", 0.5)
    monkeypatch.setattr(lease, "LEASE_REFRESH", 0.1)
    monkeypatch.setattr(redis_followers, "BLOCK_MS", 200)


async def crash(store: RedisStore) -> None:
    """Stop ``store`` as a SIGKILL would: no finish, no abandon, no more refreshes."""
    await store.close()


@REDIS
async def test_followers_of_a_crashed_owner_end_with_one_shutdown_error(
    make_store: StoreFactory, budget: Budget
) -> None:
    owner, a, b = (make_store(Budget(1 << 20, 10)) for _ in range(3))
    assert isinstance(owner, RedisStore)
    rec = await opened(owner)
    rec.extend(1, [frame(i) for i in (1, 2, 3)])
    await asyncio.sleep(0.05)  # flushed
    replays = [await s.replay(rec.stream_id, "app", 1) for s in (a, b)]
    followers = [asyncio.create_task(drain(r.frames)) for r in replays]
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    await crash(owner)
    got = await asyncio.gather(*followers)
    elapsed = time.monotonic() - t0
    assert elapsed < lease.LEASE_TTL + redis_followers.BLOCK_MS / 1000 + 0.3
    assert got[0] == got[1]
    assert got[0][:2] == [frame(2), frame(3)] and len(got[0]) == 3
    tail = got[0][2]
    assert tail.startswith(b"id: 4\nevent: error\n")
    data = json.loads(tail.split(b"data: ", 1)[1])
    assert data["code"] == "shutdown" and data["retryable"] is True
    # a later resume replays the same terminal and ends; from it on, the stream is over
    later = await a.replay(rec.stream_id, "app", 0)
    assert await drain(later.frames) == [frame(1), frame(2), frame(3), tail]
    assert (await a.replay(rec.stream_id, "app", 4)).ended


@REDIS
async def test_a_live_owner_keeps_its_followers_waiting(
    make_store: StoreFactory, budget: Budget
) -> None:
    owner, other = make_store(budget), make_store(Budget(1 << 20, 10))
    rec = await opened(owner)
    rec.append(1, frame(1))
    replay = await other.replay(rec.stream_id, "app", 0)
    follower = asyncio.create_task(drain(replay.frames))
    await asyncio.sleep(lease.LEASE_TTL * 4)  # silent, but the lease is refreshed
    assert not follower.done()
    rec.append(2, frame(2, "end"))
    await rec.finish()
    assert await follower == [frame(1), frame(2, "end")]


@REDIS
async def test_many_followers_on_the_owners_replica_leave_the_record_whole(
    make_store: StoreFactory, budget: Budget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More followers than the owner's pool has connections, on the owner's own store: the
    owner's appends and lease refreshes still go through (a pool of their own), followers past
    ``FOLLOWERS`` get 503, and the others follow the stream to its real end (no false
    ``shutdown``, no cut record)."""
    monkeypatch.setattr(redis_store, "OWNER_CONNECTIONS", 3)  # the stop listener holds one
    monkeypatch.setattr(redis_followers, "FOLLOWERS", 4)
    monkeypatch.setattr(redis_followers, "FOLLOWER_WAIT", 0.1)
    store = make_store(budget)
    rec = await opened(store)
    rec.extend(1, [frame(1), frame(2), frame(3)])
    await asyncio.sleep(0.05)  # flushed
    tries = await asyncio.gather(
        *(store.replay(rec.stream_id, "app", 1) for _ in range(110)), return_exceptions=True
    )
    admitted = [r for r in tries if isinstance(r, Replay)]
    assert len(admitted) == 4
    assert all(isinstance(r, Unavailable) for r in tries if not isinstance(r, Replay))
    followers = [asyncio.create_task(drain(r.frames)) for r in admitted]
    for i in range(4, 9):  # 1.25 s: a lease that is not refreshed would lapse
        await asyncio.sleep(lease.LEASE_TTL / 2)
        rec.append(i, frame(i))
    rec.append(9, frame(9, "end"))
    await rec.finish()
    whole = [frame(i) for i in range(1, 9)] + [frame(9, "end")]
    assert await asyncio.gather(*followers) == [whole[1:]] * 4
    assert await drain((await store.replay(rec.stream_id, "app", None)).frames) == whole


def test_abandon_frame_is_what_the_tokens_encoder_writes() -> None:
    encoder = TokensEncoder(
        config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0], "rid"
    )
    for _ in range(6):
        encoder.encode(Event(ev.DELTA, {"text": "x"}))
    frame7 = lease.abandon_frame(7)
    data = json.loads(frame7.split(b"data: ", 1)[1])
    assert encoder.encode(Event(ev.ERROR, data)) == frame7


@REDIS
async def test_an_owner_that_crashed_after_its_terminal_frame_gets_no_second_terminal(
    make_store: StoreFactory, budget: Budget
) -> None:
    """The terminal frame was flushed, then the owner died before ``finish`` wrote the end
    marker: a follower ends the record with the marker only (exactly one terminal event)."""
    owner, other = make_store(budget), make_store(Budget(1 << 20, 10))
    assert isinstance(owner, RedisStore)
    rec = await opened(owner)
    rec.extend(1, [frame(1), frame(2), frame(3, "end")])
    await asyncio.sleep(0.05)  # flushed
    replay = await other.replay(rec.stream_id, "app", 1)
    follower = asyncio.create_task(drain(replay.frames))
    await crash(owner)
    assert await follower == [frame(2), frame(3, "end")]
    later = await other.replay(rec.stream_id, "app", 0)
    assert await drain(later.frames) == [frame(1), frame(2), frame(3, "end")]
    assert (await other.replay(rec.stream_id, "app", 3)).ended
