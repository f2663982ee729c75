"""The failover scenarios on the local backend: the whole topology as processes on 127.0.0.1.

Celery runs on the project's ``rediscluster://`` transport over a real 3+3 Redis Cluster; the
results table is printed and written to results/failover-local.{md,json}.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_ha.failover import scenarios
from airflow_ha.failover.local import LocalBackend
from airflow_ha.failover.report import markdown_table, write_results

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS: list = []


@pytest.fixture(scope="module")
def local_backend(tmp_path_factory, redis_cluster, mysql):
    # redis_cluster/mysql are requested only so missing binaries skip (or, in CI, fail) with the
    # fixtures' message; the backend runs its own servers, since scenarios kill and restart them.
    backend = LocalBackend(
        tmp_path_factory.mktemp("failover-local"),
        REPO_ROOT / "dags",
        broker_url_for=lambda cluster: cluster.url(),
        sensor_shards=2,
    )
    try:
        backend.up()
        yield backend
    finally:
        backend.down()
        if RESULTS:
            print("\n" + markdown_table(RESULTS))
            write_results(RESULTS, REPO_ROOT / "results", "local")


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_scenario(local_backend, name):
    result = scenarios.SCENARIOS[name](local_backend)
    RESULTS.append(result)
    assert result.dag_runs_succeeded == result.dag_runs, result
    assert result.tasks_lost == 0, result
