"""The finished-sensor history on a real Redis Cluster: kept newest first, trimmed to the retention."""

from __future__ import annotations

import time

import pytest

from airflow_ha.sensors.listing import finished_sensors
from airflow_ha.sensors.status import HISTORY_KEY, FinishedSensor, StatusStore, client_for_url
from airflow_ha.settings import ENV_HISTORY_DAYS

pytestmark = pytest.mark.integration


def _finished(task_id: str, finished_at: float, dag_id: str = "edw_load", outcome: str = "success") -> FinishedSensor:
    return FinishedSensor(
        dag_id=dag_id,
        task_id=task_id,
        run_id="scheduled__2026-11-24",
        map_index=-1,
        try_number=1,
        hashcode=12345,
        kind="file",
        description="file /data/markers/edw.0001.job",
        shard="shard-0",
        replica="airflow-ha-sensor-shard-0-abc",
        outcome=outcome,
        detail="found /data/markers/edw.0001.job",
        waited_seconds=42.5,
        pokes=9,
        finished_at=finished_at,
    )


def test_history_is_newest_first_filtered_by_dag_and_trimmed_to_the_retention(redis_cluster, monkeypatch):
    monkeypatch.setenv(ENV_HISTORY_DAYS, "2")
    store = StatusStore(client_for_url(redis_cluster.url()))
    store.client.delete(HISTORY_KEY)
    now = time.time()
    store.record_finished(_finished("too_old", now - 3 * 86400))  # already past the 2-day retention
    store.record_finished(_finished("yesterday", now - 86400, outcome="timeout"))
    store.record_finished(_finished("other_dag", now - 60, dag_id="crm_load", outcome="failed"))
    store.record_finished(_finished("just_now", now))
    assert [f.task_id for f in store.finished()] == ["just_now", "other_dag", "yesterday"]
    assert store.client.zcard(HISTORY_KEY) == 3  # the write trimmed what the retention drops
    assert store.finished()[0] == _finished("just_now", now)  # every field round-trips
    assert [f.task_id for f in finished_sensors(store, dag_id="edw_load")] == ["just_now", "yesterday"]
    assert [f.task_id for f in finished_sensors(store, limit=1)] == ["just_now"]
    assert finished_sensors(None) == []
