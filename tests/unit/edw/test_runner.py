"""The job runner on sqlite3: one history query, the plan, and the per-date transactions."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from airflow_ha.edw.catalogue import parse_catalogue
from airflow_ha.edw.runner import (
    CatchUpRefused,
    JobHistory,
    Wait,
    bind,
    fetch_history,
    paramstyle_of,
    plan_job,
    run_days,
)

D = date.fromisoformat


def done_through(latest: dict[str, str]) -> dict[str, JobHistory]:
    """Histories in which each job finished every date of November and December up to its date."""
    return {job: JobHistory.through(D(day), since=D("2026-11-01")) for job, day in latest.items()}


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
    found = fetch_history(hook, "edw_job_history", ["edw.load", "src.ledger", "src.fx"])
    watermarks = {job: h.latest for job, h in found.items()}
    assert watermarks == {"edw.load": D("2026-12-24"), "src.ledger": D("2026-12-29")}
    assert [s for s in hook.statements if s.lstrip().upper().startswith("SELECT")] == [
        "SELECT job_name, MAX(business_date), 1 FROM edw_job_history WHERE status = 'success' "
        "AND job_name IN ('edw.load', 'src.ledger', 'src.fx') GROUP BY job_name"
    ]


def test_history_reads_the_exact_dates_of_the_window_in_the_same_one_query(hook):
    history(
        hook,
        ("src.ledger", "2026-12-21", "success"),
        ("src.ledger", "2026-12-22", "success"),
        ("src.ledger", "2026-12-23", "failed"),  # a failure leaves a gap
        ("src.ledger", "2026-12-24", "success"),
        ("src.ledger", "2026-11-02", "success"),  # before the window
        ("src.fx", "2026-12-24", "success"),
    )
    found = fetch_history(hook, "edw_job_history", ["src.ledger", "src.fx", "edw.load"], since=D("2026-12-01"))
    assert found == {
        "src.ledger": JobHistory(D("2026-12-24"), frozenset({D("2026-12-21"), D("2026-12-22"), D("2026-12-24")})),
        "src.fx": JobHistory(D("2026-12-24"), frozenset({D("2026-12-24")})),
    }
    assert len([s for s in hook.statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_business_day_job_plans_the_missed_days_and_is_ready():
    watermarks = done_through({"edw.load": "2026-12-24", "src.ledger": "2026-12-29", "src.fx": "2026-12-29"})
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
    watermarks = done_through({"edw.load": "2026-12-24", "src.ledger": "2026-12-28"})
    plan = plan_job(CATALOGUE, LOAD, D("2026-12-29"), watermarks)
    assert plan.days == (D("2026-12-28"), D("2026-12-29"))
    assert plan.waiting_on == (
        Wait("src.ledger", D("2026-12-28"), (D("2026-12-29"),)),
        Wait("src.fx", None, (D("2026-12-28"), D("2026-12-29"))),
    )
    assert (
        "waiting on src.ledger (done through 2026-12-28, needs 2026-12-29); src.fx (never succeeded" in plan.describe()
    )


def test_daily_job_on_a_saturday_needs_the_business_day_upstream_through_friday():
    watermarks = done_through({"edw.snapshot": "2026-12-18", "edw.load": "2026-12-18", "src.fx": "2026-12-19"})
    plan = plan_job(CATALOGUE, SNAPSHOT, D("2026-12-19"), watermarks)
    assert plan.days == (D("2026-12-19"),)
    assert plan.ready
    # On Monday the business-day upstream must have done Monday.
    # On Monday it catches up Saturday to Monday, and the business-day upstream must have done Monday.
    plan = plan_job(CATALOGUE, SNAPSHOT, D("2026-12-21"), {**watermarks, **done_through({"src.fx": "2026-12-21"})})
    assert plan.days == (D("2026-12-19"), D("2026-12-20"), D("2026-12-21"))
    assert plan.waiting_on == (Wait("edw.load", D("2026-12-18"), (D("2026-12-21"),)),)


def test_a_gap_in_an_upstreams_history_holds_back_the_date_it_left_out():
    """An upstream that failed on 23 December and succeeded on the 24th: its newest success is past every
    date edw.load needs, but the 23rd never arrived, so edw.load must not load it (nor record success)."""
    ledger = JobHistory(
        D("2026-12-29"), frozenset(D(d) for d in ("2026-12-22", "2026-12-24", "2026-12-28", "2026-12-29"))
    )
    history = {**done_through({"edw.load": "2026-12-22", "src.fx": "2026-12-29"}), "src.ledger": ledger}
    plan = plan_job(CATALOGUE, LOAD, D("2026-12-29"), history)
    assert plan.days == (D("2026-12-23"), D("2026-12-24"), D("2026-12-28"), D("2026-12-29"))
    assert plan.waiting_on == (Wait("src.ledger", D("2026-12-29"), (D("2026-12-23"),)),)
    assert "src.ledger (done through 2026-12-29, needs 2026-12-23)" in plan.describe()
    # once the upstream's 23rd is there (a rerun of it), edw.load is ready for all four
    fixed = {**history, "src.ledger": JobHistory(D("2026-12-29"), ledger.done | {D("2026-12-23")})}
    assert plan_job(CATALOGUE, LOAD, D("2026-12-29"), fixed).ready


def test_a_daily_job_catches_up_its_own_missed_dates():
    """A scheduler outage: edw.snapshot last ran for 15 December; its run for the 19th runs the 16th to the
    19th, each waiting on its own upstream dates."""
    history = done_through({"edw.snapshot": "2026-12-15", "edw.load": "2026-12-18", "src.fx": "2026-12-19"})
    plan = plan_job(CATALOGUE, SNAPSHOT, D("2026-12-19"), history)
    assert plan.days == (D("2026-12-16"), D("2026-12-17"), D("2026-12-18"), D("2026-12-19")) and plan.ready
    with pytest.raises(CatchUpRefused, match=r"edw\.snapshot: 6 business dates"):
        plan_job(CATALOGUE, SNAPSHOT, D("2026-12-21"), history)  # max_catch_up 5


def test_nothing_to_do_needs_no_upstreams():
    plan = plan_job(CATALOGUE, LOAD, D("2026-12-29"), done_through({"edw.load": "2026-12-29"}))
    assert plan.days == () and plan.ready
    assert plan_job(CATALOGUE, LOAD, D("2026-12-25"), done_through({"edw.load": "2026-12-24"})).days == ()  # holiday
    assert plan_job(CATALOGUE, SNAPSHOT, D("2026-12-19"), done_through({"edw.snapshot": "2026-12-19"})).days == ()


def test_rerun_adds_the_run_date():
    watermarks = done_through({"edw.load": "2026-12-29", "src.ledger": "2026-12-29", "src.fx": "2026-12-29"})
    assert plan_job(CATALOGUE, LOAD, D("2026-12-29"), watermarks, rerun=True).days == (D("2026-12-29"),)
    assert plan_job(CATALOGUE, LOAD, D("2026-12-25"), watermarks, rerun=True).days == ()  # not a business day
    snapshot = done_through({"edw.snapshot": "2026-12-20"})
    assert plan_job(CATALOGUE, SNAPSHOT, D("2026-12-20"), snapshot, rerun=True).days == (D("2026-12-20"),)


def test_first_run_of_a_job_without_history():
    plan = plan_job(
        CATALOGUE, LOAD, D("2026-12-29"), done_through({"src.ledger": "2026-12-29", "src.fx": "2026-12-29"})
    )
    assert plan.days == (D("2026-12-29"),) and plan.last_success is None and plan.ready


def test_too_long_a_backlog_is_refused():
    with pytest.raises(CatchUpRefused, match=r"edw.load: 7 business dates to catch up \(2026-12-01 .. 2026-12-09"):
        plan_job(CATALOGUE, LOAD, D("2026-12-09"), done_through({"edw.load": "2026-11-30"}))


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


def test_run_days_skips_exactly_the_dates_done_and_runs_a_gap(hook):
    history(hook, ("edw.load", "2026-12-28", "success"))  # the 24th was never done, the 28th was
    ran = run_days(hook, CATALOGUE, LOAD, [D("2026-12-24"), D("2026-12-28")])
    assert ran == [D("2026-12-24")]
    assert query(hook, "SELECT DISTINCT business_date FROM loaded") == [("2026-12-24",)]


def test_rerun_date_runs_again(hook):
    history(hook, ("edw.load", "2026-12-29", "success"))
    assert run_days(hook, CATALOGUE, LOAD, [D("2026-12-29")]) == []
    assert run_days(hook, CATALOGUE, LOAD, [D("2026-12-29")], rerun_date=D("2026-12-29")) == [D("2026-12-29")]
    assert query(hook, "SELECT COUNT(*) FROM loaded") == [(2,)]


def test_nothing_to_run_opens_no_connection(hook):
    assert run_days(hook, CATALOGUE, LOAD, []) == []
    assert hook.statements == []
