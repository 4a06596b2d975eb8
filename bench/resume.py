"""Resume store costs: CPU per appended event (memory and Redis) and memory per buffered event.

    python -m bench.resume [--redis-url redis://127.0.0.1:6379/0] [--events 200000]

* append: process CPU time per :meth:`Recorder.append` of a typical ~60-byte ``delta`` frame,
  in write batches of ``--batch`` events (the recording sink calls it per write batch), over
  many streams of 200 events each, including ``open`` and ``finish``. For Redis the figure
  includes the flush task and the client's pipeline encoding (the Redis server's own CPU is not
  in this process: that is the point, it may be another machine); the flushes are awaited.
* memory: ``tracemalloc`` bytes per buffered event in the memory store (frames kept alive), to
  check :data:`gateway.resume.base.ENTRY_OVERHEAD` against reality.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc
from typing import Any

from gateway.ids import new_request_id as new_stream_id
from gateway.resume import Budget, MemoryStore, RedisStore, ResumeStore

HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "X-Token-Protocol": "1"}
PER_STREAM = 200


def frame(i: int) -> bytes:
    return b'id: %d\nevent: delta\ndata: {"text":" token"}\n\n' % i


async def append_cost(store: ResumeStore, events: int, batch: int) -> float:
    """µs of process CPU per appended event."""
    frames = [frame(i) for i in range(1, PER_STREAM + 1)]
    streams = max(1, events // PER_STREAM)
    t0 = time.process_time()
    for _ in range(streams):
        rec, reason = await store.open(new_stream_id(), "app", HEADERS, 600.0, 20000)
        assert rec is not None, reason
        for start in range(0, PER_STREAM, batch):
            rec.extend(start + 1, frames[start : start + batch])
            await asyncio.sleep(0)  # a write batch goes out: the loop turns
        await rec.finish()
    return (time.process_time() - t0) / (streams * PER_STREAM) * 1e6


async def memory_per_event(events: int) -> float:
    """Bytes held per buffered event in the memory store."""
    store = MemoryStore(Budget(1 << 40, 10))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(max(1, events // PER_STREAM)):
        rec, _ = await store.open(new_stream_id(), "app", HEADERS, 600.0, 20000)
        assert rec is not None
        rec.extend(1, [frame(i) for i in range(1, PER_STREAM + 1)])
        await rec.finish()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / (max(1, events // PER_STREAM) * PER_STREAM)


async def measure(redis_url: str | None, events: int, batch: int) -> dict[str, Any]:
    out: dict[str, Any] = {"frame_bytes": len(frame(100)), "batch": batch}
    memory = MemoryStore(Budget(1 << 40, 10))
    out["memory_append_us"] = round(await append_cost(memory, events, batch), 3)
    out["memory_bytes_per_event"] = round(await memory_per_event(events // 4))
    if redis_url:
        redis = RedisStore(Budget(1 << 40, 10), redis_url)
        await redis.client.flushdb()
        out["redis_append_us"] = round(await append_cost(redis, events // 10, batch), 3)
        await redis.client.flushdb()
        await redis.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None, help="a Redis to measure (flushed!)")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1, help="events per append call batch")
    args = parser.parse_args()
    print(asyncio.run(measure(args.redis_url, args.events, args.batch)))


if __name__ == "__main__":
    main()
