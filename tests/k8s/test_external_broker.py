"""values/external-services.yaml on the real cluster: a second release whose broker is a Redis Cluster run
outside it with TLS and an ACL user (tests/k8s/external_redis.py), and whose database is a MySQL it does
not deploy (a database of its own on the first release's Group Replication, through that release's proxy).
Its workers connect, the failover probe's DAG runs over every queue, and a worker given the wrong CA or the
wrong user is never Ready and says which.

The release is the chart with that profile and the cluster's images; nothing but the hosts, Secret names
and sizes is set here.
"""

from __future__ import annotations

import copy
import json
import secrets
import time

import pytest
import yaml

from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.kubernetes import PortForward, pod_ready
from tests.harness.release import delete_namespace
from tests.harness.servers.tls import CertificateAuthority
from tests.harness.waiting import wait_until
from tests.k8s.conftest import (
    HELM,
    KUBECTL,
    NAMESPACE,
    REPO_ROOT,
    Kube,
    Release,
    _keep,
    admin_password,
    record,
    run,
)
from tests.k8s.external_redis import NAME, USER, ExternalRedis

# extended: a second release (~5 min on CI); the TLS+ACL broker path runs in tests/integration/broker/test_tls_acl.py
pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1800), pytest.mark.extended]

EXT_NAMESPACE = f"{NAMESPACE}-ext"
EXT_RELEASE = "airflow-ha-ext"
EXT_DB = "airflow_ext"
PROBE_QUEUES = "default,q1,q2,q3,q4,q5"  # dags/ha_probe.py


def _kubeone_images() -> dict:
    return yaml.safe_load((REPO_ROOT / "values" / "kubeone.yaml").read_text())["images"]


def _sql_on_primary(kube: Kube, release: Release, sql: str) -> str:
    """Run SQL as root on the writable member of the first release's MySQL group (local socket)."""
    members = kube.core.list_namespaced_pod(release.namespace, label_selector=f"{release.selector}").items
    members = [p for p in members if any(c.name == "mysql" for c in p.spec.containers) and pod_ready(p)]
    login = 'mysql -uroot -p"$MYSQL_ROOT_PASSWORD" -N -B'
    for pod in members:
        name = pod.metadata.name
        cmd = [KUBECTL, "-n", release.namespace, "exec", name, "-c", "mysql", "--", "sh", "-c"]
        ro = run([*cmd, f'{login} -e "SELECT @@super_read_only" 2>/dev/null'], check=False).stdout.strip()
        if ro == "0":
            return run([*cmd, f"{login} -e {json.dumps(sql)} 2>&1"]).stdout
    raise AssertionError(f"no writable MySQL member among {[p.metadata.name for p in members]}")


@pytest.fixture(scope="module")
def ext_release(kube: Kube, release: Release, tmp_path_factory):
    """The second release on the external broker and database; uninstalled (namespace, database) after."""
    delete_namespace(EXT_NAMESPACE)  # a leftover of an earlier run
    run([KUBECTL, "create", "namespace", EXT_NAMESPACE])
    images = _kubeone_images()
    redis = ExternalRedis.create(EXT_NAMESPACE, f"{images['redis']['repository']}:{images['redis']['tag']}")
    db_password = secrets.token_hex(16)
    try:
        t0 = time.monotonic()
        redis.start(kube)
        record("external Redis Cluster (TLS, ACL) formed", f"{time.monotonic() - t0:.0f} s, 6 pods")
        redis.apply([*redis.client_secrets(CertificateAuthority.create("not the cluster's CA")),
                     {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ext-db", "namespace": EXT_NAMESPACE},
                      "stringData": {"password": db_password}}])  # fmt: skip
        _sql_on_primary(kube, release, f"DROP DATABASE IF EXISTS {EXT_DB}; DROP USER IF EXISTS '{EXT_DB}'@'%'; "
                        f"CREATE DATABASE {EXT_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin; "
                        f"CREATE USER '{EXT_DB}'@'%' IDENTIFIED BY '{db_password}'; "
                        f"GRANT ALL PRIVILEGES ON {EXT_DB}.* TO '{EXT_DB}'@'%';")  # fmt: skip
        overrides = {
            "images": images,
            "broker": {"external": {
                "seeds": redis.seeds, "username": USER, "passwordSecret": {"name": f"{NAME}-airflow"},
                "tls": {"caSecret": {"name": f"{NAME}-ca"}},
            }},
            "database": {"external": {
                "host": f"{release.name}-mysql-proxy.{release.namespace}.svc.cluster.local",
                "user": EXT_DB, "database": EXT_DB, "passwordSecret": {"name": "ext-db"},
                # the first release's MySQL group has no certificates of one CA to verify against (each member
                # generates its own): database TLS is tested in tests/integration/test_database_tls.py
                "tls": {"enabled": False},
            }},
            # one of each Airflow component: this release proves the wiring, the first one the failover
            "apiServer": {"replicas": 1}, "scheduler": {"replicas": 1},
            "workers": {"replicas": 2, "args": ["airflow", "celery", "worker", "--queues", PROBE_QUEUES]},
            "sensorShards": {"enabled": False}, "workerWatcher": {"enabled": False},
        }  # fmt: skip
        values = tmp_path_factory.mktemp("ext-release") / "values.yaml"
        values.write_text(yaml.safe_dump(overrides))
        t0 = time.monotonic()
        run(
            [
                HELM,
                "install",
                EXT_RELEASE,
                REPO_ROOT / "chart",
                "-n",
                EXT_NAMESPACE,
                "-f",
                REPO_ROOT / "values" / "external-services.yaml",
                "-f",
                values,
                "--timeout",
                "900s",
            ],
            timeout=960,
        )
        run(["python3", REPO_ROOT / "scripts" / "wait-ready", "--namespace", EXT_NAMESPACE, "--release", EXT_RELEASE,
             "--timeout", "900", "--kubectl", KUBECTL], timeout=960)  # fmt: skip
        record("release on external broker+DB: install -> Ready", f"{time.monotonic() - t0:.0f} s")
        yield Release(EXT_RELEASE, EXT_NAMESPACE, installed_here=True), redis
    finally:
        if kube.started_here and not _keep():
            record("teardown: external release", "skipped (the cluster started for the run is stopped next)")
        elif not _keep():
            delete_namespace(EXT_NAMESPACE)
            _sql_on_primary(kube, release, f"DROP DATABASE IF EXISTS {EXT_DB}; DROP USER IF EXISTS '{EXT_DB}'@'%';")


def _worker_pods(kube: Kube, rel: Release) -> list:
    pods = kube.core.list_namespaced_pod(rel.namespace, label_selector=f"{rel.selector},component=worker").items
    return [p for p in pods if pod_ready(p)]


def test_a_release_on_a_tls_acl_redis_cluster_outside_it_runs_the_probe_dag(kube: Kube, ext_release):
    rel, redis = ext_release
    workers = _worker_pods(kube, rel)
    assert len(workers) == 2, [p.metadata.name for p in workers]
    url = run([KUBECTL, "-n", rel.namespace, "exec", workers[0].metadata.name, "-c", "worker", "--",
               "printenv", "AIRFLOW__CELERY__BROKER_URL"]).stdout.strip()  # fmt: skip
    assert url.startswith(f"redisclusters://{USER}:") and "ssl_ca_certs=/opt/airflow/broker-tls/ca.crt" in url

    pf = PortForward(KUBECTL, rel.namespace, lambda: f"svc/{rel.name}-api-server", 8080)
    try:
        user, password = admin_password(kube, rel)
        api = AirflowAPI("", base_url_for=pf.url, reconnect=pf.close, username=user, password=password)
        wait_until(api.is_up, 300, "the api-server of the release on the external broker", interval=3)
        wait_until(lambda: "ha_probe" in api.dag_ids(), 300, "ha_probe parsed", interval=5)
        api.unpause("ha_probe")
        t0 = time.monotonic()
        run_id = api.trigger("ha_probe", f"external_broker_{secrets.token_hex(4)}", conf={"seconds": 0.2})
        state = api.wait_for_runs([("ha_probe", run_id)], 600)[("ha_probe", run_id)]
        took = time.monotonic() - t0
        tis = api.task_instances("ha_probe", run_id)
        hosts = sorted({ti.get("hostname") for ti in tis})
    finally:
        pf.close()
    assert state == "success", f"ha_probe/{run_id} ended {state} on the external broker"
    assert all(ti["state"] == "success" for ti in tis), [(ti["task_id"], ti["state"]) for ti in tis]
    # the tasks went through the external cluster as the ACL user: its nodes list Airflow's connections
    clients = sum(redis.redis_cli("client list", pod=i).count(f"user={USER} ") for i in range(6))
    assert clients > 0, "no connection of the ACL user on the external cluster"
    record(
        "DAG run on the external TLS+ACL broker",
        f"ha_probe {len(tis)} tasks over 6 queues, success in {took:.0f} s on {hosts}; "
        f"{clients} connections of user {USER} on the external nodes",
    )


@pytest.mark.parametrize("mistake", ["wrong CA", "wrong user"])
def test_a_worker_with_the_wrong_ca_or_user_is_never_ready_and_says_why(kube: Kube, ext_release, mistake: str):
    """The release's own worker pod with one thing changed, as a user's mistake would render it."""
    from kubernetes import client

    rel, _redis = ext_release
    sts = kube.apps.list_namespaced_stateful_set(rel.namespace, label_selector=f"{rel.selector},component=worker")
    spec = copy.deepcopy(sts.items[0].spec.template.spec)
    worker = spec.containers[0]
    if mistake == "wrong CA":
        volume = next(v for v in spec.volumes if v.name == "broker-ca")
        volume.secret.secret_name = f"{NAME}-wrong-ca"
        needle = "TLS certificate was not accepted"
    else:
        url = next(e for e in worker.env if e.name == "AIRFLOW__CELERY__BROKER_URL")
        url.value = url.value.replace(f"://{USER}:", "://nobody:", 1)
        needle = "refused the credentials"
    name = f"ext-{mistake.lower().replace(' ', '-')}-{secrets.token_hex(3)}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "airflow-ha-test"}), spec=spec
    )
    kube.core.create_namespaced_pod(rel.namespace, pod)
    start = time.monotonic()
    seen = {"log": ""}

    def failure_named():
        p = kube.core.read_namespaced_pod(name, rel.namespace)
        assert not pod_ready(p), f"{name} became Ready with the {mistake}"
        logs = ""
        for previous in ([], ["--previous"]):
            logs += run([KUBECTL, "-n", rel.namespace, "logs", name, "-c", worker.name, *previous], check=False).stdout
        seen["log"] = logs
        restarts = sum(s.restart_count for s in p.status.container_statuses or [])
        return restarts if needle in logs and restarts else None

    try:
        restarts = wait_until(failure_named, 300, f"a failure that names the {mistake}", interval=5,
                              explain=lambda: f"log:\n{seen['log'][-3000:]}")  # fmt: skip
        line = next(line for line in seen["log"].splitlines() if needle in line)
        record(f"worker with the {mistake} (external broker)",
               f"never Ready; exited and restarted {restarts}x after {time.monotonic() - start:.0f} s; "
               f"log: ...{line[line.find(needle):][:160]}")  # fmt: skip
    finally:
        kube.core.delete_namespaced_pod(name, rel.namespace, grace_period_seconds=0)
