"""Fixes that let the stack this project pins run together; each module says what and why.

``install()`` is called when Airflow loads provider information (see :mod:`airflow_ha.provider`),
which every ``airflow`` command does before it imports executors, so no entry point is missed.
"""

from __future__ import annotations


def install() -> None:
    from airflow_ha.compat import celery, mariadb

    celery.install()
    mariadb.install()
