"""``[core] hostname_callable`` for local topologies: every process reports its instance name.

On one machine all processes share a hostname, so Airflow's job and task-instance rows could not
say which scheduler queued a task or which worker ran it; pods have distinct hostnames already.
"""

from __future__ import annotations

import os

ENV_INSTANCE = "AIRFLOW_HA_INSTANCE"


def instance_name() -> str:
    from airflow.utils.net import getfqdn

    return os.environ.get(ENV_INSTANCE) or getfqdn()
