"""The job runner on sqlite3: one history query, the plan, and the per-date transactions."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from airflow_ha.edw.catalogue import parse_catalogue
from airflow_ha.edw.runner import (
    CatchUpRefused,
    Wait,
    bind,
    fetch_watermarks,
    paramstyle_of,
    plan_job,
    run_days,
)

D = date.fromisoformat

CATALOGUE = parse_catalogue(
    """\
holidays: [2026-12-25]
defaults: {max_catch_up: 5}
external_jobs: {src.ledger: business_day, src.fx: daily}
jobs:
  - name: edw.load
    schedule: business_day
    upstreams: [src.ledger, src.fx]
    tasks:
      - id: stage
        sql: >
          INSERT INTO loaded (job_name, business_date, previous_business_date, task_id)
          VALUES (%(job_name)s, %(business_date)s, %(previous_business_date)s, 'stage')
      - id: publish
        sql: >
          INSERT INTO loaded (job_name, business_date, previous_business_date, task_id)
          SELECT job_name, business_date, previous_business_date, 'publish' FROM loaded
          WHERE business_date = %(business_date)s AND task_id = 'stage' AND note NOT LIKE '%%skip%%'
  - name: edw.snapshot
    schedule: daily
    upstreams: [edw.load, src.fx]
    tasks:
      - id: snap
        sql: INSERT INTO loaded (job_name, business_date, task_id) VALUES (%(job_name)s, %(business_date)s, 'snap')
""",
    source="test.yaml",
)
LOAD = CATALOGUE.job("edw.load")
SNAPSHOT = CATALOGUE.job("edw.snapshot")


class SqliteHook:
    """What the runner needs of an Airflow DbApiHook; records every statement the database sees."""

    def __init__(self, path):
        self.path = str(path)
        self.statements: list[str] = []

    def get_conn(self):
        conn = sqlite3.connect(self.path)
        conn.set_trace_callback(self.statements.append)
        return conn


@pytest.fixture
def hook(tmp_path):
    hook = SqliteHook(tmp_path / "edw.db")
    conn = hook.get_conn()
    conn.executescript(
        """
        CREATE TABLE edw_job_history (job_name TEXT, business_date DATE, status TEXT, finished_at DATETIME);
        CREATE TABLE loaded (
            id INTEGER PRIMARY KEY AUTOINCREMENT, job_name TEXT, business_date DATE,
            previous_business_date DATE, task_id TEXT, note TEXT DEFAULT ''
        );
        """
    )
    conn.close()
    hook.statements.clear()
    return hook


def history(hook, *rows):
    conn = hook.get_conn()
    conn.executemany("INSERT INTO edw_job_history VALUES (?, ?, ?, '2026-12-01 00:00:00')", rows)
    conn.commit()
    conn.close()
    hook.statements.clear()


def query(hook, sql):
    conn = sqlite3.connect(hook.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_bind_keeps_pyformat_and_converts_for_qmark_and_named():
    sql = "SELECT %(a)s, %(b)s, %(a)s WHERE x LIKE 'y%%'"
    assert bind(sql, {"a": 1, "b": 2}, "pyformat") == (sql, {"a": 1, "b": 2})
    assert bind(sql, {"a": 1, "b": 2}, "format") == (sql, {"a": 1, "b": 2})  # MySQLdb takes a dict too
    assert bind(sql, {"a": 1, "b": 2}, "qmark") == ("SELECT ?, ?, ? WHERE x LIKE 'y%'", [1, 2, 1])
    assert bind(sql, {"a": 1, "b": 2}, "named") == ("SELECT :a, :b, :a WHERE x LIKE 'y%'", {"a": 1, "b": 2})
    assert paramstyle_of(sqlite3.connect(":memory:")) == "qmark"


def test_watermarks_of_the_job_and_its_upstreams_in_one_query(hook):
    history(
        hook,
        ("edw.load", "2026-12-22", "success"),
        ("edw.load", "2026-12-24", "success"),
        ("edw.load", "2026-12-28", "failed"),  # a failure is not progress
        ("src.ledger", "2026-12-29", "success"),
        ("src.other", "2026-12-30", "success"),  # not asked for
    )
    watermarks = fetch_watermarks(hook, "edw_job_history", ["edw.load", "src.ledger", "src.fx"])
    assert watermarks == {"edw.load": D("2026-12-24"), "src.ledger": D("2026-12-29")}
    assert [s for s in hook.statements if s.lstrip().upper().startswith("SELECT")] == [
        "SELECT job_name, MAX(business_date) FROM edw_job_history WHERE status = 'success' "
        "AND job_name IN ('edw.load', 'src.ledger', 'src.fx') GROUP BY job_name"
    ]


def test_business_day_job_plans_the_missed_days_and_is_ready():
    watermarks = {"edw.load": D("2026-12-24"), "src.ledger": D("2026-12-29"), "src.fx": D("2026-12-29")}
    plan = plan_job(CATALOGUE, LOAD, D("2026-12-29"), watermarks)
    assert plan.days == (D("2026-12-28"), D("2026-12-29"))
    assert plan.ready and plan.last_success == D("2026-12-24")
    assert plan.to_xcom() == {
        "job": "edw.load",
        "business_date": "2026-12-29",
        "last_success": "2026-12-24",
        "days": ["2026-12-28", "2026-12-29"],
        "rerun": False,
    }


def test_upstreams_must_reach_the_newest_planned_day():
    watermarks = {"edw.load": D("2026-12-24"), "src.ledger": D("2026-12-28")}
    plan = plan_job(CATALOGUE, LOAD, D("2026-12-29"), watermarks)
    assert plan.days == (D("2026-12-28"), D("2026-12-29"))
    assert plan.waiting_on == (
        Wait("src.ledger", D("2026-12-28"), D("2026-12-29")),
        Wait("src.fx", None, D("2026-12-29")),
    )
    assert (
        "waiting on src.ledger (done through 2026-12-28, needs 2026-12-29); src.fx (never succeeded" in plan.describe()
    )


def test_daily_job_on_a_saturday_needs_the_business_day_upstream_through_friday():
    watermarks = {"edw.snapshot": D("2026-12-18"), "edw.load": D("2026-12-18"), "src.fx": D("2026-12-19")}
    plan = plan_job(CATALOGUE, SNAPSHOT, D("2026-12-19"), watermarks)
    assert plan.days == (D("2026-12-19"),)  # daily: the run's date alone, no catch-up
    assert plan.ready
    # On Monday the business-day upstream must have done Monday.
    plan = plan_job(CATALOGUE, SNAPSHOT, D("2026-12-21"), {**watermarks, "src.fx": D("2026-12-21")})
    assert plan.waiting_on == (Wait("edw.load", D("2026-12-18"), D("2026-12-21")),)


def test_nothing_to_do_needs_no_upstreams():
    plan = plan_job(CATALOGUE, LOAD, D("2026-12-29"), {"edw.load": D("2026-12-29")})
    assert plan.days == () and plan.ready
    assert plan_job(CATALOGUE, LOAD, D("2026-12-25"), {"edw.load": D("2026-12-24")}).days == ()  # holiday
    assert plan_job(CATALOGUE, SNAPSHOT, D("2026-12-19"), {"edw.snapshot": D("2026-12-19")}).days == ()


def test_rerun_adds_the_run_date():
    watermarks = {"edw.load": D("2026-12-29"), "src.ledger": D("2026-12-29"), "src.fx": D("2026-12-29")}
    assert plan_job(CATALOGUE, LOAD, D("2026-12-29"), watermarks, rerun=True).days == (D("2026-12-29"),)
    assert plan_job(CATALOGUE, LOAD, D("2026-12-25"), watermarks, rerun=True).days == ()  # not a business day
    assert plan_job(CATALOGUE, SNAPSHOT, D("2026-12-20"), {"edw.snapshot": D("2026-12-20")}, rerun=True).days == (
        D("2026-12-20"),
    )


def test_first_run_of_a_job_without_history():
    plan = plan_job(CATALOGUE, LOAD, D("2026-12-29"), {"src.ledger": D("2026-12-29"), "src.fx": D("2026-12-29")})
    assert plan.days == (D("2026-12-29"),) and plan.last_success is None and plan.ready


def test_too_long_a_backlog_is_refused():
    with pytest.raises(CatchUpRefused, match=r"edw.load: 7 business dates to catch up \(2026-12-01 .. 2026-12-09"):
        plan_job(CATALOGUE, LOAD, D("2026-12-09"), {"edw.load": D("2026-11-30")})


def test_run_days_in_order_with_success_rows(hook):
    history(hook, ("edw.load", "2026-12-24", "success"))
    ran = run_days(hook, CATALOGUE, LOAD, [D("2026-12-29"), D("2026-12-28")])
    assert ran == [D("2026-12-28"), D("2026-12-29")]
    assert query(hook, "SELECT business_date, previous_business_date, task_id FROM loaded ORDER BY id") == [
        ("2026-12-28", "2026-12-24", "stage"),
        ("2026-12-28", "2026-12-24", "publish"),
        ("2026-12-29", "2026-12-28", "stage"),
        ("2026-12-29", "2026-12-28", "publish"),
    ]
    assert query(hook, "SELECT business_date, status FROM edw_job_history WHERE job_name = 'edw.load' ORDER BY 1") == [
        ("2026-12-24", "success"),
        ("2026-12-28", "success"),
        ("2026-12-29", "success"),
    ]


def test_a_failing_date_is_rolled_back_recorded_failed_and_a_retry_resumes_there(hook):
    conn = sqlite3.connect(hook.path)
    # Make 2026-12-29's publish fail: a trigger that refuses its row.
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON loaded "
        "WHEN NEW.business_date = '2026-12-29' AND NEW.task_id = 'publish' "
        "BEGIN SELECT RAISE(ABORT, 'publish refused'); END"
    )
    conn.commit()
    conn.close()
    days = [D("2026-12-28"), D("2026-12-29"), D("2026-12-30")]
    with pytest.raises(sqlite3.IntegrityError, match="publish refused"):
        run_days(hook, CATALOGUE, LOAD, days)
    assert query(hook, "SELECT business_date, task_id FROM loaded ORDER BY id") == [
        ("2026-12-28", "stage"),
        ("2026-12-28", "publish"),
    ]  # the 29th's stage row was rolled back; the 30th never started
    assert query(hook, "SELECT business_date, status FROM edw_job_history ORDER BY rowid") == [
        ("2026-12-28", "success"),
        ("2026-12-29", "failed"),
    ]
    query(hook, "DROP TRIGGER refuse")
    said: list[str] = []
    assert run_days(hook, CATALOGUE, LOAD, days, say=said.append) == [D("2026-12-29"), D("2026-12-30")]
    assert any("2026-12-28: already done" in line for line in said)
    assert query(hook, "SELECT COUNT(*) FROM loaded WHERE business_date = '2026-12-28'") == [(2,)]


def test_rerun_date_runs_again(hook):
    history(hook, ("edw.load", "2026-12-29", "success"))
    assert run_days(hook, CATALOGUE, LOAD, [D("2026-12-29")]) == []
    assert run_days(hook, CATALOGUE, LOAD, [D("2026-12-29")], rerun_date=D("2026-12-29")) == [D("2026-12-29")]
    assert query(hook, "SELECT COUNT(*) FROM loaded") == [(2,)]


def test_nothing_to_run_opens_no_connection(hook):
    assert run_days(hook, CATALOGUE, LOAD, []) == []
    assert hook.statements == []
