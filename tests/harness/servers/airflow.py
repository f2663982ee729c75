"""The Airflow components of the HA topology as real local processes on 127.0.0.1.

Mirrors what the Helm chart runs: api-server, schedulers, dag-processor, the two triggerers
(queue-less and ``--queues default``), Celery workers and smart-sensor shard groups (``sensor_replicas``
triggerers per group, ``sensor-shard-<g>-a``, ``-b``, ...), all sharing one
metadata DB, one broker and one set of secrets. Each process has its own log file and is stopped
(or killed, for failover tests) by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path

from airflow_ha.settings import ENV_SENSOR_SHARDS, ENV_SHARD_ORDINAL
from tests.harness.servers.hostname import ENV_INSTANCE
from tests.harness.servers.process import free_port, kill_process, log_tail, stop_process

REPO_ROOT = Path(__file__).resolve().parents[3]
AIRFLOW = [sys.executable, "-m", "airflow"]
AIRFLOW_HA = [sys.executable, "-m", "airflow_ha.cli"]


def sensor_shard_name(group: int, replica: int) -> str:
    """``sensor-shard-<g>-a``, ``-b``, ...: a letter, so no process name reads as another group's ordinal."""
    return f"sensor-shard-{group}-{chr(ord('a') + replica)}"


@dataclass
class Component:
    """One process of the topology (``kind`` is what the chart calls the component)."""

    name: str
    kind: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def stop(self, timeout: float = 60) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=timeout)
            # Whatever the process left behind in its session (pool children, server workers) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        if self.proc is not None:
            # The whole process group at once (task runners, api-server workers), as when a pod is lost.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            kill_process(self.proc)

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


@dataclass
class LocalAirflow:
    base_dir: Path
    sql_alchemy_conn: str
    broker_url: str
    dags_folder: Path
    celery_config_options: str | None = None
    schedulers: int = 2
    workers: int = 2
    worker_concurrency: int = 8
    worker_queues: tuple[str, ...] = ("default",)
    sensor_shards: int = 2  # shard groups
    sensor_replicas: int = 2  # triggerers per group, as the chart's sensorShards.replicasPerGroup
    extra_env: dict[str, str] = field(default_factory=dict)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    components: list[Component] = field(default_factory=list)
    _secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.home = self.base_dir / "airflow-home"
        self.logs = self.base_dir / "process-logs"
        self.api_port = free_port()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # -- configuration -----------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        passwords_file = self.home / "simple_auth_manager_passwords.json"
        result_backend = "db+" + self.sql_alchemy_conn.replace("mysql+mysqldb://", "mysql://", 1)
        env = dict(os.environ)
        # the harness is not installed: Airflow imports its hostname_callable from the checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.harness.servers.hostname.instance_name",
                "AIRFLOW__CORE__FERNET_KEY": self._secret("fernet", lambda: urlsafe_b64encode(os.urandom(32)).decode()),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__SECRET_KEY": self._secret("api", lambda: secrets.token_hex(16)),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt", lambda: secrets.token_hex(32)),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                ENV_SENSOR_SHARDS: str(self.sensor_shards),
            }
        )
        if self.celery_config_options:
            env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = self.celery_config_options
        env.update(self.extra_env)
        return env

    def _secret(self, name: str, make) -> str:
        """Generated once per topology: every process must share the same keys."""
        if name not in self._secrets:
            self._secrets[name] = make()
        return self._secrets[name]

    @property
    def env(self) -> dict[str, str]:
        return self._base_env()

    # -- topology ----------------------------------------------------------------------------------
    def _component(self, name: str, kind: str, argv: list[str], **env: str) -> Component:
        env = {**self._base_env(), ENV_INSTANCE: name, **env}
        return Component(name, kind, argv, env, self.logs / f"{name}.log")

    def plan(self) -> list[Component]:
        plan = [
            self._component(
                "api-server",
                "api-server",
                [*AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)],
            ),
            self._component("dag-processor", "dag-processor", [*AIRFLOW, "dag-processor"]),
        ]
        plan += [
            self._component(f"scheduler-{i}", "scheduler", [*AIRFLOW, "scheduler"]) for i in range(self.schedulers)
        ]
        plan += [
            self._component(
                "triggerer",
                "triggerer",
                [*AIRFLOW, "triggerer"],
                AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            ),
            self._component(
                "triggerer-default",
                "triggerer",
                [*AIRFLOW, "triggerer", "--queues", "default"],
                AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            ),
        ]
        plan += [
            self._component(
                f"worker-{i}",
                "worker",
                [
                    *AIRFLOW,
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"worker-{i}@%h",
                    "--queues",
                    ",".join(self.worker_queues),
                ],
                AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            )
            for i in range(self.workers)
        ]
        plan += [
            self._component(
                sensor_shard_name(group, replica),
                "sensor-shard",
                [*AIRFLOW_HA, "sensor-shard"],
                AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
                **{ENV_SHARD_ORDINAL: str(group)},
            )
            for group in range(self.sensor_shards)
            for replica in range(self.sensor_replicas)
        ]
        return plan

    def start(self, kinds: set[str] | None = None) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "simple_auth_manager_passwords.json").write_text(json.dumps({"admin": self.admin_password}))
        if not self.components:
            self.components = self.plan()
        for component in self.components:
            if kinds is None or component.kind in kinds:
                component.start()

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()

    def by_kind(self, kind: str) -> list[Component]:
        return [c for c in self.components if c.kind == kind]

    def by_name(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def run_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*AIRFLOW, *args], env=self._base_env(), capture_output=True, text=True, timeout=timeout)

    def migrate(self, timeout: float = 300) -> None:
        """``airflow db migrate`` with this topology's config; raises with its output when it fails."""
        result = self.run_cli("db", "migrate", timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
