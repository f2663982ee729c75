"""The seed notebook's demo: three DAGs share one smart sensor and succeed together on one marker.

``smart_sensor_demo_a``, ``_b`` and ``_c`` each wait for ``<marker dir>/demo/demo.ready.job``. The three
sensors have the same target, so the same hashcode: the sensor page shows ONE row with three waiting
tasks, poked once per interval by one shard; touching the marker releases all three at the next poke.
Then each DAG writes its own marker ``<marker dir>/demo/<dag_id>.job`` into that directory, as an EDW job
does, whoever created the directory (a person as root on the node, or through a worker pod).
Walkthrough: README, "Smart sensors: the demo". Manual runs only (no schedule).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_ha.sensors.markers import MarkerNotWritable, write_marker
from airflow_ha.sensors.operators import UpstreamJobSensor

MARKER_DIR = os.environ.get("AIRFLOW_HA_MARKER_DIR", "/opt/airflow/markers")
DEMO_DIR = MARKER_DIR.rstrip("/") + "/demo"
DEMO_DAGS = ("smart_sensor_demo_a", "smart_sensor_demo_b", "smart_sensor_demo_c")


@task
def report(dag_id: str) -> str:
    """Write this DAG's marker next to the one that released it."""
    try:
        return str(write_marker(DEMO_DIR, dag_id, f"{dag_id}: demo.ready was there\n"))
    except MarkerNotWritable as exc:
        raise AirflowFailException(str(exc)) from exc


for dag_id in DEMO_DAGS:
    with DAG(
        dag_id,
        description="waits on demo.ready with the two other smart_sensor_demo DAGs: one shared poke",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["airflow-ha", "smart-sensor", "demo"],
    ) as dag:
        UpstreamJobSensor(
            task_id="wait_demo_ready", job="demo.ready", marker_dir=DEMO_DIR, poke_interval=10, timeout=3600
        ) >> report(dag_id)
    globals()[dag_id] = dag
