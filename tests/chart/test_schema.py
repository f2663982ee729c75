"""Bad values make `helm template` fail with the schema's message, naming the offending key."""

from __future__ import annotations

import pytest

from tests.chart.components import pod_url
from tests.chart.conftest import RenderError, helm_template

pytestmark = pytest.mark.chart


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["scheduler.replicas=-1"], "at '/scheduler/replicas': minimum: got -1, want 0"),
        (["workers.replicas=-2"], "at '/workers/replicas': minimum: got -2, want 0"),
        (["apiServer.replicas=-1"], "at '/apiServer/replicas'"),
        (["broker.type=redis"], "at '/broker/type': value must be 'rediscluster'"),
        (["sensorShards.count=0"], "at '/sensorShards/count': minimum: got 0, want 1"),
        (["sensorShards.capacity=0"], "at '/sensorShards/capacity': minimum: got 0, want 1"),
        (["sensorShards.replicasPerGroup=0"], "at '/sensorShards/replicasPerGroup': minimum: got 0, want 1"),
        (["sensorShards.nodeLossTolerationSeconds=-5"], "at '/sensorShards/nodeLossTolerationSeconds': minimum"),
        (["sensorShards.nodeLossTolerationSeconds=soon"], "at '/sensorShards/nodeLossTolerationSeconds'"),
        (["sensorShards.podAntiAffinity=always"], "at '/sensorShards/podAntiAffinity'"),
        (["sensorShards.pdb.maxUnavailable=0"], "at '/sensorShards/pdb/maxUnavailable': minimum: got 0, want 1"),
        (["sensorShards.pokeTimeoutSeconds=0"], "at '/sensorShards/pokeTimeoutSeconds': minimum: got 0, want 1"),
        (["sensorShards.historyDays=0"], "at '/sensorShards/historyDays': minimum: got 0, want 1"),
        (["sensorShards.replicas=2"], "replicas"),  # the old name: groups have replicasPerGroup
        (["database.external.enabled=true"], "at '/database/external/host': minLength: got 0, want 1"),
        (["scheduler.replicas=two"], "at '/scheduler/replicas'"),
        (["scheduler.podAntiAffinity=sometimes"], "at '/scheduler/podAntiAffinity'"),
        (["redis.masters=2"], "at '/redis/masters': minimum: got 2, want 3"),
        (["schedulr.replicas=2"], "schedulr"),
        (["markers.enabled=true"], "at '/markers/hostPath': minLength: got 0, want 1"),
        (["markers.mountPath=relative"], "at '/markers/mountPath'"),
        (["broker.transportOptions.replication_wait_policy=maybe"], "value must be one of 'warn', 'raise', 'auto'"),
        (["broker.transportOptions.replication_wait_timout_ms=100"], "replication_wait_timout_ms"),
    ],
)
def test_bad_values_fail_with_the_schema_message(helm_binary, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, *args)
    assert "values don't meet the specifications of the schema" in err.value.stderr, err.value.stderr
    assert message in err.value.stderr, err.value.stderr


def test_external_database_with_host_is_accepted(render):
    rendered = render(
        None,
        "database.external.enabled=true",
        "database.external.host=db.example.com",
        "database.external.passwordSecret.name=airflow-db",
    )
    assert not rendered.has("StatefulSet", "airflow-ha-mysql")
    assert not rendered.has("Secret", "airflow-ha-mysql-passwords")

    conn = pod_url(rendered, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    assert conn.startswith("mysql+mysqldb://airflow:")
    assert conn.endswith("@db.example.com:3306/airflow?connect_timeout=5&read_timeout=20&write_timeout=20")
