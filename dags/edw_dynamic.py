"""EDW jobs built from a YAML catalogue: one DAG per job, ``edw.0007`` -> ``edw_dyn_0007``.

The seed's dynamic-DAG alternative to one hand-written file per job. The catalogue
(``catalogue/edw_jobs.yaml`` next to this file, or the path in ``AIRFLOW_HA_EDW_CATALOGUE``) lists
each job's calendar (``daily`` or ``business_day``), its upstream jobs, the Airflow connection of the
EDW database (default ``edw_db``) and its SQL tasks in order. A catalogue that is missing or wrong
fails this file's import with the file, key path and line (``airflow dags list-import-errors``).

Every DAG has two tasks:

``check_upstreams``
    ONE query on the job-history table ``edw_job_history(job_name, business_date, status,
    finished_at)`` gives the newest successful business date of the job and of each upstream, and the
    dates each finished in the window a plan can reach. From the job's own, it plans the dates to run:
    for a ``business_day`` job every business day missed since its last success up to the run's date
    (weekends and the catalogue's holidays skipped: after a Thursday success, a Christmas Friday
    holiday and a weekend, Tuesday's run does Monday and Tuesday); for a ``daily`` job every date
    missed since its last success (after a scheduler outage it catches up its own dates). It then
    WAITS until every upstream has finished each date a planned date needs, date by date: an upstream
    whose history has a gap holds that date back even if its newest success is later.

    Waiting is a sensor in reschedule mode: it re-checks every ``poke_interval`` (5 min) without
    holding a worker slot, and after ``wait_timeout`` (12 h) the task FAILS with the upstreams still
    missing and how far each got, so the job shows red and is alerted on like any late batch. It does
    not skip: a skipped job would look finished and its own downstream jobs would wait on it with no
    error anywhere. Nothing runs (and nothing is written to the history) until the upstreams are done.

``catch_up``
    Runs the planned dates oldest first; per date every SQL task in catalogue order and then a
    ``success`` row in ``edw_job_history``, in one transaction. A failing date is rolled back, gets a
    ``failed`` row, and stops the run; a retry resumes at that date (the dates already recorded are
    skipped).

The run's business date is the date of its logical date in the catalogue's ``timezone`` (default:
Airflow's ``[core] default_timezone``; a manual run without a logical date: its ``run_after``), or the
``business_date`` param of a manual run. The schedule is ``run_at`` in that time zone every day, or
Monday to Friday for business-day jobs; a run that falls on a holiday only catches up a backlog, if any.
``max_active_runs=1``: two runs of one job would plan the same missed dates. Clearing a run runs its
date again, as Airflow's clear does for any task (also when that date has succeeded); trigger with param
``rerun=true`` for the same on a new run. Missed dates beyond ``max_catch_up`` make the
check fail instead of loading a long backlog unattended.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.configuration import conf
from airflow.sdk import DAG, Param

from airflow_ha.edw.catalogue import BUSINESS_DAY, ENV_CATALOGUE, load_catalogue
from airflow_ha.edw.operators import CATCH_UP_TASK_ID, CHECK_TASK_ID, EdwCatchUpOperator, EdwUpstreamSensor

DEFAULT_CATALOGUE = Path(__file__).resolve().parent / "catalogue" / "edw_jobs.yaml"
CATALOGUE_PATH = os.environ.get(ENV_CATALOGUE) or str(DEFAULT_CATALOGUE)

# CatalogueError: this file's import error, naming file and key
catalogue = load_catalogue(CATALOGUE_PATH, default_timezone=conf.get("core", "default_timezone", fallback="utc"))

for job in catalogue:
    upstream_list = ", ".join(job.upstreams) or "none"
    with DAG(
        job.dag_id,
        description=f"EDW job {job.name} ({job.schedule}): {job.description or 'catalogue job'}",
        doc_md=(
            f"**{job.name}**: {job.description}\n\n"
            f"- calendar: `{job.schedule}`, runs `{job.cron}` ({catalogue.timezone})\n"
            f"- upstreams: {upstream_list}\n"
            f"- tasks, in order: {', '.join(task.id for task in job.tasks)}\n"
            f"- EDW connection: `{job.conn_id}`, history table `{catalogue.history_table}`\n"
            f"- catalogue: `{catalogue.path}`"
        ),
        schedule=job.cron,
        start_date=pendulum.datetime(2026, 1, 1, tz=catalogue.timezone),  # the cron runs in this zone
        catchup=False,  # missed business days are caught up by the job itself, from its history
        max_active_runs=1,
        params={
            "rerun": Param(False, type="boolean", description="run the business date again even if it succeeded"),
            "business_date": Param(
                None,
                type=["null", "string"],
                format="date",
                description="a manual run's business date (YYYY-MM-DD); default: the run's date",
            ),
        },
        default_args={"owner": job.owner, "retries": job.retries, "retry_delay": job.retry_delay},
        tags=["airflow-ha", "edw", "edw-dynamic", job.schedule.replace("_", "-")],
    ) as dag:
        check = EdwUpstreamSensor(
            task_id=CHECK_TASK_ID,
            catalogue=catalogue,
            job_name=job.name,
            business_date="{{ params.business_date or '' }}",
            poke_interval=job.poke_interval,
            timeout=job.wait_timeout,
            doc_md=f"Waits on {upstream_list} (one query on {catalogue.history_table} per check).",
        )
        catch_up = EdwCatchUpOperator(
            task_id=CATCH_UP_TASK_ID,
            catalogue=catalogue,
            job_name=job.name,
            doc_md=(
                "Runs every missed business day, oldest first."
                if job.schedule == BUSINESS_DAY
                else "Runs every missed date, oldest first."
            ),
        )
        check >> catch_up
    globals()[dag.dag_id] = dag
