"""The worker watcher's decisions: which worker pods are lost, and which task hostnames are theirs."""

from __future__ import annotations

from types import SimpleNamespace

from airflow_ha.worker_watch import WorkerPod, host_matches, lost_workers, node_lost


def cond(type_, status):
    return SimpleNamespace(type=type_, status=status)


def test_gone_pods_and_pods_on_lost_nodes_are_lost():
    pods = [
        WorkerPod("w-0", "n1"),
        WorkerPod("w-1", "n2"),
        WorkerPod("w-2", "n3", exists=False),  # deleted / replaced
        WorkerPod("w-3", None),  # not scheduled yet
    ]
    assert lost_workers(pods, {"n2"}) == {"w-1", "w-2"}
    assert lost_workers(pods, set()) == {"w-2"}


def test_a_slow_worker_is_not_lost():
    """SIGSTOPped or overloaded: its pod exists and its node is Ready, whatever its tasks do."""
    assert lost_workers([WorkerPod("w-0", "n1")], set()) == set()


def test_node_ready_unknown_or_false_is_lost():
    assert node_lost([cond("MemoryPressure", "False"), cond("Ready", "Unknown")])
    assert node_lost([cond("Ready", "False")])
    assert not node_lost([cond("Ready", "True"), cond("DiskPressure", "True")])
    assert not node_lost([])


def test_task_hostnames_match_their_pod_only():
    assert host_matches("airflow-ha-worker-1", "airflow-ha-worker-1")
    assert host_matches("airflow-ha-worker-1.airflow-ha-worker.ns.svc.cluster.local", "airflow-ha-worker-1")
    assert not host_matches("airflow-ha-worker-10", "airflow-ha-worker-1")
    assert not host_matches("airflow-ha-worker-1x.svc", "airflow-ha-worker-1")
    assert not host_matches(None, "airflow-ha-worker-1")
