"""Asynchronous replication loses writes a dying master acknowledged; WAIT turns that loss into an error.

The replica of the queue's master is frozen (SIGSTOP) and its link cut so it cannot receive writes,
messages are published, the master is killed (-9) and the replica resumed and promoted. Without WAIT
the publisher was told "ok" for messages the new master never had: lost. With ``replication_wait_replicas=1`` and policy
``raise`` every such publish raised :class:`ReplicationWaitError` instead: no acknowledged message lost.
"""

from __future__ import annotations

import threading
import time

import pytest
from kombu import Connection, Consumer, Producer, Queue

import airflow_ha.broker
from airflow_ha.broker import keys
from airflow_ha.broker.errors import ReplicationWaitError
from tests.harness.waiting import wait_until
from tests.integration.broker.conftest import drain_until, wait_replicas_in_sync

pytestmark = [pytest.mark.integration, pytest.mark.slow]
airflow_ha.broker.register()
QUEUE = "busy"


@pytest.mark.parametrize(
    "wait_replicas", [pytest.param(1, id="wait-raise"), pytest.param(0, id="no-wait", marks=pytest.mark.extended)]
)
def test_writes_unreplicated_at_failover(own_cluster, wait_replicas):
    cluster = own_cluster
    wait_replicas_in_sync(cluster)
    opts = {
        "replication_wait_replicas": wait_replicas,
        "replication_wait_timeout_ms": 300,
        "replication_wait_policy": "raise",
        "failover_timeout": 60,
    }
    master = cluster.master_for_slot(keys.queue_slot(QUEUE))
    (replica,) = cluster.replicas_of(master)
    acknowledged, refused = [], []
    with Connection(cluster.url(), transport_options=opts) as conn:
        producer = Producer(conn)
        queue = Queue(QUEUE)
        for i in range(20):
            producer.publish({"i": i}, routing_key=QUEUE, declare=[queue])
            acknowledged.append(i)
        replica.freeze()
        with master.client() as admin:  # cut the link: nothing published now can reach the replica
            admin.execute_command("CLIENT KILL TYPE replica")
        try:
            for i in range(20, 30):
                try:
                    producer.publish({"i": i}, routing_key=QUEUE)
                    acknowledged.append(i)
                except ReplicationWaitError:
                    refused.append(i)
            cluster.kill(master)
        finally:
            replica.thaw()
    wait_until(lambda: cluster.master_for_slot(keys.queue_slot(QUEUE)).port == replica.port, 60, "the replica promoted")
    cluster.wait_healthy()
    received = []
    callbacks = [lambda body, m: (received.append(body["i"]), m.ack())]
    with (
        Connection(cluster.url(), transport_options=opts) as conn,
        Consumer(conn, [Queue(QUEUE)], callbacks=callbacks),
    ):
        drain_until(conn, lambda: set(acknowledged) <= set(received), timeout=5)
    lost = sorted(set(acknowledged) - set(received))
    print(f"\nreplication_wait_replicas={wait_replicas}: acknowledged={len(acknowledged)} refused={len(refused)} "
          f"received={len(received)} lost_after_ack={len(lost)}")  # fmt: skip
    if wait_replicas:
        assert lost == [] and refused == list(range(20, 30))
    else:
        assert lost == list(range(20, 30)) and refused == []  # the failure mode the mitigation exists for


def test_policy_auto_refuses_only_when_a_connected_replica_is_silent(own_cluster):
    """``auto``: a replica the master counts as connected that does not acknowledge (the cut-off side of a
    partition) refuses the publish; a master with no connected replica carries on (nothing to wait for)."""
    cluster = own_cluster
    wait_replicas_in_sync(cluster)
    opts = {"replication_wait_replicas": 1, "replication_wait_timeout_ms": 300, "replication_wait_policy": "auto"}
    master = cluster.master_for_slot(keys.queue_slot(QUEUE))
    (replica,) = cluster.replicas_of(master)
    with Connection(cluster.url(), transport_options=opts) as conn:
        producer = Producer(conn)
        producer.publish({"i": 0}, routing_key=QUEUE, declare=[Queue(QUEUE)])  # in sync: acknowledged
        replica.freeze()  # still connected from the master's side, but silent
        try:
            with pytest.raises(ReplicationWaitError, match="connected but silent"):
                producer.publish({"i": 1}, routing_key=QUEUE)
            with master.client() as admin:  # now the master has no replica at all
                admin.execute_command("CLIENT KILL TYPE replica")
            producer.publish({"i": 2}, routing_key=QUEUE)  # unprotected, but not refused
        finally:
            replica.thaw()


def test_a_publish_refused_while_a_replica_is_silent_is_sent_again_until_it_is_accepted(own_cluster):
    """Airflow's CeleryExecutor fails a task whose publish raised (only a timeout is sent again). A replica
    silent for 8 s (a loaded node, the resync after a partition) makes the WAIT policy refuse every try
    meanwhile; with the publish retry policy of airflow_ha.broker.celery_config (what the chart's Airflow
    runs) and the transport's recoverable errors, the publish goes through once the replica answers. (kombu
    gave up after one reconnect before: the 3-node cluster lost a DAG run's task to two refusals in a row.)"""
    from celery import Celery

    from airflow_ha.broker.celery_config import PUBLISH_RETRY_POLICY

    cluster = own_cluster
    wait_replicas_in_sync(cluster)
    opts = {"replication_wait_replicas": 1, "replication_wait_timeout_ms": 300, "replication_wait_policy": "auto"}
    master = cluster.master_for_slot(keys.queue_slot(QUEUE))
    (replica,) = cluster.replicas_of(master)
    celery = Celery("publisher", broker=cluster.url(), set_as_current=False)
    celery.conf.update(broker_transport_options=opts, task_ignore_result=True)
    celery.conf.task_publish_retry_policy = PUBLISH_RETRY_POLICY
    silent_for = 8.0
    replica.freeze()
    thaw = threading.Timer(silent_for, replica.thaw)
    thaw.start()
    started = time.monotonic()
    try:
        celery.send_task("brokerapp.record", queue=QUEUE)
        took = time.monotonic() - started
    finally:
        thaw.join()
        replica.thaw()
    assert took >= silent_for - 0.5, f"accepted after {took:.1f} s while the replica was silent: nothing refused"
    print(f"\npublish refused while the replica was silent, accepted {took:.1f} s later (retried)")
    with Connection(cluster.url(), transport_options=opts) as conn:
        got = []
        with Consumer(conn, [Queue(QUEUE)], callbacks=[lambda body, m: (got.append(m), m.ack())]):
            drain_until(conn, lambda: len(got) >= 1, 20)
    assert got, "the accepted publish is not in the queue"
