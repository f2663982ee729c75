"""Bridges Airflow's Celery provider (3.26) and Celery 5.7.

Two changes in Celery 5.7's database result backend break the provider:

* the ``retry`` decorator is gone from ``celery.backends.database`` (the backend retries through
  ``always_retry`` now), but ``celery_executor_utils`` still imports it, so the CeleryExecutor and
  ``airflow celery worker`` fail with ImportError. ``install()`` puts an equivalent decorator back.
* the ``result`` column holds the payload serialized with ``result_serializer`` (it was a
  PickleType), and only the backend's own reader decodes it; the provider's bulk state fetcher reads
  rows itself and hands the raw bytes to ``meta_from_decoded``, which raises TypeError for any failed
  task. The scheduler calls it when it adopts the tasks of a dead scheduler, so every scheduler
  crashed in a loop after a failover. The fetcher is patched to decode the column first.
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


def _decode_db_rows(utils) -> None:
    fetcher = utils.BulkStateFetcher
    if getattr(fetcher._get_many_from_db_backend, "_airflow_ha", False):
        return

    def _get_many_from_db_backend(self, async_tasks):
        task_ids = self._tasks_list_to_task_ids(async_tasks)
        backend = self.celery_app.backend
        decode = getattr(backend, "_decode_stored_result", None)  # Celery >= 5.7 stores encoded bytes
        results = {}
        for task in self._query_task_cls_from_db_backend(task_ids):
            data = task.to_dict()
            if decode is not None:
                data["result"] = decode(data["result"])
            meta = backend.meta_from_decoded(data)
            results[meta["task_id"]] = meta
        return self._prepare_state_and_info_by_task_dict(task_ids, results)

    _get_many_from_db_backend._airflow_ha = True
    fetcher._get_many_from_db_backend = _get_many_from_db_backend


def install_retry() -> None:
    when_imported("celery.backends.database", _add_retry)


def install_result_decoding() -> None:
    when_imported("airflow.providers.celery.executors.celery_executor_utils", _decode_db_rows)
