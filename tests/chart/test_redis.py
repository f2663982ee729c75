"""The Redis Cluster: StatefulSet, config, bootstrap Job, the broker URL the chart writes."""

from __future__ import annotations

import subprocess

import pytest

from tests.chart.components import R, pod_url, ports, secret_value
from tests.chart.conftest import NAMESPACE, container, env_of

pytestmark = pytest.mark.chart


def test_broker_url_lists_every_redis_pod(default):
    url = pod_url(default, "AIRFLOW__CELERY__BROKER_URL")
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


def test_broker_url_parses_with_the_transport_parser(default):
    """The URL the chart writes is the one airflow_ha's rediscluster:// transport reads."""
    from airflow_ha.broker.url import parse

    parsed = parse(pod_url(default, "AIRFLOW__CELERY__BROKER_URL"))
    assert parsed.password == secret_value(default, f"{R}-redis-password", "password")
    assert [h for h, _ in parsed.seeds] == [
        f"{R}-redis-{i}.{R}-redis-headless.{NAMESPACE}.svc.cluster.local" for i in range(6)
    ]
    assert {p for _, p in parsed.seeds} == {6379}
    # broker.transportOptions ride in the query: the split-brain mitigation is on by default.
    assert parsed.options == {"replication_wait_policy": "auto"}


def test_redis_bootstrap_retries_a_failed_cluster_info_instead_of_taking_it_for_a_formed_cluster(default, tmp_path):
    """Seen on the 3-node cluster: pod 0's name failed to resolve once between PING and CLUSTER INFO; the empty
    answer read as "the cluster exists" and the release had no cluster for 300 s. The rendered script runs
    here with redis-cli and getent replaced by scripts that fail the first CLUSTER INFO that way."""
    script = default.get("ConfigMap", f"{R}-redis-config")["data"]["bootstrap.sh"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "redis-cli").write_text(
        f"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in
  *" ping") echo PONG ;;
  *"cluster info")
    if [ ! -e {tmp_path}/answered ]; then touch {tmp_path}/answered
      echo "Could not connect to Redis at x:6379: No address associated with hostname" >&2
    elif [ -e {tmp_path}/created ]; then printf 'cluster_state:ok\\r\\n'
    else printf 'cluster_state:fail\\r\\ncluster_slots_assigned:0\\r\\ncluster_known_nodes:1\\r\\n'; fi ;;
  *"--cluster create"*) touch {tmp_path}/created ;;
esac
"""
    )
    (bin_dir / "getent").write_text('#!/bin/sh\necho "10.0.0.1 $2"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": "pw"}
    proc = subprocess.run(["sh", "-c", script.replace("sleep 2", "true")], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CLUSTER INFO from" in proc.stdout and "creating the cluster:" in proc.stdout, proc.stdout
    assert "exists already" not in proc.stdout
