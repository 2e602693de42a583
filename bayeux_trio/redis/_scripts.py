"""The Lua scripts of the Redis bus.

``CLAIM`` and ``UPDATE`` touch one session record (the slot of ``{<clientId>}``);
``APPEND`` and the presence scripts touch the log and keys that share its hash
tag ``{log}`` (one slot), so that one script appends a run of publishes, each
unless it is a copy of one already there (docs/redis.md, "Resent publishes"), or
changes the members and appends the join or leave (docs/redis.md, "Presence"),
atomically.
"""

from __future__ import annotations

__all__ = [
    "APPEND",
    "CLAIM",
    "PRESENCE_APPLY",
    "PRESENCE_DUE",
    "PRESENCE_RESCORE",
    "PRESENCE_SNAPSHOT",
    "PRESENCE_VANISH",
    "SENT",
    "UPDATE",
]

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

-- ARGV from i on: '+', pattern, from (subscribed) or '-', pattern (gone).
local function record_subscriptions(rec, i)
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
#: node owns it ('' for none: nothing is waiting for the session, nor, with
#: acknowledged delivery, waiting for an acknowledgement), ttl in ms, '1' if
#: the batch has a connect, then subscription changes to record with the
#: claim, as for UPDATE.
#: Returns {0}: no such session; {1}: already ours; or
#: {2, new epoch, cursor, state, previous owner, user, info, access, batch,
#: batch start, handed out, pattern, from, ...}: taken over (user, info and access
#: as the handshake's extensions set them, or nil; batch and batch start, for
#: a session with acknowledged delivery: the number of the last batch sent and
#: the cursor before it, or nil; handed out: how far deliveries are known to
#: have been handed to the client, the cursor or less, see UPDATE, or nil).
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
record_subscriptions(rec, 6)
if owner == ARGV[1] and epoch == tonumber(ARGV[2]) then
  if ARGV[3] ~= '' and newer(ARGV[3], redis.call('HGET', rec, 'c')) then
    -- everything was handed out (and, with acknowledged delivery,
    -- acknowledged): no reply in flight, no batch to send again
    redis.call('HSET', rec, 'c', ARGV[3], 'd', ARGV[3])
    if redis.call('HEXISTS', rec, 'b') == 1 then redis.call('HSET', rec, 'k', ARGV[3]) end
  end
  return {1}
end
epoch = epoch + 1
redis.call('HSET', rec, 'o', ARGV[1], 'g', tostring(epoch))
local out = {
  2, epoch, redis.call('HGET', rec, 'c'), state, owner,
  redis.call('HGET', rec, 'u'), redis.call('HGET', rec, 'f'), redis.call('HGET', rec, 'a'),
  redis.call('HGET', rec, 'b'), redis.call('HGET', rec, 'k'), redis.call('HGET', rec, 'd')
}
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
#: '1' to delete, the number of the batch the cursor ends ('' for a session
#: without acknowledged delivery), '1' if the deliveries up to the cursor
#: were handed out already (pushes) or '0' if they are in a reply that waits
#: for this write, then '+', pattern, from / '-', pattern.
#: The cursor ('c') is where the next owner replays from; 'd' is how far
#: deliveries are known to have been handed out: a reply that waits for this
#: write moves 'd' only once it is sent (SENT), so that the next owner
#: replays it if the node died before sending it.
#: A batch numbered above the record's is new: it starts at the record's
#: cursor (kept as its start, 'k') and ends at the given one; a batch sent
#: again moves nothing.
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
local cursor = ARGV[4]
if ARGV[6] ~= '' then
  if tonumber(ARGV[6]) > tonumber(redis.call('HGET', rec, 'b') or '0') then
    redis.call('HSET', rec, 'k', redis.call('HGET', rec, 'c'), 'b', ARGV[6])
  else
    cursor = ''
  end
end
if cursor ~= '' and newer(cursor, redis.call('HGET', rec, 'c')) then
  redis.call('HSET', rec, 'c', cursor)
  if ARGV[7] == '1' then redis.call('HSET', rec, 'd', cursor) end
end
record_subscriptions(rec, 8)
redis.call('PEXPIRE', rec, ARGV[3])
return 1
"""
)

#: A reply that waited for its cursor write was handed to its connection:
#: its deliveries are out (UPDATE). Not fenced: the session may have moved
#: meanwhile, and its new owner waits for this to know where to replay from.
#: KEYS: record. ARGV: the reply's cursor.
SENT = (
    _PRELUDE
    + """
local rec = KEYS[1]
local out = redis.call('HGET', rec, 'd')
if out and newer(ARGV[1], out) and not newer(ARGV[1], redis.call('HGET', rec, 'c')) then
  redis.call('HSET', rec, 'd', ARGV[1])
end
return 1
"""
)

#: A client's publish, appended to the log unless it is a copy: the ids of the
#: client's latest publishes are kept beside the log, in its slot, so that the
#: check and the append are one step whichever node gets the copy.
#: KEYS: log, the client's recent ids (<ns>:{log}:r:<clientId>: a sorted set,
#: by the time their entries were appended).
#: ARGV: the publish's id (as JSON), how many ids to keep, their ttl in ms,
#: minid, then the entry's fields and values.
#: Returns the new entry's id, or 0 for a copy (nothing appended).
# Appends a run of entries in order, in one call (one command for many
# publishes: coredis spends more CPU per command than Redis does per XADD).
# KEYS[1] the log, KEYS[2..] the recent-publish sets of the clients in the run;
# ARGV: minid, how many ids to keep per client, their TTL (ms), then per entry:
# the index of its client's set in KEYS (0: a plain append), the publish's id
# (JSON, or empty), the number of field/value arguments that follow, those.
# Returns each entry's log id, or 0 for a copy of a publish already there.
APPEND = """
local log, minid, keep, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
local i = 4
while i <= #ARGV do
  local k, mid, n = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2])
  local fields = {}
  for j = i + 3, i + 2 + n do fields[#fields + 1] = ARGV[j] end
  i = i + 3 + n
  local recent = k > 0 and KEYS[k] or nil
  if recent and redis.call('ZSCORE', recent, mid) then
    out[#out + 1] = 0
  else
    local id = redis.call('XADD', log, 'MINID', '~', minid, '*', unpack(fields))
    if recent then
      redis.call('ZADD', recent, tonumber(string.match(id, '^%d+')), mid)
      redis.call('ZREMRANGEBYRANK', recent, 0, -1 - keep)
      redis.call('PEXPIRE', recent, ttl)
    end
    out[#out + 1] = id
  end
end
return out
"""

# --------------------------------------------------------------- presence
#
# Keys (all in the slot of {log}; <p> is '<ns>:{log}:p'):
#   <p>:<channel>  hash: s:<clientId> -> user (the sessions in the channel),
#                  n:<user> -> how many of their sessions are in it,
#                  i:<user> -> info (JSON), o:<user> -> the join's log id,
#                  l:<user> -> the leave delivery to append when n drops to 0
#   <p>c:<clientId> set: the channels the session is in (for the sweeper)
#   <p>a           set: the channels with members (for the snapshot)
#   <p>z           zset: clientId -> when (ms, Redis' clock) to check that its
#                  session record still exists
#   <p>g           the presence generation: a random id, gone when Redis lost
#                  its data (a restart without persistence)
#   <p>n:<node>    the sequence number of the node's last applied change, so
#                  that a retried pipeline applies nothing twice

_PRESENCE_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function append(log, minid, channel, payload)
  return redis.call('XADD', log, 'MINID', '~', minid, '*', 'c', channel, 'p', payload)
end

-- Session cid leaves channel (whose hash is key): 1 if that was the user's
-- last session there (the leave is appended), else 0.
local function leave_one(log, key, all, minid, prefix, channel, cid)
  local user = redis.call('HGET', key, 's:' .. cid)
  if not user then return 0 end
  redis.call('HDEL', key, 's:' .. cid)
  if redis.call('HINCRBY', key, 'n:' .. user, -1) > 0 then return 0 end
  local leave = redis.call('HGET', key, 'l:' .. user)
  redis.call('HDEL', key, 'n:' .. user, 'i:' .. user, 'o:' .. user, 'l:' .. user)
  if redis.call('HLEN', key) == 0 then redis.call('SREM', all, channel) end
  append(log, minid, prefix .. channel, leave)
  return 1
end
"""

#: Every presence change of one pipeline, in order, in one call (so one
#: round of the scripting machinery, one look at the node's guard, and one
#: wake-up of the nodes' log readers for all of them).
#: KEYS: log, <p>a, <p>z, <p>n:<node>, then per change: <p>:<channel>,
#: <p>c:<clientId>.
#: ARGV: guard ttl (ms), minid, presence prefix, check after (ms), then per
#: change: 'e', seq, channel, clientId, user, info (JSON), join delivery,
#: leave delivery (the session entered the channel; the join is appended if
#: it is the user's first session there) or 'x', seq, channel, clientId (it
#: left; the leave is appended if it was the user's last). A change whose
#: seq is not above the node's last applied one is skipped: it was applied
#: by an earlier try of the same pipeline.
#: Returns the joins and leaves appended.
PRESENCE_APPLY = (
    _PRESENCE_PRELUDE
    + """
local log, all, due, guard = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local minid, prefix, check = ARGV[2], ARGV[3], tonumber(ARGV[4])
local last = tonumber(redis.call('GET', guard) or '0')
local top, now, made = last, nil, 0
local i, k = 5, 5
while i <= #ARGV do
  local kind, seq, channel, cid = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local key, sessions = KEYS[k], KEYS[k + 1]
  k = k + 2
  if kind == 'e' then
    local user = ARGV[i + 4]
    if seq > last and redis.call('HEXISTS', key, 's:' .. cid) == 0 then
      redis.call('HSET', key, 's:' .. cid, user)
      redis.call('SADD', sessions, channel)
      if not now then now = now_ms() end
      redis.call('ZADD', due, 'NX', now + check, cid)
      if redis.call('HINCRBY', key, 'n:' .. user, 1) == 1 then
        local id = append(log, minid, prefix .. channel, ARGV[i + 6])
        redis.call(
          'HSET', key, 'i:' .. user, ARGV[i + 5], 'l:' .. user, ARGV[i + 7], 'o:' .. user, id)
        redis.call('SADD', all, channel)
        made = made + 1
      end
    end
    i = i + 8
  else
    if seq > last then
      made = made + leave_one(log, key, all, minid, prefix, channel, cid)
      redis.call('SREM', sessions, channel)
      if redis.call('EXISTS', sessions) == 0 then redis.call('ZREM', due, cid) end
    end
    i = i + 4
  end
  if seq > top then top = seq end
end
if top > last then redis.call('SET', guard, tostring(top), 'PX', ARGV[1]) end
return made
"""
)

#: The sweeper's: session clientId is gone (its record expired), so it
#: leaves every channel it was in. Idempotent: two nodes sweeping make one leave.
#: KEYS: log, <p>c:<clientId>, <p>a, <p>z. ARGV: clientId, minid, presence
#: prefix, <p>: (the prefix of the channels' keys). Returns the leaves made.
PRESENCE_VANISH = (
    _PRESENCE_PRELUDE
    + """
local left = 0
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  left = left + leave_one(KEYS[1], ARGV[4] .. channel, KEYS[3], ARGV[2], ARGV[3], channel, ARGV[1])
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return left
"""
)

#: KEYS: <p>z, <p>g. ARGV: most to return.
#: Returns {generation or '', clientId, ...}: the sessions due for a check.
PRESENCE_DUE = (
    _PRESENCE_PRELUDE
    + """
local out = {redis.call('GET', KEYS[2]) or ''}
local due = redis.call(
  'ZRANGE', KEYS[1], '-inf', now_ms(), 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
for _, cid in ipairs(due) do out[#out + 1] = cid end
return out
"""
)

#: KEYS: <p>z. ARGV: clientId, ms to the next check, ... (sessions still alive).
PRESENCE_RESCORE = (
    _PRESENCE_PRELUDE
    + """
local now = now_ms()
for i = 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[i + 1]), ARGV[i])
end
return 1
"""
)

#: KEYS: log, <p>a, <p>g. ARGV: a new generation (kept only if there is
#: none), <p>: (the prefix of the channels' keys).
#: Returns {generation, last log id or '', {channel, {user, join id, info,
#: ...}}, ...}: every member, as of that log id, atomically.
PRESENCE_SNAPSHOT = """
redis.call('SET', KEYS[3], ARGV[1], 'NX')
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local out = {redis.call('GET', KEYS[3]), last[1] and last[1][1] or ''}
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local all = redis.call('HGETALL', ARGV[2] .. channel)
  local info, order, members = {}, {}, {}
  for i = 1, #all, 2 do
    local kind, user = string.sub(all[i], 1, 2), string.sub(all[i], 3)
    if kind == 'i:' then info[user] = all[i + 1]
    elseif kind == 'o:' then order[user] = all[i + 1] end
  end
  for user, id in pairs(order) do
    members[#members + 1] = user
    members[#members + 1] = id
    members[#members + 1] = info[user] or 'null'
  end
  out[#out + 1] = {channel, members}
end
return out
"""
