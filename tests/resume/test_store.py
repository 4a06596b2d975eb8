"""One behavioural suite for every resume store (memory, and Redis on a real redis-server)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from gateway.errors import Forbidden, Gone, InvalidRequest, NotFound, Unavailable
from gateway.ids import new_request_id
from gateway.resume import Budget, MemoryStore, Recorder, ResumeStore, redis_followers
from tests.resume.conftest import StoreFactory

HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "X-Request-Id": "abc"}


def frame(i: int, kind: str = "delta") -> bytes:
    return b'id: %d\nevent: %s\ndata: {"text":"t%d"}\n\n' % (i, kind.encode(), i)


def shutdown_frame(i: int) -> bytes:
    return b'id: %d\nevent: error\ndata: {"code":"shutdown"}\n\n' % i


async def opened(store: ResumeStore, stream_id: str | None = None, **kw: object) -> Recorder:
    args: dict[str, object] = {"owner_app": "app", "window": 60.0, "max_events": 1000}
    args.update(kw)
    rec, reason = await store.open(stream_id or new_request_id(), headers=HEADERS, **args)  # type: ignore[arg-type]
    assert rec is not None, reason
    return rec


async def recorded(store: ResumeStore, n: int, **kw: object) -> Recorder:
    """A finished stream: events 1..n-1 then the terminal event n."""
    rec = await opened(store, **kw)
    rec.extend(1, [frame(i) for i in range(1, n)])
    rec.append(n, frame(n, "end"))
    await rec.finish()
    return rec


async def drain(frames: AsyncIterator[bytes], timeout: float = 5.0) -> list[bytes]:
    out: list[bytes] = []
    async with asyncio.timeout(timeout):
        async for f in frames:
            if f:
                out.append(f)
    return out


def test_stream_ids_are_128_bit_hex() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize("last", [None, 0, 1, 2, 3, 4, 5, 6])
async def test_replay_from_every_last_id(store: ResumeStore, last: int | None) -> None:
    rec = await recorded(store, 6)
    replay = await store.replay(rec.stream_id, "app", last)
    expected = [frame(i) for i in range(1, 6)] + [frame(6, "end")]
    assert await drain(replay.frames) == expected[(last or 0) :]
    assert replay.ended == (last == 6)
    assert dict(replay.headers) == HEADERS


async def test_follow_live_then_terminal_exactly_once(store: ResumeStore) -> None:
    rec = await opened(store)
    rec.extend(1, [frame(1), frame(2)])
    replay = await store.replay(rec.stream_id, "app", 1)
    follower = asyncio.create_task(drain(replay.frames))
    await asyncio.sleep(0.05)
    rec.append(3, frame(3))
    await asyncio.sleep(0.05)
    rec.append(4, frame(4, "end"))
    await rec.finish()
    rec.append(5, frame(5))  # after finish: ignored
    got = await follower
    assert got == [frame(2), frame(3), frame(4, "end")]
    again = await store.replay(rec.stream_id, "app", None)
    assert [f for f in await drain(again.frames) if b"event: end" in f] == [frame(4, "end")]


async def test_events_that_come_while_a_follower_writes_reach_it_at_once(
    store: ResumeStore,
) -> None:
    """The rest of the stream, and its end, come while the follower is between two frames (its
    client's write): it gets them without waiting for the next heartbeat tick."""
    rec = await opened(store)
    rec.extend(1, [frame(1), frame(2)])
    await asyncio.sleep(0.05)  # flushed (Redis)
    replay = await store.replay(rec.stream_id, "app", 0, idle=30.0)
    assert await anext(replay.frames) == frame(1)  # suspended between two frames
    rec.extend(3, [frame(3)])
    rec.append(4, frame(4, "end"))
    await rec.finish()
    assert await drain(replay.frames, timeout=3.0) == [frame(2), frame(3), frame(4, "end")]


async def test_idle_follower_gets_ticks(store: ResumeStore) -> None:
    rec = await opened(store)
    replay = await store.replay(rec.stream_id, "app", None, idle=0.05)
    async with asyncio.timeout(3):
        assert await anext(replay.frames) == b""
    rec.append(1, frame(1, "end"))
    await rec.finish()
    assert await drain(replay.frames) == [frame(1, "end")]


async def test_max_events_drops_oldest_and_410(store: ResumeStore) -> None:
    rec = await recorded(store, 300, max_events=5)
    with pytest.raises(Gone):
        await store.replay(rec.stream_id, "app", 0)
    with pytest.raises(Gone):
        await store.replay(rec.stream_id, "app", None)
    replay = await store.replay(rec.stream_id, "app", 295)
    got = await drain(replay.frames)
    assert got == [frame(i) for i in range(296, 300)] + [frame(300, "end")]


async def test_byte_cap_refuses_new_streams(make_store: StoreFactory) -> None:
    budget = Budget(10_000, 100)
    store = make_store(budget)
    rec = await opened(store)
    rec.extend(1, [b"x" * 100] * 100)  # no await: nothing flushed yet
    refused, reason = await store.open(new_request_id(), "app", HEADERS, 60.0, 1000)
    assert refused is None
    assert reason == "buffer_full"
    assert budget.bytes <= budget.max_bytes


async def test_detached_cap(make_store: StoreFactory) -> None:
    budget = Budget(10_000_000, 1)
    store = make_store(budget)
    a, b = await opened(store), await opened(store)
    assert a.detach() is True
    assert a.detach() is True  # idempotent
    assert b.detach() is False
    assert budget.detached == 1
    refused, reason = await store.open(new_request_id(), "app", HEADERS, 60.0, 1000)
    assert (refused, reason) == (None, "too_many_detached")
    a.append(1, frame(1, "end"))
    await a.finish()
    assert budget.detached == 0
    assert await opened(store) is not None


async def test_expiry_after_window(store: ResumeStore) -> None:
    rec = await recorded(store, 2, window=0.3)
    await drain((await store.replay(rec.stream_id, "app", None)).frames)
    await asyncio.sleep(0.6)
    with pytest.raises(NotFound):
        await store.replay(rec.stream_id, "app", None)


async def test_live_stream_does_not_expire_by_window(store: ResumeStore) -> None:
    rec = await opened(store, window=0.2)
    rec.append(1, frame(1))
    await asyncio.sleep(0.4)
    replay = await store.replay(rec.stream_id, "app", None)
    assert await anext(replay.frames) == frame(1)
    await replay.frames.aclose()


async def test_another_app_gets_403(store: ResumeStore) -> None:
    rec = await recorded(store, 2)
    for app in ("other", None):
        with pytest.raises(Forbidden):
            await store.replay(rec.stream_id, app, None)
        with pytest.raises(Forbidden):
            await store.stop(rec.stream_id, app)
    anonymous = await recorded(store, 2, owner_app=None)
    with pytest.raises(Forbidden):
        await store.replay(anonymous.stream_id, "app", None)
    assert len(await drain((await store.replay(anonymous.stream_id, None, None)).frames)) == 2


@pytest.mark.parametrize("bad", ["0" * 32, "short", "../../etc", "a" * 65, "é" * 32, ""])
async def test_unknown_or_malformed_id_is_404(store: ResumeStore, bad: str) -> None:
    with pytest.raises(NotFound):
        await store.replay(bad, "app", None)
    with pytest.raises(NotFound):
        await store.stop(bad, "app")


async def test_last_id_beyond_finished_stream_is_400(store: ResumeStore) -> None:
    rec = await recorded(store, 3)
    with pytest.raises(InvalidRequest):
        await store.replay(rec.stream_id, "app", 4)


async def test_ids_run_on_without_a_gap(store: ResumeStore) -> None:
    rec = await opened(store)
    with pytest.raises(ValueError):
        rec.append(2, frame(2))  # the first id is 1
    rec.extend(1, [frame(1), frame(2)])
    for wrong in (2, 4):  # a repeat, a gap
        with pytest.raises(ValueError):
            rec.append(wrong, frame(wrong))
    rec.extend(3, [])  # an empty batch records nothing
    rec.append(3, frame(3, "end"))
    await rec.finish()
    replay = await store.replay(rec.stream_id, "app", 1)
    assert await drain(replay.frames) == [frame(2), frame(3, "end")]


async def test_a_batch_after_trimming_keeps_ids(store: ResumeStore) -> None:
    rec = await opened(store, max_events=5)
    rec.extend(1, [frame(i) for i in range(1, 301)])  # one batch far over max_events
    rec.extend(301, [frame(301), frame(302, "end")])
    await rec.finish()
    replay = await store.replay(rec.stream_id, "app", 300)
    assert await drain(replay.frames) == [frame(301), frame(302, "end")]
    with pytest.raises(Gone):
        await store.replay(rec.stream_id, "app", 1)


async def test_a_slow_follower_ends_early_instead_of_skipping_events(store: ResumeStore) -> None:
    """A follower that falls more than ``max_events`` behind ends (its next resume gets 410):
    never a silent gap in its ids (contract 12; section 5 rules 2 and 3)."""
    rec = await opened(store, max_events=5)
    rec.extend(1, [frame(1), frame(2), frame(3)])
    await asyncio.sleep(0.05)  # flushed (Redis)
    replay = await store.replay(rec.stream_id, "app", 0)
    got = [await anext(replay.frames) for _ in range(3)]
    waiting = asyncio.create_task(drain(replay.frames))
    await asyncio.sleep(0.05)  # the follower waits for more
    rec.extend(4, [frame(i) for i in range(4, 1000)])  # far faster than this follower
    rec.append(1000, frame(1000, "end"))
    await rec.finish()
    got += await waiting
    assert got == [frame(1), frame(2), frame(3)]
    with pytest.raises(Gone):
        await store.replay(rec.stream_id, "app", 3)


async def test_events_dropped_before_the_first_read_end_the_follower(store: ResumeStore) -> None:
    """Trimming between the range check and the follower's first read: what it gets still runs
    on from ``Last-Event-ID`` without a gap, then it ends and its next resume gets 410."""
    rec = await opened(store, max_events=5)
    rec.extend(1, [frame(1), frame(2), frame(3)])
    await asyncio.sleep(0.05)  # flushed (Redis)
    replay = await store.replay(rec.stream_id, "app", 1)  # event 2 is held now
    rec.extend(4, [frame(i) for i in range(4, 1000)])
    rec.append(1000, frame(1000, "end"))
    await rec.finish()
    got = await drain(replay.frames)
    assert got == [frame(i) for i in range(2, 2 + len(got))]
    with pytest.raises(Gone):
        await store.replay(rec.stream_id, "app", 1 + len(got))


@pytest.mark.parametrize("make_store", ["redis"], indirect=True)
async def test_a_follower_slot_is_held_until_its_replay_ends(
    make_store: StoreFactory, budget: Budget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most ``FOLLOWERS`` replays per store: one more waits ``FOLLOWER_WAIT`` for a slot, then
    gets 503; every way a replay ends gives its slot back."""
    monkeypatch.setattr(redis_followers, "FOLLOWERS", 1)
    monkeypatch.setattr(redis_followers, "FOLLOWER_WAIT", 0.2)
    store = make_store(budget)
    done = await recorded(store, 2)
    live = await opened(store)
    held = await store.replay(live.stream_id, "app", None)
    with pytest.raises(Unavailable):
        await store.replay(done.stream_id, "app", None)
    await held.frames.aclose()  # closed before its first frame (the client left at once)
    for _ in range(2):
        with pytest.raises(NotFound):
            await store.replay(new_request_id(), "app", None)
        with pytest.raises(InvalidRequest):
            await store.replay(done.stream_id, "app", 3)
        ended = await store.replay(done.stream_id, "app", 2)  # the 204 case
        assert ended.ended
        await ended.frames.aclose()
        assert len(await drain((await store.replay(done.stream_id, "app", None)).frames)) == 2
        follower = asyncio.create_task(drain((await store.replay(live.stream_id, "app", 0)).frames))
        await asyncio.sleep(0.05)
        follower.cancel()  # the client left while following
        with pytest.raises(asyncio.CancelledError):
            await follower
    held = await store.replay(live.stream_id, "app", None)
    waiting = asyncio.create_task(store.replay(done.stream_id, "app", None))
    await asyncio.sleep(0.05)
    await held.frames.aclose()  # a slot freed within FOLLOWER_WAIT: the waiting one gets it
    assert len(await drain((await waiting).frames)) == 2


async def _stop_latency(owner: ResumeStore, stopper: ResumeStore) -> float:
    stopped = asyncio.Event()
    stream_id = new_request_id()
    rec = await opened(owner, stream_id, on_stop=stopped.set)
    rec.append(1, frame(1))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await stopper.stop(stream_id, "app")
    async with asyncio.timeout(1):
        await stopped.wait()
    return loop.time() - t0


async def test_stop_calls_owner_within_100ms(store: ResumeStore) -> None:
    assert await _stop_latency(store, store) < 0.1


async def test_stop_of_finished_stream_is_a_no_op(store: ResumeStore) -> None:
    calls: list[int] = []
    rec = await opened(store, on_stop=lambda: calls.append(1))
    rec.append(1, frame(1, "end"))
    await rec.finish()
    await store.stop(rec.stream_id, "app")
    await asyncio.sleep(0.1)
    assert calls == []


@pytest.mark.parametrize("make_store", ["redis"], indirect=True)
async def test_stop_across_two_replicas(make_store: StoreFactory, budget: Budget) -> None:
    owner, other = make_store(budget), make_store(Budget(1 << 20, 10))
    assert await _stop_latency(owner, other) < 0.1


@pytest.mark.parametrize("make_store", ["redis"], indirect=True)
async def test_any_replica_serves_the_resume(make_store: StoreFactory, budget: Budget) -> None:
    owner, other = make_store(budget), make_store(Budget(1 << 20, 10))
    rec = await opened(owner)
    rec.append(1, frame(1))
    replay = await other.replay(rec.stream_id, "app", None)
    follower = asyncio.create_task(drain(replay.frames))
    await asyncio.sleep(0.05)
    rec.append(2, frame(2, "end"))
    await rec.finish()
    assert await follower == [frame(1), frame(2, "end")]


async def test_a_silent_live_stream_gets_a_heartbeat_every_idle(store: ResumeStore) -> None:
    """``idle`` (``server.heartbeat_interval``) under a second: a follower still gets ``b""``
    (a ``: ping``) every ``idle``, not every Redis ``XREAD`` block (1 s)."""
    rec = await opened(store)
    rec.append(1, frame(1))
    replay = await store.replay(rec.stream_id, "app", 1, idle=0.2)
    loop = asyncio.get_running_loop()
    t0, pings = loop.time(), 0
    async with asyncio.timeout(5):
        async for f in replay.frames:
            assert f == b""
            pings += 1
            if pings == 4:
                break
    await replay.frames.aclose()
    assert loop.time() - t0 < 2.5  # 0.8 s; it was 4 s (one per XREAD block)
    rec.append(2, frame(2, "end"))
    await rec.finish()


async def test_memory_followers_hold_no_copy_of_the_record() -> None:
    """A follower of the memory store reads the stream's own frames as it goes: a hundred
    followers replaying a 20,000-event record hold far less than the record itself (each held
    a list of every frame after its ``Last-Event-ID``, 1.9 MB, outside the buffer cap)."""
    budget = Budget(1 << 30, 10)
    store = MemoryStore(budget)
    rec = await opened(store, max_events=20_000)
    rec.extend(1, [frame(i) for i in range(1, 20_001)])
    followers = []
    tracemalloc.start()
    try:
        for _ in range(100):
            replay = await store.replay(rec.stream_id, "app", 0)
            assert await anext(replay.frames) == frame(1)  # suspended in its replay
            followers.append(replay)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < budget.bytes / 4
    for replay in followers:
        assert await anext(replay.frames) == frame(2)
        await replay.frames.aclose()


async def test_memory_follower_of_a_stream_that_expires_mid_replay_gets_its_end() -> None:
    """The window closing while a follower replays (a slow client, a short window) ends new
    resumes (404), not that follower: it still gets every frame up to the terminal one (it
    failed with an ``IndexError`` on the dropped record, a close without a terminal event)."""
    clock = [0.0]
    store = MemoryStore(Budget(1 << 20, 10), clock=lambda: clock[0])
    rec = await opened(store, window=1.0)
    rec.extend(1, [frame(1), frame(2)])
    replay = await store.replay(rec.stream_id, "app", 0)
    assert await anext(replay.frames) == frame(1)  # its client is slow to take frame 1
    rec.extend(3, [frame(3), frame(4, "end")])
    await rec.finish()
    clock[0] = 5.0
    with pytest.raises(NotFound):
        await store.replay(rec.stream_id, "app", 0)
    assert store.budget.bytes == 0
    assert await drain(replay.frames) == [frame(2), frame(3), frame(4, "end")]
