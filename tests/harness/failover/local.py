"""The local backend: the whole topology as real processes on 127.0.0.1.

Redis Cluster (6 redis-server), MySQL, and the Airflow components of :class:`LocalAirflow`.
A supervisor thread restarts an Airflow process that exits, after a short delay, as the kubelet
restarts a container or a controller replaces a pod; so "no manual step" means the same here as on
Kubernetes. Redis nodes and the database are brought back only by :meth:`recover` and
:meth:`restart_database`, so a scenario can observe the replica's promotion first.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import MySQLdb
from sqlalchemy.engine import make_url

from airflow_ha.broker.keys import queue_slot
from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.backend import fetch_all
from tests.harness.failover.scenarios import PROBE_DAG, PROBE_QUEUES
from tests.harness.servers.airflow import Component, LocalAirflow
from tests.harness.servers.mysql import MySQL
from tests.harness.servers.redis_cluster import RedisCluster
from tests.harness.waiting import wait_until

RESTART_DELAY = 3.0  # about what a replacement pod takes to be scheduled and started
AIRFLOW_KINDS = ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "sensor-shard")


class LocalBackend:
    name = "local"

    def __init__(
        self,
        base_dir: Path,
        dags_folder: Path,
        broker_url_for,
        *,
        sensor_shards: int = 2,
        sensor_replicas: int = 2,
        schedulers: int = 2,
        workers: int = 2,
        worker_concurrency: int = 8,
        celery_config_options: str | None = "airflow_ha.broker.celery_config.CELERY_CONFIG",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``broker_url_for(cluster)`` returns the Celery broker URL for the started Redis Cluster."""
        self.base_dir = base_dir
        self.redis = RedisCluster(base_dir / "redis", password=secrets.token_hex(12))
        self.db = MySQL(base_dir / "mysql", password=secrets.token_hex(12))
        self.dags_folder = dags_folder
        self.broker_url_for = broker_url_for
        self.sensor_shards = sensor_shards
        self.sensor_replicas = sensor_replicas
        self.topology = {"schedulers": schedulers, "workers": workers, "worker_concurrency": worker_concurrency}
        self.celery_config_options = celery_config_options
        self.extra_env = extra_env or {}
        self.airflow: LocalAirflow | None = None
        self.api: AirflowAPI | None = None
        self._paused: set[str] = set()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def up(self, timeout: float = 300) -> None:
        self.redis.start()
        self.db.start()
        self.airflow = LocalAirflow(
            base_dir=self.base_dir / "airflow",
            sql_alchemy_conn=self.db.sqlalchemy_url,
            broker_url=self.broker_url_for(self.redis),
            celery_config_options=self.celery_config_options,
            dags_folder=self.dags_folder,
            worker_queues=PROBE_QUEUES,
            sensor_shards=self.sensor_shards,
            sensor_replicas=self.sensor_replicas,
            **self.topology,
            extra_env={
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                # A task whose message was consumed while the api-server could not reach the DB
                # stays queued until this timeout requeues it (Airflow default 600 s).
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
                # Tasks a killed scheduler had queued but not yet sent wait for another scheduler's
                # orphan check (Airflow default every 300 s), as the chart also sets it lower.
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "20",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
                "AIRFLOW__CORE__PARALLELISM": "64",
                # dags/ha_sensor_probe.py's smart SQL sensors read the metadata DB through this.
                "AIRFLOW_CONN_HA_PROBE_DB": self.db.sqlalchemy_url.replace("mysql+mysqldb://", "mysql://", 1),
                **self.extra_env,
            },
        )
        self.airflow.migrate()
        self.airflow.start()
        self.api = AirflowAPI(self.airflow.api_url, password=self.airflow.admin_password)
        self._supervisor = threading.Thread(target=self._supervise, name="local-supervisor", daemon=True)
        self._supervisor.start()
        self.wait_healthy(timeout)
        wait_until(lambda: PROBE_DAG in self.api.dag_ids(), timeout, f"the {PROBE_DAG} DAG to be parsed", interval=1)
        self.api.unpause(PROBE_DAG)

    def down(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(10)
        if self.airflow is not None:
            self.airflow.stop()
        self.db.stop()
        self.redis.stop()

    def _supervise(self) -> None:
        exited_at: dict[str, float] = {}
        while not self._stopping.wait(0.5):
            for component in self.airflow.components:
                if component.running or component.name in self._paused:
                    exited_at.pop(component.name, None)
                    continue
                first_seen = exited_at.setdefault(component.name, time.monotonic())
                if time.monotonic() - first_seen >= RESTART_DELAY:
                    component.start()
                    exited_at.pop(component.name, None)

    # -- Backend -----------------------------------------------------------------------------------
    def _component(self, name: str) -> Component:
        return self.airflow.by_name(name)

    def instances(self, component: str) -> list[str]:
        if component == "redis":
            return [f"redis-{n.port}" for n in self.redis.nodes if n.running]
        if component == "database":
            return ["database"] if self.db.running else []
        return [c.name for c in self.airflow.by_kind(component) if c.running]

    def _redis_node(self, instance: str):
        return self.redis.node_by_port(int(instance.rsplit("-", 1)[1]))

    def kill(self, component: str, instance: str) -> None:
        if component == "redis":
            self.redis.kill(self._redis_node(instance))
        elif component == "database":
            self.db.kill()
        else:
            self._component(instance).kill()

    def keep_down(self, instance: str, down: bool = True) -> None:
        """Do not restart ``instance`` after it exits (a pod whose node is gone and not yet replaced);
        ``down=False`` lets the supervisor restart it again."""
        (self._paused.add if down else self._paused.discard)(instance)

    def recover(self) -> None:
        for node in self.redis.nodes:
            if not node.running:
                self.redis.restart(node)
        if not self.db.running:
            self.db.restart()
        self.redis.wait_healthy()
        wait_until(lambda: all(c.running for c in self.airflow.components), 60, "every Airflow process running")

    def wait_healthy(self, timeout: float) -> None:
        def healthy() -> bool:
            try:
                health = self.api.health()
            except Exception:
                return False
            return all(part.get("status") == "healthy" for part in health.values())

        wait_until(healthy, timeout, "every Airflow component healthy", interval=1)

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        url = make_url(self.db.sqlalchemy_url)
        conn = MySQLdb.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
        )
        return fetch_all(conn, query, params)

    def redis_master_for_queue(self, queue: str) -> str:
        node = self.redis.master_for_slot(queue_slot(queue))
        return f"redis-{node.port}"

    def wait_redis_serving(self, killed: str, timeout: float) -> str:
        slot = queue_slot(PROBE_QUEUES[0])

        def promoted():
            try:
                node = self.redis.master_for_slot(slot)
            except Exception:
                return None
            return node if node.running and f"redis-{node.port}" != killed else None

        node = wait_until(promoted, timeout, f"a replica of {killed} to be promoted")
        return f"redis-{node.port}"

    def restart_database(self) -> None:
        self.db.stop()
        time.sleep(5)
        self.db.restart()

    def rolling_restart(self) -> None:
        for component in list(self.airflow.components):
            self._paused.add(component.name)
            try:
                component.stop(timeout=120)  # SIGTERM: workers finish their tasks (warm shutdown)
                component.start()
            finally:
                self._paused.discard(component.name)
            if component.kind == "api-server":
                wait_until(self.api.is_up, 120, "the api-server to answer again", interval=1)
