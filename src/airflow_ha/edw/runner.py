"""What an EDW job run does in its database: read the job history, plan the days, run them.

The job-history table (``Catalogue.history_table``, by default ``edw_job_history``) has the columns
``job_name``, ``business_date``, ``status`` and ``finished_at``; a job has finished a business date
when there is a row with ``status = 'success'`` for it. ONE query answers for the job itself and all
its upstreams: each one's newest success (its *watermark*: where the job's own catch-up starts) and the
exact dates it finished in the window a plan can reach. Upstreams are checked date by date: an upstream
whose history has a gap (a scheduler outage, a failed date followed by a successful one) holds back the
dates it did not finish, even when its watermark is past them.

Nothing here imports Airflow: the functions take a DB-API hook (anything with ``get_conn()``, e.g.
an Airflow ``DbApiHook``), so they are tested on sqlite3 and run on MySQL the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airflow_ha.edw.business_days import (
    ONE_DAY,
    business_day_on_or_before,
    days_between,
    is_business_day,
    missed_business_days,
    previous_business_day,
)
from airflow_ha.edw.catalogue import BUSINESS_DAY, SQL_PERCENT, Catalogue, Job

log = logging.getLogger(__name__)

SUCCESS = "success"
FAILED = "failed"


class CatchUpRefused(RuntimeError):
    """More business days missed than the job's ``max_catch_up``: a person should look first."""


@dataclass(frozen=True)
class Wait:
    """An upstream that has not finished a date the job needs."""

    job: str
    done_through: date | None  # its newest success
    missing: tuple[date, ...]  # every date it has not finished that the plan needs, oldest first

    def __str__(self) -> str:
        done = f"done through {self.done_through}" if self.done_through else "never succeeded"
        return f"{self.job} ({done}, needs {', '.join(str(day) for day in self.missing)})"


@dataclass(frozen=True)
class JobHistory:
    """What the history table says about one job: its newest success, and every success in the window."""

    latest: date | None = None
    done: frozenset[date] = frozenset()

    @classmethod
    def through(cls, latest: date, since: date | None = None) -> JobHistory:
        """A job that finished every date from ``since`` (default: ``latest``) to ``latest``."""
        return cls(latest, frozenset(days_between(since or latest, latest)))


@dataclass(frozen=True)
class Plan:
    """The outcome of the upstream check for one run of a job."""

    job: str
    business_date: date
    last_success: date | None
    days: tuple[date, ...]  # the dates to run, oldest first; empty: nothing to do
    waiting_on: tuple[Wait, ...]  # upstreams not done yet; empty: ready
    rerun: bool = False

    @property
    def ready(self) -> bool:
        return not self.waiting_on

    def describe(self) -> str:
        last = self.last_success or "never"
        if not self.days:
            return f"{self.job}: nothing to run for {self.business_date} (last success {last})"
        days = ", ".join(str(day) for day in self.days)
        head = f"{self.job}: {len(self.days)} business date(s) to run [{days}] (last success {last})"
        if self.waiting_on:
            return f"{head}; waiting on {'; '.join(str(wait) for wait in self.waiting_on)}"
        return f"{head}; every upstream is done"

    def to_xcom(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "business_date": self.business_date.isoformat(),
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "days": [day.isoformat() for day in self.days],
            "rerun": self.rerun,
        }


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])  # sqlite returns text


def paramstyle_of(conn: Any) -> str:
    """The DB-API ``paramstyle`` of the driver that made ``conn`` (MySQLdb: format, sqlite3: qmark)."""
    module = sys.modules.get(type(conn).__module__.partition(".")[0])
    return getattr(module, "paramstyle", "pyformat")


def bind(sql: str, parameters: Mapping[str, Any], paramstyle: str) -> tuple[str, Any]:
    """``%(name)s`` SQL (the catalogue's form) and its arguments in the driver's paramstyle."""
    if paramstyle in ("pyformat", "format"):  # MySQLdb, PyMySQL, psycopg: %(name)s with a dict as written
        return sql, dict(parameters)
    names: list[str] = []

    def replace(match) -> str:
        escaped, name = match.groups()
        if escaped:
            return "%"
        if name is None:
            raise ValueError(f"bare % in SQL (write %% for a literal %): {sql}")
        if paramstyle == "named":
            return f":{name}"
        names.append(name)
        return "?" if paramstyle == "qmark" else f":{len(names)}"

    converted = SQL_PERCENT.sub(replace, sql)
    if paramstyle == "named":
        return converted, dict(parameters)
    return converted, [parameters[name] for name in names]


def _execute(cursor, sql: str, parameters: Mapping[str, Any], paramstyle: str) -> None:
    statement, arguments = bind(sql, parameters, paramstyle)
    cursor.execute(statement, arguments)


def _query(hook: Any, sql: str, parameters: Mapping[str, Any]) -> list[tuple]:
    conn = hook.get_conn()
    try:
        cursor = conn.cursor()
        try:
            _execute(cursor, sql, parameters, paramstyle_of(conn))
            return cursor.fetchall()
        finally:
            cursor.close()
    finally:
        conn.close()


def fetch_history(hook: Any, table: str, jobs: Iterable[str], since: date | None = None) -> dict[str, JobHistory]:
    """Each job's newest success and its successful dates from ``since`` on, in ONE query; jobs that never
    succeeded are absent. Without ``since`` only the newest success is read."""
    names = list(dict.fromkeys(jobs))
    if not names:
        return {}
    placeholders = ", ".join(f"%(job{index})s" for index in range(len(names)))
    where = f"WHERE status = %(status)s AND job_name IN ({placeholders})"  # table: checked by the catalogue
    sql = f"SELECT job_name, MAX(business_date), 1 FROM {table} {where} GROUP BY job_name"
    parameters: dict[str, Any] = {"status": SUCCESS, **{f"job{index}": name for index, name in enumerate(names)}}
    if since is not None:
        sql += f" UNION ALL SELECT job_name, business_date, 0 FROM {table} {where} AND business_date >= %(since)s"
        parameters["since"] = since.isoformat()
    latest: dict[str, date] = {}
    done: dict[str, set[date]] = {}
    for name, day, is_latest in _query(hook, sql, parameters):
        if day is None:
            continue
        if int(is_latest):
            latest[str(name)] = _as_date(day)
        else:
            done.setdefault(str(name), set()).add(_as_date(day))
    return {name: JobHistory(latest[name], frozenset(done.get(name, ()))) for name in latest}


def history_window(job: Job, business_date: date) -> date:
    """The oldest date a plan for ``business_date`` can check: ``max_catch_up`` dates back (weekends and
    holidays included), and the business day before that for the upstreams of its first date."""
    return business_date - timedelta(days=2 * job.max_catch_up + 14)


def missed_days(last_success: date | None, up_to: date) -> list[date]:
    """A daily job's dates to run, oldest first: every date after ``last_success`` up to ``up_to`` (the
    first run of a job with no history: ``up_to`` alone)."""
    return [up_to] if last_success is None else days_between(last_success + ONE_DAY, up_to)


def upstream_date_needed(catalogue: Catalogue, upstream: str, day: date) -> date:
    """The business date ``upstream`` must have reached before ``day`` can run.

    ``day`` itself, except that a business-day upstream never has a weekend or holiday date: there
    it is the business day before (a daily job's Saturday waits on the business-day feed's Friday).
    """
    if catalogue.schedule_of(upstream) == BUSINESS_DAY:
        return business_day_on_or_before(day, catalogue.holidays)
    return day


def plan_job(
    catalogue: Catalogue, job: Job, business_date: date, history: Mapping[str, JobHistory], rerun: bool = False
) -> Plan:
    """Which dates the run of ``job`` for ``business_date`` has to run, and which upstreams it waits on.

    - business_day jobs: every business day missed since the last success, up to ``business_date``
      (:func:`missed_business_days`; on a weekend or holiday that can be none).
    - daily jobs: every date missed since the last success, up to ``business_date`` (:func:`missed_days`):
      a daily job whose runs did not happen (a scheduler outage) catches up its own dates.
    - ``rerun``: run ``business_date`` again even if it succeeded (business_day jobs: if it is one).

    Every planned date needs each upstream's success for that date (:func:`upstream_date_needed`),
    looked up date by date, not by the upstream's newest success: a gap in an upstream's history holds
    back exactly the dates it left out.
    """
    own = history.get(job.name, JobHistory())
    last = own.latest
    if job.schedule == BUSINESS_DAY:
        days = missed_business_days(last, business_date, catalogue.holidays)
        if rerun and is_business_day(business_date, catalogue.holidays) and business_date not in days:
            days.append(business_date)
    else:
        days = missed_days(last, business_date)
        if rerun and business_date not in days:
            days.append(business_date)
    days.sort()
    if len(days) > job.max_catch_up:
        raise CatchUpRefused(
            f"{job.name}: {len(days)} business dates to catch up ({days[0]} .. {days[-1]}, last success "
            f"{last}) is more than max_catch_up={job.max_catch_up}; run the backlog deliberately (raise "
            f"max_catch_up for the job in {catalogue.path}, or record the dates to skip as successes)"
        )
    waiting: list[Wait] = []
    for upstream in job.upstreams:
        have = history.get(upstream, JobHistory())
        needed = sorted({upstream_date_needed(catalogue, upstream, day) for day in days})
        missing = tuple(day for day in needed if day not in have.done)
        if missing:
            waiting.append(Wait(upstream, have.latest, missing))
    return Plan(
        job=job.name,
        business_date=business_date,
        last_success=last,
        days=tuple(days),
        waiting_on=tuple(waiting),
        rerun=rerun,
    )


def previous_date(catalogue: Catalogue, job: Job, day: date) -> date:
    if job.schedule == BUSINESS_DAY:
        return previous_business_day(day, catalogue.holidays)
    return day - timedelta(days=1)


def _record(cursor, table: str, job: str, day: date, status: str, paramstyle: str) -> None:
    finished_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    _execute(
        cursor,
        f"INSERT INTO {table} (job_name, business_date, status, finished_at) "
        "VALUES (%(job_name)s, %(business_date)s, %(status)s, %(finished_at)s)",
        {
            "job_name": job,
            "business_date": day.isoformat(),
            "status": status,
            "finished_at": finished_at.isoformat(sep=" "),
        },
        paramstyle,
    )


def run_days(
    hook: Any,
    catalogue: Catalogue,
    job: Job,
    days: Iterable[date],
    rerun_date: date | None = None,
    say: Callable[[str], None] = log.info,
) -> list[date]:
    """Run the job's tasks in order for each date, oldest first; returns the dates run.

    Each date is one transaction: its tasks, then its ``success`` row in the history table, then
    commit; if a task fails the date is rolled back, a ``failed`` row is recorded and the error
    raised, so the dates before it stay done and the ones after it are not attempted. (Statements
    that commit implicitly, such as DDL on MySQL, end that transaction early: keep tasks to DML, or
    make them idempotent.)

    Dates the history already shows as done are skipped (a retry after a failure resumes at the
    failed date), except ``rerun_date``, which runs again on purpose.
    """
    days = sorted(days)
    if not days:
        say(f"{job.name}: nothing to run")
        return []
    conn = hook.get_conn()
    ran: list[date] = []
    try:
        paramstyle = paramstyle_of(conn)
        get_autocommit = getattr(hook, "get_autocommit", None)
        if get_autocommit is not None and get_autocommit(conn):
            hook.set_autocommit(conn, False)
        done = fetch_history(hook, catalogue.history_table, [job.name], since=days[0]).get(job.name, JobHistory())
        for day in days:
            if day in done.done and day != rerun_date:
                say(f"{job.name} {day}: already done (the history has its success), skipped")
                continue
            parameters = {
                "business_date": day.isoformat(),
                "previous_business_date": previous_date(catalogue, job, day).isoformat(),
                "job_name": job.name,
            }
            cursor = conn.cursor()
            try:
                for position, task in enumerate(job.tasks, start=1):
                    started = time.monotonic()
                    _execute(cursor, task.sql, parameters, paramstyle)
                    rows = cursor.rowcount
                    say(
                        f"{job.name} {day} task {position}/{len(job.tasks)} {task.id}: "
                        f"{rows if rows is not None and rows >= 0 else '?'} row(s) in {time.monotonic() - started:.2f}s"
                    )
                _record(cursor, catalogue.history_table, job.name, day, SUCCESS, paramstyle)
                conn.commit()
            except Exception:
                conn.rollback()
                try:
                    _record(cursor, catalogue.history_table, job.name, day, FAILED, paramstyle)
                    conn.commit()
                except Exception as exc:  # the original error matters more; the failed row is a courtesy
                    say(f"{job.name} {day}: could not record the failure: {exc}")
                raise
            finally:
                cursor.close()
            say(f"{job.name} {day}: success recorded in {catalogue.history_table}")
            ran.append(day)
    finally:
        conn.close()
    return ran
