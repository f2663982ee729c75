"""database.external.tls through Airflow's own engines: the environment the chart renders for the scheduler
and the migration Job, run against MySQL 9.7 with ``require_secure_transport=ON`` and a certificate from a
private CA. The sync engine, the async engine (aiomysql, which takes TLS only as connect args) and Celery's
result backend all connect with TLS; a wrong CA and a certificate for another host are refused.

Only the host, port, the password's value and the CA's mount path are swapped for the fixture's; every
other variable is the rendered one. "The image's system CAs" is played by ``SSL_CERT_FILE``, which OpenSSL's
default verify paths read, for both mysqlclient and Python's ssl.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.chart.conftest import helm_template
from tests.conftest import airflow_env
from tests.harness.servers.mysql import MySQL
from tests.harness.servers.tls import CertificateAuthority, TlsFiles

pytestmark = pytest.mark.integration

CA_DIR = "/opt/airflow/db-tls"  # where the chart mounts database.external.tls.caSecret

PROBE = r"""
import asyncio, json
from sqlalchemy import text
from airflow import settings

CIPHER = "SHOW SESSION STATUS LIKE 'Ssl_cipher'"
out = {}
def attempt(name, fn):
    try:
        out[name] = fn()
    except Exception as exc:
        out[name] = f"ERROR {type(exc).__name__}: {str(exc)[:300]}"

def sync():
    with settings.Session() as s:
        return s.execute(text(CIPHER)).one()[1]

async def _async():
    async with settings.AsyncSession() as s:
        return (await s.execute(text(CIPHER))).one()[1]

def backend():
    # Airflow's Celery app's result backend (Celery's DatabaseBackend on [celery] result_backend)
    from airflow.providers.celery.executors.celery_executor import app
    with app.backend.ResultSession() as s:
        return s.execute(text(CIPHER)).one()[1]

attempt("sync", sync)
attempt("async", lambda: asyncio.run(_async()))
attempt("result_backend", backend)
print("RESULT " + json.dumps(out), flush=True)
"""


def _server(base, name: str, ca: CertificateAuthority, **names) -> MySQL:
    tls = TlsFiles.write(base / f"{name}-tls", ca, **names)
    return MySQL(base_dir=base / name, password="airflow-tls-pw", tls=tls).start()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two TLS-only servers signed by one CA: one whose certificate names 127.0.0.1, one that names another
    host only."""
    base = tmp_path_factory.mktemp("db-tls")
    ca = CertificateAuthority.create("database CA")
    started = []
    try:
        started.append(_server(base, "named", ca, ip_addresses=("127.0.0.1",)))
        started.append(_server(base, "other-name", ca, dns_names=("db.example.internal",)))
        yield started[0], started[1], base
    finally:
        for server in started:
            server.stop()


def _rendered_env(helm_binary, server: MySQL, *sets: str) -> dict[str, dict[str, str]]:
    """The scheduler's and the migration Job's env as rendered for an external database on ``server``."""
    args = [
        "database.external.enabled=true", "database.external.host=127.0.0.1",
        f"database.external.port={server.port}", f"database.external.user={server.user}",
        f"database.external.database={server.database}", "database.external.passwordSecret.name=db",
        "database.external.tls.enabled=true", *sets,
    ]  # fmt: skip
    text = helm_template(helm_binary, *[a for s in args for a in ("--set", s)])
    envs = {}
    for obj in yaml.safe_load_all(text):
        if (
            obj
            and obj["kind"] in ("Deployment", "Job")
            and obj["metadata"]["name"].endswith(("-scheduler", "-migrate-db"))
        ):
            container = obj["spec"]["template"]["spec"]["containers"][0]
            envs[obj["kind"]] = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert set(envs) == {"Deployment", "Job"}, sorted(envs)
    return envs


def _probe(env: dict[str, str], server: MySQL, ca_dir, home, system_ca=None) -> dict[str, str]:
    """Run PROBE with a rendered env: the password's value and the CA's mount path filled in."""
    filled = {
        k: v.replace("$(AIRFLOW_HA_DB_PASSWORD)", server.password).replace(CA_DIR, str(ca_dir))
        for k, v in env.items()
        if k.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__CELERY__RESULT", "AIRFLOW_HA_DB_TLS"))
    }
    extra = {"SSL_CERT_FILE": str(system_ca)} if system_ca else {}
    proc_env = airflow_env(home, filled.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"), **filled, **extra)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=proc_env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # (the async engine's pool may complain at interpreter exit, after the result line)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _ca_dir(tmp_path, name: str, ca_pem: bytes):
    d = tmp_path / name
    d.mkdir()
    (d / "ca.crt").write_bytes(ca_pem)
    return d


def test_every_airflow_connection_uses_tls_and_verifies_the_server(servers, helm_binary, tmp_path):
    named, _other, _base = servers
    envs = _rendered_env(helm_binary, named, "database.external.tls.caSecret.name=db-ca")
    ca_dir = _ca_dir(tmp_path, "mounted", named.tls.ca.read_bytes())
    for kind, env in envs.items():
        got = _probe(env, named, ca_dir, tmp_path / kind)
        print(f"\n{kind}: {got}")
        # "TLS_..." from the server's own view of each session (the server refuses plaintext anyway)
        wanted = ("sync", "result_backend") if kind == "Job" else ("sync", "async", "result_backend")
        assert all(str(got[k]).startswith("TLS_") for k in wanted), got

    wrong = _ca_dir(tmp_path, "wrong", CertificateAuthority.create("not the server's CA").pem)
    got = _probe(envs["Deployment"], named, wrong, tmp_path / "wrong-ca")
    print(f"\nwrong CA: {got}")
    assert all(v.startswith("ERROR") for v in got.values()), got
    # mysqlclient names the certificate; aiomysql reports any failed handshake as "Can't connect" (2003)
    assert "certificate" in got["sync"].lower() and "certificate" in got["result_backend"].lower(), got


def test_the_host_name_is_checked_unless_turned_off(servers, helm_binary, tmp_path):
    _named, other, _base = servers  # its certificate names db.example.internal, we connect to 127.0.0.1
    ca_dir = _ca_dir(tmp_path, "mounted", other.tls.ca.read_bytes())
    checked = _rendered_env(helm_binary, other, "database.external.tls.caSecret.name=db-ca")["Deployment"]
    got = _probe(checked, other, ca_dir, tmp_path / "checked")
    print(f"\nhost name checked: {got}")
    assert all(v.startswith("ERROR") for v in got.values()), got

    loose = _rendered_env(helm_binary, other, "database.external.tls.caSecret.name=db-ca",
                          "database.external.tls.checkHostname=false")["Deployment"]  # fmt: skip
    got = _probe(loose, other, ca_dir, tmp_path / "loose")
    assert all(str(v).startswith("TLS_") for v in got.values()), got


def test_without_a_ca_secret_the_system_cas_are_used(servers, helm_binary, tmp_path):
    named, _other, _base = servers
    env = _rendered_env(helm_binary, named)["Deployment"]
    assert "ssl_ca=" not in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] and env["AIRFLOW_HA_DB_TLS_CA"] == ""
    unused = tmp_path / "unused"
    got = _probe(env, named, unused, tmp_path / "not-trusted")  # the system store does not know the CA
    assert all(v.startswith("ERROR") for v in got.values()), got
    got = _probe(env, named, unused, tmp_path / "trusted", system_ca=named.tls.ca)
    assert all(str(v).startswith("TLS_") for v in got.values()), got
