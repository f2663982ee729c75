"""Airflow's CeleryExecutor end to end through the rediscluster:// broker.

A scheduler, a dag-processor, the api-server (task execution API) and an ``airflow celery worker`` run as
processes on the migrated MariaDB; the chart's two settings select the broker:
``AIRFLOW__CELERY__BROKER_URL=rediscluster://...`` and
``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=airflow_ha.broker.celery_config.CELERY_CONFIG``.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.harness.servers.airflow import LocalAirflow
from tests.harness.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_TEMPLATE = """
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{dag_id}", schedule="@once", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, is_paused_upon_creation=False)
def broker_e2e():
    @task(queue="{queue}")
    def first():
        return 21

    @task(queue="{queue}")
    def second(value):
        assert value == 21
        return value * 2

    second(first())


broker_e2e()
"""


def test_celery_executor_runs_a_dag_through_the_cluster_broker(airflow_db, redis_cluster, tmp_path):
    dag_id = f"broker_e2e_{uuid.uuid4().hex[:8]}"
    queue = "q-charlie"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{dag_id}.py").write_text(DAG_TEMPLATE.format(dag_id=dag_id, queue=queue))
    sql_conn = airflow_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    local = LocalAirflow(
        base_dir=tmp_path / "airflow",
        sql_alchemy_conn=sql_conn,
        broker_url=redis_cluster.url(),
        dags_folder=dags,
        celery_config_options="airflow_ha.broker.celery_config.CELERY_CONFIG",
        schedulers=1,
        workers=1,
        worker_concurrency=2,
        worker_queues=(queue,),
        sensor_shards=0,
        extra_env={"AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO", "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5"},
    )
    engine = sa.create_engine(sql_conn)
    try:
        local.start(kinds={"api-server", "dag-processor", "scheduler", "worker"})

        def run_state():
            with engine.connect() as conn:
                row = conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d"), {"d": dag_id}).first()
            return row[0] if row and row[0] in ("success", "failed") else None

        def exited():
            for component in local.components:
                if component.proc is not None and component.proc.poll() is not None:
                    return f"{component.name} exited {component.proc.returncode}:\n{component.tail(60)}"
            return None

        def tails():
            return "\n".join(f"--- {c.name}\n{c.tail(40)}" for c in local.components if c.proc is not None)

        state = wait_until(run_state, 240, f"the {dag_id} run to finish", interval=2, abort=exited, explain=tails)
        assert state == "success", f"dag run state {state!r}\n{tails()}"
        with engine.connect() as conn:
            tis = conn.execute(
                sa.text("SELECT task_id, state, queue, hostname FROM task_instance WHERE dag_id = :d"), {"d": dag_id}
            ).all()
        assert {(t[0], t[1], t[2]) for t in tis} == {("first", "success", queue), ("second", "success", queue)}
        worker = local.by_kind("worker")[0]
        log = worker.log_path.read_text(errors="replace")
        assert "rediscluster://" in log  # the worker banner names the transport it consumed from
        assert redis_cluster.password not in log  # and masks the password
    finally:
        local.stop()
        engine.dispose()
