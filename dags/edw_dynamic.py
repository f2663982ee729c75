"""EDW jobs built from a YAML catalogue: one DAG per job, ``edw.0007`` -> ``edw_dyn_0007``.

The seed's dynamic-DAG alternative to one hand-written file per job. The catalogue
(``catalogue/edw_jobs.yaml`` next to this file, or the path in ``AIRFLOW_HA_EDW_CATALOGUE``) lists
each job's calendar (``daily`` or ``business_day``), its upstream jobs, the Airflow connection of the
EDW database (default ``edw_db``) and its SQL tasks in order. A catalogue that is missing or wrong
fails this file's import with the file, key path and line (``airflow dags list-import-errors``).

Every DAG has two tasks:

``check_upstreams``
    ONE query on the job-history table ``edw_job_history(job_name, business_date, status,
    finished_at)`` gives the newest successful business date of the job and of each upstream. From
    the job's own, it plans the dates to run: for a ``business_day`` job every business day missed
    since its last success up to the run's date (weekends and the catalogue's holidays skipped: after
    a Thursday success, a Christmas Friday holiday and a weekend, Tuesday's run does Monday and
    Tuesday); for a ``daily`` job the run's date alone. It then WAITS until every upstream has
    reached the newest planned date.

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

The run's business date is its logical date in UTC (``ds``; a manual run without one: its
``run_after``). The schedule is ``run_at`` UTC every day, or Monday to Friday for business-day jobs;
a run that falls on a holiday only catches up a backlog, if any. ``max_active_runs=1``: two runs of
one job would plan the same missed dates. Trigger with param ``rerun=true`` to run a date again that
already succeeded. Missed dates beyond ``max_catch_up`` make the check fail instead of loading a long
backlog unattended.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_ha.edw.catalogue import BUSINESS_DAY, ENV_CATALOGUE, load_catalogue
from airflow_ha.edw.operators import CATCH_UP_TASK_ID, CHECK_TASK_ID, EdwCatchUpOperator, EdwUpstreamSensor

DEFAULT_CATALOGUE = Path(__file__).resolve().parent / "catalogue" / "edw_jobs.yaml"
CATALOGUE_PATH = os.environ.get(ENV_CATALOGUE) or str(DEFAULT_CATALOGUE)

catalogue = load_catalogue(CATALOGUE_PATH)  # CatalogueError: this file's import error, naming file and key

for job in catalogue:
    upstream_list = ", ".join(job.upstreams) or "none"
    with DAG(
        job.dag_id,
        description=f"EDW job {job.name} ({job.schedule}): {job.description or 'catalogue job'}",
        doc_md=(
            f"**{job.name}**: {job.description}\n\n"
            f"- calendar: `{job.schedule}`, runs `{job.cron}` (UTC)\n"
            f"- upstreams: {upstream_list}\n"
            f"- tasks, in order: {', '.join(task.id for task in job.tasks)}\n"
            f"- EDW connection: `{job.conn_id}`, history table `{catalogue.history_table}`\n"
            f"- catalogue: `{catalogue.path}`"
        ),
        schedule=job.cron,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,  # missed business days are caught up by the job itself, from its history
        max_active_runs=1,
        params={
            "rerun": Param(False, type="boolean", description="run the business date again even if it succeeded"),
        },
        default_args={"owner": job.owner, "retries": job.retries, "retry_delay": job.retry_delay},
        tags=["airflow-ha", "edw", "edw-dynamic", job.schedule.replace("_", "-")],
    ) as dag:
        check = EdwUpstreamSensor(
            task_id=CHECK_TASK_ID,
            catalogue=catalogue,
            job_name=job.name,
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
                else "Runs the run's date (daily job: no catch-up)."
            ),
        )
        check >> catch_up
    globals()[dag.dag_id] = dag
