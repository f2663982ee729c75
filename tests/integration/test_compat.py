"""The compatibility fixes in airflow_ha.compat, exercised on the real MySQL 9.7 and Celery 5.7."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def stock(fix: str, variant: str) -> dict:
    """The environment that runs ``variant`` through the real entry points: ``stock`` = Airflow's own code,
    with the fix left out by name (the canary: it fails once upstream no longer has the bug)."""
    from airflow_ha.compat import FIXES, SKIP_ENV

    assert fix in {f.name for f in FIXES}
    return {SKIP_ENV: fix} if variant == "stock" else {}


@pytest.mark.parametrize("variant", ["stock", "fixed"])
def test_celery_executor_imports_on_celery_5_7(airflow_db, variant):
    """The module `airflow celery worker` and a CeleryExecutor scheduler import (`--help` alone does not), in
    a process that loads the providers first, as every airflow command does."""
    script = r"""
from airflow.providers_manager import ProvidersManager
ProvidersManager().initialize_providers_list()  # loads airflow-ha's provider info, which installs the fixes
try:
    from airflow.providers.celery.executors import celery_executor_utils
    print("RESULT imported", celery_executor_utils.app.main)
except ImportError as exc:
    print("RESULT ImportError", exc)
"""
    env = {
        **airflow_db,
        **stock("celery-db-retry", variant),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": "memory://",
    }
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    if variant == "stock":  # celery/celery#10130: the provider imports a decorator Celery 5.7 removed
        assert "RESULT ImportError cannot import name 'retry' from 'celery.backends.database'" in result.stdout, (
            f"the Celery provider imports on Celery 5.7 now: drop celery-db-retry\n{result.stdout[-2000:]}"
        )
    else:
        assert "RESULT imported" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize(("variant", "expected"), [("stock", "TypeError"), ("fixed", "FAILURE SUCCESS")])
def test_bulk_state_fetcher_reads_failures_stored_by_celery_5_7(airflow_db, variant, expected):
    """The scheduler's adoption path reads Celery's result rows; a stored failure must decode."""
    script = r"""
import airflow_ha.provider  # what Airflow loads first in every process
from celery import Celery
from celery.result import AsyncResult
from airflow.providers.celery.executors.celery_executor_utils import BulkStateFetcher
import os
url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("mysql+mysqldb://", "db+mysql://", 1)
app = Celery("compat", broker="memory://", backend=url)
app.conf.result_serializer = "json"
app.backend.mark_as_failure("compat-failed", RuntimeError("boom"))
app.backend.mark_as_done("compat-done", 42)
results = [AsyncResult("compat-failed", app=app), AsyncResult("compat-done", app=app)]
try:
    states = BulkStateFetcher(app).get_many(results)
    print("RESULT", states["compat-failed"][0], states["compat-done"][0])
except Exception as exc:
    print("RESULT", type(exc).__name__, exc)
"""
    # the provider's module needs celery-db-retry to import at all, so only the decoding fix is left out
    env = {**airflow_db, **stock("celery-db-result-decoding", variant)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"RESULT {expected}" in result.stdout, result.stdout + result.stderr[-2000:]


def test_scheduler_orphans_unreferenced_assets(airflow_db):
    """The scheduler's asset orphanage (a ``WITH ... DELETE`` on MySQL) runs as released on MySQL 9.7."""
    script = r"""
import airflow_ha.provider
from airflow.utils.session import create_session
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.asset import AssetActive, AssetModel
from sqlalchemy import select, delete
with create_session() as session:
    session.execute(delete(AssetActive).where(AssetActive.name == "compat-orphan"))
    session.execute(delete(AssetModel).where(AssetModel.name == "compat-orphan"))
    asset = AssetModel(name="compat-orphan", uri="s3://compat/orphan")
    session.add(asset)
    session.flush()
    session.add(AssetActive.for_asset(asset))
with create_session() as session:
    SchedulerJobRunner._update_asset_orphanage(SchedulerJobRunner.__new__(SchedulerJobRunner), session=session)
with create_session() as session:
    left = session.scalars(select(AssetActive.name).where(AssetActive.name == "compat-orphan")).all()
print("active:", len(left))
"""
    result = subprocess.run([sys.executable, "-c", script], env=airflow_db, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("active: 0")


FORK_SCRIPT = r"""
import gc, os, sys, time
import sqlalchemy as sa
engine = sa.create_engine(sys.argv[1], pool_pre_ping=True)
with engine.connect() as c:
    c.execute(sa.text("SELECT 0"))  # a pooled connection that exists before the fix is installed
if sys.argv[2] == "fixed":
    from airflow_ha.compat import forksafe_db
    forksafe_db.install()
os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))  # what airflow.settings does
pid = os.fork()
if pid == 0:
    time.sleep(1)
    gc.collect()  # the child frees its copy of the pool's connection
    os._exit(0)
conn = engine.connect()  # the parent is mid-work with that connection when the child frees it
conn.execute(sa.text("SELECT 1"))
os.waitpid(pid, 0)
try:
    print("RESULT", conn.execute(sa.text("SELECT 2")).scalar())
except Exception as exc:
    print("RESULT", type(exc).__name__, exc.orig.args[0] if hasattr(exc, "orig") else exc)
"""


@pytest.mark.parametrize(("variant", "expected"), [("stock", "RESULT OperationalError 2013"), ("fixed", "RESULT 2")])
def test_forked_child_cannot_close_the_parents_mysql_connection(mysql, variant, expected):
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, mysql.sqlalchemy_url, variant],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in result.stdout, result.stdout + result.stderr[-2000:]


DEFER_DAG = """
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("compat_defer", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):
    EmptyOperator(task_id="waits")
"""

CLEANUP_SCRIPT = r"""
import sys
from sqlalchemy import event, select, update
variant, run_id = sys.argv[1], sys.argv[2]
from airflow import settings
from airflow.models.taskinstance import TaskInstance as TI
from airflow.models.trigger import Trigger
# installed in every process that imports Airflow, unless AIRFLOW_HA_COMPAT_SKIP names it
assert getattr(Trigger.clean_unused, "_airflow_ha_safe_cleanup", False) == (variant == "fixed")
from airflow.utils.session import create_session

with create_session() as session:
    trigger = Trigger(classpath="airflow.triggers.testing.SuccessTrigger", kwargs={})
    session.add(trigger)
    session.flush()
    trigger_id = trigger.id
where = (TI.dag_id == "compat_defer", TI.run_id == run_id, TI.task_id == "waits")

def defer_before_the_delete(conn, cursor, statement, *args):
    # the task defers onto the trigger between Airflow's SELECT of unreferenced ids and its DELETE
    if statement.startswith("DELETE FROM `trigger`") and not defer_before_the_delete.done:
        defer_before_the_delete.done = True
        with settings.engine.begin() as other:
            other.execute(update(TI).where(*where).values(state="deferred", trigger_id=trigger_id))
defer_before_the_delete.done = False
event.listen(settings.engine, "before_cursor_execute", defer_before_the_delete)

with create_session() as session:
    Trigger.clean_unused(session=session)
with create_session() as session:
    row = session.execute(select(TI.state, TI.trigger_id).where(*where)).first()
    kept = session.scalar(select(Trigger.id).where(Trigger.id == trigger_id))
print("DEFERRED-AT-DELETE", defer_before_the_delete.done)
print("RESULT", "task instance gone" if row is None else f"task instance {row[0]} on trigger {row[1]}",
      "| trigger kept" if kept else "| trigger deleted")
"""


@pytest.mark.parametrize(
    ("variant", "expected"),
    [("stock", "RESULT task instance gone | trigger deleted"), ("fixed", "RESULT task instance deferred on trigger")],
)
def test_trigger_cleanup_never_deletes_a_deferred_task_instance(airflow_db, tmp_path, variant, expected):
    """apache/airflow#72061 on MySQL 9.7: Airflow's two-statement cleanup deletes a trigger a task deferred onto
    in between, and the foreign key's ON DELETE CASCADE deletes the task instance. The gap between the
    statements is opened on demand with row-level locking off (with it on, the same loss comes from the
    SELECT's snapshot, seen on the 3-node cluster but not reproducible at will); the fix re-checks in the
    DELETE, which closes both."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "compat_defer.py").write_text(DEFER_DAG)
    env = {
        **airflow_db,
        **stock("trigger-cleanup", variant),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__SCHEDULER__USE_ROW_LEVEL_LOCKING": "False",
    }
    run_id = f"cleanup-{variant}"
    for cmd in (["dags", "reserialize"], ["dags", "trigger", "compat_defer", "--run-id", run_id]):
        airflow = [sys.executable, "-m", "airflow", *cmd]
        done = subprocess.run(airflow, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = subprocess.run(
        [sys.executable, "-c", CLEANUP_SCRIPT, variant, run_id], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DEFERRED-AT-DELETE True" in result.stdout, result.stdout
    assert expected in result.stdout, result.stdout


@pytest.mark.parametrize(("variant", "expected"), [("stock", "RESULT 0"), ("fixed", "RESULT 1")])
def test_a_stopped_scheduler_sends_the_tasks_it_already_queued(airflow_db, redis_cluster, variant, expected):
    """Airflow's own CeleryExecutor on the rediscluster:// broker: a task instance the scheduler has queued
    (its Celery id pre-assigned, as the scheduler commits it) and the executor has not yet published when the
    scheduler is stopped. SIGTERM unwinds to ``executor.end()``; stock, the message is never sent (the task
    waits for task_queued_timeout, 300 s in the chart); fixed, it is in the queue when end() returns."""
    script = r"""
import os, uuid
import airflow_ha.provider  # what Airflow loads first in every process
from kombu import Connection
from airflow.executors.workloads import ExecuteTask
from airflow.executors.workloads.task import TaskInstanceDTO
from airflow.providers.celery.executors.celery_executor import CeleryExecutor

queue = "stranded-" + uuid.uuid4().hex[:8]
ti = TaskInstanceDTO(id=uuid.uuid4(), dag_version_id=uuid.uuid4(), task_id="t", dag_id="d", run_id="r",
                     try_number=1, map_index=-1, queue=queue, pool_slots=1, priority_weight=1,
                     external_executor_id=str(uuid.uuid4()))
workload = ExecuteTask(ti=ti, dag_rel_path="d.py", bundle_info={"name": "dags-folder"}, log_path="l.log", token="x")
executor = CeleryExecutor()
executor.start()
executor.queue_workload(workload, session=None)
executor.end()  # the scheduler's `finally` after SIGTERM
with Connection(os.environ["AIRFLOW__CELERY__BROKER_URL"]) as conn:
    print("RESULT", conn.default_channel._size(queue))
"""
    env = {
        **airflow_db,
        **stock("celery-send-queued-on-end", variant),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": redis_cluster.url(),
        "AIRFLOW__CELERY__RESULT_BACKEND": airflow_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace(
            "mysql+mysqldb://", "db+mysql://", 1
        ),
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
    }
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    if variant == "stock":
        assert expected in result.stdout, (
            f"the stock executor now sends queued tasks at end(): drop celery-send-queued-on-end\n{result.stdout}"
        )
    else:
        assert expected in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
