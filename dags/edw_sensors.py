"""EDW jobs ``edw_d_0000`` ... ``edw_d_0009``: each waits on its upstream jobs with smart sensors.

The seed's case. An upstream job announces that it finished a business day by writing a marker file
``<marker dir>/<YYYYMMDD>/edw.NNNN.job``; a downstream job waits for the markers of all its upstreams,
runs its load, and writes its own marker. Several jobs wait on the same upstream (``edw.0101`` feeds
five of them), which in Airflow 2's smart sensor showed up as duplicate ``sensor_instance`` rows; here
those waits share one hashcode and one poke per interval, on one shard. The source-system feeds
``src.*`` are not files but rows in a job-history table of the EDW database (connection ``edw_db``,
table ``edw_job_history``), waited on with :class:`JobHistorySensor`.

Markers must be on storage the workers and the sensor shards share (``AIRFLOW_HA_MARKER_DIR``).

The DAGs run Monday to Friday and follow the same business-day calendar as ``edw_dynamic.py`` (the
catalogue's ``holidays``): on a holiday ``business_day`` short-circuits the run, so no sensor waits
twelve hours for markers no upstream writes that day. ``marker_volume`` then fails the run at once,
naming the chart values to set, when no marker volume is mounted.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import date
from pathlib import Path

import pendulum
from airflow.sdk import DAG, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_ha.edw.business_days import is_business_day
from airflow_ha.edw.catalogue import ENV_CATALOGUE, load_catalogue
from airflow_ha.sensors.markers import MarkerNotWritable, write_marker
from airflow_ha.sensors.operators import JobHistorySensor, UpstreamJobSensor

MARKER_DIR = os.environ.get("AIRFLOW_HA_MARKER_DIR", "/opt/airflow/markers")
MARKERS_OF_DAY = MARKER_DIR.rstrip("/") + "/{{ ds_nodash }}"
CATALOGUE = os.environ.get(ENV_CATALOGUE) or str(Path(__file__).resolve().parent / "catalogue" / "edw_jobs.yaml")
HOLIDAYS = load_catalogue(CATALOGUE).holidays  # the EDW calendar, shared with edw_dynamic.py

# job -> (upstream EDW jobs (marker files), upstream source feeds (job-history rows))
JOBS: dict[str, tuple[list[str], list[str]]] = {
    "edw.0000": (["edw.0101", "edw.0102"], ["src.crm"]),
    "edw.0001": (["edw.0101", "edw.0103"], []),
    "edw.0002": (["edw.0101", "edw.0102", "edw.0104"], ["src.crm"]),
    "edw.0003": (["edw.0000", "edw.0001"], []),
    "edw.0004": (["edw.0101", "edw.0000"], ["src.billing"]),
    "edw.0005": (["edw.0102", "edw.0003"], []),
    "edw.0006": (["edw.0101", "edw.0104"], ["src.billing"]),
    "edw.0007": (["edw.0003", "edw.0004", "edw.0005"], []),
    "edw.0008": (["edw.0103", "edw.0006"], ["src.crm"]),
    "edw.0009": (["edw.0007", "edw.0008"], []),
}


def dag_id_of(job: str) -> str:
    return "edw_d_" + job.split(".", 1)[1]


@task.short_circuit
def business_day(ds: str | None = None) -> bool:
    """False on a weekend or a catalogue holiday: the run's sensors and load are skipped, not left waiting."""
    return is_business_day(date.fromisoformat(ds), HOLIDAYS)


@task
def marker_volume() -> str:
    """Fail at once, saying what to set, when no marker volume is mounted (the chart's ``markers.enabled``
    is off): the sensors would otherwise wait 12 hours for markers no job can write where they look."""
    if not os.path.isdir(MARKER_DIR):
        raise AirflowFailException(
            f"no marker volume: {MARKER_DIR} (AIRFLOW_HA_MARKER_DIR) does not exist on {socket.gethostname()}; "
            "set markers.enabled=true with markers.existingClaim (a ReadWriteMany claim every node mounts) or "
            "markers.hostPath (a path every node shares) in the chart's values"
        )
    return MARKER_DIR


@task
def load(job: str, marker_dir: str) -> str:
    """The job's own work (a stand-in for its SQL), then its marker for the jobs downstream."""
    context = get_current_context()
    content = json.dumps({"job": job, "run_id": context["run_id"], "host": socket.gethostname()}) + "\n"
    try:
        return str(write_marker(marker_dir, job, content))
    except MarkerNotWritable as exc:
        raise AirflowFailException(str(exc)) from exc  # a retry cannot change the directory's permissions


for job, (upstream_jobs, source_feeds) in JOBS.items():
    with DAG(
        dag_id_of(job),
        description=f"EDW job {job}: waits on {', '.join(upstream_jobs + source_feeds)}",
        schedule="0 2 * * 1-5",  # business days, after the nightly source loads
        start_date=pendulum.datetime(2026, 11, 2, tz="UTC"),
        catchup=False,
        max_active_runs=3,
        default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
        tags=["airflow-ha", "edw", "smart-sensor"],
    ) as dag:
        waits = [
            UpstreamJobSensor(
                task_id=f"wait_{upstream.replace('.', '_')}",
                job=upstream,
                marker_dir=MARKERS_OF_DAY,
                poke_interval=60,
                timeout=int(pendulum.duration(hours=12).total_seconds()),
            )
            for upstream in upstream_jobs
        ] + [
            JobHistorySensor(
                task_id=f"wait_{feed.replace('.', '_')}",
                job=feed,
                business_date="{{ ds }}",
                conn_id="edw_db",
                table="edw_job_history",
                poke_interval=120,
                timeout=int(pendulum.duration(hours=12).total_seconds()),
            )
            for feed in source_feeds
        ]
        business_day() >> marker_volume() >> waits
        waits >> load(job, MARKERS_OF_DAY)
    globals()[dag.dag_id] = dag
