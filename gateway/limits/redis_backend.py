"""Redis limits backend: one budget shared by every gateway replica that points at one Redis.

Keys (``<p>`` = ``gateway:limits:<scope>``, scope ``app:<name>`` or ``route:<name>``):

* ``<p>:rpm:<n>`` and ``<p>:tpm:<n>``: integer counters of window number ``n`` (60 s windows,
  ``window.py``); each expires when it can no longer count, at the end of window ``n + 1``.
* ``<p>:streams``: a sorted set of concurrency leases, member = lease id, score = the time the
  lease expires. A replica refreshes the leases of its open streams every ``lease_ttl / 3``
  seconds; a crashed replica stops refreshing, so its slots free themselves within
  ``lease_ttl`` (expired members are dropped before every count).

Budgets (``budget.py``): ``gateway:budget:<app>:<per>:<n>``, a hash of ``spent`` and ``reserved``
nano-dollars of period ``n``, expiring a minute after the period ends. Reserve and settle are one
Lua script each.

Check-and-count is one Lua script (atomic in Redis): every limit of every scope is checked,
then all are counted, or none. Release is another script (free the lease, reconcile tokens).
Time comes from the gateway (``now`` argument), so replicas need clocks in sync (NTP is plenty
for 60 s windows). Single Redis or a primary: keys of several scopes meet in one script, so Redis
Cluster is not supported.

The client is created lazily on first use (no connection at start-up, none for a config that
never limits) with short timeouts and one retry, so a dead Redis costs a request about a
second at most before the limiter fails open or closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway import redis_client
from gateway.limits import window as w
from gateway.limits.base import BackendError, Denied, Grant, LimitBackend, Scope

PREFIX = "gateway:limits:"
LEASE_TTL = 30.0
TIMEOUT = 1.0

# KEYS per scope: streams, rpm cur, rpm prev, tpm cur, tpm prev.
# ARGV: now, elapsed, window, lease, lease expiry, tokens, window ttl, then per scope:
#       concurrent, rpm, tpm limits (0 = none).
# Returns {} when admitted, else {scope index (1-based), limit kind, wait seconds as string}.
ACQUIRE = """
local now, elapsed, W = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lease, expiry, cost = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local wttl = tonumber(ARGV[7])
local n = #KEYS / 5
local function retry(prev, cur, c, limit)
  local remaining = W - elapsed
  local room = limit - cur - c
  if room >= 0 and prev > 0 then
    local wait = remaining - W * room / prev
    if wait < remaining then return math.max(wait, 0) end
  end
  local room_next = limit - c
  local later = 0
  if cur > room_next then later = W - W * room_next / cur end
  return remaining + later
end
local function check(kcur, kprev, c, limit)
  local cur = tonumber(redis.call('GET', kcur) or '0')
  local prev = tonumber(redis.call('GET', kprev) or '0')
  if prev * (W - elapsed) / W + cur + c <= limit then return -1 end
  return retry(prev, cur, c, limit)
end
local worst, wscope, wkind = -1, 0, ''
for i = 0, n - 1 do
  local k, a = i * 5, 8 + i * 3
  local conc, rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local waits = {}
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now)
    if redis.call('ZCARD', KEYS[k + 1]) >= conc then waits.concurrent_streams = 1 end
  end
  if rpm > 0 then
    local wait = check(KEYS[k + 2], KEYS[k + 3], 1, rpm)
    if wait >= 0 then waits.requests_per_minute = wait end
  end
  if tpm > 0 then
    local wait = check(KEYS[k + 4], KEYS[k + 5], cost, tpm)
    if wait >= 0 then waits.tokens_per_minute = wait end
  end
  for kind, wait in pairs(waits) do
    if wait > worst then worst, wscope, wkind = wait, i + 1, kind end
  end
end
if worst >= 0 then return {wscope, wkind, tostring(worst)} end
for i = 0, n - 1 do
  local k, a = i * 5, 8 + i * 3
  local conc, rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if conc > 0 then
    redis.call('ZADD', KEYS[k + 1], expiry, lease)
    redis.call('EXPIRE', KEYS[k + 1], math.ceil(expiry - now) + 1)
  end
  if rpm > 0 then
    redis.call('INCR', KEYS[k + 2])
    redis.call('EXPIRE', KEYS[k + 2], wttl)
  end
  if tpm > 0 and cost > 0 then
    redis.call('INCRBY', KEYS[k + 4], cost)
    redis.call('EXPIRE', KEYS[k + 4], wttl)
  end
end
return {}
"""

# KEYS per scope: streams, tpm of the reservation's window, tpm now (or '' placeholders).
# ARGV: lease, delta (tokens used - reserved; 0 = no reconciliation), window ttl.
RELEASE = """
local lease, delta, wttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 0, #KEYS / 3 - 1 do
  local k = i * 3
  if KEYS[k + 1] ~= '' then redis.call('ZREM', KEYS[k + 1], lease) end
  if KEYS[k + 3] ~= '' and delta > 0 then
    redis.call('INCRBY', KEYS[k + 3], delta)
    redis.call('EXPIRE', KEYS[k + 3], wttl)
  elseif KEYS[k + 2] ~= '' and delta < 0 then
    local have = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
    if have > 0 then redis.call('DECRBY', KEYS[k + 2], math.min(have, -delta)) end
  end
end
return 0
"""

# KEYS: the request counters (rpm) of a grant's window, one per scope. Un-counts the request of a
# grant cancelled after all (a budget refused it): each counter one less, never below zero.
UNCOUNT = """
for i = 1, #KEYS do
  local have = tonumber(redis.call('GET', KEYS[i]) or '0')
  if have > 0 then redis.call('DECR', KEYS[i]) end
end
return 0
"""


BUDGET_PREFIX = "gateway:budget:"

# KEYS: the period's hash. ARGV: limit, amount, ttl, hold id. Returns {admitted 0/1, used after}.
# A reservation is also kept under its id (field ``h:<id>``), so that settling or undoing it
# happens once, whoever runs first.
BUDGET_RESERVE = """
local limit, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
local used = tonumber(v[1] or '0') + tonumber(v[2] or '0')
if used >= limit or used + amount > limit then return {0, used} end
if amount > 0 then
  redis.call('HINCRBY', KEYS[1], 'reserved', amount)
  redis.call('HSET', KEYS[1], 'h:' .. ARGV[4], amount)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, used + amount}
"""

# KEYS: the reservation's period hash, the current period hash. ARGV: reserved, real, ttl,
# hold id. Removes the reservation if it is there (not yet settled or undone). Returns the
# current period's used amount.
BUDGET_SETTLE = """
local reserved, real = tonumber(ARGV[1]), tonumber(ARGV[2])
if reserved > 0 and redis.call('HDEL', KEYS[1], 'h:' .. ARGV[4]) == 1 then
  local held = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
  if held > 0 then redis.call('HINCRBY', KEYS[1], 'reserved', -math.min(held, reserved)) end
end
if real > 0 then
  redis.call('HINCRBY', KEYS[2], 'spent', real)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local v = redis.call('HMGET', KEYS[2], 'spent', 'reserved')
return tonumber(v[1] or '0') + tonumber(v[2] or '0')
"""


def _window_ttl(now: float) -> int:
    """Seconds until the current window stops counting (the end of the next one), plus slack."""
    end = (w.window_index(now) + 2) * w.WINDOW
    return int(end - now) + 2


class RedisBackend(LimitBackend):
    """Limits in Redis (``redis.asyncio``), shared by replicas. See the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        on_error: Callable[[Exception], None] | None = None,
        lease_ttl: float = LEASE_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.on_error = on_error
        self.lease_ttl = lease_ttl
        self.clock = clock
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self.held: dict[str, tuple[str, ...]] = {}
        """Open leases of this process: lease id -> the sorted-set keys it sits in."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        """Set by :meth:`close`: a background call after it (a limiter's late abandon) is
        dropped rather than opening a new connection."""
        self._refresher = redis_client.LeaseRefresher(
            self.refresh, lambda: bool(self.held), lease_ttl / 3, BackendError, self._report
        )
        """Keeps this process's leases alive while their streams run (every lease_ttl / 3)."""

    def _connect(self) -> None:
        if self._client is not None:
            return
        self._client = redis_client.connect(self.url, TIMEOUT)
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("acquire", ACQUIRE),
                ("release", RELEASE),
                ("uncount", UNCOUNT),
                ("budget_reserve", BUDGET_RESERVE),
                ("budget_settle", BUDGET_SETTLE),
            )
        }

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script; any failure of the store becomes :class:`BackendError` (the one edge)."""
        from redis.exceptions import RedisError

        self._connect()
        script = self._scripts[name]
        try:
            async with asyncio.timeout(2 * TIMEOUT + 0.5):
                return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendError(f"limits backend: {type(exc).__name__}") from exc

    async def acquire(
        self, scopes: Sequence[Scope], tokens: int, now: float, lease: str
    ) -> Grant | Denied:
        index = w.window_index(now)
        keys: list[str] = []
        args: list[Any] = [
            repr(now),
            repr(w.elapsed_in_window(now)),
            repr(w.WINDOW),
            lease,
            repr(now + self.lease_ttl),
            tokens,
            _window_ttl(now),
        ]
        for scope in scopes:
            p, lim = PREFIX + scope.name, scope.limits
            keys += [
                f"{p}:streams",
                f"{p}:rpm:{index}",
                f"{p}:rpm:{index - 1}",
                f"{p}:tpm:{index}",
                f"{p}:tpm:{index - 1}",
            ]
            args += [
                lim.concurrent_streams or 0,
                lim.requests_per_minute or 0,
                lim.tokens_per_minute or 0,
            ]
        result = await self._call("acquire", keys, args)
        if result:
            scope_no, kind, wait = result
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            return Denied(scopes[int(scope_no) - 1].name, kind, float(wait))
        streams = tuple(
            f"{PREFIX}{s.name}:streams" for s in scopes if s.limits.concurrent_streams is not None
        )
        if streams:
            self.held[lease] = streams
            self._refresher.ensure()
        return Grant(tuple(scopes), tokens, index, lease)

    def release(self, grant: Grant, tokens_used: int | None, now: float) -> None:
        self.held.pop(grant.lease, None)
        index = w.window_index(now)
        delta = 0 if tokens_used is None else tokens_used - grant.tokens
        keys: list[str] = []
        for scope in grant.scopes:
            p, lim = PREFIX + scope.name, scope.limits
            tpm = lim.tokens_per_minute is not None
            live = grant.window in (index, index - 1)
            keys += [
                f"{p}:streams" if lim.concurrent_streams is not None else "",
                f"{p}:tpm:{grant.window}" if tpm and live else "",
                f"{p}:tpm:{index}" if tpm else "",
            ]
        if not any(keys):
            return
        self._in_background("release", keys, [grant.lease, delta, _window_ttl(now)])

    def cancel(self, grant: Grant, now: float) -> None:
        self.release(grant, 0, now)  # the slot freed, the tokens given back
        index = w.window_index(now)
        if grant.window not in (index, index - 1):
            return  # a window that no longer counts
        keys = [
            f"{PREFIX}{s.name}:rpm:{grant.window}"
            for s in grant.scopes
            if s.limits.requests_per_minute is not None
        ]
        if keys:
            self._in_background("uncount", keys, [])

    def _in_background(self, name: str, keys: list[str], args: list[Any]) -> None:
        """Run a script without making the caller wait (see :meth:`flush`); nothing once
        closed."""
        if self._closed:
            return
        task = asyncio.ensure_future(self._call_reported(name, keys, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call_reported(self, name: str, keys: list[str], args: list[Any]) -> None:
        try:
            await self._call(name, keys, args)
        except BackendError as exc:
            # A lease expires on its own within lease_ttl; a reconciliation or an un-count is
            # lost (the request stays counted in its window).
            self._report(exc)

    async def budget_reserve(
        self, scope: str, index: int, limit: int, amount: int, ttl: int, hold: str
    ) -> tuple[bool, int]:
        key = f"{BUDGET_PREFIX}{scope}:{index}"
        admitted, used = await self._call("budget_reserve", [key], [limit, amount, ttl, hold])
        return bool(int(admitted)), int(used)

    def budget_settle(
        self,
        scope: str,
        hold_index: int,
        reserved: int,
        index: int,
        real: int,
        ttl: int,
        on_used: Callable[[int], None] | None = None,
        hold: str = "",
    ) -> None:
        keys = [f"{BUDGET_PREFIX}{scope}:{hold_index}", f"{BUDGET_PREFIX}{scope}:{index}"]
        args = [reserved, real, ttl, hold]
        task = asyncio.ensure_future(self._settle_now(keys, args, on_used))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_now(
        self, keys: list[str], args: list[Any], on_used: Callable[[int], None] | None
    ) -> None:
        try:
            used = await self._call("budget_settle", keys, args)
        except BackendError as exc:
            self._report(exc)  # the reservation expires with its period; the charge is lost
            return
        if on_used is not None:
            on_used(int(used))

    async def budget_used(self, scope: str, index: int) -> int:
        from redis.exceptions import RedisError

        self._connect()
        try:
            async with asyncio.timeout(2 * TIMEOUT + 0.5):
                values = await self._client.hmget(
                    f"{BUDGET_PREFIX}{scope}:{index}", "spent", "reserved"
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendError(f"limits backend: {type(exc).__name__}") from exc
        return sum(int(v or 0) for v in values)

    def _report(self, exc: Exception) -> None:
        if self.on_error is not None:
            self.on_error(exc)

    async def refresh(self) -> None:
        """Push every open lease's expiry to now + lease_ttl (re-adding any that expired)."""
        if not self.held:
            return
        self._connect()
        from redis.exceptions import RedisError

        expiry = self.clock() + self.lease_ttl
        try:
            async with asyncio.timeout(2 * TIMEOUT + 0.5):
                async with self._client.pipeline(transaction=False) as pipe:
                    for lease, keys in list(self.held.items()):
                        for key in keys:
                            pipe.zadd(key, {lease: expiry})
                            pipe.expire(key, int(self.lease_ttl) + 2)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise BackendError(f"limits backend: {type(exc).__name__}") from exc

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2 * TIMEOUT + 1)

    async def close(self) -> None:
        await self._refresher.close()
        await self.flush()
        self._closed = True
        if self._client is not None:
            await self._client.aclose()
            self._client = None
