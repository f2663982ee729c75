"""The compatibility fixes in airflow_ha.compat, exercised on the real MySQL 9.7 and Celery 5.7."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_celery_worker_command_imports_on_celery_5_7(airflow_db):
    env = {**airflow_db, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CELERY__BROKER_URL": "memory://"}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "celery", "worker", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--concurrency" in result.stdout


def test_bulk_state_fetcher_reads_failures_stored_by_celery_5_7(airflow_db):
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
states = BulkStateFetcher(app).get_many([AsyncResult("compat-failed", app=app), AsyncResult("compat-done", app=app)])
print(states["compat-failed"][0], states["compat-done"][0])
"""
    result = subprocess.run([sys.executable, "-c", script], env=airflow_db, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["FAILURE", "SUCCESS"]


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
