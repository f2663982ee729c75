"""The ready profiles in values/: kubeone, kind, production."""

from __future__ import annotations

import pytest

from tests.chart.components import R, node_loss_tolerations, pod, shard_groups
from tests.chart.conftest import VERSION

pytestmark = pytest.mark.chart


def test_kubeone_profile(render):
    rendered = render("kubeone.yaml")
    images = {c["image"] for _, spec in rendered.pod_specs() for c in spec["containers"]}
    assert images == {
        f"airflow-ha/airflow:{VERSION}",
        "airflow-ha/redis:8",
        "airflow-ha/mysql:9.7",
        "airflow-ha/haproxy:2.6",
    }
    for name, spec in rendered.pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["imagePullPolicy"] == "IfNotPresent", name
            cpu = c.get("resources", {}).get("requests", {}).get("cpu")
            assert cpu in ("10m", "20m", "50m"), f"{name}/{c['name']}: cpu request {cpu}"
        keys = {(t["key"], t.get("tolerationSeconds")) for t in spec.get("tolerations", [])}
        assert {("node.kubernetes.io/unreachable", 20), ("node.kubernetes.io/not-ready", 20)} <= keys, name
    for name in (f"{R}-scheduler", f"{R}-api-server", f"{R}-sensor-shard-0", f"{R}-sensor-shard-1"):
        aff = pod(rendered, "Deployment", name)["affinity"]["podAntiAffinity"]
        assert "requiredDuringSchedulingIgnoredDuringExecution" in aff, name
    # Every shard group survives the loss of one of the 3 nodes: 2 pods on different nodes, and the lost
    # node's pod is evicted 10 s after the node is declared lost (min of the 20 s and 10 s tolerations).
    for g, deployment in shard_groups(rendered).items():
        assert deployment["spec"]["replicas"] == 2, g
        assert ("node.kubernetes.io/unreachable", 10) in node_loss_tolerations(deployment["spec"]["template"]["spec"])


def test_kind_profile_uses_local_images(render):
    rendered = render("kind.yaml")
    for name, spec in rendered.pod_specs():
        for c in spec["containers"]:
            assert c["image"].startswith("airflow-ha/"), name
            assert c["imagePullPolicy"] == "IfNotPresent", name


def test_production_profile(render):
    rendered = render("production.yaml")
    assert rendered.of_kind("NetworkPolicy")
    assert rendered.get("Deployment", f"{R}-scheduler")["spec"]["replicas"] >= 2
    for _, spec in rendered.pod_specs():
        for c in spec["containers"]:
            if c["name"] in ("api-server", "scheduler", "worker", "redis", "mysql"):
                assert c["resources"].get("requests"), c["name"]
