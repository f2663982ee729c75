import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowTaskTimeout, TaskDeferred

from airflow_ha.sensors.errors import SensorConfigError
from airflow_ha.sensors.hashcode import hashcode
from airflow_ha.sensors.operators import (
    JobHistorySensor,
    SensorTargetError,
    SmartSensor,
    SmartSqlSensor,
    UpstreamJobSensor,
)
from airflow_ha.sensors.shards import ShardMap
from airflow_ha.sensors.triggers import CLASSPATH


@pytest.fixture
def queues_enabled(monkeypatch):
    monkeypatch.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "True")
    monkeypatch.setenv("AIRFLOW_HA_SENSOR_SHARDS", "3")
    monkeypatch.setenv("AIRFLOW_HA_VIRTUAL_SHARDS", "16")


def test_unknown_kind_fails_at_parse_time():
    with pytest.raises(SensorConfigError, match="unknown smart sensor kind 'ftp'"):
        SmartSensor(task_id="s", kind="ftp", target={})


def test_upstream_job_sensor_defers_to_its_shard_queue(queues_enabled):
    sensor = UpstreamJobSensor(task_id="wait_edw_0003", job="edw.0003", marker_dir="/data/markers/", timeout=600)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    target = {"path": "/data/markers/edw.0003.job"}
    code = hashcode("file", target)
    virtual = ShardMap(3, 16).virtual_shard(code)
    assert sensor.queue == f"sensor-v{virtual:03d}"  # read by Airflow as the trigger's queue
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs["hashcode"] == code and kwargs["target"] == target and kwargs["virtual_shard"] == virtual
    assert before + 600 <= kwargs["deadline"] <= time.time() + 600
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout.total_seconds() > 600  # the scheduler's backstop comes after our own deadline


def test_identical_sensors_get_identical_hashcodes(queues_enabled):
    a = JobHistorySensor(task_id="a", job="edw.0001", business_date="2026-11-24")
    b = JobHistorySensor(task_id="b", job="edw.0001", business_date="2026-11-24")
    c = JobHistorySensor(task_id="c", job="edw.0001", business_date="2026-11-25")
    assert a.poke_context() == b.poke_context()
    assert a.poke_context()[2] != c.poke_context()[2]


def test_unserialisable_context_fails_at_defer_time_naming_the_task(queues_enabled):
    sensor = SmartSqlSensor(task_id="q", conn_id="edw_db", sql="select 1", parameters={"d": object()})
    with pytest.raises(SensorConfigError, match=r"q: poke context target.parameters.d is a object"):
        sensor.execute(context={})


def test_queues_disabled_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "False")
    sensor = UpstreamJobSensor(task_id="w", job="edw.0001", marker_dir="/m")
    with pytest.raises(SensorConfigError, match="queues_enabled = True"):
        sensor.execute(context={})


def test_shard_count_zero_fails_at_defer_time(queues_enabled, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HA_SENSOR_SHARDS", "0")
    with pytest.raises(ValueError, match="AIRFLOW_HA_SENSOR_SHARDS=0 must be at least 1"):
        UpstreamJobSensor(task_id="w", job="edw.0001", marker_dir="/m").execute(context={})


def test_timeout_event_names_the_target():
    sensor = UpstreamJobSensor(task_id="w", job="edw.0001", marker_dir="/m", timeout=30)
    event = {"status": "timeout", "description": "file /m/edw.0001.job", "last_poke": "no edw.0001.job in /m"}
    with pytest.raises(AirflowSensorTimeout, match=r"file /m/edw.0001.job not ready after 30 s; last poke: no edw"):
        sensor.execute_complete(context={}, event=event)


def test_a_shorter_execution_timeout_bounds_the_wait_and_keeps_the_last_poke(queues_enabled):
    """Airflow applies no execution_timeout across a deferral: the shard's deadline is the shorter of the
    two, and the failure is an execution timeout (retried as one) that still names the last poke."""
    sensor = UpstreamJobSensor(
        task_id="w", job="edw.0001", marker_dir="/m", timeout=12 * 3600, execution_timeout=timedelta(minutes=30)
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    deadline = deferred.value.trigger.serialize()[1]["deadline"]
    assert before + 1800 <= deadline <= time.time() + 1800
    assert 1800 < deferred.value.timeout.total_seconds() < 12 * 3600
    event = {"status": "timeout", "description": "file /m/edw.0001.job", "last_poke": "no edw.0001.job in /m"}
    with pytest.raises(AirflowTaskTimeout, match=r"execution_timeout: file /m/edw\.0001\.job not ready after 1800 s"):
        sensor.execute_complete(context={}, event=event)
    longer = UpstreamJobSensor(
        task_id="x", job="edw.0001", marker_dir="/m", timeout=60, execution_timeout=timedelta(hours=1)
    )
    with pytest.raises(AirflowSensorTimeout, match="not ready after 60 s"):
        longer.execute_complete(context={}, event=event)


def test_a_sensor_with_a_success_callback_asks_to_resume_and_succeeds_on_the_worker(queues_enabled):
    plain = UpstreamJobSensor(task_id="w", job="edw.0001", marker_dir="/m")
    noted = UpstreamJobSensor(task_id="n", job="edw.0001", marker_dir="/m", on_success_callback=lambda context: None)
    for sensor, resumes in ((plain, False), (noted, True)):
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(context={})
        assert deferred.value.trigger.serialize()[1]["resume_on_success"] is resumes
    event = {"status": "success", "description": "file /m/edw.0001.job", "detail": "found /m/edw.0001.job"}
    assert noted.execute_complete(context={}, event=event) is None  # succeeds: Airflow then runs the callback


def test_error_event_fails_the_task_with_the_cause_and_is_not_a_timeout():
    sensor = JobHistorySensor(task_id="w", job="src.crm", business_date="2026-11-24", conn_id="edw_db")
    event = {"status": "error", "description": "job src.crm on 2026-11-24", "error": "table does not exist"}
    with pytest.raises(SensorTargetError, match=r"job src\.crm on 2026-11-24 cannot be poked: table does not exist"):
        sensor.execute_complete(context={}, event=event)
    assert not issubclass(SensorTargetError, AirflowSensorTimeout)


def test_smart_false_pokes_on_the_worker(tmp_path):
    sensor = UpstreamJobSensor(task_id="w", job="edw.0001", marker_dir=str(tmp_path), smart=False, mode="reschedule")
    assert sensor.poke(context={}) is False
    (tmp_path / "edw.0001.job").touch()
    assert sensor.poke(context={}) is True
