"""Fixes that let the stack this project pins run together; each module says what and why.

``install()`` is called when Airflow loads provider information (see :mod:`airflow_ha.provider`),
which every ``airflow`` command does before it imports executors, so no entry point is missed.
"""

from __future__ import annotations


def install() -> None:
    from airflow_ha.compat import celery, forksafe_db, trigger_cleanup
    from airflow_ha.compat.hooks import when_imported

    celery.install()
    forksafe_db.install()
    trigger_cleanup.install()
    # `[celery] broker_url = rediscluster://...` is all a deployment sets: the alias is registered
    # whenever kombu's transport registry is loaded, in any process.
    when_imported("kombu.transport", _register_broker)


def _register_broker(_module) -> None:
    from airflow_ha.broker import register

    register()
