"""The Lua scripts of ``redis_state.py`` (each runs atomically in Redis).

Keys of one deployment ``<p>`` = ``gateway:pool:<route>:<deployment>``, passed four at a time:

1. ``<p>:active``: sorted set, member = lease id, score = when the lease expires (refreshed while
   the stream runs; a crashed replica's leases expire);
2. ``<p>:failures``: sorted set, member = the failed lease id, score = the failure time;
3. ``<p>:probe``: the lease id holding the probe, with an expiry (refreshed like a lease);
4. ``<p>:state``: hash of ``rest_until``, ``reason`` and ``ewma``.
"""

from __future__ import annotations

# ARGV: now. Returns per deployment: active, rest_until, reason, probing (0/1), ewma ('' = none).
SNAPSHOT = """
local now = tonumber(ARGV[1])
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k = i * 4
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now)
  local st = redis.call('HMGET', KEYS[k + 4], 'rest_until', 'reason', 'ewma')
  out[#out + 1] = redis.call('ZCARD', KEYS[k + 1])
  out[#out + 1] = st[1] or '0'
  out[#out + 1] = st[2] or ''
  out[#out + 1] = redis.call('EXISTS', KEYS[k + 3])
  out[#out + 1] = st[3] or ''
end
return out
"""

# ARGV: now, lease, lease expiry, ttl in ms, then per candidate: cap (0 = none), early (0/1).
# Returns {} or {candidate index (1-based), probe (0/1)}.
TAKE = """
local now, lease, expiry, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 0, #KEYS / 4 - 1 do
  local k, a = i * 4, 5 + i * 2
  local cap, early = tonumber(ARGV[a]), ARGV[a + 1] == '1'
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now)
  if cap == 0 or redis.call('ZCARD', KEYS[k + 1]) < cap then
    local rest = tonumber(redis.call('HGET', KEYS[k + 4], 'rest_until') or '0')
    local ok, probe = true, 0
    if rest > 0 then
      if redis.call('EXISTS', KEYS[k + 3]) == 1 or (rest > now and not early) then
        ok = false
      else
        redis.call('SET', KEYS[k + 3], lease, 'PX', ttl)
        probe = 1
      end
    end
    if ok then
      redis.call('ZADD', KEYS[k + 1], expiry, lease)
      redis.call('PEXPIRE', KEYS[k + 1], ttl + 2000)
      return {i + 1, probe}
    end
  end
end
return {}
"""

# KEYS: one deployment's four. ARGV: lease, ttft, alpha.
SUCCEEDED = """
local v, alpha = tonumber(ARGV[2]), tonumber(ARGV[3])
local old = redis.call('HGET', KEYS[4], 'ewma')
if old then v = tonumber(old) + alpha * (v - tonumber(old)) end
redis.call('HSET', KEYS[4], 'ewma', string.format('%.17g', v))
if redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3], KEYS[2])
  redis.call('HDEL', KEYS[4], 'rest_until', 'reason')
end
return 0
"""

# KEYS: one deployment's four. ARGV: lease, now, failures, window, duration, rest ('' = count a
# failure), reason. Returns the reason when a rest started (it was not resting), else ''.
FAILED = """
local lease, now = ARGV[1], tonumber(ARGV[2])
local failures, window, duration = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local rest, reason = ARGV[6], ARGV[7]
if redis.call('GET', KEYS[3]) == lease then
  redis.call('DEL', KEYS[3])
  if rest == '' then rest, reason = duration, 'probe_failed' end
end
if rest == '' then
  redis.call('ZADD', KEYS[2], now, lease)
  local since = string.format('%.17g', now - window)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', since)
  redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000) + 1000)
  if redis.call('ZCOUNT', KEYS[2], '(' .. since, now) < failures then return '' end
  rest, reason = duration, 'failures'
end
redis.call('DEL', KEYS[2])
local cur = tonumber(redis.call('HGET', KEYS[4], 'rest_until') or '0')
local untl = now + tonumber(rest)
if untl > cur then
  redis.call('HSET', KEYS[4], 'rest_until', string.format('%.17g', untl), 'reason', reason)
end
if cur <= now then return reason end
return ''
"""

# KEYS: active, probe. ARGV: lease.
RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 0
"""

# KEYS: pairs of (active, probe). ARGV: lease expiry, ttl in ms, then one lease id per pair.
REFRESH = """
local expiry, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 0, #KEYS / 2 - 1 do
  local lease = ARGV[3 + i]
  redis.call('ZADD', KEYS[i * 2 + 1], expiry, lease)
  redis.call('PEXPIRE', KEYS[i * 2 + 1], ttl + 2000)
  local probe = KEYS[i * 2 + 2]
  if redis.call('GET', probe) == lease then redis.call('PEXPIRE', probe, ttl) end
end
return 0
"""
