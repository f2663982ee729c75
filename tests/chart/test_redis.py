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


def _run_rejoin(
    script: str, tmp_path, nodes: str, info: str, resolves: dict[str, str], dialled: str = "", cached: int = 0
):
    """The rendered rejoin.sh with redis-cli answering ``nodes``/``info`` until a MEET arrives (then every
    peer at its resolved address and cluster_state:ok), ``INFO replication`` with master_host ``dialled``
    until a REPLICATE re-points it, getent resolving ``resolves`` (after ``cached`` answers with the address
    nodes.conf lists, as a DNS cache gives right after a restart), no sleeping."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "nodes").write_text(nodes)
    healed = nodes
    for host, ip in resolves.items():
        healed = "\n".join(
            line.replace(line.split()[1].split(":")[0], ip, 1) if host in line else line for line in healed.splitlines()
        )
    # healed: every peer at its address, connected, no failure flag, no handshake in flight
    healed = "\n".join(
        line.replace(",fail?", "").replace(",fail", "").replace("disconnected", "connected")
        for line in healed.splitlines()
        if "handshake" not in line
    )
    (tmp_path / "healed").write_text(healed + "\n")
    (bin_dir / "redis-cli").write_text(
        f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls
case "$*" in
  *"cluster nodes") cat {tmp_path}/nodes ;;
  *"cluster info") if [ -e {tmp_path}/met ]; then printf 'cluster_state:ok\\r\\n'; else printf '{info}'; fi ;;
  *"cluster meet"*) touch {tmp_path}/met; cp {tmp_path}/healed {tmp_path}/nodes; echo OK ;;
  *"info replication") printf 'role:slave\\r\\nmaster_host:%s\\r\\n' "$(cat {tmp_path}/dialled)" ;;
  *"cluster replicate"*) touch {tmp_path}/met; echo {resolves.get(_master_host(nodes), "")} > {tmp_path}/dialled ;;
esac
"""
    )
    (tmp_path / "dialled").write_text(dialled + "\n")
    listed = {f[1].split(",", 1)[1]: f[1].split(":")[0] for f in map(str.split, nodes.splitlines()) if "," in f[1]}
    hosts = "\n".join(f'  {host}) echo "{ip} {host}" ;;' for host, ip in resolves.items())
    olds = "\n".join(f'  {host}) echo "{ip} {host}"; exit ;;' for host, ip in listed.items())
    (bin_dir / "getent").write_text(
        f"#!/bin/sh\necho x >> {tmp_path}/lookups\n"
        f'if [ "$(wc -l < {tmp_path}/lookups)" -le {cached} ]; then case "$2" in\n{olds}\nesac; fi\n'
        f'case "$2" in\n{hosts}\n  *) exit 2 ;;\nesac\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": "pw"}
    proc = subprocess.run(["sh", "-c", script.replace("sleep 5", "true")], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return proc, calls


def _master_host(nodes: str) -> str:
    """The hostname of the master of the ``myself,slave`` line, "" when this node is a master."""
    lines = [line.split() for line in nodes.splitlines()]
    master_id = next((f[3] for f in lines if "myself" in f[2] and "slave" in f[2]), None)
    return next((f[1].split(",", 1)[1] for f in lines if f[0] == master_id), "")


def test_redis_rejoin_meets_only_unreachable_known_peers_where_their_names_resolve(default, render, tmp_path):
    """A whole-cluster restart: nodes.conf lists every peer at its old IP. The pod's own rejoin.sh (started
    beside redis-server by start.sh) MEETs each peer it cannot reach at the address its name resolves to now,
    on the chart's ports; it skips itself, handshakes and connected peers (whatever DNS says), then ends
    after a minute of every peer connected and the cluster ok."""
    cm = default.get("ConfigMap", f"{R}-redis-config")
    assert "sh /etc/redis/rejoin.sh &" in cm["data"]["start.sh"]
    h = f"{R}-redis-headless.{NAMESPACE}.svc.cluster.local"
    nodes = "\n".join(
        [
            f"a1 10.0.0.10:6379@16379,{R}-redis-0.{h} myself,master - 0 0 1 connected 0-5460",
            f"b2 10.0.0.11:6379@16379,{R}-redis-1.{h} master,fail? - 0 0 2 disconnected 5461-10922",
            f"c3 10.0.0.12:6379@16379,{R}-redis-2.{h} master - 0 0 3 connected 10923-16383",
            "d4 10.9.9.9:6379@16379 handshake - 0 0 0 disconnected",
        ]
    )
    # redis-2 is connected where nodes.conf lists it: a DNS answer elsewhere (a cached one) must not move it
    resolves = {f"{R}-redis-0.{h}": "10.1.0.10", f"{R}-redis-1.{h}": "10.1.0.11", f"{R}-redis-2.{h}": "10.7.7.7"}
    proc, calls = _run_rejoin(cm["data"]["rejoin.sh"], tmp_path, nodes, "cluster_state:fail\\r\\n", resolves)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meets = [c.split("cluster meet ")[1] for c in calls if "cluster meet" in c]
    assert meets == ["10.1.0.11 6379 16379"], calls
    assert "unreachable at 10.0.0.11 and resolves to 10.1.0.11" in proc.stdout
    assert "the cluster ok for a minute" in proc.stdout
    assert len([c for c in calls if c.endswith("cluster nodes")]) == 1 + 12, "ends after 12 clean looks, no sooner"
    # other ports: the MEET names the bus port (not always port + 10000)
    other = render(None, "redis.port=7000", "redis.busPort=7100").get("ConfigMap", f"{R}-redis-config")
    assert "port=7000\n" in other["data"]["rejoin.sh"] and "bus=7100\n" in other["data"]["rejoin.sh"]


def test_redis_rejoin_on_a_new_empty_node_ends_without_a_meet(default, tmp_path):
    """A fresh install: only itself in CLUSTER NODES, known_nodes 1, no cluster yet (the bootstrap Job forms
    it): nothing to heal, and a stranger is never met."""
    script = default.get("ConfigMap", f"{R}-redis-config")["data"]["rejoin.sh"]
    nodes = f"a1 10.0.0.10:6379@16379,{R}-redis-0 myself,master - 0 0 0 connected"
    proc, calls = _run_rejoin(
        script, tmp_path, nodes, "cluster_state:fail\\r\\ncluster_known_nodes:1\\r\\n", {f"{R}-redis-0": "10.0.0.10"}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [c for c in calls if "meet" in c] and len([c for c in calls if c.endswith("cluster nodes")]) == 1


def test_redis_rejoin_repoints_a_replica_that_still_dials_its_masters_old_ip(default, tmp_path):
    """Gossip moved the master's address in CLUSTER NODES (nothing left to MEET) but not the replication
    link: the replica would never fail over. rejoin.sh sends CLUSTER REPLICATE to its master again."""
    script = default.get("ConfigMap", f"{R}-redis-config")["data"]["rejoin.sh"]
    h = f"{R}-redis-headless.{NAMESPACE}.svc.cluster.local"
    nodes = "\n".join(
        [
            f"a1 10.1.0.10:6379@16379,{R}-redis-0.{h} master - 0 0 1 connected 0-16383",
            f"e5 10.1.0.14:6379@16379,{R}-redis-4.{h} myself,slave a1 0 0 1 connected",
        ]
    )
    resolves = {f"{R}-redis-0.{h}": "10.1.0.10", f"{R}-redis-4.{h}": "10.1.0.14"}
    proc, calls = _run_rejoin(script, tmp_path, nodes, "cluster_state:ok\\r\\n", resolves, dialled="10.0.0.10")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [c for c in calls if "cluster replicate" in c] == ["-p 6379 cluster replicate a1"], calls
    assert not [c for c in calls if "meet" in c]
    assert "replication dials 10.0.0.10, the master is at 10.1.0.10" in proc.stdout


def test_redis_rejoin_does_not_trust_an_early_ok_while_dns_still_answers_the_old_ips(default, tmp_path):
    """Seen on the 3-node cluster: 5 s after a whole restart every name still resolved to its old IP (the DNS
    cache) and the node still trusted nodes.conf (cluster_state:ok), so the script ended at once and the
    cluster failed for good a few seconds later. Now an ok only counts once it has held for a minute, and the
    MEET comes as soon as the name resolves to the new address."""
    script = default.get("ConfigMap", f"{R}-redis-config")["data"]["rejoin.sh"]
    h = f"{R}-redis-headless.{NAMESPACE}.svc.cluster.local"
    nodes = "\n".join(
        [
            f"a1 10.0.0.10:6379@16379,{R}-redis-0.{h} myself,master - 0 0 1 connected 0-8191",
            f"b2 10.0.0.11:6379@16379,{R}-redis-1.{h} master,fail? - 0 0 2 disconnected 8192-16383",
        ]
    )
    resolves = {f"{R}-redis-0.{h}": "10.1.0.10", f"{R}-redis-1.{h}": "10.1.0.11"}
    proc, calls = _run_rejoin(script, tmp_path, nodes, "cluster_state:ok\\r\\n", resolves, cached=6)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [c.split("cluster meet ")[1] for c in calls if "cluster meet" in c] == ["10.1.0.11 6379 16379"], calls
