"""Which database failures fail a smart sensor at once (waiting cannot fix them) and which are retried."""

from __future__ import annotations

import sqlite3

import MySQLdb
import pytest

from airflow_ha.sensors import pokers
from airflow_ha.sensors.pokers import JobHistoryPoker, SqlPoker, permanent_db_error


def _sqlite_error(sql: str) -> sqlite3.Error:
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE job_history (job_name TEXT, business_date TEXT, status TEXT)")
        try:
            conn.execute(sql)
        except sqlite3.Error as exc:
            return exc
    raise AssertionError(f"{sql!r} did not fail")


@pytest.mark.parametrize(
    ("exc", "why"),
    [
        (MySQLdb.ProgrammingError(1146, "Table 'edw.job_hist' doesn't exist"), "table does not exist"),
        (MySQLdb.OperationalError(1142, "SELECT command denied to user 'x'"), "command denied on the table"),
        (MySQLdb.OperationalError(1045, "Access denied for user 'x'@'y'"), "access denied (user or password)"),
        (_sqlite_error("SELECT * FROM job_hist"), "the query cannot work as written"),
        (_sqlite_error("SELECT nope FROM job_history"), "the query cannot work as written"),
    ],
)
def test_permanent_database_errors_say_why(exc, why):
    assert permanent_db_error(exc) == why


@pytest.mark.parametrize(
    "exc",
    [
        MySQLdb.OperationalError(2003, "Can't connect to MySQL server on 'edw' (111)"),
        MySQLdb.OperationalError(2013, "Lost connection to MySQL server during query"),
        MySQLdb.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"),
        sqlite3.OperationalError("database is locked"),
        TimeoutError("timed out"),
    ],
)
def test_outages_are_retried(exc):
    assert permanent_db_error(exc) is None


class _SqliteHook:
    """A DB-API hook over a real sqlite database, as ``Connection.get_hook()`` returns for a SQL conn."""

    placeholder = "?"

    def __init__(self, path):
        self.path = path

    def get_conn(self):
        return sqlite3.connect(self.path)

    def get_records(self, sql, parameters=None):
        with sqlite3.connect(self.path) as conn:
            return conn.execute(sql, parameters or []).fetchall()


def test_a_missing_table_fails_every_target_of_the_batch_for_good(tmp_path, monkeypatch):
    db = tmp_path / "edw.sqlite"
    sqlite3.connect(db).close()
    monkeypatch.setattr(pokers, "_dbapi_hook", lambda conn_id: _SqliteHook(db))
    poker = JobHistoryPoker()
    targets = [
        poker.validate(
            {"conn_id": "edw_db", "table": "job_history", "job": f"edw.000{i}", "business_date": "2026-11-24"}
        )
        for i in range(2)
    ]
    results = poker.poke_batch(targets)
    assert all(r.permanent and "no such table: job_history" in r.detail for r in results)


def test_a_query_that_fails_for_good_and_one_that_waits_are_told_apart(tmp_path, monkeypatch):
    db = tmp_path / "edw.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE loads (day TEXT, done INTEGER)")
    monkeypatch.setattr(pokers, "_dbapi_hook", lambda conn_id: _SqliteHook(db))
    poker = SqlPoker()
    waiting, broken = poker.poke_batch(
        [
            poker.validate({"conn_id": "edw_db", "sql": "SELECT done FROM loads WHERE day = '2026-11-24'"}),
            poker.validate({"conn_id": "edw_db", "sql": "SELECT done FROM load WHERE day = '2026-11-24'"}),
        ]
    )
    assert not waiting.ready and not waiting.error and waiting.detail == "no rows"
    assert broken.permanent and "no such table: load" in broken.detail


def test_a_connection_id_that_is_not_defined_fails_for_good():
    poker = JobHistoryPoker()
    target = poker.validate(
        {"conn_id": "no_such_conn_xyz", "table": "job_history", "job": "edw.0001", "business_date": "2026-11-24"}
    )
    [result] = poker.poke_batch([target])
    assert result.permanent and "connection 'no_such_conn_xyz' is not defined" in result.detail, result
