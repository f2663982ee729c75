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
    assert {"Deployment", "StatefulSet", "Service", "Job", "PodDisruptionBudget"} <= kinds
    assert ("Secret" in kinds) == (values_file != "gitops.yaml")  # gitops: every secret is the user's


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES])
def test_every_object_labelled_with_the_release(render, values_file):
    for obj in render(values_file).objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "airflow-ha", f"{obj['kind']}/{obj['metadata']['name']}"


def test_optional_parts_render_valid(render):
    rendered = render(None, "networkPolicies.enabled=true", "redis.reconciler.enabled=true")
    assert len(rendered.of_kind("NetworkPolicy")) == 7
    cron = rendered.get("CronJob", "airflow-ha-redis-reconciler")
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    # Periodic: a cluster in the middle of a failover is skipped (exit 0), the next run retries.
    assert spec["containers"][0]["args"] == ["airflow-ha", "redis-reconcile", "--port", "6379", "--skip-unsettled"]
    assert spec["serviceAccountName"] == "airflow-ha-redis-reconciler"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["AIRFLOW_HA_REDIS_SELECTOR"]["value"] == "app.kubernetes.io/instance=airflow-ha,component=redis"
    assert env["AIRFLOW_HA_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "airflow-ha-redis-password"
    # Once more right after the bootstrap Job, as a hook that fails the install if the cluster never settles.
    hook = rendered.get("Job", "airflow-ha-redis-reconciler-after-bootstrap")
    ann = hook["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "post-install,post-upgrade"
    bootstrap = rendered.get("Job", "airflow-ha-redis-bootstrap")["metadata"]["annotations"]["helm.sh/hook-weight"]
    assert int(ann["helm.sh/hook-weight"]) > int(bootstrap)
    assert "--skip-unsettled" not in hook["spec"]["template"]["spec"]["containers"][0]["args"]
    # It reads pods (their node, their IP) in its namespace, nothing cluster-wide.
    role = rendered.get("Role", "airflow-ha-redis-reconciler")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    assert [r["metadata"]["name"] for r in rendered.of_kind("ClusterRole")] == [WATCHER_CLUSTER_ROLE]
    without_hook = render(None, "redis.reconciler.enabled=true", "redis.reconciler.afterBootstrap=false")
    assert without_hook.of_kind("CronJob") and not [
        j for j in without_hook.of_kind("Job") if "reconciler" in j["metadata"]["name"]
    ]


WATCHER = "airflow-ha-worker-watcher"
WATCHER_CLUSTER_ROLE = "airflow-ha-airflow-ha-worker-watcher"  # <namespace>-<name>: cluster-scoped


def test_optional_parts_off_by_default(default):
    assert not default.of_kind("NetworkPolicy", "CronJob")
    # the only API access by default: the worker watcher's, read-only
    assert [r["metadata"]["name"] for r in default.of_kind("Role")] == [WATCHER]
    assert [r["metadata"]["name"] for r in default.of_kind("ClusterRole")] == [WATCHER_CLUSTER_ROLE]


def test_worker_watcher_reads_worker_pods_and_nodes_only(default):
    role = default.get("Role", WATCHER)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    cluster_role = default.get("ClusterRole", WATCHER_CLUSTER_ROLE)
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]
    for kind, name in (("RoleBinding", WATCHER), ("ClusterRoleBinding", WATCHER_CLUSTER_ROLE)):
        binding = default.get(kind, name)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": WATCHER, "namespace": "airflow-ha"}]
    spec = default.get("Deployment", WATCHER)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == WATCHER and spec["automountServiceAccountToken"] is True
    args = spec["containers"][0]["args"]
    assert args[:4] == [
        "airflow-ha",
        "worker-watch",
        "--selector",
        "app.kubernetes.io/instance=airflow-ha,component=worker",
    ]
    # every other Airflow pod runs without a Kubernetes API token
    for name, pod_spec in default.pod_specs():
        if name != f"Deployment/{WATCHER}" and "reconciler" not in name:
            assert pod_spec.get("automountServiceAccountToken") is not True, name


def test_pods_waiting_for_migrations_do_not_lock_the_schema(default):
    """Every Airflow pod waits for the schema with `airflow-ha wait-for-migrations`, not `airflow db
    check-migrations`, whose transaction-long metadata lock stops the migration Job on MySQL."""
    checked = 0
    for name, spec in default.pod_specs():
        for c in spec.get("initContainers", []):
            if c["name"] == "wait-for-migrations":
                assert c["args"][:2] == ["airflow-ha", "wait-for-migrations"], name
                checked += 1
    assert checked >= 8
