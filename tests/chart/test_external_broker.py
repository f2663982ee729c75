"""broker.external: the release on a Redis Cluster of the user's (managed, TLS, ACL user) deploys no Redis and
hands every Airflow pod a URL the transport accepts, with the CA bundle mounted where the URL says."""

from __future__ import annotations

import pytest

from tests.chart.components import pod, pod_url
from tests.chart.conftest import RELEASE as R
from tests.chart.conftest import RenderError, container, env_of

pytestmark = pytest.mark.chart

EXTERNAL = (
    "broker.external.enabled=true",
    "broker.external.seeds={redis-a.example.internal:6380,redis-b.example.internal:6380}",
    "broker.external.username=airflow",
    "broker.external.passwordSecret.name=my-redis",
    "broker.external.passwordSecret.key=token",
    "broker.external.tls.enabled=true",
    "broker.external.tls.caSecret.name=my-redis-ca",
)

IN_CHART_REDIS = (
    ("StatefulSet", f"{R}-redis"),
    ("Service", f"{R}-redis-headless"),
    ("ConfigMap", f"{R}-redis-config"),
    ("PodDisruptionBudget", f"{R}-redis"),
    ("Job", f"{R}-redis-bootstrap"),
    ("Secret", f"{R}-redis-password"),
)


def test_in_chart_redis_is_deployed_by_default(default):
    for kind, name in IN_CHART_REDIS:
        assert default.has(kind, name), (kind, name)


def test_external_broker_deploys_no_redis_and_reads_the_users_secret(render):
    from airflow_ha.broker.url import parse

    rendered = render(None, *EXTERNAL, "redis.reconciler.enabled=true", "networkPolicies.enabled=true")
    for kind, name in IN_CHART_REDIS:
        assert not rendered.has(kind, name), (kind, name)
    assert not rendered.of_kind("CronJob")
    assert all("redis" not in p["metadata"]["name"] for p in rendered.of_kind("NetworkPolicy"))
    assert not rendered.has("Secret", f"{R}-connections")  # it would need a password the chart does not hold

    url = parse(pod_url(rendered, "AIRFLOW__CELERY__BROKER_URL"))
    assert url.seeds == (("redis-a.example.internal", 6380), ("redis-b.example.internal", 6380))
    assert url.ssl and url.username == "airflow"
    assert url.password == "from_my_redis_token"  # pod_url's stand-in for the value of the user's Secret
    assert url.options["replication_wait_policy"] == "auto"  # broker.transportOptions still apply
    ca_path = url.ssl_options["ssl_ca_certs"]

    for kind, name in (("Deployment", f"{R}-scheduler"), ("StatefulSet", f"{R}-worker")):
        spec = pod(rendered, kind, name)
        main = spec["containers"][0]
        assert env_of(main)["AIRFLOW_HA_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "my-redis",
            "key": "token",
        }
        mount = next(m for m in main["volumeMounts"] if m["name"] == "broker-ca")
        volume = next(v for v in spec["volumes"] if v["name"] == "broker-ca")
        assert volume["secret"]["secretName"] == "my-redis-ca"
        (item,) = volume["secret"]["items"]
        assert item["key"] == "ca.crt" and f"{mount['mountPath']}/{item['path']}" == ca_path
        assert mount["readOnly"] is True


def test_external_broker_without_auth_tls_or_hostname_check(render):
    from airflow_ha.broker.url import parse

    plain = render(None, "broker.external.enabled=true", "broker.external.seeds={redis.example:6379}")
    worker = container(pod(plain, "StatefulSet", f"{R}-worker"), "worker")
    assert "AIRFLOW_HA_REDIS_PASSWORD" not in env_of(worker)
    assert all(m["name"] != "broker-ca" for m in worker["volumeMounts"])
    url = parse(pod_url(plain, "AIRFLOW__CELERY__BROKER_URL"))
    assert (url.ssl, url.username, url.password, url.seeds) == (False, None, None, (("redis.example", 6379),))

    # TLS with the image's CAs and no hostname check (certificates that cannot name the nodes)
    loose = render(None, "broker.external.enabled=true", "broker.external.seeds={10.0.0.7:6379}",
                   "broker.external.tls.enabled=true", "broker.external.tls.checkHostname=false")  # fmt: skip
    url = parse(pod_url(loose, "AIRFLOW__CELERY__BROKER_URL"))
    assert url.ssl and url.ssl_options == {"ssl_check_hostname": False}


def test_external_broker_pods_roll_when_the_seeds_change(render):
    def topology(*extra):
        rendered = render(None, "broker.external.enabled=true", *extra)
        return rendered.get("Deployment", f"{R}-scheduler")["spec"]["template"]["metadata"]["annotations"][
            "checksum/topology"
        ]

    assert topology("broker.external.seeds={a.example:6379}") != topology("broker.external.seeds={b.example:6379}")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("broker.external.enabled=true",), "/broker/external/seeds"),
        (("broker.external.enabled=true", "broker.external.seeds={redis.example}"), "does not match pattern"),
        (
            ("broker.external.enabled=true", "broker.external.seeds={a:1}", "broker.external.username=a@b"),
            "/broker/external/username",
        ),
        (("broker.external.tls.ca=x",), "additional properties 'ca' not allowed"),
    ],
)
def test_bad_external_broker_values_fail_the_schema(render, values, message):
    with pytest.raises(RenderError) as err:
        render(None, *values)
    assert message in err.value.stderr
