"""`helm test` pods and the NOTES a user reads after install."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.chart.components import R
from tests.chart.conftest import CHART, NAMESPACE

pytestmark = pytest.mark.chart


def test_helm_test_pods(default):
    tests = [o for o in default.of_kind("Pod") if o["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    commands = {o["metadata"]["name"]: o["spec"]["containers"][0]["args"] for o in tests}
    broker = commands[f"{R}-test-broker"]
    assert broker[:2] == ["bash", "-c"] and "airflow-ha broker-check" in broker[2]
    # The Celery ping (a broadcast through the rediscluster:// transport) wants every worker replica.
    assert "app.control.ping(" in broker[2] and "want = 2  # every worker set's replicas" in broker[2]
    assert commands[f"{R}-test-db-migrations"][:3] == ["airflow", "db", "check-migrations"]
    assert "/api/v2/monitor/health" in json.dumps(default.get("Pod", f"{R}-test-api-server-health")["spec"])


def test_helm_test_broker_wants_every_worker_groups_replicas(render):
    rendered = render("kubeone.yaml")  # two groups of 2 workers each
    broker = rendered.get("Pod", f"{R}-test-broker")["spec"]["containers"][0]["args"][2]
    assert "want = 4  # every worker set's replicas" in broker


def test_notes_mention_port_forward_and_password(helm_binary):

    proc = subprocess.run(
        [str(helm_binary), "install", R, str(CHART), "-n", NAMESPACE, "--dry-run=client"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"kubectl -n {NAMESPACE} port-forward svc/{R}-api-server 8080:8080" in proc.stdout
    assert f"get secret {R}-admin-password" in proc.stdout
