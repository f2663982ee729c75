"""airflow_ha.db_tls: the async engine's TLS context from the chart's settings, and what a bad one says."""

from __future__ import annotations

import ssl

import pytest

from airflow_ha.db_tls import DatabaseTLSError, async_connect_args
from tests.harness.servers.tls import CertificateAuthority


def test_the_context_verifies_the_server_with_the_mounted_ca(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_bytes(CertificateAuthority.create("db CA").pem)
    context = async_connect_args({"AIRFLOW_HA_DB_TLS_CA": str(ca), "AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME": "true"})["ssl"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "db CA"),),)]
    loose = async_connect_args({"AIRFLOW_HA_DB_TLS_CA": str(ca), "AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME": "false"})["ssl"]
    assert loose.verify_mode == ssl.CERT_REQUIRED and not loose.check_hostname


def test_a_missing_ca_file_or_a_bad_flag_is_named(tmp_path):
    with pytest.raises(DatabaseTLSError, match=r"AIRFLOW_HA_DB_TLS_CA=.*missing\.crt: no such file"):
        async_connect_args({"AIRFLOW_HA_DB_TLS_CA": str(tmp_path / "missing.crt")})
    with pytest.raises(DatabaseTLSError, match="AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME='yes please'"):
        async_connect_args({"AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME": "yes please"})
