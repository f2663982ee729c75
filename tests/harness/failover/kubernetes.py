"""The Kubernetes backend: the chart's release in the cluster of ``KUBECONFIG``, driven as a user would.

Instances are pods (``app.kubernetes.io/instance=<release>``, ``component=<name>``), killing one is
deleting it with no grace period (its controller replaces it), and the REST API and MySQL are reached
through ``kubectl port-forward`` connections that are re-opened when the pod behind them is replaced.
Airflow records pod names as hostnames (the chart's ``hostname_callable``; triggerer and sensor-shard pods
record their pod IP, see ``pod_of``), so job and task-instance rows name the pod to kill. The Redis
topology is read with ``redis-cli`` inside a Redis pod.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import MySQLdb

from airflow_ha.broker.keys import queue_slot
from airflow_ha.redis_ops.cluster_nodes import (
    MASTER,
    REPLICA,
    ClusterNode,
    TopologyError,
    parse_cluster_nodes,
    slot_owner,
)
from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.backend import fetch_all
from tests.harness.failover.scenarios import PROBE_QUEUES
from tests.harness.servers.process import free_port
from tests.harness.waiting import wait_until

# Scenario component names -> the chart's `component` label.
COMPONENT_LABELS = {"database": "mysql"}
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "sensor-shard")


class PortForward:
    """``kubectl port-forward <target> <local>:<remote>``, started again whenever it has died.

    ``target()`` names what to forward to each time it (re)starts: ``svc/<name>`` (kubectl picks a pod) or
    a ``pod/<name>`` chosen by the caller, e.g. to avoid a pod on a node that is about to go away.
    """

    def __init__(self, kubectl: Path, namespace: str, target: Callable[[], str], remote_port: int) -> None:
        self.kubectl, self.namespace, self.target, self.remote_port = kubectl, namespace, target, remote_port
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.service = ""

    def _start(self) -> None:
        self.port = free_port()
        self.service = self.target()
        self.proc = subprocess.Popen(
            [
                str(self.kubectl),
                "-n",
                self.namespace,
                "port-forward",
                self.service,
                f"{self.port}:{self.remote_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True
        except OSError:
            return False

    def address(self, timeout: float = 120) -> tuple[str, int]:
        def answering() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
                time.sleep(0.5)
            if self._answers():
                return True
            self.close()  # a forward whose pod went away accepts nothing: start a new one
            return False

        wait_until(answering, timeout, f"kubectl port-forward {self.service} to answer", interval=1)
        return "127.0.0.1", self.port

    def url(self, timeout: float = 120) -> str:
        host, port = self.address(timeout)
        return f"http://{host}:{port}"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def condition_true(obj, kind: str) -> bool:
    """A pod's or node's status condition ``kind`` is True."""
    return any(c.type == kind and c.status == "True" for c in obj.status.conditions or [])


def pod_ready(pod) -> bool:
    """Running, Ready and not being deleted: a pod that serves."""
    if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
        return False
    return condition_true(pod, "Ready")


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, namespace: str, release: str, kubectl: Path, admin_password: str) -> None:
        from kubernetes import client, config

        # KUBECONFIG read now: the client fixes its default path when first imported, and the test session
        # may have started a cluster (and set KUBECONFIG) after that.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.namespace, self.release, self.kubectl = namespace, release, kubectl
        # Nodes a scenario is about to lose: forwards go to pods elsewhere (see _forward_target).
        self.avoid_nodes: set[str] = set()
        self._group_replication: bool | None = None
        self._api_forward = PortForward(kubectl, namespace, lambda: self._forward_target("api-server"), 8080)
        self._db_forward = PortForward(kubectl, namespace, lambda: self._forward_target("database"), 3306)
        self.api = AirflowAPI(
            "", password=admin_password, base_url_for=self._api_url, reconnect=self._api_forward.close
        )
        self._db_url = urlsplit(self.secret(f"{release}-connections", "sql-alchemy-conn"))

    @property
    def group_replication(self) -> bool:
        """The release's database is a Group Replication group (mysql.mode: groupReplication) behind HAProxy."""
        if self._group_replication is None:
            selector = f"app.kubernetes.io/instance={self.release},component=mysql-gr"
            self._group_replication = bool(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)
        return self._group_replication

    def label_of(self, component: str) -> str:
        """The `component` label of a scenario component's pods ("database": mysql, or mysql-gr for a group)."""
        if component == "database" and self.group_replication:
            return "mysql-gr"
        return COMPONENT_LABELS.get(component, component)

    def _forward_target(self, component: str) -> str:
        """A Ready pod of ``component`` on a Ready node not in ``avoid_nodes``; else its Service."""
        if component == "database" and self.group_replication:
            component = "mysql-proxy"  # SQL goes where Airflow's goes: the proxy in front of the primary
        service = f"{self.release}-{COMPONENT_LABELS.get(component, component)}"
        try:
            ready_nodes = self.ready_nodes()
            for pod in self._pods(component):
                if pod_ready(pod) and pod.spec.node_name in ready_nodes - self.avoid_nodes:
                    return f"pod/{pod.metadata.name}"
        except Exception:  # the Kubernetes API briefly unreachable: let kubectl pick
            pass
        return f"svc/{service}"

    def reconnect(self) -> None:
        """Drop both forwards: the next request opens new ones (after ``avoid_nodes`` changed)."""
        self._api_forward.close()
        self._db_forward.close()

    def _api_url(self) -> str:
        host, port = self._api_forward.address()
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._api_forward.close()
        self._db_forward.close()

    # -- cluster plumbing --------------------------------------------------------------------------
    def secret(self, name: str, key: str) -> str:
        return base64.b64decode(self.core.read_namespaced_secret(name, self.namespace).data[key]).decode()

    def _pods(self, component: str) -> list:
        label = self.label_of(component)
        selector = f"app.kubernetes.io/instance={self.release},component={label}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def ready_nodes(self) -> set[str]:
        return {n.metadata.name for n in self.core.list_node().items if condition_true(n, "Ready")}

    def run_kubectl(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [str(self.kubectl), "-n", self.namespace, *args], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()[-1000:]}")
        return proc.stdout

    # -- Backend -----------------------------------------------------------------------------------
    def instances(self, component: str) -> list[str]:
        return sorted(p.metadata.name for p in self._pods(component) if pod_ready(p))

    def pod_of(self, component: str, instance: str) -> str:
        """The pod an Airflow hostname names: a pod name (workers, schedulers), or the pod IP that triggerer
        and sensor-shard pods record (the chart's triggerer.hostnameCallable)."""
        pods = self._pods(component)
        if any(p.metadata.name == instance for p in pods):
            return instance
        by_ip = [p.metadata.name for p in pods if p.status.pod_ip == instance]
        if not by_ip:
            raise LookupError(f"no {component} pod is named {instance!r} or has that IP")
        return by_ip[0]

    def kill(self, component: str, instance: str) -> None:
        from kubernetes.client import V1DeleteOptions

        self.core.delete_namespaced_pod(
            self.pod_of(component, instance),
            self.namespace,
            body=V1DeleteOptions(grace_period_seconds=0, propagation_policy="Background"),
        )

    def freeze(self, component: str, instance: str, frozen: bool) -> None:
        # every process of the pod but its init (tini) and this shell: the pod and its node stay as they are
        signal = "STOP" if frozen else "CONT"
        container = component if component != "worker" else "worker"
        pod = self.pod_of(component, instance)
        self.run_kubectl("exec", pod, "-c", container, "--", "sh", "-c", f"kill -{signal} -1 || true")

    def _workloads(self) -> list:
        selector = f"app.kubernetes.io/instance={self.release}"
        return [
            *self.apps.list_namespaced_deployment(self.namespace, label_selector=selector).items,
            *self.apps.list_namespaced_stateful_set(self.namespace, label_selector=selector).items,
        ]

    def _all_ready(self) -> bool:
        for workload in self._workloads():
            want = workload.spec.replicas or 0
            status = workload.status
            if (status.ready_replicas or 0) < want or (status.updated_replicas or 0) < want:
                return False
        return True

    def recover(self) -> None:
        wait_until(self._all_ready, 600, "every Deployment and StatefulSet of the release Ready", interval=3)
        wait_until(self._redis_redundant, 300, "every Redis master with a connected replica again", interval=3)

    def _redis_redundant(self) -> bool:
        """Every node connected and every master with a replica: a returned pod has rejoined."""
        try:
            nodes = self._cluster_nodes()
        except RuntimeError:
            return False
        masters = {n.node_id for n in nodes if n.role == MASTER and not n.failing}
        replicated = {n.master_id for n in nodes if n.role == REPLICA and not n.failing}
        return bool(masters) and all(n.link_state == "connected" for n in nodes) and masters <= replicated

    def wait_healthy(self, timeout: float) -> None:
        def healthy() -> bool:
            try:
                return all(part.get("status") == "healthy" for part in self.api.health().values())
            except Exception:
                return False

        wait_until(healthy, timeout, "every Airflow component healthy", interval=2)

    def _db_connect(self, attempts: int = 30):
        """A connection through the forward; a forward to a deleted pod is replaced until one answers."""
        for attempt in range(attempts):
            host, port = self._db_forward.address()
            try:
                return MySQLdb.connect(
                    host=host,
                    port=port,
                    user=unquote(self._db_url.username or ""),
                    password=unquote(self._db_url.password or ""),
                    database=self._db_url.path.lstrip("/"),
                    **self._db_timeouts(),
                )
            except MySQLdb.OperationalError:
                if attempt == attempts - 1:
                    raise
                self._db_forward.close()
                time.sleep(2)
        raise AssertionError("unreachable")

    def _db_timeouts(self) -> dict[str, int]:
        """The client timeouts of the release's own connection URL (database.timeouts), as Airflow uses them."""
        query = parse_qs(self._db_url.query)
        timeouts = {k: int(query[k][0]) for k in ("connect_timeout", "read_timeout", "write_timeout") if k in query}
        timeouts.setdefault("connect_timeout", 10)
        return timeouts

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        conn = self._db_connect()
        return fetch_all(conn, query, params)

    def execute(self, statement: str, params: tuple = ()) -> None:
        """One write statement, committed."""
        conn = self._db_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
            conn.commit()
        finally:
            conn.close()

    def db_connection(self):
        """A new connection to the metadata database, as Airflow reaches it (the proxy, for a group)."""
        return self._db_connect(attempts=1)

    def _cluster_nodes(self) -> list[ClusterNode]:
        """CLUSTER NODES as the first Redis pod that answers sees it."""
        password = self.secret(f"{self.release}-redis-password", "password")
        cli = ["redis-cli", "--no-auth-warning", "-a", password, "cluster", "nodes"]
        for pod in self.instances("redis"):
            try:
                nodes = parse_cluster_nodes(self.run_kubectl("exec", pod, "-c", "redis", "--", *cli))
            except (RuntimeError, TopologyError):
                continue
            if nodes:
                return nodes
        raise RuntimeError("no Redis pod answered CLUSTER NODES")

    def _master_of_slot(self, slot: int) -> str:
        """The pod name (the node's announced hostname, first label) of the master serving ``slot``."""
        owner = slot_owner(self._cluster_nodes(), slot)
        if owner is None:
            raise RuntimeError(f"no master serves slot {slot}")
        return (owner.hostname or owner.ip).split(".", 1)[0]

    def redis_master_for_queue(self, queue: str) -> str:
        return self._master_of_slot(queue_slot(queue))

    def wait_redis_serving(self, killed: str, timeout: float) -> str:
        slot = queue_slot(PROBE_QUEUES[0])

        def serving() -> str | None:
            try:
                name = self._master_of_slot(slot)
            except RuntimeError:
                return None
            # The killed pod counts only once it is back and Ready (it rejoined with a new IP).
            return name if name != killed or killed in self.instances("redis") else None

        return wait_until(serving, timeout, f"the slots of {killed} served again", interval=1)

    def restart_database(self) -> None:
        """The single database pod, or the group's primary, restarted (graceful: a restart, not a crash)."""
        pods = self._pods("database")
        if self.group_replication:
            primary = self.database_primary()
            pods = [p for p in pods if p.metadata.name == primary]
        for pod in pods:
            self.core.delete_namespaced_pod(pod.metadata.name, self.namespace)
        time.sleep(5)
        wait_until(lambda: self.instances("database"), 600, "the database pod Ready again", interval=3)
        wait_until(self.database_redundant, 600, "every database member back and in sync", interval=3)

    def mysql_root(self, statement: str) -> list[list[str]]:
        """``statement`` as MySQL's root in a Ready member on a node not being lost (group administration and
        performance_schema are beyond the airflow user); rows of tab-separated columns."""
        password = self.secret(f"{self.release}-mysql-passwords", "mysql-root-password")
        argv = ["mysql", "-uroot", f"-p{password}", "-N", "-B", "-e", statement]
        errors = []
        for pod in self._pods("database"):
            if not pod_ready(pod) or pod.spec.node_name in self.avoid_nodes:
                continue
            try:
                out = self.run_kubectl("exec", pod.metadata.name, "-c", "mysql", "--", *argv, timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{pod.metadata.name}: {exc}")
                continue
            return [line.split("\t") for line in out.splitlines() if line.strip()]
        raise RuntimeError(f"no database member answered: {'; '.join(errors) or 'none Ready'}")

    def group_members(self) -> list[tuple[str, str, str, str]]:
        """(member id, pod name, state, role) of every member in the group's view."""
        rows = self.mysql_root(
            "SELECT MEMBER_ID, MEMBER_HOST, MEMBER_STATE, MEMBER_ROLE FROM performance_schema.replication_group_members"
        )
        return [(r[0], r[1].split(".", 1)[0], r[2], r[3]) for r in rows if len(r) == 4]

    def database_primary(self) -> str:
        """The pod name of the group's primary."""
        primaries = [pod for _id, pod, state, role in self.group_members() if role == "PRIMARY" and state == "ONLINE"]
        if not primaries:
            raise RuntimeError("the database group has no primary")
        return primaries[0]

    def database_redundant(self) -> bool:
        """Single pod: Ready. Group: every member of the StatefulSet ONLINE in the group."""
        try:
            if not self.group_replication:
                return bool(self.instances("database"))
            want = sum(
                s.spec.replicas or 0
                for s in self.apps.list_namespaced_stateful_set(
                    self.namespace, label_selector=f"app.kubernetes.io/instance={self.release},component=mysql-gr"
                ).items
            )
            online = sum(1 for _id, _pod, state, _role in self.group_members() if state == "ONLINE")
            return want > 0 and online == want
        except Exception:  # the proxy or a member between states: not yet
            return False

    def rolling_restart(self) -> None:
        """``kubectl rollout restart`` of every Airflow workload, one after another, as an upgrade rolls."""
        from kubernetes.client import V1StatefulSet

        for workload in self._workloads():
            component = (workload.metadata.labels or {}).get("component", "")
            # one triggerer Deployment per trigger queue: component triggerer, triggerer-default, ...
            if component not in AIRFLOW_COMPONENTS and not component.startswith("triggerer-"):
                continue
            kind = "statefulset" if isinstance(workload, V1StatefulSet) else "deployment"
            self.run_kubectl("rollout", "restart", f"{kind}/{workload.metadata.name}")
            self.run_kubectl("rollout", "status", f"{kind}/{workload.metadata.name}", "--timeout=600s", timeout=660)
