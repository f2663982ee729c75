"""The triggerer's cleanup must not delete a deferred task on MySQL.

Airflow 3.3's ``Trigger.clean_unused`` (every triggerer loop) deletes unreferenced triggers on MySQL in
two statements: a ``SELECT ... FOR UPDATE SKIP LOCKED`` of the ids no task instance, asset or callback
refers to, then ``DELETE ... WHERE id IN (those ids)``. The SELECT reads ``trigger`` as it is now (a
locking read) but ``task_instance`` in the statement's snapshot, so a trigger whose deferral commits while
the SELECT runs looks unreferenced; and a task that defers between the two statements is not seen at all.
The DELETE then removes the trigger, and ``task_instance.trigger_id``'s ``ON DELETE CASCADE`` removes the
deferred task instance with it: no failure, no log line, the run ends "deadlocked" or succeeds without
the task. Seen on the 3-node cluster: a smart sensor's task instance vanished 0.3 s after it deferred
(binary log: the triggerer's job session deleted trigger 92, cascading to the task instance); reported
upstream as apache/airflow#72061 (open).

The fix keeps Airflow's statements and adds the same "referenced by nobody" conditions to the DELETE
itself. Every id on the list was committed before the DELETE began, together with whatever referred to
it (a deferral writes its trigger and the task instance's ``trigger_id`` in one transaction), so the
DELETE's own snapshot sees the reference and keeps the trigger. Other databases run Airflow's code.
"""

from __future__ import annotations

from types import ModuleType

_MARK = "_airflow_ha_safe_cleanup"


def install() -> None:
    from airflow_ha.compat.hooks import when_imported

    when_imported("airflow.models.trigger", _patch)


def _patch(module: ModuleType) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.retries import run_with_db_retries
    from airflow.utils.session import NEW_SESSION, provide_session
    from airflow.utils.sqlalchemy import get_dialect_name, with_row_locks
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import delete, select, update

    trigger_cls = module.Trigger
    if getattr(trigger_cls.clean_unused, _MARK, False):
        return
    airflows = trigger_cls.clean_unused.__func__

    @provide_session
    def clean_unused(cls, *, session=NEW_SESSION) -> None:
        if get_dialect_name(session) != "mysql":
            return airflows(cls, session=session)
        # As Airflow: a task instance that left DEFERRED lets go of its trigger first.
        for attempt in run_with_db_retries():
            with attempt:
                session.execute(
                    update(TaskInstance)
                    .where(TaskInstance.state != TaskInstanceState.DEFERRED, TaskInstance.trigger_id.is_not(None))
                    .values(trigger_id=None)
                )
        unreferenced = (~cls.assets.any(), ~cls.callback.has(), ~cls.task_instance.has())
        candidates = with_row_locks(
            select(cls.id).where(*unreferenced), session, of=cls, skip_locked=True, key_share=False
        )
        ids = list(session.scalars(candidates).all())
        if ids:
            # MySQL refuses a subquery on the DELETE's own table (error 1093), not these correlated ones.
            session.execute(
                delete(cls).where(cls.id.in_(ids), *unreferenced).execution_options(synchronize_session=False)
            )

    setattr(clean_unused, _MARK, True)
    trigger_cls.clean_unused = classmethod(clean_unused)
