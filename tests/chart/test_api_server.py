"""The api-server: probes, Service, replicas."""

from __future__ import annotations

import pytest

from tests.chart.components import R, pod, ports
from tests.chart.conftest import container

pytestmark = pytest.mark.chart


def test_api_server(default):
    spec = pod(default, "Deployment", f"{R}-api-server")
    c = container(spec, "api-server")
    assert ports(c) == {8080}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/api/v2/monitor/health", probe
        assert c[probe]["httpGet"]["port"] in (8080, "api")
    svc = default.get("Service", f"{R}-api-server")
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert svc["spec"]["selector"]["component"] == "api-server"
    assert default.get("PodDisruptionBudget", f"{R}-api-server")["spec"]["maxUnavailable"] == 1
