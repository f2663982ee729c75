from __future__ import annotations

import pytest

from airflow_ha.settings import (
    DEFAULT_SENSOR_SHARDS,
    DEFAULT_VIRTUAL_SHARDS,
    ENV_SENSOR_SHARDS,
    ENV_VIRTUAL_SHARDS,
    SettingsError,
    ShardSettings,
)


def test_defaults(monkeypatch):
    monkeypatch.delenv(ENV_SENSOR_SHARDS, raising=False)
    monkeypatch.delenv(ENV_VIRTUAL_SHARDS, raising=False)
    assert ShardSettings.from_env() == ShardSettings(DEFAULT_SENSOR_SHARDS, DEFAULT_VIRTUAL_SHARDS)


def test_values_from_env(monkeypatch):
    monkeypatch.setenv(ENV_SENSOR_SHARDS, "4")
    monkeypatch.setenv(ENV_VIRTUAL_SHARDS, "128")
    assert ShardSettings.from_env() == ShardSettings(4, 128)


@pytest.mark.parametrize(
    ("shards", "virtual", "message"),
    [
        ("0", "64", "AIRFLOW_HA_SENSOR_SHARDS=0 must be at least 1"),
        ("two", "64", "AIRFLOW_HA_SENSOR_SHARDS='two' is not an integer"),
        ("8", "4", "AIRFLOW_HA_SENSOR_SHARDS=8 exceeds AIRFLOW_HA_VIRTUAL_SHARDS=4"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, shards, virtual, message):
    monkeypatch.setenv(ENV_SENSOR_SHARDS, shards)
    monkeypatch.setenv(ENV_VIRTUAL_SHARDS, virtual)
    with pytest.raises(SettingsError, match=message):
        ShardSettings.from_env()


def test_poke_timeout_defaults_and_rejects_values_that_cannot_work(monkeypatch):
    from airflow_ha.settings import DEFAULT_POKE_TIMEOUT, ENV_POKE_TIMEOUT, SettingsError, poke_timeout

    monkeypatch.delenv(ENV_POKE_TIMEOUT, raising=False)
    assert poke_timeout() == DEFAULT_POKE_TIMEOUT
    monkeypatch.setenv(ENV_POKE_TIMEOUT, "120")
    assert poke_timeout() == 120.0
    bad_values = (("soon", "is not a number"), ("0", "more than 0 seconds"), ("nan", "more than 0"), ("inf", "finite"))
    for bad, why in bad_values:
        monkeypatch.setenv(ENV_POKE_TIMEOUT, bad)
        with pytest.raises(SettingsError, match=f"{ENV_POKE_TIMEOUT}='?{bad}'? .*{why}"):
            poke_timeout()


def test_history_days_defaults_to_a_week_and_names_a_bad_value(monkeypatch):
    from airflow_ha.settings import ENV_HISTORY_DAYS, history_days

    monkeypatch.delenv(ENV_HISTORY_DAYS, raising=False)
    assert history_days() == 7
    monkeypatch.setenv(ENV_HISTORY_DAYS, "0")
    with pytest.raises(SettingsError, match=f"{ENV_HISTORY_DAYS}=0 must be at least 1"):
        history_days()
