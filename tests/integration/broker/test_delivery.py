"""Delivery semantics of the ``rediscluster://`` transport (issue 14), each proven on real Redis 8.

Tests that freeze or reshard nodes print what they measured (close time, reshard gap, ping count); run
with ``-s`` to see it. Reshards move ONE slot of the shared session cluster and wait for
``cluster_state:ok`` everywhere, so later tests see a healthy (if slightly unbalanced) cluster.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import resource
import secrets
import subprocess
import threading
import time
from itertools import count, pairwise
from urllib.parse import quote

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue
from redis.crc import key_slot

import airflow_ha.broker
from airflow_ha.broker import consumer as consumer_module
from airflow_ha.broker import keys
from airflow_ha.broker.errors import BrokerClusterError, BrokerUnavailable, ReplicationWaitError
from airflow_ha.broker.health import check_cluster
from airflow_ha.broker.options import BrokerOptions
from airflow_ha.broker.url import parse
from tests.harness.servers.process import free_port
from tests.harness.servers.redis_cluster import CLUSTER_BUS_OFFSET, RedisCluster, RedisNode
from tests.harness.waiting import wait_until
from tests.integration.broker.conftest import drain, wait_replicas_in_sync

pytestmark = pytest.mark.integration
airflow_ha.broker.register()


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _scan(cluster: RedisCluster, pattern: str) -> dict[str, int]:
    """Every key matching ``pattern`` on every master -> its size (HLEN/ZCARD/LLEN/SCARD; 1 for strings)."""
    found = {}
    for master in cluster.master_nodes():
        with master.client(socket_timeout=5, decode_responses=True) as conn:
            for key in conn.scan_iter(match=pattern, count=1000):
                kind = conn.type(key)
                size = {"hash": conn.hlen, "zset": conn.zcard, "list": conn.llen, "set": conn.scard}.get(kind)
                found[key] = size(key) if size else 1
    return found


def _tagged_keys(cluster: RedisCluster, queue: str) -> list[str]:
    master = cluster.master_for_slot(keys.queue_slot(queue))
    with master.client(socket_timeout=5, decode_responses=True) as conn:
        return sorted(
            k for k in conn.cluster("GETKEYSINSLOT", keys.queue_slot(queue), 1000) if k.startswith("{" + queue)
        )


# -- resharding one slot with redis-cli, as an operator does ------------------------------------------------------
def _masters_lowest_slot(cluster: RedisCluster) -> dict[int, tuple[int, str]]:
    """master port -> (its lowest slot, node id), from CLUSTER SLOTS."""
    probe = cluster.master_nodes()[0]
    lowest: dict[int, tuple[int, str]] = {}
    with probe.client(socket_timeout=5) as conn:
        for start, _end, master, *_replicas in conn.execute_command("CLUSTER SLOTS"):
            port, node_id = int(master[1]), master[2].decode()
            if port not in lowest or start < lowest[port][0]:
                lowest[port] = (start, node_id)
    return lowest


def _name_on_lowest_slot(cluster: RedisCluster, slot_of, prefix: str):
    """A name whose slot is the lowest slot of some master (so ``--cluster-slots 1`` moves exactly it);
    returns (name, slot, source port, source id, destination port, destination id)."""
    lowest = _masters_lowest_slot(cluster)
    by_slot = {slot: port for port, (slot, _id) in lowest.items()}
    base = f"{prefix}-{secrets.token_hex(3)}"
    for i in count():
        name = f"{base}-{i}"
        slot = slot_of(name)
        if slot in by_slot:
            src = by_slot[slot]
            dst = next(p for p in sorted(lowest) if p != src)
            return name, slot, src, lowest[src][1], dst, lowest[dst][1]


def _reshard_one_slot(cluster: RedisCluster, src_id: str, dst_id: str) -> None:
    seed = cluster.master_nodes()[0].address
    cmd = [
        cluster.binary("redis-cli"), "-a", cluster.password, "--no-auth-warning", "--cluster", "reshard", seed,
        "--cluster-from", src_id, "--cluster-to", dst_id, "--cluster-slots", "1", "--cluster-yes",
    ]  # fmt: skip
    for attempt in range(5):  # "Nodes don't agree about configuration" right after an earlier change: retry
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode == 0:
            return
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError(f"redis-cli --cluster reshard failed:\n{result.stdout[-3000:]}\n{result.stderr}")


def _wait_moved(cluster: RedisCluster, slot: int, dst_port: int) -> None:
    wait_until(lambda: cluster.master_for_slot(slot).port == dst_port, 30, f"slot {slot} on {dst_port}")
    cluster.wait_healthy()


# -- a lone cluster-enabled node (no slots), started and stopped by PID -------------------------------------------
@contextlib.contextmanager
def _lone_node(base, redis_bin, password: str):
    holder = RedisCluster(base_dir=base, password=password, masters=1, replicas_per_master=0, bin_dir=redis_bin)
    node = RedisNode(port=free_port(CLUSTER_BUS_OFFSET), data_dir=base / "node-0", password=password)
    node.data_dir.mkdir(parents=True, exist_ok=True)
    holder.nodes.append(node)
    try:
        holder.start_node(node)
        yield node
    finally:
        holder.stop()


def _lone_url(node: RedisNode, password: str) -> str:
    return f"rediscluster://:{quote(password, safe='')}@{node.address}"


def _no_hang(fn, limit=60.0):
    """Run fn in a thread; (result or exception, seconds it took). Fails instead of hanging the suite."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["exc"] = exc

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still blocked after {limit}s"
    return box.get("exc", box.get("value")), time.monotonic() - start


# == 1. no_ack consumers: no unacked bookkeeping; deleting a queue deletes all its keys ============================
PINGS = 1000


def test_inspect_pings_leave_no_reply_keys_and_no_unacked(harness, redis_cluster):
    """Celery's pidbox reply queue is consumed with no_ack: 1,000 pings leave no unacked entry, and closing
    the control connection deletes the (auto-delete) reply queue's keys and its binding."""
    queue = _name("ping")
    harness.start_worker([queue], concurrency=1, name="pinged")
    app = harness.client()
    dest = ["pinged@localhost"]
    unacked_before = _scan(redis_cluster, "*:unacked*")
    sent = 0
    started = time.monotonic()
    with app.connection_for_write() as conn:
        wait_until(lambda: bool(app.control.ping(destination=dest, timeout=2, connection=conn)), 30,
                   "first pong (pidbox subscription)")  # fmt: skip
        started = time.monotonic()
        for sent in range(1, PINGS + 1):
            assert app.control.ping(destination=dest, timeout=5, connection=conn) == [
                {"pinged@localhost": {"ok": "pong"}}
            ]
            if sent == PINGS // 2:  # while the reply queue is consumed: nothing recorded for it
                during = _scan(redis_cluster, "*:unacked*")
                assert not [k for k in during if "reply.celery.pidbox" in k], during
                assert not {k: n for k, n in during.items() if n > unacked_before.get(k, 0)}, during
        elapsed = time.monotonic() - started
    print(f"\n{sent} inspect pings in {elapsed:.1f}s ({sent / elapsed:.0f}/s)")
    assert sent == PINGS
    assert _scan(redis_cluster, "*reply.celery.pidbox*") == {}
    grown = {k: n for k, n in _scan(redis_cluster, "*:unacked*").items() if n > unacked_before.get(k, 0)}
    assert not grown, grown


@pytest.mark.parametrize("bound", [True, False], ids=["via-declaring-channel", "default-exchange-other-process"])
def test_queue_delete_deletes_its_unacked_hash_index_and_wake_list(redis_cluster, bound):
    name = _name("del")
    queue = Queue(name, Exchange(name + "-ex", "direct"), routing_key=name) if bound else Queue(name)
    with Connection(redis_cluster.url()) as conn, Connection(redis_cluster.url()) as other:
        producer = Producer(conn)
        for i in range(4):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, declare=[queue])
        got = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: got.append(m)], prefetch_count=2):
            drain(conn, got, 2)
            assert len(got) == 2  # two unacked, two waiting with their wake tokens
            present = _tagged_keys(redis_cluster, name)
            assert {keys.unacked(name), keys.unacked_index(name), keys.wake_list(name)} <= set(present), present
            queue(conn.default_channel if bound else other.default_channel).delete()
            assert _tagged_keys(redis_cluster, name) == []
    # closing the consumer tried to restore its two unacked messages: nothing comes back to life
    assert _tagged_keys(redis_cluster, name) == []


def test_basic_get_no_ack_records_nothing_unacked(redis_cluster):
    """A no_ack get (kombu's SimpleQueue(no_ack=True), ``basic_get(no_ack=True)``) is never acked: were it
    recorded, the visibility sweep would deliver the message a second time."""
    queue = Queue(_name("getnoack"))
    with Connection(redis_cluster.url(), transport_options={"visibility_timeout": 1}) as conn:
        Producer(conn).publish({"n": 1}, routing_key=queue.name, declare=[queue])
        channel = conn.default_channel
        assert channel.basic_get(queue.name, no_ack=True).payload == {"n": 1}
        present = _tagged_keys(redis_cluster, queue.name)
        assert keys.unacked(queue.name) not in present and keys.unacked_index(queue.name) not in present, present
        time.sleep(1.5)
        assert channel.restore_visible() == 0 and channel.basic_get(queue.name, no_ack=True) is None


# == 2. restored messages carry redelivered ========================================================================
def test_restored_message_is_marked_redelivered(redis_cluster):
    queue = Queue(_name("redeliver"))
    url = redis_cluster.url()
    with Connection(url) as conn:
        Producer(conn).publish({"n": 1}, routing_key=queue.name, declare=[queue])
        first = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: first.append(m)]):
            drain(conn, first, 1)
    # closed without ack: restored to the head of the queue
    assert len(first) == 1
    assert not first[0].delivery_info.get("redelivered")
    assert not first[0].headers.get("redelivered")
    with Connection(url) as conn:
        again = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: (again.append(m), m.ack())]):
            drain(conn, again, 1)
    assert len(again) == 1 and again[0].payload == {"n": 1}
    assert again[0].delivery_info["redelivered"] is True
    assert again[0].headers["redelivered"] is True
    assert again[0].delivery_tag == first[0].delivery_tag


# == 3. under raise, an ack's shortfall never switches WAIT off for publishes ======================================
def test_ack_shortfall_does_not_switch_off_wait_for_publishes_under_raise(own_cluster):
    cluster = own_cluster
    wait_replicas_in_sync(cluster)
    opts = {
        "replication_wait_replicas": 1,
        "replication_wait_timeout_ms": 300,
        "replication_wait_policy": "raise",
        "replication_wait_on": "publish,ack",  # acks wait too (by default only publishes do)
    }
    queue = Queue(_name("raise"))
    master = cluster.master_for_slot(keys.queue_slot(queue.name))
    (replica,) = cluster.replicas_of(master)
    with Connection(cluster.url(), transport_options=opts) as conn:
        producer = Producer(conn)
        for i in range(2):
            producer.publish({"i": i}, routing_key=queue.name, declare=[queue])  # in sync: acknowledged
        got = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: got.append(m)], prefetch_count=2):
            drain(conn, got, 2)
            assert len(got) == 2
            replica.freeze()
            try:
                with master.client() as admin:  # the master now has no replica: WAIT can only come back short
                    admin.execute_command("CLIENT KILL TYPE replica")
                started = time.monotonic()
                got[0].ack()  # shortfall on an ack: warned, and WAIT skipped for acks on that node
                first_ack = time.monotonic() - started
                started = time.monotonic()
                got[1].ack()
                second_ack = time.monotonic() - started
                router = conn.transport.router
                assert any(kind == "ack" for _node, kind in router._skip_wait_until), router._skip_wait_until
                for i in range(3):  # publishes keep waiting, and keep being refused
                    with pytest.raises(ReplicationWaitError, match="replication_wait_policy=raise"):
                        producer.publish({"i": 10 + i}, routing_key=queue.name)
                assert not any(kind == "publish" for _node, kind in router._skip_wait_until)
            finally:
                replica.thaw()
    print(f"\nack with shortfall {first_ack * 1000:.0f} ms, next ack (WAIT skipped) {second_ack * 1000:.0f} ms")
    assert first_ack >= 0.25 and second_ack < 0.25


# == 4. closing on a dead master does not block ====================================================================
def test_close_with_unacked_messages_on_a_frozen_master_returns_within_socket_timeout(tmp_path, redis_bin):
    """No replicas: nothing fails over while the master is frozen, so close meets a dead master for sure."""
    cluster = RedisCluster(base_dir=tmp_path / "frozen", password=secrets.token_hex(8), replicas_per_master=0,
                           bin_dir=redis_bin)  # fmt: skip
    socket_timeout, n = 1.0, 5
    opts = {"socket_timeout": socket_timeout, "socket_connect_timeout": 1, "replication_wait_replicas": 0,
            "failover_timeout": 10}  # fmt: skip
    queue = Queue(_name("frozen"))
    try:
        cluster.start()
        master = cluster.master_for_slot(keys.queue_slot(queue.name))
        conn = Connection(cluster.url(), transport_options=opts)
        producer = Producer(conn)
        for i in range(n):
            producer.publish({"i": i}, routing_key=queue.name, declare=[queue])
        got = []
        consumer = Consumer(conn, [queue], callbacks=[lambda body, m: got.append(m)], prefetch_count=n)
        consumer.consume()
        drain(conn, got, n)
        assert len(got) == n
        master.freeze()
        try:
            exc, took = _no_hang(conn.close, limit=120)
        finally:
            master.thaw()
        print(f"\nclose with {n} unacked on a frozen master: {took:.2f}s (socket_timeout={socket_timeout:g}s)")
        assert not isinstance(exc, BaseException), exc
        assert took < 2 * socket_timeout + 2, f"close took {took:.1f}s"
        # what could not be restored stayed unacked on the master: the visibility sweep returns all of it
        cluster.wait_healthy()
        back = []
        on_back = lambda body, m: (back.append(body["i"]), m.ack())  # noqa: E731
        with (
            Connection(cluster.url(), transport_options={**opts, "visibility_timeout": 1}) as conn2,
            Consumer(conn2, [queue], callbacks=[on_back]),
        ):
            drain(conn2, back, n, timeout=30)
        assert sorted(back) == list(range(n))
    finally:
        cluster.stop()


def test_an_ack_an_outage_held_back_frees_the_slot_and_is_sent_once_the_master_answers(tmp_path, redis_bin):
    """Found on the 3-node cluster: acks to a master that was away longer than failover_timeout failed
    ("Couldn't ack"), each left its prefetch slot taken, and the workers never consumed again. Now the slot is
    freed at once and the ack goes out when the master is back: nothing stays unacked."""
    cluster = RedisCluster(base_dir=tmp_path / "late-ack", password=secrets.token_hex(8), replicas_per_master=0,
                           bin_dir=redis_bin)  # fmt: skip
    opts = {"socket_timeout": 1, "socket_connect_timeout": 1, "replication_wait_replicas": 0,
            "failover_timeout": 2}  # fmt: skip
    queue = Queue(_name("late-ack"))
    try:
        cluster.start()
        master = cluster.master_for_slot(keys.queue_slot(queue.name))
        with Connection(cluster.url(), transport_options=opts) as conn:
            producer = Producer(conn)
            for i in range(2):
                producer.publish({"i": i}, routing_key=queue.name, declare=[queue])
            got = []
            consumer = Consumer(conn, [queue], callbacks=[lambda body, m: got.append(m)], prefetch_count=1)
            consumer.consume()
            drain(conn, got, 1)
            assert [m.payload["i"] for m in got] == [0]
            master.freeze()
            try:
                started = time.monotonic()
                got[0].ack()  # the master is away past failover_timeout: held back, not raised
                held = time.monotonic() - started
                assert conn.default_channel._late_acks, "the ack should be held back"
            finally:
                master.thaw()
            drain(conn, got, 2, timeout=30)  # the freed slot takes the next message
            assert [m.payload["i"] for m in got] == [0, 1]
            got[1].ack()
            wait_until(lambda: not conn.default_channel._late_acks, 30, "the held-back ack sent")
            unacked = _scan(cluster, keys.unacked(queue.name))
            print(f"\nack on a frozen master: held back after {held:.1f}s; sent after SIGCONT; unacked now {unacked}")
            assert not any(unacked.values()), unacked
    finally:
        cluster.stop()


def test_an_idle_consumer_waiting_on_a_frozen_master_consumes_from_the_promoted_replica(tmp_path, redis_bin):
    """Found on the 3-node cluster after every Redis pod was restarted at once: a consumer's BLPOP sent to a
    master that then vanished without closing the connection (a frozen process, a deleted pod's IP, a cut
    node) never answers and never errors, and the queue was never read again. A wait now has a deadline
    (BLPOP timeout + socket_timeout): past it the connection is dropped and the queue is read at its new
    master, while the old one is still frozen."""
    cluster = RedisCluster(base_dir=tmp_path / "frozen-wait", password=secrets.token_hex(8), bin_dir=redis_bin)
    opts = {"socket_timeout": 1, "socket_connect_timeout": 1, "replication_wait_replicas": 0,
            "failover_timeout": 30}  # fmt: skip
    queue = Queue(_name("frozen-wait"))
    try:
        cluster.start()
        wait_replicas_in_sync(cluster)
        master = cluster.master_for_slot(keys.queue_slot(queue.name))
        with Connection(cluster.url(), transport_options=opts) as conn:
            got = []
            on_msg = lambda body, m: (got.append(body["i"]), m.ack())  # noqa: E731
            with Consumer(conn, [queue], callbacks=[on_msg], prefetch_count=1):
                Producer(conn).publish({"i": 0}, routing_key=queue.name, declare=[queue])
                drain(conn, got, 1)  # the consumer is idle now, its BLPOP armed on the master
                with contextlib.suppress(TimeoutError, OSError):
                    conn.drain_events(timeout=0.5)
                master.freeze()
                try:
                    frozen_at = time.monotonic()
                    wait_until(lambda: cluster.master_for_slot(keys.queue_slot(queue.name)).port != master.port,
                               30, "the replica to take over the frozen master's slots", interval=0.2)  # fmt: skip
                    with Connection(cluster.url(), transport_options=opts) as publisher:
                        Producer(publisher).publish({"i": 1}, routing_key=queue.name, declare=[queue])
                    drain(conn, got, 2, timeout=30)
                    took = time.monotonic() - frozen_at
                finally:
                    master.thaw()
        print(f"\nidle consumer, its master frozen: consumed from the promoted replica {took:.1f}s after the freeze")
        assert got == [0, 1]
    finally:
        cluster.stop()


def _broadcast_until_received(conn, url, opts, exchange, n, got, timeout: float) -> None:
    """A broadcast reaches live subscribers only: send it once a second until the consumer has it."""
    deadline = time.monotonic() + timeout
    with Connection(url, transport_options=opts) as publisher:
        while n not in got and time.monotonic() < deadline:
            Producer(publisher).publish({"n": n}, exchange=exchange)
            with contextlib.suppress(TimeoutError, OSError):
                conn.drain_events(timeout=1.0)


def test_a_fanout_subscriber_on_a_frozen_master_resubscribes_at_the_promoted_replica(tmp_path, redis_bin):
    """The same for broadcasts (Celery's remote control: revoke, inspect): a pub/sub connection only reads,
    so a master gone silent left it subscribed to nothing. Its PING now goes unanswered, and the channel is
    subscribed again at the promoted replica while the old master is still frozen."""
    cluster = RedisCluster(base_dir=tmp_path / "frozen-sub", password=secrets.token_hex(8), bin_dir=redis_bin)
    opts = {"socket_timeout": 1, "socket_connect_timeout": 1, "replication_wait_replicas": 0,
            "failover_timeout": 30}  # fmt: skip
    exchange = Exchange(_name("frozen-bcast"), "fanout")
    slot = key_slot(keys.fanout_channel(exchange.name).encode())
    try:
        cluster.start()
        wait_replicas_in_sync(cluster)
        master = cluster.master_for_slot(slot)
        with Connection(cluster.url(), transport_options=opts) as conn:
            got = []
            queue = Queue(_name("bq"), exchange)
            with Consumer(conn, [queue], callbacks=[lambda body, m: got.append(body["n"])], no_ack=True):
                _broadcast_until_received(conn, cluster.url(), opts, exchange, 0, got, timeout=20)
                assert got == [0], "no broadcast reached the subscriber before the freeze"
                master.freeze()
                try:
                    frozen_at = time.monotonic()
                    wait_until(lambda: cluster.master_for_slot(slot).port != master.port, 30,
                               "the replica to take over the frozen master's slots", interval=0.2)  # fmt: skip
                    _broadcast_until_received(conn, cluster.url(), opts, exchange, 1, got, timeout=30)
                    took = time.monotonic() - frozen_at
                finally:
                    master.thaw()
        print(
            f"\nfanout subscriber, its master frozen: a broadcast arrived via the promoted replica {took:.1f}s "
            f"after the freeze"
        )
        assert 1 in got, "no broadcast arrived while the old master was frozen"
    finally:
        cluster.stop()


# == 5. a live reshard of a busy queue's slot ======================================================================
def test_live_reshard_of_a_busy_queue_loses_nothing(redis_cluster):
    cluster = redis_cluster
    busy, slot, src, src_id, dst, dst_id = _name_on_lowest_slot(cluster, keys.queue_slot, "resh")
    others = [_name("resh-o1"), _name("resh-o2")]
    names = [busy, *others]
    url = cluster.url()
    received: list[tuple[str, int, float]] = []
    acknowledged: dict[str, list[int]] = {q: [] for q in names}
    errors: list[BaseException] = []
    stop_publishing, stop_consuming, subscribed = threading.Event(), threading.Event(), threading.Event()

    def consume():
        try:
            with Connection(url) as conn:
                on_message = lambda body, m: (received.append((body["q"], body["i"], time.monotonic())), m.ack())  # noqa: E731
                with Consumer(conn, [Queue(q) for q in names], callbacks=[on_message], prefetch_count=10):
                    subscribed.set()
                    while not stop_consuming.is_set():
                        with contextlib.suppress(TimeoutError):
                            conn.drain_events(timeout=0.2)
        except BaseException as exc:
            errors.append(exc)

    def publish():
        try:
            with Connection(url) as conn:
                producer = Producer(conn)
                for i in count():
                    if stop_publishing.is_set():
                        return
                    for q in names if i % 5 == 0 else [busy]:
                        producer.publish({"q": q, "i": i}, routing_key=q, declare=[Queue(q)])
                        acknowledged[q].append(i)
                    time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume, daemon=True), threading.Thread(target=publish, daemon=True)]
    threads[0].start()
    assert subscribed.wait(30)
    threads[1].start()
    try:
        wait_until(lambda: sum(1 for r in received if r[0] == busy) >= 50 or errors, 30, "traffic before reshard")
        assert not errors, errors
        t0 = time.monotonic()
        _reshard_one_slot(cluster, src_id, dst_id)
        t1 = time.monotonic()
        _wait_moved(cluster, slot, dst)
        time.sleep(2)  # traffic after the move
        stop_publishing.set()
        threads[1].join(60)
        assert not threads[1].is_alive()
        wanted = {(q, i) for q, ids in acknowledged.items() for i in ids}
        wait_until(lambda: wanted <= {(q, i) for q, i, _t in received} or errors, 30, "every message consumed")
    finally:
        stop_publishing.set()
        stop_consuming.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    got = {(q, i) for q, i, _t in received}
    lost = wanted - got
    times = [t for q, _i, t in received if q == busy and t0 - 1 <= t <= t1 + 3]
    gap = max((b - a for a, b in pairwise(times)), default=float("nan"))
    dupes = len(received) - len(got)
    print(f"\nreshard of slot {slot} ({src}->{dst}) took {t1 - t0:.2f}s; {len(wanted)} published, {len(lost)} lost, "
          f"{dupes} duplicated; longest delivery gap on the moved queue {gap * 1000:.0f} ms")  # fmt: skip
    assert not lost, sorted(lost)[:10]
    assert cluster.master_for_slot(slot).port == dst
    assert _tagged_keys(cluster, busy) == []  # none stuck: every list empty, nothing unacked, no stale wake token
    assert gap < 5.0


# == 6. server-pushed sunsubscribe resubscribes at once ===========================================================
def test_fanout_consumer_resubscribes_at_once_when_its_slot_moves(redis_cluster):
    cluster = redis_cluster
    exchange_name, slot, _src, src_id, dst, dst_id = _name_on_lowest_slot(
        cluster, lambda name: key_slot(keys.fanout_channel(name).encode()), "bcast"
    )
    chan = keys.fanout_channel(exchange_name)
    exchange = Exchange(exchange_name, "fanout")
    url = cluster.url()
    got: list[tuple[str, float]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    box = {}

    def consume():
        try:
            with Connection(url) as conn:
                conn.ensure_connection(max_retries=3)
                box["drain"] = conn.transport.drain
                queue = Queue(_name("bq"), exchange)
                with Consumer(conn, [queue], callbacks=[lambda b, m: got.append((b["n"], time.monotonic()))],
                              no_ack=True):  # fmt: skip
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            conn.drain_events(timeout=0.2)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        wait_until(lambda: ("drain" in box and chan in box["drain"]._sub_node) or errors, 30, "subscribed")
        old_node = box["drain"]._sub_node[chan]
        with Connection(url) as publisher:
            producer = Producer(publisher)
            producer.publish({"n": "before"}, exchange=exchange)
            wait_until(lambda: [n for n, _t in got] == ["before"], 10, "broadcast before the move")
            _reshard_one_slot(cluster, src_id, dst_id)
            moved = time.monotonic()
            dst_name = f"127.0.0.1:{dst}"
            wait_until(lambda: box["drain"]._sub_node.get(chan) == dst_name, 10, "resubscribed on the new owner")
            resubscribed = time.monotonic() - moved
            time.sleep(max(0.0, moved + 1.0 - time.monotonic()))
            producer.publish({"n": "after"}, exchange=exchange)
            sent = time.monotonic()
            wait_until(lambda: "after" in [n for n, _t in got], 10, "broadcast after the move")
        latency = dict(got)["after"] - sent
    finally:
        stop.set()
        thread.join(30)
    cluster.wait_healthy()
    print(f"\nfanout slot {slot} moved {old_node} -> {dst_name}: resubscribed {resubscribed * 1000:.0f} ms after the "
          f"move; broadcast 1 s later received in {max(latency, 0) * 1000:.0f} ms")  # fmt: skip
    assert not errors, errors
    assert resubscribed < 1.0  # the server's sunsubscribe, not a 1 s sweep or timeout
    assert [n for n, _t in got] == ["before", "after"]


# == 7. transient cluster states are retried ======================================================================
def test_nodes_without_slots_are_retried_until_the_cluster_is_created(tmp_path, redis_bin):
    password = "S3cr3t/pa:ss@w%rd"
    with _lone_node(tmp_path / "lone", redis_bin, password) as node:
        url = _lone_url(node, password)
        with pytest.raises(BrokerUnavailable) as info:
            check_cluster(parse(url), BrokerOptions())
        assert not isinstance(info.value, BrokerClusterError)
        assert "the cluster has not been created" in str(info.value)
        retries = []
        conn = Connection(url, transport_options={"replication_wait_replicas": 0, "socket_connect_timeout": 1})
        result = {}

        def connect():
            try:
                result["conn"] = conn.ensure_connection(
                    max_retries=100, interval_start=0.2, interval_step=0.2, interval_max=0.3,
                    errback=lambda exc, interval: retries.append(str(exc)),
                )  # fmt: skip
            except BaseException as exc:
                result["exc"] = exc

        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        try:
            wait_until(lambda: len(retries) >= 3 or not thread.is_alive(), 30, "connection retries")
            assert thread.is_alive(), result
            with node.client(decode_responses=True) as admin:  # what the bootstrap Job does, on one node
                admin.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
            thread.join(30)
            assert not thread.is_alive() and "exc" not in result, result
            assert any("the cluster has not been created" in r for r in retries), retries
            assert all("retried" in r for r in retries), retries  # then cluster_state=fail while it settles
            queue = Queue(_name("created"))
            Producer(conn).publish({"ok": 1}, routing_key=queue.name, declare=[queue])
            got = []
            with Consumer(conn, [queue], callbacks=[lambda b, m: (got.append(b), m.ack())]):
                drain(conn, got, 1)
            assert got == [{"ok": 1}]
        finally:
            conn.release()
    print(f"\nretried {len(retries)} times while no slot was assigned, then connected")


# == 8. a password with @ : / % works URL-encoded against a node that requires it ================================
def test_url_encoded_password_with_special_characters_authenticates(tmp_path, redis_bin):
    password = "S3cr3t/pa:ss@w%rd"
    with _lone_node(tmp_path / "pw", redis_bin, password) as node:
        with node.client(decode_responses=True) as admin:
            admin.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
        wait_until(lambda: node.cluster_info()["cluster_state"] == "ok", 15, "cluster_state:ok")
        with pytest.raises(redis.AuthenticationError):  # the node really requires it
            redis.Redis(port=node.port, password="wrong").ping()
        queue = Queue(_name("pw"))
        with Connection(_lone_url(node, password), transport_options={"replication_wait_replicas": 0}) as conn:
            conn.ensure_connection(max_retries=3)
            assert password not in conn.as_uri() and quote(password, safe="") not in conn.as_uri()
            Producer(conn).publish({"ok": 1}, routing_key=queue.name, declare=[queue])
            got = []
            with Consumer(conn, [queue], callbacks=[lambda b, m: (got.append(b), m.ack())]):
                drain(conn, got, 1)
        assert got == [{"ok": 1}]


# == 9. one selectors poll; the wake pipe lives and dies with the connection =====================================
def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def test_selectors_poll_past_fd_1024_and_wake_pipe_closed_with_the_connection(redis_cluster):
    source = inspect.getsource(consumer_module)
    assert "select.select" not in source and "selectors.DefaultSelector()" in source
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        if hard != resource.RLIM_INFINITY and hard < 2048:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 2048: cannot put sockets past fd 1024")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # select.select would fail past 1024
    queue = Queue(_name("pipe"))
    try:
        before = _open_fds()
        conn = Connection(redis_cluster.url())
        assert conn.transport.drain is None  # no pipe before the connection opens
        for round_ in range(2):  # connect, consume, close; then the same Connection again
            conn.ensure_connection(max_retries=3)
            transport = conn.transport  # kombu makes a new Transport on reconnect
            loop = transport.drain
            assert loop is not None and loop._wake_r >= 0 and loop._wake_w >= 0
            os.fstat(loop._wake_r)
            Producer(conn).publish({"round": round_}, routing_key=queue.name, declare=[queue])
            got = []
            with Consumer(conn, [queue], callbacks=[lambda b, m, got=got: (got.append(b), m.ack())]):
                drain(conn, got, 1)
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.3)  # idle: the waiter blocks on the wake list now
                socks = [w.sock.fileno() for w in loop._waiters.values() if w.sock is not None]
            assert got == [{"round": round_}]
            assert socks and min(socks) > 1024, socks
            conn.close()
            assert transport.drain is None
            assert loop._wake_r == loop._wake_w == -1
            leaked = _open_fds() - before
            assert not leaked, {
                fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")
            }
    finally:
        for fd in padding:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# == 10. a publish wakes ONE consumer ============================================================================
def _script_calls(node: RedisNode) -> int:
    stats = node.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


def test_a_publish_wakes_one_of_four_blocked_consumers(redis_cluster):
    cluster = redis_cluster
    queue = Queue(_name("wake1"))
    master = cluster.master_for_slot(keys.queue_slot(queue.name))
    url = cluster.url()
    opts = {"poll_sweep_interval": 3600, "visibility_sweep_interval": 3600}  # no periodic reads: only wake-ups
    got: list[tuple[int, dict]] = []
    drains = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def consume(index: int):
        try:
            with Connection(url, transport_options=opts) as conn:
                conn.ensure_connection(max_retries=3)
                drains[index] = conn.transport.drain
                with Consumer(conn, [queue], callbacks=[lambda b, m: got.append((index, b))], prefetch_count=1):
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            conn.drain_events(timeout=0.2)
        except BaseException as exc:
            errors.append(exc)

    with Connection(url, transport_options=opts) as publisher:
        producer = Producer(publisher)
        producer.publish({"n": "warm-up"}, routing_key=queue.name, declare=[queue])  # loads the scripts there
        with Connection(url) as conn:
            assert conn.default_channel.basic_get(queue.name, no_ack=True).payload == {"n": "warm-up"}
        threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        try:

            def all_blocked():
                if len(drains) < 4 or errors:
                    return bool(errors)
                return all(d._waiters and all(w.armed for w in d._waiters.values()) for d in drains.values())

            wait_until(all_blocked, 30, "4 consumers blocked on the queue's wake list")
            assert not errors, errors
            time.sleep(0.3)
            calls = _script_calls(master)
            producer.publish({"n": 1}, routing_key=queue.name)
            wait_until(lambda: bool(got), 10, "delivery")
            time.sleep(1.0)  # room for any other consumer to wake and read in vain
            scripts_run = _script_calls(master) - calls
            delivered = list(got)  # (closing a consumer restores its unacked message to the others)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    print(f"\n1 publish, 4 blocked consumers: {len(delivered)} delivery, {scripts_run} scripts on the master")
    assert not errors, errors
    assert [b for _i, b in delivered] == [{"n": 1}]
    assert scripts_run == 2  # the publish's PUT and ONE consumer's GET; waking all four would make it 5


def _calls(node: RedisNode, *commands: str) -> int:
    stats = node.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in commands)


def test_a_backlog_keeps_one_wake_token_on_its_master_and_none_on_the_replica(redis_cluster):
    """Tokens are not replicated (a replica applies only the messages: one LPUSH per publish, no MULTI/EXEC),
    and a publish adds one only when none is waiting: 20 messages with nobody consuming leave ONE token."""
    cluster = redis_cluster
    wait_replicas_in_sync(cluster)
    queue = Queue(_name("tokens"))
    master = cluster.master_for_slot(keys.queue_slot(queue.name))
    replica = cluster.replicas_of(master)[0]
    p0, wake = keys.priority_list(queue.name, 0), keys.wake_list(queue.name)
    with Connection(cluster.url()) as conn:
        producer = Producer(conn)
        producer.publish({"i": -1}, routing_key=queue.name, declare=[queue])  # loads the script on that master
        applied = _calls(replica, "lpush", "rpush", "multi", "exec")
        for i in range(20):
            producer.publish({"i": i}, routing_key=queue.name)  # returns once the replica holds it (WAIT)
        applied = _calls(replica, "lpush", "rpush", "multi", "exec") - applied
        with master.client() as m, replica.client() as r:
            r.execute_command("READONLY")  # a replica answers reads of its master's slots on this connection
            assert (m.llen(p0), m.llen(wake)) == (21, 1)
            assert (r.llen(p0), r.exists(wake)) == (21, 0)
        assert applied == 20, applied  # one LPUSH per publish, nothing else
        got = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: (got.append(body["i"]), m.ack())], prefetch_count=1):
            drain(conn, got, 21)
    assert got == list(range(-1, 20))
    assert _tagged_keys(cluster, queue.name) == []  # no stale token, nothing unacked


def _lost_token_message(channel, queue: str, body: dict) -> str:
    """A message as a publish stores it, for a queue whose wake token was lost (a failover takes them all)."""
    message = channel.prepare_message(json.dumps(body), content_type="application/json", content_encoding="utf-8")
    channel._inplace_augment_message(message, "", queue)
    return json.dumps(message)


def test_an_idle_consumer_looks_with_exists_and_reads_what_a_lost_token_left(redis_cluster):
    """An idle consumer's periodic safety read is one EXISTS (no script, no write) while its queue is empty,
    and it still delivers a message that has no wake token, as after a failover."""
    cluster = redis_cluster
    queue = Queue(_name("idle"))
    master = cluster.master_for_slot(keys.queue_slot(queue.name))
    opts = {"poll_sweep_interval": 0.2, "visibility_sweep_interval": 3600}
    got = []
    with Connection(cluster.url(), transport_options=opts) as conn:
        queue(conn.default_channel).declare()
        with Consumer(conn, [queue], callbacks=[lambda body, m: (got.append(body), m.ack())], prefetch_count=1):
            with pytest.raises(TimeoutError):  # the first read (a new consumer reads at once): empty
                conn.drain_events(timeout=0.3)
            scripts_before, exists_before = _calls(master, "evalsha", "eval"), _calls(master, "exists")
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=2.0)
            scripts = _calls(master, "evalsha", "eval") - scripts_before
            looks = _calls(master, "exists") - exists_before
            assert not got
            with master.client() as m:  # the message, not its token: only the safety read can find it
                item = _lost_token_message(conn.default_channel, queue.name, {"n": 1})
                m.lpush(keys.priority_list(queue.name, 0), item)
                assert not m.exists(keys.wake_list(queue.name))
            started = time.monotonic()
            drain(conn, got, 1, timeout=10)
            found_after = time.monotonic() - started
    print(f"\nidle 2 s at poll_sweep_interval 0.2: {looks} EXISTS, {scripts} scripts; a tokenless message after "
          f"{found_after:.2f}s")  # fmt: skip
    assert scripts == 0, scripts
    assert looks >= 4, looks
    assert got == [{"n": 1}]
    assert found_after < 2.0


def test_scripts_flushed_on_the_masters_are_loaded_again_without_wait(redis_cluster):
    """A script a master does not know (restarted empty, SCRIPT FLUSH) is sent with EVAL, with or without the
    replication wait (without it the script is sent alone, not in a pipeline)."""
    cluster = redis_cluster
    for wait in (0, 1):
        queue = Queue(_name(f"flush{wait}"))
        got = []
        with Connection(cluster.url(), transport_options={"replication_wait_replicas": wait}) as conn:
            producer = Producer(conn)
            producer.publish({"i": 0}, routing_key=queue.name, declare=[queue])
            for master in cluster.master_nodes():
                with master.client() as m:
                    m.script_flush()
            producer.publish({"i": 1}, routing_key=queue.name)
            for master in cluster.master_nodes():
                with master.client() as m:
                    m.script_flush()
            on_message = lambda body, m, got=got: (got.append(body["i"]), m.ack())  # noqa: E731
            with Consumer(conn, [queue], callbacks=[on_message]):
                drain(conn, got, 2)
        assert got == [0, 1], (wait, got)
        assert _tagged_keys(cluster, queue.name) == []


# == a master crashing and restarting inside cluster-node-timeout (no failover) ======================================
def test_master_crash_and_fast_restart_keeps_every_acknowledged_publish(own_cluster):
    """SIGKILL a queue's master right after a run of acknowledged publishes and start it again well inside
    cluster-node-timeout: no failover happens, the master reloads its own AOF and its replica resyncs from
    it, so only what the master had written to its AOF survives (with ``appendonly no`` it would reload an
    older snapshot and lose them). The chart's ``appendfsync always`` also keeps them when a slow fsync made
    ``everysec`` postpone the AOF write past the reply, and through a kernel crash."""
    cluster = own_cluster
    wait_replicas_in_sync(cluster)
    queue = Queue(_name("crash-restart"))
    master = cluster.master_for_slot(keys.queue_slot(queue.name))
    with master.client(decode_responses=True) as admin:
        assert admin.config_get("appendfsync")["appendfsync"] == "always"
    sent = 300
    with Connection(cluster.url()) as conn:
        producer = Producer(conn)
        for i in range(sent):
            producer.publish({"i": i}, routing_key=queue.name, declare=[queue] if i == 0 else [])
    started = time.monotonic()
    cluster.kill(master)
    cluster.restart(master)
    down_for = time.monotonic() - started
    wait_until(lambda: master.running and master.role() == "master", 30, "the restarted master serving again")
    assert down_for * 1000 < cluster.node_timeout_ms, f"down {down_for:.2f}s: a failover could have happened"
    got = []
    with (
        Connection(cluster.url()) as conn,
        Consumer(conn, [queue], callbacks=[lambda body, m: (got.append(body["i"]), m.ack())]),
    ):
        drain(conn, got, sent, timeout=60)
    print(f"\nmaster down {down_for * 1000:.0f} ms (node timeout {cluster.node_timeout_ms} ms): {len(set(got))}/{sent}")
    assert sorted(set(got)) == list(range(sent))
