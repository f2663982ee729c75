"""``dag.test()`` of catalogue-built EDW DAGs (dags/edw_dynamic.py) on the MySQL fixture.

The EDW database is a second database on the fixture's server (connection ``edw_db`` given as
``AIRFLOW_CONN_EDW_DB``); the test writes the job history, points ``AIRFLOW_HA_EDW_CATALOGUE`` at a
catalogue of its own whose SQL records what ran, and runs in one Airflow process:

- ``edw_dyn_t001`` for Tuesday 2026-12-29, last success Thursday 24th, Friday 25th a holiday:
  exactly Monday 28th and Tuesday 29th run, task by task in order, each with its success row;
- the same run again: nothing left to run, nothing written;
- ``edw_dyn_t002``, one of whose upstreams has not got that far: it waits, fails after its
  wait_timeout naming that upstream, and runs nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

EDW_DATABASE = "edw_dynamic_test"  # not the sensor tests' `edw`: the two must not share rows

CATALOGUE = """\
history_table: edw_job_history
defaults:
  conn_id: edw_db
  poke_interval: 1s
  wait_timeout: 5s
  retries: 0
holidays: [2026-12-25]
holidays_through: 2030-12-31  # the fixture's calendar: no other holidays (a real one lists them)
external_jobs:
  src.ledger: business_day
  src.late: business_day
jobs:
  - name: edw.t000
    schedule: daily
    tasks:
      - id: noop
        sql: SELECT %(business_date)s
  - name: edw.t001
    schedule: business_day
    upstreams: [src.ledger, edw.t000]
    tasks:
      - id: stage
        sql: >
          INSERT INTO edw_test_load (job_name, business_date, previous_business_date, task_id)
          VALUES (%(job_name)s, %(business_date)s, %(previous_business_date)s, 'stage')
      - id: publish
        sql: >
          INSERT INTO edw_test_load (job_name, business_date, previous_business_date, task_id)
          SELECT job_name, business_date, previous_business_date, 'publish' FROM edw_test_load
          WHERE job_name = %(job_name)s AND business_date = %(business_date)s AND task_id = 'stage'
  - name: edw.t002
    schedule: business_day
    upstreams: [src.ledger, src.late]
    tasks:
      - id: stage
        sql: >
          INSERT INTO edw_test_load (job_name, business_date, previous_business_date, task_id)
          VALUES (%(job_name)s, %(business_date)s, %(previous_business_date)s, 'stage')
"""

RUN_DAGS = r"""
import json, sys
import pendulum
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
for dag_id in sys.argv[3:]:
    dag = bag.dags[dag_id]
    run = dag.test(logical_date=pendulum.parse(sys.argv[2]))
    tis = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print("RESULT " + json.dumps({"dag_id": dag_id, "state": str(run.state), "tis": tis}), flush=True)
"""


def _sql(mysql, sql: str) -> list[list[str]]:
    out = mysql.root_sql(f"USE `{EDW_DATABASE}`; {sql}").stdout
    return [line.split("\t") for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def edw_run(airflow_db, mysql, tmp_path_factory):
    mysql.root_sql(
        f"CREATE DATABASE IF NOT EXISTS `{EDW_DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        f"GRANT ALL PRIVILEGES ON `{EDW_DATABASE}`.* TO '{mysql.user}'@'%';"
        f"GRANT ALL PRIVILEGES ON `{EDW_DATABASE}`.* TO '{mysql.user}'@'localhost';"
        "FLUSH PRIVILEGES;"
    )
    _sql(
        mysql,
        textwrap.dedent("""
        DROP TABLE IF EXISTS edw_job_history, edw_test_load;
        CREATE TABLE edw_job_history (
            job_name VARCHAR(64) NOT NULL, business_date DATE NOT NULL, status VARCHAR(16) NOT NULL,
            finished_at DATETIME NOT NULL, KEY (job_name, status, business_date));
        CREATE TABLE edw_test_load (
            id INT AUTO_INCREMENT PRIMARY KEY, job_name VARCHAR(64), business_date DATE,
            previous_business_date DATE, task_id VARCHAR(64));
        INSERT INTO edw_job_history VALUES
            ('edw.t001', '2026-12-22', 'success', '2026-12-22 03:00:00'),
            ('edw.t001', '2026-12-24', 'success', '2026-12-24 03:00:00'),
            ('edw.t001', '2026-12-28', 'failed', '2026-12-28 03:00:00'),
            ('src.ledger', '2026-12-28', 'success', '2026-12-28 01:00:00'),
            ('src.ledger', '2026-12-29', 'success', '2026-12-29 01:00:00'),
            ('edw.t000', '2026-12-28', 'success', '2026-12-28 01:30:00'),
            ('edw.t000', '2026-12-29', 'success', '2026-12-29 01:30:00'),
            ('edw.t002', '2026-12-24', 'success', '2026-12-24 03:00:00'),
            ('src.late', '2026-12-24', 'success', '2026-12-24 01:00:00');
        """),
    )
    catalogue = tmp_path_factory.mktemp("edw-catalogue") / "edw_jobs.yaml"
    catalogue.write_text(CATALOGUE)
    env = {
        **airflow_db,
        "AIRFLOW_CONN_EDW_DB": f"mysql://{mysql.user}:{mysql.password}@127.0.0.1:{mysql.port}/{EDW_DATABASE}",
        "AIRFLOW_HA_EDW_CATALOGUE": str(catalogue),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    dag_file = f"{env['AIRFLOW__CORE__DAGS_FOLDER']}/edw_dynamic.py"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_DAGS,
            dag_file,
            "2026-12-29T02:00:00+00:00",
            "edw_dyn_t001",
            "edw_dyn_t001",
            "edw_dyn_t002",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    runs = [json.loads(line[len("RESULT ") :]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(runs) == 3, output[-6000:]
    return {"runs": runs, "output": output}


def test_catch_up_runs_exactly_the_missed_business_days(edw_run, mysql):
    first = edw_run["runs"][0]
    assert first == {
        "dag_id": "edw_dyn_t001",
        "state": "success",
        "tis": {"check_upstreams": "success", "catch_up": "success"},
    }, edw_run["output"][-6000:]
    # Monday then Tuesday, each task in catalogue order; previous business date skips the holiday.
    assert _sql(mysql, "SELECT business_date, previous_business_date, task_id FROM edw_test_load ORDER BY id") == [
        ["2026-12-28", "2026-12-24", "stage"],
        ["2026-12-28", "2026-12-24", "publish"],
        ["2026-12-29", "2026-12-28", "stage"],
        ["2026-12-29", "2026-12-28", "publish"],
    ]
    assert _sql(
        mysql,
        "SELECT business_date, status FROM edw_job_history WHERE job_name = 'edw.t001' ORDER BY business_date, status",
    ) == [
        ["2026-12-22", "success"],
        ["2026-12-24", "success"],
        ["2026-12-28", "failed"],  # the earlier failure stays in the history
        ["2026-12-28", "success"],
        ["2026-12-29", "success"],
    ]
    assert "edw.t001: 2 business date(s) to run [2026-12-28, 2026-12-29] (last success 2026-12-24)" in edw_run["output"]


def test_the_same_run_again_has_nothing_left_to_run(edw_run):
    second = edw_run["runs"][1]
    assert second["state"] == "success"
    assert "edw.t001: nothing to run for 2026-12-29 (last success 2026-12-29)" in edw_run["output"]
    # Row counts were asserted above after both runs: the second one wrote nothing.


def test_job_with_an_upstream_not_done_does_not_run(edw_run, mysql):
    third = edw_run["runs"][2]
    assert third == {
        "dag_id": "edw_dyn_t002",
        "state": "failed",
        "tis": {"check_upstreams": "failed", "catch_up": "upstream_failed"},
    }, edw_run["output"][-6000:]
    assert _sql(mysql, "SELECT COUNT(*) FROM edw_test_load WHERE job_name = 'edw.t002'") == [["0"]]
    assert _sql(mysql, "SELECT business_date, status FROM edw_job_history WHERE job_name = 'edw.t002'") == [
        ["2026-12-24", "success"]
    ]
    assert (
        "edw.t002 did not run: upstreams not done after 5s: "
        "src.late (done through 2026-12-24, needs 2026-12-28, 2026-12-29)" in (edw_run["output"])
    )
