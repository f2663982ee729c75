"""Celery config for Airflow's CeleryExecutor on the Redis Cluster broker.

The chart sets::

    AIRFLOW__CELERY__BROKER_URL=rediscluster://:PASSWORD@redis-0:6379,redis-1:6379,...?replication_wait_policy=auto
    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=airflow_ha.broker.celery_config.CELERY_CONFIG

Importing this module registers the ``rediscluster`` transport alias (kombu has no entry points for
transports). ``CELERY_CONFIG`` is Airflow's ``DEFAULT_CELERY_CONFIG`` (broker URL, result backend = the
metadata DB, acks_late, prefetch 1, ...) unchanged but for start-up retries. Its
``broker_transport_options`` stay exactly what the user set in ``[celery_broker_transport_options]``:
the transport's own defaults live in :class:`airflow_ha.broker.options.BrokerOptions` and the URL's
query overrides them, so a default set here would silently beat the chart's URL (precedence: defaults <
URL query < ``[celery_broker_transport_options]``).
"""

from __future__ import annotations

from airflow_ha.broker import register

register()

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG  # noqa: E402

RESULT_STORE_RETRIES = 20
# Celery retries a publish that met a connection error (a refused WAIT is one: ReplicationWaitError) 3 times
# in 0.6 s by default, then Airflow's CeleryExecutor fails the task at once: its own publish retries
# ([celery] task_publish_max_retries) only follow a timeout. A replica slow to acknowledge for a few seconds
# (a loaded node, the resync after a partition) failed a DAG run's task that way on the 3-node cluster.
# Retry for up to a minute, 1 s apart at most: past [celery] operation_timeout (the chart's 15 s) the send
# times out and Airflow sends it again, task_publish_max_retries times, before it gives up on the task.
PUBLISH_RETRY_POLICY = {"max_retries": 60, "interval_start": 0, "interval_step": 0.2, "interval_max": 1.0}


def build(base: dict) -> dict:
    config = dict(base)
    config["broker_transport_options"] = {
        k: v for k, v in (base.get("broker_transport_options") or {}).items() if v is not None
    }
    # Remote control (pidbox) replies and broadcast go over sharded pub/sub: supported.
    config.setdefault("worker_enable_remote_control", True)
    # Keep trying to reach the cluster at start-up (pods start in any order); bad config still fails fast.
    config["broker_connection_retry_on_startup"] = base.get("broker_connection_retry_on_startup", True)
    # A task's result goes to the metadata DB. Celery's database backend retries a failed store 3 times
    # within about a second; a primary election or a lost proxy path takes longer, the result is then never
    # stored, and the scheduler's CeleryExecutor keeps that task in its running set for good: one
    # parallelism slot gone per lost result, until a scheduler sends nothing (found on the 3-node cluster:
    # both schedulers at "0 open slots" after a split brain). Retry with Celery's backoff (10 ms doubling,
    # at most 10 s apart) for about a minute instead.
    config.setdefault("result_backend_always_retry", True)
    config.setdefault("result_backend_max_retries", RESULT_STORE_RETRIES)
    config.setdefault("task_publish_retry_policy", dict(PUBLISH_RETRY_POLICY))
    return config


CELERY_CONFIG = build(DEFAULT_CELERY_CONFIG)
