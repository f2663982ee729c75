"""Where shards record what they poked, so ``airflow-ha sensors list`` and the UI page can show it.

Triggers run with database access blocked (Airflow 3 triggerers talk to the metadata DB only through
their supervisor), so shards write to Redis instead: the deployment's broker Redis Cluster by default
(``[celery] broker_url``), or ``AIRFLOW_HA_SENSOR_STATUS_URL`` (``rediscluster://``, ``redis://``, or
``none`` to switch it off). One hash per hashcode, refreshed on every poke, expiring a day after the
last one; its ``pokes`` counts the pokes of every replica, ``replica`` names the process of the last.
Counters per shard group (``shard-<g>``) and per process (``shard-<g>@<host>``). Writes are best-effort:
a status store outage never stops a poke.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ENV_STATUS_URL = "AIRFLOW_HA_SENSOR_STATUS_URL"
KEY_PREFIX = "airflow-ha:sensor:"
TTL_SECONDS = 86400


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
