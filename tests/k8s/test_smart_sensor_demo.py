"""The README's smart-sensor demo, as a user runs it on the release: three DAGs share one sensor, one
marker written through a worker pod releases all three, and the sensor page shows it before and after."""

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


def _worker(kube: Kube, release: Release) -> tuple[str, str]:
    pods = kube.core.list_namespaced_pod(release.namespace, label_selector=f"{release.selector},component=worker")
    pod = next(p for p in sorted(pods.items, key=lambda p: p.metadata.name) if pod_ready(p))
    return pod.metadata.name, pod.spec.containers[0].name


def _exec(release: Release, pod: str, container: str, script: str) -> str:
    return run([KUBECTL, "-n", release.namespace, "exec", pod, "-c", container, "--", "sh", "-c", script]).stdout


def test_three_dags_share_one_sensor_and_one_marker_releases_them(kube: Kube, release: Release, api: AirflowAPI):
    pod, container = _worker(kube, release)
    markers = _exec(release, pod, container, 'printf %s "$AIRFLOW_HA_MARKER_DIR"')
    if _exec(release, pod, container, f"test -d {markers} && echo mounted || echo missing").strip() != "mounted":
        pytest.skip(f"no marker volume at {markers} in this profile (markers.enabled is off)")
    marker = f"{markers}/demo/demo.ready.job"
    _exec(release, pod, container, f"rm -f {marker}")  # a previous run's marker would release at once
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

    # The README's command: the marker written through a worker pod, as the airflow user.
    touched = time.monotonic()
    _exec(release, pod, container, f"mkdir -p {markers}/demo && touch {marker}")
    states = api.wait_for_runs([(dag_id, run_id) for dag_id, run_id in runs.items()], 300)
    released = time.monotonic() - touched
    assert set(states.values()) == {"success"}, states

    # After: the row is gone from the waiting list, and the three are in the finished history.
    shown = api.request("GET", "/airflow-ha/sensors.json", params={"all": "true"}).json()
    assert not any(g["hashcode"] == row["hashcode"] for g in shown["waiting"]), shown["waiting"]
    finished = {f["dag_id"]: f for f in shown["finished"] if f["run_id"] == runs.get(f["dag_id"])}
    assert {d: f["outcome"] for d, f in finished.items()} == dict.fromkeys(DEMO_DAGS, "success"), finished
    record(
        "smart sensor demo",
        f"3 DAGs on one hashcode {row['hashcode']} (shard {row['shard']}, {row['pokes']} pokes while waiting); "
        f"one marker via {pod} released all 3 runs in {released:.0f} s (poke interval 10 s)",
    )
