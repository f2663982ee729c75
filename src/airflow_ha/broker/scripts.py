"""Lua scripts: each touches the keys of ONE queue (one slot) and runs atomically on its master.

KEYS layout for the queue scripts (see :func:`airflow_ha.broker.keys.queue_keys`):
``KEYS[1]`` unacked hash, ``KEYS[2]`` unacked index zset, ``KEYS[3]`` wake-token list, ``KEYS[4..]``
priority lists, served in order. Unacked values are ``"<list index>|<item>"`` so a restore puts the message
back on its own list. A list item is the message's JSON, or ``"\\1" .. JSON`` once it has been restored:
the consumer then marks it ``redelivered`` (as kombu's redis transport does), so Celery's
``worker_deduplicate_successful_tasks`` can tell a redelivery from a first delivery.
"""

from __future__ import annotations

# Wake tokens are written with ``redis.set_repl(redis.REPL_NONE)``: neither replicated nor in the AOF. A
# token only says "read this queue"; a master's tokens are gone after a failover or a restart anyway, and
# what covers that (a waiter whose connection broke reads at once; the periodic safety read) needs no copy.
# So a publish replicates one LPUSH (no MULTI/EXEC: a script with one replicated write is sent as that
# write), and a WAIT after it waits for that alone. (A token handed to a blocked BLPOP is still replicated
# as an LPOP: a no-op on a replica, which holds no tokens.)
#
# Tokens follow the messages: while messages remain there is at least one token, and an emptied queue
# drops its tokens. A publish adds a token only when the list has none: a token left in the list means no
# consumer is blocked on it (Redis hands a pushed token to a blocked client right after the command that
# pushed it), so another would wake nobody now, and a consumer that comes to wait finds the one there. So
# a publish wakes at most one consumer, and a woken consumer that leaves messages behind adds the token
# that wakes the next (GET), one per read, as a burst published to blocked consumers wakes one per message.

# ARGV: list index (1-based, into KEYS[4..]), payload
PUT = """
redis.call('LPUSH', KEYS[3 + tonumber(ARGV[1])], ARGV[2])
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.set_repl(redis.REPL_NONE)
  redis.call('RPUSH', KEYS[3], '1')
end
return 1
"""

# ARGV: record (1: keep it as unacked until ack; 0: a no_ack consumer, nothing to keep). Returns {item, more}
# (more: 1 when messages remain), or false. Pops the first message in priority order and records it in the
# same step: there is no moment where a popped message exists only in the consumer's memory. While
# messages remain it leaves a token (waking the next blocked consumer, if any); an empty queue drops its
# tokens, which stood for messages taken already.
GET = """
for i = 4, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    if ARGV[1] == '1' then
      local body = item
      if string.byte(item, 1) == 1 then body = string.sub(item, 2) end
      local ok, msg = pcall(cjson.decode, body)
      local tag = nil
      if ok and type(msg) == 'table' and type(msg['properties']) == 'table' then
        tag = msg['properties']['delivery_tag']
      end
      if type(tag) == 'string' then
        local now = redis.call('TIME')
        redis.call('HSET', KEYS[1], tag, (i - 3) .. '|' .. item)
        redis.call('ZADD', KEYS[2], tonumber(now[1]) + tonumber(now[2]) / 1000000, tag)
      end
    end
    local more = redis.call('EXISTS', unpack(KEYS, i, #KEYS))
    redis.set_repl(redis.REPL_NONE)
    if more == 0 then
      redis.call('DEL', KEYS[3])
    elseif redis.call('LLEN', KEYS[3]) == 0 then
      redis.call('RPUSH', KEYS[3], '1')
    end
    return {item, more > 0 and 1 or 0}
  end
end
redis.set_repl(redis.REPL_NONE)
redis.call('DEL', KEYS[3])
return false
"""

# ARGV: delivery tags (one or more, of this queue)
ACK = """
redis.call('ZREM', KEYS[2], unpack(ARGV))
return redis.call('HDEL', KEYS[1], unpack(ARGV))
"""

# KEYS[1]: a wake list. A token a consumer popped while it had no room for a message goes back.
WAKE = """
redis.set_repl(redis.REPL_NONE)
return redis.call('RPUSH', KEYS[1], '1')
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
redis.set_repl(redis.REPL_NONE)
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
    n = n + 1
  end
end
if n > 0 then
  redis.set_repl(redis.REPL_NONE)
  for _ = 1, n do redis.call('RPUSH', KEYS[3], '1') end
end
return n
"""

# Deletes every key of the queue: its lists, its unacked bookkeeping and its wake tokens.
DELETE = """
return redis.call('DEL', unpack(KEYS))
"""

ALL = {"put": PUT, "get": GET, "ack": ACK, "wake": WAKE, "restore": RESTORE, "sweep": SWEEP, "delete": DELETE}

REDELIVERED = b"\x01"  # the first byte of a restored message's list item
