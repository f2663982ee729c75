"""ha_sensor_probe: the failover suite's smart-sensor workload.

Each run has ``SENSORS`` smart SQL sensors that all wait on one target: the Airflow Variable
``ha_sensor_release/<run_id>`` existing in the metadata database (connection ``ha_probe_db``). They
share one hashcode, so one shard pokes the target once per interval for all of them. The failover suite
kills the shard holding them, then releases them through the REST API; every sensor must still succeed.
The target lives in the metadata DB (not a file) so the same probe runs locally and on Kubernetes.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_ha.sensors.operators import SmartSqlSensor

SENSORS = 10

with DAG(
    "ha_sensor_probe",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    tags=["airflow-ha", "failover", "smart-sensor"],
) as dag:
    for i in range(SENSORS):
        SmartSqlSensor(
            task_id=f"wait_{i}",
            conn_id="ha_probe_db",
            sql="SELECT COUNT(*) FROM variable WHERE `key` = %(key)s",
            parameters={"key": "ha_sensor_release/{{ run_id }}"},
            poke_interval=5,
            timeout=1800,
        )
