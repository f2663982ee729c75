"""Stale node addresses after a whole-cluster restart, and the CLUSTER MEETs that heal them.

Redis Cluster nodes find each other by the IPs in ``nodes.conf``. One pod that restarts with a new IP
heals by itself: it dials its peers at their unchanged IPs and they learn its new one from that link.
When every pod restarts at once (a Kubernetes cluster restarted, ``docker restart`` of a kind cluster, a
power cut) every IP in every ``nodes.conf`` is stale, nobody reaches anybody, and the cluster stays
``cluster_state:fail`` for good. A ``CLUSTER MEET <new ip> <port>`` to a node whose ID a node already knows
makes Redis update that node's address (``nodeUpdateAddressIfNeeded`` on the handshake's reply), so one MEET
per stale pair heals it, and MEET to an address that is already right changes nothing.
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
