"""The passwords the chart writes into connection URLs as ``$(VAR)`` references (the kubelet expands them),
so they reach the URL unencoded: a character with a meaning in a URL (``@ : / % ? #``...) would silently
point Airflow at another host or user. Generated passwords are letters and digits; a Secret of the user's
(``secrets.*``, ``database.external.passwordSecret``) is checked here, in every Airflow pod's
``wait-for-migrations`` init container, so the pod stops with the cause instead of failing to connect.
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


def unsafe_url_passwords(env: Mapping[str, str] = os.environ) -> list[str]:
    """One message per password that cannot go into a URL as it is; the password itself is never shown."""
    problems = []
    for var, source in URL_PASSWORDS.items():
        value = env.get(var)
        if value is None:
            continue
        if value == "":
            problems.append(f"{var} is empty: the Secret named by {source} has no value at its key")
            continue
        bad = sorted({ch for ch in value if not URL_SAFE.fullmatch(ch)})
        if bad:
            shown = ", ".join("space" if ch == " " else repr(ch) for ch in bad)
            problems.append(
                f"{var} (from the Secret named by {source}) contains {len(bad)} character(s) that are not "
                f"URL-safe ({shown}); the chart puts it into connection URLs unencoded: use letters, digits "
                "and - . _ ~ only"
            )
    return problems
