"""The trigger every smart sensor defers to; it runs in a sensor-shard triggerer process.

It waits on the process's :class:`~airflow_ha.sensors.hub.PokeHub` (shared with every other waiter on
the same hashcode) and then either

* yields ``TaskSuccessEvent``: the triggerer marks the task successful, no worker round trip (a task with
  an ``on_success_callback`` instead resumes on a worker to succeed there: Airflow 3.3 runs no success
  callback for a task the triggerer ends); or
* at its deadline yields ``{"status": "timeout", ...}``: the task resumes on a worker only to raise
  ``AirflowSensorTimeout`` naming the target and the last poke result (``soft_fail`` turns that into a
  skip, as for any Airflow sensor); or
* when a poke says waiting cannot help (no such connection or table, no permission) yields
  ``{"status": "error", ...}``: the task fails at once with that cause (its ``retries`` apply as usual).

The deadline is absolute (epoch seconds, fixed when the task deferred), so a shard that restarts or is
replaced resumes each sensor with the time it has left: a shard may be gone for as long as a sensor's
remaining timeout without that sensor failing.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_ha import metrics
from airflow_ha.sensors.hub import get_hub
from airflow_ha.sensors.status import FinishedSensor

CLASSPATH = "airflow_ha.sensors.triggers.SmartSensorTrigger"


class SmartSensorTrigger(BaseTrigger):
    def __init__(
        self,
        kind: str,
        target: dict[str, Any],
        hashcode: int,
        virtual_shard: int,
        poke_interval: float,
        deadline: float,
        description: str,
        deferred_at: float | None = None,  # absent from the rows of sensors deferred by older versions
        resume_on_success: bool = False,  # the task has an on_success_callback: succeed on a worker
    ) -> None:
        super().__init__()
        self.kind = kind
        self.target = target
        self.hashcode = int(hashcode)
        self.virtual_shard = int(virtual_shard)
        self.poke_interval = float(poke_interval)
        self.deadline = float(deadline)
        self.description = description
        self.deferred_at = None if deferred_at is None else float(deferred_at)
        self.resume_on_success = bool(resume_on_success)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "kind": self.kind,
                "target": self.target,
                "hashcode": self.hashcode,
                "virtual_shard": self.virtual_shard,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
                "description": self.description,
                "deferred_at": self.deferred_at,
                "resume_on_success": self.resume_on_success,
            },
        )

    async def run(self):
        hub = get_hub()
        remaining = max(0.0, self.deadline - time.time())
        # the first line of the task's trigger log (read through the api-server while it waits): who holds it
        self.log.info(
            "waiting for %s on %s (%s, virtual shard %d): poked every %gs, %.0fs left",
            self.description,
            hub.replica,
            hub.shard,
            self.virtual_shard,
            self.poke_interval,
            remaining,
        )
        waited = await hub.wait(self.kind, self.target, self.hashcode, self.poke_interval, remaining)
        result = waited.result
        if result.ready:
            self.log.info("%s is ready: %s", self.description, result.detail)
            if result.ready_since is not None:
                metrics.timing("sensors.marker_to_success", time.time() - result.ready_since, kind=self.kind)
            outcome = "success"
            if self.resume_on_success:  # Airflow runs no success callback for a task ended here
                event = TriggerEvent({"status": "success", "description": self.description, "detail": result.detail})
            else:
                event = TaskSuccessEvent()
        elif result.permanent:  # waiting cannot help: the task fails now, with the cause
            self.log.error("%s cannot be poked: %s", self.description, result.detail)
            outcome = "failed"
            event = TriggerEvent({"status": "error", "description": self.description, "error": result.detail})
        else:
            self.log.info("%s not ready by the deadline: %s", self.description, result.detail)
            outcome = "timeout"
            event = TriggerEvent({"status": "timeout", "description": self.description, "last_poke": result.detail})
        self._record_finished(hub, outcome, result.detail, waited.pokes)
        yield event

    def _record_finished(self, hub, outcome: str, detail: str, pokes: int) -> None:
        """History for ``airflow-ha sensors list --all``: written in the background, so a status store that
        is away never holds up the event."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return
        now = time.time()
        hub.record_finished(
            FinishedSensor(
                dag_id=ti.dag_id,
                task_id=ti.task_id,
                run_id=ti.run_id,
                map_index=int(getattr(ti, "map_index", -1)),
                try_number=int(getattr(ti, "try_number", 0) or 0),
                hashcode=self.hashcode,
                kind=self.kind,
                description=self.description,
                shard=hub.shard,
                replica=hub.replica,
                outcome=outcome,
                detail=detail,
                waited_seconds=None if self.deferred_at is None else round(now - self.deferred_at, 1),
                pokes=pokes,
                finished_at=now,
            )
        )
