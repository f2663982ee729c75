"""The failover scenarios on Kubernetes: the same code as the local backend, pods deleted for real.

Runs against the release of the session fixtures (tests/k8s/conftest.py); writes
results/failover-kubernetes.{md,json} and prints the table.
"""

from __future__ import annotations

import pytest

from airflow_ha.failover import scenarios
from airflow_ha.failover.kubernetes import KubernetesBackend
from airflow_ha.failover.report import markdown_table, write_results
from tests.k8s.conftest import KUBECTL, REPO_ROOT, admin_password

RESULTS: list = []


@pytest.fixture(scope="module")
def k8s_backend(kube, release):
    _user, password = admin_password(kube, release)
    backend = KubernetesBackend(release.namespace, release.name, KUBECTL, password)
    try:
        backend.recover()
        backend.wait_healthy(600)
        scenarios.wait_for(
            lambda: {scenarios.PROBE_DAG, scenarios.SENSOR_PROBE_DAG} <= backend.api.dag_ids(),
            600,
            "the probe DAGs to be parsed",
            interval=5,
        )
        backend.api.unpause(scenarios.PROBE_DAG)
        yield backend
    finally:
        backend.close()
        if RESULTS:
            print("\n" + markdown_table(RESULTS))
            write_results(RESULTS, REPO_ROOT / "results", "kubernetes")


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_scenario_on_kubernetes(k8s_backend, name):
    result = scenarios.SCENARIOS[name](k8s_backend)
    RESULTS.append(result)
    assert result.dag_runs_succeeded == result.dag_runs, result
    assert result.tasks_lost == 0, result
