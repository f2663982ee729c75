"""Key layout: one queue's keys share a slot; queues spread over the masters' slot ranges."""

from __future__ import annotations

from redis.crc import key_slot

from airflow_ha.broker import keys

# Six queue names used by the integration tests too; with the 3-master layout that
# `redis-cli --cluster create` makes (0-5460, 5461-10922, 10923-16383) they cover every master.
QUEUES = ("q-alpha", "q-echo", "default", "q-bravo", "q-charlie", "busy")
MASTER_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def _master(slot: int) -> int:
    return next(i for i, (lo, hi) in enumerate(MASTER_RANGES) if lo <= slot <= hi)


def test_all_keys_of_a_queue_share_one_slot():
    for queue in (*QUEUES, "with.dots", "x{y}z", "", "reply.celery.pidbox"):
        names = [*keys.queue_keys(queue), keys.wake_list(queue)]
        slots = {key_slot(k.encode()) for k in names}
        assert len(slots) == 1, (queue, names, slots)
        assert keys.queue_slot(queue) in slots


def test_queues_spread_over_all_three_masters():
    assert {_master(keys.queue_slot(q)) for q in QUEUES} == {0, 1, 2}


def test_priority_steps_match_kombu_redis():
    from kombu.transport.redis import PRIORITY_STEPS

    assert list(keys.PRIORITY_STEPS) == PRIORITY_STEPS
    assert [keys.step_for(p) for p in range(10)] == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]
    # serving order: lists for step 0 first, like kombu's redis transport
    assert keys.queue_keys("q")[3:] == [keys.priority_list("q", s) for s in (0, 3, 6, 9)]


def test_binding_table_and_fanout_channel_are_hash_tagged():
    assert keys.binding_table("celery.pidbox") == "{_kombu.binding.celery.pidbox}"
    assert key_slot(keys.fanout_channel("ex").encode()) == key_slot(b"_kombu.fanout.ex")
