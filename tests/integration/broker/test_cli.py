"""`airflow-ha broker-check` (the worker readiness probe) against the real cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _probe(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "airflow_ha.cli", "broker-check", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_healthy_cluster_passes(redis_cluster):
    result = _probe("--url", redis_cluster.url())
    assert result.returncode == 0, result.stderr
    assert "cluster_state=ok" in result.stdout and "slots_assigned=16384" in result.stdout
    assert redis_cluster.password not in result.stdout


def test_url_from_airflow_config(redis_cluster):
    import os

    env = {**os.environ, "AIRFLOW__CELERY__BROKER_URL": redis_cluster.url()}
    result = _probe(env=env)
    assert result.returncode == 0, result.stderr


def test_wrong_password_fails_with_the_reason(redis_cluster):
    result = _probe("--url", redis_cluster.url().replace(redis_cluster.password, "nope"))
    assert result.returncode == 1
    assert "refused the credentials" in result.stderr
