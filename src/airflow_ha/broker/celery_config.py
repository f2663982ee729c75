"""Celery config for Airflow's CeleryExecutor on the Redis Cluster broker.

The chart sets::

    AIRFLOW__CELERY__BROKER_URL=rediscluster://:PASSWORD@redis-0:6379,redis-1:6379,...
    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=airflow_ha.broker.celery_config.CELERY_CONFIG

Importing this module registers the ``rediscluster`` transport alias (kombu has no entry points for
transports). ``CELERY_CONFIG`` is Airflow's ``DEFAULT_CELERY_CONFIG`` (broker URL, result backend = the
metadata DB, acks_late, prefetch 1, ...) with transport options for this broker; options from
``[celery_broker_transport_options]`` win over the defaults below.
"""

from __future__ import annotations

from airflow_ha.broker import register

register()

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG  # noqa: E402

BROKER_TRANSPORT_DEFAULTS = {
    # Airflow's default for redis-like brokers; a task running longer is redelivered.
    "visibility_timeout": 86400,
    "failover_timeout": 30,
    "replication_wait_replicas": 1,
    "replication_wait_timeout_ms": 500,
    "replication_wait_policy": "warn",
}


def build(base: dict) -> dict:
    config = dict(base)
    config["broker_transport_options"] = {**BROKER_TRANSPORT_DEFAULTS, **(base.get("broker_transport_options") or {})}
    # Remote control (pidbox) replies and broadcast go over sharded pub/sub: supported.
    config.setdefault("worker_enable_remote_control", True)
    # Keep trying to reach the cluster at start-up (pods start in any order); bad config still fails fast.
    config["broker_connection_retry_on_startup"] = base.get("broker_connection_retry_on_startup", True)
    return config


CELERY_CONFIG = build(DEFAULT_CELERY_CONFIG)
