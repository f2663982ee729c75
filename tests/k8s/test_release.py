"""The chart on a real cluster, as a user sees it: install to Ready, the UI and REST API through
`kubectl port-forward`, a DAG run on the Celery workers with its log read back through the api-server,
invalid values refused before anything is created, and the active scheduler's pod deleted mid-run.
"""

from __future__ import annotations

import os
import re
import secrets
import time

import pytest
import requests
from kubernetes.client.rest import ApiException

from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.kubernetes import PortForward, condition_true, pod_ready
from tests.harness.waiting import WaitTimeout, wait_until
from tests.k8s.conftest import HELM, KUBECTL, REPO_ROOT, Kube, Release, record, run

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1500)]

HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def _pods(kube: Kube, rel: Release, component: str | None = None) -> list:
    selector = rel.selector + (f",component={component}" if component else "")
    return [
        p
        for p in kube.core.list_namespaced_pod(rel.namespace, label_selector=selector).items
        if not p.metadata.deletion_timestamp
    ]


def _ready(pod) -> bool:
    """Serving, or (a hook's or Job's pod) done."""
    return pod.status.phase == "Succeeded" or pod_ready(pod)


def test_every_pod_ready_and_migration_complete(kube: Kube, release: Release):
    waiting: list[str] = []  # what is not Ready yet, for the timeout's message

    def settled():
        pods = _pods(kube, release)
        jobs = [
            j
            for j in kube.batch.list_namespaced_job(release.namespace, label_selector=release.selector).items
            if "migrat" in j.metadata.name
        ]
        waiting[:] = [p.metadata.name for p in pods if not _ready(p)]
        waiting.extend(f"job/{j.metadata.name}" for j in jobs if not condition_true(j, "Complete"))
        return (pods, jobs) if pods and not waiting else None

    pods, jobs = wait_until(settled, 900, "every pod Ready and the migration Job Complete", interval=3,
                            explain=lambda: f"not yet: {waiting}")  # fmt: skip
    components = sorted({p.metadata.labels.get("component", "?") for p in pods})
    nodes = sorted({p.spec.node_name for p in pods})
    record("pods Ready (this check)", f"{len(pods)} pods, components {components}, nodes {nodes}")
    record("migration Job", ", ".join(f"{j.metadata.name} Complete" for j in jobs) or "hook job already removed")
    if release.install_seconds is not None:
        record("install by this session (scripts/up)", f"{release.install_seconds:.0f} s")


def test_login_page_and_health(release: Release, port_forward: PortForward):
    url = port_forward.url()
    page = requests.get(f"{url}/", timeout=30)
    assert page.status_code == 200, f"GET / -> {page.status_code}"
    assert "<html" in page.text.lower() and "airflow" in page.text.lower(), page.text[:300]
    login = requests.get(f"{url}/auth/login", timeout=30, allow_redirects=True)
    assert login.status_code == 200, f"GET /auth/login -> {login.status_code}"

    last: dict = {}

    def all_healthy() -> dict | None:
        health = requests.get(f"{url}/api/v2/monitor/health", timeout=30).json()
        last.update({c: health.get(c, {}).get("status") for c in HEALTH_COMPONENTS})
        return dict(last) if all(v == "healthy" for v in last.values()) else None

    try:
        statuses = wait_until(all_healthy, 180, "/api/v2/monitor/health: every component healthy", interval=5)
    except WaitTimeout as exc:
        raise AssertionError(f"{exc}; last seen {last}") from None
    record("/api/v2/monitor/health", ", ".join(f"{c}={v}" for c, v in statuses.items()))


def _pick_dag(api: AirflowAPI) -> str:
    wanted = os.environ.get("AIRFLOW_HA_K8S_DAG")

    def parsed() -> str | None:
        dags = api.request("GET", "/api/v2/dags", params={"limit": 200}).json()["dags"]
        if wanted:
            return wanted if any(d["dag_id"] == wanted for d in dags) else None
        for d in dags:
            tags = {t["name"] for t in d.get("tags", [])}
            if tags & {"failover", "celery"} or re.search(r"celery|failover", d["dag_id"]):
                return d["dag_id"]
        return None

    try:
        return wait_until(parsed, 300, "a DAG to run", interval=10)
    except WaitTimeout:
        pytest.skip(f"no {'DAG ' + wanted if wanted else 'Celery/failover DAG'} parsed after 300 s")


def _trigger(api: AirflowAPI, dag_id: str) -> str:
    api.unpause(dag_id)
    return api.trigger(dag_id, f"k8s_{secrets.token_hex(4)}")


def _wait_run(api: AirflowAPI, dag_id: str, run_id: str, timeout: float = 600) -> str:
    state = api.wait_for_runs([(dag_id, run_id)], timeout)[(dag_id, run_id)]
    assert state in ("success", "failed"), f"{dag_id}/{run_id} still {state} after {timeout:.0f} s"
    return state


@pytest.fixture(scope="module")
def celery_dag(api: AirflowAPI) -> str:
    return _pick_dag(api)


def test_dag_runs_on_celery_workers_and_log_is_readable(kube: Kube, release: Release, api: AirflowAPI, celery_dag: str):
    start = time.monotonic()
    run_id = _trigger(api, celery_dag)
    state = _wait_run(api, celery_dag, run_id)
    tis = api.task_instances(celery_dag, run_id)
    failed = [f"{t['task_id']}={t['state']}" for t in tis if t["state"] not in ("success", "skipped")]
    assert state == "success", f"{celery_dag}/{run_id} ended {state}; tasks: {failed}"
    record(f"DAG {celery_dag} via REST API", f"success in {time.monotonic() - start:.0f} s, {len(tis)} tasks")

    workers = {p.metadata.name for p in _pods(kube, release, "worker")}
    assert workers, "no pod with component=worker"
    hosts = {t["hostname"] for t in tis if t.get("hostname")}
    assert hosts and hosts <= workers | {w.split(".")[0] for w in workers}, (
        f"tasks ran on {hosts}, workers are {workers}"
    )

    ti = next(t for t in tis if t["state"] == "success")

    def read_log() -> str:
        resp = api.request(
            "GET",
            f"/api/v2/dags/{celery_dag}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}",
            params={"full_content": "true", **({"map_index": ti["map_index"]} if ti.get("map_index", -1) >= 0 else {})},
            headers={"Accept": "application/json"},
        )
        content = resp.json().get("content")
        text = str(content)
        assert content and ("Could not read served logs" not in text), f"task log not readable: {text[:1500]}"
        return text

    text = read_log()
    record("task log through the api-server", f"{ti['task_id']} on {ti['hostname']}: {len(text)} chars")
    # remoteLogs: the finished task's log is uploaded to the release's log store and read from there, so it
    # outlives the worker pod that wrote it. Airflow's supervisor reports success first and uploads the log
    # after the task process has exited, so for a moment the api-server still serves it from the worker.
    served_at = time.monotonic()
    last: list[str] = [text]

    def from_log_store() -> str | None:
        last[0] = read_log()
        return last[0] if "s3://airflow-logs/tasks/" in last[0] else None

    text = wait_until(
        from_log_store,
        120,
        "the task log to be read from the log store",
        interval=2,
        explain=lambda: f"the api-server still gives: {last[0][:1500]}",
    )
    record("task log in the log store", f"read from it {time.monotonic() - served_at:.0f} s after the first read")
    worker = ti["hostname"].split(".")[0]
    old_uid = kube.core.read_namespaced_pod(worker, release.namespace).metadata.uid
    kube.core.delete_namespaced_pod(worker, release.namespace, grace_period_seconds=0)

    def replaced() -> bool:
        try:
            return kube.core.read_namespaced_pod(worker, release.namespace).metadata.uid != old_uid
        except ApiException as exc:
            return exc.status == 404

    wait_until(replaced, 120, f"worker pod {worker} deleted", interval=1)
    again = read_log()
    assert "s3://airflow-logs/tasks/" in again and len(again) >= len(text) // 2, again[:1500]
    record("task log after its worker pod was deleted", f"{len(again)} chars, from the log store")


def test_invalid_values_fail_before_anything_is_created(kube: Kube, release: Release):
    bad = f"bad-{secrets.token_hex(3)}"
    invalid = os.environ.get("AIRFLOW_HA_K8S_INVALID_SET", "scheduler.replicas=-1")
    proc = run([HELM, "install", bad, REPO_ROOT / "chart", "-n", release.namespace, "--set", invalid], check=False)
    assert proc.returncode != 0, f"helm install --set {invalid} succeeded:\n{proc.stdout[-2000:]}"
    assert "schema" in proc.stderr.lower(), f"not the schema's message:\n{proc.stderr[-2000:]}"
    key = invalid.split("=")[0].split(".")[-1]
    assert key in proc.stderr, f"the message does not name {key}:\n{proc.stderr[-2000:]}"
    leftovers = []
    for lister in (
        kube.core.list_namespaced_pod,
        kube.core.list_namespaced_service,
        kube.core.list_namespaced_config_map,
        kube.core.list_namespaced_secret,
        kube.core.list_namespaced_persistent_volume_claim,
    ):
        leftovers += [
            o.metadata.name for o in lister(release.namespace, label_selector=f"app.kubernetes.io/instance={bad}").items
        ]
    leftovers += [
        s.metadata.name for s in kube.core.list_namespaced_secret(release.namespace).items if bad in s.metadata.name
    ]
    assert not leftovers, f"objects created by the refused install: {leftovers}"
    record("helm install with invalid values", proc.stderr.strip().splitlines()[-1][:150])


def test_delete_active_scheduler_runs_still_succeed(kube: Kube, release: Release, api: AirflowAPI, celery_dag: str):
    schedulers = _pods(kube, release, "scheduler")
    names = {p.metadata.name for p in schedulers}
    assert len(names) >= 2, f"a failover needs two schedulers, the release runs {sorted(names)}"

    def live_scheduler() -> str | None:  # the pod whose SchedulerJob heartbeat is the latest (hostname = pod)
        params = {"job_type": "SchedulerJob", "is_alive": "true", "order_by": "-latest_heartbeat"}
        jobs = api.request("GET", "/api/v2/jobs", params=params).json()["jobs"]
        return next((j["hostname"] for j in jobs if j.get("hostname") in names), None)

    runs = [_trigger(api, celery_dag) for _ in range(3)]
    wait_until(lambda: "running" in {api.run_state(celery_dag, r) for r in runs}, 120, "a scheduler to start the runs")
    active = wait_until(live_scheduler, 60, f"a live SchedulerJob on one of {sorted(names)}", interval=2)
    unfinished = [r for r in runs if api.run_state(celery_dag, r) not in ("success", "failed")]
    assert unfinished, "every run ended before the scheduler was deleted: nothing left to fail over"
    t0 = time.monotonic()
    kube.core.delete_namespaced_pod(active, release.namespace)
    record("deleted active scheduler pod", f"{active} ({len(unfinished)} of {len(runs)} runs unfinished)")

    states = {r: _wait_run(api, celery_dag, r, timeout=900) for r in runs}
    runs_done = time.monotonic() - t0
    assert all(s == "success" for s in states.values()), f"runs after deleting {active}: {states}"
    # A task the deleted scheduler had queued but not yet sent would wait for task_queued_timeout before it
    # is queued again (compat fix celery-send-queued-on-end sends it at shutdown): the runs end before that.
    env = {e.name: e.value for e in schedulers[0].spec.containers[0].env if e.value is not None}
    queued_timeout = float(env.get("AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT", 600))
    assert runs_done < queued_timeout, (
        f"the runs took {runs_done:.0f} s after the scheduler was deleted: a task it had queued waited for "
        f"task_queued_timeout ({queued_timeout:.0f} s)"
    )

    def back() -> bool:
        current = _pods(kube, release, "scheduler")
        return len(current) >= len(schedulers) and all(_ready(p) for p in current)

    wait_until(back, 300, f"{len(schedulers)} schedulers Ready again", interval=3)
    record(
        "scheduler pod deleted",
        f"{len(runs)} runs success {runs_done:.0f} s after; "
        f"{len(schedulers)} schedulers Ready again {time.monotonic() - t0:.0f} s after",
    )


def test_wrong_broker_password_is_named_and_not_ready(kube: Kube, release: Release):
    """A worker given a wrong Redis password: its log says so and its readiness probe fails (no silent hang)."""
    import copy

    from kubernetes import client

    sts = next(
        s
        for s in kube.apps.list_namespaced_stateful_set(
            release.namespace, label_selector=f"{release.selector},component=worker"
        ).items
    )
    spec = copy.deepcopy(sts.spec.template.spec)
    worker = spec.containers[0]
    healthy = next(p.metadata.name for p in _pods(kube, release, "worker") if _ready(p))  # exec'd into below
    url = run(
        [KUBECTL, "-n", release.namespace, "exec", healthy, "-c", worker.name, "--",
         "printenv", "AIRFLOW__CELERY__BROKER_URL"],
    ).stdout.strip()  # fmt: skip
    scheme, rest = url.split("://", 1)
    wrong = f"{scheme}://:not-the-password-{secrets.token_hex(4)}@{rest.split('@', 1)[1]}"
    worker.env = [e for e in worker.env if e.name != "AIRFLOW__CELERY__BROKER_URL"]
    worker.env.append(client.V1EnvVar(name="AIRFLOW__CELERY__BROKER_URL", value=wrong))
    name = f"wrong-password-{secrets.token_hex(3)}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "airflow-ha-test"}), spec=spec
    )
    kube.core.create_namespaced_pod(release.namespace, pod)
    start = time.monotonic()
    seen = {"log": ""}

    def failure_named():
        p = kube.core.read_namespaced_pod(name, release.namespace)
        ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        assert not ready, f"{name} became Ready with a wrong broker password"
        statuses = p.status.container_statuses or []
        restarts = sum(s.restart_count for s in statuses)
        if any(s.state.running or s.state.terminated or s.restart_count for s in statuses):
            logs = run([KUBECTL, "-n", release.namespace, "logs", name, "-c", worker.name], check=False).stdout
            logs += run(
                [KUBECTL, "-n", release.namespace, "logs", name, "-c", worker.name, "--previous"], check=False
            ).stdout
            seen["log"] = logs
        events = kube.core.list_namespaced_event(release.namespace, field_selector=f"involvedObject.name={name}").items
        unhealthy = [e.message for e in events if e.reason == "Unhealthy" and "Readiness" in (e.message or "")]
        # Celery gives up on a broker that refuses the credentials (not retried: it can never work), so the
        # container exits and restarts (CrashLoopBackOff); a probe that ran first says why too.
        if "credentials" in seen["log"] and (restarts or unhealthy):
            return unhealthy[-1] if unhealthy else f"container exited and restarted {restarts}x"
        return None

    try:
        signal = wait_until(
            failure_named,
            300,
            "a failure that names the wrong credentials",
            interval=5,
            explain=lambda: f"log:\n{seen['log'][-3000:]}",
        )
        log = seen["log"]
        line = next(line for line in log.splitlines() if "credentials" in line)
        assert "not-the-password" not in log, "the wrong password leaked into the log"
        # The readiness probe's own command, as the kubelet runs it, on a healthy worker given the wrong URL.
        probe = run(
            [KUBECTL, "-n", release.namespace, "exec", healthy, "-c", worker.name, "--",
             "airflow-ha", "broker-check", "--url", wrong],
            check=False,
        )  # fmt: skip
        assert probe.returncode == 1 and "credentials" in probe.stderr, (probe.returncode, probe.stderr[-1000:])
        record(
            "worker with a wrong Redis password",
            f"never Ready; {signal} after {time.monotonic() - start:.0f} s; "
            f"log: ...{line[line.find('refused') :][:110]}; "
            f"readiness command exit 1: ...{probe.stderr[probe.stderr.find('refused') :][:110]}",
        )
    finally:
        kube.core.delete_namespaced_pod(name, release.namespace, grace_period_seconds=0)


@pytest.mark.parametrize("component", ["worker", "scheduler"])
def test_broker_options_in_effect_in_the_pods_are_the_charts(kube: Kube, release: Release, component: str):
    """Inside a running pod, Airflow's own Celery app resolves the options the chart's values set."""
    import json

    from airflow_ha.broker.options import defaults

    pod = next(p for p in _pods(kube, release, component) if _ready(p))
    shown = run(
        [KUBECTL, "-n", release.namespace, "exec", pod.metadata.name, "-c", pod.spec.containers[0].name, "--",
         "airflow-ha", "broker-check", "--show-options"],
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    effective = json.loads(shown)["options"]
    values = json.loads(
        run([HELM, "get", "values", release.name, "-n", release.namespace, "--all", "-o", "json"]).stdout
    )
    chart_options = values["broker"]["transportOptions"]
    expected = {**defaults(), **chart_options}
    assert effective == expected
    assert effective["replication_wait_policy"] == "auto"
    record(f"broker options in a {component} pod", ", ".join(f"{k}={v}" for k, v in sorted(chart_options.items())))
