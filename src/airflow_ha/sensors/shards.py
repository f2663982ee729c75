"""Hashcodes -> virtual shards -> triggerer queues -> shard groups.

The number of virtual shards is fixed for the life of a deployment (``AIRFLOW_HA_VIRTUAL_SHARDS``,
64 by default); a sensor's trigger row carries its virtual shard's queue (``sensor-v007``). Shard group
``k`` out of ``n`` (``AIRFLOW_HA_SENSOR_SHARDS``; the "pod" and "ordinal" below are the group) serves
every virtual shard ``v`` where ``v % n == k``: each of the group's pods (2 by default, on different
nodes) runs ``airflow triggerer --queues`` with those queues, and Airflow gives a dead one's triggers to
the other. Scaling the groups from 2 to 3 re-deals queues to groups on restart; no trigger row changes,
and identical sensors still meet in one group because they share a virtual shard.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_ha.sensors.errors import SensorConfigError
from airflow_ha.settings import ShardSettings

QUEUE_PREFIX = "sensor-v"


@dataclass(frozen=True)
class ShardMap:
    sensor_shards: int
    virtual_shards: int

    def __post_init__(self) -> None:
        # Same rules (and messages) as the environment settings, for maps built in code.
        if self.sensor_shards < 1:
            raise SensorConfigError(f"sensor shard count must be at least 1, got {self.sensor_shards}")
        if self.virtual_shards < self.sensor_shards:
            raise SensorConfigError(
                f"virtual shards ({self.virtual_shards}) must be at least the sensor shards ({self.sensor_shards})"
            )

    @classmethod
    def from_env(cls) -> ShardMap:
        settings = ShardSettings.from_env()
        return cls(settings.sensor_shards, settings.virtual_shards)

    def virtual_shard(self, hashcode: int) -> int:
        return hashcode % self.virtual_shards  # Python's % is non-negative for a positive modulus

    def pod(self, virtual_shard: int) -> int:
        return virtual_shard % self.sensor_shards

    def queue(self, virtual_shard: int) -> str:
        return f"{QUEUE_PREFIX}{virtual_shard:03d}"

    def queues_for_pod(self, ordinal: int) -> list[str]:
        if not 0 <= ordinal < self.sensor_shards:
            raise SensorConfigError(f"shard ordinal {ordinal} is outside 0..{self.sensor_shards - 1}")
        return [self.queue(v) for v in range(self.virtual_shards) if self.pod(v) == ordinal]


def virtual_shard_of_queue(queue: str | None) -> int | None:
    if queue and queue.startswith(QUEUE_PREFIX) and queue[len(QUEUE_PREFIX) :].isdigit():
        return int(queue[len(QUEUE_PREFIX) :])
    return None
