"""The transport through plain kombu on the real cluster: priorities, prefetch, fanout, bad input."""

from __future__ import annotations

import secrets
import threading

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import OperationalError

import airflow_ha.broker
from airflow_ha.broker import keys
from airflow_ha.broker.errors import BrokerAuthError, BrokerClusterError, BrokerUnavailable
from airflow_ha.broker.url import BrokerURLError
from tests.harness.servers.process import free_port
from tests.integration.broker.conftest import drain

pytestmark = pytest.mark.integration
airflow_ha.broker.register()


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _no_hang(fn, limit=60):
    """Run fn in a thread; return its exception. Fails (instead of hanging the suite) if it never returns."""
    box = {}

    def run():
        try:
            fn()
        except BaseException as exc:
            box["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still blocked after {limit}s: start-up must fail, not hang"
    return box.get("exc")


def test_priority_zero_served_first_like_kombu_redis(redis_cluster):
    queue = Queue(_name("prio"), Exchange("prio-ex", "direct"), routing_key="prio")
    with Connection(redis_cluster.url()) as conn:
        producer = Producer(conn)
        order = [9, 5, 0, 3, 7, 1, 9, 0]
        for i, pri in enumerate(order):
            producer.publish({"i": i, "pri": pri}, exchange=queue.exchange, routing_key="prio",
                             declare=[queue], priority=pri)  # fmt: skip
        got = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: (got.append(body), m.ack())]):
            drain(conn, got, len(order))
    steps = [keys.step_for(b["pri"]) for b in got]
    assert steps == sorted(steps), got  # step 0 (priorities 0-2) first, then 3-5, 6-8, 9
    # FIFO inside a step
    assert [b["i"] for b in got if keys.step_for(b["pri"]) == 0] == [2, 5, 7]


def test_prefetch_is_honoured_and_ack_frees_a_slot(redis_cluster):
    queue = Queue(_name("prefetch"))
    with Connection(redis_cluster.url()) as conn:
        producer = Producer(conn)
        for i in range(5):
            producer.publish({"i": i}, routing_key=queue.name, declare=[queue])
        got = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: got.append(m)]) as consumer:
            consumer.qos(prefetch_count=2)
            drain(conn, got, 5, timeout=4)  # only 2 may arrive while none is acked
            assert len(got) == 2
            got[0].ack()
            drain(conn, got, 3, timeout=10)
            assert len(got) == 3
            for m in got[1:]:
                m.ack()
            drain(conn, got, 5, timeout=10)
            assert [m.payload["i"] for m in got] == [0, 1, 2, 3, 4]
            for m in got[3:]:
                m.ack()
        assert conn.default_channel._size(queue.name) == 0


def test_reject_requeue_and_restore_at_close(redis_cluster):
    queue = Queue(_name("requeue"))
    url = redis_cluster.url()
    with Connection(url) as conn:
        Producer(conn).publish({"n": 1}, routing_key=queue.name, declare=[queue])
        got = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: got.append(m)]):
            drain(conn, got, 1)
            got[0].reject(requeue=True)
            drain(conn, got, 2)
        assert len(got) == 2 and got[1].payload == {"n": 1}
        # got[1] is neither acked nor rejected: closing the connection restores it (warm shutdown path)
    with Connection(url) as conn:
        channel = conn.default_channel
        assert channel._size(queue.name) == 1
        client = conn.transport.cluster
        assert client.hlen(keys.unacked(queue.name)) == 0


def test_visibility_timeout_restores_unacked_of_a_dead_consumer(redis_cluster):
    queue = Queue(_name("vt"))
    url = redis_cluster.url()
    opts = {"visibility_timeout": 1}
    dead = Connection(url, transport_options=opts)
    Producer(dead).publish({"n": 7}, routing_key=queue.name, declare=[queue])
    got = []
    consumer = Consumer(dead, [queue], callbacks=[lambda body, m: got.append(m)])
    consumer.consume()
    drain(dead, got, 1)
    assert len(got) == 1
    # simulate a crash: the connection vanishes without ack and without the shutdown restore
    dead.default_channel.qos.restore_at_shutdown = False
    dead.transport.cluster.close()
    assert dead.transport.cluster is not None
    with Connection(url, transport_options=opts) as conn:
        again = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: (again.append(body), m.ack())]):
            drain(conn, again, 1, timeout=30)
    assert again == [{"n": 7}]


def test_fanout_reaches_every_bound_consumer(redis_cluster):
    exchange = Exchange(_name("bcast"), "fanout")
    url = redis_cluster.url()
    with Connection(url) as c1, Connection(url) as c2:
        got1, got2 = [], []
        q1, q2 = Queue(_name("f1"), exchange), Queue(_name("f2"), exchange)
        with (
            Consumer(c1, [q1], callbacks=[lambda b, m: got1.append(b)], no_ack=True),
            Consumer(c2, [q2], callbacks=[lambda b, m: got2.append(b)], no_ack=True),
        ):
            for conn in (c1, c2):  # subscribe
                with pytest.raises(TimeoutError):
                    conn.drain_events(timeout=0.5)
            with Connection(url) as publisher:
                Producer(publisher).publish({"hello": "all"}, exchange=exchange)
            drain(c1, got1, 1)
            drain(c2, got2, 1)
    assert got1 == got2 == [{"hello": "all"}]


# -- bad input: each a clear error at connection establishment -------------------------------------------------
def test_malformed_url_is_named():
    with pytest.raises(BrokerURLError, match="bad port 'x'"):
        Connection("rediscluster://:pw@127.0.0.1:x,127.0.0.1:2").connect()


def test_unreachable_seeds_fail_fast_with_the_seeds_named():
    ports = [free_port(), free_port()]
    url = "rediscluster://:pw@" + ",".join(f"127.0.0.1:{p}" for p in ports)
    exc = _no_hang(lambda: Connection(url, transport_options={"socket_connect_timeout": 1}).connect())
    assert isinstance(exc, (OperationalError, BrokerUnavailable)), exc  # kombu may wrap it
    assert "no Redis Cluster seed node reachable" in str(exc)
    assert all(f"127.0.0.1:{p}" in str(exc) for p in ports)


def test_wrong_password_is_named(redis_cluster):
    url = redis_cluster.url().replace(redis_cluster.password, "not-the-password")
    exc = _no_hang(lambda: Connection(url).connect())
    assert isinstance(exc, BrokerAuthError), exc
    assert "refused the credentials" in str(exc)
    missing = redis_cluster.url().replace(f":{redis_cluster.password}@", "")
    exc = _no_hang(lambda: Connection(missing).connect())
    assert isinstance(exc, BrokerAuthError), exc


def test_plain_redis_server_is_named(redis_cluster, tmp_path):
    import subprocess

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        from tests.harness.waiting import wait_until

        wait_until(lambda: _pings(port), 10, "plain redis-server")
        exc = _no_hang(lambda: Connection(f"rediscluster://127.0.0.1:{port}").connect())
        assert isinstance(exc, BrokerClusterError) and "not a cluster node" in str(exc), exc
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(port):
    import redis

    try:
        return redis.Redis(port=port, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def test_uncovered_slots_are_named_and_retried(tmp_path):
    """Slots without an owner may be a cluster being created or repaired: retried, with the state named."""
    from tests.harness.servers.redis_cluster import RedisCluster
    from tests.harness.waiting import wait_until

    cluster = RedisCluster(base_dir=tmp_path / "gap", password=secrets.token_hex(8), replicas_per_master=0)
    try:
        cluster.start()
        for node in cluster.nodes:  # every node forgets slots 100-199: a gap the whole cluster agrees on
            with node.client() as conn:
                conn.execute_command("CLUSTER DELSLOTS", *range(100, 200))
        wait_until(lambda: all(n.cluster_info()["cluster_state"] == "fail" for n in cluster.nodes), 30,
                   "cluster_state:fail everywhere")  # fmt: skip
        exc = _no_hang(lambda: Connection(cluster.url()).connect())
        assert isinstance(exc, BrokerUnavailable) and not isinstance(exc, BrokerClusterError), exc
        assert "cluster_state=fail" in str(exc) and "16284 of 16384 slots assigned" in str(exc)
    finally:
        cluster.stop()


def test_consumer_is_woken_by_wake_tokens_on_every_master(redis_cluster):
    """With the safety read effectively off, only the wake tokens (BLPOP) can deliver these messages."""
    from tests.unit.broker.test_keys import QUEUES

    names = [f"{q}" for q in QUEUES]
    masters = {redis_cluster.master_for_slot(keys.queue_slot(q)).port for q in names}
    assert len(masters) == 3
    opts = {"poll_sweep_interval": 3600}
    queues = [Queue(n) for n in names]
    with Connection(redis_cluster.url(), transport_options=opts) as conn:
        for q in queues:
            q(conn.default_channel).declare()
            conn.default_channel.queue_purge(q.name)
        got = []
        with Consumer(conn, queues, callbacks=[lambda body, m: (got.append(body), m.ack())]):
            with pytest.raises(TimeoutError):  # first pass: every queue tried once, all empty; now subscribed
                conn.drain_events(timeout=0.5)
            assert not any(c._ready for c in conn.transport.channels)
            with Connection(redis_cluster.url()) as publisher:
                producer = Producer(publisher)
                for q in names:
                    producer.publish({"q": q}, routing_key=q)
            drain(conn, got, len(names), timeout=30)
    assert sorted(b["q"] for b in got) == sorted(names)


def test_cluster_failing_with_every_slot_owned_is_retried_not_fatal(tmp_path):
    """cluster_state:fail while every slot has an owner is a failover or partition under way: a connection
    error (Celery retries; a worker must not exit), and the connection works once the cluster is ok."""

    from airflow_ha.broker.errors import BrokerUnavailable
    from tests.harness.servers.redis_cluster import RedisCluster
    from tests.harness.waiting import wait_until

    cluster = RedisCluster(base_dir=tmp_path / "down", password=secrets.token_hex(8), replicas_per_master=0)
    try:
        cluster.start()
        frozen = cluster.nodes[0]  # no replica to promote: the cluster stays failed while it is frozen
        frozen.freeze()
        others = [n for n in cluster.nodes if n is not frozen]
        try:
            wait_until(lambda: all(n.cluster_info()["cluster_state"] == "fail" for n in others), 30,
                       "cluster_state:fail on the other masters")  # fmt: skip
            exc = _no_hang(lambda: Connection(cluster.url(), transport_options={"socket_connect_timeout": 1}).connect())
            assert isinstance(exc, BrokerUnavailable) and not isinstance(exc, BrokerClusterError), exc
            assert "failing over or partitioned" in str(exc) and "16384 of 16384 slots assigned" in str(exc)
        finally:
            frozen.thaw()
        wait_until(lambda: all(n.cluster_info()["cluster_state"] == "ok" for n in cluster.nodes), 30, "cluster ok")
        with Connection(cluster.url()) as conn:
            conn.connect()
    finally:
        cluster.stop()
