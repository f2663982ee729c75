"""ha_probe: the failover suite's workload — many short Celery tasks over several queues.

Every execution of a task's code is recorded as an Airflow Variable
``ha_probe_execution/<run>/<task>/<map index>/<try>/<nonce>``, so the failover suite can count tasks
run, retried, duplicated and lost from the metadata database alone, locally and on Kubernetes.

Tasks: ``work_<queue>_<i>``, ``TASKS_PER_QUEUE`` per queue in ``QUEUES`` (workers must consume them).
Param ``seconds``: how long each task works.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pendulum
from airflow.sdk import Variable, dag, get_current_context, task

QUEUES = ("default", "q1", "q2", "q3", "q4", "q5")
TASKS_PER_QUEUE = 4

EXECUTION_PREFIX = "ha_probe_execution"


def record_execution(context) -> None:
    """One Airflow Variable per execution of task code, written through the Execution API.

    Tasks in Airflow 3 have no database access of their own; a Variable is the record every
    deployment can write and the failover suite can count (``variable.key`` LIKE the prefix).
    """
    ti = context["ti"]
    key = "/".join(
        [EXECUTION_PREFIX, context["run_id"], ti.task_id, str(ti.map_index), str(ti.try_number), uuid.uuid4().hex[:8]]
    )
    Variable.set(key, json.dumps({"hostname": socket.gethostname(), "pid": os.getpid()}))
    # The line the k8s suite looks for in the task's log read through the api-server (remote task logs).
    print(f"ha_probe executed {key} on {socket.gethostname()}", flush=True)


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    max_active_tasks=64,
    params={"seconds": 1.0},
    default_args={"retries": 3, "retry_delay": pendulum.duration(seconds=2)},
    tags=["airflow-ha", "failover"],
)
def ha_probe():
    @task
    def work(i: int) -> int:
        context = get_current_context()
        time.sleep(float(context["params"]["seconds"]))
        record_execution(context)
        return i

    # Static tasks, not dynamic task mapping: with two schedulers, a rolling restart once left a run
    # "success" with one mapped instance missing from task_instance (see the failover notes).
    for queue in QUEUES:
        for i in range(TASKS_PER_QUEUE):
            work.override(task_id=f"work_{queue}_{i}", queue=queue)(i)


ha_probe()
