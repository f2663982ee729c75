"""Who waits on what: waiting smart sensors grouped by hashcode, live.

The answer to Airflow 2's ``select ... from sensor_instance``: deferred task instances joined with
their :class:`~airflow_ha.sensors.triggers.SmartSensorTrigger` rows (the metadata DB says who waits),
and the shards' status records (Redis says what the last poke saw). Finished sensors come from the
status store's history (:func:`finished_sensors`). Used by ``airflow-ha sensors list`` and the UI page of
:mod:`airflow_ha.sensors.plugin`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_ha.sensors.shards import ShardMap
from airflow_ha.sensors.status import FinishedSensor, StatusStore
from airflow_ha.sensors.triggers import CLASSPATH

log = logging.getLogger(__name__)


@dataclass
class Waiter:
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    waiting_since: str
    trigger_id: int
    triggerer_id: int | None


@dataclass
class SensorGroup:
    hashcode: int
    kind: str
    description: str
    poke_context: dict[str, Any]
    virtual_shard: int
    queue: str | None
    shard: int
    waiters: list[Waiter] = field(default_factory=list)
    age_seconds: float = 0.0
    last_poke_at: str | None = None
    last_result: str = "unknown"
    last_detail: str = ""
    pokes: int = 0
    poked_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def waiting_sensors(session, status: StatusStore | None = None, shards: ShardMap | None = None) -> list[SensorGroup]:
    """Every waiting smart sensor, grouped by hashcode, oldest wait first."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    shards = shards or ShardMap.from_env()
    rows = session.execute(
        select(TaskInstance, Trigger)
        .join(Trigger, TaskInstance.trigger_id == Trigger.id)
        .where(Trigger.classpath == CLASSPATH, TaskInstance.state == TaskInstanceState.DEFERRED)
    ).all()
    now = dt.datetime.now(dt.UTC)
    groups: dict[int, SensorGroup] = {}
    for ti, trigger in rows:
        kwargs = trigger.kwargs
        code = int(kwargs["hashcode"])
        group = groups.get(code)
        if group is None:
            virtual = int(kwargs["virtual_shard"])
            group = groups[code] = SensorGroup(
                hashcode=code,
                kind=kwargs["kind"],
                description=kwargs["description"],
                poke_context=dict(kwargs["target"]),
                virtual_shard=virtual,
                queue=trigger.queue,
                shard=shards.pod(virtual),
            )
        since = trigger.created_date
        group.waiters.append(
            Waiter(
                dag_id=ti.dag_id,
                task_id=ti.task_id,
                run_id=ti.run_id,
                map_index=ti.map_index,
                try_number=ti.try_number,
                waiting_since=since.isoformat(),
                trigger_id=trigger.id,
                triggerer_id=trigger.triggerer_id,
            )
        )
        group.age_seconds = max(group.age_seconds, (now - since).total_seconds())
    if status is not None and groups:
        try:
            records = status.read(groups)
        except Exception as exc:
            log.warning("sensor status store unreachable: %s", exc)
            records = {}
        for code, record in records.items():
            group = groups[code]
            poked = float(record.get("last_poke_at", 0) or 0)
            group.last_poke_at = dt.datetime.fromtimestamp(poked, dt.UTC).isoformat() if poked else None
            group.last_result = record.get("last_result", "unknown")
            group.last_detail = record.get("last_detail", "")
            group.pokes = int(record.get("pokes", 0))
            replica = record.get("replica")
            group.poked_by = f"{record.get('shard')} on {replica}" if replica else record.get("shard")
    for group in groups.values():
        group.waiters.sort(key=lambda w: (w.dag_id, w.run_id, w.task_id, w.map_index))
    return sorted(groups.values(), key=lambda g: -g.age_seconds)


def finished_sensors(status: StatusStore | None, dag_id: str | None = None, limit: int = 1000) -> list[FinishedSensor]:
    """Smart sensors that stopped waiting within the retention period, newest first; [] without a store."""
    if status is None:
        return []
    try:
        finished = status.finished(limit if dag_id is None else max(limit, 10_000))
    except Exception as exc:
        log.warning("sensor status store unreachable: %s", exc)
        return []
    if dag_id:
        finished = [f for f in finished if f.dag_id == dag_id]
    return finished[:limit]


def status_store_or_none() -> StatusStore | None:
    try:
        return StatusStore.from_config()
    except Exception as exc:
        log.warning("sensor status store disabled: %s", exc)
        return None
