"""What every Airflow component shares: workloads and args, replicas, env and config, migrations, auth,
rollouts on config change, the markers volume, the metadata DB connection."""

from __future__ import annotations

import pytest

from tests.chart.components import (
    AIRFLOW_WORKLOADS,
    PLAIN_ENV,
    SECRET_ENV,
    URL_ENV,
    R,
    pod,
    pod_meta,
    pod_url,
    secret_value,
    worker_sets,
)
from tests.chart.conftest import VERSION, container, env_of

pytestmark = pytest.mark.chart


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
    url = pod_url(rendered, "AIRFLOW__CELERY__BROKER_URL")
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
                "markers-permissions",  # chown/setfacl only: runs no Airflow code
            ):
                continue
            env = env_of(c)
            for var, value in PLAIN_ENV.items():
                if var == "AIRFLOW_HA_SENSOR_SHARDS" and values_file:
                    assert env[var]["value"].isdigit(), f"{name}/{c['name']}: {var}"
                    continue
                assert env.get(var, {}).get("value") == value, f"{name}/{c['name']}: {var}"
            for var, (secret, key) in SECRET_ENV.items():
                ref = env[var].get("valueFrom", {}).get("secretKeyRef")
                assert ref == {"name": secret, "key": key}, f"{name}/{c['name']}: {var} must come from a Secret"
                assert "value" not in env[var]
            order = [e["name"] for e in c["env"]]
            for var, password in URL_ENV.items():
                # the kubelet expands $(VAR) only from variables defined before it
                assert f":$({password})@" in env[var]["value"], f"{name}/{c['name']}: {var}"
                assert order.index(password) < order.index(var), f"{name}/{c['name']}: {password} after {var}"
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


def test_pods_roll_when_topology_or_config_changes(default, render):
    def annotations(rendered):
        return pod_meta(rendered, "Deployment", f"{R}-scheduler")["annotations"]

    base = annotations(default)
    assert annotations(render(None, "redis.masters=4"))["checksum/topology"] != base["checksum/topology"]
    changed = annotations(render(None, "config.scheduler.task_queued_timeout=99"))
    assert changed["checksum/config"] != base["checksum/config"]


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


def test_workers_make_the_marker_root_writable_for_every_job(default, render):
    """Only the workers (they write markers) run the root init container, with two capabilities, and only
    with a marker volume; it gives the root the Airflow uid, mode 2775 and a default ACL."""
    on_host = render(None, "markers.enabled=true", "markers.hostPath=/srv/markers")
    off = render(None, "markers.enabled=true", "markers.hostPath=/srv/markers", "markers.setPermissions=false")
    for (kind, name), component in AIRFLOW_WORKLOADS.items():
        inits = {c["name"]: c for c in pod(on_host, kind, name)["initContainers"]}
        assert ("markers-permissions" in inits) == (component == "worker"), name
        assert "markers-permissions" not in {c["name"] for c in pod(default, kind, name)["initContainers"]}
        assert "markers-permissions" not in {c["name"] for c in pod(off, kind, name)["initContainers"]}
    init = next(
        c for c in pod(on_host, "StatefulSet", f"{R}-worker")["initContainers"] if c["name"] == "markers-permissions"
    )
    assert init["securityContext"]["runAsUser"] == 0
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert init["volumeMounts"] == [{"name": "markers", "mountPath": "/opt/airflow/markers"}]
    script = init["args"][0]
    assert 'chown 50000:0 "$dir" && chmod 2775 "$dir"' in script
    assert 'setfacl -m u:50000:rwx,g:0:rwx,d:u:50000:rwx,d:g:0:rwx "$dir"' in script
    custom = render(
        None, "markers.enabled=true", "markers.existingClaim=rwx", "airflowPodSecurityContext.runAsUser=1234"
    )
    init = next(
        c for c in pod(custom, "StatefulSet", f"{R}-worker")["initContainers"] if c["name"] == "markers-permissions"
    )
    assert "chown 1234:0" in init["args"][0] and "d:u:1234:rwx" in init["args"][0]


def test_metadata_db_is_offered_as_an_airflow_connection_uri(default, render):
    uri = secret_value(default, f"{R}-connections", "metadata-connection-uri")
    conn = secret_value(default, f"{R}-connections", "sql-alchemy-conn")
    # the same server and credentials; the hook's connection takes no client timeouts (its own extras)
    assert (
        uri.startswith("mysql://")
        and uri.removeprefix("mysql://") == conn.removeprefix("mysql+mysqldb://").split("?")[0]
    )
    kubeone = render("kubeone.yaml")
    for sts in worker_sets(kubeone):
        worker = sts["spec"]["template"]["spec"]["containers"][0]
        ref = env_of(worker)["AIRFLOW_CONN_HA_PROBE_DB"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{R}-connections", "key": "metadata-connection-uri"}
