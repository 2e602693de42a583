"""The Lua scripts of the Redis bus. Each touches one session record (one slot)."""

from __future__ import annotations

__all__ = ["CLAIM", "UPDATE"]

#: helpers both scripts start with
_PRELUDE = """
local function newer(a, b)
  if not b then return true end
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am = tonumber(am); bm = tonumber(bm)
  if am ~= bm then return am > bm end
  return tonumber(as) > tonumber(bs)
end

-- ARGV from 6 on: '+', pattern, from (subscribed) or '-', pattern (gone).
local function record_subscriptions(rec)
  local i = 6
  while i <= #ARGV do
    if ARGV[i] == '+' then
      redis.call('HSET', rec, 's:' .. ARGV[i + 1], ARGV[i + 2])
      i = i + 3
    else
      redis.call('HDEL', rec, 's:' .. ARGV[i + 1])
      i = i + 2
    end
  end
end
"""

#: KEYS: record. ARGV: node, local epoch (0: none), cursor to store if the
#: node owns it ('' for none), ttl in ms, '1' if the batch has a connect,
#: then subscription changes to record with the claim, as for UPDATE.
#: Returns {0}: no such session; {1}: already ours; or
#: {2, new epoch, cursor, state, previous owner, pattern, from, ...}: taken over.
CLAIM = (
    _PRELUDE
    + """
local rec = KEYS[1]
if redis.call('EXISTS', rec) == 0 then return {0} end
local owner = redis.call('HGET', rec, 'o')
local epoch = tonumber(redis.call('HGET', rec, 'g'))
local state = redis.call('HGET', rec, 't')
if ARGV[5] == '1' then redis.call('HSET', rec, 't', 'c') end
redis.call('PEXPIRE', rec, ARGV[4])
record_subscriptions(rec)
if owner == ARGV[1] and epoch == tonumber(ARGV[2]) then
  if ARGV[3] ~= '' and newer(ARGV[3], redis.call('HGET', rec, 'c')) then
    redis.call('HSET', rec, 'c', ARGV[3])
  end
  return {1}
end
epoch = epoch + 1
redis.call('HSET', rec, 'o', ARGV[1], 'g', tostring(epoch))
local out = {2, epoch, redis.call('HGET', rec, 'c'), state, owner}
local all = redis.call('HGETALL', rec)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 's:' then
    out[#out + 1] = string.sub(all[i], 3)
    out[#out + 1] = all[i + 1]
  end
end
return out
"""
)

#: KEYS: record. ARGV: node, epoch, ttl in ms, cursor ('' for none),
#: '1' to delete, then '+', pattern, from / '-', pattern.
#: Returns 1, or 0 if the record is missing or not ours at this epoch.
UPDATE = (
    _PRELUDE
    + """
local rec = KEYS[1]
if redis.call('HGET', rec, 'o') ~= ARGV[1] or redis.call('HGET', rec, 'g') ~= ARGV[2] then
  return 0
end
if ARGV[5] == '1' then
  redis.call('DEL', rec)
  return 1
end
if ARGV[4] ~= '' and newer(ARGV[4], redis.call('HGET', rec, 'c')) then
  redis.call('HSET', rec, 'c', ARGV[4])
end
record_subscriptions(rec)
redis.call('PEXPIRE', rec, ARGV[3])
return 1
"""
)
