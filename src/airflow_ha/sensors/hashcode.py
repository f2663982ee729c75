"""Stable hashcodes of poke contexts.

A poke context is ``(kind, target)``: the kind of poke (``file``, ``job_history``, ``sql``) and a JSON
object saying what is poked. Two sensors with equal contexts are the same wait and share one poke.
The hashcode must be equal in every process on every machine, so it is the first 8 bytes of the sha256
of canonical JSON (sorted keys, no whitespace), read as a signed 64-bit integer (fits a SQL BIGINT,
like the ``sensor_instance.hashcode`` column of Airflow 2's smart sensor).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from airflow_ha.sensors.errors import SensorConfigError

_SCALARS = (str, int, bool, type(None))


def _check_json(value: Any, where: str) -> None:
    """Only plain JSON survives a round trip unchanged; anything else would make hashcodes unstable."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SensorConfigError(f"poke context {where} is {value!r}: not a finite number")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SensorConfigError(f"poke context {where} has a non-string key {key!r}")
            _check_json(item, f"{where}.{key}")
        return
    raise SensorConfigError(
        f"poke context {where} is a {type(value).__name__} ({value!r}); only str, int, float, bool, None, "
        "lists and dicts can be hashed stably"
    )


def canonical(kind: str, target: dict[str, Any]) -> str:
    """The canonical JSON text of a poke context; raises SensorConfigError for unserialisable values."""
    if not isinstance(kind, str) or not kind:
        raise SensorConfigError(f"poke kind must be a non-empty string, got {kind!r}")
    if not isinstance(target, dict):
        raise SensorConfigError(f"poke target of kind {kind!r} must be a dict, got {type(target).__name__}")
    _check_json(target, "target")
    return json.dumps({"kind": kind, "target": target}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hashcode(kind: str, target: dict[str, Any]) -> int:
    digest = hashlib.sha256(canonical(kind, target).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
