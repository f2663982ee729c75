"""Lua scripts: each touches the keys of ONE queue (one slot) and runs atomically on its master.

KEYS layout for the queue scripts (see :func:`airflow_ha.broker.keys.queue_keys`):
``KEYS[1]`` unacked hash, ``KEYS[2]`` unacked index zset, ``KEYS[3]`` wake-token list, ``KEYS[4..]``
priority lists, served in order. Unacked values are ``"<list index>|<item>"`` so a restore puts the message
back on its own list. A list item is the message's JSON, or ``"\\1" .. JSON`` once it has been restored:
the consumer then marks it ``redelivered`` (as kombu's redis transport does), so Celery's
``worker_deduplicate_successful_tasks`` can tell a redelivery from a first delivery.
"""

from __future__ import annotations

# ARGV: list index (1-based, into KEYS[4..]), payload, most wake tokens kept
PUT = """
redis.call('LPUSH', KEYS[3 + tonumber(ARGV[1])], ARGV[2])
if redis.call('RPUSH', KEYS[3], '1') > tonumber(ARGV[3]) then
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
return 1
"""

# ARGV: record (1: keep it as unacked until ack; 0: a no_ack consumer, nothing to keep), take_token (1: the
# reader was not woken by a token of its own - it reads on because the last read said more remain, or it is
# the periodic safety read - so it takes one now, keeping one token per message). Returns {item, more}
# (more: 1 when messages remain), or false. Pops the first
# message in priority order and records it in the same step: there is no moment where a popped message
# exists only in the consumer's memory. Tokens follow the messages: while messages remain, at least one
# token stays (a token list trimmed at its cap, or a token lost with a failed-over master, never leaves a
# message to the 1 s safety read); an empty queue drops its tokens, which stood for messages taken already.
GET = """
local now = redis.call('TIME')
local ts = tonumber(now[1]) + tonumber(now[2]) / 1000000
for i = 4, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    if ARGV[2] == '1' then redis.call('LPOP', KEYS[3]) end
    if ARGV[1] == '1' then
      local body = item
      if string.byte(item, 1) == 1 then body = string.sub(item, 2) end
      local ok, msg = pcall(cjson.decode, body)
      local tag = nil
      if ok and type(msg) == 'table' and type(msg['properties']) == 'table' then
        tag = msg['properties']['delivery_tag']
      end
      if type(tag) == 'string' then
        redis.call('HSET', KEYS[1], tag, (i - 3) .. '|' .. item)
        redis.call('ZADD', KEYS[2], ts, tag)
      end
    end
    local more = 0
    for j = i, #KEYS do
      if redis.call('LLEN', KEYS[j]) > 0 then
        more = 1
        break
      end
    end
    if more == 1 and redis.call('LLEN', KEYS[3]) == 0 then redis.call('RPUSH', KEYS[3], '1') end
    return {item, more}
  end
end
redis.call('DEL', KEYS[3])
return false
"""

# ARGV: delivery tag
ACK = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# ARGV: delivery tag, to_head (1: served next, 0: back of the line)
RESTORE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local sep = string.find(v, '|', 1, true)
local idx = tonumber(string.sub(v, 1, sep - 1))
local key = KEYS[3 + idx] or KEYS[4]
local item = string.sub(v, sep + 1)
if string.byte(item, 1) ~= 1 then item = '\\1' .. item end
if ARGV[2] == '1' then
  redis.call('RPUSH', key, item)
else
  redis.call('LPUSH', key, item)
end
redis.call('RPUSH', KEYS[3], '1')
return 1
"""

# ARGV: visibility timeout (s), max messages. Restores to the head every unacked message delivered longer
# ago than the timeout. Atomic: two consumers sweeping at once never both restore one.
SWEEP = """
local now = redis.call('TIME')
local ceil = tonumber(now[1]) + tonumber(now[2]) / 1000000 - tonumber(ARGV[1])
local tags = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ceil, 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, tag in ipairs(tags) do
  redis.call('ZREM', KEYS[2], tag)
  local v = redis.call('HGET', KEYS[1], tag)
  if v then
    redis.call('HDEL', KEYS[1], tag)
    local sep = string.find(v, '|', 1, true)
    local idx = tonumber(string.sub(v, 1, sep - 1))
    local item = string.sub(v, sep + 1)
    if string.byte(item, 1) ~= 1 then item = '\\1' .. item end
    redis.call('RPUSH', KEYS[3 + idx] or KEYS[4], item)
    redis.call('RPUSH', KEYS[3], '1')
    n = n + 1
  end
end
return n
"""

# Deletes every key of the queue: its lists, its unacked bookkeeping and its wake tokens.
DELETE = """
return redis.call('DEL', unpack(KEYS))
"""

ALL = {"put": PUT, "get": GET, "ack": ACK, "restore": RESTORE, "sweep": SWEEP, "delete": DELETE}

REDELIVERED = b"\x01"  # the first byte of a restored message's list item
