"""The EDW catalogue: the shipped file loads, and every kind of mistake names the file and the key path."""

from __future__ import annotations

import textwrap
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from airflow_ha.edw.catalogue import (
    BUSINESS_DAY,
    DAILY,
    ENV_CATALOGUE,
    CatalogueError,
    dag_id_of,
    load_catalogue,
    parse_catalogue,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SHIPPED = REPO_ROOT / "dags" / "catalogue" / "edw_jobs.yaml"
SOURCE = "dags/catalogue/edw_jobs.yaml"

GOOD = """\
history_table: edw_job_history
defaults:
  conn_id: edw_db
  poke_interval: 2m
holidays: [2026-12-25, "2026-12-31"]
external_jobs:
  src.crm: business_day
  src.fx: daily
jobs:
  - name: edw.0000
    schedule: business_day
    upstreams: [src.crm]
    tasks:
      - id: clear
        sql: DELETE FROM t0 WHERE business_date = %(business_date)s;
      - id: load
        sql: |
          INSERT INTO t0 (business_date, previous, job, note)
          SELECT %(business_date)s, %(previous_business_date)s, %(job_name)s, 'a%%' FROM s
  - name: edw.0001
    schedule: daily
    upstreams: [edw.0000, src.fx]
    conn_id: edw_other
    run_at: "06:30"
    wait_timeout: 90m
    max_catch_up: 3
    retries: 0
    owner: finance
    description: second job
    tasks:
      - id: load
        sql: INSERT INTO t1 SELECT * FROM t0 WHERE business_date = %(business_date)s
"""


def error_of(text: str) -> str:
    with pytest.raises(CatalogueError) as raised:
        parse_catalogue(textwrap.dedent(text), source=SOURCE)
    return str(raised.value)


def replace(old: str, new: str, text: str = GOOD) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# -- the good cases ---------------------------------------------------------------------------------


def test_good_catalogue_with_defaults_and_overrides():
    catalogue = parse_catalogue(GOOD, source=SOURCE)
    assert catalogue.path == Path(SOURCE)
    assert catalogue.history_table == "edw_job_history"
    assert catalogue.holidays == {date(2026, 12, 25), date(2026, 12, 31)}
    assert catalogue.external_jobs == {"src.crm": BUSINESS_DAY, "src.fx": DAILY}
    first, second = catalogue.jobs
    assert (first.name, first.schedule, first.upstreams) == ("edw.0000", BUSINESS_DAY, ("src.crm",))
    assert [task.id for task in first.tasks] == ["clear", "load"]
    assert first.tasks[0].sql == "DELETE FROM t0 WHERE business_date = %(business_date)s"  # trailing ; dropped
    assert first.tasks[1].parameters == ("business_date", "previous_business_date", "job_name")
    assert first.conn_id == "edw_db"
    assert first.poke_interval == timedelta(minutes=2)  # from defaults
    assert first.wait_timeout == timedelta(hours=12)  # built-in default
    assert (first.run_at, first.cron, first.dag_id) == (time(2, 0), "0 2 * * 1-5", "edw_dyn_0000")
    assert (second.conn_id, second.owner, second.retries, second.max_catch_up) == ("edw_other", "finance", 0, 3)
    assert (second.wait_timeout, second.cron, second.description) == (timedelta(minutes=90), "30 6 * * *", "second job")
    assert catalogue.job("edw.0001") is second
    assert catalogue.schedule_of("edw.0000") == BUSINESS_DAY
    assert catalogue.schedule_of("src.fx") == DAILY


def test_the_shipped_catalogue():
    catalogue = load_catalogue(SHIPPED)
    names = [job.name for job in catalogue]
    assert names == [f"edw.{n:04d}" for n in range(10)]
    assert {job.schedule for job in catalogue} == {DAILY, BUSINESS_DAY}
    assert date(2026, 12, 25) in catalogue.holidays
    # Several jobs wait on the same upstream (the seed's duplicate sensor_instance rows).
    waiting_on: dict[str, int] = {}
    for job in catalogue:
        for upstream in job.upstreams:
            waiting_on[upstream] = waiting_on.get(upstream, 0) + 1
    assert max(waiting_on.values()) >= 3
    assert any(upstream.startswith("edw.") for job in catalogue for upstream in job.upstreams)  # chains
    assert all(job.conn_id == "edw_db" for job in catalogue)
    assert [job.dag_id for job in catalogue] == [f"edw_dyn_{n:04d}" for n in range(10)]


def test_dag_ids():
    assert dag_id_of("edw.0007") == "edw_dyn_0007"
    assert dag_id_of("mart.sales") == "edw_dyn_mart_sales"
    assert dag_id_of("edw.fin.gl") == "edw_dyn_fin_gl"


# -- the bad cases: (catalogue text, key path, problem) ---------------------------------------------

BAD = {
    "missing sql": (
        replace("        sql: INSERT INTO t1 SELECT * FROM t0 WHERE business_date = %(business_date)s\n", ""),
        "jobs[1].tasks[0].sql",
        "missing",
    ),
    "missing task id": (
        replace("      - id: load\n        sql: INSERT INTO t1", "      - sql: INSERT INTO t1"),
        "jobs[1].tasks[0].id",
        "missing",
    ),
    "missing name": (
        replace("  - name: edw.0001\n    schedule: daily", "  - schedule: daily"),
        "jobs[1].name",
        "missing",
    ),
    "missing schedule": (replace("    schedule: daily\n", ""), "jobs[1].schedule", "missing"),
    "missing tasks": (
        GOOD.split("    tasks:\n      - id: load\n        sql: INSERT INTO t1")[0],
        "jobs[1].tasks",
        "missing",
    ),
    "empty tasks": (
        GOOD.split("    tasks:\n      - id: load\n        sql: INSERT INTO t1")[0] + "    tasks: []\n",
        "jobs[1].tasks",
        "empty: job 'edw.0001' has nothing to run",
    ),
    "schedule kind": (
        replace("schedule: daily", "schedule: weekly"),
        "jobs[1].schedule",
        "'weekly' is not a schedule kind",
    ),
    "unknown upstream": (
        replace("[edw.0000, src.fx]", "[edw.0000, edw.9999]"),
        "jobs[1].upstreams[1]",
        "unknown job 'edw.9999'",
    ),
    "upstream twice": (replace("[edw.0000, src.fx]", "[edw.0000, edw.0000]"), "jobs[1].upstreams[1]", "listed twice"),
    "upstream itself": (replace("[edw.0000, src.fx]", "[edw.0001]"), "jobs[1].upstreams[0]", "cannot wait on itself"),
    "upstreams not a list": (replace("[edw.0000, src.fx]", "edw.0000"), "jobs[1].upstreams", "expected a list"),
    "duplicate job": (
        replace("name: edw.0001", "name: edw.0000").replace("[edw.0000, src.fx]", "[src.fx]"),
        "jobs[1].name",
        "duplicate job 'edw.0000' (also jobs[0])",
    ),
    "duplicate task": (
        replace("      - id: load\n        sql: |", "      - id: clear\n        sql: |"),
        "jobs[0].tasks[1].id",
        "duplicate task id 'clear'",
    ),
    "cycle": (
        replace("upstreams: [src.crm]", "upstreams: [src.crm, edw.0001]"),
        "jobs[0].upstreams",
        "cycle between jobs: edw.0000 -> edw.0001 -> edw.0000",
    ),
    "unknown task key": (
        replace("      - id: load\n        sql: INSERT", "      - id: load\n        sqll: INSERT"),
        "jobs[1].tasks[0].sqll",
        "unknown key",
    ),
    "unknown job key": (
        replace("    description: second job", "    descripton: second job"),
        "jobs[1].descripton",
        "unknown key",
    ),
    "unknown top-level key": ("holiday: []\n" + GOOD, "holiday", "unknown key"),
    "unknown defaults key": (
        replace("  conn_id: edw_db", "  connection: edw_db"),
        "defaults.connection",
        "unknown key",
    ),
    "unknown parameter": (
        replace("%(business_date)s;", "%(busines_date)s;"),
        "jobs[0].tasks[0].sql",
        "unknown parameter %(busines_date)s",
    ),
    "bare percent": (replace("'a%%'", "'a%'"), "jobs[0].tasks[1].sql", "bare % at character"),
    "positional placeholder": (replace("%(business_date)s;", "%s;"), "jobs[0].tasks[0].sql", "bare %"),
    "two statements": (
        replace("%(business_date)s;", "%(business_date)s; DELETE FROM t9"),
        "jobs[0].tasks[0].sql",
        "one SQL statement per task, found 2",
    ),
    "empty sql": (
        replace("sql: INSERT INTO t1 SELECT * FROM t0 WHERE business_date = %(business_date)s", 'sql: " "'),
        "jobs[1].tasks[0].sql",
        "empty",
    ),
    "sql not a string": (
        replace("sql: INSERT INTO t1 SELECT * FROM t0 WHERE business_date = %(business_date)s", "sql: 42"),
        "jobs[1].tasks[0].sql",
        "expected a string, got a number (42)",
    ),
    "bad holiday": (replace('"2026-12-31"', '"2026-13-01"'), "holidays[1]", "expected a date YYYY-MM-DD"),
    "duplicate holiday": (replace('"2026-12-31"', '"2026-12-25"'), "holidays[1]", "duplicate holiday 2026-12-25"),
    "run_at unquoted": (
        replace('run_at: "06:30"', "run_at: 6:30"),
        "jobs[1].run_at",
        "unquoted, YAML reads it as the number 390",
    ),
    "run_at out of range": (replace('run_at: "06:30"', 'run_at: "25:00"'), "jobs[1].run_at", "expected a time"),
    "bad duration": (
        replace("wait_timeout: 90m", "wait_timeout: 90 minutes"),
        "jobs[1].wait_timeout",
        "expected a duration like 30s",
    ),
    "zero duration": (replace("poke_interval: 2m", "poke_interval: 0s"), "defaults.poke_interval", "longer than 0s"),
    "max_catch_up zero": (replace("max_catch_up: 3", "max_catch_up: 0"), "jobs[1].max_catch_up", "at least 1"),
    "retries boolean": (replace("retries: 0", "retries: yes"), "jobs[1].retries", "expected an integer, got a boolean"),
    "external kind": (
        replace("src.fx: daily", "src.fx: hourly"),
        "external_jobs[src.fx]",
        "'hourly' is not a schedule kind",
    ),
    "external also a job": (
        replace("src.fx: daily", "edw.0000: daily"),
        "jobs[0].name",
        "also listed in external_jobs",
    ),
    "same dag id": (
        replace("name: edw.0001", "name: edw_dyn.x")
        .replace("name: edw.0000", "name: edw_dyn_x")
        .replace("[edw.0000, src.fx]", "[src.fx]"),
        "jobs[1].name",
        "would both be DAG",
    ),
    "job name is a number": (
        replace("name: edw.0001", "name: 7"),
        "jobs[1].name",
        "expected a string, got a number (7)",
    ),
    "job name characters": (replace("name: edw.0001", "name: edw 0001"), "jobs[1].name", "is not a job name"),
    "conn id": (replace("conn_id: edw_other", "conn_id: edw other"), "jobs[1].conn_id", "not an Airflow connection id"),
    "history table injection": (
        replace("history_table: edw_job_history", 'history_table: "t; DROP TABLE x"'),
        "history_table",
        "is not a table name",
    ),
    "jobs not a list": ("jobs: {}\n", "jobs", "expected a list, got a mapping"),
    "jobs empty": ("jobs: []\n", "jobs", "empty"),
    "job not a mapping": (
        replace("  - name: edw.0001\n", "  - edw.0001\n  - name: edw.0001\n"),
        "jobs[1]",
        "expected a mapping, got a string",
    ),
}


@pytest.mark.parametrize(("text", "where", "problem"), list(BAD.values()), ids=list(BAD))
def test_bad_catalogue_names_file_and_key(text, where, problem):
    message = error_of(text)
    assert message.startswith(f"{SOURCE}: {where}: "), message
    assert problem in message, message


def test_three_job_cycle():
    text = GOOD + textwrap.indent(
        textwrap.dedent("""\
        - name: edw.0002
          schedule: daily
          upstreams: [edw.0001]
          tasks: [{id: t, sql: SELECT 1}]
        """),
        "  ",
    )
    text = replace("upstreams: [src.crm]", "upstreams: [src.crm, edw.0002]", text)
    message = error_of(text)
    assert "cycle between jobs: edw.0000 -> edw.0002 -> edw.0001 -> edw.0000" in message, message


def test_error_gives_the_line():
    message = error_of(replace("schedule: daily", "schedule: weekly"))
    line = GOOD.splitlines().index("    schedule: daily") + 1
    assert message.endswith(f"(line {line})"), message


def test_missing_key_gives_the_line_of_its_mapping():
    message = error_of(replace("    schedule: daily\n", ""))
    assert message == f"{SOURCE}: jobs[1].schedule: missing (line {GOOD.splitlines().index('  - name: edw.0001') + 1})"


def test_duplicate_yaml_key_is_refused():
    # yaml.safe_load would silently keep the second sql; the catalogue refuses the file instead.
    text = replace("        sql: DELETE FROM t0", "        sql: SELECT 1\n        sql: DELETE FROM t0")
    message = error_of(text)
    assert message.startswith(f"{SOURCE}: jobs[0].tasks[0].sql: duplicate key (lines "), message


def test_yaml_syntax_error_gives_line_and_column():
    message = error_of("jobs:\n  - name: edw.0000\n    schedule: [daily\n")
    assert message.startswith(f"{SOURCE}: line "), message
    assert "not valid YAML" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file (expected a mapping with a 'jobs' list)"),
        ("- a\n- b\n", "expected a mapping with a 'jobs' list at the top, got a list"),
    ],
)
def test_not_a_catalogue(text, problem):
    assert error_of(text) == f"{SOURCE}: {problem}"


def test_jobs_missing():
    assert error_of("history_table: edw_job_history\n") == f"{SOURCE}: jobs: missing"


def test_missing_file_names_the_path_and_the_variable(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(CatalogueError, match=ENV_CATALOGUE) as raised:
        load_catalogue(path)
    assert str(raised.value).startswith(f"{path}: no such file")


def test_load_names_the_real_file(tmp_path):
    path = tmp_path / "edw_jobs.yaml"
    path.write_text(replace("schedule: daily", "schedule: weekly"))
    with pytest.raises(CatalogueError) as raised:
        load_catalogue(path, today=date(2025, 12, 1))
    assert str(raised.value).startswith(f"{path}: jobs[1].schedule: ")


def test_the_time_zone_is_the_catalogues_or_the_deployments():
    assert parse_catalogue(GOOD, source=SOURCE).timezone == "UTC"
    assert parse_catalogue(GOOD, source=SOURCE, default_timezone="Europe/Berlin").timezone == "Europe/Berlin"
    seoul = parse_catalogue("timezone: Asia/Seoul\n" + GOOD, source=SOURCE, default_timezone="Europe/Berlin")
    assert seoul.timezone == "Asia/Seoul"
    with pytest.raises(CatalogueError, match=r"timezone: 'Asia/Soul' is not a time zone \(an IANA name.*\(line 1\)"):
        parse_catalogue("timezone: Asia/Soul\n" + GOOD, source=SOURCE)


def test_a_holiday_calendar_that_runs_out_within_12_months_is_refused():
    """Past its last year, holidays would count as business days without a word: refuse it a year ahead."""
    in_time = parse_catalogue(GOOD, source=SOURCE, today=date(2025, 12, 31))  # 2026's list covers 2026
    assert in_time.holidays_through == date(2026, 12, 31)
    with pytest.raises(CatalogueError) as raised:
        parse_catalogue(GOOD, source=SOURCE, today=date(2026, 1, 2))
    assert str(raised.value) == (
        f"{SOURCE}: holidays: the holiday calendar ends 2026-12-31; it must cover the next 12 months (through "
        "2027-01-02): add the holidays of 2027 and set holidays_through (line 5)"
    )
    # a list known complete beyond its last holiday says so
    extended = parse_catalogue("holidays_through: 2027-06-30\n" + GOOD, source=SOURCE, today=date(2026, 6, 1))
    assert extended.holidays_through == date(2027, 6, 30)
    no_holidays = GOOD.replace('holidays: [2026-12-25, "2026-12-31"]\n', "")
    assert parse_catalogue(no_holidays, source=SOURCE, today=date(2030, 1, 1)).holidays_through is None


def test_the_shipped_catalogue_covers_the_next_12_months():
    """Fails a year before the shipped holiday list runs out: time to add the next year's TARGET2 days."""
    assert load_catalogue(SHIPPED).holidays_through >= date.today() + timedelta(days=365)
