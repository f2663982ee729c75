"""TLS for Airflow's async metadata engine (aiomysql), which cannot take it from the URL.

mysqlclient reads ``ssl_ca``/``ssl_mode`` from the URL's query, so the chart puts them into the sync URL, the
result backend and the migration Job's URL. aiomysql wants an :class:`ssl.SSLContext` instead (a URL's
``ssl_ca`` reaches it as a dict and fails on first use), so with ``database.external.tls`` the chart points
``[database] sql_alchemy_connect_args_async`` at :data:`ASYNC_CONNECT_ARGS`, built from the same settings:

- ``AIRFLOW_HA_DB_TLS_CA``: the mounted CA bundle ("" = the system CAs);
- ``AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME``: ``true`` checks that the certificate names the host (as
  ``ssl_mode=VERIFY_IDENTITY`` does for the sync engine), ``false`` the chain only (as ``ssl_ca`` without
  ``ssl_mode`` does there).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

CA_ENV = "AIRFLOW_HA_DB_TLS_CA"
CHECK_HOSTNAME_ENV = "AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME"


class DatabaseTLSError(ValueError):
    """The database TLS settings cannot work; the message names the setting."""


def async_connect_args(env: Mapping[str, str] = os.environ) -> dict:
    """``connect_args`` of the async engine: ``{"ssl": SSLContext}`` that verifies the server."""
    ca = env.get(CA_ENV, "")
    if ca and not os.path.isfile(ca):
        raise DatabaseTLSError(f"{CA_ENV}={ca}: no such file (database.external.tls.caSecret is mounted there)")
    check = env.get(CHECK_HOSTNAME_ENV, "true").strip().lower()
    if check not in ("true", "false"):
        raise DatabaseTLSError(f"{CHECK_HOSTNAME_ENV}={check!r}: want true or false")
    context = ssl.create_default_context(cafile=ca or None)
    context.check_hostname = check == "true"
    return {"ssl": context}


ASYNC_CONNECT_ARGS = async_connect_args()
