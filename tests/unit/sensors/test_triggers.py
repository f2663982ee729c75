import asyncio
import time

from airflow.triggers.base import TaskSuccessEvent

from airflow_ha.sensors.hashcode import hashcode
from airflow_ha.sensors.hub import replica_label, shard_label
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


async def _first_event(trigger, within: float = 30):
    """The trigger's first event; a trigger still waiting after ``within`` seconds fails the test."""

    async def first():
        async for event in trigger.run():
            return event

    return await asyncio.wait_for(first(), within)


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


def test_a_permanent_failure_yields_an_error_naming_the_cause(tmp_path):
    """A marker "directory" that is a file cannot ever be listed: the task fails now, not after its timeout."""
    (tmp_path / "markers").write_text("a file where the day's directory should be")
    started = time.monotonic()
    event = asyncio.run(_first_event(_trigger(str(tmp_path / "markers" / "edw.0003.job"), 3600)))
    assert event.payload["status"] == "error"
    assert event.payload["error"] == f"{tmp_path}/markers is not a directory"
    assert time.monotonic() - started < 10


def test_a_deadline_already_past_when_the_trigger_starts_pokes_before_timing_out(tmp_path):
    """A shard that picks the trigger up after its deadline (it was away): the marker written meanwhile
    counts, as Airflow 2.2's smart sensor poked before it judged the timeout."""
    (tmp_path / "edw.0004.job").touch()
    event = asyncio.run(_first_event(_trigger(str(tmp_path / "edw.0004.job"), -120)))
    assert isinstance(event, TaskSuccessEvent)
    late = asyncio.run(_first_event(_trigger(str(tmp_path / "edw.0005.job"), -120)))
    assert late.payload["status"] == "timeout" and late.payload["last_poke"] == f"no edw.0005.job in {tmp_path}"


class _Recorded:
    """Stands in for the hub's history writer (the status store itself is tested on real Redis)."""

    def __init__(self):
        self.finished = []

    def record_finished(self, finished):
        self.finished.append(finished)


def test_a_finished_sensor_is_recorded_with_its_task_outcome_and_wait(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from airflow_ha.sensors import hub as hub_module

    recorded = _Recorded()
    monkeypatch.setattr(hub_module.PokeHub, "record_finished", lambda self, f: recorded.record_finished(f))
    (tmp_path / "edw.0006.job").touch()
    trigger = _trigger(str(tmp_path / "edw.0006.job"), 60)
    trigger.deferred_at = time.time() - 30
    trigger.task_instance = SimpleNamespace(dag_id="edw", task_id="wait", run_id="r1", map_index=-1, try_number=2)
    assert isinstance(asyncio.run(_first_event(trigger)), TaskSuccessEvent)
    (done,) = recorded.finished
    assert (done.dag_id, done.task_id, done.run_id, done.try_number, done.outcome) == (
        "edw",
        "wait",
        "r1",
        2,
        "success",
    )
    assert done.pokes == 1 and 30 <= done.waited_seconds < 60 and done.detail.startswith("found ")
    assert done.hashcode == trigger.hashcode and done.description == trigger.description


def test_a_task_with_a_success_callback_resumes_on_a_worker_to_succeed(tmp_path):
    """Airflow 3.3 runs no on_success_callback for a task the triggerer ends (seen in the integration test:
    the failure callbacks ran, the success callback of a sensor ended by TaskSuccessEvent did not)."""
    (tmp_path / "edw.0007.job").touch()
    trigger = _trigger(str(tmp_path / "edw.0007.job"), 60)
    trigger.resume_on_success = True
    event = asyncio.run(_first_event(trigger))
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "success" and event.payload["detail"].startswith("found ")
    assert SmartSensorTrigger(**trigger.serialize()[1]).resume_on_success is True


def test_the_trigger_log_starts_with_the_target_and_the_process_holding_it(tmp_path, capfd):
    """The line a person reads first when opening a waiting sensor's log in the UI (served by its shard pod)."""
    (tmp_path / "edw.0006.job").touch()
    asyncio.run(_first_event(_trigger(str(tmp_path / "edw.0006.job"), 10)))
    lines = [line for line in capfd.readouterr().out.splitlines() if "waiting for" in line]
    assert lines, "the trigger logged no 'waiting for' line"
    assert (
        f"waiting for file {tmp_path}/edw.0006.job on {replica_label()} ({shard_label()}, virtual shard 3)" in lines[0]
    )
    assert "poked every 0.2s" in lines[0]
