import asyncio
import time

from airflow.triggers.base import TaskSuccessEvent

from airflow_ha.sensors.hashcode import hashcode
from airflow_ha.sensors.triggers import SmartSensorTrigger


def _trigger(path: str, deadline_in: float) -> SmartSensorTrigger:
    target = {"path": path}
    return SmartSensorTrigger(
        kind="file",
        target=target,
        hashcode=hashcode("file", target),
        virtual_shard=3,
        poke_interval=0.2,
        deadline=time.time() + deadline_in,
        description=f"file {path}",
    )


async def _first_event(trigger):
    async for event in trigger.run():
        return event


def test_ready_target_ends_the_task_without_a_worker(tmp_path):
    (tmp_path / "edw.0001.job").touch()
    event = asyncio.run(_first_event(_trigger(str(tmp_path / "edw.0001.job"), 10)))
    assert isinstance(event, TaskSuccessEvent)


def test_deadline_yields_a_timeout_naming_the_target_and_last_poke(tmp_path):
    trigger = _trigger(str(tmp_path / "edw.0002.job"), 0.6)
    event = asyncio.run(_first_event(trigger))
    assert event.payload["status"] == "timeout"
    assert event.payload["description"] == f"file {tmp_path}/edw.0002.job"
    assert event.payload["last_poke"] == f"no edw.0002.job in {tmp_path}"


def test_serialize_round_trip(tmp_path):
    trigger = _trigger(str(tmp_path / "x.job"), 5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_ha.sensors.triggers.SmartSensorTrigger"
    assert SmartSensorTrigger(**kwargs).serialize() == (classpath, kwargs)
