"""The two tasks of every catalogue-built EDW DAG (``dags/edw_dynamic.py``).

``check_upstreams`` (:class:`EdwUpstreamSensor`) reads the job history with one query, plans the
dates to run and waits, in reschedule mode, until every upstream has reached the newest of them.
``catch_up`` (:class:`EdwCatchUpOperator`) runs the planned dates in order and records each success.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pendulum
from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from airflow_ha.edw.catalogue import Catalogue
from airflow_ha.edw.runner import CatchUpRefused, fetch_history, history_window, plan_job, run_days

CHECK_TASK_ID = "check_upstreams"
CATCH_UP_TASK_ID = "catch_up"


def edw_hook(conn_id: str):
    """The DB-API hook of the EDW connection (MySqlHook for mysql://, any DbApiHook works)."""
    return BaseHook.get_connection(conn_id).get_hook()


def run_business_date(context, timezone: str = "UTC") -> date:
    """The date of the run's logical date in the catalogue's ``timezone`` (a run at 00:30 in Seoul is for
    that Seoul date, not the UTC date before it), or when it has none (a manual run without one) of its
    run_after."""
    moment = context.get("logical_date") or context["dag_run"].run_after
    return pendulum.instance(moment).in_timezone(timezone).date()


def _rerun(context) -> bool:
    """Run the business date again even if it succeeded: the ``rerun`` param, or a run a user cleared
    (Airflow's clear means "run this again"; the history alone would say there is nothing left to do)."""
    value = (context.get("params") or {}).get("rerun", False)
    if value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes"):
        return True
    return int(getattr(context.get("dag_run"), "clear_number", 0) or 0) > 0


class EdwUpstreamSensor(BaseSensorOperator):
    """Plan the run's business dates and wait until the job's upstreams have reached them.

    The business date is ``business_date`` (templated; the DAGs pass a manual run's ``business_date``
    param) if given, else the date of the run's logical date in the catalogue's time zone.
    Each poke is ONE query on the job-history table (the job's own and its upstreams' successes).
    Reschedule mode: between pokes the task gives its worker slot back. After ``timeout`` it fails
    with the upstreams still missing and how far each has got. Returns the plan (XCom) when ready.
    """

    template_fields = ("business_date",)
    ui_color = "#e8f0fb"

    def __init__(self, *, catalogue: Catalogue, job_name: str, business_date: str | None = None, **kwargs) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.catalogue = catalogue
        self.job_name = job_name
        self.business_date = business_date
        self._still_waiting = ""

    def poke(self, context) -> bool | PokeReturnValue:
        job = self.catalogue.job(self.job_name)
        if self.business_date:
            try:
                business_date = date.fromisoformat(str(self.business_date).strip()[:10])
            except ValueError:
                raise AirflowFailException(f"business_date {self.business_date!r} is not a date YYYY-MM-DD") from None
        else:
            business_date = run_business_date(context, self.catalogue.timezone)
        since = history_window(job, business_date)
        history = fetch_history(edw_hook(job.conn_id), self.catalogue.history_table, [job.name, *job.upstreams], since)
        try:
            plan = plan_job(self.catalogue, job, business_date, history, rerun=_rerun(context))
        except CatchUpRefused as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("%s", plan.describe())
        if not plan.ready:
            self._still_waiting = "; ".join(str(wait) for wait in plan.waiting_on)
            return False
        return PokeReturnValue(is_done=True, xcom_value=plan.to_xcom())

    def execute(self, context) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            if not self._still_waiting:
                raise
            raise AirflowSensorTimeout(
                f"{self.job_name} did not run: upstreams not done after {self.timeout:.0f}s: {self._still_waiting}"
                f" ({exc})"
            ) from None


class EdwCatchUpOperator(BaseOperator):
    """Run the dates planned by ``check_upstreams``: every task of the job in order, date by date."""

    ui_color = "#fdf1e2"

    def __init__(self, *, catalogue: Catalogue, job_name: str, plan_task_id: str = CHECK_TASK_ID, **kwargs) -> None:
        super().__init__(**kwargs)
        self.catalogue = catalogue
        self.job_name = job_name
        self.plan_task_id = plan_task_id

    def execute(self, context) -> list[str]:
        job = self.catalogue.job(self.job_name)
        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id)
        if not plan:
            raise AirflowFailException(f"no plan from {self.plan_task_id}: it must succeed first")
        days = [date.fromisoformat(day) for day in plan["days"]]
        rerun_date = date.fromisoformat(plan["business_date"]) if plan.get("rerun") else None
        self.log.info("%s: running %s", job.name, ", ".join(plan["days"]) or "nothing")
        ran = run_days(edw_hook(job.conn_id), self.catalogue, job, days, rerun_date=rerun_date, say=self.log.info)
        return [day.isoformat() for day in ran]
