"""Security: non-root pods, no secret inlined, secrets generated once and kept, no default passwords."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.chart.components import R, pod, pod_url, secret_value
from tests.chart.conftest import CHART

pytestmark = pytest.mark.chart


@pytest.mark.parametrize("values_file", [None, "kubeone.yaml", "production.yaml"])
def test_every_pod_runs_as_non_root(render, values_file):
    for name, spec in render(values_file).pod_specs():
        sc = spec["securityContext"]
        assert sc.get("runAsNonRoot") is True, name
        assert sc.get("runAsUser") in (50000, 999, 65534), name  # Airflow, the servers, statsd-exporter
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{name}/{c['name']}"
            if c["securityContext"].get("runAsUser") == 0:  # only the marker root's chown/setfacl, 2 capabilities
                assert c["name"] == "markers-permissions", f"{name}/{c['name']}"
                assert c["securityContext"]["capabilities"]["add"] == ["CHOWN", "FOWNER"]
    assert pod(render(values_file), "Deployment", f"{R}-scheduler")["securityContext"]["fsGroup"] == 0
    assert pod(render(values_file), "StatefulSet", f"{R}-redis")["securityContext"]["runAsUser"] == 999


@pytest.mark.parametrize("values_file", [None, "kind.yaml", "kubeone.yaml", "production.yaml"])
def test_no_secret_inlined_in_pod_specs(render, values_file):
    rendered = render(values_file)
    secrets = set()
    for s in rendered.of_kind("Secret"):
        for key, b64 in s.get("data", {}).items():
            value = base64.b64decode(b64).decode()
            secrets.add(value)
            if key == "passwords.json":
                secrets.update(json.loads(value).values())
    for name, spec in rendered.pod_specs():
        text = json.dumps(spec)
        for value in secrets:
            assert value not in text, f"{name} inlines a secret value"


def test_secrets_generated_and_kept(default):
    for name in (
        f"{R}-fernet-key",
        f"{R}-api-secrets",
        f"{R}-redis-password",
        f"{R}-mysql-passwords",
        f"{R}-admin-password",
    ):
        secret = default.get("Secret", name)
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", name
    fernet = secret_value(default, f"{R}-fernet-key", "fernet-key")
    assert len(base64.urlsafe_b64decode(fernet)) == 32
    assert len(secret_value(default, f"{R}-redis-password", "password")) >= 32
    users = json.loads(secret_value(default, f"{R}-admin-password", "passwords.json"))
    assert set(users) == {"admin"} and len(users["admin"]) >= 16
    mysql_pw = secret_value(default, f"{R}-mysql-passwords", "mysql-password")
    conn = pod_url(default, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    timeouts = "connect_timeout=5&read_timeout=20&write_timeout=20"  # values.yaml database.timeouts
    assert conn == f"mysql+mysqldb://airflow:{mysql_pw}@{R}-mysql:3306/airflow?{timeouts}"
    assert (
        pod_url(default, "AIRFLOW__CELERY__RESULT_BACKEND")
        == f"db+mysql://airflow:{mysql_pw}@{R}-mysql:3306/airflow?{timeouts}"
    )
    # aiomysql takes no read/write timeout; the migration Job's long ALTERs must not be cut off
    assert (
        pod_url(default, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC")
        == f"mysql+aiomysql://airflow:{mysql_pw}@{R}-mysql:3306/airflow?connect_timeout=5"
    )
    assert (
        pod_url(default, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "Job", f"{R}-migrate-db")
        == f"mysql+mysqldb://airflow:{mysql_pw}@{R}-mysql:3306/airflow?connect_timeout=5"
    )


def test_no_default_passwords_in_values():

    text = (CHART / "values.yaml").read_text()
    assert not re.search(r"(?i)^\s*\w*password(?!sFile|Secret)\w*:[ \t]*[^\s#{]", text, re.M)
