"""Key names: every key of one queue carries the same hash tag, so one queue lives in one slot.

For queue ``q`` (hash tag ``{q}``):

* ``{q}:p<step>`` — one list per priority step (LPUSH to publish, RPOP to consume, like kombu's redis);
* ``{q}:unacked`` — hash delivery_tag -> "<step>|<payload>" of messages handed to a consumer;
* ``{q}:unacked_index`` — zset delivery_tag -> delivery time (server clock), for the visibility sweep;
* ``{q}:wake`` — one token per waiting message: an idle consumer blocks in ``BLPOP`` on it, so a publish
  wakes exactly one consumer (Redis hands a pushed token to one blocked client), as ``BRPOP`` does in
  kombu's redis transport.

Bindings of exchange ``e`` are the set ``{_kombu.binding.e}`` (kombu's ``_kombu.binding.*`` table) and a
fanout exchange publishes on the sharded channel ``{_kombu.fanout.e}``. Different queues have different
tags, so CRC16 spreads them over the masters' slot ranges.
"""

from __future__ import annotations

from bisect import bisect

from redis.crc import key_slot

PRIORITY_STEPS = (0, 3, 6, 9)  # kombu.transport.redis.PRIORITY_STEPS: 0 is served first
SEP = "\x06\x16"  # kombu's binding-member separator


def _tag(queue: str) -> str:
    if not queue or queue.startswith("}"):  # "{}" is not a hash tag: Redis would hash the whole key
        return "{_kombu.q." + queue + "}"
    return "{" + queue + "}"


def priority_list(queue: str, step: int) -> str:
    return f"{_tag(queue)}:p{step}"


def priority_lists(queue: str, steps=PRIORITY_STEPS) -> list[str]:
    return [priority_list(queue, s) for s in steps]


def unacked(queue: str) -> str:
    return f"{_tag(queue)}:unacked"


def unacked_index(queue: str) -> str:
    return f"{_tag(queue)}:unacked_index"


def wake_list(queue: str) -> str:
    return f"{_tag(queue)}:wake"


def queue_keys(queue: str, steps=PRIORITY_STEPS) -> list[str]:
    """KEYS for the Lua scripts: unacked, unacked_index, wake, then the priority lists in serving order."""
    return [unacked(queue), unacked_index(queue), wake_list(queue), *priority_lists(queue, steps)]


def binding_table(exchange: str) -> str:
    return "{_kombu.binding." + exchange + "}"


def exchange_type(exchange: str) -> str:
    """The exchange's type, stored next to its bindings (same slot)."""
    return binding_table(exchange) + ":type"


def fanout_channel(exchange: str) -> str:
    return "{_kombu.fanout." + exchange + "}"


def step_for(priority: int, steps=PRIORITY_STEPS) -> int:
    """The priority step a message priority falls into (kombu redis ``Channel.priority``)."""
    return steps[max(bisect(steps, priority) - 1, 0)]


def queue_slot(queue: str) -> int:
    return key_slot(priority_list(queue, 0).encode())
