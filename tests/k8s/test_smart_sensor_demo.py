"""The README's smart-sensor demo, as a user runs it on the release: three DAGs share one sensor, one marker
releases all three, the sensor page shows it before and after, and each DAG then writes its own marker into
the directory a person created as root (what failed with ``Permission denied`` before the chart's
``markers-permissions`` init container)."""

from __future__ import annotations

import secrets
import time

import pytest

from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.kubernetes import pod_ready
from tests.harness.waiting import wait_until
from tests.k8s.conftest import KUBECTL, Kube, Release, record, run

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

DEMO_DAGS = ("smart_sensor_demo_a", "smart_sensor_demo_b", "smart_sensor_demo_c")
ROOT_MOUNT = "/markers"


def _worker(kube: Kube, release: Release) -> tuple[str, str]:
    pods = kube.core.list_namespaced_pod(release.namespace, label_selector=f"{release.selector},component=worker")
    pod = next(p for p in sorted(pods.items, key=lambda p: p.metadata.name) if pod_ready(p))
    return pod.metadata.name, pod.spec.containers[0].name


def _exec(release: Release, pod: str, container: str, script: str) -> str:
    return run([KUBECTL, "-n", release.namespace, "exec", pod, "-c", container, "--", "sh", "-c", script]).stdout


def _as_root(kube: Kube, release: Release, worker: str, script: str) -> None:
    """Run ``script`` as root (umask 022) in a pod mounting the workers' marker volume at ROOT_MOUNT: a person
    on the node, or an upstream system writing under its own uid."""
    from kubernetes import client

    spec = kube.core.read_namespaced_pod(worker, release.namespace).spec
    volume = next(v for v in spec.volumes if v.name == "markers")
    name = f"marker-writer-{secrets.token_hex(3)}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "airflow-ha-tests"}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            node_name=spec.node_name,
            volumes=[volume],
            containers=[
                client.V1Container(
                    name="writer",
                    image=spec.containers[0].image,
                    image_pull_policy="IfNotPresent",
                    command=["sh", "-c", f"umask 022; {script}"],
                    security_context=client.V1SecurityContext(run_as_user=0, run_as_group=0, run_as_non_root=False),
                    volume_mounts=[client.V1VolumeMount(name="markers", mount_path=ROOT_MOUNT)],
                )
            ],
        ),
    )
    kube.core.create_namespaced_pod(release.namespace, pod)
    try:
        phase = wait_until(
            lambda: (
                kube.core.read_namespaced_pod(name, release.namespace).status.phase in ("Succeeded", "Failed")
                and kube.core.read_namespaced_pod(name, release.namespace).status.phase
            ),
            180,
            f"the root pod {name} to finish {script!r}",
            interval=2,
        )
        assert phase == "Succeeded", kube.core.read_namespaced_pod_log(name, release.namespace)
    finally:
        kube.core.delete_namespaced_pod(name, release.namespace, grace_period_seconds=0)


def test_three_dags_share_one_sensor_and_one_marker_written_as_root_releases_them(
    kube: Kube, release: Release, api: AirflowAPI
):
    pod, container = _worker(kube, release)
    markers = _exec(release, pod, container, 'printf %s "$AIRFLOW_HA_MARKER_DIR"')
    if _exec(release, pod, container, f"test -d {markers} && echo mounted || echo missing").strip() != "mounted":
        pytest.skip(f"no marker volume at {markers} in this profile (markers.enabled is off)")
    marker = f"{markers}/demo/demo.ready.job"
    _as_root(kube, release, pod, f"rm -rf {ROOT_MOUNT}/demo")  # a previous run's marker would release at once
    wait_until(lambda: set(DEMO_DAGS) <= api.dag_ids(), 300, "the demo DAGs to be parsed", interval=5)
    runs = {}
    for dag_id in DEMO_DAGS:
        api.unpause(dag_id)
        runs[dag_id] = api.trigger(dag_id, f"demo_{secrets.token_hex(4)}")

    # Before: ONE row (one hashcode, one poke per interval) with the three tasks waiting on it.
    def shared_row():
        for group in api.request("GET", "/airflow-ha/sensors.json").json():
            if {w["dag_id"] for w in group["waiters"]} == set(DEMO_DAGS) and len(group["waiters"]) == 3:
                return group
        return None

    row = wait_until(shared_row, 300, "one sensor row with the three demo tasks", interval=3)
    assert row["description"] == f"file {marker}", row
    page = api.request("GET", "/airflow-ha/sensors").text
    assert str(row["hashcode"]) in page and "smart_sensor_demo_a" in page
    holder = _waiting_sensor_log(api, "smart_sensor_demo_a", runs["smart_sensor_demo_a"], f"waiting for file {marker}")

    # The README's command on the node: the day's directory and the marker created by root (umask 022, so
    # the directory is root-owned 0755 unless the marker root's default ACL reaches it).
    touched = time.monotonic()
    _as_root(kube, release, pod, f"mkdir -p {ROOT_MOUNT}/demo && touch {ROOT_MOUNT}/demo/demo.ready.job")
    states = api.wait_for_runs([(dag_id, run_id) for dag_id, run_id in runs.items()], 300)
    released = time.monotonic() - touched
    assert set(states.values()) == {"success"}, states  # each DAG's report wrote its marker there

    written = _exec(release, pod, container, f"ls {markers}/demo").split()
    assert sorted(written) == sorted(["demo.ready.job", *(f"{d}.job" for d in DEMO_DAGS)]), written

    # After: the row is gone from the waiting list, and the three are in the finished history.
    shown = api.request("GET", "/airflow-ha/sensors.json", params={"all": "true"}).json()
    assert not any(g["hashcode"] == row["hashcode"] for g in shown["waiting"]), shown["waiting"]
    finished = {f["dag_id"]: f for f in shown["finished"] if f["run_id"] == runs.get(f["dag_id"])}
    assert {d: f["outcome"] for d, f in finished.items()} == dict.fromkeys(DEMO_DAGS, "success"), finished
    record(
        "smart sensor demo",
        f"3 DAGs on one hashcode {row['hashcode']} (shard {row['shard']}, {row['pokes']} pokes while waiting); "
        f"one marker written as root released all 3 runs, each wrote its own marker there, in {released:.0f} s "
        "(poke interval 10 s)",
    )
    record("waiting sensor's log through the api-server", holder)


def _waiting_sensor_log(api: AirflowAPI, dag_id: str, run_id: str, expected: str) -> str:
    """The log of a deferred smart sensor, as the UI reads it: the api-server fetches it from the shard pod
    holding the trigger (http://<pod IP>:8794, the chart's triggerer.hostnameCallable)."""
    base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/wait_demo_ready"
    text = ""

    def logged() -> bool:
        nonlocal text
        ti = api.request("GET", base).json()
        if ti["state"] != "deferred":
            text = f"state {ti['state']}"
            return False
        resp = api.request(
            "GET",
            f"{base}/logs/{ti['try_number']}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        text = str(resp.json().get("content"))
        return expected in text

    wait_until(
        logged,
        120,
        f"{expected!r} in the waiting sensor's log through the api-server",
        interval=3,
        explain=lambda: text[:1500],
    )
    assert "Could not read served logs" not in text, text[:1500]
    line = text[text.index(expected) :].split("'", 1)[0].split('"', 1)[0]
    return line[:200]
