"""Bridges Airflow's Celery provider (3.26) and Celery 5.7.

Celery 5.7 dropped the ``retry`` decorator from ``celery.backends.database`` (its DatabaseBackend now
retries through ``always_retry``), but ``airflow.providers.celery.executors.celery_executor_utils``
still imports it, so the stock CeleryExecutor and ``airflow celery worker`` fail with ImportError on
Celery 5.7. ``install()`` puts an equivalent decorator back before the provider is imported.
"""

from __future__ import annotations

import functools
import logging

from airflow_ha.compat.hooks import when_imported

log = logging.getLogger(__name__)

MAX_RETRIES = 3


def _retry(fun):
    """Retry a result-backend DB operation that failed on a transient DB error (Celery < 5.7 behaviour)."""
    from sqlalchemy.exc import DatabaseError, InvalidRequestError
    from sqlalchemy.orm.exc import StaleDataError

    @functools.wraps(fun)
    def wrapper(*args, **kwargs):
        max_retries = kwargs.pop("max_retries", MAX_RETRIES)
        for attempt in range(1, max_retries + 1):
            try:
                return fun(*args, **kwargs)
            except (DatabaseError, InvalidRequestError, StaleDataError):
                if attempt >= max_retries:
                    raise
                log.warning("%s failed, retrying (%d of %d)", fun.__name__, attempt, max_retries, exc_info=True)
        return None

    return wrapper


def _add_retry(database_backend) -> None:
    if not hasattr(database_backend, "retry"):
        database_backend.retry = _retry


def install() -> None:
    when_imported("celery.backends.database", _add_retry)
