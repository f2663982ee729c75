"""Stale node addresses after a whole-cluster restart, and the CLUSTER MEETs that heal them.

Redis Cluster nodes find each other by the IPs in ``nodes.conf``. One pod that restarts with a new IP
heals by itself: it dials its peers at their unchanged IPs and they learn its new one from that link.
When every pod restarts at once (a Kubernetes cluster restarted, ``docker restart`` of a kind cluster, a
power cut) every IP in every ``nodes.conf`` is stale, nobody reaches anybody, and the cluster stays
``cluster_state:fail`` for good. A ``CLUSTER MEET <new ip> <port>`` to a node whose ID a node already knows
makes Redis update that node's address (``nodeUpdateAddressIfNeeded`` on the handshake's reply), so one MEET
per stale pair heals it, and MEET to an address that is already right changes nothing.

Redis may also heal the cluster bus by itself, slowly, through gossip about a node it sees failing; that
path updates the address but not a replica's replication link, which keeps dialling its master's old IP
(found on ../shared/kube: the replica then refused to fail over, "Disconnected from master for longer than
allowed"). So a replica whose ``master_host`` is not its master's current IP is sent ``CLUSTER REPLICATE``
of the same master, which re-points replication at the address the cluster bus now has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from airflow_ha.redis_ops.cluster_nodes import ClusterNode


@dataclass(frozen=True)
class Meet:
    """``CLUSTER MEET ip port`` sent to ``from_pod``: it lists ``to_pod`` at a stale address."""

    from_pod: str
    to_pod: str
    ip: str
    port: int
    listed_ip: str

    def describe(self) -> str:
        return f"CLUSTER MEET {self.ip} {self.port} to {self.from_pod} (it lists {self.to_pod} at {self.listed_ip})"


def pod_of(node: ClusterNode, pods: Mapping[str, str]) -> str | None:
    """The pod a CLUSTER NODES line is about, by its announced hostname (``<pod>.<headless service>...``)."""
    for name in pods:
        if node.hostname == name or node.hostname.startswith(name + "."):
            return name
    return None


def stale_meets(views: Mapping[str, list[ClusterNode]], pod_ips: Mapping[str, str], port: int) -> list[Meet]:
    """For every pod's view, the peers it lists at an IP that is no longer theirs.

    ``views``: pod -> its parsed ``CLUSTER NODES``; ``pod_ips``: pod -> its current IP (Kubernetes). Lines
    without an announced hostname cannot be matched to a pod and are left alone (the chart always sets
    ``cluster-announce-hostname``). A node's own line is not a peer: Redis learns its own IP from peers.
    """
    meets = []
    for pod, lines in sorted(views.items()):
        for node in lines:
            if node.is_myself:
                continue
            peer = pod_of(node, pod_ips)
            if peer is None or peer == pod or not pod_ips.get(peer):
                continue
            if node.ip != pod_ips[peer]:
                meets.append(Meet(pod, peer, pod_ips[peer], port, node.ip))
    return meets


@dataclass(frozen=True)
class Repoint:
    """``CLUSTER REPLICATE master_id`` sent to ``replica_pod``: it replicates from a stale address."""

    replica_pod: str
    master_pod: str
    master_id: str
    master_ip: str
    dialled: str

    def describe(self) -> str:
        return (
            f"CLUSTER REPLICATE {self.master_id[:8]} ({self.master_pod}) to {self.replica_pod}: its replication "
            f"dials {self.dialled or 'nothing'}, {self.master_pod} is at {self.master_ip}"
        )


def stale_replication(
    views: Mapping[str, list[ClusterNode]], pod_ips: Mapping[str, str], master_hosts: Mapping[str, str]
) -> list[Repoint]:
    """Replicas whose replication link (``master_hosts``: pod -> ``INFO replication`` master_host) is not
    their master's current IP. Pods without a master_host entry (not read) are left alone."""
    repoints = []
    for pod, lines in sorted(views.items()):
        me = next((n for n in lines if n.is_myself), None)
        if me is None or me.master_id is None or pod not in master_hosts:
            continue
        master = next((n for n in lines if n.node_id == me.master_id), None)
        master_pod = pod_of(master, pod_ips) if master is not None else None
        if master_pod is None or not pod_ips.get(master_pod):
            continue
        if master_hosts[pod] != pod_ips[master_pod]:
            repoints.append(Repoint(pod, master_pod, me.master_id, pod_ips[master_pod], master_hosts[pod]))
    return repoints
