"""ha_bench: the workloads of the Airflow-level benchmark on a real cluster (benchmarks/airflow_shapes_k8s.py).

Not a product DAG: like the failover probes, it is only in the image's ``failover-probes`` target.

* ``ha_bench_wide`` - one run fans out to ``params.tasks`` no-op tasks, all schedulable at once (dynamic task
  mapping, so the size is chosen per run without a new image; the local benchmark writes the same width
  as distinct tasks).
* ``ha_bench_chain`` - a 5-task chain of no-op tasks; the benchmark triggers many runs at once.

Every task is on the ``default`` queue.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, chain, task

START = pendulum.datetime(2024, 1, 1, tz="UTC")
CHAIN_LENGTH = 5
MAX_WIDE_TASKS = 1024  # Airflow's [core] max_map_length


@task
def noop(i: int | None = None) -> None:
    pass


@task
def indexes(params=None) -> list[int]:
    return list(range(int(params["tasks"])))


with DAG(
    "ha_bench_wide",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    max_active_tasks=MAX_WIDE_TASKS,
    params={"tasks": Param(1000, type="integer", minimum=1, maximum=MAX_WIDE_TASKS)},
    tags=["benchmark"],
):
    noop.expand(i=indexes())

with DAG(
    "ha_bench_chain",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=1000,
    max_active_tasks=CHAIN_LENGTH,
    tags=["benchmark"],
):
    chain(*[noop.override(task_id=f"step{i}")() for i in range(CHAIN_LENGTH)])
