"""``airflow-ha worker-watch``: fail a lost Celery worker's running tasks within seconds, not minutes.

Airflow notices a task whose worker died only when the task stops heartbeating for
``[scheduler] task_instance_heartbeat_timeout`` (300 s by default). Kubernetes knows much sooner: a
worker pod that is gone (deleted, evicted, its container killed and the pod replaced) or a worker pod on
a node the control plane declared lost (node ``Ready`` is ``Unknown``/``False``) runs nothing any more.

This watcher (a Deployment of its own, see the chart's ``workerWatcher``) watches the release's worker
pods and the nodes. For every worker it finds lost, it sets ``last_heartbeat_at`` of that worker's
``running`` task instances far into the past, so the scheduler that queued them fails them through
Airflow's own heartbeat-timeout path at its next check (``task_instance_heartbeat_timeout_detection_interval``,
10 s): retries, callbacks and the task log's reason are Airflow's. Nothing else is touched.

No false positives on a slow but live worker: a stopped (SIGSTOP) or overloaded worker keeps its pod and
its node, so the watcher never acts on it; Airflow's own timeout still applies to it. A worker pod that is
terminating gracefully (warm shutdown: running tasks finish) is lost only once it is gone.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 2, tzinfo=UTC)  # "never heartbeated": older than any timeout


@dataclass(frozen=True)
class WorkerPod:
    name: str
    node: str | None
    exists: bool = True  # False: the pod is gone (deleted, or replaced under the same name: new uid)
    uid: str = ""


def lost_workers(pods: Iterable[WorkerPod], lost_nodes: set[str]) -> set[str]:
    """Names of the worker pods whose tasks cannot be running any more."""
    return {p.name for p in pods if not p.exists or (p.node is not None and p.node in lost_nodes)}


def node_lost(conditions: Iterable) -> bool:
    """A node whose ``Ready`` condition is ``Unknown`` (no kubelet heartbeat) or ``False``."""
    for cond in conditions or ():
        if cond.type == "Ready":
            return cond.status != "True"
    return False


def host_matches(hostname: str | None, pod: str) -> bool:
    """A task instance's hostname is its worker pod's name or its FQDN (``<pod>.<service>.<ns>.svc...``)."""
    return bool(hostname) and (hostname == pod or hostname.startswith(pod + "."))


def expire_heartbeats(pods: set[str], session) -> list[tuple[str, str, str, int]]:
    """Let Airflow's heartbeat timeout catch the running tasks of ``pods`` now; returns what was expired."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select, update

    running = session.execute(
        select(TI.id, TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.hostname).where(
            TI.state == TaskInstanceState.RUNNING
        )
    ).all()
    hit = [row for row in running if any(host_matches(row.hostname, p) for p in pods)]
    if hit:
        session.execute(
            update(TI)
            .where(TI.id.in_([row.id for row in hit]), TI.state == TaskInstanceState.RUNNING)
            .values(last_heartbeat_at=EPOCH)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return [(row.dag_id, row.run_id, row.task_id, row.map_index) for row in hit]


class Watcher:
    """Polls the API server (a list every ``interval`` s is simpler to get right than a watch that must be
    re-established through a control-plane failover, and cheap for a handful of pods and nodes)."""

    def __init__(self, namespace: str, selector: str, interval: float = 2.0):
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        self.core = client.CoreV1Api()
        self.namespace = namespace
        self.selector = selector
        self.interval = interval
        self.known: dict[str, WorkerPod] = {}

    def snapshot(self) -> tuple[list[WorkerPod], set[str]]:
        items = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        current = {
            p.metadata.name: WorkerPod(
                p.metadata.name, p.spec.node_name, p.status.phase not in ("Succeeded", "Failed"), p.metadata.uid
            )
            for p in items
        }
        pods = list(current.values())
        for name, before in self.known.items():  # gone, or the same name with a new uid: the old one is gone
            now = current.get(name)
            if now is None or now.uid != before.uid:
                pods.append(WorkerPod(name, before.node, False, before.uid))
        self.known = current
        lost_nodes = {n.metadata.name for n in self.core.list_node().items if node_lost(n.status.conditions)}
        return pods, lost_nodes

    def step(self) -> list[tuple[str, str, str, int]]:
        from airflow.utils.session import create_session

        pods, lost_nodes = self.snapshot()
        lost = lost_workers(pods, lost_nodes)
        if not lost:
            return []
        with create_session() as session:
            expired = expire_heartbeats(lost, session)
        for dag_id, run_id, task_id, map_index in expired:
            log.warning(
                "worker-watch: %s/%s/%s[%s] ran on a lost worker (%s): left to Airflow's heartbeat timeout now",
                dag_id, run_id, task_id, map_index, ", ".join(sorted(lost)),
            )  # fmt: skip
        return expired

    def run_forever(self) -> None:
        while True:
            try:
                self.step()
            except Exception as exc:  # the API server or the database failing over: try again
                log.warning("worker-watch: %s: %s", type(exc).__name__, exc)
            time.sleep(self.interval)


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    namespace = args.namespace or os.environ.get("POD_NAMESPACE")
    if not namespace:
        print("worker-watch: no namespace: pass --namespace or set POD_NAMESPACE", file=sys.stderr)
        return 2
    Watcher(namespace, args.selector, args.interval).run_forever()
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("worker-watch", help=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--namespace", help="namespace of the worker pods (default: $POD_NAMESPACE)")
    parser.add_argument("--selector", required=True, help="label selector of the worker pods")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between looks (default 2)")
    parser.set_defaults(func=run)
