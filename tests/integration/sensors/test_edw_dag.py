"""``dag.test()`` of an EDW job DAG (dags/edw_sensors.py) on the MySQL fixture.

The test writes the upstream markers and the source feed's job-history row, runs ``edw_d_0000`` for
one business day in-process (its smart-sensor triggers run inline, on the same poke hub a shard uses),
and checks every task succeeded and the job wrote its own marker for the jobs downstream.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

RUN_EDW_DAG = r"""
import sys
import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.state import DagRunState

bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag(sys.argv[2])
run = dag.test(logical_date=pendulum.parse(sys.argv[3]))
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print("RESULT", run.state, sorted(states.items()))
"""


def test_edw_job_runs_after_its_upstreams(airflow_db, mysql, tmp_path):
    edw_uri = mysql.create_database("edw")
    mysql.root_sql(
        "CREATE TABLE IF NOT EXISTS edw.edw_job_history (job_name VARCHAR(64), business_date DATE, "
        "status VARCHAR(16), finished_at DATETIME); "
        "DELETE FROM edw.edw_job_history; "
        "INSERT INTO edw.edw_job_history VALUES ('src.crm', '2026-11-24', 'success', NOW()), "
        "('src.crm', '2026-11-23', 'failed', NOW());"
    )
    day = tmp_path / "markers" / "20261124"
    day.mkdir(parents=True)
    for upstream in ("edw.0101", "edw.0102"):
        (day / f"{upstream}.job").write_text("{}\n")
    env = {
        **airflow_db,
        "AIRFLOW_CONN_EDW_DB": edw_uri,
        "AIRFLOW_HA_MARKER_DIR": str(tmp_path / "markers"),
        "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_EDW_DAG,
            env["AIRFLOW__CORE__DAGS_FOLDER"],
            "edw_d_0000",
            "2026-11-24T02:00:00+00:00",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    assert line.startswith("RESULT success"), output[-4000:]
    assert (
        "('load', 'success')" in line
        and "('wait_src_crm', 'success')" in line
        and "('wait_edw_0101', 'success')" in line
    )
    marker = json.loads((day / "edw.0000.job").read_text())
    assert marker["job"] == "edw.0000"
    assert "src.crm succeeded for 2026-11-24" in output  # the job-history poke, one query for the feed
