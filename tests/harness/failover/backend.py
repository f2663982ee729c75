"""What a failover scenario needs from a deployment, whatever runs it (local processes or Kubernetes).

Components are named as in the chart: ``api-server``, ``scheduler``, ``dag-processor``,
``triggerer``, ``worker``, ``sensor-shard``, ``redis``, ``database``. Instances are what an
operator would name: a process name locally, a pod name on Kubernetes; for Airflow components the
instance name is also what Airflow records as ``hostname`` in its job and task-instance rows.
"""

from __future__ import annotations

from typing import Protocol

from tests.harness.failover.api import AirflowAPI


class Backend(Protocol):
    name: str
    api: AirflowAPI

    def instances(self, component: str) -> list[str]:
        """Names of the running instances of ``component``."""

    def kill(self, component: str, instance: str) -> None:
        """Kill one instance at once (SIGKILL / pod deleted with no grace), as a crash would."""

    def freeze(self, component: str, instance: str, frozen: bool) -> None:
        """SIGSTOP (``frozen``) / SIGCONT every process of one instance: slow but alive, not dead.
        (Kubernetes only: there a watcher could mistake a frozen worker for a lost one.)"""

    def recover(self) -> None:
        """Bring killed instances back (locally: start them again; on Kubernetes: controllers do)."""

    def wait_healthy(self, timeout: float) -> None:
        """Every component is up: the api-server reports all Airflow components healthy."""

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Run a read query on the metadata database."""

    def redis_master_for_queue(self, queue: str) -> str:
        """The Redis instance that is master for the slot holding ``queue``."""

    def wait_redis_serving(self, killed: str, timeout: float) -> str:
        """Wait until the killed master's slots are served again; returns the master serving them.

        Locally the killed process stays down, so that is always a promoted replica. On Kubernetes the
        StatefulSet may bring the pod back (new IP, same data from its AOF) before the cluster's node
        timeout, and then it is the same instance, still master.
        """

    def restart_database(self) -> None:
        """Stop the metadata database and start it again on the same data."""

    def rolling_restart(self) -> None:
        """Restart every Airflow component instance one at a time, as an upgrade does."""


def fetch_all(conn, query: str, params: tuple = ()) -> list[tuple]:
    """Run one read query on a DB-API connection and close it (both backends' ``sql``)."""
    try:
        cur = conn.cursor()
        cur.execute(query, params)
        return list(cur.fetchall())
    finally:
        conn.close()
