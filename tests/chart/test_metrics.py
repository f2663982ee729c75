"""metrics.*: the statsd-exporter every Airflow pod sends its StatsD metrics to, and what Prometheus scrapes."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.chart.components import R, airflow_containers, pod
from tests.chart.conftest import CHART, RenderError, container, env_of, helm_template

pytestmark = pytest.mark.chart


def test_every_airflow_pod_sends_statsd_to_the_releases_exporter(default):
    expected = {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": f"{R}-statsd",
        "AIRFLOW__METRICS__STATSD_PORT": "9125",
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    containers = airflow_containers(default)
    assert len(containers) > 8
    for name, c in containers:
        env = env_of(c)
        assert {k: env[k]["value"] for k in expected} == expected, name


def test_the_exporter_deployment_service_and_mapping(default):
    spec = pod(default, "Deployment", f"{R}-statsd")
    c = container(spec, "statsd-exporter")
    assert c["image"] == "quay.io/prometheus/statsd-exporter:v0.31.0"
    assert c["args"] == [
        "--statsd.mapping-config=/etc/statsd-exporter/mappings.yml",
        "--statsd.listen-udp=:9125",
        "--statsd.listen-tcp=",
        "--web.listen-address=:9102",
    ]
    assert {(p["name"], p["containerPort"], p["protocol"]) for p in c["ports"]} == {
        ("statsd", 9125, "UDP"),
        ("metrics", 9102, "TCP"),
    }
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 65534
    assert spec["automountServiceAccountToken"] is False
    svc = default.get("Service", f"{R}-statsd")
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == "9102"
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(9125, "UDP"), (9102, "TCP")}
    mapping = yaml.safe_load(default.get("ConfigMap", f"{R}-statsd")["data"]["mappings.yml"])
    assert mapping == yaml.safe_load((CHART / "files" / "statsd-mappings.yaml").read_text())


def test_extra_mappings_follow_the_charts_and_a_config_change_rolls_the_exporter(render):
    extra = "metrics.extraMappings[0].match=airflow.my_team.*,metrics.extraMappings[0].name=my_team_$1"
    rendered = render(None, *extra.split(","))
    mappings = yaml.safe_load(rendered.get("ConfigMap", f"{R}-statsd")["data"]["mappings.yml"])["mappings"]
    assert mappings[-1] == {"match": "airflow.my_team.*", "name": "my_team_$1"}
    annotation = "checksum/mappings"
    before = render(None).get("Deployment", f"{R}-statsd")["spec"]["template"]["metadata"]["annotations"]
    after = rendered.get("Deployment", f"{R}-statsd")["spec"]["template"]["metadata"]["annotations"]
    assert before[annotation] != after[annotation]


def test_metrics_off_renders_no_exporter_and_no_statsd_config(render):
    rendered = render(None, "metrics.enabled=false", "networkPolicies.enabled=true")
    assert not [o for o in rendered.objects if o["metadata"]["name"] == f"{R}-statsd"]
    for name, c in airflow_containers(rendered):
        assert not [k for k in env_of(c) if k.startswith("AIRFLOW__METRICS__")], name


def test_the_users_metrics_config_wins_without_duplicate_env(render):
    rendered = render(None, "config.metrics.statsd_host=statsd.monitoring", "config.metrics.statsd_prefix=team")
    for name, c in airflow_containers(rendered):
        names = [e["name"] for e in c["env"]]
        assert names.count("AIRFLOW__METRICS__STATSD_HOST") == 1, name
        env = env_of(c)
        assert env["AIRFLOW__METRICS__STATSD_HOST"]["value"] == "statsd.monitoring"
        assert env["AIRFLOW__METRICS__STATSD_PREFIX"]["value"] == "team"
        assert env["AIRFLOW__METRICS__STATSD_ON"]["value"] == "True"


def test_the_network_policy_takes_statsd_from_the_release_and_scrapes_from_scrape_from(render):
    peer = "metrics.scrapeFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"
    rendered = render(None, "networkPolicies.enabled=true", peer)
    spec = rendered.get("NetworkPolicy", f"{R}-statsd")["spec"]
    statsd, scrape = spec["ingress"]
    assert statsd == {
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": R}}}],
        "ports": [{"port": 9125, "protocol": "UDP"}],
    }
    assert scrape["ports"] == [{"port": 9102, "protocol": "TCP"}]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    anyone = render(None, "networkPolicies.enabled=true").get("NetworkPolicy", f"{R}-statsd")["spec"]["ingress"][1]
    assert "from" not in anyone  # no scrapeFrom: any source may scrape


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["metrics.port=0"], "at '/metrics/port': minimum: got 0, want 1"),
        (["metrics.statsdPort=70000"], "at '/metrics/statsdPort': maximum: got 70,000, want 65,535"),
        (["metrics.extraMappings[0].name=x"], "at '/metrics/extraMappings/0': missing property 'match'"),
        (
            ["metrics.extraMappings[0].match=a.*,metrics.extraMappings[0].name=bad-name"],
            "/metrics/extraMappings/0/name",
        ),
        (["metrics.enabled=maybe"], "at '/metrics/enabled'"),
    ],
)
def test_bad_metrics_values_fail_with_a_readable_message(helm_binary, sets, message):
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, *[a for s in sets for a in ("--set", s)])
    assert message in err.value.stderr


def test_the_grafana_dashboard_configmap_holds_the_charts_dashboard(render, default):
    assert not default.has("ConfigMap", f"{R}-grafana-dashboard")
    rendered = render(
        None, "metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.annotations.grafana_folder=HA"
    )
    cm = rendered.get("ConfigMap", f"{R}-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "HA"}
    assert json.loads(cm["data"]["airflow-ha.json"]) == json.loads(
        (CHART / "files" / "grafana-dashboard.json").read_text()
    )


def test_every_series_of_the_dashboard_is_one_the_mapping_makes():
    """A renamed series fails here, not as an empty graph: each name a dashboard query reads (histograms by
    their _bucket series) is a mapping's name."""
    mappings = yaml.safe_load((CHART / "files" / "statsd-mappings.yaml").read_text())["mappings"]
    mapped = {m["name"] for m in mappings}
    dashboard = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
    assert len(exprs) >= 15
    read = {re.sub(r"_bucket$", "", name) for e in exprs for name in re.findall(r"\b(airflow_[a-z_]+)\b", e)}
    assert read and read <= mapped, read - mapped
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] if p["type"] != "row")
