"""The Redis Cluster fixture is a real 3+3 cluster that survives a replica promotion."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration


def cluster_client(cluster) -> RedisCluster:
    seeds = [ClusterNode("127.0.0.1", n.port) for n in cluster.nodes if n.running]
    return RedisCluster(startup_nodes=seeds, password=cluster.password, decode_responses=True)


def test_cluster_is_ok_with_three_masters_and_three_replicas(redis_cluster):
    for node in redis_cluster.nodes:
        info = node.cluster_info()
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == 16384
        assert int(info["cluster_known_nodes"]) == 6
    assert len(redis_cluster.master_nodes()) == 3
    assert len(redis_cluster.replica_nodes()) == 3
    for master in redis_cluster.master_nodes():
        assert len(redis_cluster.replicas_of(master)) == 1


def test_auth_is_required(redis_cluster):
    node = redis_cluster.nodes[0]
    with redis.Redis(host="127.0.0.1", port=node.port) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()


def test_key_survives_replica_promotion(redis_cluster):
    client = cluster_client(redis_cluster)
    key = "fixture:failover:probe"
    client.set(key, "written-before-failover")
    slot = client.keyslot(key)
    old_master = redis_cluster.master_for_slot(slot)
    replica = redis_cluster.replicas_of(old_master)[0]
    # The write must have reached the replica before we promote it.
    with old_master.client() as conn:
        assert conn.execute_command("WAIT", 1, 5000) == 1

    with replica.client(decode_responses=True) as conn:
        assert conn.execute_command("CLUSTER FAILOVER") in (True, "OK")
    wait_until(lambda: replica.role() == "master", 30, "replica promoted to master")
    redis_cluster.wait_healthy()

    assert redis_cluster.master_for_slot(slot) is replica
    assert old_master.role() == "slave"
    fresh = cluster_client(redis_cluster)
    assert fresh.get(key) == "written-before-failover"
    client.close()
    fresh.close()
