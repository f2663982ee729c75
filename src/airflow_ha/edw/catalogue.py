"""The EDW job catalogue: a YAML file listing every job, its calendar, upstreams and ordered SQL tasks.

``dags/edw_dynamic.py`` builds one DAG per job from it. Loading validates everything a DAG needs, so
a mistake in the file fails the DAG file's import with a message that names the file, the key path
and the line, e.g. ``dags/catalogue/edw_jobs.yaml: jobs[3].tasks[1].sql: missing (line 52)``.

The format (see ``dags/catalogue/edw_jobs.yaml`` for a full example)::

    history_table: edw_job_history     # (job_name, business_date, status, finished_at) in the EDW DB
    timezone: Asia/Seoul               # run_at and business dates are in it (default: Airflow's
                                       # [core] default_timezone, that of the deployment)
    defaults:                          # any job key below can be set here for every job
      conn_id: edw_db                  # Airflow connection id of the EDW database
      run_at: "02:00"                  # time of the daily / business-day run, in ``timezone``
      poke_interval: 5m                # how often a job checks its upstreams while waiting
      wait_timeout: 12h                # how long it waits for them before failing
      max_catch_up: 20                 # most business days one run catches up before refusing
      retries: 2
      retry_delay: 5m
      owner: edw
    holidays: [2026-12-25, 2026-12-28]
    holidays_through: 2027-12-31       # the list is complete through this date (default: the end of
                                       # the year of its last holiday); it must cover the next 12 months
    external_jobs:                     # upstreams that are not in this catalogue, with their calendar
      src.crm: business_day
    jobs:
      - name: edw.0003
        schedule: business_day         # or daily
        upstreams: [edw.0000, src.crm]
        description: customer dimension
        tasks:                         # run in this order, one SQL statement each
          - id: load
            sql: INSERT INTO t SELECT * FROM s WHERE business_date = %(business_date)s

SQL is one statement per task, with the parameters of :data:`SQL_PARAMETERS` written
``%(business_date)s``; a literal ``%`` is written ``%%`` (as with every pyformat DB-API driver).

Indexes in key paths count from 0. Durations are ``<number><s|m|h>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

ENV_CATALOGUE = "AIRFLOW_HA_EDW_CATALOGUE"  # path of the catalogue dags/edw_dynamic.py reads

DAILY = "daily"
BUSINESS_DAY = "business_day"
SCHEDULE_KINDS = (DAILY, BUSINESS_DAY)

# The parameters a task's SQL may use, and what they hold when it runs (all strings).
SQL_PARAMETERS = {
    "business_date": "the business date being run, YYYY-MM-DD",
    "previous_business_date": "the date before it in the job's calendar (business_day jobs: the business day before)",
    "job_name": "the job's name, e.g. edw.0007",
}

DAG_ID_PREFIX = "edw_dyn_"
MAX_NAME_LENGTH = 64  # edw_job_history.job_name is VARCHAR(64)

_JOB_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_TASK_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
_CONN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DURATION = re.compile(r"(\d+)\s*([smh])")
_RUN_AT = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
# Every % in task SQL: an escaped %%, a %(name)s parameter, or anything else (an error).
SQL_PERCENT = re.compile(r"%(?:(%)|\((\w*)\)s)?")

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours"}

TOP_LEVEL_KEYS = ("history_table", "timezone", "defaults", "holidays", "holidays_through", "external_jobs", "jobs")
CALENDAR_AHEAD = timedelta(days=365)  # how far ahead the holiday list must reach
DEFAULTABLE_KEYS = (
    "conn_id",
    "run_at",
    "poke_interval",
    "wait_timeout",
    "max_catch_up",
    "retries",
    "retry_delay",
    "owner",
)
JOB_KEYS = ("name", "schedule", "upstreams", "description", "tasks", *DEFAULTABLE_KEYS)
TASK_KEYS = ("id", "sql")

BUILTIN_DEFAULTS: dict[str, Any] = {
    "conn_id": "edw_db",
    "run_at": time(2, 0),
    "poke_interval": timedelta(minutes=5),
    "wait_timeout": timedelta(hours=12),
    "max_catch_up": 20,
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "owner": "edw",
}


class CatalogueError(ValueError):
    """The catalogue cannot be used; the message names the file, the key path and the line."""


@dataclass(frozen=True)
class Task:
    """One step of a job: a single SQL statement, run in the job's order for each business date."""

    id: str
    sql: str
    parameters: tuple[str, ...]  # the SQL_PARAMETERS the statement uses


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str  # DAILY or BUSINESS_DAY
    upstreams: tuple[str, ...]
    tasks: tuple[Task, ...]
    conn_id: str
    run_at: time
    poke_interval: timedelta
    wait_timeout: timedelta
    max_catch_up: int
    retries: int
    retry_delay: timedelta
    owner: str
    description: str = ""

    @property
    def dag_id(self) -> str:
        return dag_id_of(self.name)

    @property
    def cron(self) -> str:
        """Every day, or Monday to Friday, at ``run_at`` (holidays are handled by the job itself)."""
        days = "*" if self.schedule == DAILY else "1-5"
        return f"{self.run_at.minute} {self.run_at.hour} * * {days}"


@dataclass(frozen=True)
class Catalogue:
    path: Path
    history_table: str
    holidays: frozenset[date]
    external_jobs: dict[str, str]  # name -> schedule kind
    jobs: tuple[Job, ...]
    timezone: str = "UTC"  # IANA name: run_at and business dates are in it
    holidays_through: date | None = None  # the holiday list is complete through this date
    _by_name: dict[str, Job] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {job.name: job for job in self.jobs})

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def job(self, name: str) -> Job:
        return self._by_name[name]

    def schedule_of(self, name: str) -> str:
        """The calendar of a catalogue job or an external job."""
        if name in self._by_name:
            return self._by_name[name].schedule
        return self.external_jobs[name]


def dag_id_of(job_name: str) -> str:
    """``edw.0007`` -> ``edw_dyn_0007``; other names keep every part: ``mart.sales`` -> ``edw_dyn_mart_sales``."""
    return DAG_ID_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", job_name.removeprefix("edw."))


def load_catalogue(path: str | Path, default_timezone: str = "UTC", today: date | None = None) -> Catalogue:
    """Read and validate the catalogue at ``path``; raises :class:`CatalogueError`. ``default_timezone`` is
    the catalogue's when it names none (the DAG file passes Airflow's ``[core] default_timezone``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(f"{path}: no such file (set {ENV_CATALOGUE} to the catalogue's path)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read: {exc}") from None
    return parse_catalogue(text, source=path, default_timezone=default_timezone, today=today or date.today())


def parse_catalogue(
    text: str, source: str | Path = "<catalogue>", default_timezone: str = "UTC", today: date | None = None
) -> Catalogue:
    """Validate catalogue YAML ``text``; ``source`` is the file name used in error messages. ``today`` is
    where the holiday list's 12 months of cover are counted from (None: not checked, for fixtures with
    fixed dates; :func:`load_catalogue`, which the DAG file calls, checks from the date now)."""
    return _Parser(text, source).parse(default_timezone, today)


def _yaml_error(source: str | Path, exc: yaml.YAMLError) -> CatalogueError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return CatalogueError(f"{source}: {where}not valid YAML: {problem}")


class _Parser:
    def __init__(self, text: str, source: str | Path) -> None:
        self.text = text
        self.source = str(source)
        self.lines: dict[str, int] = {}  # key path -> 1-based line of its value

    # -- errors -----------------------------------------------------------------------------------

    def fail(self, where: str, problem: str) -> CatalogueError:
        line = self._line_of(where)
        suffix = f" (line {line})" if line else ""
        return CatalogueError(f"{self.source}: {where}: {problem}{suffix}")

    def _line_of(self, where: str) -> int | None:
        # The key itself, else its closest ancestor that is in the file (a missing key: its mapping).
        while where:
            if where in self.lines:
                return self.lines[where]
            cut = max(where.rfind("."), where.rfind("["))
            where = where[:cut] if cut > 0 else ""
        return None

    # -- YAML -------------------------------------------------------------------------------------

    def load_yaml(self) -> Any:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)  # nodes only: nothing is constructed
            if root is not None:
                self._index(root, "")
            return yaml.safe_load(self.text)
        except yaml.YAMLError as exc:
            raise _yaml_error(self.source, exc) from None

    def _index(self, node: yaml.Node, where: str) -> None:
        """Record each key path's line, and refuse duplicate keys (yaml.safe_load keeps the last silently)."""
        if where:
            self.lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = self._child(where, key)
                if key in seen and key != "<<":
                    raise CatalogueError(
                        f"{self.source}: {child}: duplicate key (lines {seen[key]} and {key_node.start_mark.line + 1})"
                    )
                seen[key] = key_node.start_mark.line + 1
                self._index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, f"{where}[{index}]")

    @staticmethod
    def _child(where: str, key: str) -> str:
        if where == "external_jobs":
            return f"{where}[{key}]"  # external job names contain dots: external_jobs[src.crm]
        return f"{where}.{key}" if where else key

    # -- values -----------------------------------------------------------------------------------

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(self._child(where, str(key)), f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def string(self, value: Any, where: str, pattern: re.Pattern | None = None, what: str = "") -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_kind(value)}")
        if not value.strip():
            raise self.fail(where, "empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(where, f"{value!r} is not {what}")
        return value

    def job_name(self, value: Any, where: str) -> str:
        name = self.string(value, where, _JOB_NAME, "a job name (letters, digits, _ in dot-separated parts)")
        if len(name) > MAX_NAME_LENGTH:
            raise self.fail(where, f"{name!r} is longer than {MAX_NAME_LENGTH} characters")
        return name

    def schedule(self, value: Any, where: str) -> str:
        if value not in SCHEDULE_KINDS:
            raise self.fail(where, f"{value!r} is not a schedule kind (expected one of: {', '.join(SCHEDULE_KINDS)})")
        return value

    def duration(self, value: Any, where: str) -> timedelta:
        match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise self.fail(where, f"expected a duration like 30s, 5m or 12h, got {value!r}")
        result = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        if not result:
            raise self.fail(where, "must be longer than 0s")
        return result

    def integer(self, value: Any, where: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {_kind(value)}")
        if value < minimum:
            raise self.fail(where, f"must be at least {minimum}, got {value}")
        return value

    def run_at(self, value: Any, where: str) -> time:
        if isinstance(value, int) and not isinstance(value, bool):
            raise self.fail(where, f'expected "HH:MM" in quotes; unquoted, YAML reads it as the number {value}')
        match = _RUN_AT.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise self.fail(where, f'expected a time "HH:MM", got {value!r}')
        return time(int(match.group(1)), int(match.group(2)))

    def a_date(self, value: Any, where: str) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(where, f"expected a date YYYY-MM-DD, got {value!r}")

    def sequence(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def sql(self, value: Any, where: str) -> tuple[str, tuple[str, ...]]:
        import sqlparse  # Airflow's common-sql provider depends on it

        text = self.string(value, where).strip()
        used: list[str] = []
        for match in SQL_PERCENT.finditer(text):
            escaped, name = match.groups()
            if escaped:
                continue
            if name is None:
                raise self.fail(
                    where,
                    f"bare % at character {match.start() + 1}: write %% for a literal %, and parameters as "
                    f"%(business_date)s",
                )
            if name not in SQL_PARAMETERS:
                raise self.fail(where, f"unknown parameter %({name})s (known: {', '.join(SQL_PARAMETERS)})")
            if name not in used:
                used.append(name)
        statements = sqlparse.split(text)
        if len(statements) != 1:
            raise self.fail(where, f"one SQL statement per task, found {len(statements)}: split it into tasks")
        return statements[0].rstrip(";").strip(), tuple(used)

    # -- the document -----------------------------------------------------------------------------

    def timezone(self, value: Any, where: str) -> str:
        import pendulum

        name = self.string(value, where)
        try:
            pendulum.timezone(name)
        except Exception:
            raise self.fail(where, f"{name!r} is not a time zone (an IANA name like Asia/Seoul or UTC)") from None
        return name

    def parse(self, default_timezone: str = "UTC", today: date | None = None) -> Catalogue:
        data = self.load_yaml()
        if data is None:
            raise CatalogueError(f"{self.source}: empty file (expected a mapping with a 'jobs' list)")
        if not isinstance(data, dict):
            raise CatalogueError(f"{self.source}: expected a mapping with a 'jobs' list at the top, got {_kind(data)}")
        self.mapping(data, "", TOP_LEVEL_KEYS)

        history_table = "edw_job_history"
        if "history_table" in data:
            history_table = self.string(data["history_table"], "history_table", _IDENTIFIER, "a table name")

        defaults = dict(BUILTIN_DEFAULTS)
        if "defaults" in data:
            given = self.mapping(data["defaults"], "defaults", DEFAULTABLE_KEYS)
            for key, value in given.items():
                defaults[key] = self.defaultable(key, value, f"defaults.{key}")

        holidays: set[date] = set()
        for index, value in enumerate(self.sequence(data.get("holidays", []), "holidays")):
            day = self.a_date(value, f"holidays[{index}]")
            if day in holidays:
                raise self.fail(f"holidays[{index}]", f"duplicate holiday {day}")
            holidays.add(day)

        timezone = self.timezone(data.get("timezone", default_timezone), "timezone")
        through = None
        if "holidays_through" in data:
            through = self.a_date(data["holidays_through"], "holidays_through")
        elif holidays:
            through = date(max(holidays).year, 12, 31)
        if through is not None and today is not None and through < today + CALENDAR_AHEAD:
            # past its end, holidays would silently count as business days
            raise self.fail(
                "holidays_through" if "holidays_through" in data else "holidays",
                f"the holiday calendar ends {through}; it must cover the next 12 months (through "
                f"{today + CALENDAR_AHEAD}): add the holidays of {through.year + 1} and set holidays_through",
            )

        external: dict[str, str] = {}
        if "external_jobs" in data:
            given = data["external_jobs"]
            if not isinstance(given, dict):
                raise self.fail("external_jobs", f"expected a mapping of job name to schedule kind, got {_kind(given)}")
            for name, kind in given.items():
                where = f"external_jobs[{name}]"
                external[self.job_name(name, where)] = self.schedule(kind, where)

        if "jobs" not in data:
            raise CatalogueError(f"{self.source}: jobs: missing")
        raw_jobs = self.sequence(data["jobs"], "jobs")
        if not raw_jobs:
            raise self.fail("jobs", "empty: the catalogue has no jobs")
        jobs = [self.job(raw, f"jobs[{index}]", defaults) for index, raw in enumerate(raw_jobs)]

        self.check_names(jobs, external)
        self.check_upstreams(jobs, external)
        self.check_cycles(jobs)
        return Catalogue(
            path=Path(self.source),
            history_table=history_table,
            holidays=frozenset(holidays),
            external_jobs=external,
            jobs=tuple(jobs),
            timezone=timezone,
            holidays_through=through,
        )

    def defaultable(self, key: str, value: Any, where: str) -> Any:
        if key == "conn_id":
            return self.string(value, where, _CONN_ID, "an Airflow connection id")
        if key == "owner":
            return self.string(value, where)
        if key == "run_at":
            return self.run_at(value, where)
        if key in ("poke_interval", "wait_timeout", "retry_delay"):
            return self.duration(value, where)
        if key == "max_catch_up":
            return self.integer(value, where, minimum=1)
        if key == "retries":
            return self.integer(value, where, minimum=0)
        raise AssertionError(key)  # DEFAULTABLE_KEYS and this function list the same keys

    def job(self, raw: Any, where: str, defaults: dict[str, Any]) -> Job:
        self.mapping(raw, where, JOB_KEYS)
        for required in ("name", "schedule", "tasks"):
            if required not in raw:
                raise self.fail(f"{where}.{required}", "missing")
        name = self.job_name(raw["name"], f"{where}.name")
        schedule = self.schedule(raw["schedule"], f"{where}.schedule")

        upstreams: list[str] = []
        for index, value in enumerate(self.sequence(raw.get("upstreams", []), f"{where}.upstreams")):
            upstream = self.job_name(value, f"{where}.upstreams[{index}]")
            if upstream in upstreams:
                raise self.fail(f"{where}.upstreams[{index}]", f"{upstream!r} is listed twice")
            if upstream == name:
                raise self.fail(f"{where}.upstreams[{index}]", f"job {name!r} cannot wait on itself")
            upstreams.append(upstream)

        description = ""
        if "description" in raw:
            description = self.string(raw["description"], f"{where}.description")

        raw_tasks = self.sequence(raw["tasks"], f"{where}.tasks")
        if not raw_tasks:
            raise self.fail(f"{where}.tasks", f"empty: job {name!r} has nothing to run")
        tasks: list[Task] = []
        for index, raw_task in enumerate(raw_tasks):
            task_where = f"{where}.tasks[{index}]"
            self.mapping(raw_task, task_where, TASK_KEYS)
            for required in TASK_KEYS:
                if required not in raw_task:
                    raise self.fail(f"{task_where}.{required}", "missing")
            task_id = self.string(raw_task["id"], f"{task_where}.id", _TASK_ID, "a task id (letters, digits, _ . -)")
            if any(task.id == task_id for task in tasks):
                raise self.fail(f"{task_where}.id", f"duplicate task id {task_id!r} in job {name!r}")
            sql, parameters = self.sql(raw_task["sql"], f"{task_where}.sql")
            tasks.append(Task(id=task_id, sql=sql, parameters=parameters))

        settings = {
            key: self.defaultable(key, raw[key], f"{where}.{key}") if key in raw else defaults[key]
            for key in DEFAULTABLE_KEYS
        }
        return Job(
            name=name,
            schedule=schedule,
            upstreams=tuple(upstreams),
            tasks=tuple(tasks),
            description=description,
            **settings,
        )

    def check_names(self, jobs: list[Job], external: dict[str, str]) -> None:
        seen: dict[str, int] = {}
        dag_ids: dict[str, int] = {}
        for index, job in enumerate(jobs):
            where = f"jobs[{index}].name"
            if job.name in seen:
                raise self.fail(where, f"duplicate job {job.name!r} (also jobs[{seen[job.name]}])")
            if job.name in external:
                raise self.fail(where, f"job {job.name!r} is also listed in external_jobs")
            if job.dag_id in dag_ids:
                other = jobs[dag_ids[job.dag_id]].name
                raise self.fail(where, f"job {job.name!r} and job {other!r} would both be DAG {job.dag_id!r}")
            seen[job.name] = index
            dag_ids[job.dag_id] = index

    def check_upstreams(self, jobs: list[Job], external: dict[str, str]) -> None:
        known = {job.name for job in jobs} | set(external)
        for index, job in enumerate(jobs):
            for position, upstream in enumerate(job.upstreams):
                if upstream not in known:
                    raise self.fail(
                        f"jobs[{index}].upstreams[{position}]",
                        f"unknown job {upstream!r}: not in jobs, and not in external_jobs",
                    )

    def check_cycles(self, jobs: list[Job]) -> None:
        index_of = {job.name: index for index, job in enumerate(jobs)}
        upstreams = {job.name: [u for u in job.upstreams if u in index_of] for job in jobs}
        done: set[str] = set()
        for start in upstreams:
            if start in done:
                continue
            # Iterative depth-first search; `path` is the chain from `start` to the current job.
            path: list[str] = [start]
            on_path = {start}
            stack: list[Iterator[str]] = [iter(upstreams[start])]
            while stack:
                upstream = next(stack[-1], None)
                if upstream is None:
                    stack.pop()
                    finished = path.pop()
                    on_path.discard(finished)
                    done.add(finished)
                    continue
                if upstream in on_path:
                    cycle = [*path[path.index(upstream) :], upstream]
                    raise self.fail(
                        f"jobs[{index_of[upstream]}].upstreams",
                        "cycle between jobs: " + " -> ".join(cycle) + " (each waits on the next)",
                    )
                if upstream not in done:
                    path.append(upstream)
                    on_path.add(upstream)
                    stack.append(iter(upstreams[upstream]))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, date):
        return f"a date ({value})"
    return type(value).__name__
