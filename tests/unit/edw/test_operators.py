"""The two operators of an EDW DAG, in-process on sqlite3 (the MySQL run is tests/integration/edw)."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from airflow_ha.edw import operators
from airflow_ha.edw.catalogue import parse_catalogue
from airflow_ha.edw.operators import EdwCatchUpOperator, EdwUpstreamSensor, run_business_date

CATALOGUE_TEXT = """\
holidays: [2026-12-25]
defaults: {max_catch_up: 3}
external_jobs: {src.ledger: business_day}
jobs:
  - name: edw.0001
    schedule: business_day
    upstreams: [src.ledger]
    tasks:
      - id: load
        sql: INSERT INTO loaded (business_date) VALUES (%(business_date)s)
"""
CATALOGUE = parse_catalogue(CATALOGUE_TEXT, source="test.yaml")


class SqliteHook:
    def __init__(self, path):
        self.path = str(path)

    def get_conn(self):
        return sqlite3.connect(self.path)


@pytest.fixture
def edw(tmp_path, monkeypatch):
    hook = SqliteHook(tmp_path / "edw.db")
    conn = hook.get_conn()
    conn.executescript(
        "CREATE TABLE edw_job_history (job_name TEXT, business_date DATE, status TEXT, finished_at DATETIME);"
        "CREATE TABLE loaded (business_date DATE);"
        "INSERT INTO edw_job_history VALUES ('edw.0001', '2026-12-24', 'success', '2026-12-24 03:00:00');"
    )
    conn.commit()
    conn.close()
    used: list[str] = []
    monkeypatch.setattr(operators, "edw_hook", lambda conn_id: used.append(conn_id) or hook)
    hook.used = used
    return hook


def upstream_done_through(hook, day: str) -> None:
    """src.ledger finished every date of December up to ``day`` (upstreams are checked date by date)."""
    conn = hook.get_conn()
    first, last = date(2026, 12, 1), date.fromisoformat(day)
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    conn.executemany(
        "INSERT INTO edw_job_history VALUES ('src.ledger', ?, 'success', '2026-12-29 01:00:00')", [(d,) for d in days]
    )
    conn.commit()
    conn.close()


def context(logical_date: str | None, **params) -> dict:
    run_after = pendulum.parse("2026-12-29T02:00:00+00:00")
    return {
        "logical_date": pendulum.parse(logical_date) if logical_date else None,
        "dag_run": SimpleNamespace(run_after=run_after),
        "params": params,
    }


def sensor(**kwargs) -> EdwUpstreamSensor:
    return EdwUpstreamSensor(task_id="check_upstreams", catalogue=CATALOGUE, job_name="edw.0001", **kwargs)


def test_business_date_is_the_logical_date_in_utc_or_run_after():
    assert run_business_date(context("2026-12-29T23:30:00-05:00")) == date(2026, 12, 30)
    assert run_business_date(context(None)) == date(2026, 12, 29)


def test_the_business_date_is_the_date_in_the_catalogues_time_zone():
    """00:30 on 29 December in Seoul is 15:30 on the 28th in UTC: a Seoul catalogue's run is for the 29th."""
    seoul_night = context("2026-12-28T15:30:00+00:00")
    assert run_business_date(seoul_night) == date(2026, 12, 28)
    assert run_business_date(seoul_night, "Asia/Seoul") == date(2026, 12, 29)


def test_a_manual_runs_business_date_wins_and_a_bad_one_is_named(edw):
    upstream_done_through(edw, "2026-12-29")
    seoul = parse_catalogue("timezone: Asia/Seoul\n" + CATALOGUE_TEXT, source="test.yaml")
    check = EdwUpstreamSensor(task_id="check_upstreams", catalogue=seoul, job_name="edw.0001")
    plan = check.poke(context("2026-12-28T15:30:00+00:00")).xcom_value
    assert plan["business_date"] == "2026-12-29"  # Seoul's date, not UTC's 28th
    manual = EdwUpstreamSensor(
        task_id="check_upstreams", catalogue=seoul, job_name="edw.0001", business_date="2026-12-28"
    )
    assert manual.poke(context("2026-12-28T15:30:00+00:00")).xcom_value["days"] == ["2026-12-28"]
    bad = EdwUpstreamSensor(task_id="check_upstreams", catalogue=seoul, job_name="edw.0001", business_date="28/12")
    with pytest.raises(AirflowFailException, match="business_date '28/12' is not a date YYYY-MM-DD"):
        bad.poke(context(None))


def test_a_cleared_run_runs_its_date_again(edw):
    """Clearing a run whose date succeeded runs it again, as Airflow's clear does for any task; an uncleared
    run of a done date has nothing to do."""
    upstream_done_through(edw, "2026-12-29")
    edw_history = edw.get_conn()
    edw_history.execute("INSERT INTO edw_job_history VALUES ('edw.0001', '2026-12-28', 'success', '')")
    edw_history.execute("INSERT INTO edw_job_history VALUES ('edw.0001', '2026-12-29', 'success', '')")
    edw_history.commit()
    edw_history.close()
    done = context("2026-12-29T02:00:00+00:00")
    assert sensor().poke(done).xcom_value["days"] == []
    cleared = {**done, "dag_run": SimpleNamespace(run_after=done["dag_run"].run_after, clear_number=1)}
    plan = sensor().poke(cleared).xcom_value
    assert plan["days"] == ["2026-12-29"] and plan["rerun"] is True


def test_sensor_waits_while_an_upstream_is_behind(edw):
    check = sensor()
    assert check.mode == "reschedule"
    upstream_done_through(edw, "2026-12-28")
    assert check.poke(context("2026-12-29T02:00:00+00:00")) is False
    assert check._still_waiting == "src.ledger (done through 2026-12-28, needs 2026-12-29)"
    assert edw.used == ["edw_db"]  # the catalogue's connection id


def test_sensor_returns_the_plan_when_ready(edw):
    upstream_done_through(edw, "2026-12-29")
    result = sensor().poke(context("2026-12-29T02:00:00+00:00"))
    assert isinstance(result, PokeReturnValue) and result.is_done
    assert result.xcom_value["days"] == ["2026-12-28", "2026-12-29"]


def test_sensor_timeout_names_the_missing_upstreams(edw):
    check = sensor(mode="poke", timeout=0, poke_interval=0)
    with pytest.raises(AirflowSensorTimeout, match=r"edw.0001 did not run: upstreams not done after 0s: src.ledger"):
        check.execute(context("2026-12-29T02:00:00+00:00"))


def test_sensor_refuses_a_long_backlog(edw):
    upstream_done_through(edw, "2027-01-29")
    with pytest.raises(AirflowFailException, match="more than max_catch_up=3"):
        sensor().poke(context("2027-01-08T02:00:00+00:00"))


def test_catch_up_runs_the_plan(edw):
    upstream_done_through(edw, "2026-12-29")
    plan = sensor().poke(context("2026-12-29T02:00:00+00:00")).xcom_value
    ti = SimpleNamespace(xcom_pull=lambda task_ids: plan if task_ids == "check_upstreams" else None)
    operator = EdwCatchUpOperator(task_id="catch_up", catalogue=CATALOGUE, job_name="edw.0001")
    assert operator.execute({"ti": ti}) == ["2026-12-28", "2026-12-29"]
    conn = edw.get_conn()
    assert conn.execute("SELECT business_date FROM loaded ORDER BY 1").fetchall() == [("2026-12-28",), ("2026-12-29",)]
    conn.close()


def test_catch_up_without_a_plan_fails_clearly(edw):
    ti = SimpleNamespace(xcom_pull=lambda task_ids: None)
    operator = EdwCatchUpOperator(task_id="catch_up", catalogue=CATALOGUE, job_name="edw.0001")
    with pytest.raises(AirflowFailException, match="no plan from check_upstreams"):
        operator.execute({"ti": ti})
