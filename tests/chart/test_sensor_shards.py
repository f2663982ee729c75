"""The smart-sensor shard groups: Deployments of spread pods, per-group values."""

from __future__ import annotations

import pytest

from tests.chart.components import NODE_LOSS, R, node_loss_tolerations, pod, ports, shard_groups
from tests.chart.conftest import container, env_of

pytestmark = pytest.mark.chart


def test_sensor_shard_groups_are_deployments_of_two_spread_pods(default):
    """One Deployment per shard group (replaced on a lost node, unlike a StatefulSet pod), 2 pods each,
    the group in the env, the pods of one group kept apart by a per-group label."""
    assert not default.has("StatefulSet", f"{R}-sensor-shard")
    groups = shard_groups(default)
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
        assert env["AIRFLOW_HA_SENSOR_POKE_TIMEOUT"]["value"] == "30"  # read by the poke hub (settings.poke_timeout)
        # one pod holds its whole group when its partner is lost: not Airflow's 1,000-trigger default
        assert env["AIRFLOW__TRIGGERER__CAPACITY"]["value"] == "10000"
        assert ports(c) == {8794}
        preferred = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        term = preferred[0]["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"] == selector  # this group's pods only
        assert node_loss_tolerations(spec) == {(key, 10) for key in NODE_LOSS}
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
        "sensorShards.pokeTimeoutSeconds=120",
        "sensorShards.historyDays=30",
        "sensorShards.capacity=25000",
    )
    groups = shard_groups(rendered)
    assert sorted(groups) == [0, 1, 2]
    for g, deployment in groups.items():
        assert deployment["spec"]["replicas"] == 3
        spec = deployment["spec"]["template"]["spec"]
        (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"]["airflow-ha/sensor-shard-group"] == str(g)
        assert node_loss_tolerations(spec) == {(key, 5) for key in NODE_LOSS}
        assert env_of(container(spec, "sensor-shard"))["AIRFLOW_HA_SENSOR_POKE_TIMEOUT"]["value"] == "120"
        assert env_of(container(spec, "sensor-shard"))["AIRFLOW__TRIGGERER__CAPACITY"]["value"] == "25000"
    env = env_of(pod(rendered, "Deployment", f"{R}-scheduler")["containers"][0])
    assert env["AIRFLOW_HA_SENSOR_SHARDS"]["value"] == "3"  # groups, not pods
    for name in (f"{R}-api-server", f"{R}-sensor-shard-0"):  # the page reads the history, the shards trim it
        assert (
            env_of(pod(rendered, "Deployment", name)["containers"][0])["AIRFLOW_HA_SENSOR_HISTORY_DAYS"]["value"]
            == "30"
        )

    single = render(None, "sensorShards.replicasPerGroup=1", "sensorShards.nodeLossTolerationSeconds=null")
    deployment = shard_groups(single)[0]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert not single.has("PodDisruptionBudget", f"{R}-sensor-shard-0")  # one pod: nothing to budget
    assert node_loss_tolerations(deployment["spec"]["template"]["spec"]) == set()

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
    assert not shard_groups(disabled) and not disabled.has("Service", f"{R}-sensor-shard")
