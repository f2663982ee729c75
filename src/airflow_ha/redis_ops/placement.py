"""Where the Redis Cluster's masters and replicas are, and how to re-pair them: pure logic, no I/O.

``redis-cli --cluster create`` pairs replicas with masters knowing nothing of Kubernetes nodes, and a
failover moves roles around as it goes, so a master and its own replica can end up on the same node: that
node's loss then loses both copies of the master's slots. :func:`plan` takes the topology (every Redis
node's own view of itself, plus the Kubernetes node its pod runs on) and returns the ``CLUSTER REPLICATE``
commands that re-pair replicas so that no master shares a node with any of its replicas, changing as few
pairs as possible and keeping every master's replica count balanced.

Policy, in order of importance:

1. every master keeps a balanced share of the replicas (``n // masters`` each, the remainder spread):
   re-pairing never leaves a master without a replica to fix another master's placement;
2. no replica on its master's node, where the nodes allow it (with one node nothing can be done: the
   plan says so and proposes nothing);
3. as few changed pairs as possible.

Before any re-pairing, :func:`spread_masters` moves masters off a node that holds half of them or more
(``CLUSTER FAILOVER`` on a replica elsewhere): a replica is promoted by a majority of masters, so a node
whose loss takes that majority with it takes the cluster down for good, however well replicas are paired.

The assignment is a minimum-cost matching of replicas to masters' replica "seats" (Hungarian algorithm),
with seat costs that make (1) outweigh (2) and (2) outweigh (3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_ha.redis_ops.cluster_nodes import MASTER, REPLICA, ClusterNode, TopologyError


def _costs(replicas: int) -> tuple[int, int, int]:
    """(change, co-located, seat beyond the share) costs of the matching for this many replicas: one more
    co-located pair outweighs every change together, one more seat beyond a master's share (the
    remainder's seats are taken in every balanced assignment alike) every co-located pair together."""
    change = 1
    colocated = replicas * change + 1
    over_share = replicas * colocated + 1
    return change, colocated, over_share


@dataclass(frozen=True)
class RedisNode:
    """A Redis Cluster node as the planner sees it: its pod and the Kubernetes node that pod runs on."""

    node_id: str
    pod: str
    k8s_node: str
    role: str  # MASTER | REPLICA
    master_id: str | None = None  # a replica's master
    slots: int = 0


@dataclass(frozen=True)
class Repair:
    """``CLUSTER REPLICATE new_master_id`` sent to ``replica_id``."""

    replica_id: str
    replica_pod: str
    old_master_id: str | None
    new_master_id: str
    new_master_pod: str
    reason: str

    def describe(self) -> str:
        return f"{self.replica_pod}: CLUSTER REPLICATE {self.new_master_id[:8]} ({self.new_master_pod}) - {self.reason}"


@dataclass
class Plan:
    repairs: list[Repair] = field(default_factory=list)
    colocated: list[tuple[str, str, str]] = field(default_factory=list)  # (master pod, replica pod, node) now
    unresolved: list[tuple[str, str, str]] = field(default_factory=list)  # still co-located after the plan
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.colocated


@dataclass(frozen=True)
class Promotion:
    """``CLUSTER FAILOVER`` sent to ``replica_pod``: a coordinated handover, no write lost; it becomes the
    master and ``master_pod`` its replica."""

    replica_id: str
    replica_pod: str
    master_pod: str
    reason: str

    def describe(self) -> str:
        return f"{self.replica_pod}: CLUSTER FAILOVER (takes over from {self.master_pod}) - {self.reason}"


def max_masters_per_node(masters: int) -> int:
    """A replica is promoted only by a majority of masters: losing one Kubernetes node must leave a
    majority standing, so a node may hold fewer than half of them (1 of 3, 2 of 5, ...)."""
    return max(1, (masters - 1) // 2)


def crowded_nodes(nodes: Iterable[RedisNode]) -> dict[str, int]:
    """Kubernetes node -> its master count, for nodes whose loss would leave no majority to fail over."""
    masters = [n for n in nodes if n.role == MASTER and n.slots > 0]
    limit = max_masters_per_node(len(masters))
    counts: dict[str, int] = {}
    for m in masters:
        counts[m.k8s_node] = counts.get(m.k8s_node, 0) + 1
    return {node: c for node, c in sorted(counts.items()) if c > limit}


def spread_masters(nodes: Iterable[RedisNode]) -> Promotion | None:
    """One promotion that moves a master off a crowded node (see :func:`crowded_nodes`): a replica of one
    of its masters on a node with room for a master. None when no node is crowded or none can help.

    Failovers move roles around, so masters can gather on one node (two of three on one node is a cluster
    that one node's loss takes down for good: the last master alone cannot vote a promotion)."""
    nodes = list(nodes)
    crowded = crowded_nodes(nodes)
    if not crowded:
        return None
    masters = [n for n in nodes if n.role == MASTER and n.slots > 0]
    limit = max_masters_per_node(len(masters))
    count = {n.k8s_node: 0 for n in nodes}
    for m in masters:
        count[m.k8s_node] += 1
    by_id = {n.node_id: n for n in nodes}
    candidates = [
        (count[r.k8s_node], r.pod, r, by_id[r.master_id])
        for r in nodes
        if r.role == REPLICA
        and r.master_id in by_id
        and by_id[r.master_id].k8s_node in crowded
        and count[r.k8s_node] < limit
    ]
    if not candidates:
        return None
    _, _, replica, master = min(candidates, key=lambda c: (c[0], c[1]))
    return Promotion(
        replica.node_id,
        replica.pod,
        master.pod,
        f"node {master.k8s_node} holds {count[master.k8s_node]} of {len(masters)} masters (at most {limit}: "
        "losing it must leave a majority to vote a failover)",
    )


def colocated_pairs(nodes: Iterable[RedisNode]) -> list[tuple[str, str, str]]:
    """(master pod, replica pod, Kubernetes node) for every replica on the same node as its master."""
    nodes = list(nodes)
    by_id = {n.node_id: n for n in nodes}
    pairs = []
    for r in nodes:
        if r.role != REPLICA or r.master_id not in by_id:
            continue
        m = by_id[r.master_id]
        if m.k8s_node == r.k8s_node:
            pairs.append((m.pod, r.pod, r.k8s_node))
    return sorted(pairs)


def _assign(cost: list[list[int]]) -> list[int]:
    """Minimum-cost assignment of every row to a distinct column (rows <= columns): Hungarian algorithm
    with potentials, O(rows^2 * columns). Returns the column of each row."""
    n, m = len(cost), len(cost[0]) if cost else 0
    if n == 0:
        return []
    if n > m:
        raise ValueError("more rows than columns")
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    p, way = [0] * (m + 1), [0] * (m + 1)  # p[j]: row (1-based) holding column j
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv, used = [inf] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    result = [0] * n
    for j in range(1, m + 1):
        if p[j]:
            result[p[j] - 1] = j - 1
    return result


def plan(nodes: Iterable[RedisNode]) -> Plan:
    """The re-pairings that leave no master on the same Kubernetes node as one of its replicas."""
    nodes = sorted(nodes, key=lambda n: n.pod)
    ids = [n.node_id for n in nodes]
    if len(set(ids)) != len(ids):
        raise TopologyError("the same Redis node id appears twice")
    result = Plan(colocated=colocated_pairs(nodes))
    masters = [n for n in nodes if n.role == MASTER and n.slots > 0]
    replicas = [n for n in nodes if n.role == REPLICA]
    if not masters or not replicas:
        result.notes.append(f"{len(masters)} master(s) with slots, {len(replicas)} replica(s): nothing to pair")
        return result
    by_id = {n.node_id: n for n in nodes}
    if not result.colocated:
        return result
    if len({n.k8s_node for n in nodes}) < 2:
        result.notes.append("every Redis pod runs on one Kubernetes node: no placement can separate the pairs")
        result.unresolved = list(result.colocated)
        return result

    change, colocated, over_share = _costs(len(replicas))
    share = len(replicas) // len(masters)
    # Seat k of a master: free up to its share, then ever dearer (convex: the matching fills seats evenly).
    seats = [(m, over_share * max(0, k - share + 1)) for m in masters for k in range(len(replicas))]
    cost = [
        [
            seat + (colocated if m.k8s_node == r.k8s_node else 0) + (change if m.node_id != r.master_id else 0)
            for m, seat in seats
        ]
        for r in replicas
    ]
    chosen = _assign(cost)
    after = []
    for r, col in zip(replicas, chosen, strict=True):
        m = seats[col][0]
        after.append(RedisNode(r.node_id, r.pod, r.k8s_node, REPLICA, m.node_id, 0))
        if m.node_id == r.master_id:
            continue
        old = by_id.get(r.master_id) if r.master_id else None
        if old is not None and old.k8s_node == r.k8s_node:
            reason = f"shares node {r.k8s_node} with its master {old.pod}"
        else:
            reason = f"takes the place of a replica re-paired away from {m.pod}'s node"
        result.repairs.append(Repair(r.node_id, r.pod, r.master_id, m.node_id, m.pod, reason))
    result.unresolved = colocated_pairs([*masters, *after])
    if result.unresolved:
        result.notes.append(
            "not every pair can be separated without leaving a master with fewer replicas than its share: "
            + ", ".join(f"{mp}+{rp} on {node}" for mp, rp, node in result.unresolved)
        )
    # No plan ends with a master short of its share (seat costs), but between two commands one can be: send
    # first the re-pairs that move a replica TO a master another re-pair takes one FROM.
    leaving = {a.old_master_id for a in result.repairs}
    result.repairs.sort(key=lambda a: (a.new_master_id not in leaving, a.replica_pod))
    return result


def topology(views: dict[str, list[ClusterNode]], pod_nodes: dict[str, str]) -> list[RedisNode]:
    """Build the planner's topology from each pod's own ``CLUSTER NODES`` (``views``: pod -> parsed lines)
    and the Kubernetes node each pod runs on (``pod_nodes``).

    Each node's role and master come from its OWN ``myself`` line (gossip elsewhere may lag). Raises
    :class:`TopologyError` when the cluster is not settled enough to act on: a pod without its view, a
    node flagged failing, a node the pods do not agree exists, a replica whose master is unknown.
    """
    if not views:
        raise TopologyError("no Redis pod answered")
    mine: dict[str, ClusterNode] = {}
    for pod, lines in sorted(views.items()):
        me = [n for n in lines if n.is_myself]
        if len(me) != 1:
            raise TopologyError(f"{pod}: CLUSTER NODES has {len(me)} 'myself' lines")
        mine[pod] = me[0]
        failing = [f"{n.hostname or n.ip}:{','.join(sorted(n.flags))}/{n.link_state}" for n in lines if n.failing]
        if failing:
            raise TopologyError(f"{pod} sees failing nodes (a failover may be under way): {', '.join(failing)}")
    known = {pod: {n.node_id for n in lines} for pod, lines in views.items()}
    everyone = {me.node_id for me in mine.values()}
    for pod, ids in sorted(known.items()):
        if ids != everyone:
            raise TopologyError(
                f"{pod} knows {len(ids)} node(s), the pods are {len(everyone)}: the cluster is not formed yet"
            )
    result = []
    for pod, me in sorted(mine.items()):
        if pod not in pod_nodes:
            raise TopologyError(f"pod {pod} is not scheduled on a node")
        if me.role == REPLICA and me.master_id not in everyone:
            raise TopologyError(f"{pod} replicates {me.master_id}, which no pod is")
        result.append(
            RedisNode(
                node_id=me.node_id,
                pod=pod,
                k8s_node=pod_nodes[pod],
                role=me.role,
                master_id=me.master_id if me.role == REPLICA else None,
                slots=me.slots,
            )
        )
    return result
