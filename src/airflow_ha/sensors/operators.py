"""The smart sensors DAG authors use.

Each sensor reduces what it waits for, after template rendering, to a poke context ``(kind, target)``,
then defers to :class:`~airflow_ha.sensors.triggers.SmartSensorTrigger` on its virtual shard's
triggerer queue. While it waits it holds no worker slot and no pool slot (a deferred task holds
neither), and every task waiting on the same target shares one poke.

Airflow semantics kept: ``timeout`` (from the moment the task defers), ``soft_fail`` (a timeout skips),
``poke_interval`` (the shard pokes a target at the shortest interval its waiters ask for). ``mode``
applies with ``smart=False``, which runs the same poke in Airflow's own poke/reschedule loop, e.g. to
debug a target on a worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, AirflowTaskTimeout

from airflow_ha.sensors.errors import SensorConfigError
from airflow_ha.sensors.hashcode import hashcode
from airflow_ha.sensors.pokers import get_poker
from airflow_ha.sensors.shards import ShardMap
from airflow_ha.sensors.triggers import SmartSensorTrigger

# Beyond its own deadline a sensor's trigger row is failed by the scheduler after this much more,
# in case no shard serves its queue at all (then the failure says "Trigger timeout").
DEFER_GRACE = timedelta(minutes=10)


def _queues_enabled() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("triggerer", "queues_enabled", fallback=False)


class SensorTargetError(AirflowException):
    """A shard found that waiting cannot help (no such connection or table, no permission): the task fails
    at once with the cause; ``retries`` apply as for any failure (the cause may be fixed meanwhile)."""


class SmartSensor(BaseSensorOperator):
    """A sensor of any registered kind: ``SmartSensor(task_id=..., kind="file", target={"path": ...})``.

    Subclasses fix the kind and build the target from their own (templated) arguments.
    """

    template_fields: Sequence[str] = ("target",)
    poke_kind: str | None = None

    def __init__(self, *, kind: str | None = None, target: dict[str, Any] | None = None, smart: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind or self.poke_kind
        if self.kind is None:
            raise SensorConfigError(f"{self.task_id}: a smart sensor needs a kind")
        get_poker(self.kind)  # unknown kind: fail at parse time, naming the known ones
        self.target = target
        self.smart = smart

    def poke_target(self) -> dict[str, Any]:
        """The target, after template rendering. Subclasses build it from their arguments."""
        if not isinstance(self.target, dict):
            raise SensorConfigError(f"{self.task_id}: target must be a dict, got {type(self.target).__name__}")
        return self.target

    def poke_context(self) -> tuple[str, dict[str, Any], int]:
        poker = get_poker(self.kind)
        try:
            target = poker.validate(self.poke_target())
            code = hashcode(self.kind, target)
        except SensorConfigError as exc:
            raise SensorConfigError(f"{self.dag_id}.{self.task_id}: {exc}") from None
        return self.kind, target, code

    def execute(self, context):
        if not self.smart:
            return super().execute(context)
        kind, target, code = self.poke_context()
        if not _queues_enabled():
            raise SensorConfigError(
                f"{self.task_id}: smart sensors need [triggerer] queues_enabled = True on workers and shards "
                "(AIRFLOW__TRIGGERER__QUEUES_ENABLED); without it the trigger has no shard queue"
            )
        shards = ShardMap.from_env()
        virtual = shards.virtual_shard(code)
        # Airflow reads ti.task.queue at defer time as the trigger's queue: this routes it to the shard.
        self.queue = shards.queue(virtual)
        description = get_poker(kind).describe(target)
        self.log.info(
            "waiting on %s: hashcode %d, virtual shard %d (queue %s, shard pod %d of %d)",
            description,
            code,
            virtual,
            self.queue,
            shards.pod(virtual),
            shards.sensor_shards,
        )
        wait_seconds = self._wait_limit()[0]
        self.defer(
            trigger=SmartSensorTrigger(
                kind=kind,
                target=target,
                hashcode=code,
                virtual_shard=virtual,
                poke_interval=self.poke_interval,
                deadline=time.time() + wait_seconds,
                description=description,
                deferred_at=time.time(),
                # Airflow 3.3 runs no on_success_callback for a task the triggerer ends (TaskSuccessEvent):
                # with one, the task resumes on a worker to succeed there, and the callback runs
                resume_on_success=bool(self.on_success_callback),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=wait_seconds) + DEFER_GRACE,
        )

    def _wait_limit(self) -> tuple[float, str]:
        """How long the trigger waits, and which limit that is: ``timeout``, or ``execution_timeout`` when it
        is shorter (Airflow does not apply an execution timeout across a deferral; the shard does)."""
        if self.execution_timeout is not None and self.execution_timeout.total_seconds() < self.timeout:
            return self.execution_timeout.total_seconds(), "execution_timeout"
        return float(self.timeout), "timeout"

    def execute_complete(self, context, event: dict[str, Any] | str | None = None) -> None:
        if event == "success":
            return  # TaskSuccessEvent's payload, seen only where the task resumes anyway (``dag.test()``)
        event = event if isinstance(event, dict) else {"payload": event}
        if event.get("status") == "success":  # resumed to succeed here, so that on_success_callback runs
            self.log.info("%s is ready: %s", event.get("description"), event.get("detail"))
            return
        if event.get("status") == "timeout":
            seconds, limit = self._wait_limit()
            message = f"{event.get('description')} not ready after {seconds:.0f} s; last poke: {event.get('last_poke')}"
            if limit == "execution_timeout":  # failed (and retried) as any task past its execution_timeout
                raise AirflowTaskTimeout(f"execution_timeout: {message}")
            # soft_fail / never_fail turn this into a skip in BaseSensorOperator.resume_execution.
            raise AirflowSensorTimeout(message)
        if event.get("status") == "error":
            raise SensorTargetError(f"{event.get('description')} cannot be poked: {event.get('error')}")
        raise SensorConfigError(f"{self.task_id}: unexpected trigger event {event!r}")

    def poke(self, context) -> bool:
        """One poke on the worker (``smart=False``): the same check a shard makes."""
        kind, target, _ = self.poke_context()
        result = get_poker(kind).poke_batch([target])[0]
        self.log.info("%s: %s", get_poker(kind).describe(target), result.detail)
        return result.ready


class UpstreamJobSensor(SmartSensor):
    """Waits for an upstream job's marker file ``<marker_dir>/<job>.job`` (e.g. ``edw.0003.job``)."""

    template_fields: Sequence[str] = ("job", "marker_dir")
    poke_kind = "file"

    def __init__(self, *, job: str, marker_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.job = job
        self.marker_dir = marker_dir

    def poke_target(self):
        return {"path": f"{str(self.marker_dir).rstrip('/')}/{self.job}.job"}


class JobHistorySensor(SmartSensor):
    """Waits for a success row of ``job`` on ``business_date`` in a job-history table of a SQL database."""

    template_fields: Sequence[str] = ("job", "business_date", "conn_id", "table")
    poke_kind = "job_history"

    def __init__(
        self,
        *,
        job: str,
        business_date: str = "{{ ds }}",
        conn_id: str = "edw_db",
        table: str = "edw_job_history",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.job = job
        self.business_date = business_date
        self.conn_id = conn_id
        self.table = table

    def poke_target(self):
        return {"conn_id": self.conn_id, "table": self.table, "job": self.job, "business_date": self.business_date}


class SmartFileSensor(SmartSensor):
    """Waits for a file (glob allowed in the file name) to exist."""

    template_fields: Sequence[str] = ("filepath",)
    poke_kind = "file"

    def __init__(self, *, filepath: str, **kwargs):
        super().__init__(**kwargs)
        self.filepath = filepath

    def poke_target(self):
        return {"path": self.filepath}


class SmartSqlSensor(SmartSensor):
    """Waits until a query's first cell is truthy (Airflow's SqlSensor criterion)."""

    template_fields: Sequence[str] = ("conn_id", "sql", "parameters")
    template_ext: Sequence[str] = (".sql",)
    poke_kind = "sql"

    def __init__(self, *, conn_id: str, sql: str, parameters: list | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.sql = sql
        self.parameters = parameters

    def poke_target(self):
        return {"conn_id": self.conn_id, "sql": self.sql, "parameters": self.parameters}
