"""airflow_ha.broker.celery_config: what the chart points [celery] celery_config_options at.

Each case runs in a fresh interpreter with Airflow's own configuration from the environment, builds
Airflow's own Celery app (``celery_executor_utils.app``) and reads the options its transport resolves,
the way a scheduler or worker of the release does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json
from kombu.transport import TRANSPORT_ALIASES
from airflow.providers.celery.executors.celery_executor_utils import app
from airflow_ha.broker.celery_config import CELERY_CONFIG
conn = app.connection_for_write()
print(json.dumps({"alias": TRANSPORT_ALIASES.get("rediscluster"), "broker_url": app.conf.broker_url,
                  "set": CELERY_CONFIG["broker_transport_options"], "effective": conn.transport.opts.as_dict(),
                  "acks_late": app.conf.task_acks_late, "backend": CELERY_CONFIG["result_backend"],
                  # celery.backends.database keeps these only when set (else its own 3 quick retries)
                  "store_retries": [app.conf.value_set_for("result_backend_max_retries"),
                                    app.conf.result_backend_max_retries, app.conf.result_backend_always_retry],
                  "publish_retry_policy": app.conf.task_publish_retry_policy,
                  "recoverable": [e.__name__ for e in conn.recoverable_connection_errors]}))
"""


def load(tmp_path, url="rediscluster://:pw@a:1,b:2", **env) -> dict:
    full = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "mysql+mysqldb://u:p@127.0.0.1:1/airflow",
        "AIRFLOW__CELERY__BROKER_URL": url,
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airflow_ha.broker.celery_config.CELERY_CONFIG",
        **env,
    }
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_config_registers_alias_and_keeps_airflow_defaults(tmp_path):
    loaded = load(tmp_path)
    assert loaded["alias"] == "airflow_ha.broker.transport:Transport"
    assert loaded["broker_url"] == "rediscluster://:pw@a:1,b:2"
    assert loaded["acks_late"] is True
    assert loaded["backend"].startswith("db+mysql")  # the result backend stays the metadata database
    assert loaded["set"] == {}  # nothing set by the library: its defaults must not beat the URL
    assert loaded["effective"]["replication_wait_policy"] == "auto"
    assert loaded["effective"]["visibility_timeout"] == 86400


def test_url_query_beats_defaults_and_airflow_section_beats_url(tmp_path):
    url = "rediscluster://:pw@a:1,b:2?replication_wait_policy=raise&poll_sweep_interval=0.5&visibility_timeout=600"
    from_url = load(tmp_path, url)["effective"]
    assert from_url["replication_wait_policy"] == "raise"
    assert from_url["poll_sweep_interval"] == 0.5
    assert from_url["visibility_timeout"] == 600
    user = load(
        tmp_path,
        url,
        AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__REPLICATION_WAIT_POLICY="warn",
        AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT="7200",
    )["effective"]
    assert user["replication_wait_policy"] == "warn"  # [celery_broker_transport_options] wins
    assert user["visibility_timeout"] == 7200
    assert user["poll_sweep_interval"] == 0.5  # what the user did not set still comes from the URL


def test_a_result_store_outlasts_a_database_failover(tmp_path):
    """Airflow's own Celery app stores results with about a minute of retries, not Celery's database
    backend's 3 within a second (a lost result keeps an executor slot taken for good)."""
    from airflow_ha.broker.celery_config import RESULT_STORE_RETRIES

    assert load(tmp_path)["store_retries"] == [True, RESULT_STORE_RETRIES, True]


def test_airflows_publish_outlasts_a_replica_slow_to_acknowledge(tmp_path):
    """Airflow's own Celery app retries a refused publish (the WAIT policy's) for up to a minute, and kombu
    keeps to that policy for this transport (it stops after one reconnect for a transport that does not say
    which errors are recoverable)."""
    from airflow_ha.broker.celery_config import PUBLISH_RETRY_POLICY

    loaded = load(tmp_path)
    assert loaded["publish_retry_policy"] == PUBLISH_RETRY_POLICY
    assert "BrokerUnavailable" in loaded["recoverable"]  # ReplicationWaitError is one
