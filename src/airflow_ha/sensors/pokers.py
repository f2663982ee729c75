"""What a shard pokes, one kind at a time, in batches.

A :class:`Poker` knows one kind of target. ``validate`` normalises a target (or raises
:class:`SensorConfigError` naming the bad field) on the worker at defer time, so a bad sensor fails
before it waits. ``batch_key`` groups targets that one call can answer, and ``poke_batch`` answers a
group with one listing or one query: that is how a shard with 500 waiting sensors on 50 targets in 3
directories does 3 directory listings per interval, not 500 ``stat`` calls.

``poke_batch`` is synchronous (file system, DB-API drivers); the hub runs it in a thread. A failure
waiting cannot fix (a connection id that is not defined, a table that does not exist, no permission) is
returned ``permanent``: the task fails at once with the cause. Anything else (a database or a mount that
is away) is retried next interval, and the detail says so.
"""

from __future__ import annotations

import fnmatch
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from airflow_ha.sensors.errors import SensorConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class PokeResult:
    ready: bool
    detail: str  # what was seen, for logs, the status page and timeout messages
    error: bool = False  # the poke failed; poked again next interval unless permanent
    permanent: bool = False  # waiting cannot help (no such connection or table, no permission): fail the task
    slow: bool = False  # the poke did not return within the poke timeout (still running)
    ready_since: float | None = None  # epoch seconds the target was there from, where the poker knows (mtime)

    @property
    def state(self) -> str:
        """What the sensor list shows: ready, waiting, retrying, slow or failed."""
        if self.ready:
            return "ready"
        if self.permanent:
            return "failed"
        if self.slow:
            return "slow"
        return "retrying" if self.error else "waiting"


class Poker(ABC):
    kind: str

    @abstractmethod
    def validate(self, target: dict[str, Any]) -> dict[str, Any]:
        """The normalised target; raises SensorConfigError naming the field that cannot work."""

    @abstractmethod
    def describe(self, target: dict[str, Any]) -> str:
        """A short human name for the target, used in messages."""

    @abstractmethod
    def batch_key(self, target: dict[str, Any]) -> Hashable:
        """Targets with equal keys are answered by one ``poke_batch`` call."""

    @abstractmethod
    def poke_batch(self, targets: list[dict[str, Any]]) -> list[PokeResult]:
        """One result per target, in order; one listing/query for the whole batch."""

    def _require_str(self, target: dict[str, Any], name: str) -> str:
        value = target.get(name)
        if not isinstance(value, str) or not value.strip():
            raise SensorConfigError(f"{self.kind} sensor: {name!r} must be a non-empty string, got {value!r}")
        return value

    def _unknown_fields(self, target: dict[str, Any], allowed: set[str]) -> None:
        extra = sorted(set(target) - allowed)
        if extra:
            raise SensorConfigError(f"{self.kind} sensor: unknown field(s) {extra}; allowed: {sorted(allowed)}")


class FilePoker(Poker):
    """``{"path": "/abs/dir/name-or-glob"}``: ready when the directory holds a matching entry.

    Globs are allowed in the last path component only, so one ``os.listdir`` of the directory answers
    every target in it. Upstream-job markers (``edw.0003.job``) are files of this kind.
    """

    kind = "file"

    def validate(self, target):
        self._unknown_fields(target, {"path"})
        path = self._require_str(target, "path")
        if not os.path.isabs(path):
            raise SensorConfigError(f"file sensor: path {path!r} must be absolute (shards run in other pods)")
        directory, name = os.path.split(os.path.normpath(path))
        if not name:
            raise SensorConfigError(f"file sensor: path {path!r} names a directory, not a file")
        if _GLOB_CHARS & set(directory):
            raise SensorConfigError(f"file sensor: path {path!r} has a glob in a directory; only the file name may")
        return {"path": os.path.join(directory, name)}

    def describe(self, target):
        return f"file {target['path']}"

    def batch_key(self, target):
        return os.path.dirname(target["path"])

    def poke_batch(self, targets):
        directory = os.path.dirname(targets[0]["path"])
        try:
            names = os.listdir(directory)
        except FileNotFoundError:  # not yet: the upstream creates the day's directory
            return [PokeResult(False, f"directory {directory} does not exist")] * len(targets)
        except PermissionError as exc:
            failed = PokeResult(False, f"no permission to list {directory}: {exc}", error=True, permanent=True)
            return [failed] * len(targets)
        except NotADirectoryError:
            failed = PokeResult(False, f"{directory} is not a directory", error=True, permanent=True)
            return [failed] * len(targets)
        except OSError as exc:  # a mount that is away (EIO, ESTALE): it may come back
            return [PokeResult(False, f"cannot list {directory} ({RETRYING}): {exc}", error=True)] * len(targets)
        results = []
        for target in targets:
            pattern = os.path.basename(target["path"])
            if _GLOB_CHARS & set(pattern):
                found = sorted(fnmatch.filter(names, pattern))
            else:
                found = [pattern] if pattern in names else []
            if found:
                path = os.path.join(directory, found[0])
                results.append(PokeResult(True, f"found {path}", ready_since=_mtime(path)))
            else:
                results.append(PokeResult(False, f"no {pattern} in {directory}"))
        return results


def _mtime(path: str) -> float | None:
    """When the marker was written (for the marker-to-success metric); None if it is already gone."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


RETRYING = "poked again next interval"

# DB-API errors that waiting cannot fix, by the codes the drivers give them.
_MYSQL_PERMANENT = {
    1044: "access denied to the database",
    1045: "access denied (user or password)",
    1049: "unknown database",
    1054: "unknown column",
    1142: "command denied on the table",
    1143: "command denied on a column",
    1146: "table does not exist",
}
_POSTGRES_PERMANENT = {
    "42P01": "table does not exist",
    "42703": "column does not exist",
    "42501": "insufficient privilege",
    "3D000": "database does not exist",
    "28P01": "password authentication failed",
    "28000": "invalid authorization",
}
_PERMANENT_WORDS = ("no such table", "no such column", "doesn't exist", "does not exist", "permission denied")


def permanent_db_error(exc: BaseException) -> str | None:
    """Why waiting cannot fix this database error (a missing table, no permission), or None (retry it)."""
    code = getattr(exc, "pgcode", None)  # psycopg
    if code in _POSTGRES_PERMANENT:
        return _POSTGRES_PERMANENT[code]
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_PERMANENT:  # MySQLdb, PyMySQL
        return _MYSQL_PERMANENT[args[0]]
    text = str(exc).lower()
    if any(word in text for word in _PERMANENT_WORDS) and "connect" not in text:  # sqlite, other drivers
        return "the query cannot work as written"
    return None


class ConnectionNotDefined(LookupError):
    pass


def _dbapi_hook(conn_id: str):
    # Task SDK's BaseHook resolves connections on workers and, through the supervisor, in triggerers.
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":  # airflow.sdk's or airflow's: the id is not defined
            raise ConnectionNotDefined(f"connection {conn_id!r} is not defined") from exc
        raise
    hook = conn.get_hook()
    if not hasattr(hook, "get_records"):
        raise ConnectionNotDefined(f"connection {conn_id!r} ({conn.conn_type}) is not a SQL database connection")
    return hook


def _db_failure(prefix: str, exc: BaseException) -> PokeResult:
    """A failed connection or query: permanent when waiting cannot fix it, else retried next interval."""
    if isinstance(exc, ConnectionNotDefined):
        return PokeResult(False, f"{prefix}: {exc}", error=True, permanent=True)
    why = permanent_db_error(exc)
    if why is not None:
        return PokeResult(False, f"{prefix}: {why}: {exc}", error=True, permanent=True)
    return PokeResult(False, f"{prefix} ({RETRYING}): {exc}", error=True)


class JobHistoryPoker(Poker):
    """``{"conn_id", "table", "job", "business_date"}``: ready when the job-history table has a success row.

    The table has columns ``job_name``, ``business_date`` and ``status``; one query per (connection,
    table) answers every job and date the shard waits on.
    """

    kind = "job_history"
    FIELDS = {"conn_id", "table", "job", "business_date"}

    def validate(self, target):
        self._unknown_fields(target, self.FIELDS)
        normalised = {name: self._require_str(target, name) for name in sorted(self.FIELDS)}
        if not _IDENTIFIER.match(normalised["table"]):
            raise SensorConfigError(f"job_history sensor: table {normalised['table']!r} is not a plain SQL identifier")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", normalised["business_date"]):
            raise SensorConfigError(
                f"job_history sensor: business_date {normalised['business_date']!r} is not YYYY-MM-DD"
            )
        return normalised

    def describe(self, target):
        return f"job {target['job']} on {target['business_date']} in {target['table']} ({target['conn_id']})"

    def batch_key(self, target):
        return (target["conn_id"], target["table"])

    def poke_batch(self, targets):
        conn_id, table = self.batch_key(targets[0])
        jobs = sorted({t["job"] for t in targets})
        dates = sorted({t["business_date"] for t in targets})
        try:
            hook = _dbapi_hook(conn_id)
            ph = hook.placeholder  # table was checked to be a plain identifier in validate()
            sql = (
                f"SELECT job_name, business_date FROM {table} WHERE status = 'success' "
                f"AND job_name IN ({', '.join([ph] * len(jobs))}) AND business_date IN ({', '.join([ph] * len(dates))})"
            )
            rows = hook.get_records(sql, parameters=[*jobs, *dates])
        except Exception as exc:  # a DB outage is retried; a missing connection or table fails the tasks
            return [_db_failure(f"query on {conn_id} failed", exc)] * len(targets)
        done = {(str(job), str(day)[:10]) for job, day in rows}
        return [
            PokeResult(True, f"{t['job']} succeeded for {t['business_date']}")
            if (t["job"], t["business_date"]) in done
            else PokeResult(False, f"no success row for {t['job']} on {t['business_date']}")
            for t in targets
        ]


class SqlPoker(Poker):
    """``{"conn_id", "sql", "parameters"}``: ready when the first cell of the first row is truthy.

    Arbitrary queries cannot be merged into one statement safely, so a batch is one connection per
    connection id per interval running each distinct query once.
    """

    kind = "sql"

    def validate(self, target):
        self._unknown_fields(target, {"conn_id", "sql", "parameters"})
        normalised = {"conn_id": self._require_str(target, "conn_id"), "sql": self._require_str(target, "sql").strip()}
        parameters = target.get("parameters")
        if parameters is not None and not isinstance(parameters, (list, dict)):
            raise SensorConfigError(f"sql sensor: parameters must be a list or a dict, got {type(parameters).__name__}")
        normalised["parameters"] = parameters
        return normalised

    def describe(self, target):
        sql = " ".join(target["sql"].split())
        return f"query on {target['conn_id']}: {sql[:80]}{'...' if len(sql) > 80 else ''}"

    def batch_key(self, target):
        return target["conn_id"]

    def poke_batch(self, targets):
        try:
            hook = _dbapi_hook(targets[0]["conn_id"])
            conn = hook.get_conn()
        except Exception as exc:
            return [_db_failure(f"connect to {targets[0]['conn_id']} failed", exc)] * len(targets)
        results = []
        try:
            for target in targets:
                cursor = conn.cursor()
                try:
                    # No parameters -> no argument: drivers then leave a literal "%" in the SQL alone.
                    cursor.execute(target["sql"], *([target["parameters"]] if target["parameters"] else []))
                    row = cursor.fetchone()
                    results.append(PokeResult(bool(row and row[0]), f"first cell {row[0]!r}" if row else "no rows"))
                except Exception as exc:
                    results.append(_db_failure("query failed", exc))
                finally:
                    cursor.close()
        finally:
            conn.close()
        return results


POKERS: dict[str, Poker] = {p.kind: p for p in (FilePoker(), JobHistoryPoker(), SqlPoker())}


def get_poker(kind: str) -> Poker:
    try:
        return POKERS[kind]
    except KeyError:
        known = ", ".join(sorted(POKERS))
        raise SensorConfigError(f"unknown smart sensor kind {kind!r}; known kinds: {known}") from None
