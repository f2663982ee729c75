"""The ready profiles in values/: kubeone, kind, production."""

from __future__ import annotations

import pytest

from tests.chart.components import R, node_loss_tolerations, pod, queues_served, shard_groups, worker_sets
from tests.chart.conftest import VERSION
from tests.harness.failover.scenarios import PROBE_QUEUES

pytestmark = pytest.mark.chart


def test_kubeone_profile(render):
    rendered = render("kubeone.yaml")
    images = {c["image"] for _, spec in rendered.pod_specs() for c in spec["containers"]}
    assert images == {
        f"airflow-ha/airflow:{VERSION}",
        "airflow-ha/redis:8",
        "airflow-ha/mysql:9.7",
        "airflow-ha/haproxy:2.6",
        "airflow-ha/statsd-exporter:0.31.0",
        "airflow-ha/seaweedfs:4.53",
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


@pytest.mark.parametrize("values_file", ["kind.yaml", "kubeone.yaml"])
def test_local_profiles_run_the_failover_probes_and_the_marker_dags(render, values_file):
    """What the k8s suite needs on either local cluster: the probe's queues and its DB connection, and a
    marker volume every node shares (kind: scripts/up mounts one host directory into every node)."""
    rendered = render(values_file)
    assert queues_served(rendered) == set(PROBE_QUEUES)
    for sts in worker_sets(rendered):
        worker = sts["spec"]["template"]["spec"]
        env = {e["name"]: e for e in worker["containers"][0]["env"]}
        assert env["AIRFLOW_CONN_HA_PROBE_DB"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{R}-connections",
            "key": "metadata-connection-uri",
        }
        markers = {v["name"]: v for v in worker["volumes"]}["markers"]
        assert markers["hostPath"]["path"] == "/var/lib/airflow-ha/markers"
        assert "markers-permissions" in {c["name"] for c in worker["initContainers"]}


def test_production_profile(render):
    rendered = render("production.yaml")
    assert rendered.of_kind("NetworkPolicy")
    assert rendered.get("Deployment", f"{R}-scheduler")["spec"]["replicas"] >= 2
    for _, spec in rendered.pod_specs():
        for c in spec["containers"]:
            if c["name"] in ("api-server", "scheduler", "worker", "redis", "mysql"):
                assert c["resources"].get("requests"), c["name"]


def test_external_services_profile_deploys_only_airflow(render):
    from airflow_ha.broker.url import parse
    from tests.chart.components import pod_url

    rendered = render("external-services.yaml")
    workloads = {w["metadata"]["name"] for w in rendered.workloads()}
    assert not {n for n in workloads if "redis" in n or "mysql" in n}, workloads
    broker = parse(pod_url(rendered, "AIRFLOW__CELERY__BROKER_URL"))
    assert broker.ssl and broker.username == "airflow" and broker.ssl_options["ssl_ca_certs"].endswith("/ca.crt")
    db = pod_url(rendered, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    assert "@airflow-db.abc123.eu-west-1.rds.amazonaws.com:3306/airflow?" in db
