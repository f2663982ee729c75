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
