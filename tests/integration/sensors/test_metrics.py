"""The smart sensors' metrics as Prometheus reads them: the real trigger and poke hub in this process, its
[metrics] as the chart sets them, a real statsd_exporter with the chart's mapping file."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from airflow_ha import metrics
from airflow_ha.sensors.hashcode import hashcode
from airflow_ha.sensors.triggers import SmartSensorTrigger

pytestmark = pytest.mark.integration


def test_waiting_sensors_pokes_and_marker_to_success_show_in_the_sensor_series(exporter, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HA_SENSOR_SHARD_ORDINAL", "1")  # as the chart sets it on shard group 1's pods
    marker = tmp_path / "edw.0042.job"
    target = {"path": str(marker)}
    pod = metrics.label(socket.gethostname())

    def trigger() -> SmartSensorTrigger:
        return SmartSensorTrigger(
            kind="file", target=target, hashcode=hashcode("file", target), virtual_shard=1, poke_interval=0.2,
            deadline=time.time() + 60, description=f"file {marker}",
        )  # fmt: skip

    async def three_waiters_then_the_marker():
        async def first_event(t):
            async for event in t.run():
                return event

        waiting = [asyncio.ensure_future(first_event(trigger())) for _ in range(3)]
        seen = await asyncio.to_thread(exporter.wait_for, "airflow_ha_sensors_waiting", 3, shard="shard-1", pod=pod)
        marker.touch()
        return seen, await asyncio.gather(*waiting)

    seen, events = asyncio.run(three_waiters_then_the_marker())
    assert seen == 3 and len(events) == 3
    assert exporter.value("airflow_ha_sensors_targets", shard="shard-1", pod=pod) in (0, 1)  # one target
    assert exporter.wait_for("airflow_ha_sensors_pokes_total", 2, shard="shard-1", kind="file") >= 2
    assert exporter.value("airflow_ha_sensors_poke_errors_total", shard="shard-1", kind="file") == 0
    assert exporter.wait_for("airflow_ha_sensors_poke_seconds_count", 1, kind="file") >= 1
    assert exporter.wait_for("airflow_ha_sensors_marker_to_success_seconds_count", 3, kind="file") == 3
    assert 0 <= exporter.value("airflow_ha_sensors_marker_to_success_seconds_sum", kind="file") < 3 * 5
