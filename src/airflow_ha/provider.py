"""airflow-ha as an Airflow provider: how Airflow finds this package in every process.

Airflow reads each installed provider's information (the ``apache_airflow_provider`` entry point)
before any ``airflow`` command runs. Loading it here does two things early enough for the scheduler,
``airflow celery worker`` and the rest: it registers the ``rediscluster://`` broker scheme with kombu
(whenever kombu's transport registry loads, in any process), and installs the compatibility fixes
(:mod:`airflow_ha.compat`).
"""

from __future__ import annotations

import logging

from airflow_ha import __version__
from airflow_ha.compat import install as _install_compat
from airflow_ha.compat.hooks import when_imported


def _register_broker(_module) -> None:
    from airflow_ha.broker import register

    register()


# `[celery] broker_url = rediscluster://...` is all a deployment sets.
when_imported("kombu.transport", _register_broker)
try:
    _install_compat()
except Exception:  # a broken fix must not take every airflow command down with it
    logging.getLogger(__name__).exception("airflow-ha: compatibility fixes could not be installed")


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-ha",
        "name": "airflow-ha",
        "description": "Airflow HA on Kubernetes: Redis Cluster broker transport and smart-sensor shards.",
        "versions": [__version__],
    }
