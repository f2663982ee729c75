"""The broker on a Redis Cluster as managed services run it: TLS on every connection (clients, replication,
the cluster bus) and an ACL user, the shape of the URL the chart builds from ``broker.external``.

Real redis-server 8 with its own TLS; the CA and certificates come from tests/harness/servers/tls.py. What
the chart's ``broker.external`` renders is tested in tests/chart/test_external_broker.py, the release on such
a cluster in tests/k8s/test_external_broker.py.
"""

from __future__ import annotations

import secrets

import pytest

from airflow_ha.cli import main
from tests.harness.servers.redis_cluster import RedisCluster
from tests.harness.servers.tls import CertificateAuthority, TlsFiles
from tests.integration.broker.conftest import CeleryHarness

pytestmark = [pytest.mark.integration]

USER = "airflow"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, redis_bin):
    base = tmp_path_factory.mktemp("tls-cluster")
    tls = TlsFiles.write(
        base / "tls", CertificateAuthority.create("airflow-ha test CA"), ("localhost",), ("127.0.0.1",)
    )
    cluster = RedisCluster(
        base_dir=base, password=secrets.token_hex(12), bin_dir=redis_bin, tls=tls,
        acl_user=(USER, secrets.token_hex(12)),
    )  # fmt: skip
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _url(cluster: RedisCluster, user: str = USER, password: str | None = None, ca=None, scheme="redisclusters") -> str:
    """The URL as the chart renders it for broker.external: ACL user, password, the mounted CA bundle."""
    hosts = ",".join(n.address for n in cluster.nodes)
    password = cluster.acl_user[1] if password is None else password
    query = f"?ssl_ca_certs={ca or cluster.tls.ca}" if scheme == "redisclusters" else ""
    return f"{scheme}://{user}:{password}@{hosts}{query}"


def test_celery_workers_run_tasks_over_tls_as_an_acl_user_through_a_failover(tls_cluster, tmp_path):
    harness = CeleryHarness(tmp_path / "celery", _url(tls_cluster))
    try:
        harness.start_worker(["default"])
        app = harness.client()
        before = [app.send_task("brokerapp.record", args=[f"before-{i}"]).id for i in range(10)]
        assert set(harness.wait_done(before, timeout=60)) >= set(before)
        tls_cluster.kill(tls_cluster.master_nodes()[0])  # a replica takes over, over TLS as well
        tls_cluster.wait_healthy()
        after = [app.send_task("brokerapp.record", args=[f"after-{i}"]).id for i in range(10)]
        counts = harness.wait_done(after, timeout=120)
        assert all(counts[i] == 1 for i in before + after), counts
    finally:
        harness.stop()


def test_broker_check_names_a_wrong_ca_user_scheme_or_missing_ca_file(tls_cluster, tmp_path, capsys):
    def check(url: str) -> str:
        assert main(["broker-check", "--url", url, "--timeout", "3"]) == 1
        return capsys.readouterr().err

    assert main(["broker-check", "--url", _url(tls_cluster), "--timeout", "3"]) == 0
    capsys.readouterr()

    other = TlsFiles.write(tmp_path / "other", CertificateAuthority.create("someone else's CA"), ("localhost",))
    err = check(_url(tls_cluster, ca=other.ca))
    assert "TLS certificate was not accepted" in err and f"ssl_ca_certs={other.ca}" in err, err

    err = check(_url(tls_cluster, password="not-the-password"))
    assert "refused the credentials" in err, err
    err = check(_url(tls_cluster, user="nobody"))
    assert "refused the credentials" in err, err

    err = check(_url(tls_cluster, ca=tmp_path / "missing.crt"))
    assert "no such file" in err and "missing.crt" in err, err

    err = check(_url(tls_cluster, scheme="rediscluster"))  # plaintext to a TLS-only node: dropped unanswered
    assert "if the cluster requires TLS, use redisclusters://" in err, err


def test_tls_to_a_plaintext_cluster_is_named(redis_cluster, tmp_path, capsys):
    ca = TlsFiles.write(tmp_path / "tls", CertificateAuthority.create("unused CA"), ("localhost",))
    hosts = ",".join(redis_cluster.seed_addresses)
    url = f"redisclusters://:{redis_cluster.password}@{hosts}?ssl_ca_certs={ca.ca}"
    assert main(["broker-check", "--url", url, "--timeout", "3"]) == 1
    err = capsys.readouterr().err
    assert "if the nodes do not use TLS, use rediscluster://" in err, err
