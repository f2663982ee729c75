"""Where shards record what they poked, so ``airflow-ha sensors list`` and the UI page can show it.

Triggers run with database access blocked (Airflow 3 triggerers talk to the metadata DB only through
their supervisor), so shards write to Redis instead: the deployment's broker Redis Cluster by default
(``[celery] broker_url``), or ``AIRFLOW_HA_SENSOR_STATUS_URL`` (``rediscluster://``, ``redis://``, or
``none`` to switch it off). One hash per hashcode, refreshed on every poke, expiring a day after the
last one; its ``pokes`` counts the pokes of every replica, ``replica`` names the process of the last.
Counters per shard group (``shard-<g>``) and per process (``shard-<g>@<host>``). Writes are best-effort:
a status store outage never stops a poke.

Finished sensors (success, timeout, failed) are kept as history, like the rows of Airflow 2.2's
``sensor_instance`` table: one sorted set scored by the finish time (one key, one slot), trimmed on every
write to ``AIRFLOW_HA_SENSOR_HISTORY_DAYS`` (7) and at most ``HISTORY_MAX`` entries.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from airflow_ha.settings import history_days

log = logging.getLogger(__name__)

ENV_STATUS_URL = "AIRFLOW_HA_SENSOR_STATUS_URL"
KEY_PREFIX = "airflow-ha:sensor:"
TTL_SECONDS = 86400
HISTORY_KEY = f"{KEY_PREFIX}{{history}}"
HISTORY_MAX = 100_000  # entries kept at most, whatever the retention


def status_key(hashcode: int) -> str:
    return f"{KEY_PREFIX}{{{hashcode}}}"


def shard_key(shard: str) -> str:
    return f"{KEY_PREFIX}shard:{{{shard}}}"


def replica_shard(shard: str, replica: str) -> str:
    """The counter name of one process of a shard group."""
    return f"{shard}@{replica}"


@dataclass
class PokeRecord:
    hashcode: int
    kind: str
    description: str
    shard: str
    poked_at: float
    ready: bool
    detail: str
    waiters: int
    replica: str = ""
    state: str = ""  # ready, waiting, retrying (the poke failed), slow (poke still running), failed (for good)

    def fields(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "shard": self.shard,
            "last_poke_at": f"{self.poked_at:.3f}",
            "last_result": self.state or ("ready" if self.ready else "waiting"),
            "last_detail": self.detail[:500],
            "waiters": self.waiters,
            "replica": self.replica,
        }


@dataclass
class FinishedSensor:
    """One smart sensor task that stopped waiting, as its shard saw it."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    hashcode: int
    kind: str
    description: str
    shard: str
    replica: str
    outcome: str  # success, timeout or failed (waiting could not help)
    detail: str  # the last poke's result
    waited_seconds: float | None  # from the deferral to the end (None: deferred before this was recorded)
    pokes: int  # pokes of its target by the shard process that released it, while it waited
    finished_at: float  # epoch seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def client_for_url(url: str):
    """A redis-py client for a ``rediscluster://`` or ``redis://`` URL."""
    if url.startswith(("rediscluster://", "redisclusters://")):
        from redis.cluster import ClusterNode, RedisCluster

        from airflow_ha.broker.url import parse

        parsed = parse(url)
        nodes = [ClusterNode(host, port) for host, port in parsed.seeds]
        return RedisCluster(startup_nodes=nodes, socket_timeout=5, socket_connect_timeout=5, **parsed.redis_kwargs())
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    raise ValueError(
        f"{ENV_STATUS_URL}: unsupported URL scheme in {url.split('://')[0]!r}; use rediscluster:// or redis://"
    )


def configured_url() -> str | None:
    url = os.environ.get(ENV_STATUS_URL, "").strip()
    if url.lower() == "none":
        return None
    if url:
        return url
    from airflow.configuration import conf

    if "Celery" not in (conf.get("core", "executor", fallback="") or ""):
        return None  # without Celery, [celery] broker_url is only Airflow's default placeholder
    broker = conf.get("celery", "broker_url", fallback="") or ""
    return broker if broker.startswith(("rediscluster", "redis")) else None


class StatusStore:
    def __init__(self, client) -> None:
        self.client = client

    @classmethod
    def from_config(cls) -> StatusStore | None:
        url = configured_url()
        return cls(client_for_url(url)) if url else None

    def record(
        self, records: Iterable[PokeRecord], shard: str, batches: dict[str, int], replica: str | None = None
    ) -> None:
        records = list(records)
        counters = [shard, replica_shard(shard, replica)] if replica else [shard]
        try:
            pipe = self.client.pipeline(transaction=False)
            for record in records:
                key = status_key(record.hashcode)
                pipe.hset(key, mapping=record.fields())
                pipe.hincrby(key, "pokes", 1)
                pipe.expire(key, TTL_SECONDS)
            pokes: dict[str, int] = {}
            for record in records:
                pokes[record.kind] = pokes.get(record.kind, 0) + 1
            for counter in counters:
                for kind, count in batches.items():
                    pipe.hincrby(shard_key(counter), f"batches:{kind}", count)
                for kind, count in pokes.items():
                    pipe.hincrby(shard_key(counter), f"pokes:{kind}", count)
                pipe.expire(shard_key(counter), TTL_SECONDS)
            pipe.execute()
        except Exception as exc:
            log.warning("could not record sensor status: %s", exc)

    def record_finished(self, finished: FinishedSensor) -> None:
        """Add one finished sensor to the history; drop what is older than the retention."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(HISTORY_KEY, {json.dumps(finished.as_dict(), sort_keys=True): finished.finished_at})
            pipe.zremrangebyscore(HISTORY_KEY, "-inf", time.time() - history_days() * 86400)
            pipe.zremrangebyrank(HISTORY_KEY, 0, -HISTORY_MAX - 1)
            pipe.execute()
        except Exception as exc:
            log.warning("could not record a finished sensor: %s", exc)

    def finished(self, limit: int = 1000) -> list[FinishedSensor]:
        """The finished sensors of the retention period, newest first (at most ``limit``)."""
        since = time.time() - history_days() * 86400
        rows = self.client.zrevrangebyscore(HISTORY_KEY, "+inf", since, start=0, num=limit)
        return [FinishedSensor(**json.loads(_text(row))) for row in rows]

    def read(self, hashcodes: Iterable[int]) -> dict[int, dict[str, str]]:
        hashcodes = list(hashcodes)
        pipe = self.client.pipeline(transaction=False)
        for code in hashcodes:
            pipe.hgetall(status_key(code))
        rows = pipe.execute()
        return {code: _decode(row) for code, row in zip(hashcodes, rows, strict=True) if row}

    def shard_counters(self, shards: Iterable[str]) -> dict[str, dict[str, int]]:
        pipe = self.client.pipeline(transaction=False)
        shards = list(shards)
        for shard in shards:
            pipe.hgetall(shard_key(shard))
        return {s: {k: int(v) for k, v in _decode(row).items()} for s, row in zip(shards, pipe.execute(), strict=True)}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(row: dict) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in row.items()}
