"""A scheduler that is stopped sends the tasks it has already queued, instead of stranding them.

The scheduler commits a task instance QUEUED (its Celery task id pre-assigned and stored with it, provider
3.26) and hands the workload to the executor, which publishes it at its next heartbeat. A SIGTERM in between
(a rolling update, ``kubectl drain``, a deleted pod: Airflow's handler calls ``sys.exit``) unwinds the loop
to ``executor.end()``, which only syncs states: the workload is dropped. The surviving scheduler adopts the
task instance, finds no Celery task under its id (PENDING) and waits for ``[scheduler] task_queued_timeout``
(300 s in the chart) before queueing it again: the trade-off apache/airflow#65594 accepted (see
``CeleryExecutor.try_adopt_task_instances``). On the 3-node cluster, deleting the active scheduler held 4 to
8 of 24 tasks for 5 minutes. ``end()`` now first publishes what is queued, as the missed heartbeat would
have. A scheduler killed outright (SIGKILL, a lost node) still leaves the window to the timeout.
"""

from __future__ import annotations

import functools
import logging

from airflow_ha.compat.hooks import when_imported

log = logging.getLogger(__name__)


def _send_queued_on_end(module) -> None:
    executor = module.CeleryExecutor
    original = executor.end
    if getattr(original, "_airflow_ha_sends_queued", False):
        return

    @functools.wraps(original)
    def end(self, synchronous: bool = False) -> None:
        queued = len(self.queued_tasks)
        if queued:
            try:
                self.trigger_tasks(self.parallelism - len(self.running))  # what heartbeat() would send
                log.warning(
                    "airflow-ha: executor ending: sent %d of %d queued task(s) instead of leaving them to "
                    "[scheduler] task_queued_timeout",
                    queued - len(self.queued_tasks),
                    queued,
                )
            except Exception:
                log.exception("airflow-ha: executor ending: could not send the %d queued task(s)", queued)
        original(self, synchronous=synchronous)

    end._airflow_ha_sends_queued = True
    executor.end = end


def install() -> None:
    when_imported("airflow.providers.celery.executors.celery_executor", _send_queued_on_end)
