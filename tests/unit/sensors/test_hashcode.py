import os
import subprocess
import sys

import pytest

from airflow_ha.sensors.errors import SensorConfigError
from airflow_ha.sensors.hashcode import canonical, hashcode


def test_hashcode_ignores_key_order_and_fits_bigint():
    a = hashcode("file", {"path": "/data/edw.0001.job", "x": [1, 2]})
    b = hashcode("file", {"x": [1, 2], "path": "/data/edw.0001.job"})
    assert a == b
    assert -(2**63) <= a < 2**63


def test_hashcode_differs_per_kind_and_target():
    assert hashcode("file", {"path": "/a"}) != hashcode("file", {"path": "/b"})
    assert hashcode("file", {"path": "/a"}) != hashcode("sql", {"path": "/a"})


def test_hashcode_is_equal_in_processes_with_different_hash_seeds():
    code = "from airflow_ha.sensors.hashcode import hashcode; print(hashcode('file', {'path': '/m/edw.0003.job'}))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert outputs == {str(hashcode("file", {"path": "/m/edw.0003.job"}))}
    # and Python's own hash() of the same text is not stable, which is why it is not used
    salted = {
        subprocess.run(
            [sys.executable, "-c", "print(hash('/m/edw.0003.job'))"],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(salted) == 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"path": object()}, "target.path is a object"),
        ({"paths": [1, {"a": {1, 2}}]}, "target.paths[1].a is a set"),
        ({"n": float("nan")}, "target.n is nan: not a finite number"),
        ({1: "x"}, "non-string key 1"),
    ],
)
def test_unserialisable_context_names_the_field(target, message):
    with pytest.raises(SensorConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        canonical("file", target)


def test_kind_must_be_a_string():
    with pytest.raises(SensorConfigError, match="non-empty string"):
        hashcode("", {})
