"""PodDisruptionBudgets: every component that runs two or more pods has one, and none can block a drain."""

from __future__ import annotations

import pytest

from tests.chart.conftest import VALUES_FILES


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES])
def test_every_replicated_workload_has_a_pdb_that_lets_a_drain_through(render, values_file):
    rendered = render(values_file)
    pdbs = rendered.of_kind("PodDisruptionBudget")
    checked = 0
    for workload in rendered.workloads():
        replicas = workload["spec"].get("replicas", 1)
        selector = workload["spec"]["selector"]["matchLabels"]
        covering = [p for p in pdbs if p["spec"]["selector"]["matchLabels"] == selector]
        if replicas < 2:
            continue
        checked += 1
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        assert len(covering) == 1, f"{name} ({replicas} pods) has {len(covering)} PodDisruptionBudgets"
        spec = covering[0]["spec"]
        if "minAvailable" in spec:
            assert spec["minAvailable"] < replicas, f"{name}: minAvailable {spec['minAvailable']} blocks every drain"
        else:
            assert 1 <= spec["maxUnavailable"] < replicas or replicas == 1, name
    assert checked >= 4  # api-server, scheduler, workers, redis at least
    for pdb in pdbs:  # and no budget selects nothing
        labels = pdb["spec"]["selector"]["matchLabels"]
        assert any(w["spec"]["selector"]["matchLabels"] == labels for w in rendered.workloads()), pdb["metadata"]
