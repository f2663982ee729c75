"""The passwords the chart writes into connection URLs as ``$(VAR)`` references (the kubelet expands them),
so they reach the URL unencoded: a character with a meaning in a URL (``@ : / % ? #``...) would silently
point Airflow at another host or user. Generated passwords are letters and digits; a Secret of the user's
(``secrets.*``, ``database.external.passwordSecret``) is checked here, in every Airflow pod's
``wait-for-migrations`` init container, so the pod stops with the cause instead of failing to connect.
The git credentials of ``dags.git`` and the log store's key pair (``remoteLogs``) go the same way into the JSON of
an Airflow connection, where a quote, a backslash or a control character would end the string early.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# RFC 3986 unreserved characters: the same before and after URL encoding
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]*")

URL_PASSWORDS = {
    "AIRFLOW_HA_DB_PASSWORD": "secrets.mysqlPassword, or database.external.passwordSecret",
    "AIRFLOW_HA_REDIS_PASSWORD": "secrets.redisPassword, or broker.external.passwordSecret",
}

JSON_SECRETS = {
    "AIRFLOW_HA_GIT_USERNAME": "dags.git.credentialsSecret (its usernameKey)",
    "AIRFLOW_HA_GIT_TOKEN": "dags.git.credentialsSecret (its tokenKey)",
    "AIRFLOW_HA_LOG_STORE_ACCESS_KEY": "secrets.logStoreAccessKey",
    "AIRFLOW_HA_LOG_STORE_SECRET_KEY": "secrets.logStoreSecretKey",
}


def unsafe_embedded_secrets(env: Mapping[str, str] = os.environ) -> list[str]:
    """Every problem of the secrets the chart embeds into other strings (URLs, connections' JSON)."""
    return unsafe_url_passwords(env) + unsafe_json_secrets(env)


def unsafe_json_secrets(env: Mapping[str, str] = os.environ) -> list[str]:
    """One message per secret that cannot go into a JSON string as it is; the secret itself is never shown."""
    return _problems(env, JSON_SECRETS, _json_unsafe)


def unsafe_url_passwords(env: Mapping[str, str] = os.environ) -> list[str]:
    """One message per password that cannot go into a URL as it is; the password itself is never shown."""
    return _problems(env, URL_PASSWORDS, _url_unsafe)


def _json_unsafe(value: str) -> str | None:
    if any(ch in '"\\' or ord(ch) < 0x20 for ch in value):
        return (
            "contains a quote, a backslash or a control character (a trailing newline?); the chart puts it into "
            "an Airflow connection's JSON unescaped"
        )
    return None


def _url_unsafe(value: str) -> str | None:
    bad = sorted({ch for ch in value if not URL_SAFE.fullmatch(ch)})
    if not bad:
        return None
    shown = ", ".join("space" if ch == " " else repr(ch) for ch in bad)
    return (
        f"contains {len(bad)} character(s) that are not URL-safe ({shown}); the chart puts it into connection "
        "URLs unencoded: use letters, digits and - . _ ~ only"
    )


def _problems(env: Mapping[str, str], secrets: dict[str, str], unsafe) -> list[str]:
    """A message per variable of ``secrets`` (name -> the values key of its Secret) that is empty or that
    ``unsafe`` describes; variables absent from ``env`` are not this pod's."""
    problems = []
    for var, source in secrets.items():
        value = env.get(var)
        if value is None:
            continue
        if value == "":
            problems.append(f"{var} is empty: the Secret named by {source} has no value at its key")
        elif why := unsafe(value):
            problems.append(f"{var} (from the Secret named by {source}) {why}")
    return problems
