"""Per-component assertions on the rendered chart: replicas, probes, ports, env wiring, secrets,
non-root pods, anti-affinity, PDBs, hooks, the Redis Cluster topology and the broker URL."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.chart.conftest import NAMESPACE, VERSION, container, env_of

pytestmark = pytest.mark.chart

R = "airflow-ha"
AIRFLOW_WORKLOADS = {
    ("Deployment", f"{R}-api-server"): "api-server",
    ("Deployment", f"{R}-scheduler"): "scheduler",
    ("Deployment", f"{R}-dag-processor"): "dag-processor",
    ("Deployment", f"{R}-triggerer"): "triggerer",
    ("Deployment", f"{R}-triggerer-default"): "triggerer-default",
    ("StatefulSet", f"{R}-worker"): "worker",
    ("Deployment", f"{R}-sensor-shard-0"): "sensor-shard",
    ("Deployment", f"{R}-sensor-shard-1"): "sensor-shard",
}
SECRET_ENV = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (f"{R}-connections", "sql-alchemy-conn"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": (f"{R}-connections", "sql-alchemy-conn-async"),
    "AIRFLOW__CELERY__RESULT_BACKEND": (f"{R}-connections", "result-backend"),
    "AIRFLOW__CELERY__BROKER_URL": (f"{R}-connections", "broker-url"),
    "AIRFLOW__CORE__FERNET_KEY": (f"{R}-fernet-key", "fernet-key"),
    "AIRFLOW__API_AUTH__JWT_SECRET": (f"{R}-api-secrets", "jwt-secret"),
    "AIRFLOW__API__SECRET_KEY": (f"{R}-api-secrets", "api-secret-key"),
}
PLAIN_ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airflow_ha.broker.celery_config.CELERY_CONFIG",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{R}-api-server:8080/execution/",
    "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "True",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "20",
    "AIRFLOW_HA_SENSOR_SHARDS": "2",
    "AIRFLOW_HA_VIRTUAL_SHARDS": "64",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "/opt/airflow/auth/passwords.json",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "30",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "8793",
}


def secret_value(rendered, name: str, key: str) -> str:
    return base64.b64decode(rendered.get("Secret", name)["data"][key]).decode()


def pod(rendered, kind: str, name: str) -> dict:
    return rendered.get(kind, name)["spec"]["template"]["spec"]


def ports(c: dict) -> set[int]:
    return {p["containerPort"] for p in c.get("ports", [])}


# ---------------------------------------------------------------- Airflow components


def test_airflow_workloads_and_commands(default):
    expected_args = {
        f"{R}-api-server": ["airflow", "api-server", "--port", "8080"],
        f"{R}-scheduler": ["airflow", "scheduler"],
        f"{R}-dag-processor": ["airflow", "dag-processor"],
        f"{R}-triggerer": ["airflow", "triggerer"],
        f"{R}-triggerer-default": ["airflow", "triggerer", "--queues", "default"],
        f"{R}-worker": ["airflow", "celery", "worker"],
        f"{R}-sensor-shard-0": ["airflow-ha", "sensor-shard"],
        f"{R}-sensor-shard-1": ["airflow-ha", "sensor-shard"],
    }
    for (kind, name), component in AIRFLOW_WORKLOADS.items():
        obj = default.get(kind, name)
        spec = obj["spec"]["template"]["spec"]
        main = spec["containers"][0]
        assert main["image"] == f"airflow-ha/airflow:{VERSION}"
        assert main["args"] == expected_args[name], name
        assert "command" not in main, f"{name}: the image's entrypoint must run (args only)"
        assert obj["spec"]["template"]["metadata"]["labels"]["component"] == component, name


@pytest.mark.parametrize(
    ("kind", "name", "replicas"),
    [
        ("Deployment", f"{R}-api-server", 2),
        ("Deployment", f"{R}-scheduler", 2),
        ("Deployment", f"{R}-dag-processor", 1),
        ("Deployment", f"{R}-triggerer", 1),
        ("Deployment", f"{R}-triggerer-default", 1),
        ("StatefulSet", f"{R}-worker", 2),
        ("Deployment", f"{R}-sensor-shard-0", 2),
        ("Deployment", f"{R}-sensor-shard-1", 2),
        ("StatefulSet", f"{R}-redis", 6),
        ("StatefulSet", f"{R}-mysql", 1),
    ],
)
def test_default_replicas(default, kind, name, replicas):
    assert default.get(kind, name)["spec"]["replicas"] == replicas


def test_replicas_follow_values(render):
    rendered = render(
        None,
        "scheduler.replicas=3",
        "workers.replicas=5",
        "sensorShards.count=4",
        "redis.masters=4",
        "redis.replicasPerMaster=2",
    )
    assert rendered.get("Deployment", f"{R}-scheduler")["spec"]["replicas"] == 3
    assert rendered.get("StatefulSet", f"{R}-worker")["spec"]["replicas"] == 5
    shards = [d for d in rendered.of_kind("Deployment") if d["metadata"]["name"].startswith(f"{R}-sensor-shard-")]
    assert sorted(d["metadata"]["name"] for d in shards) == [f"{R}-sensor-shard-{g}" for g in range(4)]
    assert {d["spec"]["replicas"] for d in shards} == {2}
    assert rendered.get("StatefulSet", f"{R}-redis")["spec"]["replicas"] == 12
    env = env_of(pod(rendered, "Deployment", f"{R}-scheduler")["containers"][0])
    assert env["AIRFLOW_HA_SENSOR_SHARDS"]["value"] == "4"
    url = secret_value(rendered, f"{R}-connections", "broker-url")
    assert len(url.split("@", 1)[1].split("?", 1)[0].split(",")) == 12


@pytest.mark.parametrize("values_file", [None, "kind.yaml", "kubeone.yaml", "production.yaml"])
def test_env_on_every_airflow_container(render, values_file):
    rendered = render(values_file)
    checked = 0
    for name, spec in rendered.pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            if not c["image"].startswith("airflow-ha/airflow") or c["name"] in (
                "health",
                "reconciler",
                "auth-file",
                "agent",
            ):
                continue
            env = env_of(c)
            for var, value in PLAIN_ENV.items():
                if var == "AIRFLOW_HA_SENSOR_SHARDS" and values_file:
                    assert env[var]["value"].isdigit(), f"{name}/{c['name']}: {var}"
                    continue
                assert env.get(var, {}).get("value") == value, f"{name}/{c['name']}: {var}"
            for var, (secret, key) in SECRET_ENV.items():
                if c["name"] == "migrate-db" and key == "sql-alchemy-conn":
                    key = "sql-alchemy-conn-migrate"  # no read/write timeouts for a migration's ALTERs
                ref = env[var].get("valueFrom", {}).get("secretKeyRef")
                assert ref == {"name": secret, "key": key}, f"{name}/{c['name']}: {var} must come from a Secret"
                assert "value" not in env[var]
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/opt/airflow/auth" in mounts, f"{name}/{c['name']}"
            checked += 1
    assert checked >= 15


def test_config_map_renders_env(render):
    rendered = render(None, "config.celery.operation_timeout=7", "config.scheduler.task_queued_timeout=99")
    env = env_of(pod(rendered, "Deployment", f"{R}-scheduler")["containers"][0])
    assert env["AIRFLOW__CELERY__OPERATION_TIMEOUT"]["value"] == "7"
    assert env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]["value"] == "99"


def test_database_operations_outlast_a_primary_election(default):
    env = env_of(pod(default, "Deployment", f"{R}-scheduler")["containers"][0])
    assert env["AIRFLOW__DATABASE__MAX_DB_RETRIES"]["value"] == "12"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_PRE_PING"]["value"] == "True"


def test_every_airflow_pod_waits_for_migrations(default):
    for (kind, name), _ in AIRFLOW_WORKLOADS.items():
        init = pod(default, kind, name)["initContainers"]
        assert [c["name"] for c in init] == ["auth-file", "wait-for-migrations"], name
        assert init[1]["args"] == ["airflow-ha", "wait-for-migrations", "--timeout", "600"]


def test_auth_passwords_file_is_writable_copy_of_the_secret(default):
    # The simple auth manager opens the file with "a+": a read-only Secret mount crashes the api-server.
    spec = pod(default, "Deployment", f"{R}-api-server")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["auth"]
    assert volumes["auth-secret"]["secret"]["secretName"] == f"{R}-admin-password"
    init = spec["initContainers"][0]
    assert init["args"] == ["cp", "/opt/airflow/auth-secret/passwords.json", "/opt/airflow/auth/passwords.json"]
    mount = next(m for m in container(spec, "api-server")["volumeMounts"] if m["name"] == "auth")
    assert mount["mountPath"] == "/opt/airflow/auth" and not mount.get("readOnly")


def test_api_server(default):
    spec = pod(default, "Deployment", f"{R}-api-server")
    c = container(spec, "api-server")
    assert ports(c) == {8080}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/api/v2/monitor/health", probe
        assert c[probe]["httpGet"]["port"] in (8080, "api")
    svc = default.get("Service", f"{R}-api-server")
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert svc["spec"]["selector"]["component"] == "api-server"
    assert default.get("PodDisruptionBudget", f"{R}-api-server")["spec"]["maxUnavailable"] == 1


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


def test_triggerers_liveness(default):
    for name in (f"{R}-triggerer", f"{R}-triggerer-default"):
        c = pod(default, "Deployment", name)["containers"][0]
        assert c["livenessProbe"]["exec"]["command"] == [
            "airflow",
            "jobs",
            "check",
            "--job-type",
            "TriggererJob",
            "--local",
        ]


def test_workers_statefulset_and_log_server(default):
    sts = default.get("StatefulSet", f"{R}-worker")
    assert sts["spec"]["serviceName"] == f"{R}-worker"
    spec = sts["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 600
    c = container(spec, "worker")
    assert ports(c) == {8793}
    assert c["readinessProbe"]["exec"]["command"] == ["airflow-ha", "broker-check"]
    svc = default.get("Service", f"{R}-worker")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["port"] == 8793
    # Task hostnames are pod names: every Airflow pod resolves them through the workers' domain.
    api = pod(default, "Deployment", f"{R}-api-server")
    assert f"{R}-worker.{NAMESPACE}.svc.cluster.local" in api["dnsConfig"]["searches"]
    assert env_of(c)["AIRFLOW__CORE__HOSTNAME_CALLABLE"]["value"] == "socket.gethostname"


def _shard_groups(rendered) -> dict[int, dict]:
    prefix = f"{R}-sensor-shard-"
    return {
        int(d["metadata"]["name"][len(prefix) :]): d
        for d in rendered.of_kind("Deployment")
        if d["metadata"]["name"].startswith(prefix)
    }


NODE_LOSS = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}


def _node_loss_tolerations(spec: dict) -> set[tuple[str, int]]:
    return {(t["key"], t["tolerationSeconds"]) for t in spec.get("tolerations", []) if t["key"] in NODE_LOSS}


def test_sensor_shard_groups_are_deployments_of_two_spread_pods(default):
    """One Deployment per shard group (replaced on a lost node, unlike a StatefulSet pod), 2 pods each,
    the group in the env, the pods of one group kept apart by a per-group label."""
    assert not default.has("StatefulSet", f"{R}-sensor-shard")
    groups = _shard_groups(default)
    assert sorted(groups) == [0, 1]
    for g, deployment in groups.items():
        name = f"{R}-sensor-shard-{g}"
        group_label = {"airflow-ha/sensor-shard-group": str(g)}
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() >= {"component": "sensor-shard", **group_label}.items(), name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels.items() >= selector.items(), name
        assert deployment["spec"]["replicas"] == 2
        # One pod at a time in a rollout and no surge pod: `required` spreading never waits for a spare node.
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
        spec = deployment["spec"]["template"]["spec"]
        c = container(spec, "sensor-shard")
        env = env_of(c)
        assert env["AIRFLOW_HA_SENSOR_SHARD_ORDINAL"]["value"] == str(g)
        assert env["AIRFLOW_HA_SENSOR_SHARDS"]["value"] == "2"
        assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]["value"] == "8794"
        assert ports(c) == {8794}
        preferred = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        term = preferred[0]["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"] == selector  # this group's pods only
        assert _node_loss_tolerations(spec) == {(key, 10) for key in NODE_LOSS}
        pdb = default.get("PodDisruptionBudget", name)["spec"]
        assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    svc = default.get("Service", f"{R}-sensor-shard")["spec"]
    assert svc["clusterIP"] == "None"
    every_group = {k: v for k, v in groups[0]["spec"]["selector"]["matchLabels"].items() if "group" not in k}
    assert svc["selector"] == every_group
    assert [(p["name"], p["port"]) for p in svc["ports"]] == [("trigger-logs", 8794)]


def test_sensor_shard_group_values(render):
    rendered = render(
        None,
        "sensorShards.count=3",
        "sensorShards.replicasPerGroup=3",
        "sensorShards.podAntiAffinity=required",
        "sensorShards.nodeLossTolerationSeconds=5",
        "sensorShards.logServerPort=9000",
    )
    groups = _shard_groups(rendered)
    assert sorted(groups) == [0, 1, 2]
    for g, deployment in groups.items():
        assert deployment["spec"]["replicas"] == 3
        spec = deployment["spec"]["template"]["spec"]
        (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"]["airflow-ha/sensor-shard-group"] == str(g)
        assert _node_loss_tolerations(spec) == {(key, 5) for key in NODE_LOSS}
        assert ports(container(spec, "sensor-shard")) == {9000}
    env = env_of(pod(rendered, "Deployment", f"{R}-scheduler")["containers"][0])
    assert env["AIRFLOW_HA_SENSOR_SHARDS"]["value"] == "3"  # groups, not pods

    single = render(None, "sensorShards.replicasPerGroup=1", "sensorShards.nodeLossTolerationSeconds=null")
    deployment = _shard_groups(single)[0]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert not single.has("PodDisruptionBudget", f"{R}-sensor-shard-0")  # one pod: nothing to budget
    assert _node_loss_tolerations(deployment["spec"]["template"]["spec"]) == set()

    zone = "sensorShards.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]."
    custom = render(
        None,
        f"{zone}weight=1",
        f"{zone}preference.matchExpressions[0].key=zone",
        f"{zone}preference.matchExpressions[0].operator=Exists",
    )
    assert list(pod(custom, "Deployment", f"{R}-sensor-shard-0")["affinity"]) == ["nodeAffinity"]  # replaces ours
    off = render(None, "sensorShards.podAntiAffinity=none")
    assert "affinity" not in pod(off, "Deployment", f"{R}-sensor-shard-0")
    disabled = render(None, "sensorShards.enabled=false")
    assert not _shard_groups(disabled) and not disabled.has("Service", f"{R}-sensor-shard")


def test_triggerer_queues_configurable(render):
    rendered = render(None, "triggerer.queues={default,sensors}")
    c = pod(rendered, "Deployment", f"{R}-triggerer-sensors")["containers"][0]
    assert c["args"] == ["airflow", "triggerer", "--queues", "sensors"]


def test_migrate_db_job_is_a_hook(default):
    job = default.get("Job", f"{R}-migrate-db")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "post-install,post-upgrade"
    assert int(ann["helm.sh/hook-weight"]) > int(
        default.get("Job", f"{R}-redis-bootstrap")["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["airflow", "db", "migrate"]
    assert job["metadata"]["labels"]["component"] == "migrate-db"


# ---------------------------------------------------------------- security


@pytest.mark.parametrize("values_file", [None, "kubeone.yaml", "production.yaml"])
def test_every_pod_runs_as_non_root(render, values_file):
    for name, spec in render(values_file).pod_specs():
        sc = spec["securityContext"]
        assert sc.get("runAsNonRoot") is True, name
        assert sc.get("runAsUser") in (50000, 999), name
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{name}/{c['name']}"
    assert pod(render(values_file), "Deployment", f"{R}-scheduler")["securityContext"]["fsGroup"] == 0
    assert pod(render(values_file), "StatefulSet", f"{R}-redis")["securityContext"]["runAsUser"] == 999


@pytest.mark.parametrize("values_file", [None, "kind.yaml", "kubeone.yaml", "production.yaml"])
def test_no_secret_inlined_in_pod_specs(render, values_file):
    rendered = render(values_file)
    secrets = set()
    for s in rendered.of_kind("Secret"):
        for key, b64 in s.get("data", {}).items():
            value = base64.b64decode(b64).decode()
            secrets.add(value)
            if key == "passwords.json":
                secrets.update(json.loads(value).values())
    for name, spec in rendered.pod_specs():
        text = json.dumps(spec)
        for value in secrets:
            assert value not in text, f"{name} inlines a secret value"


def test_secrets_generated_and_kept(default):
    for name in (
        f"{R}-fernet-key",
        f"{R}-api-secrets",
        f"{R}-redis-password",
        f"{R}-mysql-passwords",
        f"{R}-admin-password",
    ):
        secret = default.get("Secret", name)
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", name
    fernet = secret_value(default, f"{R}-fernet-key", "fernet-key")
    assert len(base64.urlsafe_b64decode(fernet)) == 32
    assert len(secret_value(default, f"{R}-redis-password", "password")) >= 32
    users = json.loads(secret_value(default, f"{R}-admin-password", "passwords.json"))
    assert set(users) == {"admin"} and len(users["admin"]) >= 16
    mysql_pw = secret_value(default, f"{R}-mysql-passwords", "mysql-password")
    conn = secret_value(default, f"{R}-connections", "sql-alchemy-conn")
    timeouts = "connect_timeout=5&read_timeout=20&write_timeout=20"  # values.yaml database.timeouts
    assert conn == f"mysql+mysqldb://airflow:{mysql_pw}@{R}-mysql:3306/airflow?{timeouts}"
    assert (
        secret_value(default, f"{R}-connections", "result-backend")
        == f"db+mysql://airflow:{mysql_pw}@{R}-mysql:3306/airflow?{timeouts}"
    )
    # aiomysql takes no read/write timeout; the migration Job's long ALTERs must not be cut off
    assert (
        secret_value(default, f"{R}-connections", "sql-alchemy-conn-async")
        == f"mysql+aiomysql://airflow:{mysql_pw}@{R}-mysql:3306/airflow?connect_timeout=5"
    )
    assert (
        secret_value(default, f"{R}-connections", "sql-alchemy-conn-migrate")
        == f"mysql+mysqldb://airflow:{mysql_pw}@{R}-mysql:3306/airflow?connect_timeout=5"
    )


def test_no_default_passwords_in_values():
    from tests.chart.conftest import CHART

    text = (CHART / "values.yaml").read_text()
    assert not re.search(r"(?i)^\s*\w*password(?!sFile|Secret)\w*:[ \t]*[^\s#{]", text, re.M)


# ---------------------------------------------------------------- Redis Cluster


def test_broker_url_lists_every_redis_pod(default):
    url = secret_value(default, f"{R}-connections", "broker-url")
    password = secret_value(default, f"{R}-redis-password", "password")
    assert url.startswith(f"rediscluster://:{password}@")
    seeds = url.split("@", 1)[1].split("?", 1)[0].split(",")
    assert seeds == [f"{R}-redis-{i}.{R}-redis-headless.{NAMESPACE}.svc.cluster.local:6379" for i in range(6)]


def test_redis_statefulset(default):
    sts = default.get("StatefulSet", f"{R}-redis")
    assert sts["spec"]["serviceName"] == f"{R}-redis-headless"
    spec = sts["spec"]["template"]["spec"]
    c = container(spec, "redis")
    assert ports(c) == {6379, 16379}
    env = env_of(c)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{R}-redis-password", "key": "password"}
    probe = " ".join(c["readinessProbe"]["exec"]["command"])
    assert "ping" in probe and "cluster" not in probe.lower()
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/data", "/etc/redis"}
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    svc = default.get("Service", f"{R}-redis-headless")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in svc["spec"]["ports"]} == {6379, 16379}


def test_redis_config(default):
    cm = default.get("ConfigMap", f"{R}-redis-config")
    conf = cm["data"]["redis.conf"]
    for line in (
        "cluster-enabled yes",
        "cluster-config-file /data/nodes.conf",
        "cluster-node-timeout 5000",
        "cluster-preferred-endpoint-type hostname",
        "appendonly yes",
    ):
        assert line in conf.splitlines(), line
    start = cm["data"]["start.sh"]
    assert "cluster-announce-hostname ${POD_NAME}.${HEADLESS_SERVICE}.${POD_NAMESPACE}.svc.cluster.local" in start
    assert "requirepass $REDIS_PASSWORD" in start and "masterauth $REDIS_PASSWORD" in start
    assert "password" not in conf.lower()


def test_redis_bootstrap_job(default, render):
    job = default.get("Job", f"{R}-redis-bootstrap")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    script = default.get("ConfigMap", f"{R}-redis-config")["data"]["bootstrap.sh"]
    assert "--cluster-replicas 1" in script and "--cluster-yes" in script
    assert "cluster_known_nodes" in script and "cluster_slots_assigned" in script
    assert '[ "$known" = 1 ] && [ "$assigned" = 0 ]' in script, "must only create an unformed cluster"
    assert "cluster_state:ok" in script
    for i in range(6):
        assert f"{R}-redis-{i}.{R}-redis-headless.{NAMESPACE}.svc.cluster.local" in script
    script2 = render(None, "redis.replicasPerMaster=2").get("ConfigMap", f"{R}-redis-config")["data"]["bootstrap.sh"]
    assert "--cluster-replicas 2" in script2


# ---------------------------------------------------------------- MySQL


def test_mysql(default):
    spec = pod(default, "StatefulSet", f"{R}-mysql")
    c = container(spec, "mysql")
    assert c["image"] == "mysql:9.7"
    assert ports(c) == {3306}
    env = env_of(c)
    for var in ("MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == f"{R}-mysql-passwords"
    assert env["MYSQL_DATABASE"]["value"] == "airflow" and env["MYSQL_USER"]["value"] == "airflow"
    assert "mysqladmin" in " ".join(c["readinessProbe"]["exec"]["command"])
    assert default.get("Service", f"{R}-mysql")["spec"]["ports"][0]["port"] == 3306
    assert default.get("StatefulSet", f"{R}-mysql")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


# ---------------------------------------------------------------- profiles


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
    for g, deployment in _shard_groups(rendered).items():
        assert deployment["spec"]["replicas"] == 2, g
        assert ("node.kubernetes.io/unreachable", 10) in _node_loss_tolerations(deployment["spec"]["template"]["spec"])


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


# ---------------------------------------------------------------- helm test hooks


def test_helm_test_pods(default):
    tests = [o for o in default.of_kind("Pod") if o["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    commands = {o["metadata"]["name"]: o["spec"]["containers"][0]["args"] for o in tests}
    broker = commands[f"{R}-test-broker"]
    assert broker[:2] == ["bash", "-c"] and "airflow-ha broker-check" in broker[2]
    # The Celery ping (a broadcast through the rediscluster:// transport) wants every worker replica.
    assert "app.control.ping(" in broker[2] and "want = 2  # workers.replicas" in broker[2]
    assert commands[f"{R}-test-db-migrations"][:3] == ["airflow", "db", "check-migrations"]
    assert "/api/v2/monitor/health" in json.dumps(default.get("Pod", f"{R}-test-api-server-health")["spec"])


def test_notes_mention_port_forward_and_password(helm_binary):
    import subprocess

    from tests.chart.conftest import CHART

    proc = subprocess.run(
        [str(helm_binary), "install", R, str(CHART), "-n", NAMESPACE, "--dry-run=client"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"kubectl -n {NAMESPACE} port-forward svc/{R}-api-server 8080:8080" in proc.stdout
    assert f"get secret {R}-admin-password" in proc.stdout


def test_pods_roll_when_topology_or_config_changes(default, render):
    def annotations(rendered):
        return pod_meta(rendered, "Deployment", f"{R}-scheduler")["annotations"]

    base = annotations(default)
    assert annotations(render(None, "redis.masters=4"))["checksum/topology"] != base["checksum/topology"]
    changed = annotations(render(None, "config.scheduler.task_queued_timeout=99"))
    assert changed["checksum/config"] != base["checksum/config"]


def pod_meta(rendered, kind: str, name: str) -> dict:
    return rendered.get(kind, name)["spec"]["template"]["metadata"]


def test_broker_url_parses_with_the_transport_parser(default):
    """The URL the chart writes is the one airflow_ha's rediscluster:// transport reads."""
    from airflow_ha.broker.url import parse

    parsed = parse(secret_value(default, f"{R}-connections", "broker-url"))
    assert parsed.password == secret_value(default, f"{R}-redis-password", "password")
    assert [h for h, _ in parsed.seeds] == [
        f"{R}-redis-{i}.{R}-redis-headless.{NAMESPACE}.svc.cluster.local" for i in range(6)
    ]
    assert {p for _, p in parsed.seeds} == {6379}
    # broker.transportOptions ride in the query: the split-brain mitigation is on by default.
    assert parsed.options == {"replication_wait_policy": "auto"}


def test_markers_volume_is_shared_by_every_airflow_pod(default, render):
    for (kind, name), _component in AIRFLOW_WORKLOADS.items():
        spec = pod(default, kind, name)
        assert "markers" not in {v["name"] for v in spec["volumes"]}, name
        assert env_of(spec["containers"][0])["AIRFLOW_HA_MARKER_DIR"]["value"] == "/opt/airflow/markers"
    on_host = render(None, "markers.enabled=true", "markers.hostPath=/srv/markers")
    claim = render(None, "markers.enabled=true", "markers.existingClaim=markers-rwx")
    for (kind, name), _component in AIRFLOW_WORKLOADS.items():
        host_volumes = {v["name"]: v for v in pod(on_host, kind, name)["volumes"]}
        assert host_volumes["markers"]["hostPath"] == {"path": "/srv/markers", "type": "DirectoryOrCreate"}
        claim_volumes = {v["name"]: v for v in pod(claim, kind, name)["volumes"]}
        assert claim_volumes["markers"]["persistentVolumeClaim"] == {"claimName": "markers-rwx"}
        mounts = {m["name"]: m["mountPath"] for m in pod(claim, kind, name)["containers"][0]["volumeMounts"]}
        assert mounts["markers"] == "/opt/airflow/markers"


def test_metadata_db_is_offered_as_an_airflow_connection_uri(default, render):
    uri = secret_value(default, f"{R}-connections", "metadata-connection-uri")
    conn = secret_value(default, f"{R}-connections", "sql-alchemy-conn")
    # the same server and credentials; the hook's connection takes no client timeouts (its own extras)
    assert (
        uri.startswith("mysql://")
        and uri.removeprefix("mysql://") == conn.removeprefix("mysql+mysqldb://").split("?")[0]
    )
    kubeone = render("kubeone.yaml")
    worker = pod(kubeone, "StatefulSet", f"{R}-worker")["containers"][0]
    ref = env_of(worker)["AIRFLOW_CONN_HA_PROBE_DB"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{R}-connections", "key": "metadata-connection-uri"}
    assert "default,q1,q2,q3,q4,q5" in worker["args"]
