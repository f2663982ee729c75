"""The failover scenarios on the local backend: the whole topology as processes on 127.0.0.1.

Celery runs on the project's ``rediscluster://`` transport over a real 3+3 Redis Cluster; the
results table is printed and written to failover-local.{md,json} in the results folder (``--results-dir``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.failover import scenarios
from tests.harness.failover.local import LocalBackend
from tests.harness.failover.report import markdown_table, write_results
from tests.harness.waiting import wait_until

# extended: the same scenarios run through the chart in the k8s stage (tests/k8s/test_failover.py)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.extended]

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS: list = []


@pytest.fixture(scope="module")
def local_backend(tmp_path_factory, redis_cluster, mysql, results_dir):
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
            print(f"results: {write_results(RESULTS, results_dir, 'local')}")


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_scenario(local_backend, name):
    result = scenarios.SCENARIOS[name](local_backend)
    RESULTS.append(result)
    assert result.dag_runs_succeeded == result.dag_runs, result
    assert result.tasks_lost == 0, result


def test_two_schedulers_lock_rows_with_skip_locked_on_mysql(local_backend):
    """Active-active schedulers rest on MySQL row locks: confirm that they ran on MySQL 9.7 and that
    their loops took ``FOR UPDATE SKIP LOCKED`` (performance_schema's statement digests, as root)."""
    db = local_backend.db
    assert db.version().startswith("9.7."), db.version()
    schedulers = local_backend.sql(
        "SELECT COUNT(DISTINCT hostname, id) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'"
    )[0][0]
    assert schedulers >= 2, f"{schedulers} running scheduler job(s)"

    def digests(pattern: str) -> int:
        out = db.root_sql(
            "SELECT COALESCE(SUM(COUNT_STAR), 0) FROM performance_schema.events_statements_summary_by_digest "
            f"WHERE SCHEMA_NAME = '{db.database}' AND DIGEST_TEXT LIKE '{pattern}'"
        ).stdout
        return int(out.strip() or 0)

    wait_until(lambda: digests("%FOR UPDATE SKIP LOCKED%") > 0, 60, "a SKIP LOCKED statement", interval=2)
    print(
        f"\nMySQL {db.version()}: {schedulers} schedulers, statements with FOR UPDATE SKIP LOCKED: "
        f"{digests('%FOR UPDATE SKIP LOCKED%')}, with FOR UPDATE: {digests('%FOR UPDATE%')}"
    )
