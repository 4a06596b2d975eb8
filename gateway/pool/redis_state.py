"""Pool state in Redis (``limits.backend: redis``): shared by every worker and replica.

Open-stream counts, failures, rests, probe claims and the EWMA live in Redis (key layout in
``redis_lua.py``); every read-check-write is one Lua script, so two replicas can never both take
the last ``max_concurrent`` slot or both probe one deployment. Leases and probe claims expire
``lease_ttl`` after their last refresh (every ``lease_ttl / 3`` while the stream runs), so a
crashed replica's streams stop counting within ``lease_ttl``. Time is the gateway's (``now``
argument), so replicas need clocks in sync (NTP is plenty for rests of seconds).

Like ``gateway/limits/redis_backend.py``: client created lazily, short timeouts and one retry;
any failure of the store becomes :class:`~gateway.limits.base.BackendError` at :meth:`_call`
(the one edge). Outcome writes run in the background and report failures to ``on_error``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from gateway import redis_client
from gateway.config.pool import Cooldown
from gateway.limits.redis_backend import LEASE_TTL, TIMEOUT
from gateway.pool import redis_lua as lua
from gateway.pool.state import EWMA_ALPHA, BackendError, Candidate, PoolState, Taken, View

PREFIX = "gateway:pool:"


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisPoolState(PoolState):
    """One route's pool state in Redis. See the module docstring."""

    def __init__(
        self,
        url: str,
        route: str,
        *,
        on_error: Callable[[Exception], None] | None = None,
        lease_ttl: float = LEASE_TTL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        import time

        self.url = url
        self.route = route
        self.on_error = on_error
        self.lease_ttl = lease_ttl
        self.clock = clock or time.time
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self.held: dict[str, str] = {}
        """Open leases of this process: lease id -> deployment name (refreshed until released)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: asyncio.Task[None] | None = None
        self._refresher = redis_client.LeaseRefresher(
            self.refresh, lambda: bool(self.held), lease_ttl / 3, BackendError
        )  # refresh() reports its own failures

    def _keys(self, name: str) -> list[str]:
        p = f"{PREFIX}{self.route}:{name}:"
        return [p + "active", p + "failures", p + "probe", p + "state"]

    def _connect(self) -> None:
        if self._client is not None:
            return
        self._client = redis_client.connect(self.url, TIMEOUT)
        for name in ("SNAPSHOT", "TAKE", "SUCCEEDED", "FAILED", "RELEASE", "REFRESH"):
            self._scripts[name] = self._client.register_script(getattr(lua, name))

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script; any failure of the store becomes :class:`BackendError`."""
        from redis.exceptions import RedisError

        self._connect()
        try:
            async with asyncio.timeout(2 * TIMEOUT + 0.5):
                return await self._scripts[name](keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendError(f"pool backend: {type(exc).__name__}") from exc

    async def snapshot(self, names: Sequence[str], now: float) -> list[View]:
        keys = [k for n in names for k in self._keys(n)]
        flat = await self._call("SNAPSHOT", keys, [repr(now)])
        views: list[View] = []
        for i in range(len(names)):
            active, rest, reason, probing, ewma = flat[i * 5 : i * 5 + 5]
            e = _str(ewma)
            views.append(
                View(
                    int(active),
                    float(_str(rest)),
                    _str(reason),
                    bool(probing),
                    float(e) if e else None,
                )
            )
        return views

    async def take(self, candidates: Sequence[Candidate], lease: str, now: float) -> Taken | None:
        keys = [k for c in candidates for k in self._keys(c.name)]
        ttl_ms = int(self.lease_ttl * 1000)
        args: list[Any] = [repr(now), lease, repr(now + self.lease_ttl), ttl_ms]
        for c in candidates:
            args += [c.cap, 1 if c.early else 0]
        result = await self._call("TAKE", keys, args)
        if not result:
            return None
        index, probe = int(result[0]), bool(int(result[1]))
        name = candidates[index - 1].name
        self.held[lease] = name
        self._refresher.ensure()
        return Taken(name, probe)

    def succeeded(self, name: str, lease: str, ttft: float) -> None:
        self._spawn(self._call("SUCCEEDED", self._keys(name), [lease, repr(ttft), EWMA_ALPHA]))

    def failed(
        self,
        name: str,
        lease: str,
        now: float,
        cooldown: Cooldown,
        rest: float | None = None,
        reason: str = "failures",
    ) -> None:
        args = [
            lease,
            repr(now),
            cooldown.failures,
            repr(cooldown.window),
            repr(cooldown.duration),
            "" if rest is None else repr(rest),
            reason,
        ]
        self._spawn(self._failed(name, args))

    async def _failed(self, name: str, args: list[Any]) -> None:
        started = _str(await self._call("FAILED", self._keys(name), args))
        if started:
            self.rested(name, started)

    def release(self, name: str, lease: str) -> None:
        self.held.pop(lease, None)
        keys = self._keys(name)
        self._spawn(self._call("RELEASE", [keys[0], keys[2]], [lease]))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background, after the writes spawned before it (in order)."""
        task = asyncio.ensure_future(self._background(self._last, work))
        self._last = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(
        self, previous: asyncio.Task[None] | None, work: Coroutine[Any, Any, Any]
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        try:
            await work
        except BackendError as exc:
            # The lease (and any probe claim) expires on its own within lease_ttl.
            if self.on_error is not None:
                self.on_error(exc)

    async def refresh(self) -> None:
        """Push every open lease's (and held probe's) expiry to now + lease_ttl."""
        if not self.held:
            return
        keys: list[str] = []
        leases: list[str] = []
        for lease, name in list(self.held.items()):
            k = self._keys(name)
            keys += [k[0], k[2]]
            leases.append(lease)
        ttl_ms = int(self.lease_ttl * 1000)
        try:
            await self._call(
                "REFRESH", keys, [repr(self.clock() + self.lease_ttl), ttl_ms, *leases]
            )
        except BackendError as exc:
            if self.on_error is not None:
                self.on_error(exc)
            raise

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2 * TIMEOUT + 1)

    async def close(self) -> None:
        await self._refresher.close()
        await self.flush()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
