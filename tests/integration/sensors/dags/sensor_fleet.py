"""Test DAGs for the smart-sensor suite: 5 DAGs x 10 sensors waiting on 10 upstream markers.

Like the seed's ``sensor_instance`` table: every marker ``edw.000N.job`` is waited on by 5 tasks in 5
DAGs, so 50 waiting tasks share 10 hashcodes. Plus one sensor that times out and one that soft-fails, and
two that can never succeed (a marker "directory" that is a file, a connection id nobody defined): they
must fail at once with the cause, not after their hour-long timeout.
The marker directory comes from ``AIRFLOW_HA_TEST_MARKER_DIR`` (set by the test for every process).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_ha.sensors.operators import JobHistorySensor, UpstreamJobSensor

MARKER_DIR = os.environ.get("AIRFLOW_HA_TEST_MARKER_DIR", "/tmp/airflow-ha-markers")
FLEET_DAGS = 5
SENSORS_PER_DAG = 10
POKE_INTERVAL = 5


def upstream_of(dag_index: int, sensor_index: int) -> str:
    # 7 is coprime with 10: each DAG waits on all 10 markers once; each marker has 5 waiters.
    return f"edw.{(dag_index * 3 + sensor_index * 7) % 10:04d}"


for i in range(FLEET_DAGS):
    with DAG(
        f"sensor_fleet_{i}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_tasks=64,
        tags=["airflow-ha", "test"],
    ) as dag:
        for j in range(SENSORS_PER_DAG):
            UpstreamJobSensor(
                task_id=f"wait_{j}",
                job=upstream_of(i, j),
                marker_dir=MARKER_DIR,
                poke_interval=POKE_INTERVAL,
                timeout=1800,
            )
    globals()[dag.dag_id] = dag

with DAG(
    "sensor_fleet_timeouts",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["airflow-ha", "test"],
) as timeouts:
    UpstreamJobSensor(task_id="never_fails", job="edw.9999", marker_dir=MARKER_DIR, poke_interval=2, timeout=20)
    UpstreamJobSensor(
        task_id="never_soft", job="edw.9998", marker_dir=MARKER_DIR, poke_interval=2, timeout=20, soft_fail=True
    )


def _noted(outcome: str):
    """A task callback that leaves ``<marker dir>/callbacks/<task_id>.<outcome>``: the test reads which ran."""

    def note(context):
        directory = os.path.join(MARKER_DIR, "callbacks")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{context['ti'].task_id}.{outcome}"), "w") as f:
            f.write(context["ti"].run_id)

    return note


with DAG(
    "sensor_fleet_broken",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["airflow-ha", "test"],
    default_args={"on_success_callback": _noted("success"), "on_failure_callback": _noted("failure")},
) as broken:
    UpstreamJobSensor(
        task_id="marker_dir_is_a_file", job="edw.0001", marker_dir=f"{MARKER_DIR}/not-a-directory", timeout=3600
    )
    JobHistorySensor(
        task_id="no_such_connection", job="src.crm", business_date="2026-11-24", conn_id="no_such_conn", timeout=3600
    )
    # with an on_success_callback it resumes on a worker to succeed (Airflow 3.3 runs none for TaskSuccessEvent)
    UpstreamJobSensor(task_id="ready_at_once", job="edw.ready", marker_dir=MARKER_DIR, poke_interval=2, timeout=3600)
