"""The failover scenarios, each written once against :class:`~tests.harness.failover.backend.Backend`.

Every scenario starts a workload of ``ha_probe`` DAG runs (dags/ha_probe.py: short Celery tasks on
six queues, each execution recorded in ``ha_probe_execution``), breaks one thing while it runs,
measures how long until work flows again, waits for every run to finish and counts, from the
metadata database, tasks run, retried, duplicated (task code that completed more than once) and lost.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.harness.failover.backend import Backend
from tests.harness.failover.report import ScenarioResult
from tests.harness.waiting import wait_until

PROBE_DAG = "ha_probe"
SENSOR_PROBE_DAG = "ha_sensor_probe"  # dags/ha_sensor_probe.py: smart sensors released by a Variable
SENSOR_RELEASE_PREFIX = "ha_sensor_release"
SENSORS_PER_RUN = 10
EXECUTION_PREFIX = "ha_probe_execution"  # dags/ha_probe.py records executions under this key
PROBE_QUEUES = ("default", "q1", "q2", "q3", "q4", "q5")
PROBE_TASKS_PER_QUEUE = 4  # dags/ha_probe.py: TASKS_PER_QUEUE
RUN_TIMEOUT = 600.0


class ScenarioError(AssertionError):
    pass


@dataclass
class Workload:
    backend: Backend
    scenario: str
    seconds: float
    runs: list[str] = field(default_factory=list)
    dag_id: str = PROBE_DAG
    task_pattern: str = "work\\_%"  # SQL LIKE pattern of the tasks that are counted
    tasks_per_run: int = len(PROBE_QUEUES) * PROBE_TASKS_PER_QUEUE

    def trigger(self, count: int = 1) -> list[str]:
        new = []
        for _ in range(count):
            run_id = f"{self.scenario}-{uuid.uuid4().hex[:8]}"
            conf = {"seconds": self.seconds}
            self.backend.api.trigger(self.dag_id, run_id, conf=conf)
            new.append(run_id)
        self.runs += new
        return new

    @property
    def tasks_expected(self) -> int:
        return len(self.runs) * self.tasks_per_run

    # -- what the metadata DB says -----------------------------------------------------------------
    def _in_runs(self, runs: list[str] | None = None) -> tuple[str, tuple]:
        runs = runs or self.runs
        return ", ".join(["%s"] * len(runs)), tuple(runs)

    def work_instances(self, runs: list[str] | None = None) -> list[tuple]:
        """(run_id, task_id, map_index, state, try_number, hostname, queued_by_job_id) of the counted tasks."""
        marks, params = self._in_runs(runs)
        return self.backend.sql(
            "SELECT run_id, task_id, map_index, state, try_number, hostname, queued_by_job_id FROM task_instance"
            f" WHERE dag_id = %s AND run_id IN ({marks}) AND task_id LIKE %s",
            (self.dag_id, *params, self.task_pattern),
        )

    def executions(self) -> dict[tuple, list[str]]:
        """Completed executions of task code per (run, task, map index): the probe's Variable keys."""
        found: dict[tuple, list[str]] = {}
        for run_id in self.runs:
            rows = self.backend.sql(
                "SELECT `key` FROM variable WHERE `key` LIKE %s", (f"{EXECUTION_PREFIX}/{run_id}/%",)
            )
            for (key,) in rows:
                _prefix, run, task_id, map_index, _try, _nonce = key.split("/")
                found.setdefault((run, task_id, int(map_index)), []).append(key)
        return found

    def describe_duplicate(self, keys: list[str]) -> str:
        """``try 1 on <host>, try 2 on <host>``: a retry after a lost worker (at-least-once: the code
        finished, its success was not recorded) or a second delivery of the same try."""
        parts = []
        for key in sorted(keys):
            try_number = key.split("/")[4]
            try:
                host = json.loads(self.backend.api.variable(key)).get("hostname", "?")
            except Exception as exc:  # a note, never a reason to fail the scenario's counts
                host = f"? ({type(exc).__name__})"
            parts.append(f"try {try_number} on {host}")
        return ", ".join(parts)

    def queued_by(self, runs: list[str]) -> set[int]:
        """Scheduler job ids that queued any task of ``runs``."""
        marks, params = self._in_runs(runs)
        rows = self.backend.sql(
            f"SELECT DISTINCT queued_by_job_id FROM task_instance WHERE dag_id = %s AND run_id IN ({marks})"
            " AND queued_by_job_id IS NOT NULL",
            (self.dag_id, *params),
        )
        return {int(r[0]) for r in rows}

    def succeeded(self, runs: list[str] | None = None) -> int:
        return sum(1 for row in self.work_instances(runs) if row[3] == "success")

    def result(self, recovery_seconds: float | None, states: dict, notes: list[str]) -> ScenarioResult:
        instances = self.work_instances()
        executions = self.executions()
        duplicated = {task: keys for task, keys in executions.items() if len(keys) > 1}
        notes = notes + [
            f"duplicated {run}/{task_id}: {self.describe_duplicate(keys)}"
            for (run, task_id, _), keys in duplicated.items()
        ]
        succeeded = sum(1 for row in instances if row[3] == "success")
        return ScenarioResult(
            scenario=self.scenario,
            backend=self.backend.name,
            dag_runs=len(self.runs),
            dag_runs_succeeded=sum(1 for s in states.values() if s == "success"),
            tasks_expected=self.tasks_expected,
            tasks_succeeded=succeeded,
            tasks_retried=sum(1 for row in instances if int(row[4] or 0) > 1),
            tasks_duplicated=len(duplicated),
            tasks_lost=self.tasks_expected - succeeded,
            recovery_seconds=recovery_seconds,
            notes=notes,
        )


def _finish(workload: Workload, recovery: float | None, notes: list[str]) -> ScenarioResult:
    states = workload.backend.api.wait_for_runs([(workload.dag_id, r) for r in workload.runs], RUN_TIMEOUT)
    workload.backend.recover()
    workload.backend.wait_healthy(300)
    return workload.result(recovery, states, notes)


def _flowing(workload: Workload, runs: int) -> Workload:
    """Trigger ``runs`` runs and return once their tasks are flowing (one has succeeded)."""
    workload.trigger(runs)
    wait_until(lambda: workload.succeeded() > 0, 180, "tasks to flow")
    return workload


def _first_success_after(workload: Workload, runs: list[str], started: float, timeout: float = 300) -> float:
    wait_until(lambda: workload.succeeded(runs) > 0, timeout, f"a task of {runs} to succeed")
    return time.monotonic() - started


# -- the scenarios -----------------------------------------------------------------------------------
def scheduler_killed(backend: Backend) -> ScenarioResult:
    """kill -9 the scheduler that queued the latest task; time until the other one schedules."""
    workload = Workload(backend, "scheduler-killed", seconds=1.0)
    workload.trigger(3)
    queued_by = wait_until(
        lambda: [row[6] for row in workload.work_instances() if row[6] is not None], 180, "a queued task"
    )
    job_id = queued_by[-1]
    (instance,) = backend.sql("SELECT hostname FROM job WHERE id = %s", (job_id,))[0]
    started = time.monotonic()
    backend.kill("scheduler", instance)
    after_kill = workload.trigger(1)
    other_jobs = wait_until(lambda: workload.queued_by(after_kill), 300, "a scheduler to queue the new run's tasks")
    recovery = time.monotonic() - started
    if job_id in other_jobs:
        raise ScenarioError(f"the killed scheduler's job {job_id} still queued tasks")

    # Tasks the killed scheduler had marked queued but not yet handed to Celery wait for another
    # scheduler's orphan check ([scheduler] orphaned_tasks_check_interval) to reset them.
    def stranded() -> list[tuple]:
        return [row for row in workload.work_instances() if row[6] == job_id and row[3] in ("queued", "scheduled")]

    left = stranded()
    wait_until(lambda: not stranded(), 600, f"another scheduler to take over {len(left)} task(s) of job {job_id}")
    notes = [
        f"killed {instance} (job {job_id}); the next run was queued by job(s) {sorted(other_jobs)} after "
        f"{recovery:.1f}s; {len(left)} task(s) it had queued but not sent were taken over after "
        f"{time.monotonic() - started:.1f}s"
    ]
    return _finish(workload, time.monotonic() - started, notes)


def _running_on_a_worker(workload: Workload) -> tuple[str, list[tuple]]:
    """Trigger a run; return a worker running some of its tasks and those tasks' (run, task, map index)."""
    workload.trigger(1)
    running = wait_until(
        lambda: [row for row in workload.work_instances() if row[3] == "running" and row[5]], 180, "a running task"
    )
    instance = running[0][5]
    return instance, [row[:3] for row in workload.work_instances() if row[3] == "running" and row[5] == instance]


def worker_killed(backend: Backend) -> ScenarioResult:
    """kill -9 a Celery worker while it runs tasks (acks_late): the tasks run again elsewhere."""
    workload = Workload(backend, "worker-killed", seconds=15.0)
    instance, victims = _running_on_a_worker(workload)
    started = time.monotonic()
    backend.kill("worker", instance)

    def victims_released() -> bool:  # failed / up for retry / re-queued: no longer "running" on the dead one
        states = {row[:3]: (row[3], row[5]) for row in workload.work_instances()}
        return all(states.get(key) != ("running", instance) for key in victims)

    def victims_done() -> bool:
        states = {row[:3]: row[3] for row in workload.work_instances()}
        return all(states.get(key) == "success" for key in victims)

    wait_until(victims_released, RUN_TIMEOUT, f"the task(s) that ran on {instance} to be failed for a retry")
    released = time.monotonic() - started
    wait_until(victims_done, RUN_TIMEOUT, f"the {len(victims)} task(s) that ran on {instance} to succeed again")
    recovery = time.monotonic() - started
    notes = [
        f"killed {instance} while it ran {len(victims)} task(s); they were failed for a retry after {released:.1f}s "
        f"and all re-ran and succeeded after {recovery:.1f}s (each task runs {workload.seconds:g}s)"
    ]
    return _finish(workload, recovery, notes)


def worker_frozen(backend: Backend, frozen_seconds: float = 45.0) -> ScenarioResult:
    """SIGSTOP a worker running tasks for longer than the lost-worker bound, then SIGCONT: a slow worker is
    not a dead one, so its tasks must finish on their first try (no false positive of the worker watcher)."""
    workload = Workload(backend, "worker-frozen", seconds=10.0)
    instance, victims = _running_on_a_worker(workload)
    backend.freeze("worker", instance, True)
    try:
        time.sleep(frozen_seconds)
        states = {row[:3]: row[3] for row in workload.work_instances()}
        touched = [key for key in victims if states.get(key) != "running"]
    finally:
        backend.freeze("worker", instance, False)
    notes = [
        f"froze {instance} for {frozen_seconds:.0f}s while it ran {len(victims)} task(s); "
        f"{len(touched)} of them were taken from it while frozen"
    ]
    result = _finish(workload, None, notes)
    result.tasks_retried = max(result.tasks_retried, len(touched))
    return result


def redis_master_killed(backend: Backend) -> ScenarioResult:
    """kill -9 the Redis master of the busiest queue; the replica is promoted and tasks keep flowing."""
    workload = _flowing(Workload(backend, "redis-master-killed", seconds=0.5), runs=3)
    instance = backend.redis_master_for_queue("default")
    started = time.monotonic()
    backend.kill("redis", instance)
    serving = backend.wait_redis_serving(instance, 120)
    served_after = time.monotonic() - started
    after_kill = workload.trigger(1)
    recovery = _first_success_after(workload, after_kill, started)
    if serving != instance:
        how = f"replica {serving} promoted after {served_after:.1f}s"
    else:
        how = f"{instance} was back (new pod, same AOF) serving its slots after {served_after:.1f}s, no promotion"
    notes = [f"killed master {instance}; {how}"]
    return _finish(workload, recovery, notes)


def database_restarted(backend: Backend) -> ScenarioResult:
    """Restart the metadata database mid-workload; every component reconnects by itself."""
    workload = _flowing(Workload(backend, "database-restarted", seconds=2.0), runs=2)
    started = time.monotonic()
    backend.restart_database()
    wait_until(backend.api.is_up, 300, "the api-server to reach the database again", interval=1)
    after_restart = workload.trigger(1)
    recovery = _first_success_after(workload, after_restart, started)
    return _finish(workload, recovery, ["database stopped and started again on the same data"])


def rolling_restart(backend: Backend) -> ScenarioResult:
    """Restart every Airflow component one at a time (an upgrade) while DAG runs are in flight."""
    workload = _flowing(Workload(backend, "rolling-restart", seconds=2.0), runs=3)
    started = time.monotonic()
    backend.rolling_restart()
    rollout = time.monotonic() - started
    workload.trigger(1)
    return _finish(workload, rollout, [f"rollout of every Airflow component took {rollout:.0f}s"])


def sensor_shard_killed(backend: Backend) -> ScenarioResult:
    """kill -9 the shard triggerer that holds the most waiting smart sensors; they all still succeed.

    Each shard group runs 2 triggerers (the chart's sensorShards.replicasPerGroup); the group's other one,
    or the killed one's replacement, takes the sensors over."""
    workload = Workload(
        backend,
        "sensor-shard-killed",
        seconds=0.0,
        dag_id=SENSOR_PROBE_DAG,
        task_pattern="wait\\_%",
        tasks_per_run=SENSORS_PER_RUN,
    )
    # Start from a settled release: the shard triggerers restarted by an earlier scenario (a database
    # restart makes them exit) must be back, or the sensors wait for a triggerer rather than for the kill.
    backend.recover()
    backend.wait_healthy(300)
    backend.api.unpause(SENSOR_PROBE_DAG)
    workload.trigger(3)
    marks, params = workload._in_runs()

    def holders() -> dict[int, str]:
        """trigger-holding triggerer job id -> its instance, for the waiting sensors of this workload."""
        rows = backend.sql(
            "SELECT DISTINCT t.triggerer_id, j.hostname FROM task_instance ti JOIN `trigger` t ON ti.trigger_id = t.id"
            f" JOIN job j ON j.id = t.triggerer_id WHERE ti.dag_id = %s AND ti.run_id IN ({marks})"
            " AND ti.state = 'deferred'",
            (SENSOR_PROBE_DAG, *params),
        )
        return {int(job): host for job, host in rows}

    def all_held() -> bool:
        deferred = [row for row in workload.work_instances() if row[3] == "deferred"]
        if len(deferred) != workload.tasks_expected:
            return False
        (unheld,) = backend.sql(
            "SELECT COUNT(*) FROM task_instance ti JOIN `trigger` t ON ti.trigger_id = t.id"
            f" WHERE ti.dag_id = %s AND ti.run_id IN ({marks}) AND t.triggerer_id IS NULL",
            (SENSOR_PROBE_DAG, *params),
        )[0]
        return unheld == 0

    wait_until(all_held, RUN_TIMEOUT, f"all {workload.tasks_expected} sensors deferred and held by a shard", interval=2)
    before = holders()
    held = backend.sql(
        "SELECT t.triggerer_id, COUNT(*) FROM task_instance ti JOIN `trigger` t ON ti.trigger_id = t.id"
        f" WHERE ti.dag_id = %s AND ti.run_id IN ({marks}) GROUP BY t.triggerer_id",
        (SENSOR_PROBE_DAG, *params),
    )
    killed_job, count = max(held, key=lambda row: row[1])
    instance = before[int(killed_job)]
    started = time.monotonic()
    backend.kill("sensor-shard", instance)
    # Its triggers are taken over only by a triggerer on the same queues (its group's other triggerer, or
    # its own replacement) once the dead job's heartbeat is older than triggerer_health_check_threshold.
    wait_until(lambda: all_held() and int(killed_job) not in holders(), RUN_TIMEOUT, f"{instance}'s sensors taken over")
    takeover = time.monotonic() - started
    for run_id in workload.runs:
        backend.api.set_variable(f"{SENSOR_RELEASE_PREFIX}/{run_id}", "go")
    notes = [
        f"killed {instance} holding {count} of {workload.tasks_expected} waiting sensors; its group's other "
        f"triggerer or its replacement held them again after {takeover:.1f}s; then every target was released"
    ]
    return _finish(workload, takeover, notes)


SCENARIOS: dict[str, Callable[[Backend], ScenarioResult]] = {
    "scheduler-killed": scheduler_killed,
    "worker-killed": worker_killed,
    "redis-master-killed": redis_master_killed,
    "database-restarted": database_restarted,
    "sensor-shard-killed": sensor_shard_killed,
    "rolling-restart": rolling_restart,
}
