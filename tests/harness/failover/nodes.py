"""Whole-node failures on Kubernetes: a node powered off, a node cut off the network (split brain).

These need a cluster whose nodes can be switched off: ``../shared/kube`` (``stop-node``/``up``,
``partition-node``/``heal``) or kind (``docker kill``/``start``, ``docker network disconnect``/``connect``).
:func:`node_control` picks one from the node names; scenarios get a :class:`NodeControl`.

- :func:`node_lost`: power off the node of a scheduler, a worker and a Redis master while probe DAG runs and
  waiting smart sensors are in flight. The replica elsewhere is promoted (no slot range is lost, which
  only holds because no master shares a node with its replica), the other scheduler keeps scheduling;
  then the node returns and the release must get back to full Redis redundancy with that placement.
  Every probe task that ended before the stop has its log read through the api-server while the node is
  down (remote task logs: the lost node's workers can no longer serve theirs).
- :func:`split_brain`: cut off the node of a Redis master while publishers on both sides of the cut
  send numbered messages to a queue that master owns, for longer than the cluster's node timeout. The
  majority promotes the replica; the cut-off master keeps taking writes from its side until it notices.
  After ``heal`` it becomes a replica and drops what it took: those messages are lost unless the
  transport's replication mitigation (``WAIT`` + ``replication_wait_policy`` ``auto`` or ``raise``)
  refused them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Protocol

from airflow_ha.broker.keys import queue_slot
from airflow_ha.broker.probe import PROBE_QUEUE_PREFIX, parse_output
from airflow_ha.redis_ops.cluster_nodes import TOTAL_SLOTS, parse_cluster_nodes
from airflow_ha.redis_ops.placement import colocated_pairs, crowded_nodes, topology
from tests.harness.failover import scenarios
from tests.harness.failover.kubernetes import KubernetesBackend, pod_ready
from tests.harness.failover.report import ScenarioResult
from tests.harness.failover.scenarios import ScenarioError, Workload
from tests.harness.waiting import WaitTimeout, wait_until


class NodeControl(Protocol):
    kind: str

    def stop(self, node: str) -> None: ...
    def start(self, node: str) -> None: ...
    def can_partition(self, node: str) -> bool: ...
    def partition(self, node: str) -> None: ...
    def heal(self, node: str) -> None: ...
    def diagnose(self, node: str) -> str: ...


def _sh(*cmd: str, env: dict | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}")
    return proc.stdout


class KubeoneNodes:
    """../shared/kube: node ``kubeone`` is 1, ``kubeone-N`` is N; only nodes 2.. can be partitioned."""

    kind = "kubeone"

    def __init__(self, shared_kube: Path, node_count: int) -> None:
        self.dir, self.node_count = shared_kube, node_count

    @staticmethod
    def index(node: str) -> int:
        return int(node.rsplit("-", 1)[1]) if node.startswith("kubeone-") else 1

    def stop(self, node: str) -> None:
        _sh(str(self.dir / "stop-node"), str(self.index(node)))

    def start(self, node: str) -> None:
        # `up` restarts what is stopped, then gives each node KUBEONE_WAIT tries to be Ready (default 240; in
        # CI those tries failed for minutes while the node was Ready: node_lost then asks the API server)
        env = {**os.environ, "KUBEONE_NODES": str(self.node_count), "KUBEONE_WAIT": "60"}
        _sh(str(self.dir / "up"), env=env, timeout=600)

    def can_partition(self, node: str) -> bool:
        return self.index(node) >= 2

    def partition(self, node: str) -> None:
        _sh(str(self.dir / "partition-node"), str(self.index(node)))

    def heal(self, node: str) -> None:
        _sh(str(self.dir / "partition-node"), str(self.index(node)), "heal")

    def diagnose(self, node: str) -> str:
        """Whether the node's kubelet runs, and the last errors it logged (the tool keeps them in its state)."""
        state = Path(os.environ.get("KUBEONE_DIR", "/var/lib/kubeone"))
        n = self.index(node)
        try:
            alive = Path(f"/proc/{int((state / f'kubelet-{n}.pid').read_text())}").exists()
        except (OSError, ValueError):
            alive = False
        try:
            lines = (state / "log" / f"kubelet-{n}.log").read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"kubelet {'running' if alive else 'not running'}; no log ({exc})"
        errors = [line[:300] for line in lines if line[:1] in "EF"][-8:]
        return f"kubelet {'running' if alive else 'not running'}; its last errors: " + (" | ".join(errors) or "none")


class KindNodes:
    """kind: every node is a Docker container on the ``kind`` network."""

    kind = "kind"

    def stop(self, node: str) -> None:
        _sh("docker", "kill", node)

    def start(self, node: str) -> None:
        _sh("docker", "start", node)

    def can_partition(self, node: str) -> bool:
        return not node.endswith("-control-plane")

    def partition(self, node: str) -> None:
        _sh("docker", "network", "disconnect", "kind", node)

    def heal(self, node: str) -> None:
        _sh("docker", "network", "connect", "kind", node)

    def diagnose(self, node: str) -> str:
        proc = subprocess.run(
            ["docker", "exec", node, "journalctl", "-u", "kubelet", "-p", "err", "-n", "8", "--no-pager"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return f"kubelet's last errors: {(proc.stdout or proc.stderr).strip()[-1500:] or 'none'}"


def node_control(node_names: list[str], shared_kube: Path) -> NodeControl | None:
    """The control for this cluster's nodes, or None when they cannot be switched off from here."""
    if node_names and all(n == "kubeone" or n.startswith("kubeone-") for n in node_names):
        if (shared_kube / "stop-node").is_file() and os.geteuid() == 0:
            return KubeoneNodes(shared_kube, len(node_names))
        return None
    if shutil.which("docker"):
        proc = subprocess.run(["docker", "inspect", *node_names], capture_output=True, text=True)
        if proc.returncode == 0:
            return KindNodes()
    return None


# -- what the scenarios read from the cluster ------------------------------------------------------------
class ClusterView:
    """Pods per node and the Redis Cluster as seen from a pod on a live node."""

    def __init__(self, backend: KubernetesBackend) -> None:
        self.backend = backend

    def pods(self, component: str | None = None) -> list:
        """The release's scheduled pods, or one component's ("database": the single pod or the group's members)."""
        selector = f"app.kubernetes.io/instance={self.backend.release}"
        if component:
            selector += f",component={self.backend.label_of(component)}"
        pods = self.backend.core.list_namespaced_pod(self.backend.namespace, label_selector=selector).items
        return [p for p in pods if p.metadata.deletion_timestamp is None and p.spec.node_name]

    def node_of(self, pod: str) -> str:
        return self.backend.core.read_namespaced_pod(pod, self.backend.namespace).spec.node_name

    def redis_cli(self, pod: str, *args: str, timeout: float = 30) -> str:
        password = self.backend.secret(f"{self.backend.release}-redis-password", "password")
        return self.backend.run_kubectl(
            "exec", pod, "-c", "redis", "--", "redis-cli", "--no-auth-warning", "-a", password, *args, timeout=timeout
        )

    def redis_nodes(self, avoid: str | None = None):
        """CLUSTER NODES (parsed) from the first Ready Redis pod not on node ``avoid``."""
        for pod in self.pods("redis"):
            if pod.spec.node_name == avoid or not pod_ready(pod):
                continue
            try:
                return parse_cluster_nodes(self.redis_cli(pod.metadata.name, "cluster", "nodes", timeout=15))
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
        raise RuntimeError(f"no Redis pod off node {avoid} answered CLUSTER NODES")

    @staticmethod
    def pod_name(cluster_node) -> str:
        return cluster_node.hostname.split(".", 1)[0]

    def masters_on(self, node: str) -> list:
        pod_nodes = {p.metadata.name: p.spec.node_name for p in self.pods("redis")}
        return [
            n
            for n in self.redis_nodes()
            if n.role == "master" and n.slots and not n.failing and pod_nodes.get(self.pod_name(n)) == node
        ]

    def ensure_master_on(self, node: str) -> str:
        """A Redis master pod on ``node``: one that is, or a replica there promoted by CLUSTER FAILOVER."""
        masters = self.masters_on(node)
        if masters:
            return self.pod_name(masters[0])
        replicas = [p.metadata.name for p in self.pods("redis") if p.spec.node_name == node]
        if not replicas:
            raise ScenarioError(f"no Redis pod runs on {node}")
        self.redis_cli(replicas[0], "cluster", "failover")
        wait_until(lambda: self.masters_on(node), 60, f"{replicas[0]} to become master (CLUSTER FAILOVER)", interval=1)
        return self.pod_name(self.masters_on(node)[0])

    def ensure_worker_on(self, node: str) -> str:
        """A Celery worker pod on ``node``: one that is, or one moved there, so that losing the node loses a worker
        and the logs of the tasks it ran. Workers keep no volume; the other nodes are cordoned while the pod is
        deleted (gracefully: it runs nothing yet) and its StatefulSet makes it again."""
        workers = self.pods("worker")
        on_node = sorted(p.metadata.name for p in workers if p.spec.node_name == node and pod_ready(p))
        if on_node:
            return on_node[0]
        if not workers:
            raise ScenarioError("the release has no worker pod")
        pod = sorted(p.metadata.name for p in workers)[0]
        core, namespace = self.backend.core, self.backend.namespace
        others = [n.metadata.name for n in core.list_node().items if n.metadata.name != node]
        old_uid = core.read_namespaced_pod(pod, namespace).metadata.uid

        def moved() -> bool:
            try:
                now = core.read_namespaced_pod(pod, namespace)
            except Exception:  # between the deletion and the new pod
                return False
            return now.metadata.uid != old_uid and now.spec.node_name == node and pod_ready(now)

        try:
            for other in others:
                core.patch_node(other, {"spec": {"unschedulable": True}})
            core.delete_namespaced_pod(pod, namespace)
            wait_until(moved, 300, f"worker {pod} made again on {node}", interval=2)
        finally:
            for other in others:
                core.patch_node(other, {"spec": {"unschedulable": False}})
        return pod

    def slots_served(self, avoid: str) -> tuple[bool, int]:
        """(cluster_state ok, slots held by masters not on node ``avoid`` and not failing)."""
        pod_nodes = {p.metadata.name: p.spec.node_name for p in self.pods("redis")}
        nodes = self.redis_nodes(avoid=avoid)
        live = [
            n
            for n in nodes
            if n.role == "master" and not n.failing and pod_nodes.get(self.pod_name(n)) not in (avoid, None)
        ]
        pods = [p for p in self.pods("redis") if p.spec.node_name != avoid and pod_ready(p)]
        info = self.redis_cli(pods[0].metadata.name, "cluster", "info", timeout=15) if pods else ""
        return "cluster_state:ok" in info, sum(n.slots for n in live)

    def placement_ok(self) -> bool:
        """Every pod's own CLUSTER NODES agrees, no master shares a Kubernetes node with its replica, no node
        holds so many masters that its loss leaves no majority to vote a failover (the reconciler's job), and
        every replica's replication link is up."""
        pods = self.pods("redis")
        try:
            views = {
                p.metadata.name: parse_cluster_nodes(self.redis_cli(p.metadata.name, "cluster", "nodes")) for p in pods
            }
            nodes = topology(views, {p.metadata.name: p.spec.node_name for p in pods})
        except (RuntimeError, ValueError, subprocess.TimeoutExpired):
            return False
        masters = {n.node_id for n in nodes if n.role == "master"}
        replicated = {n.master_id for n in nodes if n.role == "replica"}
        if not (masters <= replicated and not colocated_pairs(nodes) and not crowded_nodes(nodes)):
            return False
        # a replica counts only while it really replicates: one whose link dials a stale address cannot
        # be promoted ("disconnected from master for longer than allowed")
        try:
            return all(
                "master_link_status:up" in self.redis_cli(n.pod, "info", "replication", timeout=15)
                for n in nodes
                if n.role == "replica"
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            return False


# -- node lost -------------------------------------------------------------------------------------------
def _pick_node(view: ClusterView, need_partition: NodeControl | None = None) -> str:
    """A node with a scheduler (node_lost) or a worker (split brain), no database, and the most on it."""
    # a single-pod database cannot move: its node is avoided (a Group Replication group has a member on every node)
    database = set() if view.backend.group_replication else {p.spec.node_name for p in view.pods("database")}
    want = "worker" if need_partition else "scheduler"
    candidates = sorted({p.spec.node_name for p in view.pods(want)} - database)
    if need_partition:
        candidates = [n for n in candidates if need_partition.can_partition(n)]
    if not candidates:
        raise ScenarioError(f"no node holds a {want} without the database (needed to lose one)")

    # Prefer the node that also runs a worker / scheduler and a sensor shard: more is in flight there.
    def load(node: str) -> int:
        return sum(1 for p in view.pods() if p.spec.node_name == node)

    return max(candidates, key=load)


def _bring_back(backend: KubernetesBackend, nodes: NodeControl, target: str) -> None:
    """Start ``target`` again, and wait for the API server to call it Ready (the client every other step uses:
    in CI `../shared/kube/up` gave up on returning nodes whose kubelet had logged Ready within a second).

    A node whose kubelet stays not Ready for minutes is powered off and on once more, as one would a machine
    that did not boot: in one CI run a restarted node never turned Ready. What the product does about a lost
    node is measured either way; each retry is printed with what the node's kubelet logged."""

    def ready() -> bool:
        try:
            return target in backend.ready_nodes()
        except Exception:  # the API server still busy with the returning node
            return False

    for attempt in (1, 2):
        try:
            nodes.start(target)
        except RuntimeError as exc:
            failure = str(exc)[-300:]
        else:
            return
        try:
            wait_until(ready, 240, f"node {target} Ready", interval=2)
        except WaitTimeout:
            why = f"node {target} not Ready after a start (attempt {attempt}): {failure}; {nodes.diagnose(target)}"
            if attempt == 2:
                raise RuntimeError(why) from None
            print(f"[nodes] {why}; powering it off and on again", flush=True)
            with contextlib.suppress(RuntimeError):
                nodes.stop(target)
            continue
        print(f"[nodes] {target} Ready (the node tool had given up: {failure})", flush=True)
        return


def _committed(backend: KubernetesBackend) -> tuple[int, int]:
    """(highest dag_run id, rows up to it): rows committed before a failure must all be there after it."""
    (top,) = backend.sql("SELECT COALESCE(MAX(id), 0) FROM dag_run")[0]
    (count,) = backend.sql("SELECT COUNT(*) FROM dag_run WHERE id <= %s", (top,))[0]
    return int(top), int(count)


DATABASE_PRIMARY = "the database primary's node"


def node_lost(
    backend: KubernetesBackend, nodes: NodeControl, target: str | None = None, down_seconds: float = 90.0
) -> ScenarioResult:
    """Power ``target`` off (default: the busiest node with a scheduler; ``DATABASE_PRIMARY``: the node of the
    Group Replication primary, read when the scenario starts) with probe runs and smart sensors in flight; a
    Redis master is moved onto it first, so its loss is a failover too."""
    view = ClusterView(backend)
    # From a settled release: a scenario before this one may have ended mid-failure (a node just back).
    backend.recover()
    wait_until(backend.database_redundant, 600, "every database member ONLINE", interval=5)
    backend.wait_healthy(300)
    # Earlier failovers may have gathered masters on one node; the reconciler CronJob spreads them again.
    wait_until(view.placement_ok, 300, "masters spread and no master beside its replica", interval=5)
    if target == DATABASE_PRIMARY:
        target = view.node_of(backend.database_primary())
    target = target or _pick_node(view)
    master = view.ensure_master_on(target)
    worker = view.ensure_worker_on(target)
    on_node = sorted(p.metadata.name for p in view.pods() if p.spec.node_name == target and p.status.phase == "Running")
    workload = Workload(backend, "node-lost", seconds=3.0)
    sensors = Workload(
        backend,
        "node-lost-sensors",
        seconds=0.0,
        dag_id=scenarios.SENSOR_PROBE_DAG,
        task_pattern="wait\\_%",
        tasks_per_run=scenarios.SENSORS_PER_RUN,
    )
    backend.api.unpause(scenarios.SENSOR_PROBE_DAG)

    def release_sensors() -> None:
        for run_id in sensors.runs:
            backend.api.set_variable(f"{scenarios.SENSOR_RELEASE_PREFIX}/{run_id}", "go")

    sensors.trigger(2)
    workload.trigger(3)
    wait_until(lambda: workload.succeeded() > 0, 180, "probe tasks to flow")
    wait_until(
        lambda: sum(1 for row in sensors.work_instances() if row[3] == "deferred") == sensors.tasks_expected,
        300,
        "every probe sensor deferred",
        interval=2,
        explain=lambda: _states_explained(backend, sensors, workload),
    )
    backend.avoid_nodes = {target}  # API and DB forwards go to pods elsewhere before the node goes
    backend.reconnect()
    top_id, committed = _committed(backend)
    database_pods = sorted(
        p.metadata.name
        for p in view.pods()
        if p.spec.node_name == target and "mysql" in (p.metadata.labels or {}).get("component", "")
    )
    logged = wait_until(lambda: _ended_tasks(backend, workload), 120, "a probe task ended 10 s ago", interval=2)
    started = time.monotonic()
    nodes.stop(target)
    back = False
    try:
        # The master's slots: served again by its replica on another node (never uncovered for good).
        fewest = [TOTAL_SLOTS]

        def served() -> bool:
            try:
                ok, slots = view.slots_served(avoid=target)
            except (RuntimeError, subprocess.TimeoutExpired):
                return False
            fewest[0] = min(fewest[0], slots)
            return ok and slots == TOTAL_SLOTS

        wait_until(served, 180, f"every slot served by masters off {target}", interval=1)
        redis_back = time.monotonic() - started
        after = workload.trigger(2)

        def started_run() -> bool:  # the scheduler queued a new run's task (it may wait behind the backlog)
            return any(row[3] in ("queued", "running", "success") for row in workload.work_instances(after))

        wait_until(started_run, 600, "a run triggered after the node loss to start (a task queued)")
        flowing = time.monotonic() - started
        wait_until(lambda: workload.succeeded(after) > 0, 600, "a run triggered after the node loss to run a task")
        ran = time.monotonic() - started
        logs_note = _read_task_logs(backend, workload.dag_id, logged, on_node, started)
        time.sleep(max(0.0, down_seconds - (time.monotonic() - started)))
        down_for = time.monotonic() - started
        back = True  # one start whatever it ends in: a node that did not return is not started twice more
        _bring_back(backend, nodes, target)
    except BaseException:
        # a failed scenario leaves no sensor of its own waiting (the tests after it count what waits)
        if not back:
            with contextlib.suppress(Exception):
                _bring_back(backend, nodes, target)
        with contextlib.suppress(Exception):
            release_sensors()
        raise
    release_sensors()
    states = backend.api.wait_for_runs([(workload.dag_id, r) for r in workload.runs], scenarios.RUN_TIMEOUT)
    sensor_states = backend.api.wait_for_runs([(sensors.dag_id, r) for r in sensors.runs], scenarios.RUN_TIMEOUT)
    returned = time.monotonic()
    backend.recover()
    wait_until(view.placement_ok, 300, "full Redis redundancy with no master beside its replica", interval=5)
    wait_until(backend.database_redundant, 600, "every database member back and in sync", interval=5)
    backend.wait_healthy(300)
    backend.avoid_nodes = set()
    redundant = time.monotonic() - returned
    (kept,) = backend.sql("SELECT COUNT(*) FROM dag_run WHERE id <= %s", (top_id,))[0]
    if int(kept) != committed:
        raise ScenarioError(f"{committed - int(kept)} dag_run rows committed before the node loss are gone")
    result = workload.result(flowing, {**states, **sensor_states}, [])
    sensor_result = sensors.result(None, sensor_states, [])
    result.dag_runs += sensor_result.dag_runs
    result.tasks_expected += sensor_result.tasks_expected
    result.tasks_succeeded += sensor_result.tasks_succeeded
    result.tasks_retried += sensor_result.tasks_retried
    result.tasks_lost += sensor_result.tasks_lost
    result.notes = [
        f"stopped node {target} ({len(on_node)} pods: {', '.join(on_node)}), Redis master {master} and worker "
        f"{worker} on it; "
        f"masters off {target} held {fewest[0]} slots at the stop, all {TOTAL_SLOTS} after {redis_back:.1f}s; "
        f"a new run started (a task queued) after {flowing:.1f}s and its first task succeeded after {ran:.1f}s; "
        f"node back after {down_for:.0f}s; full redundancy with "
        f"correct placement {redundant:.0f}s after every run ended; {len(sensors.runs)} sensor runs "
        f"({sensor_result.tasks_expected} sensors) waited through it; database pods on it: "
        f"{', '.join(database_pods) or 'none'}; all {committed} dag_run rows committed before the stop kept; "
        + logs_note
    ]
    result.scenario = f"node-lost-{target}"
    return result


def _ended_tasks(backend: KubernetesBackend, workload: Workload) -> list[tuple[str, str, int, str]]:
    """(run_id, task_id, try_number, hostname) of the probe tasks that ended at least 10 s ago: their task
    supervisor has uploaded the log (it does so right after the task reports its state)."""
    marks, params = ", ".join(["%s"] * len(workload.runs)), tuple(workload.runs)
    rows = backend.sql(
        "SELECT run_id, task_id, try_number, hostname FROM task_instance WHERE dag_id = %s"
        f" AND run_id IN ({marks}) AND state = 'success' AND end_date < UTC_TIMESTAMP(6) - INTERVAL 10 SECOND",
        (workload.dag_id, *params),
    )
    return [(run_id, task_id, int(try_number), hostname) for run_id, task_id, try_number, hostname in rows]


def _read_task_logs(
    backend: KubernetesBackend,
    dag_id: str,
    tasks: list[tuple[str, str, int, str]],
    lost_pods: list[str],
    stopped_at: float,
) -> str:
    """Read the log of every task in ``tasks`` through the api-server, as the UI does, while a node is down:
    each must come from the remote log store and show what the task printed. Those that ran on the lost
    node's workers could be read from nowhere else. Returns the figures for the scenario's notes."""
    missing: dict[tuple[str, str], str] = {}

    def readable(run_id: str, task_id: str, try_number: int) -> bool:
        try:
            text = backend.api.task_log(dag_id, run_id, task_id, try_number)
        except Exception as exc:  # the api-server or the store failing over: read again
            missing[(run_id, task_id)] = f"{type(exc).__name__}: {exc}"[:300]
            return False
        wanted = f"ha_probe executed ha_probe_execution/{run_id}/{task_id}/"
        if wanted not in text or "s3://" not in text:
            missing[(run_id, task_id)] = text[-600:]
            return False
        missing.pop((run_id, task_id), None)
        return True

    pending = list(tasks)

    def all_read() -> bool:
        pending[:] = [t for t in pending if not readable(t[0], t[1], t[2])]
        return not pending

    wait_until(
        all_read,
        180,
        f"the logs of {len(tasks)} probe tasks through the api-server, from the log store",
        interval=5,
        explain=lambda: f"{len(pending)} unread, e.g. {next(iter(missing.items()), None)}",
    )
    from_lost = sum(1 for t in tasks if (t[3] or "").split(".")[0] in lost_pods)
    if not from_lost:
        raise ScenarioError(f"no task that ended before the stop ran on the lost node's workers ({lost_pods})")
    return (
        f"task logs: all {len(tasks)} of the tasks ended before the stop read through the api-server from the "
        f"log store ({from_lost} ran on the lost node's workers), all read {time.monotonic() - stopped_at:.0f}s "
        "after the stop"
    )


def _states_explained(backend: KubernetesBackend, *workloads: Workload) -> str:
    """Where the tasks of ``workloads`` are (state x queue x hostname counts), for a wait that ran out."""
    lines = []
    for w in workloads:
        marks, params = w._in_runs()
        rows = backend.sql(
            "SELECT state, queue, hostname, COUNT(*) FROM task_instance"
            f" WHERE dag_id = %s AND run_id IN ({marks}) GROUP BY state, queue, hostname",
            (w.dag_id, *params),
        )
        lines.append(f"{w.dag_id} {w.runs}: " + ", ".join(f"{s}/{q}/{h or '-'}: {n}" for s, q, h, n in rows))
    return "\n".join(lines)


# -- split brain ----------------------------------------------------------------------------------------
def _queue_on(view: ClusterView, master_pod: str) -> str:
    """A probe queue name whose hash slot the master ``master_pod`` owns."""
    me = next(n for n in view.redis_nodes() if view.pod_name(n) == master_pod)
    for _ in range(100000):
        queue = f"{PROBE_QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
        if me.owns(queue_slot(queue)):
            return queue
    raise ScenarioError(f"no queue name maps to a slot of {master_pod} ({me.slot_ranges})")


class ProbePods:
    """Short-lived pods running ``airflow-ha broker-probe`` with a worker's image and environment."""

    def __init__(self, backend: KubernetesBackend) -> None:
        self.backend = backend
        self.names: list[str] = []
        # any worker StatefulSet: <release>-worker, or one per workers.groups entry (same image and env)
        selector = f"app.kubernetes.io/instance={backend.release},component=worker"
        sets = backend.apps.list_namespaced_stateful_set(backend.namespace, label_selector=selector).items
        if not sets:
            raise ScenarioError(f"no worker StatefulSet in {backend.namespace} ({selector})")
        self.template = sorted(sets, key=lambda s: s.metadata.name)[0].spec.template.spec

    def start(self, name: str, node: str, args: list[str], env: dict[str, str] | None = None) -> str:
        from kubernetes import client

        worker = self.template.containers[0]
        extra = [client.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()]
        container = client.V1Container(
            name="probe",
            image=worker.image,
            image_pull_policy=worker.image_pull_policy,
            args=args,
            env=[e for e in worker.env or [] if e.name not in (env or {})] + extra,
            env_from=worker.env_from,
            security_context=worker.security_context,
        )
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "airflow-ha-failover-probe"}),
            spec=client.V1PodSpec(
                containers=[container],
                restart_policy="Never",
                node_name=node,
                security_context=self.template.security_context,
                service_account_name=self.template.service_account_name,
                image_pull_secrets=self.template.image_pull_secrets,
            ),
        )
        self.backend.core.create_namespaced_pod(self.backend.namespace, pod)
        self.names.append(name)
        return name

    def phase(self, name: str) -> str:
        return self.backend.core.read_namespaced_pod(name, self.backend.namespace).status.phase

    def logs(self, name: str) -> str:
        return self.backend.core.read_namespaced_pod_log(name, self.backend.namespace, container="probe")

    def delete_all(self) -> None:
        from kubernetes.client import V1DeleteOptions

        for name in self.names:
            with contextlib.suppress(Exception):  # already gone
                self.backend.core.delete_namespaced_pod(
                    name, self.backend.namespace, body=V1DeleteOptions(grace_period_seconds=0)
                )
        self.names = []


def _longest_gap(acked_at: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(acked_at)), default=0.0)


CHART_DEFAULTS = "chart-defaults"


def split_brain(
    backend: KubernetesBackend,
    nodes: NodeControl,
    policy: str | None,
    cut_seconds: float = 25.0,
    rate: float = 10.0,
) -> ScenarioResult:
    """Publishers on both sides of a cut-off Redis master; count every message id after ``heal``.

    ``policy``: :data:`CHART_DEFAULTS` — the probe publishers run with the release's own broker config
    (``[celery] broker_url`` as the chart rendered it, no option of their own) AND DAG runs are triggered
    through the API before, during and after the cut, so tasks are published by the release's schedulers
    with the release's config; every run must succeed. Otherwise the publishers' ``replication_wait_policy``
    with WAIT for 1 replica (``auto``, ``raise``, ``warn``), or None for no WAIT at all (the mitigation off),
    set with ``--option``: comparisons, not the product's path.
    """
    label = f"split-brain-wait-{policy}" if policy else "split-brain-no-wait"
    view = ClusterView(backend)
    backend.recover()
    wait_until(view.placement_ok, 300, "full Redis redundancy with correct placement", interval=5)
    target = _pick_node(view, need_partition=nodes)
    master = view.ensure_master_on(target)
    queue = _queue_on(view, master)
    other = sorted({p.spec.node_name for p in view.pods("redis")} - {target})[0]
    if policy == CHART_DEFAULTS:
        label, options = "split-brain-chart-defaults", []
    elif policy:
        options = [
            "replication_wait_replicas=1",
            f"replication_wait_policy={policy}",
            "replication_wait_timeout_ms=500",
        ]
    else:
        options = ["replication_wait_replicas=0"]
    workload = Workload(backend, label, seconds=1.0) if policy == CHART_DEFAULTS else None
    before, after = 10.0, 20.0
    publish_seconds = before + cut_seconds + after
    args = ["airflow-ha", "broker-probe", "publish", "--queue", queue, "--seconds", str(publish_seconds)]
    args += ["--rate", str(rate)]
    for option in options:
        args += ["--option", option]
    pods = ProbePods(backend)
    suffix = uuid.uuid4().hex[:5]
    try:
        inside = pods.start(f"probe-in-{suffix}", target, [*args, "--prefix", "in"])
        outside = pods.start(f"probe-out-{suffix}", other, [*args, "--prefix", "out"])

        def publishing() -> bool:
            return all("ACK " in pods.logs(p) for p in (inside, outside) if pods.phase(p) == "Running") and all(
                pods.phase(p) == "Running" for p in (inside, outside)
            )

        wait_until(publishing, 180, "both probe publishers acknowledged", interval=1)
        if workload is not None:
            backend.avoid_nodes = {target}  # the API and DB forwards go to pods off the node being cut
            backend.reconnect()
            workload.trigger(2)
        time.sleep(before)
        cut_at = time.monotonic()
        nodes.partition(target)
        try:
            while time.monotonic() - cut_at < cut_seconds:
                if workload is not None:  # runs scheduled while the master is cut off and failing over
                    _trigger_quietly(workload)
                time.sleep(5.0 if workload is not None else cut_seconds)
        finally:
            nodes.heal(target)
        healed = time.monotonic()
        if workload is not None:
            workload.trigger(2)
        wait_until(
            lambda: all(pods.phase(p) in ("Succeeded", "Failed") for p in (inside, outside)),
            publish_seconds + 300,
            "the publishers to finish",
            interval=3,
        )
        logs = {p: pods.logs(p) for p in (inside, outside)}
        states = {}
        if workload is not None:
            states = backend.api.wait_for_runs([(workload.dag_id, r) for r in workload.runs], scenarios.RUN_TIMEOUT)
        backend.recover()
        backend.avoid_nodes = set()
        promoted = view.pod_name(next(n for n in view.redis_nodes() if _slot_in_node(view, n, queue)))
        drainer = pods.start(
            f"probe-drain-{suffix}",
            other,
            ["airflow-ha", "broker-probe", "drain", "--queue", queue, "--idle", "5"],
        )
        wait_until(lambda: pods.phase(drainer) in ("Succeeded", "Failed"), 600, "the drain to finish", interval=3)
        received = json.loads(pods.logs(drainer).strip().splitlines()[-1])["received"]
    finally:
        backend.avoid_nodes = set()
        pods.delete_all()
    acked: list[str] = []
    summaries = {}
    gaps = {}
    for pod, text in logs.items():
        ids, summary = parse_output(text)
        if not summary:
            raise ScenarioError(f"{pod} ended without its DONE line:\n{text[-2000:]}")
        acked += ids
        summaries[pod] = summary
        times = [float(line.split()[2]) for line in text.splitlines() if line.startswith("ACK ")]
        gaps[pod] = _longest_gap(times)
    lost = sorted(set(acked) - set(received))
    lost_inside = sum(1 for m in lost if m.startswith("in-"))
    duplicated = len(received) - len(set(received))
    refused = sum(s["errors"] for s in summaries.values())
    config = ", ".join(options) or "the release's own broker config (chart defaults)"
    notes = [
        f"cut off {target} (Redis master {master}, owner of queue {queue}) for {cut_seconds:.0f}s with "
        f"{config}; publishers at {rate:g}/s on {target} and {other}: {len(acked)} acknowledged, "
        f"{refused} refused and re-sent, {len(received)} received after heal, {len(lost)} lost "
        f"({lost_inside} from the cut-off side), {duplicated} duplicated; slot owner after heal: {promoted}; "
        f"longest publish gap: {gaps[inside]:.1f}s inside, {gaps[outside]:.1f}s outside; healed "
        f"{healed - cut_at:.0f}s after the cut"
    ]
    probe = ScenarioResult(
        scenario=label,
        backend=backend.name,
        dag_runs=0,
        dag_runs_succeeded=0,
        tasks_expected=len(set(acked)),
        tasks_succeeded=len(set(acked) & set(received)),
        tasks_retried=refused,
        tasks_duplicated=duplicated,
        tasks_lost=len(lost),
        recovery_seconds=gaps[outside],
        notes=notes,
    )
    if workload is None:
        return probe
    airflow = workload.result(gaps[outside], states, [])
    probe.dag_runs, probe.dag_runs_succeeded = airflow.dag_runs, airflow.dag_runs_succeeded
    probe.tasks_expected += airflow.tasks_expected
    probe.tasks_succeeded += airflow.tasks_succeeded
    probe.tasks_retried += airflow.tasks_retried
    probe.tasks_duplicated += airflow.tasks_duplicated
    probe.tasks_lost += airflow.tasks_lost
    probe.notes.append(
        f"through Airflow: {airflow.dag_runs} probe DAG runs ({len(scenarios.PROBE_QUEUES)} queues, one of them "
        f"on the cut-off master) triggered before, during and after the cut: {airflow.dag_runs_succeeded} "
        f"succeeded, {airflow.tasks_succeeded} of {airflow.tasks_expected} tasks, {airflow.tasks_retried} "
        f"retried, {airflow.tasks_lost} lost"
    )
    return probe


def _trigger_quietly(workload: Workload) -> None:
    """Trigger a run; an API answer lost to the cut (its forward re-pointed meanwhile) is not a failure."""
    try:
        workload.trigger(1)
    except Exception as exc:  # the run may or may not exist: only triggered runs are counted
        print(f"[split-brain] trigger during the cut failed ({type(exc).__name__}: {exc}); carrying on", flush=True)


def _slot_in_node(view: ClusterView, node, queue: str) -> bool:
    return node.role == "master" and not node.failing and node.owns(queue_slot(queue))


# -- drain -----------------------------------------------------------------------------------------------
def drain(backend: KubernetesBackend, timeout_seconds: float = 240.0) -> ScenarioResult:
    """``kubectl drain`` the busiest node while probe DAG runs are in flight, then ``uncordon`` it.

    The eviction API honours the release's PodDisruptionBudgets, so components lose at most one pod at a
    time; every run must still succeed. Pods whose volume is bound to the drained node (node-local storage
    such as local-path: Redis, MySQL) cannot start elsewhere, so with such storage the drain stops at
    their budget and times out (reported in the notes, as on kind); with network storage it completes.
    """
    view = ClusterView(backend)
    backend.recover()
    target = _pick_node(view)
    workload = Workload(backend, "drain", seconds=3.0)
    workload.trigger(3)
    wait_until(lambda: workload.succeeded() > 0, 180, "probe tasks to flow")
    backend.avoid_nodes = {target}
    backend.reconnect()
    on_node = sorted(p.metadata.name for p in view.pods() if p.spec.node_name == target)
    started = time.monotonic()
    kubectl = [str(backend.kubectl), "drain", target, "--ignore-daemonsets", "--delete-emptydir-data"]
    kubectl += [f"--timeout={int(timeout_seconds)}s"]
    proc = subprocess.Popen(kubectl, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while proc.poll() is None and time.monotonic() - started < timeout_seconds + 30:
            workload.trigger(1)  # a run every 30 s keeps work in flight without a long backlog after it
            time.sleep(30)
        drained = proc.poll() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0] if proc.stdout else ""
        subprocess.run([str(backend.kubectl), "uncordon", target], capture_output=True, text=True, timeout=60)
    drain_seconds = time.monotonic() - started
    states = backend.api.wait_for_runs([(workload.dag_id, r) for r in workload.runs], scenarios.RUN_TIMEOUT)
    backend.recover()
    backend.avoid_nodes = set()
    backend.wait_healthy(300)
    blocked = [line for line in out.splitlines() if "Cannot evict" in line or "disruption budget" in line]
    notes = [
        f"drained {target} ({len(on_node)} pods) with runs in flight: "
        + (f"completed in {drain_seconds:.0f}s" if drained else f"stopped after {drain_seconds:.0f}s")
        + (f"; the budgets held back evictions {len(blocked)} time(s)" if blocked else "")
        + ("" if drained else " (pods with node-local volumes cannot move: their budget stops the drain)")
    ]
    return workload.result(drain_seconds if drained else None, states, notes)


# -- the database primary's node cut off -----------------------------------------------------------------
def database_partition(backend: KubernetesBackend, nodes: NodeControl, cut_seconds: float = 45.0) -> ScenarioResult:
    """Cut the Group Replication primary's node off the network while a client commits rows through the
    proxy; after ``heal`` every row whose COMMIT returned is there, and the old primary rejoined (a member
    that had committed anything the majority lacks could not rejoin: the minority took no writes)."""
    import threading

    import MySQLdb

    if not backend.group_replication:
        raise ScenarioError("the release's database is a single pod (mysql.mode: single): nothing to fail over to")
    view = ClusterView(backend)
    backend.recover()
    wait_until(backend.database_redundant, 600, "every database member ONLINE", interval=5)
    members = backend.group_members()
    node_of = {p.metadata.name: p.spec.node_name for p in view.pods("database")}
    primary = backend.database_primary()
    if not nodes.can_partition(node_of[primary]):  # hand the primary to a member whose node can be cut
        member_id, pod = next((i, pod) for i, pod, _state, _role in members if nodes.can_partition(node_of[pod]))
        backend.mysql_root(f"SELECT group_replication_set_as_primary('{member_id}')")
        wait_until(lambda: backend.database_primary() == pod, 120, f"{pod} to become the primary", interval=2)
        primary = pod
    target = node_of[primary]
    backend.avoid_nodes = {target}
    backend.reconnect()
    table = f"airflow_ha_partition_{uuid.uuid4().hex[:6]}"

    def created() -> bool:  # right after a switchover the proxies' next check is up to one interval away
        try:
            backend.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, at DOUBLE)")
            return True
        except MySQLdb.OperationalError as exc:  # 1290 --super-read-only: still the demoted member
            if exc.args and exc.args[0] in (1290, 2013):
                return False
            raise

    wait_until(created, 60, "a write through the proxy after the switchover", interval=1)
    committed: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        conn, n = None, 0
        while not stop.is_set():
            try:
                if conn is None:
                    conn = backend.db_connection()
                n += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (n, time.time()))
                conn.commit()
                committed.append(n)
            except (MySQLdb.Error, OSError) as exc:
                errors.append(type(exc).__name__)
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                time.sleep(0.5)
            time.sleep(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(committed) >= 20, 120, "rows committed through the proxy", interval=1)
        before = len(committed)
        cut_at = time.monotonic()
        nodes.partition(target)
        try:
            wait_until(
                lambda: len(committed) > before + 20, cut_seconds + 120, "rows committed on the new primary", interval=1
            )
            writable_after = time.monotonic() - cut_at
            time.sleep(max(0.0, cut_seconds - (time.monotonic() - cut_at)))
        finally:
            nodes.heal(target)
        stop.set()
        thread.join(30)
        healed = time.monotonic()
        wait_until(backend.database_redundant, 600, "the cut-off member back ONLINE in the group", interval=5)
        rejoined = time.monotonic() - healed
        present = {int(r[0]) for r in backend.sql(f"SELECT id FROM {table}")}
        new_primary = backend.database_primary()
    finally:
        stop.set()
        backend.avoid_nodes = set()
        with contextlib.suppress(Exception):
            backend.execute(f"DROP TABLE IF EXISTS {table}")
    lost = sorted(set(committed) - present)
    notes = [
        f"cut off {target} with the database primary {primary} for {cut_seconds:.0f}s while a client committed "
        f"rows through the proxy: {len(committed)} committed, {len(lost)} lost after heal; writes went through "
        f"again {writable_after:.1f}s after the cut (new primary {new_primary}); the old primary rejoined "
        f"{rejoined:.0f}s after heal; {len(errors)} client errors (reconnected)"
    ]
    return ScenarioResult(
        scenario="database-primary-partitioned",
        backend=backend.name,
        dag_runs=0,
        dag_runs_succeeded=0,
        tasks_expected=len(committed),
        tasks_succeeded=len(set(committed) & present),
        tasks_retried=0,
        tasks_duplicated=0,
        tasks_lost=len(lost),
        recovery_seconds=writable_after,
        notes=notes,
    )
