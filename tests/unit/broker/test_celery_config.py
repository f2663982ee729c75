"""airflow_ha.broker.celery_config: what the chart points [celery] celery_config_options at."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json
from kombu.transport import TRANSPORT_ALIASES
from airflow_ha.broker.celery_config import CELERY_CONFIG
print(json.dumps({"alias": TRANSPORT_ALIASES.get("rediscluster"), "broker_url": CELERY_CONFIG["broker_url"],
                  "options": CELERY_CONFIG["broker_transport_options"],
                  "acks_late": CELERY_CONFIG["task_acks_late"], "backend": CELERY_CONFIG["result_backend"]}))
"""


def _load(tmp_path, **env) -> dict:
    full = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "mysql+mysqldb://u:p@127.0.0.1:1/airflow",
        "AIRFLOW__CELERY__BROKER_URL": "rediscluster://:pw@a:1,b:2",
        **env,
    }
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_config_registers_alias_and_keeps_airflow_defaults(tmp_path):
    loaded = _load(tmp_path)
    assert loaded["alias"] == "airflow_ha.broker.transport:Transport"
    assert loaded["broker_url"] == "rediscluster://:pw@a:1,b:2"
    assert loaded["acks_late"] is True
    assert loaded["backend"].startswith("db+mysql")  # the result backend stays the metadata database
    assert loaded["options"]["replication_wait_replicas"] == 1
    assert float(loaded["options"]["visibility_timeout"]) == 86400


def test_airflow_transport_options_win(tmp_path):
    loaded = _load(
        tmp_path,
        AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT="600",
        AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__REPLICATION_WAIT_POLICY="raise",
    )
    assert float(loaded["options"]["visibility_timeout"]) == 600
    assert loaded["options"]["replication_wait_policy"] == "raise"
