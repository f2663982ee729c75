"""database.external.tls as rendered: the CA mounted where the mysqlclient URLs and the async engine's
settings say, the async URL free of options aiomysql cannot take (tests/integration/test_database_tls.py
runs these through Airflow's engines against a TLS-only MySQL)."""

from __future__ import annotations

import pytest

from tests.chart.components import pod
from tests.chart.conftest import RELEASE as R
from tests.chart.conftest import RenderError, container, env_of

pytestmark = pytest.mark.chart

EXTERNAL = (
    "database.external.enabled=true",
    "database.external.host=db.example.com",
    "database.external.passwordSecret.name=db",
)


def _env(rendered, kind="Deployment", name=f"{R}-scheduler") -> dict[str, str]:
    spec = pod(rendered, kind, name)
    return {k: v.get("value") for k, v in env_of(spec["containers"][0]).items()}


def test_tls_with_a_ca_secret(render):
    rendered = render(
        None, *EXTERNAL, "database.external.tls.enabled=true", "database.external.tls.caSecret.name=db-ca"
    )
    for kind, name in (("Deployment", f"{R}-scheduler"), ("StatefulSet", f"{R}-worker"), ("Job", f"{R}-migrate-db")):
        env = _env(rendered, kind, name)
        for var in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
            assert "?ssl_ca=/opt/airflow/db-tls/ca.crt&ssl_mode=VERIFY_IDENTITY&connect_timeout=" in env[var], (
                name,
                var,
            )
        assert "ssl" not in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] == "airflow_ha.db_tls.ASYNC_CONNECT_ARGS"
        assert env["AIRFLOW_HA_DB_TLS_CA"] == "/opt/airflow/db-tls/ca.crt"
        spec = pod(rendered, kind, name)
        volume = next(v for v in spec["volumes"] if v["name"] == "db-ca")
        assert volume["secret"] == {"secretName": "db-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "db-ca")
        assert mount["mountPath"] == "/opt/airflow/db-tls" and mount["readOnly"]


def test_tls_chain_only_and_system_cas(render):
    loose = _env(
        render(None, *EXTERNAL, "database.external.tls.enabled=true", "database.external.tls.checkHostname=false")
    )
    assert "?ssl_ca=/etc/ssl/certs/ca-certificates.crt&connect_timeout=" in loose["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert loose["AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME"] == "false" and loose["AIRFLOW_HA_DB_TLS_CA"] == ""
    system = _env(render(None, *EXTERNAL, "database.external.tls.enabled=true"))
    assert "?ssl_mode=VERIFY_IDENTITY&connect_timeout=" in system["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_no_tls_settings_without_tls(render):
    env = _env(render(None, *EXTERNAL))
    assert "ssl" not in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC" not in env
    worker = container(pod(render(None, *EXTERNAL), "StatefulSet", f"{R}-worker"), "worker")
    assert all(m["name"] != "db-ca" for m in worker["volumeMounts"])


def test_bad_tls_values_fail_the_schema(render):
    with pytest.raises(RenderError) as err:
        render(None, *EXTERNAL, "database.external.tls.verify=true")
    assert "/database/external/tls" in err.value.stderr and "'verify' not allowed" in err.value.stderr
