"""helm lint and helm template for the default values and every file in values/; every object valid."""

from __future__ import annotations

import subprocess

import pytest

from tests.chart.conftest import CHART, VALUES_DIR, VALUES_FILES

pytestmark = pytest.mark.chart


def test_values_profiles_exist():
    assert {"kind.yaml", "kubeone.yaml", "production.yaml"} <= set(VALUES_FILES)


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES])
def test_helm_lint(helm_binary, values_file):
    args = [str(helm_binary), "lint", str(CHART), "--strict"]
    if values_file:
        args += ["-f", str(VALUES_DIR / values_file)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES])
def test_template_renders_valid_objects(render, values_file):
    rendered = render(values_file)  # validates every object against the newest Kubernetes schema
    kinds = {o["kind"] for o in rendered.objects}
    assert {"Deployment", "StatefulSet", "Service", "Secret", "Job", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES])
def test_every_object_labelled_with_the_release(render, values_file):
    for obj in render(values_file).objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "airflow-ha", f"{obj['kind']}/{obj['metadata']['name']}"


def test_optional_parts_render_valid(render):
    rendered = render(None, "networkPolicies.enabled=true", "redis.reconciler.enabled=true")
    assert len(rendered.of_kind("NetworkPolicy")) == 4
    cron = rendered.get("CronJob", "airflow-ha-redis-reconciler")
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"] == ["airflow-ha", "redis-reconcile"]
    role = rendered.get("Role", "airflow-ha-redis-reconciler")
    assert role["rules"][0]["resources"] == ["pods"] and set(role["rules"][0]["verbs"]) == {"get", "list"}
    crole = rendered.of_kind("ClusterRole")[0]
    assert crole["rules"][0]["resources"] == ["nodes"]


def test_optional_parts_off_by_default(default):
    assert not default.of_kind("NetworkPolicy", "CronJob", "ClusterRole", "Role")
