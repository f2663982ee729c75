"""The broker URL a command runs against: ``--url``, else the one Airflow is configured with.

Shared by ``broker-check`` and ``broker-probe`` (both run in the release's pods, where Airflow's own
``[celery] broker_url`` is the one to test).
"""

from __future__ import annotations

import os
import sys


def airflow_broker_url() -> str | None:
    url = os.environ.get("AIRFLOW__CELERY__BROKER_URL")
    if url:
        return url
    try:
        from airflow.configuration import conf
    except Exception:  # no Airflow in this environment: only --url can say
        return None
    return conf.get("celery", "broker_url", fallback=None)


def broker_url(explicit: str | None, prog: str) -> str | None:
    """``--url``, else Airflow's [celery] broker_url; None (after saying so on stderr) when neither is set."""
    url = explicit or airflow_broker_url()
    if not url:
        print(f"{prog}: no broker URL: pass --url or set [celery] broker_url", file=sys.stderr)
    return url
