"""The broker's metrics as Prometheus reads them: this process runs Airflow's configuration with [metrics] as
the chart sets it, its StatsD goes to a real statsd_exporter started with the chart's own mapping file, and a
master of a private Redis Cluster is killed while it publishes."""

from __future__ import annotations

import contextlib
import secrets
import time

import pytest
from kombu import Connection, Consumer, Producer, Queue

import airflow_ha.broker
from airflow_ha.broker import keys
from tests.integration.broker.conftest import drain, wait_replicas_in_sync

pytestmark = pytest.mark.integration
airflow_ha.broker.register()


def test_a_master_failover_and_a_redelivery_show_in_the_broker_series(own_cluster, exporter):
    cluster = own_cluster
    wait_replicas_in_sync(cluster)
    queue = Queue(f"metrics-{secrets.token_hex(3)}")
    options = {"failover_timeout": 60, "replication_wait_replicas": 1, "replication_wait_timeout_ms": 500}
    with Connection(cluster.url(), transport_options=options) as conn:
        producer = Producer(conn)
        for n in range(20):
            producer.publish({"n": n}, routing_key=queue.name, declare=[queue])
        cluster.kill(cluster.master_for_slot(keys.queue_slot(queue.name)))
        started = time.monotonic()
        for n in range(20, 40):  # the first of these waits out the failover (retried, not lost)
            producer.publish({"n": n}, routing_key=queue.name, declare=[queue])
        through_failover = time.monotonic() - started
        first = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: first.append(body)]):
            drain(conn, first, 40, timeout=60)
    assert len(first) == 40
    # closed without acks: restored; a second consumer gets them marked redelivered
    with Connection(cluster.url(), transport_options=options) as conn:
        again = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: (again.append(body), m.ack())]):
            drain(conn, again, 40, timeout=60)
    assert len(again) == 40

    assert exporter.wait_for("airflow_ha_broker_master_changes_total", 1) >= 1
    assert exporter.wait_for("airflow_ha_broker_slot_map_refreshes_total", 1) >= 1
    retries = exporter.samples("airflow_ha_broker_retries_total")
    assert retries and all('error="' in labels for labels in retries), retries
    stall_count = exporter.wait_for("airflow_ha_broker_stall_seconds_count", 1)
    stall_sum = exporter.value("airflow_ha_broker_stall_seconds_sum")
    assert 0 < stall_sum <= through_failover + 1, (stall_sum, through_failover)
    assert exporter.wait_for("airflow_ha_broker_publish_seconds_count", 40) == 40
    assert exporter.wait_for("airflow_ha_broker_redelivered_total", 40, queue=queue.name) == 40
    print(
        f"\nfailover seen in the series: {stall_count:.0f} stalled command(s), {stall_sum:.1f} s stalled in all "
        f"(publishing through it took {through_failover:.1f} s), retries {sorted(retries.items())}"
    )


def test_an_idle_consumers_wait_on_a_restarted_master_is_a_counted_retry(own_cluster, exporter):
    """Found in CI on the 3-node cluster: a Redis master killed while the workers only waited on it, its pod back
    on its AOF before a replica was promoted, showed slot-map reloads but not one retry: no publish or ack met
    the dead master, and a consumer's failed BLPOP was not counted. It is sent again, so it is a retry too,
    counted by its error as a publish's is. Here the master is killed and started again before the consumer
    runs on: its wait is the only command that meets the outage."""
    cluster = own_cluster
    wait_replicas_in_sync(cluster)
    queue = Queue(f"idle-{secrets.token_hex(3)}")
    options = {"failover_timeout": 60, "replication_wait_replicas": 0}
    with Connection(cluster.url(), transport_options=options) as conn:
        got = []
        with Consumer(conn, [queue], callbacks=[lambda body, m: (got.append(body), m.ack())], prefetch_count=1):
            Producer(conn).publish({"n": 0}, routing_key=queue.name, declare=[queue])
            drain(conn, got, 1)  # idle now: only its BLPOP is armed on the queue's master
            with contextlib.suppress(TimeoutError, OSError):
                conn.drain_events(timeout=0.5)
            assert exporter.value("airflow_ha_broker_retries_total") == 0
            master = cluster.master_for_slot(keys.queue_slot(queue.name))
            cluster.kill(master)
            cluster.restart(master)  # back before any failover, as a restarted container is
            cluster.wait_healthy()  # serving again: a read now succeeds at once
            deadline = time.monotonic() + 30
            while not exporter.value("airflow_ha_broker_retries_total") and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError, OSError):
                    conn.drain_events(timeout=0.5)
            samples = exporter.samples("airflow_ha_broker_retries_total")
            Producer(conn).publish({"n": 1}, routing_key=queue.name, declare=[queue])  # and it still consumes
            drain(conn, got, 2, timeout=30)
    print(f"\nidle consumer, its master killed and restarted: retries {sorted(samples.items())}")
    assert set(samples) == {'{error="ConnectionError"}'}, samples  # the wait's, and nothing else met the outage
    assert got == [{"n": 0}, {"n": 1}]
