"""The schedulers: liveness, PodDisruptionBudget, anti-affinity."""

from __future__ import annotations

import pytest

from tests.chart.components import R, pod
from tests.chart.conftest import container

pytestmark = pytest.mark.chart


def test_scheduler_liveness_pdb_and_anti_affinity(default, render):
    spec = pod(default, "Deployment", f"{R}-scheduler")
    probe = container(spec, "scheduler")["livenessProbe"]["exec"]["command"]
    assert probe == ["airflow", "jobs", "check", "--job-type", "SchedulerJob", "--local"]
    pdb = default.get("PodDisruptionBudget", f"{R}-scheduler")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["component"] == "scheduler"
    preferred = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert preferred[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]["component"] == "scheduler"
    required = pod(render(None, "scheduler.podAntiAffinity=required"), "Deployment", f"{R}-scheduler")
    term = required["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchLabels"]["component"] == "scheduler"
    none = pod(render(None, "scheduler.podAntiAffinity=none"), "Deployment", f"{R}-scheduler")
    assert "affinity" not in none
