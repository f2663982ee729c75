"""Lua scripts: each touches the keys of ONE queue (one slot) and runs atomically on its master.

KEYS layout for the queue scripts (see :func:`airflow_ha.broker.keys.queue_keys`):
``KEYS[1]`` unacked hash, ``KEYS[2]`` unacked index zset, ``KEYS[3..]`` priority lists, served in order.
Unacked values are ``"<list index>|<payload>"`` so a restore puts the message back on its own list.
"""

from __future__ import annotations

# ARGV: list index (1-based, into KEYS[3..]), payload, notify channel
PUT = """
redis.call('LPUSH', KEYS[2 + tonumber(ARGV[1])], ARGV[2])
redis.call('SPUBLISH', ARGV[3], '1')
return 1
"""

# ARGV: (none). Pops the first message in priority order and records it as unacked in the same step:
# there is no moment where a popped message exists only in the consumer's memory.
GET = """
local now = redis.call('TIME')
local ts = tonumber(now[1]) + tonumber(now[2]) / 1000000
for i = 3, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, msg = pcall(cjson.decode, item)
    local tag = nil
    if ok and type(msg) == 'table' and type(msg['properties']) == 'table' then
      tag = msg['properties']['delivery_tag']
    end
    if type(tag) == 'string' then
      redis.call('HSET', KEYS[1], tag, (i - 2) .. '|' .. item)
      redis.call('ZADD', KEYS[2], ts, tag)
    end
    return item
  end
end
return false
"""

# ARGV: delivery tag
ACK = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# ARGV: delivery tag, to_head (1: served next, 0: back of the line), notify channel
RESTORE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local sep = string.find(v, '|', 1, true)
local idx = tonumber(string.sub(v, 1, sep - 1))
local key = KEYS[2 + idx] or KEYS[3]
if ARGV[2] == '1' then
  redis.call('RPUSH', key, string.sub(v, sep + 1))
else
  redis.call('LPUSH', key, string.sub(v, sep + 1))
end
redis.call('SPUBLISH', ARGV[3], '1')
return 1
"""

# ARGV: visibility timeout (s), max messages, notify channel. Restores to the head every unacked message
# delivered longer ago than the timeout. Atomic: two consumers sweeping at once never both restore one.
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
    redis.call('RPUSH', KEYS[2 + idx] or KEYS[3], string.sub(v, sep + 1))
    n = n + 1
  end
end
if n > 0 then redis.call('SPUBLISH', ARGV[3], '1') end
return n
"""

ALL = {"put": PUT, "get": GET, "ack": ACK, "restore": RESTORE, "sweep": SWEEP}
