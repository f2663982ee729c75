import pytest

from airflow_ha.cli import main
from airflow_ha.sensors.cli import ordinal_from_hostname, shard_ordinal, triggerer_argv
from airflow_ha.sensors.shards import ShardMap
from airflow_ha.settings import SettingsError


def test_ordinal_from_env_or_statefulset_hostname(monkeypatch):
    monkeypatch.setenv("AIRFLOW_HA_SENSOR_SHARD_ORDINAL", "3")
    assert shard_ordinal() == 3
    monkeypatch.delenv("AIRFLOW_HA_SENSOR_SHARD_ORDINAL")
    monkeypatch.setattr("socket.gethostname", lambda: "airflow-ha-sensor-shard-1")
    assert shard_ordinal() == 1
    monkeypatch.setattr("socket.gethostname", lambda: "laptop")
    with pytest.raises(SettingsError, match="cannot tell this shard's ordinal"):
        shard_ordinal()


@pytest.mark.parametrize(
    ("hostname", "group"),
    [
        ("airflow-ha-sensor-shard-1", 1),  # the StatefulSet pod of releases before shard groups
        ("airflow-ha-sensor-shard-3-7d9f8c6b5-x2k9p", 3),  # the group's Deployment pod
        ("airflow-ha-sensor-shard-0-5f7d9c8b4-24567", 0),  # an all-digit pod suffix is not the group
        ("airflow-ha-sensor-shard-12-85b4d-abcde", 12),
        ("shard-2", 2),
        ("laptop", None),
    ],
)
def test_ordinal_from_hostname(hostname, group):
    assert ordinal_from_hostname(hostname) == group


def test_env_wins_over_a_deployment_hostname(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "airflow-ha-sensor-shard-1-5f7d9c8b4-24567")
    monkeypatch.setenv("AIRFLOW_HA_SENSOR_SHARD_ORDINAL", "1")
    assert shard_ordinal() == 1
    monkeypatch.delenv("AIRFLOW_HA_SENSOR_SHARD_ORDINAL")
    assert shard_ordinal() == 1


def test_triggerer_argv_serves_this_pods_virtual_shards():
    argv = triggerer_argv(1, ShardMap(2, 8), capacity=500)
    queues = "sensor-v001,sensor-v003,sensor-v005,sensor-v007"
    assert argv == ["airflow", "triggerer", "--queues", queues, "--capacity", "500"]


def test_sensor_shard_dry_run(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "True")
    monkeypatch.setenv("AIRFLOW_HA_SENSOR_SHARDS", "2")
    monkeypatch.setenv("AIRFLOW_HA_VIRTUAL_SHARDS", "4")
    assert main(["sensor-shard", "--ordinal", "0", "--dry-run"]) == 0
    assert "airflow triggerer --queues sensor-v000,sensor-v002" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"AIRFLOW_HA_SENSOR_SHARDS": "0"}, ["--ordinal", "0"], "AIRFLOW_HA_SENSOR_SHARDS=0 must be at least 1"),
        ({"AIRFLOW_HA_SENSOR_SHARDS": "2"}, ["--ordinal", "2"], "shard ordinal 2 is outside 0..1"),
        ({"AIRFLOW__TRIGGERER__QUEUES_ENABLED": "False"}, ["--ordinal", "0"], "queues_enabled must be True"),
    ],
)
def test_sensor_shard_refuses_bad_settings(monkeypatch, capsys, env, args, message):
    monkeypatch.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "True")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["sensor-shard", *args, "--dry-run"]) == 2
    assert message in capsys.readouterr().err
