"""The replica placement planner: CLUSTER NODES parsing, topology checks and the re-pair plan."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from airflow_ha.redis_ops.cluster_nodes import MASTER, REPLICA, TopologyError, parse_cluster_nodes
from airflow_ha.redis_ops.placement import (
    RedisNode,
    _assign,
    colocated_pairs,
    plan,
    topology,
)

# Redis 7.0 with cluster-announce-hostname, as the chart's pods print it (redis-0's view).
CLUSTER_NODES = """\
07c37dfeb235213a872192d90877d0cd55635b91 10.244.2.8:6379@16379,r-0.h myself,master - 0 0 1 connected 0-5460
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.244.1.8:6379@16379,r-1.h master - 0 1700000000 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4d 10.244.0.9:6379@16379,r-2.h master - 0 1700000000 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 10.244.1.10:6379@16379,r-3.h slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4d 0 1700000000 3 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 10.244.2.9:6379@16379,r-4.h slave 07c37dfeb235213a872192d90877d0cd55635b91 0 1700000000 1 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 10.244.0.12:6379@16379,r-5.h slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1700000000 2 connected
"""  # noqa: E501 (real lines)


def test_parse_cluster_nodes_redis7_with_hostnames():
    nodes = parse_cluster_nodes(CLUSTER_NODES)
    assert [n.hostname.split(".")[0] for n in nodes] == ["r-0", "r-1", "r-2", "r-3", "r-4", "r-5"]
    me = nodes[0]
    assert me.is_myself and me.role == MASTER and me.slots == 5461 and me.ip == "10.244.2.8" and me.port == 6379
    assert nodes[3].role == REPLICA and nodes[3].master_id == nodes[2].node_id and nodes[3].slots == 0
    assert sum(n.slots for n in nodes) == 16384
    assert not any(n.failing for n in nodes)


def test_parse_cluster_nodes_flags_failing_and_migrating_slots():
    text = (
        "a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-99 [100->-b] 200\n"
        "b 10.0.0.2:6379@16379 master,fail - 1 1 2 disconnected 100-199\n"
        "c :0@0 master,noaddr - 1 1 3 disconnected\n"
    )
    a, b, c = parse_cluster_nodes(text)
    assert a.slots == 101 and a.hostname == ""
    assert b.failing and c.failing and not a.failing


def test_parse_cluster_nodes_rejects_garbage():
    with pytest.raises(TopologyError, match="line 1"):
        parse_cluster_nodes("not a cluster nodes line")


def _view(myself: str, others: dict[str, tuple[str, str]]) -> str:
    """A CLUSTER NODES text: others = {node_id: (flags, master)}; `myself` gets the myself flag."""
    lines = []
    for i, (node_id, (flags, master)) in enumerate(sorted(others.items())):
        f = f"myself,{flags}" if node_id == myself else flags
        slots = " 0-5000" if "master" in flags else ""
        lines.append(f"{node_id} 10.0.0.{i}:6379@16379,p{node_id} {f} {master} 0 0 1 connected{slots}")
    return "\n".join(lines)


def test_topology_uses_each_pods_own_view():
    roles = {"a": ("master", "-"), "b": ("slave", "a")}
    # b's gossip about a is stale elsewhere; each node's own line decides its role.
    views = {"pod-a": parse_cluster_nodes(_view("a", roles)), "pod-b": parse_cluster_nodes(_view("b", roles))}
    nodes = topology(views, {"pod-a": "n1", "pod-b": "n2"})
    assert [(n.pod, n.role, n.master_id, n.k8s_node) for n in nodes] == [
        ("pod-a", MASTER, None, "n1"),
        ("pod-b", REPLICA, "a", "n2"),
    ]


@pytest.mark.parametrize(
    ("views", "pod_nodes", "message"),
    [
        ({"pod-a": _view("a", {"a": ("master", "-"), "b": ("slave,fail?", "a")})}, {"pod-a": "n"}, "failing"),
        (
            {"pod-a": _view("a", {"a": ("master", "-")}), "pod-b": _view("b", {"b": ("master", "-")})},
            {"pod-a": "n", "pod-b": "n"},
            "not formed",
        ),
        ({"pod-a": _view("a", {"a": ("slave", "z")})}, {"pod-a": "n"}, "replicates z"),
        ({"pod-a": _view("a", {"a": ("master", "-")})}, {}, "not scheduled"),
        ({"pod-a": _view("x", {"a": ("master", "-")})}, {"pod-a": "n"}, "0 'myself'"),
    ],
)
def test_topology_refuses_an_unsettled_cluster(views, pod_nodes, message):
    with pytest.raises(TopologyError, match=message):
        topology({pod: parse_cluster_nodes(text) for pod, text in views.items()}, pod_nodes)


def M(pod: str, node: str) -> RedisNode:
    return RedisNode(pod, pod, node, MASTER, None, 5461)


def R(pod: str, node: str, master: str) -> RedisNode:
    return RedisNode(pod, pod, node, REPLICA, master, 0)


def apply(nodes: list[RedisNode], p) -> list[RedisNode]:
    new_master = {a.replica_id: a.new_master_id for a in p.repairs}
    return [
        RedisNode(n.node_id, n.pod, n.k8s_node, n.role, new_master.get(n.node_id, n.master_id), n.slots) for n in nodes
    ]


def replica_counts(nodes: list[RedisNode]) -> Counter:
    counts = Counter({n.node_id: 0 for n in nodes if n.role == MASTER})
    counts.update(n.master_id for n in nodes if n.role == REPLICA)
    return counts


def test_the_placement_seen_after_a_real_bootstrap_is_repaired_with_two_commands():
    # Measured on ../shared/kube after `redis-cli --cluster create`: redis-0 and its replica redis-4 on kubeone-3.
    nodes = [
        M("redis-0", "kubeone-3"),
        M("redis-1", "kubeone-2"),
        M("redis-2", "kubeone"),
        R("redis-3", "kubeone-2", "redis-2"),
        R("redis-4", "kubeone-3", "redis-0"),
        R("redis-5", "kubeone", "redis-1"),
    ]
    p = plan(nodes)
    assert p.colocated == [("redis-0", "redis-4", "kubeone-3")]
    assert len(p.repairs) == 2  # redis-4 alone cannot move: redis-0 would be left without a replica
    after = apply(nodes, p)
    assert colocated_pairs(after) == [] and p.unresolved == []
    assert set(replica_counts(after).values()) == {1}
    assert {a.replica_pod for a in p.repairs} == {"redis-4", "redis-5"}


def test_a_good_placement_is_left_alone():
    nodes = [M("m1", "a"), M("m2", "b"), M("m3", "c"), R("r1", "b", "m1"), R("r2", "c", "m2"), R("r3", "a", "m3")]
    p = plan(nodes)
    assert p.ok and p.repairs == [] and p.colocated == []


def test_every_pair_colocated_is_rotated():
    nodes = [M("m1", "a"), M("m2", "b"), M("m3", "c"), R("r1", "a", "m1"), R("r2", "b", "m2"), R("r3", "c", "m3")]
    p = plan(nodes)
    assert len(p.colocated) == 3 and len(p.repairs) == 3
    after = apply(nodes, p)
    assert colocated_pairs(after) == [] and set(replica_counts(after).values()) == {1}


def test_one_node_cannot_be_helped_and_nothing_is_sent():
    nodes = [M("m1", "a"), M("m2", "a"), R("r1", "a", "m1"), R("r2", "a", "m2")]
    p = plan(nodes)
    assert p.repairs == [] and len(p.unresolved) == 2 and "one Kubernetes node" in p.notes[0]


def test_balance_wins_over_separation_with_a_remainder_too():
    # 3 replicas for 2 masters; separating every pair would need m1 to give up all its replicas.
    nodes = [M("m1", "a"), M("m2", "b"), R("r1", "a", "m1"), R("r2", "a", "m1"), R("r3", "a", "m2")]
    p = plan(nodes)
    after = apply(nodes, p)
    assert sorted(replica_counts(after).values()) == [1, 2]
    assert len(colocated_pairs(after)) == 1 and p.unresolved == colocated_pairs(after)


def test_balance_wins_over_separation_when_both_cannot_be_had():
    # Both replicas sit on node a with m1: separating both would leave m1 with no replica at all.
    nodes = [M("m1", "a"), M("m2", "b"), R("r1", "a", "m1"), R("r2", "a", "m2")]
    p = plan(nodes)
    assert p.repairs == []
    assert p.unresolved == [("m1", "r1", "a")] and "fewer replicas than its share" in p.notes[0]


def test_first_repair_moves_a_replica_to_a_master_another_repair_leaves():
    # r1 must leave m1 (node a); r2 (m2's, on c) comes to m1 first, then r1 goes to m2.
    nodes = [M("m1", "a"), M("m2", "b"), R("r1", "a", "m1"), R("r2", "c", "m2")]
    p = plan(nodes)
    assert len(p.repairs) == 2
    leaving = {a.old_master_id for a in p.repairs}
    assert p.repairs[0].new_master_id in leaving


def test_assign_matches_brute_force():
    rng = random.Random(7)
    for _ in range(200):
        rows, cols = rng.randint(1, 5), rng.randint(5, 7)
        cost = [[rng.randint(0, 20) for _ in range(cols)] for _ in range(rows)]
        got = _assign(cost)
        assert len(set(got)) == rows
        best = min(sum(cost[i][c] for i, c in enumerate(perm)) for perm in itertools.permutations(range(cols), rows))
        assert sum(cost[i][c] for i, c in enumerate(got)) == best


def _brute_force(nodes: list[RedisNode]) -> tuple[int, int] | None:
    """(fewest co-located pairs, fewest changes for that) over every balanced assignment."""
    masters = [n for n in nodes if n.role == MASTER]
    replicas = [n for n in nodes if n.role == REPLICA]
    share, rem = divmod(len(replicas), len(masters))
    best = None
    for choice in itertools.product(masters, repeat=len(replicas)):
        counts = Counter(m.node_id for m in choice)
        sizes = sorted((counts[m.node_id] for m in masters), reverse=True)
        if sizes != [share + 1] * rem + [share] * (len(masters) - rem):
            continue
        colocated = sum(m.k8s_node == r.k8s_node for m, r in zip(choice, replicas, strict=True))
        changes = sum(m.node_id != r.master_id for m, r in zip(choice, replicas, strict=True))
        if best is None or (colocated, changes) < best:
            best = (colocated, changes)
    return best


def test_plan_is_optimal_on_random_topologies():
    rng = random.Random(11)
    for _ in range(300):
        k8s_nodes = [f"n{i}" for i in range(rng.randint(2, 4))]
        n_masters = rng.randint(2, 3)
        n_replicas = rng.randint(n_masters, 2 * n_masters)  # with a remainder too: 4 replicas for 3 masters
        masters = [M(f"m{i}", rng.choice(k8s_nodes)) for i in range(n_masters)]
        replicas = [R(f"r{j}", rng.choice(k8s_nodes), masters[j % n_masters].node_id) for j in range(n_replicas)]
        nodes = masters + replicas
        p = plan(nodes)
        after = apply(nodes, p)
        counts = sorted(replica_counts(after).values())
        assert counts[-1] - counts[0] <= 1 and counts[0] >= 1, (nodes, p)
        best = _brute_force(nodes)
        assert (len(colocated_pairs(after)), len(p.repairs)) == best, (nodes, p)
        assert p.unresolved == colocated_pairs(after)


def test_spread_masters_moves_one_master_off_a_crowded_node():
    from airflow_ha.redis_ops.placement import crowded_nodes, max_masters_per_node, spread_masters

    nodes = [M("a", "k1"), M("b", "k1"), M("c", "k2"), R("ra", "k3", "a"), R("rb", "k2", "b"), R("rc", "k1", "c")]
    assert crowded_nodes(nodes) == {"k1": 2} and max_masters_per_node(3) == 1
    promotion = spread_masters(nodes)
    assert promotion is not None and promotion.replica_pod == "ra"  # k3 has no master: the best home
    assert "k1 holds 2 of 3 masters" in promotion.reason


def test_spread_masters_leaves_a_spread_or_unhelpable_cluster_alone():
    from airflow_ha.redis_ops.placement import spread_masters

    spread = [M("a", "k1"), M("b", "k2"), M("c", "k3"), R("ra", "k2", "a"), R("rb", "k3", "b"), R("rc", "k1", "c")]
    assert spread_masters(spread) is None
    one_node = [M("a", "k1"), M("b", "k1"), M("c", "k1"), R("ra", "k1", "a"), R("rb", "k1", "b"), R("rc", "k1", "c")]
    assert spread_masters(one_node) is None  # nowhere to move a master
