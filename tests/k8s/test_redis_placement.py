"""Redis placement on a real multi-node cluster: no master shares a Kubernetes node with its own replica and
no node holds so many masters that losing it leaves no majority to vote a failover, right after the
bootstrap (the after-bootstrap reconcile hook) and again after the placement is broken on purpose (the
CronJob repairs it). Needs ``redis.reconciler.enabled`` (values/kubeone.yaml) and >= 2 nodes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from airflow_ha.redis_ops.cluster_nodes import parse_cluster_nodes
from airflow_ha.redis_ops.placement import colocated_pairs, crowded_nodes, topology
from tests.harness.failover.api import AirflowAPI
from tests.harness.waiting import wait_until
from tests.k8s.conftest import KUBECTL, Kube, Release, record, run

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]


def _redis_pods(kube: Kube, rel: Release) -> list:
    pods = kube.core.list_namespaced_pod(rel.namespace, label_selector=f"{rel.selector},component=redis").items
    return sorted((p for p in pods if not p.metadata.deletion_timestamp), key=lambda p: p.metadata.name)


def _redis_cli(rel: Release, pod: str, *args: str) -> str:
    cmd = 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ' + " ".join(args)
    return run([KUBECTL, "-n", rel.namespace, "exec", pod, "-c", "redis", "--", "sh", "-c", cmd], timeout=60).stdout


def _topology(kube: Kube, rel: Release):
    pods = _redis_pods(kube, rel)
    views = {p.metadata.name: parse_cluster_nodes(_redis_cli(rel, p.metadata.name, "cluster", "nodes")) for p in pods}
    return topology(views, {p.metadata.name: p.spec.node_name for p in pods})


def _wait_placement(kube: Kube, rel: Release, timeout: float) -> tuple[list, float]:
    start = time.monotonic()
    pairs: list = []

    def placed():
        try:
            nodes = _topology(kube, rel)
            crowded = [(f"{c} masters", "-", node) for node, c in crowded_nodes(nodes).items()]
            pairs[:] = colocated_pairs(nodes) + crowded
        except (AssertionError, ValueError) as exc:  # a pod restarting, a cluster still settling
            nodes, pairs[:] = [], [("?", "?", str(exc)[:200])]
        return None if pairs else (nodes,)

    (nodes,) = wait_until(placed, timeout, "no master beside its replica", interval=5,
                          explain=lambda: f"still co-located: {pairs}")  # fmt: skip
    return nodes, time.monotonic() - start


@pytest.fixture(scope="module")
def multi_node(kube: Kube, release: Release) -> None:
    nodes = {p.spec.node_name for p in _redis_pods(kube, release)}
    if len(nodes) < 2:
        pytest.skip(f"the Redis pods run on {len(nodes)} node(s): no placement can separate a master from its replica")
    crons = kube.batch.list_namespaced_cron_job(release.namespace, label_selector=release.selector).items
    if not [c for c in crons if c.metadata.name.endswith("-redis-reconciler")]:
        pytest.skip("redis.reconciler.enabled is off in this release's values")


def test_after_bootstrap_no_master_shares_a_node_with_its_replica(kube: Kube, release: Release, multi_node):
    jobs = kube.batch.list_namespaced_job(
        release.namespace, label_selector=f"{release.selector},component=redis-reconciler"
    )
    hook = [j for j in jobs.items if j.metadata.name.endswith("-after-bootstrap")]
    if hook:
        logs = run([KUBECTL, "-n", release.namespace, "logs", f"job/{hook[0].metadata.name}"], check=False).stdout
        repairs = [line for line in logs.splitlines() if "CLUSTER REPLICATE" in line]
        record("after-bootstrap reconcile", f"{len(repairs)} re-pair(s): " + "; ".join(r[-110:] for r in repairs))
    # The hook ran before `helm install` returned; a CronJob run at most a minute later covers a release
    # installed without it.
    nodes, waited = _wait_placement(kube, release, timeout=150)
    masters = [n for n in nodes if n.role == "master"]
    assert len(masters) >= 2 and all(n.master_id for n in nodes if n.role == "replica")
    record(
        "Redis placement",
        ", ".join(f"{n.pod.rsplit('-', 1)[-1]}:{n.role[0].upper()}@{n.k8s_node}" for n in nodes)
        + f" (right after {waited:.0f} s)",
    )


@pytest.mark.extended
def test_reconciler_repairs_a_replica_moved_onto_its_masters_node(kube: Kube, release: Release, multi_node):
    nodes, _ = _wait_placement(kube, release, timeout=150)
    by_id = {n.node_id: n for n in nodes}
    # Break it as a failover can: a replica on some master's node is made that master's replica.
    victim = next(
        (
            (r, m)
            for m in nodes
            if m.role == "master"
            for r in nodes
            if r.role == "replica" and r.k8s_node == m.k8s_node and r.master_id != m.node_id
        ),
        None,
    )
    if victim is None:
        pytest.skip("no replica shares a node with another master: cannot break the placement by re-pairing")
    replica, master = victim
    assert _redis_cli(release, replica.pod, "cluster", "replicate", master.node_id).strip() == "OK"
    start = time.monotonic()
    wait_until(lambda: colocated_pairs(_topology(kube, release)), 30, "CLUSTER REPLICATE to take effect", interval=1)
    record(
        "placement broken on purpose",
        f"{replica.pod} (node {replica.k8s_node}) now replicates {master.pod} on the same node "
        f"(was {by_id[replica.master_id].pod})",
    )
    nodes, _ = _wait_placement(kube, release, timeout=240)
    counts = {m.node_id: 0 for m in nodes if m.role == "master"}
    for n in nodes:
        if n.role == "replica":
            counts[n.master_id] += 1
    assert sorted(counts.values())[0] >= 1, f"a master was left without a replica: {counts}"
    record("CronJob reconciler repaired the placement", f"{time.monotonic() - start:.0f} s after the break")


def _healed_everywhere(kube: Kube, rel: Release) -> bool:
    """Every pod says cluster_state:ok AND knows every other pod at its current IP, none failing.

    cluster_state:ok alone is not enough: right after a restart each node still trusts the peers of its
    nodes.conf (the old IPs) until cluster-node-timeout passes, so it answers ok for a few seconds and then
    fails until the peers are met again at their new IPs."""
    pods = _redis_pods(kube, rel)
    if len(pods) < 2 or any(p.status.phase != "Running" or not p.status.pod_ip for p in pods):
        return False
    current = {p.status.pod_ip for p in pods}
    try:
        for pod in pods:
            if "cluster_state:ok" not in _redis_cli(rel, pod.metadata.name, "cluster", "info"):
                return False
            view = parse_cluster_nodes(_redis_cli(rel, pod.metadata.name, "cluster", "nodes"))
            # peers only: a node's own line keeps the IP it last learned from a MEET, which no peer uses (the
            # bus takes a sender's address from its connection; clients are given hostnames)
            peers = {n.ip for n in view if not n.is_myself}
            if peers != current - {pod.status.pod_ip} or any(n.failing for n in view):
                return False
    except Exception:  # a pod not answering exec yet
        return False
    return True


@contextmanager
def _reconciler_suspended(kube: Kube, rel: Release) -> Iterator[None]:
    """The reconciler CronJob off (and none of its Jobs running) for the block, on again after it."""
    cron = next(
        c.metadata.name
        for c in kube.batch.list_namespaced_cron_job(rel.namespace, label_selector=rel.selector).items
        if c.metadata.name.endswith("-redis-reconciler")
    )
    kube.batch.patch_namespaced_cron_job(cron, rel.namespace, {"spec": {"suspend": True}})
    try:

        def none_running() -> bool:
            jobs = kube.batch.list_namespaced_job(
                rel.namespace, label_selector=f"{rel.selector},component=redis-reconciler"
            ).items
            return not any(j.status.active for j in jobs)

        wait_until(none_running, 180, "no reconciler Job running", interval=2)
        yield
    finally:
        kube.batch.patch_namespaced_cron_job(cron, rel.namespace, {"spec": {"suspend": False}})


def test_every_redis_pod_restarted_at_once_comes_back_as_one_cluster(
    kube: Kube, release: Release, multi_node, api: AirflowAPI
):
    """A whole-cluster restart (power cut, kind's node containers restarted): every Redis pod comes back with
    a new IP while every nodes.conf lists the old ones, so no node reaches another. Each pod heals it itself
    (start.sh runs rejoin.sh: CLUSTER MEET to the peers whose names now resolve elsewhere); the reconciler
    CronJob, the backstop, is suspended throughout so the figure is the pods' own."""
    _wait_placement(kube, release, timeout=150)
    with _reconciler_suspended(kube, release):
        _restart_every_redis_pod_and_heal(kube, release)
    nodes, placed = _wait_placement(kube, release, timeout=300)  # the reconciler's part: the placement
    assert len([n for n in nodes if n.role == "master"]) >= 2
    # Through Airflow: the workers' waits and subscriptions were on the old pods, which vanished without
    # closing a connection; a run over all six queues must still complete (CI once saw it hang for good).
    api.unpause("ha_probe")
    run_id = api.trigger("ha_probe", f"redis_restart_{secrets.token_hex(4)}", conf={"seconds": 0.2})
    triggered = time.monotonic()
    state = api.wait_for_runs([("ha_probe", run_id)], 300)[("ha_probe", run_id)]
    assert state == "success", f"ha_probe/{run_id} over every queue ended {state} after the Redis restart"
    record(
        "every Redis pod restarted at once, then",
        f"placement right {placed:.0f} s after the reconciler was back; a 24-task run over all six queues "
        f"succeeded in {time.monotonic() - triggered:.0f} s",
    )


def _restart_every_redis_pod_and_heal(kube: Kube, release: Release) -> None:
    before = {p.metadata.name: (p.metadata.uid, p.status.pod_ip) for p in _redis_pods(kube, release)}
    run([KUBECTL, "-n", release.namespace, "delete", "pod", "-l", f"{release.selector},component=redis",
         "--grace-period=0", "--wait=false"])  # fmt: skip
    start = time.monotonic()

    def all_replaced() -> bool:
        pods = _redis_pods(kube, release)
        return len(pods) == len(before) and all(
            p.metadata.uid != before[p.metadata.name][0] and p.status.pod_ip for p in pods
        )

    wait_until(all_replaced, 300, "every Redis pod replaced", interval=2)
    replaced = time.monotonic() - start
    after = {p.metadata.name: p.status.pod_ip for p in _redis_pods(kube, release)}
    moved = sorted(name for name, ip in after.items() if ip != before[name][1])
    if not moved:
        pytest.skip("every Redis pod got its old IP back: nothing was stale to heal")
    wait_until(lambda: _healed_everywhere(kube, release), 300, "every pod to know every peer at its new IP", interval=2)
    healed = time.monotonic() - start
    meets = [
        line
        for pod in after
        for line in run([KUBECTL, "-n", release.namespace, "logs", pod, "-c", "redis"], check=False).stdout.splitlines()
        if line.startswith("rejoin:")
    ]
    assert meets, "the cluster healed with the reconciler suspended, yet no pod logged a rejoin MEET"
    record(
        "every Redis pod restarted at once (reconciler suspended)",
        f"{len(moved)} of {len(after)} came back with a new IP, all replaced after {replaced:.0f} s; every pod "
        f"ok and meeting every peer at its new IP after {healed:.0f} s, healed by the pods' own "
        f"{len(meets)} CLUSTER MEET(s)",
    )
