"""``airflow db migrate`` on the MySQL fixture reaches Airflow 3.3.2's schema head."""

from __future__ import annotations

import MySQLdb
import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.integration


def alembic_heads() -> set[str]:
    from airflow.utils.db import _get_alembic_config
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(_get_alembic_config()).get_heads())


def test_db_migrate_reaches_head(airflow_db):
    url = make_url(airflow_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    conn = MySQLdb.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        cur = conn.cursor()
        cur.execute("SELECT version_num FROM alembic_version")
        versions = {row[0] for row in cur.fetchall()}
        cur.execute("SHOW TABLES")
        tables = {row[0] for row in cur.fetchall()}
    finally:
        conn.close()
    assert versions == alembic_heads()
    assert {"dag", "dag_run", "task_instance", "trigger", "job"} <= tables


def test_schema_head_is_airflow_3_3s_revision():
    # Airflow 3.3.x patch releases carry no migrations: 3.3.2 runs on the 3.3.0 schema.
    from airflow.utils.db import _REVISION_HEADS_MAP

    assert alembic_heads() == {_REVISION_HEADS_MAP["3.3.0"]}


def _pollers(argv: list[str], env: dict, count: int = 3) -> list:
    import subprocess

    return [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]


def _migrate(env: dict):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "airflow", "db", "migrate"], env=env, stdout=subprocess.DEVNULL)


@pytest.mark.parametrize("waiter", ["airflow-ha wait-for-migrations", "airflow db check-migrations"])
def test_migrate_with_pods_already_waiting_for_it(mysql, tmp_path, waiter):
    """A fresh install: every Airflow pod's init container waits for the schema before the migration Job has
    created it. The chart's waiter lets the Job finish; Airflow's own `airflow db check-migrations` keeps a
    metadata lock on alembic_version for its whole wait (one transaction), so on MySQL the Job's CREATE TABLE
    waits for as long as any pod waits (found on the 3-node cluster with a Group Replication database)."""
    import contextlib
    import subprocess
    import sys
    import time

    from tests.conftest import airflow_env

    url = mysql.create_database(f"fresh_{waiter.split()[0].replace('-', '_')}").replace(
        "mysql://", "mysql+mysqldb://", 1
    )
    env = airflow_env(tmp_path, url)
    if waiter.startswith("airflow-ha"):
        argv = [sys.executable, "-m", "airflow_ha.cli", "wait-for-migrations", "--timeout", "300"]
    else:
        argv = [sys.executable, "-m", "airflow", "db", "check-migrations", "--migration-wait-timeout=300"]
    pollers = _pollers(argv, env)
    migrate = None
    try:
        time.sleep(20)  # the pods are polling the empty database
        assert all(p.poll() is None for p in pollers)
        started = time.monotonic()
        migrate = _migrate(env)
        with contextlib.suppress(subprocess.TimeoutExpired):
            migrate.wait(timeout=120 if waiter.startswith("airflow-ha") else 45)
        took = time.monotonic() - started
        if waiter.startswith("airflow-ha"):
            assert migrate.returncode == 0, "the migration did not finish while the chart's waiters waited"
            assert all(p.wait(timeout=120) == 0 for p in pollers)  # and they saw the schema arrive
            print(f"\nmigrate with 3 waiting pods: {took:.0f}s")
        else:
            assert migrate.returncode is None, "check-migrations no longer blocks the migration: drop the waiter"
            for p in pollers:
                p.kill()
            assert migrate.wait(timeout=300) == 0  # the pollers gone, the lock goes and the migration finishes
            print(f"\nmigrate blocked {took:.0f}s by 3 check-migrations pollers, done once they were gone")
    finally:
        for p in [*pollers, migrate]:
            if p is not None and p.poll() is None:
                p.kill()
