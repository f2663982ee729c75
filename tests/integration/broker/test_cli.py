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


def _broker_probe(*args):
    return subprocess.run(
        [sys.executable, "-m", "airflow_ha.cli", "broker-probe", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_broker_probe_counts_every_published_id(redis_cluster):
    """publish prints one ACK per acknowledged id; drain gets each of them back exactly once."""
    import json

    from airflow_ha.broker.probe import parse_output

    url = redis_cluster.url()
    sent = _broker_probe("publish", "--url", url, "--queue", "probe-cli", "--prefix", "t", "--seconds", "2",
                         "--rate", "50", "--option", "replication_wait_replicas=1")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    acked, summary = parse_output(sent.stdout)
    assert summary["acked"] == len(acked) and len(acked) >= 50 and summary["unsent"] == []
    assert acked[0] == "t-000001" and len(set(acked)) == len(acked)
    drained = _broker_probe("drain", "--url", url, "--queue", "probe-cli", "--idle", "2")
    assert drained.returncode == 0, drained.stderr
    assert sorted(json.loads(drained.stdout.strip().splitlines()[-1])["received"]) == sorted(acked)


def test_broker_probe_rejects_a_bad_option(redis_cluster):
    result = _broker_probe("publish", "--url", redis_cluster.url(), "--option", "replication_wait_policy=maybe")
    assert result.returncode != 0
    assert "replication_wait_policy" in result.stderr and "want one of" in result.stderr
