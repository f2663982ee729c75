"""kombu transport for Redis Cluster: ``rediscluster://`` broker URLs for Celery and Airflow.

kombu has no entry point for transports, so :func:`register` adds the ``rediscluster`` and
``redisclusters`` aliases to ``kombu.transport.TRANSPORT_ALIASES``. Importing
:mod:`airflow_ha.broker.celery_config` (what ``[celery] celery_config_options`` points at) registers them.
"""

from __future__ import annotations

TRANSPORT = "airflow_ha.broker.transport:Transport"
ALIASES = ("rediscluster", "redisclusters")


def register() -> None:
    """Make ``rediscluster://`` and ``redisclusters://`` resolve to this transport (idempotent)."""
    from kombu.transport import TRANSPORT_ALIASES

    for alias in ALIASES:
        TRANSPORT_ALIASES[alias] = TRANSPORT


register()
