"""Test DAG for the shard-group suite: 12 smart sensors on 4 markers (3 waiters each), all in one run.

The marker directory comes from ``AIRFLOW_HA_TEST_MARKER_DIR`` (set by the test for every process).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_ha.sensors.operators import UpstreamJobSensor

MARKER_DIR = os.environ.get("AIRFLOW_HA_TEST_MARKER_DIR", "/tmp/airflow-ha-markers")
TARGETS = 4
WAITERS = 3
POKE_INTERVAL = 5

with DAG(
    "shard_group",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=64,
    tags=["airflow-ha", "test"],
) as dag:
    for i in range(TARGETS * WAITERS):
        UpstreamJobSensor(
            task_id=f"wait_{i:02d}",
            job=f"grp.{i % TARGETS:04d}",
            marker_dir=MARKER_DIR,
            poke_interval=POKE_INTERVAL,
            timeout=1800,
        )
