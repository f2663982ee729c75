"""What HA costs end to end, on a real cluster: the chart as users install it, its HA shape against its minimal one.

``python -m benchmarks airflow_shapes_k8s [--shapes=ha,minimal] [--workloads=wide,chain] [--wide-tasks=300]
[--chain-runs=60] [--idle-seconds=60] [--namespace=airflow-ha-bench] [--timeout=1800] [--out=FILE]``

Needs a cluster in ``KUBECONFIG`` that ``scripts/up`` can install on (``../shared/kube`` or kind, whose images
it builds and loads; the image's ``failover-probes`` target carries ``dags/ha_bench.py``). Without one it
says so and does nothing. Each shape is installed in turn with ``scripts/up`` (``values/kubeone.yaml`` or
``values/kind.yaml``, plus the shape's ``--set``s) into ``--namespace``, measured, and uninstalled (helm
uninstall, the namespace deleted without the pods' grace period) before the next one, on the same nodes:

* ``ha`` - the profile as it is: 2 schedulers, 2 api-servers, the Redis Cluster with the chart's broker
  options (WAIT for one replica after every publish), the 3-member Group Replication group behind HAProxy,
  sensor shards, the worker watcher;
* ``minimal`` - the same chart with every HA part off, the closest it comes to the official chart's shape:
  1 scheduler, 1 api-server, 1 triggerer, ``mysql.mode=single``, no sensor shards, no worker watcher,
  ``replication_wait_replicas=0``. The broker stays a Redis Cluster (the chart has no single-server broker):
  the local benchmark (``airflow_shapes``) is the one with stock ``redis://``.

Both run the profile's workers (on kubeone: 2 pods x 4 slots on the ``default`` queue). Workloads, through
the REST API of the release (a port-forward, as a user reaches it):

* ``wide`` - one run of ``ha_bench_wide`` mapped to ``--wide-tasks`` no-op tasks;
* ``chain`` - ``--chain-runs`` runs of ``ha_bench_chain`` (5 no-op tasks in a chain) triggered at once.

Figures, from the task instances the API returns: tasks/s (tasks / (last end - trigger)), queued->running and
scheduled->success p50/p99; machine CPU seconds per 1,000 tasks (/proc/stat: every node of a local cluster
runs on this machine, so it is the whole cluster's CPU, this driver included); CPU seconds per 1,000 tasks by
component (the ``component`` label), read from the pods' cgroups when this machine holds them; the cores
busy while idle; and the ratio to ``minimal``. Nothing is asserted: the numbers are this cluster's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from functools import partial
from pathlib import Path

from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.kubernetes import PortForward
from tests.harness.release import admin_password, delete_namespace
from tests.harness.waiting import wait_until

from benchmarks._cpu import machine_cpu_seconds
from benchmarks.airflow_shapes import (
    CHAIN_LENGTH,
    fmt_number,
    ratio_text,
    run_workloads,
    summarise,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
KUBECTL = REPO_ROOT / ".tools" / "bin" / "kubectl"
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
RELEASE = "airflow-ha"  # the profiles name this release's Secrets (values/kubeone.yaml's env)
TERMINAL_RUN = ("success", "failed")
SHAPES = {
    "ha": [],
    "minimal": [
        "--set", "scheduler.replicas=1",
        "--set", "apiServer.replicas=1",
        "--set", "triggerer.replicas=1",
        "--set", "mysql.mode=single",
        "--set", "sensorShards.enabled=false",
        "--set", "workerWatcher.enabled=false",
        "--set", "broker.transportOptions.replication_wait_replicas=0",
    ],
}  # fmt: skip
BASELINE = "minimal"
WORKLOADS = ("wide", "chain")
DAG = {"wide": "ha_bench_wide", "chain": "ha_bench_chain"}
CGROUP_ROOT = Path("/sys/fs/cgroup")


# -- the cluster ------------------------------------------------------------------------------------------
def kubectl(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, timeout=timeout, check=check)


def cluster_unreachable() -> str | None:
    """Why no cluster can be used, or None."""
    if not KUBECTL.is_file():
        return f"{KUBECTL} is missing (python3 tools/bootstrap.py installs it)"
    if not os.environ.get("KUBECONFIG"):
        return "KUBECONFIG is not set (scripts/up --cluster-only starts a cluster and prints it)"
    probe = kubectl("get", "--raw", "/readyz", timeout=20, check=False)
    return None if probe.returncode == 0 else f"the cluster in KUBECONFIG does not answer: {probe.stderr.strip()}"


def install(shape: str, namespace: str) -> float:
    """scripts/up with the shape's values into ``namespace``: seconds until every pod was Ready."""
    env = dict(
        os.environ,
        AIRFLOW_HA_CLUSTER="kubeconfig",
        AIRFLOW_HA_RELEASE=RELEASE,
        AIRFLOW_HA_NAMESPACE=namespace,
        AIRFLOW_HA_HELM_ARGS=" ".join(SHAPES[shape]),
    )
    started = time.monotonic()
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "up")], env=env, capture_output=True, text=True, timeout=2400)
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/up for {shape} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return time.monotonic() - started


def uninstall(namespace: str) -> None:
    """The release and its namespace gone before the next shape: helm uninstall (it does not wait by
    default), then the namespace deleted with its pods' grace period cut short (a worker's warm shutdown holds
    it 600 s, and a namespace being terminated refuses the next install's objects); scripts/down then forgets
    the release."""
    subprocess.run([str(HELM), "uninstall", RELEASE, "-n", namespace], capture_output=True, timeout=300)
    delete_namespace(namespace, KUBECTL, timeout=600)
    subprocess.run([str(REPO_ROOT / "scripts" / "down"), "--keep-cluster"], capture_output=True, timeout=900)


def pod_components(namespace: str) -> dict[str, str]:
    """uid -> component label of every pod of the release."""
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    return {p["metadata"]["uid"]: p["metadata"].get("labels", {}).get("component", p["metadata"]["name"]) for p in pods}


def _cpu_hierarchy() -> Path:
    """Where CPU use is accounted: cgroup v1's cpuacct controller when mounted (hybrid hosts), else the
    unified (v2) tree."""
    v1 = CGROUP_ROOT / "cpuacct"
    return v1 if v1.is_dir() else CGROUP_ROOT


def _pod_cgroups() -> dict[str, Path]:
    """Pod uid -> its cgroup directory on this machine (kubelet names it after the uid: ``pod<uid>``, with
    ``_`` for ``-`` under the systemd driver; each node of a local cluster has a subtree of its own). Empty
    when the nodes are not on this machine."""
    found: dict[str, Path] = {}
    root = _cpu_hierarchy()
    if not root.is_dir():
        return found
    for path in root.rglob("*pod*"):
        name = path.name.removesuffix(".slice")
        uid = name[name.rfind("pod") + 3 :].replace("_", "-")
        if len(uid) == 36 and path.is_dir():
            found[uid] = path
    return found


def _usage_seconds(cgroup: Path) -> float | None:
    """CPU seconds a cgroup has used: v1 ``cpuacct.usage`` (ns) or v2 ``cpu.stat`` usage_usec."""
    try:
        return int((cgroup / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        pass
    try:
        stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6
    except (OSError, KeyError, ValueError):
        return None


def cpu_seconds_by_component(namespace: str) -> dict[str, float]:
    """CPU seconds each component's pods have used (their cgroups' accounting), summed over its pods."""
    components = pod_components(namespace)
    totals: dict[str, float] = {}
    for uid, path in _pod_cgroups().items():
        component = components.get(uid)
        used = _usage_seconds(path) if component else None
        if used is not None:
            totals[component] = totals.get(component, 0.0) + used
    return totals


# -- one shape --------------------------------------------------------------------------------------------
def when(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def task_instances(api: AirflowAPI, dag_id: str, prefix: str) -> list[dict]:
    """Every task instance of the runs whose id starts with ``prefix``, page by page (the API's pages are
    capped at [api] maximum_page_limit)."""
    rows: list[dict] = []
    while True:
        page = api.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances",
            params={"run_id_prefix_pattern": prefix, "limit": 100, "offset": len(rows), "order_by": "id"},
        ).json()
        rows += page["task_instances"]
        if not page["task_instances"] or len(rows) >= page["total_entries"]:
            return rows


def run_states(api: AirflowAPI, dag_id: str, prefix: str) -> list[str]:
    states: list[str] = []
    while True:
        page = api.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns",
            params={"run_id_prefix_pattern": prefix, "limit": 100, "offset": len(states)},
        ).json()
        states += [r["state"] for r in page["dag_runs"]]
        if not page["dag_runs"] or len(states) >= page["total_entries"]:
            return states


def wait_runs(api: AirflowAPI, dag_id: str, prefix: str, runs: int, timeout: float, what: str) -> None:
    last: list[str] = []

    def ended() -> bool:
        last[:] = run_states(api, dag_id, prefix)
        return len(last) >= runs and all(s in TERMINAL_RUN for s in last)

    def progress() -> str:
        return f"{len(last)} of {runs} runs: " + ", ".join(f"{s} {last.count(s)}" for s in sorted(set(last)))

    wait_until(ended, timeout, what, interval=3, explain=progress)


def run_workload(api: AirflowAPI, namespace: str, shape: str, workload: str, args) -> dict:
    dag_id = DAG[workload]
    prefix = f"{workload}-{uuid.uuid4().hex[:6]}"
    runs, conf = (args.chain_runs, {}) if workload == "chain" else (1, {"tasks": args.wide_tasks})
    cpu, parts = machine_cpu_seconds(), cpu_seconds_by_component(namespace)
    started = time.time()
    for i in range(runs):
        api.trigger(dag_id, f"{prefix}-{i:04d}", conf)
    wait_runs(api, dag_id, prefix, runs, args.timeout, f"{runs} {workload} run(s)")
    machine = machine_cpu_seconds() - cpu
    after = cpu_seconds_by_component(namespace)
    # the wide run's fan-out task is not one of its tasks
    rows = [r for r in task_instances(api, dag_id, prefix) if r["task_id"] != "indexes"]
    ok = [r for r in rows if r["state"] == "success"]
    ends = [when(r["end_date"]) - started for r in ok]
    return {
        "workload": workload,
        "shape": shape,
        "tasks": args.wide_tasks if workload == "wide" else args.chain_runs * CHAIN_LENGTH,
        "ok": len(ok),
        "states": sorted({r["state"] for r in rows}),
        "wall_s": max(ends) if ends else None,
        "queued_to_running": [when(r["start_date"]) - when(r["queued_when"]) for r in ok if r["queued_when"]],
        "to_success": [when(r["end_date"]) - when(r["scheduled_when"]) for r in ok if r["scheduled_when"]],
        "machine_cpu_s": machine,
        "cpu_s_by_component": {c: after[c] - parts.get(c, 0.0) for c in after},
    }


def measure_idle(namespace: str, shape: str, seconds: float) -> dict:
    before, machine = cpu_seconds_by_component(namespace), machine_cpu_seconds()
    time.sleep(seconds)
    after = cpu_seconds_by_component(namespace)
    return {
        "workload": "idle",
        "shape": shape,
        "machine_cores": (machine_cpu_seconds() - machine) / seconds,
        "cores": {c: (after[c] - before.get(c, 0.0)) / seconds for c in after},
    }


def connect(namespace: str) -> tuple[AirflowAPI, PortForward]:
    forward = PortForward(KUBECTL, namespace, lambda: f"svc/{RELEASE}-api-server", 8080)
    api = AirflowAPI(
        "",
        base_url_for=forward.url,
        reconnect=forward.close,
        username="admin",
        password=admin_password(namespace, RELEASE),
    )
    wait_until(lambda: set(DAG.values()) <= api.dag_ids(), 600, "the benchmark DAGs parsed", interval=5)
    for dag_id in DAG.values():
        api.unpause(dag_id)
    return api, forward


def warm_up(api: AirflowAPI) -> None:
    """One chain run end to end first: workers, scheduler loops and broker connections in use."""
    prefix = f"warmup-{uuid.uuid4().hex[:6]}"
    api.trigger(DAG["chain"], f"{prefix}-0")
    wait_runs(api, DAG["chain"], prefix, 1, 600, "the warm-up run")
    if run_states(api, DAG["chain"], prefix) != ["success"]:
        raise RuntimeError("the warm-up run did not succeed")


# -- report -------------------------------------------------------------------------------------------------
def report(results: list[dict]) -> None:
    cols = ["tasks/s", "q->run p50", "q->run p99", "->success p50", "->success p99", "machine CPU s/1k"]
    print(f"\n| workload | shape | ok/tasks | {' | '.join(cols)} | tasks/s vs {BASELINE} | p99 vs {BASELINE} |")
    print("|---" * (len(cols) + 5) + "|")
    for workload in WORKLOADS:
        rows = [r for r in results if r["workload"] == workload]
        base = next((summarise(r) for r in rows if r["shape"] == BASELINE), None)
        for result in rows:
            s = summarise(result)
            ratio = ratio_text(s["tasks/s"], base and base["tasks/s"])
            p99 = ratio_text(s["->success p99"], base and base["->success p99"])
            cells = " | ".join(fmt_number(s[c]) for c in cols)
            print(f"| {workload} | {result['shape']} | {result['ok']}/{result['tasks']} | {cells} | {ratio} | {p99} |")


def report_components(results: list[dict], idle: list[dict], idle_seconds: float) -> None:
    components = sorted({c for r in results + idle for c in r.get("cpu_s_by_component", r.get("cores", {}))})
    if not components:
        print("\n(no per-component CPU: the pods' cgroups are not on this machine)")
        return
    print("\nCPU seconds per 1,000 tasks, by component (the pods' cgroups)")
    print("| workload | shape | " + " | ".join(components) + " |")
    print("|---" * (len(components) + 2) + "|")
    for r in results:
        if r["ok"]:
            cells = [fmt_number(r["cpu_s_by_component"].get(c, 0) * 1000 / r["ok"]) for c in components]
            print(f"| {r['workload']} | {r['shape']} | " + " | ".join(cells) + " |")
    if idle:
        print(f"\nCores busy with nothing to run ({idle_seconds:.0f} s after the warm-up), by component")
        print("| shape | " + " | ".join(components) + " | machine |")
        print("|---" * (len(components) + 2) + "|")
        for row in idle:
            cells = [f"{row['cores'].get(c, 0):.3f}" for c in components]
            print(f"| {row['shape']} | " + " | ".join(cells) + f" | {row['machine_cores']:.3f} |")


# -- driver -------------------------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks airflow_shapes_k8s", description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, from " + ", ".join(SHAPES))
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, from wide, chain")
    parser.add_argument("--wide-tasks", type=int, default=300, help="at most 1024 (Airflow's max_map_length)")
    parser.add_argument("--chain-runs", type=int, default=60)
    parser.add_argument("--idle-seconds", type=float, default=60, help="measure each shape idle this long (0: not)")
    parser.add_argument("--namespace", default="airflow-ha-bench", help="installed into, then deleted")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one workload may take")
    parser.add_argument("--out", type=Path, help="also write every raw figure here as JSON")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(args.shapes) - set(SHAPES)) + sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown shape or workload: {', '.join(unknown)}")
    if not 1 <= args.wide_tasks <= 1024:
        parser.error("--wide-tasks must be between 1 and 1024 (Airflow's [core] max_map_length)")
    if args.chain_runs < 1:
        parser.error("--chain-runs must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    why = cluster_unreachable()
    if why:
        print(f"airflow_shapes_k8s: nothing measured: {why}")
        return 0
    nodes = kubectl("get", "nodes", "-o", "name").stdout.split()
    print(
        f"shapes {', '.join(args.shapes)}; workloads {', '.join(args.workloads)}: {args.wide_tasks} wide tasks, "
        f"{args.chain_runs} chain runs of {CHAIN_LENGTH}; {len(nodes)} nodes; this machine {os.cpu_count()} cores; "
        f"namespace {args.namespace}",
        flush=True,
    )
    results: list[dict] = []
    idle: list[dict] = []
    status = 0
    for shape in args.shapes:
        forward = None
        try:
            seconds = install(shape, args.namespace)
            api, forward = connect(args.namespace)
            warm_up(api)
            print(f"[{shape}] installed, every pod Ready, warm in {seconds:.0f} s", flush=True)
            if args.idle_seconds:
                idle.append(measure_idle(args.namespace, shape, args.idle_seconds))
                print(f"[{shape}] idle: {idle[-1]['machine_cores']:.2f} cores busy", flush=True)
            run_one = partial(run_workload, api, args.namespace, shape, args=args)
            run_workloads(shape, args.workloads, run_one, results, idle, args.out)
        except Exception as exc:  # the other shapes still run; the table says what is missing
            status = 1
            print(f"[{shape}] FAILED: {exc}", file=sys.stderr, flush=True)
        finally:
            if forward is not None:
                forward.close()
            uninstall(args.namespace)
    report(results)
    report_components(results, idle, args.idle_seconds)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
