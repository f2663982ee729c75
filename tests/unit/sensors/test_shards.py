import pytest

from airflow_ha.sensors.errors import SensorConfigError
from airflow_ha.sensors.shards import ShardMap, virtual_shard_of_queue
from airflow_ha.settings import SettingsError


def test_pods_partition_the_virtual_shards():
    shards = ShardMap(sensor_shards=3, virtual_shards=64)
    queues = [q for pod in range(3) for q in shards.queues_for_pod(pod)]
    assert len(queues) == len(set(queues)) == 64
    assert shards.queue(7) == "sensor-v007" and virtual_shard_of_queue("sensor-v007") == 7
    assert virtual_shard_of_queue("default") is None


def test_changing_pod_count_keeps_every_virtual_shard():
    codes = [-(2**63), -1, 0, 1, 12345678901234, 2**63 - 1]
    two, five = ShardMap(2, 64), ShardMap(5, 64)
    for code in codes:
        assert 0 <= two.virtual_shard(code) < 64
        assert two.virtual_shard(code) == five.virtual_shard(code)  # trigger rows keep their queue
        assert two.queue(two.virtual_shard(code)) in two.queues_for_pod(two.pod(two.virtual_shard(code)))


def test_bad_counts_are_named():
    with pytest.raises(SensorConfigError, match="at least 1, got 0"):
        ShardMap(0, 64)
    with pytest.raises(SensorConfigError, match=r"outside 0\.\.1"):
        ShardMap(2, 64).queues_for_pod(2)


def test_shard_count_zero_from_env(monkeypatch):
    monkeypatch.setenv("AIRFLOW_HA_SENSOR_SHARDS", "0")
    with pytest.raises(SettingsError, match="AIRFLOW_HA_SENSOR_SHARDS=0 must be at least 1"):
        ShardMap.from_env()
