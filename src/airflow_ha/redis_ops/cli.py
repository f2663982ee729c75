"""``airflow-ha redis-reconcile``: re-pair Redis Cluster replicas so no master shares a node with its replica.

Run by the chart (a hook Job right after the cluster is created, then a CronJob) with the Kubernetes
API in-cluster: it lists the release's Redis pods (which node each runs on, its IP), reads every pod's own
``CLUSTER NODES``, plans the re-pairs (:mod:`airflow_ha.redis_ops.placement`) and sends
``CLUSTER REPLICATE`` to the replicas that must change master, then reads the topology again until the
placement is right (a few rounds: Redis' own replica migration may move a replica in between).

It never re-pairs a cluster that is not settled (a node failing, a pod not answering, a cluster still
forming): it waits up to ``--wait`` seconds for that, then gives up for this run (exit 3). The one thing it
does on an unsettled cluster is heal stale addresses after every pod restarted with a new IP
(:mod:`airflow_ha.redis_ops.addresses`): without that, such a cluster never settles.

Exit status: 0 placement right, or nothing re-pairing can improve (e.g. one node; said on stdout);
1 an error or pairs still co-located after every round; 2 bad usage; 3 the cluster did not settle
(0 with ``--skip-unsettled``: the CronJob's next run retries, and no Failed pod is left for a failover).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from airflow_ha.redis_ops.addresses import stale_meets, stale_replication
from airflow_ha.redis_ops.cluster_nodes import TopologyError, parse_cluster_nodes
from airflow_ha.redis_ops.placement import Plan, crowded_nodes, plan, spread_masters, topology

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ENV_SELECTOR = "AIRFLOW_HA_REDIS_SELECTOR"
ENV_PASSWORD = "AIRFLOW_HA_REDIS_PASSWORD"


class ReconcileError(RuntimeError):
    pass


class NotSettled(RuntimeError):
    pass


@dataclass(frozen=True)
class Pod:
    name: str
    ip: str
    node: str


def log(msg: str) -> None:
    print(f"redis-reconcile: {msg}", flush=True)


def _namespace(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SA_NAMESPACE_FILE.is_file():
        return SA_NAMESPACE_FILE.read_text().strip()
    raise ReconcileError("no namespace: pass --namespace or set POD_NAMESPACE")


def _password(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get(ENV_PASSWORD):
        return os.environ[ENV_PASSWORD]
    url = os.environ.get("AIRFLOW__CELERY__BROKER_URL", "")
    if url:
        return unquote(urlsplit(url).password or "") or None
    return None


def _core_api(kubeconfig: str | None):
    from kubernetes import client, config

    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    return client.CoreV1Api()


class Cluster:
    """The live cluster: Kubernetes pods and Redis connections (everything :func:`reconcile` does I/O with)."""

    def __init__(self, core, namespace: str, selector: str, password: str | None, port: int, timeout: float):
        self.core, self.namespace, self.selector = core, namespace, selector
        self.password, self.port, self.timeout = password, port, timeout

    def pods(self) -> list[Pod]:
        items = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        if not items:
            raise ReconcileError(f"no pod matches {self.selector!r} in namespace {self.namespace}")
        pods = []
        for p in items:
            name = p.metadata.name
            if p.metadata.deletion_timestamp or p.status.phase != "Running" or not p.status.pod_ip:
                raise NotSettled(
                    f"pod {name} is {p.status.phase}{' (terminating)' if p.metadata.deletion_timestamp else ''}"
                )
            pods.append(Pod(name, p.status.pod_ip, p.spec.node_name))
        return sorted(pods, key=lambda p: p.name)

    def _client(self, pod: Pod):
        import redis

        return redis.Redis(
            host=pod.ip,
            port=self.port,
            password=self.password,
            socket_connect_timeout=self.timeout,
            socket_timeout=self.timeout,
            decode_responses=True,
        )

    def cluster_nodes(self, pod: Pod) -> str:
        import redis

        try:
            # Two words: "CLUSTER NODES" as one would be parsed into a dict by redis-py; the planner wants the text.
            return self._client(pod).execute_command("CLUSTER", "NODES")
        except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
            raise ReconcileError(f"{pod.name}: the Redis password is refused ({exc})") from None
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise ReconcileError(f"{pod.name}: the Redis password is refused ({exc})") from None
            raise NotSettled(f"{pod.name}: CLUSTER NODES failed: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise NotSettled(f"{pod.name} ({pod.ip}:{self.port}) does not answer: {exc}") from None

    def replicate(self, pod: Pod, master_id: str) -> None:
        self._client(pod).execute_command("CLUSTER", "REPLICATE", master_id)

    def failover(self, pod: Pod) -> None:
        self._client(pod).execute_command("CLUSTER", "FAILOVER")

    def meet(self, pod: Pod, ip: str, port: int) -> None:
        self._client(pod).execute_command("CLUSTER", "MEET", ip, port)

    def master_host(self, pod: Pod) -> str:
        """The address a replica's replication link dials (INFO replication), "" for a master."""
        import redis

        try:
            return str(self._client(pod).info("replication").get("master_host", ""))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise NotSettled(f"{pod.name} ({pod.ip}:{self.port}) does not answer: {exc}") from None


def read_topology(cluster: Cluster, heal: bool = True):
    pods = cluster.pods()
    by_name = {p.name: p for p in pods}
    ips = {p.name: p.ip for p in pods}
    views = {p.name: parse_cluster_nodes(cluster.cluster_nodes(p)) for p in pods}
    meets = stale_meets(views, ips, cluster.port)
    _send_repairs(
        meets,
        lambda m: cluster.meet(by_name[m.from_pod], m.ip, m.port),
        heal,
        f"{len(meets)} peer address(es) were stale (every pod restarted with a new IP?)",
    )
    replicas = [p for p in pods if any(n.is_myself and n.master_id for n in views[p.name])]
    repoints = stale_replication(views, ips, {p.name: cluster.master_host(p) for p in replicas})
    _send_repairs(
        repoints,
        lambda r: cluster.replicate(by_name[r.replica_pod], r.master_id),
        heal,
        f"{len(repoints)} replica(s) replicated from a stale address",
    )
    try:
        nodes = topology(views, {p.name: p.node for p in pods})
    except TopologyError as exc:
        raise NotSettled(str(exc)) from None
    return by_name, nodes


def _send_repairs(repairs: list, send, heal: bool, unsettled: str) -> None:
    """Log (and with ``heal`` send) each repair; any repair means the topology is not settled yet."""
    if not repairs:
        return
    for repair in repairs:
        log(("" if heal else "would send ") + repair.describe())
        if heal:
            send(repair)
    raise NotSettled(unsettled)


def _settled_topology(cluster: Cluster, wait: float, interval: float, heal: bool = True):
    deadline = time.monotonic() + wait
    while True:
        try:
            return read_topology(cluster, heal)
        except NotSettled as exc:
            if time.monotonic() >= deadline:
                raise
            log(f"not settled yet ({exc}); retrying")
            time.sleep(interval)


def _describe(p: Plan) -> str:
    if not p.colocated:
        return "no master shares a node with its replica"
    return "co-located: " + ", ".join(f"{m}+{r} on {n}" for m, r, n in p.colocated)


def reconcile(cluster: Cluster, *, rounds: int, wait: float, settle: float, dry_run: bool) -> int:
    for round_no in range(1, rounds + 1):
        pods, nodes = _settled_topology(cluster, wait, settle, heal=not dry_run)
        current = plan(nodes)
        pod_of = {n.node_id: n.pod for n in nodes}
        roles = ", ".join(
            f"{n.pod}@{n.k8s_node}=" + ("master" if n.master_id is None else f"replica of {pod_of[n.master_id]}")
            for n in nodes
        )
        log(f"round {round_no}: {roles}")
        promotion = spread_masters(nodes)
        if promotion is not None:  # first spread the masters; the re-pairing is planned on the result
            log(("would send " if dry_run else "") + promotion.describe())
            if dry_run:
                return 0
            cluster.failover(pods[promotion.replica_pod])
            time.sleep(settle)
            continue
        log(_describe(current))
        for note in current.notes:
            log(f"note: {note}")
        if current.ok:
            return 0
        if not current.repairs:
            log("nothing re-pairing can improve: leaving the placement as it is")
            return 0
        for repair in current.repairs:
            log(("would send " if dry_run else "") + repair.describe())
            if not dry_run:
                cluster.replicate(pods[repair.replica_pod], repair.new_master_id)
        if dry_run:
            return 0
        time.sleep(settle)
    _pods, nodes = _settled_topology(cluster, wait, settle, heal=not dry_run)
    final = plan(nodes)
    log(f"after {rounds} round(s): {_describe(final)}")
    if spread_masters(nodes) is not None:
        log(f"masters still crowded: {crowded_nodes(nodes)}")
        return 1
    return 0 if final.ok or not final.repairs else 1


def run(args) -> int:
    selector = args.selector or os.environ.get(ENV_SELECTOR)
    if not selector:
        print(f"redis-reconcile: no pod selector: pass --selector or set {ENV_SELECTOR}", file=sys.stderr)
        return 2
    try:
        namespace = _namespace(args.namespace)
        cluster = Cluster(_core_api(args.kubeconfig), namespace, selector, _password(args.password), args.port, 5.0)
        return reconcile(cluster, rounds=args.rounds, wait=args.wait, settle=args.settle, dry_run=args.dry_run)
    except NotSettled as exc:
        log(f"the cluster did not settle within {args.wait:.0f} s, nothing done: {exc}")
        return 0 if args.skip_unsettled else 3
    except Exception as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        return 1


def register(subparsers) -> None:
    parser = subparsers.add_parser("redis-reconcile", help=__doc__.splitlines()[0])
    parser.add_argument("--namespace", help="namespace of the Redis pods (default: POD_NAMESPACE, in-cluster)")
    parser.add_argument("--selector", help=f"label selector of the Redis pods (default: ${ENV_SELECTOR})")
    parser.add_argument("--password", help=f"Redis password (default: ${ENV_PASSWORD}, else the broker URL's)")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--kubeconfig", help="use this kubeconfig instead of the in-cluster service account")
    parser.add_argument("--rounds", type=int, default=5, help="plan/apply/verify rounds (default 5)")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for a settled cluster (120)")
    parser.add_argument("--settle", type=float, default=3, help="seconds between rounds (3)")
    parser.add_argument("--dry-run", action="store_true", help="print the re-pairs, send nothing")
    parser.add_argument(
        "--skip-unsettled",
        action="store_true",
        help="exit 0, not 3, when the cluster does not settle (a periodic run: the next one retries)",
    )
    parser.set_defaults(func=run)
