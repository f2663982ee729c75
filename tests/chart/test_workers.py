"""The Celery workers: StatefulSet, log server, readiness on the broker."""

from __future__ import annotations

import pytest

from tests.chart.components import R, pod, ports
from tests.chart.conftest import NAMESPACE, container, env_of

pytestmark = pytest.mark.chart


def test_workers_statefulset_and_log_server(default):
    sts = default.get("StatefulSet", f"{R}-worker")
    assert sts["spec"]["serviceName"] == f"{R}-worker"
    spec = sts["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 600
    c = container(spec, "worker")
    assert ports(c) == {8793}
    assert c["readinessProbe"]["exec"]["command"] == ["airflow-ha", "broker-check"]
    svc = default.get("Service", f"{R}-worker")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["port"] == 8793
    # Task hostnames are pod names: every Airflow pod resolves them through the workers' domain.
    api = pod(default, "Deployment", f"{R}-api-server")
    assert f"{R}-worker.{NAMESPACE}.svc.cluster.local" in api["dnsConfig"]["searches"]
    assert env_of(c)["AIRFLOW__CORE__HOSTNAME_CALLABLE"]["value"] == "socket.gethostname"
