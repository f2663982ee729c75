"""remoteLogs and logStore: Airflow's remote task logs on every Airflow pod, and the release's SeaweedFS store."""

from __future__ import annotations

import pytest

from tests.chart.components import R, airflow_containers, pod
from tests.chart.conftest import RenderError, container, env_of, helm_template

pytestmark = pytest.mark.chart

STORE = f"{R}-log-store"


def _expanded(env: dict[str, dict], name: str, values: dict[str, str]) -> str:
    """An env value with its $(VAR) references expanded as the kubelet does."""
    text = env[name]["value"]
    for var, value in values.items():
        text = text.replace(f"$({var})", value)
    return text


def test_every_airflow_pod_logs_to_the_releases_store(default):
    containers = airflow_containers(default)
    assert len(containers) > 8
    for name, c in containers:
        env = env_of(c)
        assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"]["value"] == "True", name
        assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"]["value"] == "s3://airflow-logs/tasks", name
        assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"]["value"] == "airflow_ha_logs", name
        for var, key in (("ACCESS_KEY", "access-key-id"), ("SECRET_KEY", "secret-access-key")):
            ref = env[f"AIRFLOW_HA_LOG_STORE_{var}"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": STORE, "key": key}, name
        # the connection names the keys only by reference: no rendered object holds them
        assert "$(AIRFLOW_HA_LOG_STORE_SECRET_KEY)" in env["AIRFLOW_CONN_AIRFLOW_HA_LOGS"]["value"], name
    secret = default.get("Secret", STORE)
    assert set(secret["data"]) == {"access-key-id", "secret-access-key"}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_the_connection_is_what_the_amazon_provider_needs(default):
    """The rendered connection, keys expanded as the kubelet does, through Airflow's Connection and the Amazon
    provider's wrapper: the store's Service as endpoint, path-style buckets, timeouts that move on from a
    store pod whose node is gone within seconds."""
    from airflow.models.connection import Connection
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    env = env_of(container(pod(default, "Deployment", f"{R}-api-server"), "api-server"))
    keys = {"AIRFLOW_HA_LOG_STORE_ACCESS_KEY": "AKEXAMPLE", "AIRFLOW_HA_LOG_STORE_SECRET_KEY": "s3cr3t"}
    conn = Connection.from_json(_expanded(env, "AIRFLOW_CONN_AIRFLOW_HA_LOGS", keys), conn_id="airflow_ha_logs")
    wrapper = AwsConnectionWrapper(conn)
    assert wrapper.conn_type == "aws"
    assert wrapper.endpoint_url == f"http://{STORE}:8333"
    assert (wrapper.aws_access_key_id, wrapper.aws_secret_access_key) == ("AKEXAMPLE", "s3cr3t")
    config = wrapper.botocore_config
    assert config.s3 == {"addressing_style": "path"}
    assert (config.connect_timeout, config.retries) == (3, {"mode": "standard", "max_attempts": 10})


def test_the_store_statefulset_spreads_three_peers_and_keeps_two_copies(default):
    sts = default.get("StatefulSet", STORE)
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["podManagementPolicy"] == "Parallel"
    c = container(sts["spec"]["template"]["spec"], "seaweedfs")
    script = c["args"][0]
    peers = ",".join(f"{STORE}-{i}.{STORE}-headless.airflow-ha.svc:9333" for i in range(3))
    assert f"-master.peers={peers}" in script
    assert f'-ip="$POD_NAME.{STORE}-headless.airflow-ha.svc"' in script
    assert "-master.defaultReplication=001" in script and "-master.telemetry=false" in script
    assert "-s3.config=/tmp/s3.json" in script
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "s3"}
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "4Gi"
    headless = default.get("Service", f"{STORE}-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert default.get("Service", STORE)["spec"]["ports"][0]["port"] == 8333
    assert default.get("PodDisruptionBudget", STORE)["spec"]["maxUnavailable"] == 1


def test_an_external_store_runs_no_store_and_takes_the_connection_from_a_secret(render):
    rendered = render(
        None,
        "remoteLogs.external.enabled=true",
        "remoteLogs.baseFolder=s3://team-logs/airflow",
        "remoteLogs.connId=team_s3",
        "remoteLogs.external.connectionSecret.name=team-s3",
    )
    assert not rendered.has("StatefulSet", STORE) and not rendered.has("Secret", STORE)
    for name, c in airflow_containers(rendered):
        env = env_of(c)
        assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"]["value"] == "s3://team-logs/airflow", name
        assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"]["value"] == "team_s3", name
        assert env["AIRFLOW_CONN_TEAM_S3"]["valueFrom"]["secretKeyRef"] == {"name": "team-s3", "key": "connection"}
        assert "AIRFLOW_HA_LOG_STORE_ACCESS_KEY" not in env, name


def test_remote_logs_off_renders_no_store_and_no_remote_config(render):
    rendered = render(None, "remoteLogs.enabled=false")
    assert not rendered.has("StatefulSet", STORE)
    for name, c in airflow_containers(rendered):
        env = env_of(c)
        assert not any(k.startswith("AIRFLOW__LOGGING__REMOTE") or "LOG_STORE" in k for k in env), name


def test_the_users_logging_config_wins_without_duplicate_env(render):
    rendered = render(None, "config.logging.remote_base_log_folder=s3://mine/x")
    for name, c in airflow_containers(rendered):
        names = [e["name"] for e in c["env"]]
        assert names.count("AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER") == 1, name
        assert env_of(c)["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"]["value"] == "s3://mine/x", name


def test_the_network_policy_opens_s3_to_the_release_and_the_store_ports_to_its_peers(render):
    rendered = render(None, "networkPolicies.enabled=true")
    policy = rendered.get("NetworkPolicy", STORE)
    s3, peers = policy["spec"]["ingress"]
    assert s3["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": R}}}]
    assert s3["ports"] == [{"port": 8333, "protocol": "TCP"}]
    assert peers["from"][0]["podSelector"]["matchLabels"]["component"] == "log-store"
    assert {p["port"] for p in peers["ports"]} == {9333, 19333, 8080, 18080, 8888, 18888}


def test_gitops_names_the_store_keys_and_renders_no_key(render):
    rendered = render("gitops.yaml")
    env = env_of(container(pod(rendered, "Deployment", f"{R}-api-server"), "api-server"))
    assert env["AIRFLOW_HA_LOG_STORE_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "airflow-ha-log-store"
    assert not rendered.has("Secret", STORE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set-string", "logStore.replication=002", "--set", "logStore.replicas=2"],
            'logStore.replication "002" keeps 3 copies of each log on different pods: logStore.replicas (2)',
        ),
        (["--set", "logStore.replicas=1"], 'logStore.replication "001" keeps 2 copies'),
        (["--set-string", "logStore.replication=1"], "/logStore/replication"),
        (["--set", "remoteLogs.connId=my-logs"], "/remoteLogs/connId"),
        (["--set", "remoteLogs.baseFolder=airflow-logs"], "/remoteLogs/baseFolder"),
        (["--set", "logStore.volumesPerPod=0"], "/logStore/volumesPerPod"),
    ],
)
def test_bad_log_values_fail_with_a_readable_message(helm_binary, args, message):
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, *args)
    assert message in err.value.stderr, err.value.stderr
