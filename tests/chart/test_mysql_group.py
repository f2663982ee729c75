"""mysql.mode groupReplication: the members' StatefulSet (agent sidecar, anti-affinity, volumes), the
headless Service, HAProxy (config, Deployment, Service), budgets, secrets and Airflow's database host."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.chart.components import pod_url
from tests.chart.conftest import RenderError, container, env_of, helm_template

pytestmark = pytest.mark.chart

R = "airflow-ha"
GR = "mysql.mode=groupReplication"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def gr(render):
    return render(None, GR)


def secret(rendered, name: str, key: str) -> str:
    return base64.b64decode(rendered.get("Secret", name)["data"][key]).decode()


def haproxy_cfg(rendered) -> str:
    return rendered.get("ConfigMap", f"{R}-mysql-proxy")["data"]["haproxy.cfg"]


def agent_args(rendered, prefix: str = R) -> dict[str, str]:
    sts = rendered.get("StatefulSet", f"{prefix}-mysql-gr")
    args = container(sts["spec"]["template"]["spec"], "agent")["args"]
    assert args[:2] == ["airflow-ha", "mysql-agent"]
    return dict(a[2:].split("=", 1) for a in args[2:])


def test_single_is_the_default_and_renders_no_group(default):
    assert default.has("StatefulSet", f"{R}-mysql")
    for kind, name in [
        ("StatefulSet", f"{R}-mysql-gr"),
        ("DaemonSet", f"{R}-mysql-proxy"),
        ("Deployment", f"{R}-mysql-proxy"),
        ("Service", f"{R}-mysql-proxy"),
        ("ConfigMap", f"{R}-mysql-proxy"),
    ]:
        assert not default.has(kind, name)
    assert urlsplit(pod_url(default, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")).hostname == f"{R}-mysql"
    # the recovery user's password is generated and kept in every mode (switching modes keeps it)
    assert len(secret(default, f"{R}-mysql-passwords", "mysql-recovery-password")) == 32


def test_group_members_statefulset(gr):
    assert not gr.has("StatefulSet", f"{R}-mysql") and not gr.has("Service", f"{R}-mysql")
    sts = gr.get("StatefulSet", f"{R}-mysql-gr")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"  # member 0 bootstraps only once every member answers
    assert spec["serviceName"] == f"{R}-mysql-gr"
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = spec["template"]["spec"]
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    assert required[0]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]

    mysql = container(pod, "mysql")
    script = mysql["args"][2]
    assert mysql["args"][:2] == ["bash", "-ec"] and "exec docker-entrypoint.sh mysqld" in script
    assert "--server-id=$(( ${HOSTNAME##*-} + 1 ))" in script
    assert f'--report-host="${{HOSTNAME}}.{R}-mysql-gr.{R}.svc.cluster.local"' in script
    for arg in (
        "--gtid-mode=ON",
        "--enforce-gtid-consistency=ON",
        "--loose-group-replication-start-on-boot=OFF",
        "--character-set-server=utf8mb4",
    ):
        assert arg in mysql["args"]
    assert {p["containerPort"] for p in mysql["ports"]} == {3306, 33061}
    assert {m["mountPath"] for m in mysql["volumeMounts"]} == {"/var/lib/mysql", "/docker-entrypoint-initdb.d"}
    initdb = gr.get("ConfigMap", f"{R}-mysql-gr-initdb")["data"]
    assert list(initdb.values()) == ["RESET BINARY LOGS AND GTIDS;\n"]

    agent = container(pod, "agent")
    assert agent["image"].startswith("airflow-ha/airflow:")
    assert agent["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert agent["securityContext"]["runAsUser"] == 50000
    env = env_of(agent)
    assert env["MYSQL_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{R}-mysql-passwords",
        "key": "mysql-root-password",
    }
    assert env["AIRFLOW_HA_MYSQL_RECOVERY_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mysql-recovery-password"
    # its group communication address: the pod IP (XCom must not wait on cluster DNS)
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_agent_arguments(gr, render):
    args = agent_args(gr)
    hosts = [f"{R}-mysql-gr-{i}.{R}-mysql-gr.{R}.svc.cluster.local" for i in range(3)]
    assert args["members"] == ",".join(f"{h}:3306" for h in hosts)
    assert args["group-members"] == ",".join(f"{h}:33061" for h in hosts)
    assert UUID.match(args["group-name"])
    assert agent_args(render(None, GR))["group-name"] == args["group-name"]  # stable across upgrades
    assert args["member-expel-timeout"] == "0" and args["clone-threshold"] == "1000"
    assert args["http-port"] == "8008"
    other = render(None, GR, "fullnameOverride=other")
    assert agent_args(other, "other")["group-name"] != args["group-name"]
    fixed = agent_args(render(None, GR, "mysql.groupReplication.groupName=AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"))
    assert fixed["group-name"] == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert "clone-threshold" not in agent_args(render(None, GR, "mysql.groupReplication.cloneThreshold=null"))


def test_five_members(render):
    rendered = render(None, GR, "mysql.groupReplication.members=5", "mysql.groupReplication.podAntiAffinity=preferred")
    assert rendered.get("StatefulSet", f"{R}-mysql-gr")["spec"]["replicas"] == 5
    assert len(agent_args(rendered)["members"].split(",")) == 5
    assert len(re.findall(r"^\s+server member-\d ", haproxy_cfg(rendered), re.M)) == 5
    pod = rendered.get("StatefulSet", f"{R}-mysql-gr")["spec"]["template"]["spec"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]


def test_headless_service_publishes_members_before_they_are_ready(gr):
    svc = gr.get("Service", f"{R}-mysql-gr")["spec"]
    assert svc["clusterIP"] == "None" and svc["publishNotReadyAddresses"] is True
    assert {p["port"] for p in svc["ports"]} == {3306, 33061, 8008}


def test_airflow_reaches_the_database_through_haproxy(gr):
    for var in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert urlsplit(pod_url(gr, var)).hostname == f"{R}-mysql-proxy"
    assert urlsplit(secret(gr, f"{R}-connections", "metadata-connection-uri")).hostname == f"{R}-mysql-proxy"
    svc = gr.get("Service", f"{R}-mysql-proxy")
    assert svc["spec"]["selector"]["component"] == "mysql-proxy"
    assert svc["spec"]["ports"][0]["port"] == 3306
    scheduler = gr.get("Deployment", f"{R}-scheduler")["spec"]["template"]["spec"]
    env = env_of(container(scheduler, "scheduler"))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_PRE_PING"]["value"] == "True"


def test_haproxy_checks_each_agent_for_the_primary(gr):
    cfg = haproxy_cfg(gr)
    assert "mode tcp" in cfg
    assert "option httpchk GET /primary" in cfg and "http-check expect status 200" in cfg
    assert "on-marked-down shutdown-sessions" in cfg
    assert "check port 8008" in cfg and "balance first" in cfg
    servers = re.findall(r"^\s+server member-(\d) (\S+)$", cfg, re.M)
    assert servers == [(str(i), f"{R}-mysql-gr-{i}.{R}-mysql-gr.{R}.svc.cluster.local:3306") for i in range(3)]
    assert "resolvers cluster" in cfg and "init-addr last,libc,none" in cfg
    # a DNS outage (a lost node's CoreDNS pod) keeps the members' last addresses: no member goes to maintenance
    holds = dict(re.findall(r"^\s+hold (\w+) (\S+)$", cfg, re.M))
    assert holds["timeout"] == holds["refused"] == holds["other"] == "300s" and holds["valid"] == "5s"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (.ci/run installs it)")
def test_haproxy_accepts_the_config(gr, tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_cfg(gr))
    result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _proxy_pod_checks(pod: dict) -> None:
    haproxy = container(pod, "haproxy")
    assert haproxy["args"] == ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
    assert haproxy["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_proxy_runs_on_every_node_and_each_pod_uses_its_own_nodes(gr):
    """placement perNode (default): a lost node's proxy is never chosen by a pod elsewhere."""
    ds = gr.get("DaemonSet", f"{R}-mysql-proxy")
    assert not gr.has("Deployment", f"{R}-mysql-proxy")
    pod = ds["spec"]["template"]["spec"]
    assert "affinity" not in pod or "podAntiAffinity" not in pod["affinity"]
    _proxy_pod_checks(pod)
    assert ds["spec"]["template"]["metadata"]["annotations"]["checksum/haproxy-cfg"]
    assert gr.get("Service", f"{R}-mysql-proxy")["spec"]["internalTrafficPolicy"] == "Local"
    assert gr.get("PodDisruptionBudget", f"{R}-mysql-gr")["spec"]["maxUnavailable"] == 1
    assert not gr.has("PodDisruptionBudget", f"{R}-mysql-proxy")  # a drain leaves DaemonSet pods alone


def test_proxy_as_a_service_deployment(render):
    rendered = render(None, GR, "mysql.proxy.placement=service")
    dep = rendered.get("Deployment", f"{R}-mysql-proxy")
    assert dep["spec"]["replicas"] == 2 and not rendered.has("DaemonSet", f"{R}-mysql-proxy")
    pod = dep["spec"]["template"]["spec"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    _proxy_pod_checks(pod)
    assert "internalTrafficPolicy" not in rendered.get("Service", f"{R}-mysql-proxy")["spec"]
    for name in (f"{R}-mysql-gr", f"{R}-mysql-proxy"):
        assert rendered.get("PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1


def test_every_replicated_workload_has_a_budget_in_group_mode(gr):
    from tests.chart.test_disruption import test_every_replicated_workload_has_a_pdb_that_lets_a_drain_through

    test_every_replicated_workload_has_a_pdb_that_lets_a_drain_through(lambda _values: gr, None)


def test_external_database_wins_over_the_mode(render):
    rendered = render(
        None,
        GR,
        "database.external.enabled=true",
        "database.external.host=db.example.com",
        "database.external.passwordSecret.name=airflow-db",
    )
    assert not rendered.has("StatefulSet", f"{R}-mysql-gr") and not rendered.has("DaemonSet", f"{R}-mysql-proxy")
    assert urlsplit(pod_url(rendered, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")).hostname == "db.example.com"


def test_network_policies_in_group_mode(render):
    rendered = render(None, GR, "networkPolicies.enabled=true")
    gr_policy = rendered.get("NetworkPolicy", f"{R}-mysql-gr")["spec"]
    ports = {p["port"] for rule in gr_policy["ingress"] for p in rule["ports"]}
    assert ports == {3306, 33061, 8008}
    assert rendered.has("NetworkPolicy", f"{R}-mysql-proxy") and not rendered.has("NetworkPolicy", f"{R}-mysql")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["mysql.mode=galera"], "at '/mysql/mode': value must be one of 'single', 'groupReplication'"),
        (["mysql.groupReplication.members=4"], "at '/mysql/groupReplication/members': value must be one of 3, 5, 7, 9"),
        (["mysql.groupReplication.members=1"], "value must be one of 3, 5, 7, 9"),
        (["mysql.groupReplication.members=11"], "value must be one of 3, 5, 7, 9"),
        (["mysql.proxy.replicas=1"], "at '/mysql/proxy/replicas': minimum: got 1, want 2"),
        (["mysql.groupReplication.groupName=not-a-uuid"], "at '/mysql/groupReplication/groupName'"),
        (["mysql.groupReplication.podAntiAffinity=always"], "at '/mysql/groupReplication/podAntiAffinity'"),
        (["mysql.proxy.idleTimeout=forever"], "at '/mysql/proxy/idleTimeout'"),
        (
            ["mysql.proxy.placement=everywhere"],
            "at '/mysql/proxy/placement': value must be one of 'perNode', 'service'",
        ),
    ],
)
def test_bad_group_values_fail_with_readable_errors(helm_binary, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, *args)
    assert message in err.value.stderr, err.value.stderr
