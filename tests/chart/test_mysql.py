"""The single-pod MySQL (mysql.mode: single)."""

from __future__ import annotations

import pytest

from tests.chart.components import R, pod, ports
from tests.chart.conftest import container, env_of

pytestmark = pytest.mark.chart


def test_mysql(default):
    spec = pod(default, "StatefulSet", f"{R}-mysql")
    c = container(spec, "mysql")
    assert c["image"] == "mysql:9.7"
    assert ports(c) == {3306}
    env = env_of(c)
    for var in ("MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == f"{R}-mysql-passwords"
    assert env["MYSQL_DATABASE"]["value"] == "airflow" and env["MYSQL_USER"]["value"] == "airflow"
    assert "mysqladmin" in " ".join(c["readinessProbe"]["exec"]["command"])
    assert default.get("Service", f"{R}-mysql")["spec"]["ports"][0]["port"] == 3306
    assert default.get("StatefulSet", f"{R}-mysql")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
