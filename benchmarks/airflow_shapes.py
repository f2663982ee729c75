"""What HA costs end to end: Airflow tasks/s and latency of this chart's shape against the stock shape.

``python -m benchmarks airflow_shapes [--quick] [--shapes=stock,ha,ha-nowait] [--workloads=wide,chain,sensors]
[--wide-tasks=1000] [--chain-runs=200] [--sensors=500] [--targets=50] [--worker-slots=8] [--idle-seconds=60]
[--pin] [--out=FILE] [--keep]`` (``--quick``: 200 wide tasks, 40 chain runs, 100 sensors on 10 targets).

Every shape is the whole deployment as real processes on 127.0.0.1 (:class:`LocalAirflow`, the topology the
integration suites run), started in turn on the same cores and stopped before the next one starts:

* ``stock`` - the official chart's shape: 1 scheduler, one ``redis-server`` (AOF everysec) with stock
  ``redis://`` and Airflow's own Celery config, one MySQL 9.7 server, one triggerer, Airflow's defaults;
* ``ha`` - this chart's shape with its defaults: 2 schedulers, a 6-node Redis Cluster through
  ``rediscluster://`` with ``CELERY_CONFIG`` (WAIT for one replica after every publish), a 3-member MySQL
  Group Replication group behind HAProxy (``airflow-ha mysql-agent`` per member, as the chart runs it),
  the chart's ``config:`` values as Airflow config, the two triggerers and 2 sensor-shard groups of 2;
* ``ha-nowait`` - ``ha`` with ``?replication_wait_replicas=0`` in the broker URL (how the chart passes
  ``broker.transportOptions``): the difference to ``ha`` is what the replication wait costs.

Both run 2 Celery workers with ``--worker-slots`` slots each and one api-server (the chart runs 2; the
Execution API every task calls is on that path in both shapes alike). Workloads, each on every shape:

* ``wide`` - one DAG run of ``--wide-tasks`` no-op Python tasks, all schedulable at once;
* ``chain`` - ``--chain-runs`` runs of a 5-task chain of no-op tasks, triggered at once through the API;
* ``sensors`` - one run of ``--sensors`` file sensors on ``--targets`` files, released at once after every
  sensor has deferred: smart sensors (``SmartFileSensor``, on the shards) in the HA shapes, Airflow's
  deferrable ``FileSensor`` (``FileTrigger`` on the triggerer, resumed on a worker) in the stock one.

Figures per workload and shape, all from the metadata DB's task rows and the servers themselves:
tasks/s (tasks / (last end - trigger, or release for sensors)); queued->running and scheduled->success
(release->success for sensors) p50/p99; scheduler CPU seconds per 1,000 tasks (every process of the
schedulers' process groups, /proc); machine CPU seconds per 1,000 tasks (/proc/stat, every process on the
machine: the servers, Airflow, this driver); Redis commands per task (``INFO commandstats`` of every node,
replicas included); and the ratio of tasks/s to stock. Then CPU seconds per 1,000 tasks by part (each
Airflow component kind, the Redis master of the queue and the other nodes, the database primary and the rest
of the group: agents, HAProxy, secondaries), the cores each part keeps busy with nothing to run
(``--idle-seconds`` after the warm-up), and a linear model: the tasks/s one core of each part sustains.

Every process shares the machine's cores, so a shape's extra processes take CPU from its workers. ``--pin``
gives the workers the last core and everything else the others (``taskset``), as a cluster gives workers
nodes of their own: then the ratio shows what the HA path itself costs a task. Nothing is asserted: the
numbers are this machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import sqlalchemy as sa
import yaml
from tests.harness.failover.api import AirflowAPI
from tests.harness.servers.airflow import LocalAirflow
from tests.harness.servers.mysql import MySQL
from tests.harness.servers.mysql_group import MySQLGroup
from tests.harness.servers.redis_cluster import RedisCluster
from tests.harness.waiting import wait_until

from airflow_ha.broker.keys import queue_slot
from benchmarks._celery import PlainRedis, commandstats, live_clients
from benchmarks._cpu import cpu_seconds_by_part, machine_cpu_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAIN_LENGTH = 5
POKE_INTERVAL = 5  # seconds, both sensor kinds
TERMINAL = ("success", "failed", "skipped", "upstream_failed", "removed")
# Chart config keys that say where pods find each other; on 127.0.0.1 the harness sets its own.
NOT_LOCAL = {
    ("core", "hostname_callable"),
    ("logging", "worker_log_server_port"),
    ("logging", "trigger_log_server_port"),
}


@dataclass(frozen=True)
class Shape:
    name: str
    schedulers: int
    ha: bool  # Redis Cluster, Group Replication, the chart's config, smart sensors on shards
    wait: bool = True

    @property
    def sensor_kind(self) -> str:
        return "smart" if self.ha else "deferrable"


SHAPES = {
    "stock": Shape("stock", schedulers=1, ha=False),
    "ha": Shape("ha", schedulers=2, ha=True),
    "ha-nowait": Shape("ha-nowait", schedulers=2, ha=True, wait=False),
}
WORKLOADS = ("wide", "chain", "sensors")

DAGS = '''\
"""Benchmark DAGs written by benchmarks/airflow_shapes.py for one shape."""
import pendulum
from airflow.sdk import DAG, chain, task

START = pendulum.datetime(2024, 1, 1, tz="UTC")


@task
def noop():
    pass


with DAG("bench_wide", schedule=None, start_date=START, catchup=False, max_active_runs=1,
         max_active_tasks={wide_tasks}):
    for i in range({wide_tasks}):
        noop.override(task_id=f"t{{i:04d}}")()

with DAG("bench_chain", schedule=None, start_date=START, catchup=False, max_active_runs={chain_runs},
         max_active_tasks={chain_length}):
    chain(*[noop.override(task_id=f"step{{i}}")() for i in range({chain_length})])

with DAG("bench_sensors", schedule=None, start_date=START, catchup=False, max_active_tasks={sensors}):
    for i in range({sensors}):
        path = "{marker_dir}/target.%03d" % (i % {targets})
        {sensor}
'''
SENSOR_LINES = {
    "smart": (
        "from airflow_ha.sensors.operators import SmartFileSensor",
        'SmartFileSensor(task_id=f"s{{i:04d}}", filepath=path, poke_interval={poke}, timeout=3600)',
    ),
    "deferrable": (
        "from airflow.providers.standard.sensors.filesystem import FileSensor",
        'FileSensor(task_id=f"s{{i:04d}}", filepath=path, poke_interval={poke}, timeout=3600, deferrable=True)',
    ),
}


def dag_source(args, shape: Shape, marker_dir: Path) -> str:
    imports, line = SENSOR_LINES[shape.sensor_kind]
    text = DAGS.format(
        wide_tasks=args.wide_tasks,
        chain_runs=args.chain_runs,
        chain_length=CHAIN_LENGTH,
        sensors=args.sensors,
        targets=args.targets,
        marker_dir=marker_dir,
        sensor=line.format(poke=POKE_INTERVAL),
    )
    return text.replace("from airflow.sdk import", f"{imports}\nfrom airflow.sdk import", 1)


def chart_values() -> dict:
    return yaml.safe_load((REPO_ROOT / "chart" / "values.yaml").read_text(encoding="utf-8"))


def chart_config_env() -> dict[str, str]:
    """The chart's default ``config:`` as the ``AIRFLOW__SECTION__KEY`` variables its pods get."""
    return {
        f"AIRFLOW__{section.upper()}__{key.upper()}": str(value)
        for section, options in chart_values()["config"].items()
        for key, value in options.items()
        if (section, key) not in NOT_LOCAL
    }


# -- measuring ----------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def seconds(later: datetime | None, earlier: datetime | float | None) -> float | None:
    if later is None or earlier is None:
        return None
    start = earlier if isinstance(earlier, float) else earlier.replace(tzinfo=UTC).timestamp()
    return later.replace(tzinfo=UTC).timestamp() - start


# -- one shape's deployment ---------------------------------------------------------------------------------
@dataclass
class Deployment:
    shape: Shape
    base: Path
    args: argparse.Namespace
    redis: RedisCluster | PlainRedis | None = None
    db: MySQLGroup | MySQL | None = None
    airflow: LocalAirflow | None = None
    api: AirflowAPI | None = None
    engine: sa.Engine | None = None
    marker_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.marker_dir = self.base / "markers"

    def start(self) -> None:
        password = secrets.token_hex(12)
        if self.shape.ha:
            self.redis = RedisCluster(self.base / "redis", password=password).start()
            self.redis.wait_healthy()
            group = chart_values()["mysql"]
            self.db = MySQLGroup(
                self.base / "mysql",
                password=secrets.token_hex(12),
                check_interval_ms=group["proxy"]["checkIntervalMs"],
                agent_interval=group["groupReplication"]["agent"]["interval"],
            ).start()
            self.db.wait_online(timeout=240)
            broker_url = self.redis.url() + ("" if self.shape.wait else "?replication_wait_replicas=0")
            celery_config = "airflow_ha.broker.celery_config.CELERY_CONFIG"
            extra_env = chart_config_env()
        else:
            self.redis = PlainRedis(self.base / "redis", password=password).start()
            self.db = MySQL(self.base / "mysql", password=secrets.token_hex(12)).start()
            broker_url, celery_config = self.redis.url(), None  # Airflow's DEFAULT_CELERY_CONFIG
            extra_env = {"AIRFLOW__TRIGGERER__QUEUES_ENABLED": "False"}  # Airflow's default
        extra_env["AIRFLOW_CONN_FS_DEFAULT"] = "fs://"  # FileSensor's connection (a base path of "")
        dags = self.base / "dags"
        dags.mkdir(parents=True)
        self.marker_dir.mkdir()
        (dags / "bench_dags.py").write_text(dag_source(self.args, self.shape, self.marker_dir), encoding="utf-8")
        self.airflow = LocalAirflow(
            base_dir=self.base / "airflow",
            sql_alchemy_conn=self.db.sqlalchemy_url,
            broker_url=broker_url,
            dags_folder=dags,
            celery_config_options=celery_config,
            schedulers=self.shape.schedulers,
            workers=2,
            worker_concurrency=self.args.worker_slots,
            sensor_shards=2 if self.shape.ha else 0,
            extra_env=extra_env,
        )
        self.airflow.migrate(timeout=900)
        self.airflow.components = [
            c for c in self.airflow.plan() if self.shape.ha or c.name != "triggerer-default"
        ]  # stock Airflow: one triggerer, no queues
        if self.args.pin:
            for worker in self.airflow.by_kind("worker"):
                worker.argv = ["taskset", "--cpu-list", self.args.pin[1], *worker.argv]
        self.airflow.start()
        self.api = AirflowAPI(self.airflow.api_url, password=self.airflow.admin_password)
        self.engine = _engine(self.db.sqlalchemy_url)

        wanted = {"bench_wide", "bench_chain", "bench_sensors"}
        wait_until(self._dags_parsed(wanted), 300, "the benchmark DAGs parsed", interval=2, abort=self.exited)
        for dag_id in sorted(wanted):
            self.api.unpause(dag_id)

    def _dags_parsed(self, wanted: set[str]):
        def parsed() -> bool:
            try:
                return wanted <= self.api.dag_ids()
            except Exception:  # api-server still starting
                return False

        return parsed

    def exited(self) -> str | None:
        for component in self.airflow.components:
            if component.proc is not None and component.proc.poll() is not None:
                return f"{component.name} exited {component.proc.returncode}:\n{component.tail(40)}"
        return None

    def redis_clients(self) -> list:
        return live_clients(self.redis if self.shape.ha else None, None if self.shape.ha else self.redis)

    def parts(self) -> dict[str, set[int]]:
        """Process groups by what they are: the Airflow component kinds; the Redis master of the ``default``
        queue and the other Redis nodes; the database primary and, in the HA shape, the other members with
        every member's agent and HAProxy. The parts that cannot scale out are the two single ones."""
        parts: dict[str, set[int]] = {}
        for component in self.airflow.components:
            if component.pid:
                parts.setdefault(component.kind, set()).add(component.pid)
        if isinstance(self.redis, RedisCluster):
            hot = self.redis.master_for_slot(queue_slot("default"))
            parts["redis queue master"] = {hot.proc.pid}
            parts["redis others"] = {n.proc.pid for n in self.redis.nodes if n.proc and n is not hot}
        else:
            parts["redis queue master"] = {self.redis.proc.pid}
        if isinstance(self.db, MySQLGroup):
            [primary] = self.db.primaries()
            others = [m.proc for i, m in enumerate(self.db.members) if i != primary]
            others += [a.proc for a in self.db.agents if a] + [self.db.haproxy]
            parts["db primary"] = {self.db.members[primary].proc.pid}
            parts["db others"] = {p.pid for p in others if p}
        else:
            parts["db primary"] = {self.db.proc.pid}
        return parts

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        for part in (self.airflow, self.db, self.redis):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()


def _engine(url: str):

    # MySQL TIMESTAMP columns come back in the session's time zone: UTC, as Airflow's own sessions read them.
    return sa.create_engine(url, connect_args={"init_command": "SET time_zone = '+00:00'"}, pool_pre_ping=True)


def task_rows(engine, dag_id: str, run_prefix: str) -> list[dict]:

    query = sa.text(
        "SELECT state, scheduled_dttm, queued_dttm, start_date, end_date FROM task_instance "
        "WHERE dag_id = :dag AND run_id LIKE :runs"
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query, {"dag": dag_id, "runs": f"{run_prefix}%"})]


def wait_rows(deployment: Deployment, dag_id: str, prefix: str, expected: int, done, timeout: float, what: str):

    last: list[dict] = []

    def reached():
        last[:] = task_rows(deployment.engine, dag_id, prefix)
        return len(last) >= expected and done(last)

    def progress() -> str:
        states: dict[str, int] = {}
        for row in last:
            states[row["state"]] = states.get(row["state"], 0) + 1
        return f"{len(last)} of {expected} task rows: {states}"

    wait_until(reached, timeout, what, interval=1, abort=deployment.exited, explain=progress)
    return last


def run_workload(deployment: Deployment, workload: str, args) -> dict:

    dag_id = f"bench_{workload}"
    prefix = f"{workload}-{uuid.uuid4().hex[:6]}"
    runs = args.chain_runs if workload == "chain" else 1
    tasks = {"wide": args.wide_tasks, "chain": args.chain_runs * CHAIN_LENGTH, "sensors": args.sensors}[workload]
    clients = deployment.redis_clients()
    commands, cpu = sum(commandstats(clients).values()), machine_cpu_seconds()
    parts = deployment.parts()
    part_cpu = cpu_seconds_by_part(parts)
    started = time.time()
    for i in range(runs):
        deployment.api.trigger(dag_id, f"{prefix}-{i:04d}")
    triggered = time.time() - started
    result: dict = {"workload": workload, "shape": deployment.shape.name, "tasks": tasks, "trigger_s": triggered}
    first_tries = None  # sensors: rows of the first execution (a resumed one keeps its first start_date)
    if workload == "sensors":
        first_tries = wait_rows(
            deployment, dag_id, prefix, tasks, _all_in(("deferred",)), args.timeout, "every sensor deferred"
        )
        result["defer_s"] = time.time() - started
        started = time.time()  # the release: every target at once
        for t in range(args.targets):
            (deployment.marker_dir / f"target.{t:03d}").write_text("ready\n")
    rows = wait_rows(deployment, dag_id, prefix, tasks, _all_in(TERMINAL), args.timeout, f"{tasks} {workload} tasks")
    result["machine_cpu_s"] = machine_cpu_seconds() - cpu
    result["cpu_s_by_part"] = {k: v - part_cpu[k] for k, v in cpu_seconds_by_part(parts).items()}
    result["scheduler_cpu_s"] = result["cpu_s_by_part"]["scheduler"]
    result["redis_commands"] = sum(commandstats(clients).values()) - commands
    for client in clients:
        client.close()
    ok = [r for r in rows if r["state"] == "success"]
    ends = [seconds(r["end_date"], started) for r in ok]
    result.update(
        ok=len(ok),
        states=sorted({r["state"] for r in rows}),
        wall_s=max(ends) if ends else None,
        queued_to_running=[
            v for r in first_tries or ok if (v := seconds(r["start_date"], r["queued_dttm"])) is not None
        ],
        to_success=(
            ends
            if workload == "sensors"
            else [seconds(r["end_date"], r["scheduled_dttm"]) for r in ok if r["scheduled_dttm"]]
        ),
    )
    return result


def measure_idle(deployment: Deployment, seconds_: float) -> dict:
    """Cores each part uses with nothing to run: the cost of a shape's processes on cores it shares."""
    parts = deployment.parts()
    before, machine = cpu_seconds_by_part(parts), machine_cpu_seconds()
    time.sleep(seconds_)
    after = cpu_seconds_by_part(parts)
    cores = {part: (after[part] - before[part]) / seconds_ for part in parts}
    return {"workload": "idle", "shape": deployment.shape.name, "cores": cores,
            "machine_cores": (machine_cpu_seconds() - machine) / seconds_}  # fmt: skip


def _all_in(states: tuple[str, ...]):
    return lambda rows: all(r["state"] in states for r in rows)


def warm_up(deployment: Deployment, timeout: float) -> None:
    """One chain run end to end first: workers, scheduler loops and broker connections in use."""
    prefix = f"warmup-{uuid.uuid4().hex[:6]}"
    deployment.api.trigger("bench_chain", f"{prefix}-0")
    rows = wait_rows(deployment, "bench_chain", prefix, CHAIN_LENGTH, _all_in(TERMINAL), timeout, "the warm-up run")
    if any(r["state"] != "success" for r in rows):
        raise RuntimeError(f"warm-up run failed: {sorted(r['state'] for r in rows)}")


# -- report ---------------------------------------------------------------------------------------------------
def summarise(result: dict) -> dict:
    ok, wall = result["ok"], result.get("wall_s")
    per_k = 1000 / ok if ok else float("nan")
    return {
        "tasks/s": ok / wall if ok and wall else 0.0,
        "q->run p50": pct(result["queued_to_running"], 50),
        "q->run p99": pct(result["queued_to_running"], 99),
        "->success p50": pct(result["to_success"], 50),
        "->success p99": pct(result["to_success"], 99),
        "machine CPU s/1k": result["machine_cpu_s"] * per_k,
        # measured on local processes only (airflow_shapes_k8s has neither)
        "sched CPU s/1k": result["scheduler_cpu_s"] * per_k if "scheduler_cpu_s" in result else None,
        "redis cmds/task": result["redis_commands"] / ok if ok and "redis_commands" in result else None,
    }


def run_workloads(name: str, workloads: list[str], run_one, results: list[dict], idle: list[dict], out) -> None:
    """``run_one(workload)`` for each workload in turn: its result kept, all raw figures written to ``out``
    after every one (a run cut short keeps what it measured), and a line printed."""
    for workload in workloads:
        result = run_one(workload)
        results.append(result)
        if out:
            out.write_text(json.dumps(idle + results, indent=1, default=str), encoding="utf-8")
        s = summarise(result)
        print(
            f"[{name}] {workload}: {result['ok']}/{result['tasks']} ok, {s['tasks/s']:.2f} tasks/s, "
            f"->success p99 {fmt_number(s['->success p99'])} s",
            flush=True,
        )


def report(results: list[dict]) -> None:
    cols = ["tasks/s", "q->run p50", "q->run p99", "->success p50", "->success p99", "sched CPU s/1k"]
    cols += ["machine CPU s/1k", "redis cmds/task"]
    print("\n| workload | shape | ok/tasks | " + " | ".join(cols) + " | tasks/s vs stock | p99 vs stock |")
    print("|---" * (len(cols) + 5) + "|")
    for workload in WORKLOADS:
        rows = [r for r in results if r["workload"] == workload]
        stock = next((summarise(r) for r in rows if r["shape"] == "stock"), None)
        for result in rows:
            s = summarise(result)
            cells = [fmt_number(s[c]) for c in cols]
            ratio = ratio_text(s["tasks/s"], stock and stock["tasks/s"])
            p99 = ratio_text(s["->success p99"], stock and stock["->success p99"])
            print(
                f"| {workload} | {result['shape']} | {result['ok']}/{result['tasks']} | "
                + " | ".join(cells)
                + f" | {ratio} | {p99} |"
            )
    for result in results:
        if result["workload"] == "sensors" and "defer_s" in result:
            print(f"{result['shape']}: {result['tasks']} sensors deferred {result['defer_s']:.0f} s after the trigger")


PARTS = ("api-server", "scheduler", "dag-processor", "triggerer", "sensor-shard", "worker")
PARTS += ("redis queue master", "redis others", "db primary", "db others")
# One of each per deployment, whatever the replicas: the ceiling as the other parts scale out (workers and
# shards by pods, schedulers and api-servers by replicas, Redis by masters for more queues).
SINGLE = ("db primary", "redis queue master")


def report_parts(results: list[dict]) -> None:
    """CPU seconds per 1,000 tasks by part, and the linear model: tasks/s one core of each part sustains."""
    print("\nCPU seconds per 1,000 tasks, by part (machine: every process on it)")
    print("| workload | shape | " + " | ".join(PARTS) + " | machine |")
    print("|---" * (len(PARTS) + 3) + "|")
    for result in results:
        if not result["ok"]:
            continue
        per_k = 1000 / result["ok"]
        cells = [fmt_number(result["cpu_s_by_part"][p] * per_k) if p in result["cpu_s_by_part"] else "-" for p in PARTS]
        line = f"| {result['workload']} | {result['shape']} | " + " | ".join(cells)
        print(line + f" | {fmt_number(result['machine_cpu_s'] * per_k)} |")
    print("\nModel: tasks/s that one core of a part sustains (1 / its CPU seconds per task; CPU-bound, linear)")
    for result in results:
        if not result["ok"] or (result["shape"] == "stock" and len({r["shape"] for r in results}) > 1):
            continue
        capacity = {
            part: result["ok"] / cpu for part, cpu in result["cpu_s_by_part"].items() if cpu > 0 and part in PARTS
        }
        ranked = sorted(capacity.items(), key=lambda kv: kv[1])
        single = ", ".join(f"{p} {capacity[p]:.0f}" for p in SINGLE if p in capacity)
        print(
            f"{result['workload']} on {result['shape']}: first to saturate per core "
            + ", ".join(f"{p} {c:.1f}" for p, c in ranked[:4])
            + f"; the single parts: {single}"
        )


def report_idle(idle: list[dict], seconds_: float) -> None:
    if not idle:
        return
    print(f"\nCores busy with nothing to run ({seconds_:.0f} s after the warm-up), by part")
    print("| shape | " + " | ".join(PARTS) + " | machine |")
    print("|---" * (len(PARTS) + 2) + "|")
    for row in idle:
        cells = [f"{row['cores'][p]:.3f}" if p in row["cores"] else "-" for p in PARTS]
        print(f"| {row['shape']} | " + " | ".join(cells) + f" | {row['machine_cores']:.3f} |")


def fmt_number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"


def ratio_text(value, stock) -> str:
    return f"{value / stock:.2f}x" if value and stock else "-"


# -- driver ---------------------------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks airflow_shapes", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 wide tasks, 40 chain runs, 100 sensors")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, from " + ", ".join(SHAPES))
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, from wide, chain, sensors")
    parser.add_argument("--wide-tasks", type=int, default=1000)
    parser.add_argument("--chain-runs", type=int, default=200)
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--worker-slots", type=int, default=8, help="Celery concurrency of each of the 2 workers")
    parser.add_argument("--idle-seconds", type=float, default=60, help="measure each shape idle this long (0: not)")
    parser.add_argument(
        "--pin", action="store_true", help="workers on the last core, everything else on the others (taskset)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one workload may take")
    parser.add_argument("--out", type=Path, help="also write every raw figure here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (process logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.wide_tasks, args.chain_runs, args.sensors, args.targets = 200, 40, 100, 10
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(shapes) - set(SHAPES)) + sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown shape or workload: {', '.join(unknown)}")
    for name in ("wide_tasks", "chain_runs", "sensors", "targets", "worker_slots"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.shapes, args.workloads = shapes, workloads
    return args


def pin_cores() -> tuple[str, str]:
    """(every other process's cores, the workers' cores): the last core for the workers, as a cluster gives
    workers nodes of their own; the rest for the servers and the other Airflow components."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("--pin needs at least 2 cores")
    return ",".join(map(str, cores[:-1])), str(cores[-1])


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.pin:
        args.pin = pin_cores()
        os.sched_setaffinity(0, {int(c) for c in args.pin[0].split(",")})  # inherited by all but the workers
    work = Path(tempfile.mkdtemp(prefix="airflow-shapes-"))
    results: list[dict] = []
    idle: list[dict] = []
    status = 0
    print(
        f"shapes {', '.join(args.shapes)}; workloads {', '.join(args.workloads)}: {args.wide_tasks} wide tasks, "
        f"{args.chain_runs} chain runs of {CHAIN_LENGTH}, {args.sensors} sensors on {args.targets} targets; "
        f"2 workers x {args.worker_slots} slots; {os.cpu_count()} cores"
        + (f" (workers on core {args.pin[1]}, the rest on {args.pin[0]})" if args.pin else "")
        + f"; work dir {work}",
        flush=True,
    )
    try:
        for name in args.shapes:
            deployment = Deployment(SHAPES[name], work / name, args)
            began = time.monotonic()
            try:
                deployment.start()
                warm_up(deployment, 600)
                print(f"[{name}] up and warm in {time.monotonic() - began:.0f} s", flush=True)
                if args.idle_seconds:
                    idle.append(measure_idle(deployment, args.idle_seconds))
                    print(f"[{name}] idle: {idle[-1]['machine_cores']:.2f} cores busy", flush=True)
                run_workloads(
                    name, args.workloads, partial(run_workload, deployment, args=args), results, idle, args.out
                )
            except Exception as exc:  # the other shapes still run; the table says what is missing
                status = 1
                print(f"[{name}] FAILED: {exc}", file=sys.stderr, flush=True)
            finally:
                deployment.stop()
    finally:
        report(results)
        report_parts(results)
        report_idle(idle, args.idle_seconds)
        if args.keep or status:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
