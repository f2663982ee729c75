"""Trigger logs through the api-server: every triggerer and sensor-shard pod serves its log on one port, the
api-server knows that port, and the hostname those pods record is an address the api-server can reach."""

from __future__ import annotations

import pytest

from tests.chart.components import R, airflow_containers, ports, shard_groups
from tests.chart.conftest import RenderError, container, env_of, helm_template

pytestmark = pytest.mark.chart

POD_IP = "airflow.utils.net.get_host_ip_address"
TRIGGERERS = [("Deployment", f"{R}-triggerer", "triggerer"), ("Deployment", f"{R}-triggerer-default", "triggerer")]


def _triggerer_containers(rendered) -> list[tuple[str, dict]]:
    out = [(name, container(rendered.get(kind, name)["spec"]["template"]["spec"], c)) for kind, name, c in TRIGGERERS]
    for g, deployment in shard_groups(rendered).items():
        out.append((f"{R}-sensor-shard-{g}", container(deployment["spec"]["template"]["spec"], "sensor-shard")))
    return out


def test_triggerers_record_their_pod_ip_and_serve_logs_on_the_port_the_api_server_reads(default):
    api = container(default.get("Deployment", f"{R}-api-server")["spec"]["template"]["spec"], "api-server")
    assert env_of(api)["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]["value"] == "8794"
    for name, c in _triggerer_containers(default):
        env = env_of(c)
        assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"]["value"] == POD_IP, name
        assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]["value"] == "8794", name
        assert ports(c) == {8794}, name
        assert next(p for p in c["ports"] if p["containerPort"] == 8794)["name"] == "trigger-logs"
    # workers keep their pod names: the StatefulSet's names resolve through the headless Service
    for name, c in airflow_containers(default, init_containers=False):
        names = [e["name"] for e in c["env"]]
        assert names.count("AIRFLOW__CORE__HOSTNAME_CALLABLE") == 1, name
        if "triggerer" not in name and "sensor-shard" not in name:
            assert env_of(c)["AIRFLOW__CORE__HOSTNAME_CALLABLE"]["value"] == "socket.gethostname", name


def test_one_trigger_log_port_for_servers_service_and_policy(render):
    rendered = render(None, "config.logging.trigger_log_server_port=9100", "networkPolicies.enabled=true")
    for name, c in airflow_containers(rendered, init_containers=False):
        assert env_of(c)["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]["value"] == "9100", name
    for name, c in _triggerer_containers(rendered):
        assert ports(c) == {9100}, name
    svc = rendered.get("Service", f"{R}-sensor-shard")["spec"]
    assert [(p["name"], p["port"]) for p in svc["ports"]] == [("trigger-logs", 9100)]
    policy = rendered.get("NetworkPolicy", f"{R}-trigger-logs")["spec"]
    assert policy["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": R}}}],
            "ports": [{"port": 9100, "protocol": "TCP"}],
        }
    ]
    (expr,) = policy["podSelector"]["matchExpressions"]
    assert expr["key"] == "component" and expr["operator"] == "In"
    assert sorted(expr["values"]) == ["sensor-shard", "triggerer", "triggerer-default"]


def test_the_trigger_log_policy_follows_the_triggerer_queues_and_shards(render):
    rendered = render(None, "networkPolicies.enabled=true", "triggerer.queues={a,b}", "sensorShards.enabled=false")
    (expr,) = rendered.get("NetworkPolicy", f"{R}-trigger-logs")["spec"]["podSelector"]["matchExpressions"]
    assert sorted(expr["values"]) == ["triggerer", "triggerer-a", "triggerer-b"]


def test_a_users_hostname_callable_reaches_the_triggerers_only(render):
    rendered = render(
        None, "triggerer.hostnameCallable=my_company.net.pod_address", "config.core.hostname_callable=x.y"
    )
    for name, c in _triggerer_containers(rendered):
        assert env_of(c)["AIRFLOW__CORE__HOSTNAME_CALLABLE"]["value"] == "my_company.net.pod_address", name
    scheduler = container(rendered.get("Deployment", f"{R}-scheduler")["spec"]["template"]["spec"], "scheduler")
    assert env_of(scheduler)["AIRFLOW__CORE__HOSTNAME_CALLABLE"]["value"] == "x.y"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["config.logging.trigger_log_server_port=logs"],
            'config.logging.trigger_log_server_port must be a port number (1-65535), not "logs"',
        ),
        (
            ["config.logging.trigger_log_server_port=70000"],
            'config.logging.trigger_log_server_port must be a port number (1-65535), not "70000"',
        ),
        # the old per-shard value: one port serves every triggerer now, and the api-server must know it
        (["sensorShards.logServerPort=9000"], "additional properties 'logServerPort' not allowed"),
        (["triggerer.hostnameCallable=pod ip"], "at '/triggerer/hostnameCallable'"),
    ],
)
def test_bad_trigger_log_values_fail_with_a_readable_message(helm_binary, sets, message):
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, *[a for s in sets for a in ("--set", s)])
    assert message in err.value.stderr
