"""Settings shared by the chart and the Python code: one place reads them from the environment.

The Helm chart sets these variables on the pods; local processes and tests set them the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Names of the environment variables (the chart's _helpers.tpl uses the same names).
ENV_SENSOR_SHARDS = "AIRFLOW_HA_SENSOR_SHARDS"  # number of smart-sensor shard pods/processes
ENV_VIRTUAL_SHARDS = "AIRFLOW_HA_VIRTUAL_SHARDS"  # fixed number of virtual shards hashcodes map onto
ENV_SHARD_ORDINAL = "AIRFLOW_HA_SENSOR_SHARD_ORDINAL"  # this shard's ordinal; else from the pod hostname

ENV_POKE_TIMEOUT = "AIRFLOW_HA_SENSOR_POKE_TIMEOUT"  # seconds one batch's poke may take before it is "slow"
ENV_HISTORY_DAYS = "AIRFLOW_HA_SENSOR_HISTORY_DAYS"  # days finished smart sensors stay in the sensor list

DEFAULT_SENSOR_SHARDS = 2
DEFAULT_VIRTUAL_SHARDS = 64
DEFAULT_POKE_TIMEOUT = 30.0
DEFAULT_HISTORY_DAYS = 7


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise SettingsError(f"{name}={value} must be at least 1")
    return value


def poke_timeout() -> float:
    """Seconds one poke (one directory listing, one query) may run before its targets read "slow"."""
    raw = os.environ.get(ENV_POKE_TIMEOUT)
    if raw is None or raw == "":
        return DEFAULT_POKE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{ENV_POKE_TIMEOUT}={raw!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):  # nan and inf fail here too
        raise SettingsError(f"{ENV_POKE_TIMEOUT}={raw} must be more than 0 seconds, and finite")
    return value


def history_days() -> int:
    """Days a finished smart sensor stays in ``airflow-ha sensors list --all`` and on the UI page."""
    return _positive_int(ENV_HISTORY_DAYS, DEFAULT_HISTORY_DAYS)


@dataclass(frozen=True)
class ShardSettings:
    sensor_shards: int
    virtual_shards: int

    @classmethod
    def from_env(cls) -> ShardSettings:
        shards = _positive_int(ENV_SENSOR_SHARDS, DEFAULT_SENSOR_SHARDS)
        virtual = _positive_int(ENV_VIRTUAL_SHARDS, DEFAULT_VIRTUAL_SHARDS)
        if shards > virtual:
            raise SettingsError(f"{ENV_SENSOR_SHARDS}={shards} exceeds {ENV_VIRTUAL_SHARDS}={virtual}")
        return cls(sensor_shards=shards, virtual_shards=virtual)
